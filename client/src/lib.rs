//! Client side of the CLIP-on-Triton deployment.
//!
//! What is here now is the transport foundation only:
//!
//! - [`proto`]: Triton's KServe v2 gRPC API (package `inference`), generated
//!   at build time from the subset in `proto/grpc_service.proto`
//!   (health, metadata, `ModelInfer`, `ModelStreamInfer`, `ModelConfig`,
//!   `ModelStatistics`). The raw [`proto::grpc_inference_service_client`]
//!   is available for anything [`Triton`] does not wrap.
//! - [`Triton`]: a small async wrapper over that client (connect, liveness,
//!   model readiness, model config, inference, statistics) with errors that
//!   say what went wrong and where.
//! - Pure helpers for Triton's raw tensor encoding:
//!   [`serialize_bytes_tensor`] for `BYTES` inputs and [`f32_from_raw`],
//!   [`f16_from_raw`], [`i64_from_raw`] for `raw_output_contents`.
//!
//! Not here yet: the CLIP-level client (encode text and images, rank,
//! build and search an index) and the command-line tool. They will be built
//! on top of this module.

use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

/// Generated protobuf messages and the gRPC client for Triton's `inference`
/// package.
#[allow(
    clippy::all,
    clippy::pedantic,
    missing_docs,
    rustdoc::invalid_html_tags,
    rustdoc::bare_urls
)]
pub mod proto {
    tonic::include_proto!("inference");
}

use proto::grpc_inference_service_client::GrpcInferenceServiceClient;

/// Largest gRPC message accepted or sent. tonic defaults to 4 MiB for
/// decoding, which a batch of embeddings or images easily exceeds; Triton's
/// own limit is `i32::MAX` bytes, so use the same.
const MAX_MESSAGE_BYTES: usize = i32::MAX as usize;

/// How long [`Triton::connect`] waits for the TCP connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server address could not be used.
    #[error("invalid Triton address {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },

    /// No gRPC connection could be opened to the server.
    #[error(
        "cannot reach Triton at {url}: {detail} \
         (is tritonserver running, and is this its gRPC port, 8001 by default?)"
    )]
    Unreachable {
        url: String,
        detail: String,
        #[source]
        source: tonic::transport::Error,
    },

    /// The server answered an RPC with a non-OK gRPC status.
    #[error("Triton {rpc} failed: {code:?}: {message}")]
    Status {
        rpc: &'static str,
        code: tonic::Code,
        message: String,
    },

    /// The server answered OK but left out a field it must send.
    #[error("Triton {rpc} response has no {field}")]
    MissingField {
        rpc: &'static str,
        field: &'static str,
    },

    /// A raw tensor buffer does not hold a whole number of elements.
    #[error(
        "raw {datatype} tensor has {len} bytes, not a multiple of the \
         {elem_size}-byte element size (wrong datatype or truncated output?)"
    )]
    RawLength {
        datatype: &'static str,
        len: usize,
        elem_size: usize,
    },
}

impl Error {
    fn status(rpc: &'static str, status: tonic::Status) -> Self {
        Error::Status {
            rpc,
            code: status.code(),
            message: status.message().to_owned(),
        }
    }
}

/// Joins an error and its sources into one line: tonic's transport error
/// alone only says "transport error"; the useful part (connection refused,
/// DNS failure, timeout) is further down the chain.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut next = err.source();
    while let Some(e) = next {
        let text = e.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = e.source();
    }
    out
}

