//! `--weights DIR`: a local folder is checked item by item.

use std::path::Path;

use repo_gen::download::check_weights_dir;
use repo_gen::registry::WeightsLayout::{OpenClip, Transformers};

fn folder(files: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for file in files {
        std::fs::write(dir.path().join(file), b"{}").unwrap();
    }
    dir
}

fn problems(dir: &Path, layout: repo_gen::registry::WeightsLayout) -> Vec<String> {
    check_weights_dir(dir, layout).unwrap_err().problems
}

#[test]
fn complete_transformers_folder() {
    let dir = folder(&[
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "open_clip_model.safetensors",
        "README.md",
    ]);
    let files = check_weights_dir(dir.path(), Transformers).unwrap();
    assert_eq!(files.layout, Transformers);
    assert_eq!(files.config, dir.path().join("config.json"));
    assert_eq!(files.weights, dir.path().join("model.safetensors"));
    assert_eq!(files.tokenizer, dir.path().join("tokenizer.json"));
}

#[test]
fn complete_open_clip_folder_with_another_weights_name() {
    // LAION's ViT-g-14 repo names its file open_clip_pytorch_model.safetensors.
    let dir = folder(&[
        "open_clip_config.json",
        "open_clip_pytorch_model.safetensors",
        "tokenizer.json",
        "model.safetensors",
    ]);
    let files = check_weights_dir(dir.path(), OpenClip).unwrap();
    assert_eq!(
        files.weights,
        dir.path().join("open_clip_pytorch_model.safetensors")
    );
    assert_eq!(files.config, dir.path().join("open_clip_config.json"));
}

#[test]
fn empty_folder_lists_every_missing_item() {
    let dir = folder(&[]);
    let err = check_weights_dir(dir.path(), Transformers).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "--weights {} cannot be used for transformers weights: missing config.json; \
             missing the weights: no model.safetensors nor another transformers *.safetensors \
             file; missing tokenizer.json (the Hugging Face fast-tokenizer file)",
            dir.path().display()
        )
    );
}

#[test]
fn folder_of_the_other_layout_is_recognised() {
    let dir = folder(&[
        "open_clip_config.json",
        "open_clip_model.safetensors",
        "tokenizer.json",
    ]);
    assert_eq!(
        problems(dir.path(), Transformers),
        [
            "missing config.json (it has open_clip_config.json, the config of open_clip weights)",
            "missing the weights: no model.safetensors nor another transformers *.safetensors \
             file (it has open_clip_model.safetensors, which is open_clip weights)",
        ]
    );
}

#[test]
fn a_pytorch_checkpoint_of_the_layouts_name_is_taken() {
    let dir = folder(&["config.json", "pytorch_model.bin", "tokenizer.json"]);
    let files = check_weights_dir(dir.path(), Transformers).unwrap();
    assert_eq!(files.weights, dir.path().join("pytorch_model.bin"));
    let dir = folder(&[
        "open_clip_config.json",
        "open_clip_pytorch_model.bin",
        "tokenizer.json",
    ]);
    let files = check_weights_dir(dir.path(), OpenClip).unwrap();
    assert_eq!(
        files.weights,
        dir.path().join("open_clip_pytorch_model.bin")
    );
}

#[test]
fn other_pickled_weights_are_named() {
    let dir = folder(&["config.json", "epoch_32.pt", "tokenizer.json"]);
    assert_eq!(
        problems(dir.path(), Transformers),
        [
            "missing the weights: no model.safetensors nor another transformers *.safetensors \
          file (it has epoch_32.pt: a PyTorch checkpoint is read when it is named \
          pytorch_model.bin)"
        ]
    );
}

#[test]
fn several_candidate_weights_are_refused() {
    let dir = folder(&[
        "config.json",
        "a.safetensors",
        "b.safetensors",
        "tokenizer.json",
    ]);
    assert_eq!(
        problems(dir.path(), Transformers),
        [
            "several weights files and none named model.safetensors: a.safetensors, \
          b.safetensors; keep one"
        ]
    );
    // One odd name alone is taken.
    let dir = folder(&["config.json", "weights.safetensors", "tokenizer.json"]);
    let files = check_weights_dir(dir.path(), Transformers).unwrap();
    assert_eq!(files.weights, dir.path().join("weights.safetensors"));
}

#[test]
fn missing_folder() {
    let dir = tempfile::tempdir().unwrap();
    let gone = dir.path().join("nope");
    let err = check_weights_dir(&gone, OpenClip).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "--weights {} cannot be used for open_clip weights: the folder does not exist",
            gone.display()
        )
    );
}
