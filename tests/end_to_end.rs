//! The whole product on one machine: repo-gen turns a tiny CLIP fixture (a
//! ViT, and a ResNet) into a model repository (`--runtime ort`), the real tritonserver serves
//! it with the `clip` backend, and raw sentences and raw image files sent to
//! the `clip_text` and `clip_image` ensembles over gRPC come back as the
//! embeddings Hugging Face's own pipeline computes
//! (tests/fixtures/end-to-end, made by scripts/fixtures/end_to_end.py).

use clip_client::{cosine, Error, Triton};
use clip_contract::{model, tensor};
use std::path::Path;

use clip_contract::{defaults, file};
use clip_export::{OnnxModel, OrtRuntime};
use harness::fixture;
use harness::fixtures::{end_to_end, end_to_end_from, image, library_pixels, sentences, EndToEnd};
use harness::grpc::embed;
use harness::server::{onnxruntime_library, repo_gen, weights_repository, Server};

const TEXT_COSINE: f32 = 0.9999;
const IMAGE_COSINE: f32 = 0.999;

#[test]
fn generated_repository_serves_embeddings_like_transformers() {
    serves_like_the_reference(&fixture("tiny-clip/quick_gelu"), &end_to_end());
}

/// The ResNet family: the tiny `ModifiedResNet` CLIP, exported by repo-gen
/// from open_clip's layout, served against open_clip's own tokenizer,
/// preprocessing and model (scripts/fixtures/tiny_resnet_clip.py).
#[test]
fn generated_resnet_repository_serves_embeddings_like_open_clip() {
    serves_like_the_reference(
        &fixture("tiny-resnet-clip/rn224"),
        &end_to_end_from("tiny-resnet-clip/end_to_end.json"),
    );
}

/// `repo-gen --model RN50::openai --random-init`: the full-size ResNet
/// repository loads in the real server, and a sentence and a photo sent raw
/// come back as the exported encoders compute them in ONNX Runtime on the
/// library's own tokens and pixels.
#[test]
fn random_init_resnet_repository_serves_its_encoders() {
    let out = tempfile::tempdir().unwrap();
    let repository = out.path().join("repository");
    let status = std::process::Command::new(repo_gen())
        .args(["--model", "RN50::openai", "--random-init", "--seed", "7"])
        .arg("--tokenizer")
        .arg(fixture("text/tokenizer.json"))
        .arg("--out")
        .arg(&repository)
        .args(["--runtime", "ort", "--gpus", "none", "--no-warmup"])
        .arg("--ort-library")
        .arg(onnxruntime_library())
        .status()
        .expect("run repo-gen");
    assert!(status.success(), "repo-gen failed");
    let server = Server::start(&repository);

    let sentence = &sentences()[0];
    let photo = image("chelsea_444_q95.jpg");
    let runtime = OrtRuntime::load(Some(onnxruntime_library()), "the test's library").unwrap();
    let encoder = |name: &str| {
        let path = repository.join(name).join("1").join(file::ONNX_MODEL);
        let model = OnnxModel {
            model: std::fs::read(path).unwrap(),
            external_data: None,
        };
        runtime.session(&model).unwrap()
    };
    let want_text = encoder(model::TEXT_ENCODER)
        .embed_text(&sentence.end_padded(), 1)
        .unwrap();
    let want_image = encoder(model::IMAGE_ENCODER)
        .embed_images(&library_pixels(&photo), 1, defaults::IMAGE_SIZE as usize)
        .unwrap();
    assert_eq!(want_image.shape, [1, 1024]);

    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    tokio.block_on(async {
        let client = Triton::connect(&server.grpc_url).await.unwrap();
        let text = embed(
            &client,
            model::TEXT_ENSEMBLE,
            tensor::TEXT,
            &[sentence.text.as_bytes()],
        )
        .await
        .unwrap();
        let served = embed(&client, model::IMAGE_ENSEMBLE, tensor::IMAGE, &[&photo])
            .await
            .unwrap();
        let (text, image) = (
            cosine(&text[0], &want_text.data),
            cosine(&served[0], &want_image.data),
        );
        eprintln!("random RN50 served vs ONNX Runtime: text cosine {text}, image cosine {image}");
        assert!(text >= 1.0 - 1e-6, "text cosine {text}");
        assert!(image >= 1.0 - 1e-5, "image cosine {image}");
    });
}

