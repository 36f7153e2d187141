//! The repo-gen binary end to end on the tiny-clip fixtures: the tree it
//! writes, the configs, that the exported model.onnx files give the
//! fixtures' reference embeddings, and that bad input leaves nothing behind.

mod common;

use std::path::Path;

use clip_contract::{file, kind, model, param, triton};
use clip_export::{OnnxModel, OrtRuntime};
use common::*;
use repo_gen::registry;
use serde_json::Value;

const TOLERANCE: f32 = 1e-4;

fn manifest() -> Value {
    clip_test_support::tiny_clip::manifest().clone()
}

fn read_f32(entry: &Value) -> Vec<f32> {
    clip_test_support::tiny_clip::Tensor::read(entry).f32s()
}

/// Runs the repository's two model.onnx files on the fixture inputs and
/// compares with the reference embeddings of `variant`.
fn check_parity(repo: &Path, prefix: &str, variant: &str) {
    let manifest = manifest();
    let runtime = OrtRuntime::load(Some(ort_library()), "the test's library").unwrap();
    let load = |name: &str| {
        let path = repo
            .join(format!("{prefix}{name}"))
            .join("1")
            .join(file::ONNX_MODEL);
        runtime
            .session(&OnnxModel {
                model: std::fs::read(&path).unwrap(),
                external_data: None,
            })
            .unwrap()
    };
    let compare = |got: &[f32], want: &[f32], what: &str| {
        assert_eq!(got.len(), want.len(), "{what}");
        let worst = got
            .iter()
            .zip(want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst <= TOLERANCE, "{what}: max |diff| {worst}");
    };

    let ids_entry = &manifest["inputs"]["input_ids"];
    let ids: Vec<i64> = std::fs::read(tiny_clip().join(ids_entry["file"].as_str().unwrap()))
        .unwrap()
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let rows = ids_entry["shape"][0].as_u64().unwrap() as usize;
    let got = load(model::TEXT_ENCODER).embed_text(&ids, rows).unwrap();
    let want = read_f32(&manifest["variants"][variant]["text_features"]);
    compare(&got.data, &want, &format!("{variant} text"));

    let px_entry = &manifest["inputs"]["pixel_values"];
    let pixels = read_f32(px_entry);
    let images = px_entry["shape"][0].as_u64().unwrap() as usize;
    let size = px_entry["shape"][2].as_u64().unwrap() as usize;
    let got = load(model::IMAGE_ENCODER)
        .embed_images(&pixels, images, size)
        .unwrap();
    let want = read_f32(&manifest["variants"][variant]["image_features"]);
    compare(&got.data, &want, &format!("{variant} image"));
}

fn expected_tree(prefix: &str, encoder_file: &str, extra: &[&str]) -> Vec<String> {
    let mut tree: Vec<String> = Vec::new();
    for name in [
        model::IMAGE_ENSEMBLE,
        model::IMAGE_ENCODER,
        model::IMAGE_PREPROCESS,
        model::TEXT_ENSEMBLE,
        model::TEXT_ENCODER,
        model::TEXT_PREPROCESS,
    ] {
        let dir = format!("{prefix}{name}");
        tree.push(format!("{dir}/"));
        tree.push(format!("{dir}/1/"));
        tree.push(format!("{dir}/config.pbtxt"));
        if name == model::TEXT_ENCODER || name == model::IMAGE_ENCODER {
            tree.push(format!("{dir}/1/{encoder_file}"));
        }
        if name == model::TEXT_PREPROCESS {
            tree.push(format!("{dir}/1/tokenizer.json"));
            tree.push(format!("{dir}/warmup/"));
            tree.push(format!("{dir}/warmup/sentence"));
        }
        if name == model::IMAGE_PREPROCESS {
            tree.push(format!("{dir}/warmup/"));
            tree.push(format!("{dir}/warmup/photo"));
        }
    }
    tree.extend(extra.iter().map(|s| (*s).to_owned()));
    tree.sort();
    tree
}

fn read(repo: &Path, name: &str) -> String {
    std::fs::read_to_string(repo.join(name).join("config.pbtxt")).unwrap()
}

fn parameter(key: &str, value: &str) -> String {
    format!("key: \"{key}\"\n  value: {{ string_value: \"{value}\" }}")
}

