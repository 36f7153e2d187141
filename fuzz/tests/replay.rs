//! Every committed input replays without AFL: each target runs over
//! `fuzz/corpus/<target>/` (the seeds and what fuzzing added) and
//! `fuzz/regressions/<target>/` (inputs that once crashed it). A target that
//! panics on one of them fails here, naming the files.

use std::fs;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use clip_fuzz::{fuzz_dir, TARGETS};

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("readable folder").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

fn replay(target: &str) {
    let t = clip_fuzz::target(target).expect("a known target");
    let corpus = files(&fuzz_dir().join("corpus").join(target));
    assert!(!corpus.is_empty(), "fuzz/corpus/{target}/ is empty");
    let regressions = files(&fuzz_dir().join("regressions").join(target));
    let mut failed = Vec::new();
    for file in corpus.iter().chain(&regressions) {
        let data = fs::read(file).expect("readable input");
        if catch_unwind(AssertUnwindSafe(|| (t.run)(&data))).is_err() {
            failed.push(file.strip_prefix(fuzz_dir()).unwrap_or(file).to_owned());
        }
    }
    assert!(
        failed.is_empty(),
        "{target}: {} of {} inputs fail: {failed:?}",
        failed.len(),
        corpus.len() + regressions.len()
    );
}

macro_rules! replay_tests {
    ($($name:ident),* $(,)?) => {
        $(#[test]
        fn $name() {
            replay(stringify!($name));
        })*

        /// Each target has its test above, and every folder names a target.
        #[test]
        fn every_target_replays() {
            let tested = [$(stringify!($name)),*];
            let targets: Vec<&str> = TARGETS.iter().map(|t| t.name).collect();
            assert_eq!(tested.as_slice(), targets.as_slice());
            for folder in ["corpus", "regressions"] {
                for dir in fs::read_dir(fuzz_dir().join(folder)).into_iter().flatten() {
                    let name = dir.unwrap().file_name();
                    let name = name.to_string_lossy();
                    assert!(targets.contains(&name.as_ref()), "fuzz/{folder}/{name} is no target");
                }
            }
        }
    };
}

replay_tests!(
    image,
    text,
    triton_config,
    bytes_elements,
    safetensors,
    onnx,
    model_config,
);
