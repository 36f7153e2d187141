//! Shared by the integration tests: running the binary, the ONNX Runtime
//! library, the tiny-clip fixtures.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub use clip_test_support::ort_library;

pub fn tiny_clip() -> PathBuf {
    clip_test_support::tiny_clip::dir()
}

/// Runs repo-gen with `args`, without ORT_DYLIB_PATH from the environment.
pub fn repo_gen(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_repo-gen"))
        .args(args)
        .env_remove("ORT_DYLIB_PATH")
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .expect("run repo-gen")
}

/// repo-gen with `--ort-library` added; panics with its stderr when it fails.
pub fn repo_gen_ok(args: &[&str]) -> Output {
    let library = ort_library().to_str().unwrap().to_owned();
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--ort-library", &library]);
    let output = repo_gen(&all);
    assert!(
        output.status.success(),
        "repo-gen {args:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// A repository repo-gen wrote into a fresh temporary folder.
pub struct Generated {
    /// The temporary folder, deleted on drop (keep it bound); the repository is its `r/`.
    pub out: tempfile::TempDir,
    pub repo: PathBuf,
    pub output: Output,
}

/// Runs [`repo_gen_ok`] on the `weights` folder with `--out <tmp>/r` and `args`.
pub fn generate(weights: &Path, args: &[&str]) -> Generated {
    let out = tempfile::tempdir().unwrap();
    let repo = out.path().join("r");
    let mut all = vec![
        "--weights",
        weights.to_str().unwrap(),
        "--out",
        repo.to_str().unwrap(),
    ];
    all.extend_from_slice(args);
    let output = repo_gen_ok(&all);
    Generated { out, repo, output }
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Every file and folder under `root`, relative, sorted, folders ending in '/'.
pub fn tree(root: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if path.is_dir() {
                out.push(format!("{rel}/"));
                walk(root, &path, out);
            } else {
                out.push(rel);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

/// All config.pbtxt files under `root`.
pub fn configs(root: &Path) -> Vec<PathBuf> {
    tree(root)
        .into_iter()
        .filter(|p| p.ends_with("config.pbtxt"))
        .map(|p| root.join(p))
        .collect()
}

/// Compares `rendered` with tests/golden/`file`; `REPO_GEN_BLESS=1` rewrites the file instead.
pub fn golden(file: &str, rendered: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(file);
    if std::env::var_os("REPO_GEN_BLESS").is_some() {
        std::fs::write(&path, rendered).unwrap();
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (REPO_GEN_BLESS=1 writes it)", path.display()));
    assert!(
        rendered == expected,
        "{file} differs from the golden file; rendered:\n{rendered}"
    );
}