#[test]
fn quick_gelu_with_the_ort_runtime() {
    let Generated { out, repo, output } = generate(
        &tiny_clip().join("quick_gelu"),
        &["--runtime", "ort", "--gpus", "none"],
    );
    assert_eq!(tree(&repo), expected_tree("", file::ONNX_MODEL, &[]));
    // Nothing but the repository is left beside it.
    assert!(tree(out.path()).iter().all(|p| p.starts_with("r/")));
    assert!(
        stderr(&output).contains("wrote 6 models"),
        "{}",
        stderr(&output)
    );

    let encoder = read(&repo, model::TEXT_ENCODER);
    assert!(encoder.contains("backend: \"clip\""), "{encoder}");
    assert!(encoder.contains(&parameter(param::KIND, kind::ONNX_ENCODER)));
    assert!(encoder.contains(&parameter(param::EMBEDDING_DIM, "24")));
    assert!(encoder.contains(&parameter(param::MODEL_NAME, "quick_gelu")));
    assert!(encoder.contains(&parameter(param::LOGIT_SCALE, "2.65926")));
    assert!(encoder.contains(&parameter(
        param::ORT_LIBRARY,
        ort_library().to_str().unwrap()
    )));
    assert!(encoder.contains("name: \"INPUT_IDS\"\n    data_type: TYPE_INT64\n    dims: [ 77 ]"));
    // The config's vocabulary, so the backend refuses out-of-vocabulary ids.
    assert!(
        encoder.contains(&parameter(param::VOCAB_SIZE, "49408")),
        "{encoder}"
    );
    let image = read(&repo, model::IMAGE_ENCODER);
    assert!(
        !image.contains(&format!("key: \"{}\"", param::VOCAB_SIZE)),
        "{image}"
    );
    assert!(image
        .contains("name: \"PIXEL_VALUES\"\n    data_type: TYPE_FP32\n    dims: [ 3, 224, 224 ]"));
    assert!(image.contains("name: \"EMBEDDING\"\n    data_type: TYPE_FP32\n    dims: [ 24 ]"));
    // The fixture folder has no tokenizer_config.json to name a pad token, so
    // the config carries the transformers convention: pad with the end token.
    let text_preprocess = read(&repo, model::TEXT_PREPROCESS);
    assert!(
        text_preprocess.contains(&parameter(param::PAD_TOKEN_ID, "49407")),
        "{text_preprocess}"
    );
    let ensemble = read(&repo, model::TEXT_ENSEMBLE);
    assert!(ensemble.contains("platform: \"ensemble\""));
    assert!(ensemble.contains("model_name: \"clip_text_preprocess\""));
    for name in [
        model::TEXT_PREPROCESS,
        model::IMAGE_PREPROCESS,
        model::IMAGE_ENSEMBLE,
    ] {
        let config = read(&repo, name);
        for key in [
            param::MODEL_NAME,
            param::EMBEDDING_DIM,
            param::IMAGE_SIZE,
            param::CONTEXT_LENGTH,
            param::LOGIT_SCALE,
        ] {
            assert!(config.contains(&format!("key: \"{key}\"")), "{name}: {key}");
        }
    }
    check_parity(&repo, "", "quick_gelu");
}

