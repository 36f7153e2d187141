//! `repo-gen --random-init`: a registry model's real architecture with
//! seeded random weights, exported, verified and written with no download.

mod common;

use clip_contract::{file, model, param};
use clip_export::{ClipWeights, OnnxModel, OrtRuntime};
use common::*;
use repo_gen::registry;

fn tokenizer() -> String {
    clip_test_support::workspace_root()
        .join("tests/fixtures/text/tokenizer.json")
        .to_str()
        .unwrap()
        .to_owned()
}

#[test]
fn every_registry_model_has_a_valid_architecture() {
    for spec in registry::all() {
        spec.architecture
            .validate()
            .unwrap_or_else(|e| panic!("{}: {e}", spec.name));
    }
}

#[test]
fn the_same_seed_gives_the_same_weights() {
    // A registry model's architecture made small enough for a debug build;
    // ClipWeights::random's own tests cover the statistics.
    let mut arch = registry::lookup("ViT-B-32::openai").unwrap().architecture;
    arch.text.layers = 1;
    arch.vision.layers = 1;
    let a = ClipWeights::random(&arch, 11).unwrap();
    assert_eq!(a, ClipWeights::random(&arch, 11).unwrap());
    assert_ne!(a.vision, ClipWeights::random(&arch, 12).unwrap().vision);
}

/// ViT-B-32 at full size: 150M random parameters exported, run once in ONNX
/// Runtime by repo-gen, then again here on a batch of two.
#[test]
fn vit_b_32_random_init_serves_the_real_shapes_and_warns() {
    random_init_serves_the_real_shapes("ViT-B-32::openai", "512", 224);
}

/// RN50 at full size: the ResNet image tower (folded batch norms, attention
/// pool) and a 512-wide text tower, 1024-d.
#[test]
fn rn50_random_init_serves_the_real_shapes_and_warns() {
    random_init_serves_the_real_shapes("RN50::openai", "1024", 224);
}

fn random_init_serves_the_real_shapes(name: &str, dim: &str, size: usize) {
    let out = tempfile::tempdir().unwrap();
    let repo = out.path().join("r");
    let tokenizer = tokenizer();
    let output = repo_gen_ok(&[
        "--model",
        name,
        "--random-init",
        "--seed",
        "3",
        "--tokenizer",
        &tokenizer,
        "--out",
        repo.to_str().unwrap(),
        "--gpus",
        "none",
    ]);
    let text = stderr(&output);
    assert!(
        text.contains("RANDOM weights") && text.contains("meaningless"),
        "{text}"
    );

    let config =
        std::fs::read_to_string(repo.join(model::IMAGE_ENCODER).join("config.pbtxt")).unwrap();
    let size_text = size.to_string();
    for (key, value) in [
        (param::EMBEDDING_DIM, dim),
        (param::IMAGE_SIZE, size_text.as_str()),
        (param::CONTEXT_LENGTH, "77"),
    ] {
        let line = format!("key: \"{key}\"\n  value: {{ string_value: \"{value}\" }}");
        assert!(config.contains(&line), "{line} not in\n{config}");
    }
    assert!(config.contains("random-init, seed 3"), "{config}");
    assert!(repo
        .join(model::TEXT_PREPROCESS)
        .join("1")
        .join("tokenizer.json")
        .is_file());

    let runtime = OrtRuntime::load(Some(ort_library()), "the test's library").unwrap();
    let onnx = OnnxModel {
        model: std::fs::read(
            repo.join(model::IMAGE_ENCODER)
                .join("1")
                .join(file::ONNX_MODEL),
        )
        .unwrap(),
        external_data: None,
    };
    let mut visual = runtime.session(&onnx).unwrap();
    let pixels = vec![0.25f32; 2 * 3 * size * size];
    let embeddings = visual.embed_images(&pixels, 2, size).unwrap();
    assert_eq!(embeddings.shape, [2, dim.parse::<i64>().unwrap()]);
    assert!(embeddings.data.iter().all(|x| x.is_finite()));
}

#[test]
fn random_init_needs_a_model_and_a_tokenizer() {
    let out = tempfile::tempdir().unwrap();
    let repo = out.path().join("r");
    let repo = repo.to_str().unwrap();
    let output = repo_gen(&[
        "--model",
        "ViT-B-32::openai",
        "--random-init",
        "--out",
        repo,
    ]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("--tokenizer"),
        "{}",
        stderr(&output)
    );
    let tokenizer = tokenizer();
    let output = repo_gen(&["--random-init", "--tokenizer", &tokenizer, "--out", repo]);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("--model"), "{}", stderr(&output));
    let output = repo_gen(&[
        "--model",
        "ViT-B-32::openai",
        "--random-init",
        "--tokenizer",
        "/nonexistent/tokenizer.json",
        "--out",
        repo,
    ]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("tests/fixtures/text/tokenizer.json"),
        "{}",
        stderr(&output)
    );
    assert!(!out.path().join("r").exists());
}
