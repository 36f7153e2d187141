//! One error type for configs, weights, export and verification.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("config: {0}")]
    Config(String),

    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("safetensors: {0}")]
    Safetensors(String),

    /// A torch.save checkpoint that cannot be read; `path` when it came from a file.
    #[error("torch checkpoint{}: {source}", .path.as_ref().map(|p| format!(" {}", p.display())).unwrap_or_default())]
    TorchCheckpoint {
        path: Option<PathBuf>,
        #[source]
        source: crate::torch_zip::TorchError,
    },

    #[error(
        "weights match neither the transformers layout (text_model.*, vision_model.*) nor open_clip's \
         (transformer.resblocks.*, visual.*); first keys: {first_keys}"
    )]
    UnknownLayout { first_keys: String },

    #[error("weight {key}: expected shape {expected:?}, found {found:?}")]
    ShapeMismatch {
        key: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },

    #[error("weight {key} is missing ({layout} layout)")]
    MissingKey { key: String, layout: &'static str },

    #[error("{count} weight(s) this architecture has no place for ({layout} layout): {keys}")]
    UnexpectedKeys {
        count: usize,
        keys: String,
        layout: &'static str,
    },

    #[error("weight {key} has dtype {dtype}; only F32, F16 and BF16 are supported")]
    UnsupportedDtype { key: String, dtype: String },

    #[error("weight {key} holds a non-finite value")]
    NonFinite { key: String },

    /// Finding or loading the library (clip-ort's messages name the install script).
    #[error(transparent)]
    OrtLoad(#[from] clip_ort::OrtError),

    #[error("ONNX Runtime: {0}")]
    Ort(String),

    #[error("verification of {model}: {message}")]
    Verification { model: String, message: String },
}

impl From<crate::torch_zip::TorchError> for ExportError {
    fn from(source: crate::torch_zip::TorchError) -> Self {
        ExportError::TorchCheckpoint { path: None, source }
    }
}

pub type Result<T, E = ExportError> = std::result::Result<T, E>;

impl ExportError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ExportError::Io {
            path: path.into(),
            source,
        }
    }
}
