//! `--pixel-path`: `clip_image_pixels`, the image encoder taking UINT8
//! `[S, S, 3]` crops, with the settings a client needs to crop as the
//! server's image preprocessing would; and `clip_image_decoded`, an ensemble
//! taking decoded images of any size, resized on the server. (Their
//! embeddings against the bytes path: tests/pixel_path.rs, in the real
//! server.)

mod common;

use clip_contract::{file, model, param, tensor};
use common::*;

fn config(repo: &std::path::Path, name: &str) -> String {
    std::fs::read_to_string(repo.join(name).join("config.pbtxt")).unwrap()
}

fn parameter(key: &str, value: &str) -> String {
    format!("key: \"{key}\"\n  value: {{ string_value: \"{value}\" }}")
}

#[test]
fn the_pixel_model_takes_uint8_crops_and_carries_the_crop_settings() {
    let generated = generate(
        &tiny_clip().join("quick_gelu"),
        &["--runtime", "ort", "--gpus", "none", "--pixel-path"],
    );
    let repo = &generated.repo;
    let pixels = config(repo, model::IMAGE_PIXELS);
    for expected in [
        format!("name: \"{}\"", tensor::PIXELS),
        "data_type: TYPE_UINT8".to_owned(),
        "dims: [ 224, 224, 3 ]".to_owned(),
        parameter(param::KIND, "onnx_encoder"),
        parameter(param::MAX_PIXELS, "40000000"),
        parameter(param::REDUCED_SCALE_DECODE, "true"),
        parameter(param::IMAGE_SIZE, "224"),
        // Zeros are a valid crop: its warmup runs at the largest batch.
        "zero_data: true".to_owned(),
    ] {
        assert!(pixels.contains(&expected), "{expected:?} in\n{pixels}");
    }
    assert!(repo
        .join(model::IMAGE_PIXELS)
        .join("1")
        .join(file::ONNX_MODEL)
        .is_file());
    let text = stderr(&generated.output);
    assert!(text.contains("wrote 9 models"), "{text}");

    let decoded = config(repo, model::DECODED_PREPROCESS);
    for expected in [
        format!("name: \"{}\"", tensor::PIXELS),
        "data_type: TYPE_UINT8".to_owned(),
        "dims: [ -1, -1, 3 ]".to_owned(),
        parameter(param::KIND, "image_preprocess"),
    ] {
        assert!(decoded.contains(&expected), "{expected:?} in\n{decoded}");
    }
    let ensemble = config(repo, model::DECODED_ENSEMBLE);
    for expected in [
        format!("model_name: \"{}\"", model::DECODED_PREPROCESS),
        format!("model_name: \"{}\"", model::IMAGE_ENCODER),
        "dims: [ -1, -1, 3 ]".to_owned(),
    ] {
        assert!(ensemble.contains(&expected), "{expected:?} in\n{ensemble}");
    }

    // Without the flag, the six models only.
    let plain = generate(
        &tiny_clip().join("quick_gelu"),
        &["--runtime", "ort", "--gpus", "none", "--no-warmup"],
    );
    assert!(!plain.repo.join(model::IMAGE_PIXELS).exists());
}

#[test]
fn tensorrt_builds_a_plan_for_the_pixel_model_too() {
    let generated = generate(
        &tiny_clip().join("quick_gelu"),
        &[
            "--runtime",
            "tensorrt",
            "--gpus",
            "none",
            "--no-warmup",
            "--pixel-path",
        ],
    );
    let script = std::fs::read_to_string(generated.repo.join(file::TRTEXEC_SCRIPT)).unwrap();
    assert!(
        script.contains(&format!("--maxShapes={}:32x224x224x3", tensor::PIXELS)),
        "{script}"
    );
}

#[test]
fn onnx_dir_files_cannot_have_a_pixel_path() {
    let out = tempfile::tempdir().unwrap();
    let repo = out.path().join("r");
    let output = repo_gen(&[
        "--onnx-dir",
        out.path().to_str().unwrap(),
        "--out",
        repo.to_str().unwrap(),
        "--pixel-path",
    ]);
    assert!(!output.status.success());
    let text = stderr(&output);
    assert!(
        text.contains("--pixel-path exports its image encoder from weights"),
        "{text}"
    );
    assert!(!repo.exists());
}
