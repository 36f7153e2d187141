//! Requests for Triton's gRPC API through the project's own client.

use clip_client::{cosine, f32_from_raw, Error, Triton};
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

/// Sends, all at once: every item in one request, and for each position a
/// request of the first three items with a bad one there. Each good row
/// must match `want`; each bad request must fail naming its element.
pub async fn burst(
    client: &Triton,
    (ensemble, input): (&str, &str),
    items: &[Vec<u8>],
    bad: &[u8],
    (want, threshold): (&[Vec<f32>], f32),
) {
    let mut requests = vec![(None, items.to_vec())];
    for position in 0..3 {
        let mut three = items[..3].to_vec();
        three[position] = bad.to_vec();
        requests.push((Some(position), three));
    }
    let mut tasks = tokio::task::JoinSet::new();
    for (bad_at, items) in requests {
        let (client, ensemble, input) = (client.clone(), ensemble.to_owned(), input.to_owned());
        tasks.spawn(async move {
            let items: Vec<&[u8]> = items.iter().map(Vec::as_slice).collect();
            (bad_at, embed(&client, &ensemble, &input, &items).await)
        });
    }
    while let Some(joined) = tasks.join_next().await {
        match joined.expect("request task") {
            (None, Ok(rows)) => {
                assert_eq!(rows.len(), want.len());
                for (index, (got, want)) in rows.iter().zip(want).enumerate() {
                    let similarity = cosine(got, want);
                    assert!(
                        similarity >= threshold,
                        "{ensemble} item {index}: cosine {similarity}"
                    );
                }
            }
            (Some(position), Err(Error::Status { code, message, .. })) => {
                assert_eq!(code, tonic::Code::InvalidArgument, "{message}");
                assert!(
                    message.contains(&format!("element {position}")),
                    "{ensemble}, bad element {position}: {message}"
                );
            }
            (bad_at, outcome) => panic!("{ensemble}, bad element at {bad_at:?}: {outcome:?}"),
        }
    }
}

/// The ensembles serve `reference`'s raw sentences and image files as its
/// rows say (within `text_cosine` / `image_cosine`), each tower in one burst
/// with a bad element (invalid UTF-8, a truncated file) in every position of
/// concurrent requests; then `clip-client verify` holds the probes.
pub async fn assert_serves(
    grpc_url: &str,
    reference: &crate::fixtures::EndToEnd,
    (text_cosine, image_cosine): (f32, f32),
) {
    let client = Triton::connect(grpc_url).await.expect("connect");
    let sentences: Vec<Vec<u8>> = reference
        .sentences
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect();
    burst(
        &client,
        (clip_contract::model::TEXT_ENSEMBLE, tensor::TEXT),
        &sentences,
        b"caf\xc3",
        (&reference.text, text_cosine),
    )
    .await;
    let files: Vec<Vec<u8>> = reference
        .images
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    let truncated = files[0][..files[0].len() / 3].to_vec();
    burst(
        &client,
        (clip_contract::model::IMAGE_ENSEMBLE, tensor::IMAGE),
        &files,
        &truncated,
        (&reference.image, image_cosine),
    )
    .await;
    assert!(client.server_live().await.unwrap());
    // repo-gen ran the conformance probes through the encoders in ONNX
    // Runtime; the served ensembles answer them alike.
    assert_verified(grpc_url, 0.99999).await;
}