#[test]
fn gelu_with_the_onnxruntime_backend_and_a_prefix() {
    let Generated {
        repo, out: _out, ..
    } = generate(
        &tiny_clip().join("gelu"),
        &[
            "--runtime",
            "onnxruntime",
            "--trt-accelerator",
            "--name-prefix",
            "tiny_",
            "--gpus",
            "0,1",
            "--instances",
            "3",
            "--max-batch-size",
            "16",
            "--preferred-batch-size",
            "4",
            "8",
        ],
    );
    assert_eq!(tree(&repo), expected_tree("tiny_", file::ONNX_MODEL, &[]));
    let encoder = read(&repo, "tiny_clip_image_encoder");
    assert!(encoder.contains(&format!("platform: \"{}\"", triton::PLATFORM_ONNXRUNTIME)));
    assert!(encoder.contains("name: \"tiny_clip_image_encoder\""));
    assert!(encoder.contains("gpu_execution_accelerator"));
    assert!(encoder.contains("value: \"FP32\""));
    assert!(
        encoder.contains("count: 2\n    kind: KIND_GPU\n    gpus: [ 0 ]"),
        "{encoder}"
    );
    assert!(
        encoder.contains("count: 1\n    kind: KIND_GPU\n    gpus: [ 1 ]"),
        "{encoder}"
    );
    assert!(encoder.contains("preferred_batch_size: [ 4, 8 ]"));
    assert!(!encoder.contains(&format!("key: \"{}\"", param::KIND)));
    // Only the clip backend's onnx_encoder reads vocab_size.
    let text_encoder = read(&repo, "tiny_clip_text_encoder");
    assert!(
        !text_encoder.contains(&format!("key: \"{}\"", param::VOCAB_SIZE)),
        "{text_encoder}"
    );
    let ensemble = read(&repo, "tiny_clip_image");
    assert!(ensemble.contains("model_name: \"tiny_clip_image_preprocess\""));
    assert!(ensemble.contains("model_name: \"tiny_clip_image_encoder\""));
    assert!(ensemble.contains("max_batch_size: 16"));
    // Preprocessing stays on the CPU.
    assert!(read(&repo, "tiny_clip_text_preprocess").contains("kind: KIND_CPU"));
    check_parity(&repo, "tiny_", "gelu");
}

/// The open_clip files of the gelu fixture, alone in a folder.
fn open_clip_folder() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let gelu = tiny_clip().join("gelu");
    for name in [
        "open_clip_config.json",
        "open_clip_model.safetensors",
        "tokenizer.json",
    ] {
        std::os::unix::fs::symlink(
            gelu.join(name).canonicalize().unwrap(),
            dir.path().join(name),
        )
        .unwrap();
    }
    dir
}

#[test]
fn open_clip_layout_with_the_tensorrt_runtime() {
    let weights = open_clip_folder();
    let Generated {
        repo,
        output,
        out: _out,
    } = generate(
        weights.path(),
        &[
            "--runtime",
            "tensorrt",
            "--gpus",
            "none",
            "--max-batch-size",
            "8",
            "--preferred-batch-size",
            "2,4",
        ],
    );
    assert!(stderr(&output).contains("loading"), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("open_clip layout"),
        "{}",
        stderr(&output)
    );
    assert!(
        stderr(&output).contains("build-tensorrt-plans.sh"),
        "{}",
        stderr(&output)
    );
    assert_eq!(
        tree(&repo),
        expected_tree("", file::ONNX_MODEL, &[file::TRTEXEC_SCRIPT])
    );
    // open_clip's tokenizer pads with 0.
    let text_preprocess = read(&repo, model::TEXT_PREPROCESS);
    assert!(
        text_preprocess.contains(&parameter(param::PAD_TOKEN_ID, "0")),
        "{text_preprocess}"
    );
    let encoder = read(&repo, model::TEXT_ENCODER);
    assert!(encoder.contains(&format!("platform: \"{}\"", triton::PLATFORM_TENSORRT)));
    // TensorRT needs the GPU even when --gpus none.
    assert!(encoder.contains("kind: KIND_GPU"), "{encoder}");
    let script = std::fs::read_to_string(repo.join(file::TRTEXEC_SCRIPT)).unwrap();
    assert!(
        script.contains(
            "\"$TRTEXEC\" --onnx=clip_text_encoder/1/model.onnx \
             --saveEngine=clip_text_encoder/1/model.plan --minShapes=INPUT_IDS:1x77 \
             --optShapes=INPUT_IDS:4x77 --maxShapes=INPUT_IDS:8x77\n"
        ),
        "{script}"
    );
    assert!(
        script.contains("--maxShapes=PIXEL_VALUES:8x3x224x224"),
        "{script}"
    );
    check_parity(&repo, "", "gelu");
}

