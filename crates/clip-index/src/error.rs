//! The crate's error type, kept in one place so every path reports failures
//! the same way.

use std::path::{Path, PathBuf};

use crate::log::FORMAT;
use crate::vector::VectorError;

/// Everything that can go wrong with an index.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The index directory could not be created or read.
    #[error("{path}: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// [`Index::open`](crate::Index::open) was given a path with no index in it.
    #[error("no index at {0} (no items.log there); create one first")]
    NotFound(PathBuf),
    /// The path holds something other than an index of this crate.
    #[error("{path} is not a clip-index index: {reason}")]
    NotAnIndex {
        /// The path.
        path: PathBuf,
        /// What was found instead.
        reason: String,
    },
    /// The index was written by another format version of this crate.
    #[error("index format {found:?} is not supported (this build reads {FORMAT:?})")]
    UnsupportedFormat {
        /// The format recorded in the index.
        found: String,
    },
    /// The index holds embeddings of another dimension than requested.
    #[error("the index holds {stored}-dimensional embeddings, not {requested}-dimensional ones")]
    DimensionMismatch {
        /// The dimension recorded in the index.
        stored: usize,
        /// The dimension asked for.
        requested: usize,
    },
    /// The index holds embeddings of another model than requested.
    #[error("the index holds embeddings of model {stored:?}, not {requested:?}; embeddings of different models are not comparable")]
    ModelMismatch {
        /// The model recorded in the index.
        stored: String,
        /// The model asked for.
        requested: String,
    },
    /// The spec given to [`Index::create_or_open`](crate::Index::create_or_open) is unusable.
    #[error("invalid index spec: {0}")]
    InvalidSpec(String),
    /// An item of a batch has an unusable embedding; nothing of the batch was written.
    #[error("item {index} of the batch ({source_text:?}): its embedding is refused: {error}; nothing was written")]
    InvalidItem {
        /// The item's position in the batch.
        index: usize,
        /// The item's source, to find it by.
        source_text: String,
        /// What is wrong with its embedding.
        error: VectorError,
    },
    /// The query vector is unusable.
    #[error("the query vector is refused: {0}")]
    InvalidQuery(VectorError),
    /// Ids are 32-bit; the batch would pass the last one.
    #[error("the index holds {len} items and cannot take {adding} more (ids are 32-bit)")]
    TooManyItems {
        /// Items in the index.
        len: u64,
        /// Items in the batch.
        adding: usize,
    },
    /// The stored data does not decode.
    #[error("the index is corrupt: {0}")]
    Corrupt(String),
}

/// A `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn io_error(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.to_owned(),
        source,
    }
}
