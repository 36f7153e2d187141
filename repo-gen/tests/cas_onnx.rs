//! `--onnx-dir` on CLIP-as-service's signatures (tests/fixtures/cas-onnx:
//! INT32 `input_ids` and `attention_mask`, `pixel_values`, an output named
//! `output`): every runtime's configs take the files' tensors as they are,
//! the text preprocessing emits what the file takes, and the ensemble wires
//! both text tensors. Serving them is tests/cas_onnx.rs in the workspace tests.

mod common;

use clip_contract::{file, model};
use clip_test_support::fixture;
use common::{repo_gen_ok, stderr};

fn generate(runtime: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let out = tempfile::tempdir().unwrap();
    let repo = out.path().join("r");
    let tokenizer = fixture("text/tokenizer.json");
    let output = repo_gen_ok(&[
        "--onnx-dir",
        fixture("cas-onnx").to_str().unwrap(),
        "--tokenizer",
        tokenizer.to_str().unwrap(),
        "--out",
        repo.to_str().unwrap(),
        "--runtime",
        runtime,
        "--gpus",
        "none",
    ]);
    eprintln!("{}", stderr(&output));
    (out, repo)
}

fn config(repo: &std::path::Path, name: &str) -> String {
    std::fs::read_to_string(repo.join(name).join("config.pbtxt")).unwrap()
}

/// The two text inputs, INT32 [77] each, as a config declares them.
fn declares_both_text_inputs(config: &str) {
    for name in ["input_ids", "attention_mask"] {
        let declared = format!("name: \"{name}\"\n    data_type: TYPE_INT32\n    dims: [ 77 ]");
        assert!(config.contains(&declared), "{name} missing:\n{config}");
    }
}

#[test]
fn every_runtime_takes_the_files_two_text_inputs() {
    for runtime in ["ort", "onnxruntime"] {
        let (_out, repo) = generate(runtime);
        let encoder = config(&repo, model::TEXT_ENCODER);
        declares_both_text_inputs(&encoder);
        assert!(encoder.contains("name: \"output\""), "{encoder}");
        // Warmup: zero ids, and a mask of ones (an all-zero mask is refused).
        assert!(
            encoder.contains("key: \"attention_mask\"")
                && encoder.contains("input_data_file: \"attention_mask_ones\""),
            "{encoder}"
        );
        let ones = std::fs::read(
            repo.join(model::TEXT_ENCODER)
                .join("warmup/attention_mask_ones"),
        )
        .unwrap();
        assert_eq!(ones, 1i32.to_le_bytes().repeat(77));
        let preprocess = config(&repo, model::TEXT_PREPROCESS);
        for output in ["INPUT_IDS", "ATTENTION_MASK"] {
            let declared =
                format!("name: \"{output}\"\n    data_type: TYPE_INT32\n    dims: [ 77 ]");
            assert!(preprocess.contains(&declared), "{runtime}: {preprocess}");
        }
        let ensemble = config(&repo, model::TEXT_ENSEMBLE);
        assert!(
            ensemble.contains("output_map { key: \"ATTENTION_MASK\" value: \"ATTENTION_MASK\" }")
                && ensemble
                    .contains("input_map { key: \"attention_mask\" value: \"ATTENTION_MASK\" }"),
            "{ensemble}"
        );
        // The files go in as they are.
        assert_eq!(
            std::fs::read(
                repo.join(model::TEXT_ENCODER)
                    .join("1")
                    .join(file::ONNX_MODEL)
            )
            .unwrap(),
            std::fs::read(fixture("cas-onnx").join(file::TEXTUAL_ONNX)).unwrap()
        );
        assert!(config(&repo, model::IMAGE_ENCODER).contains("name: \"pixel_values\""));
    }

    // TensorRT: trtexec gets a shape for each input.
    let (_out, repo) = generate("tensorrt");
    declares_both_text_inputs(&config(&repo, model::TEXT_ENCODER));
    let script = std::fs::read_to_string(repo.join(file::TRTEXEC_SCRIPT)).unwrap();
    for expected in [
        "--minShapes=input_ids:1x77,attention_mask:1x77",
        "--maxShapes=input_ids:32x77,attention_mask:32x77",
    ] {
        assert!(script.contains(expected), "{script}");
    }
}
