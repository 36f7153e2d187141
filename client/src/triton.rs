//! The transport: one gRPC connection to Triton's KServe v2 endpoint, with
//! TLS, request metadata, per-call deadlines and bounded retries of
//! transient failures. Everything above it speaks CLIP; this speaks Triton.

use std::time::Duration;

use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use crate::{proto, Error};

/// Largest gRPC message accepted or sent. tonic defaults to 4 MiB for
/// decoding, which a batch of embeddings or images easily exceeds; Triton's
/// own limit is `i32::MAX` bytes, so use the same.
const MAX_MESSAGE_BYTES: usize = i32::MAX as usize;

/// Triton's default gRPC port, used when the address names none.
const DEFAULT_PORT: u16 = 8001;

/// TLS settings for `grpcs://` addresses.
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    /// PEM certificate(s) of the authority that signed the server's
    /// certificate. Without it the public web roots are trusted.
    pub ca_pem: Option<Vec<u8>>,
    /// PEM certificate and private key for mutual TLS.
    pub client_identity: Option<(Vec<u8>, Vec<u8>)>,
    /// Name to check the server certificate against, when it differs from
    /// the host in the address (e.g. connecting by IP).
    pub domain: Option<String>,
}

/// How to reach the server. [`ConnectOptions::default`] suits a local
/// Triton: 10 s to connect, 120 s per call, 3 retries.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    pub tls: TlsOptions,
    /// Extra request metadata sent with every call, e.g.
    /// `("authorization", "Bearer ...")` for a proxy in front of Triton.
    pub headers: Vec<(String, String)>,
    pub connect_timeout: Duration,
    /// Deadline of each call; a call past it fails with [`Error::Timeout`]
    /// and is not retried.
    pub call_timeout: Duration,
    /// How many times a call that failed transiently (server unreachable or
    /// restarting, connection reset) is tried again before giving up.
    pub retries: u32,
    /// Wait before the first retry; doubles for each further one.
    pub retry_delay: Duration,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            tls: TlsOptions::default(),
            headers: Vec::new(),
            connect_timeout: Duration::from_secs(10),
            call_timeout: Duration::from_secs(120),
            retries: 3,
            retry_delay: Duration::from_millis(200),
        }
    }
}

