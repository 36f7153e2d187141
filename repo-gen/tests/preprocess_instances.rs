//! `--preprocess-instances N|auto`: the CPU instance count of both
//! preprocessing models, written into their config.pbtxt and said on stderr.

mod common;

use clip_contract::model;
use common::*;

/// The `count` of `model`'s single CPU instance group.
fn cpu_instances(repo: &std::path::Path, model: &str) -> u32 {
    let config = std::fs::read_to_string(repo.join(model).join("config.pbtxt")).unwrap();
    let (_, rest) = config
        .split_once("instance_group: [\n  {\n    count: ")
        .unwrap_or_else(|| panic!("{model}: no instance_group in\n{config}"));
    let (count, rest) = rest.split_once('\n').unwrap();
    assert!(
        rest.starts_with("    kind: KIND_CPU\n"),
        "{model}:\n{config}"
    );
    count.parse().unwrap()
}

fn generate_with(args: &[&str]) -> Generated {
    let mut all = vec!["--runtime", "ort", "--gpus", "none", "--no-warmup"];
    all.extend_from_slice(args);
    generate(&tiny_clip().join("quick_gelu"), &all)
}

#[test]
fn both_preprocessing_models_get_the_requested_count() {
    let generated = generate_with(&["--preprocess-instances", "3"]);
    for name in [model::TEXT_PREPROCESS, model::IMAGE_PREPROCESS] {
        assert_eq!(cpu_instances(&generated.repo, name), 3, "{name}");
    }
    // The encoders keep their own placement (--instances, --gpus).
    assert_eq!(cpu_instances(&generated.repo, model::IMAGE_ENCODER), 1);
    let text = stderr(&generated.output);
    assert!(
        text.contains(
            "note: the preprocessing models get 3 CPU instances each (--preprocess-instances 3)"
        ),
        "{text}"
    );
}

#[test]
fn auto_is_the_default_and_sizes_from_this_machines_cores() {
    let generated = generate_with(&[]);
    let cores = std::thread::available_parallelism().unwrap().get();
    let want = repo_gen::auto_preprocess_instances(cores);
    for name in [model::TEXT_PREPROCESS, model::IMAGE_PREPROCESS] {
        assert_eq!(cpu_instances(&generated.repo, name), want, "{name}");
    }
    let text = stderr(&generated.output);
    assert!(
        text.contains(&format!(
            "--preprocess-instances auto: one per core ({cores} here)"
        )),
        "{text}"
    );
}

#[test]
fn zero_or_a_word_is_refused_before_anything_is_written() {
    let weights = tiny_clip().join("quick_gelu");
    for (value, message) in [
        ("0", "--preprocess-instances must be at least 1"),
        ("many", "write auto or a count"),
    ] {
        let out = tempfile::tempdir().unwrap();
        let repo = out.path().join("r");
        let output = repo_gen(&[
            "--weights",
            weights.to_str().unwrap(),
            "--out",
            repo.to_str().unwrap(),
            "--preprocess-instances",
            value,
        ]);
        assert!(!output.status.success(), "{value} was accepted");
        let text = stderr(&output);
        assert!(text.contains(message), "{value}: {text}");
        assert!(
            tree(out.path()).is_empty(),
            "{value} left {:?}",
            tree(out.path())
        );
    }
}
