//! A small client for Triton's HTTP/REST (KServe v2) protocol with its
//! binary-data extension, enough to send raw bytes and read raw outputs.

use std::sync::OnceLock;

use serde_json::{json, Value};

/// A tensor as raw bytes in Triton's wire layout.
#[derive(Clone, Debug)]
pub struct Tensor {
    pub name: String,
    pub datatype: String,
    pub shape: Vec<i64>,
    pub data: Vec<u8>,
}

impl Tensor {
    /// A `[n, 1]` BYTES tensor in Triton's wire layout.
    pub fn bytes(name: &str, elements: &[&[u8]]) -> Tensor {
        Tensor {
            name: name.into(),
            datatype: "BYTES".into(),
            shape: vec![elements.len() as i64, 1],
            data: clip_client::serialize_bytes_tensor(elements),
        }
    }

    pub fn as_i64(&self) -> Vec<i64> {
        assert_eq!(self.datatype, "INT64", "tensor {}", self.name);
        clip_client::i64_from_raw(&self.data).expect("whole INT64 elements")
    }

    pub fn as_f32(&self) -> Vec<f32> {
        assert_eq!(self.datatype, "FP32", "tensor {}", self.name);
        clip_client::f32_from_raw(&self.data).expect("whole FP32 elements")
    }

    /// FP16 values widened to f32 (exact).
    pub fn as_f16_widened(&self) -> Vec<f32> {
        assert_eq!(self.datatype, "FP16", "tensor {}", self.name);
        clip_client::f16_from_raw(&self.data).expect("whole FP16 elements")
    }
}

/// A failed request: the HTTP status and Triton's error message.
#[derive(Debug)]
pub struct Failure {
    pub status: u16,
    pub message: String,
}

fn agent() -> &'static ureq::Agent {
    static AGENT: OnceLock<ureq::Agent> = OnceLock::new();
    AGENT.get_or_init(|| {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(std::time::Duration::from_secs(120)))
            .build()
            .into()
    })
}

const BODY_LIMIT: u64 = 1 << 30;
const HEADER_LENGTH: &str = "Inference-Header-Content-Length";

/// GET a JSON endpoint; returns the status and the parsed body (Null if empty).
pub fn get(base: &str, path: &str) -> Result<(u16, Value), ureq::Error> {
    json_reply(agent().get(format!("{base}{path}")).call()?)
}

/// POST a JSON body; returns the status and the parsed body.
pub fn post_json(base: &str, path: &str, body: &Value) -> Result<(u16, Value), ureq::Error> {
    json_reply(agent().post(format!("{base}{path}")).send_json(body)?)
}

fn json_reply(mut response: ureq::http::Response<ureq::Body>) -> Result<(u16, Value), ureq::Error> {
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .with_config()
        .limit(BODY_LIMIT)
        .read_to_vec()?;
    Ok((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
}

/// One inference call with every input and output as binary data.
pub fn infer(
    base: &str,
    model: &str,
    inputs: &[Tensor],
    outputs: &[&str],
) -> Result<Vec<Tensor>, Failure> {
    let header = json!({
        "inputs": inputs.iter().map(|t| json!({
            "name": t.name, "datatype": t.datatype, "shape": t.shape,
            "parameters": {"binary_data_size": t.data.len()}
        })).collect::<Vec<_>>(),
        "outputs": outputs.iter().map(|name| json!({
            "name": name, "parameters": {"binary_data": true}
        })).collect::<Vec<_>>(),
    });
    let mut body = serde_json::to_vec(&header).expect("serialise header");
    let header_length = body.len();
    for input in inputs {
        body.extend_from_slice(&input.data);
    }
    let transport = |e: ureq::Error| Failure {
        status: 0,
        message: format!("transport error: {e}"),
    };
    let mut response = agent()
        .post(format!("{base}/v2/models/{model}/infer"))
        .header(HEADER_LENGTH, header_length.to_string())
        .content_type("application/octet-stream")
        .send(&body[..])
        .map_err(transport)?;
    let status = response.status().as_u16();
    let json_length: Option<usize> = response
        .headers()
        .get(HEADER_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let body = response
        .body_mut()
        .with_config()
        .limit(BODY_LIMIT)
        .read_to_vec()
        .map_err(transport)?;
    let (json_part, mut binary) = body.split_at(json_length.unwrap_or(body.len()));
    let parsed: Value = serde_json::from_slice(json_part).unwrap_or(Value::Null);
    if status != 200 {
        let message = parsed["error"]
            .as_str()
            .map(String::from)
            .unwrap_or_else(|| String::from_utf8_lossy(&body).into());
        return Err(Failure { status, message });
    }
    let mut tensors = Vec::new();
    for output in parsed["outputs"].as_array().expect("outputs array") {
        let size = output["parameters"]["binary_data_size"]
            .as_u64()
            .expect("binary output") as usize;
        let (data, rest) = binary.split_at(size);
        binary = rest;
        tensors.push(Tensor {
            name: output["name"].as_str().unwrap_or_default().into(),
            datatype: output["datatype"].as_str().unwrap_or_default().into(),
            shape: output["shape"]
                .as_array()
                .expect("shape")
                .iter()
                .map(|d| d.as_i64().unwrap())
                .collect(),
            data: data.to_vec(),
        });
    }
    Ok(tensors)
}
