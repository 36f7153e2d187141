//! Requests for Triton's gRPC API through the project's own client.

use clip_client::{f32_from_raw, Error, Triton};
use clip_contract::tensor;

pub use clip_client::bytes_request;

/// One request of BYTES `items` to `model`'s `input`: its `EMBEDDING` rows.
pub async fn embed(
    client: &Triton,
    model: &str,
    input: &str,
    items: &[&[u8]],
) -> Result<Vec<Vec<f32>>, Error> {
    let response = client
        .infer(bytes_request(model, input, tensor::EMBEDDING, items))
        .await?;
    let values = f32_from_raw(&response.raw_output_contents[0])?;
    let width = values.len() / items.len().max(1);
    Ok(values
        .chunks_exact(width.max(1))
        .map(<[f32]>::to_vec)
        .collect())
}

/// `clip-client verify` through the library: every ensemble's probes answer
/// within `min_cosine` of what repo-gen stored.
pub async fn assert_verified(url: &str, min_cosine: f32) {
    let checks = clip_client::Client::connect(url)
        .await
        .unwrap()
        .verify()
        .await
        .unwrap();
    assert_eq!(checks.len(), 2);
    for check in &checks {
        let probes = check.outcome.as_ref().unwrap();
        assert!(probes.len() >= 2, "{check:?}");
        for (probe, cosine) in probes {
            assert!(*cosine > min_cosine, "{}: {probe}: {cosine}", check.model);
        }
    }
}