/// Turns `http://host:port` or `grpc://host:port` into the `http://` URI
/// tonic expects. Both mean plaintext HTTP/2.
fn endpoint_uri(url: &str) -> Result<String, Error> {
    let invalid = |reason: &str| Error::InvalidUrl {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    let rest = if let Some(rest) = url.strip_prefix("grpc://") {
        rest
    } else if let Some(rest) = url.strip_prefix("http://") {
        rest
    } else if url.starts_with("https://") || url.starts_with("grpcs://") {
        return Err(invalid(
            "TLS is not supported yet; use http://host:port or grpc://host:port",
        ));
    } else {
        return Err(invalid("expected http://host:port or grpc://host:port"));
    };
    let authority = rest.trim_end_matches('/');
    if authority.is_empty() || authority.contains('/') {
        return Err(invalid(
            "expected just host:port after the scheme, e.g. grpc://localhost:8001",
        ));
    }
    Ok(format!("http://{authority}"))
}

/// A connection to one Triton server's gRPC endpoint.
///
/// Cloning is cheap and clones share the underlying HTTP/2 connection.
#[derive(Debug, Clone)]
pub struct Triton {
    url: String,
    client: GrpcInferenceServiceClient<Channel>,
}

impl Triton {
    /// Connects to `http://host:port` or `grpc://host:port` (plaintext
    /// gRPC; Triton listens on 8001 by default). Fails if the TCP/HTTP2
    /// connection cannot be established within 10 seconds.
    pub async fn connect(url: &str) -> Result<Triton, Error> {
        let uri = endpoint_uri(url)?;
        let endpoint = Endpoint::from_shared(uri).map_err(|e| Error::InvalidUrl {
            url: url.to_owned(),
            reason: error_chain(&e),
        })?;
        let channel = endpoint
            .connect_timeout(CONNECT_TIMEOUT)
            .connect()
            .await
            .map_err(|source| Error::Unreachable {
                url: url.to_owned(),
                detail: error_chain(&source),
                source,
            })?;
        let client = GrpcInferenceServiceClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        Ok(Triton {
            url: url.to_owned(),
            client,
        })
    }

    /// The address this client was connected with.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The generated gRPC client, for RPCs this wrapper does not cover
    /// (server/model metadata, streaming inference).
    pub fn grpc(&self) -> GrpcInferenceServiceClient<Channel> {
        self.client.clone()
    }

    /// Whether the server reports itself live.
    pub async fn server_live(&self) -> Result<bool, Error> {
        let response = self
            .client
            .clone()
            .server_live(proto::ServerLiveRequest {})
            .await
            .map_err(|s| Error::status("ServerLive", s))?;
        Ok(response.into_inner().live)
    }

    /// Whether model `name` (version chosen by the server) is ready for
    /// inference. An unknown model is reported as not ready by Triton.
    pub async fn model_ready(&self, name: &str) -> Result<bool, Error> {
        let response = self
            .client
            .clone()
            .model_ready(proto::ModelReadyRequest {
                name: name.to_owned(),
                version: String::new(),
            })
            .await
            .map_err(|s| Error::status("ModelReady", s))?;
        Ok(response.into_inner().ready)
    }

    /// The configuration the server is using for model `name`, including
    /// what Triton filled in (auto-complete, defaults).
    pub async fn model_config(&self, name: &str) -> Result<proto::ModelConfig, Error> {
        let response = self
            .client
            .clone()
            .model_config(proto::ModelConfigRequest {
                name: name.to_owned(),
                version: String::new(),
            })
            .await
            .map_err(|s| Error::status("ModelConfig", s))?;
        response.into_inner().config.ok_or(Error::MissingField {
            rpc: "ModelConfig",
            field: "config",
        })
    }

    /// Runs one inference request as given.
    pub async fn infer(
        &self,
        request: proto::ModelInferRequest,
    ) -> Result<proto::ModelInferResponse, Error> {
        let response = self
            .client
            .clone()
            .model_infer(request)
            .await
            .map_err(|s| Error::status("ModelInfer", s))?;
        Ok(response.into_inner())
    }

    /// Cumulative statistics of model `name`, one entry per loaded version.
    pub async fn model_statistics(&self, name: &str) -> Result<Vec<proto::ModelStatistics>, Error> {
        let response = self
            .client
            .clone()
            .model_statistics(proto::ModelStatisticsRequest {
                name: name.to_owned(),
                version: String::new(),
            })
            .await
            .map_err(|s| Error::status("ModelStatistics", s))?;
        Ok(response.into_inner().model_stats)
    }
}

/// Encodes `BYTES` tensor elements in Triton's raw format: each element is
/// preceded by its length as a 4-byte little-endian unsigned integer, with
/// no padding. The result goes into `raw_input_contents`.
///
/// # Panics
///
/// If an element is 4 GiB or larger (not representable in the format).
pub fn serialize_bytes_tensor(items: &[&[u8]]) -> Vec<u8> {
    let total = items.iter().map(|item| 4 + item.len()).sum();
    let mut out = Vec::with_capacity(total);
    for item in items {
        let len = u32::try_from(item.len()).expect("BYTES tensor element must be under 4 GiB");
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(item);
    }
    out
}

/// Splits a raw little-endian buffer into `N`-byte chunks, or reports a
/// length that is not a whole number of elements.
fn le_chunks<'a, const N: usize>(
    bytes: &'a [u8],
    datatype: &'static str,
) -> Result<impl Iterator<Item = [u8; N]> + 'a, Error> {
    if !bytes.len().is_multiple_of(N) {
        return Err(Error::RawLength {
            datatype,
            len: bytes.len(),
            elem_size: N,
        });
    }
    Ok(bytes
        .chunks_exact(N)
        .map(|chunk| <[u8; N]>::try_from(chunk).expect("chunks_exact yields N bytes")))
}

