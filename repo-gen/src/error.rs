//! What can stop `repo-gen`, with what to change.

use std::path::{Path, PathBuf};

use clip_export::ExportError;

use crate::download::{DownloadError, WeightsDirError};
use crate::onnx_io::OnnxIoError;
use crate::registry::LookupError;
use crate::render::RenderError;

/// What went wrong, with what to change.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error("{0}")]
    Invalid(String),
    #[error(
        "--name-prefix {prefix:?} would make the model name {name:?}, which is not a plain \
         folder name ({reason}); use letters, digits, '-' and '_'"
    )]
    BadPrefix {
        prefix: String,
        name: String,
        reason: String,
    },
    #[error(
        "--out {} is not empty; pass --force to write into it (models of the same names are \
         replaced, others kept), or choose an empty or new folder",
        .0.display()
    )]
    NotEmpty(PathBuf),
    #[error(transparent)]
    Lookup(#[from] LookupError),
    #[error(transparent)]
    Download(#[from] DownloadError),
    #[error(transparent)]
    WeightsDir(#[from] WeightsDirError),
    #[error("{context}: {source}")]
    Export {
        context: String,
        #[source]
        source: ExportError,
    },
    #[error(
        "the files of {model} disagree with repo-gen's registry: {}; the hub repository may \
         have changed; pass --weights DIR to use these files anyway",
        differences.join("; ")
    )]
    RegistryMismatch {
        model: String,
        differences: Vec<String>,
    },
    #[error(transparent)]
    OnnxIo(#[from] OnnxIoError),
    #[error(transparent)]
    Render(#[from] RenderError),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// For `map_err`: an I/O error on `path`.
pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> GenerateError + '_ {
    move |source| GenerateError::Io {
        path: path.to_path_buf(),
        source,
    }
}
