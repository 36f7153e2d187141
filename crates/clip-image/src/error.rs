//! The one error type of the crate, so callers match on a single enum whichever step failed.

use crate::format::ACCEPTED_FORMATS;

/// Why an image could not be preprocessed.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("invalid image options: {0}")]
    InvalidOptions(String),
    #[error("empty input: the image has no bytes")]
    Empty,
    #[error("unknown image format (first bytes: {magic}); accepted formats: {ACCEPTED_FORMATS}")]
    UnknownFormat { magic: String },
    #[error("truncated {format} data: {message}")]
    Truncated {
        format: &'static str,
        message: String,
    },
    #[error("corrupt {format} data: {message}")]
    Corrupt {
        format: &'static str,
        message: String,
    },
    #[error("unsupported {format} image: {message}")]
    Unsupported {
        format: &'static str,
        message: String,
    },
    #[error(
        "image too large: {width}x{height} = {pixels} pixels exceeds the limit of {limit} pixels"
    )]
    TooManyPixels {
        width: u64,
        height: u64,
        pixels: u64,
        limit: u64,
    },
    #[error("image has an empty dimension: {width}x{height}")]
    ZeroSize { width: u64, height: u64 },
    #[error("output buffer has {actual} floats, expected {expected}")]
    OutputLength { expected: usize, actual: usize },
    #[error("internal error while preprocessing the image: {0}")]
    Internal(String),
}