/// Decodes a raw `FP32` tensor (little-endian, as Triton sends it).
pub fn f32_from_raw(bytes: &[u8]) -> Result<Vec<f32>, Error> {
    Ok(le_chunks::<4>(bytes, "FP32")?
        .map(f32::from_le_bytes)
        .collect())
}

/// Decodes a raw `FP16` tensor (little-endian) and widens each value to
/// `f32`, which is exact.
pub fn f16_from_raw(bytes: &[u8]) -> Result<Vec<f32>, Error> {
    Ok(le_chunks::<2>(bytes, "FP16")?
        .map(|b| half::f16::from_le_bytes(b).to_f32())
        .collect())
}

/// Decodes a raw `INT64` tensor (little-endian).
pub fn i64_from_raw(bytes: &[u8]) -> Result<Vec<i64>, Error> {
    Ok(le_chunks::<8>(bytes, "INT64")?
        .map(i64::from_le_bytes)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_tensor_prefixes_each_element_with_le_u32_length() {
        let out = serialize_bytes_tensor(&[b"ab", b"", b"xyz"]);
        assert_eq!(
            out,
            [
                2, 0, 0, 0, b'a', b'b', //
                0, 0, 0, 0, //
                3, 0, 0, 0, b'x', b'y', b'z',
            ]
        );
    }

    #[test]
    fn bytes_tensor_length_is_little_endian_beyond_one_byte() {
        let big = vec![7u8; 0x0102];
        let out = serialize_bytes_tensor(&[&big]);
        assert_eq!(&out[..4], &[0x02, 0x01, 0, 0]);
        assert_eq!(out.len(), 4 + 0x0102);
        assert!(out[4..].iter().all(|&b| b == 7));
    }

    #[test]
    fn bytes_tensor_of_nothing_is_empty() {
        assert!(serialize_bytes_tensor(&[]).is_empty());
    }

    #[test]
    fn f32_round_trips_little_endian() {
        let values = [0.0f32, -1.5, 3.25, f32::MAX, f32::MIN_POSITIVE];
        let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(f32_from_raw(&raw).unwrap(), values);
        // 1.0f32 is 0x3F800000: little-endian puts 0x3F last.
        assert_eq!(f32_from_raw(&[0, 0, 0x80, 0x3F]).unwrap(), [1.0]);
    }

    #[test]
    fn f16_decodes_known_bit_patterns() {
        // 0x3C00 = 1.0, 0xC000 = -2.0, 0x3555 ~= 0.33325, 0x7BFF = 65504 (max).
        let raw = [0x00, 0x3C, 0x00, 0xC0, 0x55, 0x35, 0xFF, 0x7B];
        let got = f16_from_raw(&raw).unwrap();
        assert_eq!(got[0], 1.0);
        assert_eq!(got[1], -2.0);
        assert!((got[2] - 0.33325195).abs() < 1e-7);
        assert_eq!(got[3], 65504.0);
    }

    #[test]
    fn i64_round_trips_little_endian() {
        let values = [0i64, -1, 49406, i64::MIN, i64::MAX];
        let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(i64_from_raw(&raw).unwrap(), values);
    }

    #[test]
    fn empty_raw_buffers_decode_to_empty() {
        assert!(f32_from_raw(&[]).unwrap().is_empty());
        assert!(f16_from_raw(&[]).unwrap().is_empty());
        assert!(i64_from_raw(&[]).unwrap().is_empty());
    }

    #[test]
    fn ragged_raw_buffers_are_rejected_with_sizes() {
        let err = f32_from_raw(&[0; 6]).unwrap_err();
        assert!(matches!(
            err,
            Error::RawLength {
                datatype: "FP32",
                len: 6,
                elem_size: 4
            }
        ));
        assert!(err.to_string().contains("6 bytes"));
        assert!(matches!(
            f16_from_raw(&[0; 3]),
            Err(Error::RawLength { elem_size: 2, .. })
        ));
        assert!(matches!(
            i64_from_raw(&[0; 12]),
            Err(Error::RawLength { elem_size: 8, .. })
        ));
    }

    #[test]
    fn grpc_and_http_schemes_map_to_plaintext_uri() {
        assert_eq!(
            endpoint_uri("grpc://localhost:8001").unwrap(),
            "http://localhost:8001"
        );
        assert_eq!(
            endpoint_uri("http://10.0.0.5:8001/").unwrap(),
            "http://10.0.0.5:8001"
        );
    }

    #[test]
    fn unsupported_addresses_are_rejected_with_a_hint() {
        for url in ["localhost:8001", "ftp://host:1", "grpc://", "http://h:1/v2"] {
            let err = endpoint_uri(url).unwrap_err();
            assert!(matches!(err, Error::InvalidUrl { .. }), "{url}: {err}");
            assert!(err.to_string().contains("host:port"), "{url}: {err}");
        }
        let err = endpoint_uri("https://host:8001").unwrap_err();
        assert!(err.to_string().contains("TLS"), "{err}");
    }

    #[tokio::test]
    async fn connect_to_closed_port_reports_address() {
        // Bind then drop a listener to get a local port nothing listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("grpc://127.0.0.1:{port}");
        let err = Triton::connect(&url).await.unwrap_err();
        assert!(matches!(err, Error::Unreachable { .. }), "{err}");
        let text = err.to_string();
        assert!(text.contains(&url), "{text}");
        assert!(text.to_lowercase().contains("refused"), "{text}");
    }

    #[test]
    fn generated_messages_use_tritons_field_numbers() {
        use prost::Message;
        // ModelInferResponse.raw_output_contents is field 6 (length-delimited):
        // tag byte = (6 << 3) | 2 = 0x32.
        let msg = proto::ModelInferResponse {
            raw_output_contents: vec![vec![1, 2]],
            ..Default::default()
        };
        assert_eq!(msg.encode_to_vec(), [0x32, 2, 1, 2]);
        // ModelConfig.backend is field 17: varint tag (17 << 3) | 2 = 0x8A 0x01.
        let cfg = proto::ModelConfig {
            backend: "x".into(),
            ..Default::default()
        };
        assert_eq!(cfg.encode_to_vec(), [0x8A, 0x01, 1, b'x']);
    }
}