/// Joins an error and its sources into one line: tonic's transport error
/// alone only says "transport error"; the useful part (connection refused,
/// DNS failure, certificate rejected) is further down the chain.
pub(crate) fn error_chain(err: &dyn std::error::Error) -> String {
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

/// A parsed server address: whether it uses TLS and the `scheme://host:port`
/// URI tonic expects.
#[derive(Debug, PartialEq)]
struct Address {
    tls: bool,
    uri: String,
}

/// Accepts `grpc://host[:port]` and `http://...` (plaintext) or
/// `grpcs://host[:port]` and `https://...` (TLS). The port defaults to 8001.
fn parse_address(url: &str) -> Result<Address, Error> {
    let invalid = |reason: &str| Error::InvalidUrl {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    let (tls, rest) = [
        ("grpc://", false),
        ("http://", false),
        ("grpcs://", true),
        ("https://", true),
    ]
    .iter()
    .find_map(|(scheme, tls)| url.strip_prefix(scheme).map(|rest| (*tls, rest)))
    .ok_or_else(|| invalid("expected grpc://host:port or grpcs://host:port"))?;
    let authority = rest.trim_end_matches('/');
    if authority.is_empty() || authority.contains('/') {
        return Err(invalid(
            "expected just host:port after the scheme, e.g. grpc://localhost:8001",
        ));
    }
    // A bare IPv6 literal ends in "]"; anything else without ':' has no port.
    let has_port = authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| !p.ends_with(']'));
    let authority = if has_port {
        authority.to_owned()
    } else {
        format!("{authority}:{DEFAULT_PORT}")
    };
    let scheme = if tls { "https" } else { "http" };
    Ok(Address {
        tls,
        uri: format!("{scheme}://{authority}"),
    })
}

/// Whether tonic's deadline timer produced this status; it reports it as
/// `Cancelled` with the cause somewhere down the source chain.
fn caused_by_timeout(status: &tonic::Status) -> bool {
    let mut cause = std::error::Error::source(status);
    while let Some(error) = cause {
        if error.is::<tonic::TimeoutExpired>() {
            return true;
        }
        cause = error.source();
    }
    false
}

/// GRPC statuses worth another try: the server is (re)starting, the
/// connection dropped, or the model is still loading.
pub(crate) fn is_transient(code: tonic::Code) -> bool {
    matches!(code, tonic::Code::Unavailable | tonic::Code::Unknown)
}

type Headers = Vec<(AsciiMetadataKey, AsciiMetadataValue)>;

/// The endpoint (address, TLS, timeouts) and the metadata of every call.
fn prepare(url: &str, options: &ConnectOptions) -> Result<(Endpoint, Headers), Error> {
    let address = parse_address(url)?;
    let invalid = |reason: String| Error::InvalidUrl {
        url: url.to_owned(),
        reason,
    };
    let headers = options
        .headers
        .iter()
        .map(|(key, value)| {
            let key = AsciiMetadataKey::from_bytes(key.to_ascii_lowercase().as_bytes())
                .map_err(|_| Error::InvalidHeader(format!("{key:?} is not a valid header name")))?;
            let value = AsciiMetadataValue::try_from(value.as_str()).map_err(|_| {
                Error::InvalidHeader(format!("value of {key} is not printable ASCII"))
            })?;
            Ok((key, value))
        })
        .collect::<Result<Vec<_>, Error>>()?;

    let mut endpoint = Endpoint::from_shared(address.uri.clone())
        .map_err(|e| invalid(error_chain(&e)))?
        .connect_timeout(options.connect_timeout)
        .tcp_nodelay(true);
    if address.tls {
        let mut tls = ClientTlsConfig::new();
        tls = match &options.tls.ca_pem {
            Some(pem) => tls.ca_certificate(Certificate::from_pem(pem)),
            None => tls.with_webpki_roots(),
        };
        if let Some((cert, key)) = &options.tls.client_identity {
            tls = tls.identity(Identity::from_pem(cert, key));
        }
        if let Some(domain) = &options.tls.domain {
            tls = tls.domain_name(domain.clone());
        }
        endpoint = endpoint
            .tls_config(tls)
            .map_err(|e| Error::Tls(error_chain(&e)))?;
    } else if options.tls.ca_pem.is_some() || options.tls.client_identity.is_some() {
        return Err(invalid(
            "TLS settings were given for a plaintext address; use grpcs://".into(),
        ));
    }
    Ok((endpoint, headers))
}

/// A connection to one Triton server's gRPC endpoint.
///
/// Cloning is cheap and clones share the underlying HTTP/2 connection, so
/// many calls can be in flight at once.
#[derive(Debug, Clone)]
pub struct Triton {
    url: String,
    client: GrpcInferenceServiceClient<Channel>,
    headers: Headers,
    options: ConnectOptions,
}

impl Triton {
    /// Connects with [`ConnectOptions::default`].
    pub async fn connect(url: &str) -> Result<Triton, Error> {
        Triton::connect_with(url, ConnectOptions::default()).await
    }

    /// Connects to `grpc://host:port` (plaintext) or `grpcs://host:port`
    /// (TLS) and fails if the connection cannot be opened within
    /// `options.connect_timeout`.
    pub async fn connect_with(url: &str, options: ConnectOptions) -> Result<Triton, Error> {
        let (endpoint, headers) = prepare(url, &options)?;
        let channel = endpoint
            .connect()
            .await
            .map_err(|source| Error::Unreachable {
                url: url.to_owned(),
                detail: error_chain(&source),
            })?;
        Ok(Triton::over(url, channel, headers, options))
    }

    /// As [`Triton::connect_with`], but the connection is opened by the
    /// first call (and reopened by later ones), so a server that is down
    /// now can be used once it is back.
    pub fn connect_lazy(url: &str, options: ConnectOptions) -> Result<Triton, Error> {
        let (endpoint, headers) = prepare(url, &options)?;
        Ok(Triton::over(url, endpoint.connect_lazy(), headers, options))
    }

    fn over(url: &str, channel: Channel, headers: Headers, options: ConnectOptions) -> Triton {
        let client = GrpcInferenceServiceClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        Triton {
            url: url.to_owned(),
            client,
            headers,
            options,
        }
    }

    /// The address this client was connected with.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The generated gRPC client, for RPCs this wrapper does not cover.
    /// Calls made through it carry no metadata and are not retried.
    pub fn grpc(&self) -> GrpcInferenceServiceClient<Channel> {
        self.client.clone()
    }

    /// Runs one unary call with the configured metadata, retrying transient
    /// failures with exponential backoff up to `options.retries` times.
    async fn call<M, R, F, Fut>(&self, rpc: &'static str, message: M, send: F) -> Result<R, Error>
    where
        M: Clone,
        F: Fn(GrpcInferenceServiceClient<Channel>, tonic::Request<M>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<R>, tonic::Status>>,
    {
        let mut delay = self.options.retry_delay;
        let mut attempt = 0;
        let mut message = Some(message);
        loop {
            // A retry needs the message again; the last try takes it (no copy
            // of a large image batch when there are no retries).
            let body = if attempt < self.options.retries {
                message.clone()
            } else {
                message.take()
            };
            let mut request =
                tonic::Request::new(body.expect("the message is kept until the last try"));
            for (key, value) in &self.headers {
                request.metadata_mut().insert(key.clone(), value.clone());
            }
            // Sent as grpc-timeout too, so the server can drop work nobody awaits.
            request.set_timeout(self.options.call_timeout);
            let timed_out = || Error::Timeout {
                rpc,
                after: self.options.call_timeout,
            };
            let outcome = tokio::time::timeout(
                self.options.call_timeout,
                send(self.client.clone(), request),
            )
            .await
            .map_err(|_| timed_out())?;
            match outcome {
                Ok(response) => return Ok(response.into_inner()),
                // The deadline passed on the server, or in tonic's own timer
                // (which the grpc-timeout header also arms).
                Err(status)
                    if status.code() == tonic::Code::DeadlineExceeded
                        || caused_by_timeout(&status) =>
                {
                    return Err(timed_out())
                }
                Err(status) if is_transient(status.code()) && attempt < self.options.retries => {
                    attempt += 1;
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                Err(status) => return Err(Error::status(rpc, status, attempt)),
            }
        }
    }

    /// Whether the server reports itself live.
    pub async fn server_live(&self) -> Result<bool, Error> {
        let live = self
            .call(
                "ServerLive",
                proto::ServerLiveRequest {},
                |mut c, r| async move { c.server_live(r).await },
            )
            .await?;
        Ok(live.live)
    }

    /// Whether the server reports itself ready (every model it was told to
    /// load has loaded).
    pub async fn server_ready(&self) -> Result<bool, Error> {
        let ready = self
            .call(
                "ServerReady",
                proto::ServerReadyRequest {},
                |mut c, r| async move { c.server_ready(r).await },
            )
            .await?;
        Ok(ready.ready)
    }

    /// Server name and version.
    pub async fn server_metadata(&self) -> Result<proto::ServerMetadataResponse, Error> {
        self.call(
            "ServerMetadata",
            proto::ServerMetadataRequest {},
            |mut c, r| async move { c.server_metadata(r).await },
        )
        .await
    }

    /// Whether model `name` (version chosen by the server) is ready for
    /// inference. An unknown model is reported as not ready by Triton.
    pub async fn model_ready(&self, name: &str) -> Result<bool, Error> {
        let request = proto::ModelReadyRequest {
            name: name.to_owned(),
            version: String::new(),
        };
        let ready = self
            .call("ModelReady", request, |mut c, r| async move {
                c.model_ready(r).await
            })
            .await?;
        Ok(ready.ready)
    }

    /// The configuration the server is using for model `name`, including
    /// what Triton filled in (auto-complete, defaults).
    pub async fn model_config(&self, name: &str) -> Result<proto::ModelConfig, Error> {
        let request = proto::ModelConfigRequest {
            name: name.to_owned(),
            version: String::new(),
        };
        let response = self
            .call("ModelConfig", request, |mut c, r| async move {
                c.model_config(r).await
            })
            .await?;
        response.config.ok_or(Error::MissingField {
            rpc: "ModelConfig",
            field: "config",
        })
    }

    /// Every model the server knows, with its state and the reason for it.
    pub async fn repository_index(
        &self,
    ) -> Result<Vec<proto::repository_index_response::ModelIndex>, Error> {
        let request = proto::RepositoryIndexRequest {
            repository_name: String::new(),
            ready: false,
        };
        let response = self
            .call("RepositoryIndex", request, |mut c, r| async move {
                c.repository_index(r).await
            })
            .await?;
        Ok(response.models)
    }

    /// Runs one inference request, retrying transient failures.
    pub async fn infer(
        &self,
        request: proto::ModelInferRequest,
    ) -> Result<proto::ModelInferResponse, Error> {
        self.call("ModelInfer", request, |mut c, r| async move {
            c.model_infer(r).await
        })
        .await
    }

    /// Cumulative statistics of model `name`, one entry per loaded version.
    pub async fn model_statistics(&self, name: &str) -> Result<Vec<proto::ModelStatistics>, Error> {
        let request = proto::ModelStatisticsRequest {
            name: name.to_owned(),
            version: String::new(),
        };
        let response = self
            .call("ModelStatistics", request, |mut c, r| async move {
                c.model_statistics(r).await
            })
            .await?;
        Ok(response.model_stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes_choose_tls_and_the_port_defaults_to_8001() {
        let plain = |uri: &str| Address {
            tls: false,
            uri: uri.into(),
        };
        assert_eq!(
            parse_address("grpc://localhost:8001").unwrap(),
            plain("http://localhost:8001")
        );
        assert_eq!(
            parse_address("http://10.0.0.5:9000/").unwrap(),
            plain("http://10.0.0.5:9000")
        );
        assert_eq!(
            parse_address("grpc://triton").unwrap(),
            plain("http://triton:8001")
        );
        assert_eq!(
            parse_address("grpc://[::1]").unwrap(),
            plain("http://[::1]:8001")
        );
        assert_eq!(
            parse_address("grpcs://triton.example.com").unwrap(),
            Address {
                tls: true,
                uri: "https://triton.example.com:8001".into()
            }
        );
        assert!(parse_address("https://h:443").unwrap().tls);
    }

    #[test]
    fn unsupported_addresses_are_rejected_with_a_hint() {
        for url in ["localhost:8001", "ftp://host:1", "grpc://", "http://h:1/v2"] {
            let err = parse_address(url).unwrap_err();
            assert!(matches!(err, Error::InvalidUrl { .. }), "{url}: {err}");
            assert!(err.to_string().contains("host:port"), "{url}: {err}");
        }
    }

    #[test]
    fn only_connection_level_failures_are_retried() {
        assert!(is_transient(tonic::Code::Unavailable));
        assert!(!is_transient(tonic::Code::InvalidArgument));
        assert!(!is_transient(tonic::Code::DeadlineExceeded));
        assert!(!is_transient(tonic::Code::NotFound));
    }

    /// A local port nothing listens on.
    fn closed_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    #[tokio::test]
    async fn connect_to_closed_port_reports_address() {
        let url = format!("grpc://127.0.0.1:{}", closed_port());
        let err = Triton::connect(&url).await.unwrap_err();
        assert!(matches!(err, Error::Unreachable { .. }), "{err}");
        let text = err.to_string();
        assert!(text.contains(&url), "{text}");
        assert!(text.to_lowercase().contains("refused"), "{text}");
    }

    #[tokio::test]
    async fn bad_headers_and_tls_for_plaintext_are_refused_before_connecting() {
        let url = format!("grpc://127.0.0.1:{}", closed_port());
        let options = ConnectOptions {
            headers: vec![("bad header".into(), "x".into())],
            ..ConnectOptions::default()
        };
        let err = Triton::connect_with(&url, options).await.unwrap_err();
        assert!(matches!(err, Error::InvalidHeader(_)), "{err}");
        let options = ConnectOptions {
            tls: TlsOptions {
                ca_pem: Some(b"-----BEGIN CERTIFICATE-----".to_vec()),
                ..TlsOptions::default()
            },
            ..ConnectOptions::default()
        };
        let err = Triton::connect_with(&url, options).await.unwrap_err();
        assert!(err.to_string().contains("grpcs://"), "{err}");
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
        // RepositoryIndexRequest.ready is field 2 (varint): tag 0x10.
        let index = proto::RepositoryIndexRequest {
            repository_name: String::new(),
            ready: true,
        };
        assert_eq!(index.encode_to_vec(), [0x10, 1]);
    }
}
