//! CLIP-as-service's ONNX files as they are: `repo-gen --onnx-dir` on a
//! textual.onnx taking INT32 `input_ids` and `attention_mask` and a
//! visual.onnx taking `pixel_values` (tests/fixtures/cas-onnx, exported with
//! torch.onnx from open_clip by scripts/fixtures/cas_onnx.py), served by the
//! real tritonserver with the `clip` backend: raw sentences and image files
//! come back as open_clip's own pipeline embeds them, and a bad element, in
//! any position of a request sharing a batch, fails its request alone;
//! `clip-client verify` holds the server to the probes repo-gen ran
//! through the files in ONNX Runtime. With `--center-crop torchvision` the
//! images come back as open_clip's own transform embeds them.

use clip_client::{cosine, Triton};
use clip_contract::{model, tensor};
use harness::fixture;
use harness::fixtures::{cas_onnx, end_to_end_from};
use harness::grpc::{assert_serves, assert_verified, embed};
use harness::server::{onnxruntime_library, repo_gen, Server};

const TEXT_COSINE: f32 = 0.9999;
const IMAGE_COSINE: f32 = 0.999;

fn generate(out: &std::path::Path, extra: &[&str]) {
    generate_from("cas-onnx", "text/tokenizer.json", out, extra);
}

/// repo-gen on the `files` fixture folder with `tokenizer`, into `out`.
fn generate_from(files: &str, tokenizer: &str, out: &std::path::Path, extra: &[&str]) {
    let status = std::process::Command::new(repo_gen())
        .arg("--onnx-dir")
        .arg(fixture(files))
        .arg("--tokenizer")
        .arg(fixture(tokenizer))
        .arg("--out")
        .arg(out)
        .args(["--runtime", "ort", "--gpus", "none"])
        // A long batching window, so concurrent requests share batches.
        .args(["--max-queue-delay-us", "200000"])
        .arg("--ort-library")
        .arg(onnxruntime_library())
        .args(extra)
        .status()
        .expect("run repo-gen");
    assert!(status.success(), "repo-gen failed");
}

#[test]
fn clip_as_service_onnx_files_serve_open_clip_embeddings() {
    let reference = cas_onnx();
    let out = tempfile::tempdir().unwrap();
    let repository = out.path().join("repository");
    generate(&repository, &[]);
    let config =
        |name: &str| std::fs::read_to_string(repository.join(name).join("config.pbtxt")).unwrap();
    // The preprocessing emits what the file takes: INT32 ids and a mask.
    let preprocess = config(model::TEXT_PREPROCESS);
    for expected in ["\"INPUT_IDS\"", "\"ATTENTION_MASK\"", "TYPE_INT32"] {
        assert!(preprocess.contains(expected), "{preprocess}");
    }
    assert!(!preprocess.contains("TYPE_INT64"), "{preprocess}");
    let ensemble = config(model::TEXT_ENSEMBLE);
    for expected in [
        "key: \"input_ids\" value: \"INPUT_IDS\"",
        "key: \"attention_mask\" value: \"ATTENTION_MASK\"",
        "key: \"output\" value: \"EMBEDDING\"",
    ] {
        assert!(ensemble.contains(expected), "{ensemble}");
    }

    let server = Server::start(&repository);
    harness::runtime().block_on(assert_serves(
        &server.grpc_url,
        &reference,
        (TEXT_COSINE, IMAGE_COSINE),
    ));
}

/// `--model` names the files and `--center-crop torchvision` crops as
/// open_clip's (and CLIP-as-service's) transform does: every photo within
/// cosine 0.999 of open_clip's own pipeline, including the one whose
/// transformers crop lies a pixel away.
#[test]
fn the_torchvision_crop_serves_open_clip_pipeline_embeddings() {
    let reference: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("cas-onnx/reference.json")).unwrap())
            .unwrap();
    let rows =
        |key: &str| -> Vec<Vec<f32>> { serde_json::from_value(reference[key].clone()).expect(key) };
    let open_clip = rows("open_clip_image_embeddings");
    let crops: Vec<f32> =
        serde_json::from_value(reference["open_clip_transform_cosine_to_reference"].clone())
            .unwrap();
    // The fixture tells the crops apart, so this test can fail.
    assert!(crops.iter().any(|&c| c < IMAGE_COSINE), "{crops:?}");

    let out = tempfile::tempdir().unwrap();
    let repository = out.path().join("repository");
    generate(
        &repository,
        &[
            "--model",
            "ViT-B-32::openai",
            "--center-crop",
            "torchvision",
        ],
    );
    let images = cas_onnx().images;
    let server = Server::start(&repository);
    harness::runtime().block_on(async {
        let client = Triton::connect(&server.grpc_url).await.expect("connect");
        let files: Vec<Vec<u8>> = images.iter().map(|p| std::fs::read(p).unwrap()).collect();
        let files: Vec<&[u8]> = files.iter().map(Vec::as_slice).collect();
        let got = embed(&client, model::IMAGE_ENSEMBLE, tensor::IMAGE, &files)
            .await
            .unwrap();
        assert_eq!(got.len(), open_clip.len());
        for ((path, got), want) in images.iter().zip(&got).zip(&open_clip) {
            let similarity = cosine(got, want);
            assert!(
                similarity >= IMAGE_COSINE,
                "{}: cosine {similarity} to open_clip's pipeline",
                path.display()
            );
        }
        // repo-gen's probes went through the same crop.
        assert_verified(&server.grpc_url, 0.99999).await;
    });
}

/// CLIP-as-service's M-CLIP files (tests/fixtures/cas-mclip-onnx: INT32 ids
/// and mask of a dynamic length, made by scripts/fixtures/cas_mclip_onnx.py)
/// named with `--model`: the registry gives the tokenizer family and the
/// context, and multilingual sentences come back as transformers' tokenizer
/// and M-CLIP's module embed them.
#[test]
fn clip_as_service_mclip_files_serve_multilingual_embeddings() {
    let reference = end_to_end_from("cas-mclip-onnx/reference.json");
    let out = tempfile::tempdir().unwrap();
    let repository = out.path().join("repository");
    generate_from(
        "cas-mclip-onnx",
        "text/hf/xlmr/tokenizer.json",
        &repository,
        &["--model", "M-CLIP/XLM-Roberta-Large-Vit-B-32"],
    );
    let preprocess =
        std::fs::read_to_string(repository.join(model::TEXT_PREPROCESS).join("config.pbtxt"))
            .unwrap();
    for expected in [
        "key: \"tokenizer_family\"\n  value: { string_value: \"hf\" }",
        "name: \"ATTENTION_MASK\"\n    data_type: TYPE_INT32\n    dims: [ 77 ]",
    ] {
        assert!(preprocess.contains(expected), "{preprocess}");
    }

    let server = Server::start(&repository);
    harness::runtime().block_on(assert_serves(
        &server.grpc_url,
        &reference,
        (TEXT_COSINE, IMAGE_COSINE),
    ));
}
