//! What the workspace's tests share, in one place: where the workspace and
//! its fixtures are, the ONNX Runtime library (installed by the project's
//! own script), and the tiny CLIP's reference tensors. A dev-dependency only.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use serde_json::Value;

/// The workspace root (this crate lives in `crates/clip-test-support`).
pub fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .and_then(Path::parent)
        .expect("crates/clip-test-support sits two levels below the root")
}

/// A file or folder under `tests/fixtures`.
pub fn fixture(relative: &str) -> PathBuf {
    workspace_root().join("tests/fixtures").join(relative)
}

/// Runs `scripts/SCRIPT` (an installer), which prints the installed path last.
pub fn install(script: &str) -> PathBuf {
    let output = Command::new("bash")
        .arg(workspace_root().join("scripts").join(script))
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("run scripts/{script}: {e}"));
    assert!(output.status.success(), "scripts/{script} failed");
    let stdout = String::from_utf8(output.stdout).expect("utf-8 path");
    PathBuf::from(
        stdout
            .lines()
            .last()
            .unwrap_or_else(|| panic!("scripts/{script} printed no path"))
            .trim(),
    )
}

/// libonnxruntime from scripts/install-onnxruntime.sh, run once per process.
pub fn ort_library() -> &'static Path {
    static LIBRARY: OnceLock<PathBuf> = OnceLock::new();
    LIBRARY.get_or_init(|| install("install-onnxruntime.sh"))
}

/// The tiny seeded CLIP of `tests/fixtures/tiny-clip` (made by
/// scripts/fixtures/tiny_clip.py): its inputs and transformers' embeddings.
pub mod tiny_clip {
    use super::*;

    pub fn dir() -> PathBuf {
        fixture("tiny-clip")
    }

    pub fn manifest() -> &'static Value {
        static MANIFEST: OnceLock<Value> = OnceLock::new();
        MANIFEST.get_or_init(|| {
            let text = std::fs::read_to_string(dir().join("manifest.json")).expect("manifest.json");
            serde_json::from_str(&text).expect("manifest.json is JSON")
        })
    }

    /// One tensor the manifest lists: raw little-endian bytes and its shape.
    pub struct Tensor {
        pub bytes: Vec<u8>,
        pub shape: Vec<usize>,
        /// `i64`, `f32` or `f16`.
        pub dtype: String,
    }

    impl Tensor {
        pub fn read(entry: &Value) -> Tensor {
            Self::read_in(&dir(), entry)
        }

        /// A tensor a manifest in `base` lists (`file`, `shape`, `dtype`).
        pub fn read_in(base: &Path, entry: &Value) -> Tensor {
            let file = base.join(entry["file"].as_str().expect("file"));
            let bytes = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            let shape = entry["shape"]
                .as_array()
                .expect("shape")
                .iter()
                .map(|d| d.as_u64().expect("dim") as usize)
                .collect();
            let dtype = entry["dtype"].as_str().expect("dtype").to_string();
            Tensor {
                bytes,
                shape,
                dtype,
            }
        }

        /// The values as f32 (f16 widened).
        pub fn f32s(&self) -> Vec<f32> {
            let values: Vec<f32> = match self.dtype.as_str() {
                "f32" => self
                    .bytes
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
                    .collect(),
                "f16" => self
                    .bytes
                    .chunks_exact(2)
                    .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                    .collect(),
                other => panic!("{other} is not a float dtype"),
            };
            assert_eq!(values.len(), self.shape.iter().product::<usize>());
            values
        }

        /// The values as i64.
        pub fn i64s(&self) -> Vec<i64> {
            assert_eq!(self.dtype, "i64");
            self.bytes
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")))
                .collect()
        }
    }

    /// A model input: `input_ids` (i64 `[7, 77]`) or `pixel_values` (f16 `[5, 3, 224, 224]`).
    pub fn input(name: &str) -> Tensor {
        Tensor::read(&manifest()["inputs"][name])
    }

    /// transformers' embeddings of `variant` (`quick_gelu`, `gelu`):
    /// `text_features` or `image_features`, f32 `[rows, dim]`.
    pub fn reference(variant: &str, which: &str) -> Tensor {
        Tensor::read(&manifest()["variants"][variant][which])
    }
}