fn serves_like_the_reference(weights: &Path, reference: &EndToEnd) {
    let images: Vec<(String, Vec<u8>)> = reference
        .images
        .iter()
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(path).unwrap())
        })
        .collect();
    let out = tempfile::tempdir().unwrap();
    let repository = out.path().join("repository");
    // A long batching window, so the burst below forms batches even on a loaded machine.
    weights_repository(weights, &repository, &["--max-queue-delay-us", "1000000"]);
    let server = Server::start(&repository);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = Triton::connect(&server.grpc_url)
            .await
            .expect("connect over gRPC");

        // All sentences in one request, then each on its own.
        let sentences: Vec<&[u8]> = reference.sentences.iter().map(|s| s.as_bytes()).collect();
        let text = embed(&client, model::TEXT_ENSEMBLE, tensor::TEXT, &sentences)
            .await
            .unwrap();
        for ((got, want), sentence) in text.iter().zip(&reference.text).zip(&reference.sentences) {
            let similarity = cosine(got, want);
            assert!(
                similarity >= TEXT_COSINE,
                "{sentence:?}: cosine {similarity}"
            );
        }
        for (index, sentence) in sentences.iter().enumerate() {
            let alone = embed(&client, model::TEXT_ENSEMBLE, tensor::TEXT, &[sentence])
                .await
                .unwrap();
            assert!(
                cosine(&alone[0], &text[index]) > 0.999_999,
                "batching changed {:?}",
                reference.sentences[index]
            );
        }

        // Every image in its own request, all at once, so the batcher groups them;
        // a corrupt image sent in the same burst fails alone. The batches the
        // models ran so far (their warmup among them) are counted first.
        let image_models = [model::IMAGE_PREPROCESS, model::IMAGE_ENCODER];
        let mut before = Vec::new();
        for name in image_models {
            before.push(batch_counts(&client, name).await);
        }
        let mut burst = tokio::task::JoinSet::new();
        for (index, (_, bytes)) in images.iter().enumerate() {
            let (client, bytes) = (client.clone(), bytes.clone());
            burst.spawn(async move {
                (
                    Some(index),
                    embed(&client, model::IMAGE_ENSEMBLE, tensor::IMAGE, &[&bytes]).await,
                )
            });
        }
        let corrupt = images[0].1[..2000].to_vec();
        let broken_client = client.clone();
        burst.spawn(async move {
            (
                None,
                embed(
                    &broken_client,
                    model::IMAGE_ENSEMBLE,
                    tensor::IMAGE,
                    &[&corrupt],
                )
                .await,
            )
        });
        let mut image = vec![Vec::new(); images.len()];
        while let Some(joined) = burst.join_next().await {
            match joined.expect("request task") {
                (Some(index), outcome) => {
                    image[index] = outcome.expect("a good image failed").remove(0)
                }
                (None, Err(Error::Status { code, message, .. })) => {
                    assert_eq!(code, tonic::Code::InvalidArgument, "{message}");
                    assert!(message.contains("truncated JPEG"), "{message}");
                }
                (None, other) => panic!("the truncated image did not fail as it should: {other:?}"),
            }
        }
        for ((got, want), (name, _)) in image.iter().zip(&reference.image).zip(&images) {
            let similarity = cosine(got, want);
            assert!(similarity >= IMAGE_COSINE, "{name}: cosine {similarity}");
        }

        let worst = |got: &[Vec<f32>], want: &[Vec<f32>]| {
            got.iter()
                .zip(want)
                .map(|(g, w)| cosine(g, w))
                .fold(f32::INFINITY, f32::min)
        };
        eprintln!(
            "worst cosine to the reference: text {:.7}, images {:.7}",
            worst(&text, &reference.text),
            worst(&image, &reference.image)
        );

        // Zero-shot ranking: for every image, the sentences in the reference's order.
        for ((embedding, want), (name, _)) in image.iter().zip(&reference.ranking).zip(&images) {
            let mut order: Vec<usize> = (0..text.len()).collect();
            order.sort_by(|&a, &b| {
                cosine(embedding, &text[b]).total_cmp(&cosine(embedding, &text[a]))
            });
            assert_eq!(&order, want, "{name}: sentences ranked differently");
        }

        // The dynamic batcher really grouped the burst somewhere in the pipeline:
        // a batch of more than one image ran after the counts taken above.
        let mut largest = 0;
        for (name, before) in image_models.iter().zip(&before) {
            for (size, count) in batch_counts(&client, name).await {
                if count > before.get(&size).copied().unwrap_or(0) {
                    largest = largest.max(size);
                }
            }
        }
        assert!(largest > 1, "no batch of more than one image formed");
        assert!(client.server_live().await.unwrap());
    });
}

/// How many batches of each size `model` has run, from Triton's statistics.
async fn batch_counts(client: &Triton, model: &str) -> std::collections::HashMap<u64, u64> {
    let mut counts = std::collections::HashMap::new();
    for stats in client.model_statistics(model).await.unwrap() {
        for batch in stats.batch_stats {
            let executions = batch.compute_infer.map_or(0, |d| d.count);
            *counts.entry(batch.batch_size).or_default() += executions;
        }
    }
    counts
}
