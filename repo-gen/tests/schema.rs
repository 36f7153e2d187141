//! Every config.pbtxt repo-gen writes parses as protobuf text format against
//! Triton's model configuration schema (`inference.ModelConfig`, this
//! project's subset of model_config.proto, in client/proto/): the golden files,
//! and whole repositories for every runtime, with and without a name
//! prefix, with and without preferred batch sizes. An unknown field or a
//! bad enum value fails the parse; the negative tests show it.

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::*;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, ReflectMessage, Value};

fn model_config() -> MessageDescriptor {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    let pool = POOL.get_or_init(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../client/proto");
        protox::Compiler::new([dir])
            .unwrap()
            .include_imports(true)
            .open_file("model_config.proto")
            .unwrap()
            .descriptor_pool()
    });
    pool.get_message_by_name("inference.ModelConfig")
        .expect("inference.ModelConfig")
}

fn parse(text: &str) -> Result<DynamicMessage, String> {
    DynamicMessage::parse_text_format(model_config(), text).map_err(|e| e.to_string())
}

fn parse_file(path: &Path) -> DynamicMessage {
    let text = std::fs::read_to_string(path).unwrap();
    parse(&text).unwrap_or_else(|e| panic!("{}: {e}\n{text}", path.display()))
}

fn string_field(message: &DynamicMessage, name: &str) -> String {
    match message.get_field_by_name(name).unwrap().as_ref() {
        Value::String(s) => s.clone(),
        other => panic!("{name}: {other:?}"),
    }
}

/// Parses every config of a repository; the `name` field must be its folder's name.
fn check_repository(repo: &Path) -> usize {
    let configs = configs(repo);
    assert!(!configs.is_empty(), "{} has no config", repo.display());
    for path in &configs {
        let message = parse_file(path);
        let folder = path
            .parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_str()
            .unwrap();
        assert_eq!(string_field(&message, "name"), folder, "{}", path.display());
        assert_eq!(message.descriptor().full_name(), "inference.ModelConfig");
    }
    configs.len()
}

#[test]
fn golden_files_parse() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "pbtxt"))
        .collect();
    files.sort();
    assert!(files.len() >= 10, "{files:?}");
    for file in &files {
        parse_file(file);
    }
}

#[test]
fn every_generated_repository_parses() {
    let weights = tiny_clip().join("quick_gelu");
    let variants: &[&[&str]] = &[
        &["--runtime", "ort", "--gpus", "none"],
        &[
            "--runtime",
            "ort",
            "--gpus",
            "0,1,2",
            "--instances",
            "5",
            "--name-prefix",
            "p_",
        ],
        &[
            "--runtime",
            "onnxruntime",
            "--gpus",
            "none",
            "--max-batch-size",
            "1",
        ],
        &[
            "--runtime",
            "onnxruntime",
            "--trt-accelerator",
            "--dtype",
            "fp16",
            "--gpus",
            "0",
            "--preferred-batch-size",
            "4,8",
            "--max-batch-size",
            "8",
        ],
        &[
            "--runtime",
            "tensorrt",
            "--gpus",
            "none",
            "--name-prefix",
            "trt-",
        ],
        &[
            "--runtime",
            "tensorrt",
            "--gpus",
            "1,0",
            "--preferred-batch-size",
            "2",
            "--max-queue-delay-us",
            "0",
        ],
        &["--runtime", "ort", "--gpus", "auto"],
    ];
    for variant in variants {
        let Generated {
            repo, out: _out, ..
        } = generate(&weights, variant);
        assert_eq!(check_repository(&repo), 6, "{variant:?}");
    }
}

#[test]
fn ensembles_and_groups_parse_into_the_right_fields() {
    let Generated {
        repo, out: _out, ..
    } = generate(
        &tiny_clip().join("gelu"),
        &["--gpus", "0,1,2", "--instances", "5"],
    );
    let ensemble = parse_file(&repo.join("clip_text/config.pbtxt"));
    let scheduling = ensemble.get_field_by_name("ensemble_scheduling").unwrap();
    let steps = scheduling
        .as_message()
        .unwrap()
        .get_field_by_name("step")
        .unwrap();
    let steps = steps.as_list().unwrap();
    assert_eq!(steps.len(), 2);
    let names: Vec<String> = steps
        .iter()
        .map(|s| string_field(s.as_message().unwrap(), "model_name"))
        .collect();
    assert_eq!(names, ["clip_text_preprocess", "clip_text_encoder"]);

    let encoder = parse_file(&repo.join("clip_image_encoder/config.pbtxt"));
    let groups = encoder.get_field_by_name("instance_group").unwrap();
    let counts: Vec<i32> = groups
        .as_list()
        .unwrap()
        .iter()
        .map(|g| {
            g.as_message()
                .unwrap()
                .get_field_by_name("count")
                .unwrap()
                .as_i32()
                .unwrap()
        })
        .collect();
    assert_eq!(counts, [2, 2, 1]);
    let parameters = encoder.get_field_by_name("parameters").unwrap();
    let parameters = parameters.as_map().unwrap();
    // kind, ort_library and the five facts.
    assert_eq!(parameters.len(), 7, "{parameters:?}");
}

const MINIMAL: &str = r#"
name: "m"
backend: "clip"
max_batch_size: 8
input: [ { name: "TEXT" data_type: TYPE_STRING dims: [ 1 ] } ]
instance_group: [ { count: 1 kind: KIND_CPU } ]
"#;

#[test]
fn a_typo_fails_the_parse() {
    parse(MINIMAL).unwrap();
    let misspelt_field = MINIMAL.replace("max_batch_size", "max_batch_sise");
    let err = parse(&misspelt_field).unwrap_err();
    assert!(err.contains("max_batch_sise"), "{err}");

    let bad_enum = MINIMAL.replace("KIND_CPU", "KIND_TPU");
    let err = parse(&bad_enum).unwrap_err();
    assert!(err.contains("KIND_TPU"), "{err}");

    let bad_type = MINIMAL.replace("TYPE_STRING", "TYPE_STR");
    assert!(parse(&bad_type).is_err());

    let nested = MINIMAL.replace("dims: [ 1 ]", "dims: [ 1 ] dimensions: [ 1 ]");
    assert!(parse(&nested).is_err());

    // A rendered golden file with one field misspelt fails too.
    let golden = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/image_ensemble_prefixed.pbtxt"),
    )
    .unwrap();
    parse(&golden).unwrap();
    assert!(parse(&golden.replace("input_map", "inputs_map")).is_err());
    assert!(parse(&golden.replace("model_version: -1", "model_version: \"latest\"")).is_err());
}
