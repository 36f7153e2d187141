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

/// `--onnx-dir` with `--model NAME` and the given extra arguments, into a fresh folder.
fn named(dir: &std::path::Path, model: &str, extra: &[&str]) -> std::process::Output {
    let out = tempfile::tempdir().unwrap();
    let repo = out.path().join("r");
    let mut args = vec![
        "--onnx-dir",
        dir.to_str().unwrap(),
        "--model",
        model,
        "--out",
        repo.to_str().unwrap(),
        "--gpus",
        "none",
    ];
    args.extend_from_slice(extra);
    let library = common::ort_library().to_str().unwrap().to_owned();
    args.extend(["--ort-library", &library]);
    common::repo_gen(&args)
}

#[test]
fn a_named_model_must_be_what_the_files_are() {
    let tokenizer = fixture("text/tokenizer.json");
    let tokenizer = tokenizer.to_str().unwrap();
    // The fixture is a 224-pixel, 77-token CLIP: RN50x4 takes 288 pixels.
    let output = named(
        &fixture("cas-onnx"),
        "RN50x4::openai",
        &["--tokenizer", tokenizer],
    );
    let said = stderr(&output);
    assert!(!output.status.success(), "{said}");
    assert!(
        said.contains("visual.onnx takes 224-pixel images, the model named takes 288"),
        "{said}"
    );
    // ViT-L-14 takes 224 pixels and 77 tokens too, but embeds into 768 dimensions.
    let output = named(
        &fixture("cas-onnx"),
        "ViT-L-14::openai",
        &["--tokenizer", tokenizer],
    );
    let said = stderr(&output);
    assert!(!output.status.success(), "{said}");
    assert!(
        said.contains("textual.onnx embeds into 512 dimensions, ViT-L-14::openai into 768"),
        "{said}"
    );
    // An unknown name is refused as such, before the files are read.
    let output = named(
        &fixture("cas-onnx"),
        "ViT-Q-99::nobody",
        &["--tokenizer", tokenizer],
    );
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("ViT-Q-99::nobody"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn without_a_tokenizer_a_named_model_fetches_its_own() {
    // Offline with an empty cache: the fetch is attempted and names the file.
    let cache = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_repo-gen"))
        .args(["--onnx-dir", fixture("cas-onnx").to_str().unwrap()])
        .args(["--model", "ViT-B-32::openai", "--gpus", "none", "--out"])
        .arg(out.path().join("r"))
        .env("HF_HUB_OFFLINE", "1")
        .env("HF_HUB_CACHE", cache.path())
        .output()
        .unwrap();
    let said = stderr(&output);
    assert!(!output.status.success(), "{said}");
    assert!(
        said.contains("ViT-B-32::openai's tokenizer") && said.contains("tokenizer.json"),
        "{said}"
    );
}

/// A copy of the fixture whose text length and image side are dynamic, as
/// an export with more `dynamic_axes` writes them.
fn dynamic_copy() -> tempfile::TempDir {
    use clip_export::proto::tensor_shape_proto::dimension::Value;
    use prost::Message;
    let dir = tempfile::tempdir().unwrap();
    for (name, dims) in [
        (file::TEXTUAL_ONNX, &[1usize][..]),
        (file::VISUAL_ONNX, &[2, 3][..]),
    ] {
        let bytes = std::fs::read(fixture("cas-onnx").join(name)).unwrap();
        let mut proto = clip_export::proto::ModelProto::decode(bytes.as_slice()).unwrap();
        let graph = proto.graph.as_mut().unwrap();
        for input in &mut graph.input {
            let Some(clip_export::proto::type_proto::Value::TensorType(tensor)) =
                input.r#type.as_mut().and_then(|t| t.value.as_mut())
            else {
                panic!("{name}: input without a tensor type");
            };
            let shape = tensor.shape.as_mut().unwrap();
            for &i in dims {
                shape.dim[i].value = Some(Value::DimParam(format!("d{i}")));
            }
        }
        std::fs::write(dir.path().join(name), proto.encode_to_vec()).unwrap();
    }
    dir
}

#[test]
fn a_named_model_gives_the_sizes_files_leave_dynamic() {
    let dynamic = dynamic_copy();
    let tokenizer = fixture("text/tokenizer.json");
    let out = tempfile::tempdir().unwrap();
    let repo = out.path().join("r");
    let base = [
        "--onnx-dir",
        dynamic.path().to_str().unwrap(),
        "--tokenizer",
        tokenizer.to_str().unwrap(),
        "--out",
        repo.to_str().unwrap(),
        "--gpus",
        "none",
    ];
    let output = common::repo_gen(&base);
    let said = stderr(&output);
    assert!(!output.status.success(), "{said}");
    assert!(said.contains("--model NAME"), "{said}");

    let mut args = base.to_vec();
    args.extend(["--model", "ViT-B-32::openai", "--runtime", "tensorrt"]);
    repo_gen_ok(&args);
    let text = config(&repo, model::TEXT_ENCODER);
    declares_both_text_inputs(&text);
    assert!(
        text.contains("key: \"model_name\"\n  value: { string_value: \"ViT-B-32::openai\" }"),
        "{text}"
    );
    let image = config(&repo, model::IMAGE_ENCODER);
    assert!(image.contains("dims: [ 3, 224, 224 ]"), "{image}");
    let script = std::fs::read_to_string(repo.join(file::TRTEXEC_SCRIPT)).unwrap();
    assert!(
        script.contains("--minShapes=input_ids:1x77,attention_mask:1x77")
            && script.contains("--minShapes=pixel_values:1x3x224x224"),
        "{script}"
    );
}

/// A copy of the fixture whose text encoder keeps its weights in
/// `location` (relative to textual.onnx), as large exports do.
fn external_copy(location: &str) -> tempfile::TempDir {
    use clip_export::proto::tensor_proto::DataLocation;
    use clip_export::proto::StringStringEntryProto;
    use prost::Message;
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(fixture("cas-onnx").join(file::TEXTUAL_ONNX)).unwrap();
    let mut proto = clip_export::proto::ModelProto::decode(bytes.as_slice()).unwrap();
    let mut data = Vec::new();
    for tensor in &mut proto.graph.as_mut().unwrap().initializer {
        let Some(raw) = tensor.raw_data.take_if(|raw| raw.len() >= 1024) else {
            continue;
        };
        let entry = |key: &str, value: String| StringStringEntryProto {
            key: Some(key.into()),
            value: Some(value),
        };
        tensor.data_location = Some(DataLocation::External as i32);
        tensor.external_data = vec![
            entry("location", location.to_owned()),
            entry("offset", data.len().to_string()),
            entry("length", raw.len().to_string()),
        ];
        data.extend_from_slice(&raw);
    }
    assert!(!data.is_empty());
    let target = dir.path().join(location);
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(target, data).unwrap();
    std::fs::write(dir.path().join(file::TEXTUAL_ONNX), proto.encode_to_vec()).unwrap();
    std::fs::copy(
        fixture("cas-onnx").join(file::VISUAL_ONNX),
        dir.path().join(file::VISUAL_ONNX),
    )
    .unwrap();
    dir
}

#[test]
fn external_data_files_go_into_the_repository_beside_the_model() {
    let files = external_copy("weights/textual.data");
    let tokenizer = fixture("text/tokenizer.json");
    let out = tempfile::tempdir().unwrap();
    let repo = out.path().join("r");
    repo_gen_ok(&[
        "--onnx-dir",
        files.path().to_str().unwrap(),
        "--tokenizer",
        tokenizer.to_str().unwrap(),
        "--out",
        repo.to_str().unwrap(),
        "--gpus",
        "none",
    ]);
    let version = repo.join(model::TEXT_ENCODER).join("1");
    assert_eq!(
        std::fs::read(version.join("weights/textual.data")).unwrap(),
        std::fs::read(files.path().join("weights/textual.data")).unwrap()
    );
    // The written model loads and embeds as the original does.
    let runtime = clip_export::OrtRuntime::load(Some(common::ort_library()), "test").unwrap();
    let ids = vec![0i64; 77];
    let mask = vec![1i64; 77];
    let embed = |path: &std::path::Path| {
        let mut session = runtime.session_from_file(path).unwrap();
        session.embed_tokens(&ids, Some(&mask), 1).unwrap().data
    };
    assert_eq!(
        embed(&version.join(file::ONNX_MODEL)),
        embed(&fixture("cas-onnx").join(file::TEXTUAL_ONNX))
    );

    // A location outside the folder is refused before anything is written.
    let escaping = external_copy("../outside.data");
    let output = common::repo_gen(&[
        "--onnx-dir",
        escaping.path().to_str().unwrap(),
        "--tokenizer",
        tokenizer.to_str().unwrap(),
        "--out",
        out.path().join("r2").to_str().unwrap(),
    ]);
    std::fs::remove_file(escaping.path().join("../outside.data")).unwrap();
    let said = stderr(&output);
    assert!(!output.status.success(), "{said}");
    assert!(said.contains("outside the model's folder"), "{said}");
}
