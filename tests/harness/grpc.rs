//! Requests for Triton's gRPC API through the project's own client.

use clip_client::proto::model_infer_request::{InferInputTensor, InferRequestedOutputTensor};
use clip_client::proto::ModelInferRequest;
use clip_client::serialize_bytes_tensor;

/// A request of `[n, 1]` BYTES items for `input`, asking for `output`.
pub fn bytes_request(model: &str, input: &str, output: &str, items: &[&[u8]]) -> ModelInferRequest {
    ModelInferRequest {
        model_name: model.into(),
        inputs: vec![InferInputTensor {
            name: input.into(),
            datatype: "BYTES".into(),
            shape: vec![items.len() as i64, 1],
            ..Default::default()
        }],
        outputs: vec![InferRequestedOutputTensor {
            name: output.into(),
            ..Default::default()
        }],
        raw_input_contents: vec![serialize_bytes_tensor(items)],
        ..Default::default()
    }
}