#[test]
fn fp16_plans_and_accelerator_say_fp16() {
    let Generated {
        repo, out: _out, ..
    } = generate(
        &tiny_clip().join("quick_gelu"),
        &["--runtime", "tensorrt", "--dtype", "fp16", "--gpus", "0"],
    );
    let script = std::fs::read_to_string(repo.join(file::TRTEXEC_SCRIPT)).unwrap();
    assert_eq!(script.matches("--fp16").count(), 2, "{script}");
    // Inputs and outputs stay FP32 (the exporter casts inside the graph).
    let encoder = read(&repo, model::IMAGE_ENCODER);
    assert!(encoder.contains("data_type: TYPE_FP32\n    dims: [ 3, 224, 224 ]"));
}

// ---- bad input -------------------------------------------------------------

fn weights_arg() -> String {
    tiny_clip().join("quick_gelu").to_str().unwrap().to_owned()
}

#[test]
fn a_non_empty_out_is_refused_unless_force_and_force_keeps_other_models() {
    let out = tempfile::tempdir().unwrap();
    let repo = out.path();
    std::fs::create_dir(repo.join("other_model")).unwrap();
    std::fs::write(
        repo.join("other_model/config.pbtxt"),
        "name: \"other_model\"",
    )
    .unwrap();
    let w = weights_arg();
    let args = [
        "--weights",
        &w,
        "--out",
        repo.to_str().unwrap(),
        "--gpus",
        "none",
    ];
    let output = repo_gen(&args);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("is not empty"),
        "{}",
        stderr(&output)
    );
    assert!(stderr(&output).contains("--force"), "{}", stderr(&output));
    assert_eq!(tree(repo), ["other_model/", "other_model/config.pbtxt"]);

    let mut forced = args.to_vec();
    forced.push("--force");
    repo_gen_ok(&forced);
    repo_gen_ok(&forced); // again: same names are replaced
    let mut expected = expected_tree(
        "",
        file::ONNX_MODEL,
        &["other_model/", "other_model/config.pbtxt"],
    );
    expected.sort();
    assert_eq!(tree(repo), expected);
    // A second prefix shares the repository.
    forced.extend(["--name-prefix", "b_"]);
    repo_gen_ok(&forced);
    assert_eq!(
        tree(repo)
            .iter()
            .filter(|p| p.ends_with("config.pbtxt"))
            .count(),
        13
    );
    // No staging folders are left beside it.
    let parent = repo.parent().unwrap();
    let leftovers: Vec<_> = std::fs::read_dir(parent)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with(".repo-gen-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

fn fails_without_writing(args: &[&str], expect: &[&str]) {
    let out = tempfile::tempdir().unwrap();
    let repo = out.path().join("r");
    let mut all = args.to_vec();
    all.extend(["--out", repo.to_str().unwrap()]);
    let output = repo_gen(&all);
    assert!(!output.status.success(), "{args:?} succeeded");
    let text = stderr(&output);
    for needle in expect {
        assert!(text.contains(needle), "{args:?}: {needle:?} not in {text}");
    }
    assert!(
        tree(out.path()).is_empty(),
        "{args:?} left {:?}",
        tree(out.path())
    );
}

#[test]
fn escaping_names_are_refused() {
    let w = weights_arg();
    fails_without_writing(
        &["--weights", &w, "--name-prefix", "../evil_"],
        &["--name-prefix", "path separator"],
    );
    fails_without_writing(
        &["--weights", &w, "--name-prefix", "a/b"],
        &["--name-prefix"],
    );
    fails_without_writing(&["--weights", &w, "--name-prefix", "."], &["--name-prefix"]);
}

#[test]
fn bad_sources_give_clear_errors_and_write_nothing() {
    fails_without_writing(
        &["--model", "ViT-B-33::openai"],
        &["unknown model", "ViT-B-32::openai"],
    );
    fails_without_writing(
        &["--weights", "/nonexistent/weights"],
        &["--weights /nonexistent/weights", "does not exist"],
    );
    let empty = tempfile::tempdir().unwrap();
    fails_without_writing(
        &["--weights", empty.path().to_str().unwrap()],
        &["missing config.json", "missing tokenizer.json"],
    );
    // Weights whose shapes disagree with the config.
    let bad = tempfile::tempdir().unwrap();
    let quick = tiny_clip().join("quick_gelu");
    let mut config: Value =
        serde_json::from_str(&std::fs::read_to_string(quick.join("config.json")).unwrap()).unwrap();
    config["projection_dim"] = Value::from(32);
    std::fs::write(bad.path().join("config.json"), config.to_string()).unwrap();
    for name in ["model.safetensors", "tokenizer.json"] {
        std::os::unix::fs::symlink(
            quick.join(name).canonicalize().unwrap(),
            bad.path().join(name),
        )
        .unwrap();
    }
    fails_without_writing(
        &["--weights", bad.path().to_str().unwrap()],
        &["expected shape"],
    );
    // Unreadable weights.
    let garbage = tempfile::tempdir().unwrap();
    std::fs::copy(
        quick.join("config.json"),
        garbage.path().join("config.json"),
    )
    .unwrap();
    std::fs::copy(
        quick.join("tokenizer.json"),
        garbage.path().join("tokenizer.json"),
    )
    .unwrap();
    std::fs::write(garbage.path().join("model.safetensors"), b"not safetensors").unwrap();
    fails_without_writing(
        &["--weights", garbage.path().to_str().unwrap()],
        &["model.safetensors"],
    );
}

#[test]
fn without_onnx_runtime_the_error_names_the_install_script() {
    let w = weights_arg();
    fails_without_writing(
        &["--weights", &w],
        &["scripts/install-onnxruntime.sh", "--ort-library"],
    );
}

#[test]
fn ort_library_wins_over_ort_dylib_path() {
    let out = tempfile::tempdir().unwrap();
    let repo = out.path().join("r");
    let w = weights_arg();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_repo-gen"))
        .args(["--weights", &w, "--gpus", "none", "--out"])
        .arg(&repo)
        .arg("--ort-library")
        .arg(ort_library())
        .env("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let encoder = read(&repo, model::TEXT_ENCODER);
    assert!(encoder.contains(&parameter(
        param::ORT_LIBRARY,
        ort_library().to_str().unwrap()
    )));
    // Without the flag the variable is used, and named when it is wrong.
    fails_without_writing(&["--weights", &w], &["--ort-library"]);
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_repo-gen"))
        .args(["--weights", &w, "--gpus", "none", "--out"])
        .arg(out.path().join("s"))
        .env("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("ORT_DYLIB_PATH names /nonexistent/libonnxruntime.so"),
        "{}",
        stderr(&output)
    );
    // A relative path is written absolute: the backend would look for it
    // inside the version folder.
    let library = ort_library().canonicalize().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_repo-gen"))
        .args(["--weights", &w, "--gpus", "none", "--out"])
        .arg(out.path().join("relative"))
        .arg("--ort-library")
        .arg(library.file_name().unwrap())
        .current_dir(library.parent().unwrap())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let encoder = read(&out.path().join("relative"), model::TEXT_ENCODER);
    assert!(
        encoder.contains(&parameter(param::ORT_LIBRARY, library.to_str().unwrap())),
        "{encoder}"
    );
}

#[test]
fn settings_that_cannot_work_are_refused() {
    let w = weights_arg();
    fails_without_writing(
        &["--weights", &w, "--trt-accelerator"],
        &["--trt-accelerator", "--runtime onnxruntime"],
    );
    fails_without_writing(
        &[
            "--weights",
            &w,
            "--max-batch-size",
            "8",
            "--preferred-batch-size",
            "16",
        ],
        &["--preferred-batch-size 16"],
    );
    fails_without_writing(&["--weights", &w, "--max-batch-size", "0"], &["at least 1"]);
    fails_without_writing(&["--weights", &w, "--instances", "0"], &["at least 1"]);
    fails_without_writing(&["--weights", &w, "--gpus", "0,0"], &["twice"]);
    fails_without_writing(
        &["--weights", &w, "--model", "ViT-B-32::openai"],
        &["cannot be used with"],
    );
    fails_without_writing(&["--out-dir", "x"], &["unexpected argument"]);
}

#[test]
fn an_out_that_is_a_file_is_refused() {
    let out = tempfile::NamedTempFile::new().unwrap();
    let w = weights_arg();
    let output = repo_gen(&["--weights", &w, "--out", out.path().to_str().unwrap()]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("not a folder"),
        "{}",
        stderr(&output)
    );
}

// ---- --onnx-dir --------------------------------------------------------------

/// textual.onnx and visual.onnx as CLIP-as-service lays them out, made from
/// an exported repository.
fn onnx_folder(with_tokenizer: bool) -> (tempfile::TempDir, tempfile::TempDir) {
    let exported = tempfile::tempdir().unwrap();
    let repo = exported.path().join("r");
    let weights = weights_arg();
    repo_gen_ok(&[
        "--weights",
        &weights,
        "--out",
        repo.to_str().unwrap(),
        "--gpus",
        "none",
    ]);
    let dir = tempfile::tempdir().unwrap();
    for (model, name) in [
        (model::TEXT_ENCODER, file::TEXTUAL_ONNX),
        (model::IMAGE_ENCODER, file::VISUAL_ONNX),
    ] {
        std::fs::copy(
            repo.join(model).join("1").join(file::ONNX_MODEL),
            dir.path().join(name),
        )
        .unwrap();
    }
    if with_tokenizer {
        std::fs::copy(
            tiny_clip().join("quick_gelu/tokenizer.json"),
            dir.path().join("tokenizer.json"),
        )
        .unwrap();
    }
    (exported, dir)
}

#[test]
fn onnx_dir_goes_into_the_repository_as_it_is() {
    let (_exported, dir) = onnx_folder(true);
    let out = tempfile::tempdir().unwrap();
    let repo = out.path().join("r");
    repo_gen_ok(&[
        "--onnx-dir",
        dir.path().to_str().unwrap(),
        "--out",
        repo.to_str().unwrap(),
        "--runtime",
        "onnxruntime",
        "--gpus",
        "none",
    ]);
    assert_eq!(tree(&repo), expected_tree("", file::ONNX_MODEL, &[]));
    assert_eq!(
        std::fs::read(
            repo.join(model::TEXT_ENCODER)
                .join("1")
                .join(file::ONNX_MODEL)
        )
        .unwrap(),
        std::fs::read(dir.path().join(file::TEXTUAL_ONNX)).unwrap()
    );
    let encoder = read(&repo, model::TEXT_ENCODER);
    assert!(encoder.contains("dims: [ 77 ]"), "{encoder}");
    assert!(encoder.contains(&parameter(param::EMBEDDING_DIM, "24")));
    // clip-export's metadata carries logit_scale.
    assert!(
        encoder.contains(&parameter(param::LOGIT_SCALE, "2.65926")),
        "{encoder}"
    );
    assert!(read(&repo, model::IMAGE_ENCODER).contains("dims: [ 3, 224, 224 ]"));
    check_parity(&repo, "", "quick_gelu");
}

#[test]
fn onnx_dir_needs_a_tokenizer() {
    let (_exported, dir) = onnx_folder(false);
    let path = dir.path().to_str().unwrap();
    fails_without_writing(
        &["--onnx-dir", path],
        &["tokenizer.json", "--tokenizer FILE"],
    );
    fails_without_writing(
        &[
            "--onnx-dir",
            path,
            "--tokenizer",
            "/nonexistent/tokenizer.json",
        ],
        &["--tokenizer /nonexistent/tokenizer.json is not a file"],
    );
    let tokenizer = tiny_clip().join("quick_gelu/tokenizer.json");
    let out = tempfile::tempdir().unwrap();
    let repo = out.path().join("r");
    repo_gen_ok(&[
        "--onnx-dir",
        path,
        "--tokenizer",
        tokenizer.to_str().unwrap(),
        "--out",
        repo.to_str().unwrap(),
        "--gpus",
        "none",
    ]);
    assert!(repo.join("clip_text_preprocess/1/tokenizer.json").is_file());
    // ONNX files name no vocabulary; the ort runtime's text encoder gets the registry's.
    let encoder = read(&repo, model::TEXT_ENCODER);
    assert!(
        encoder.contains(&parameter(
            param::VOCAB_SIZE,
            &registry::VOCAB_SIZE.to_string()
        )),
        "{encoder}"
    );

    let empty = tempfile::tempdir().unwrap();
    fails_without_writing(
        &["--onnx-dir", empty.path().to_str().unwrap()],
        &["textual.onnx", "visual.onnx"],
    );
    fails_without_writing(
        &["--tokenizer", "x.json", "--weights", "y"],
        &["--onnx-dir"],
    );
}
