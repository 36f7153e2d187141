//! Errors of the whole job ([`Error`]) and of one input ([`ItemError`]).
//! A job error stops the job; an item error is reported for that input
//! and the others go on.

/// Everything that stops a call or a job.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server address could not be used.
    #[error("invalid Triton address {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },

    /// A metadata header that gRPC cannot carry.
    #[error("invalid request header: {0}")]
    InvalidHeader(String),

    /// The TLS settings could not be used (unreadable certificate or key).
    #[error("TLS setup failed: {0}")]
    Tls(String),

    /// No gRPC connection could be opened to the server.
    #[error(
        "cannot reach Triton at {url}: {detail} \
         (is tritonserver running, and is this its gRPC port, 8001 by default?)"
    )]
    Unreachable { url: String, detail: String },

    /// The server answered a call with a non-OK gRPC status (after
    /// `retries` further tries when the failure looked transient).
    #[error("Triton {rpc} failed: {code:?}: {message}{}", retried(*.retries))]
    Status {
        rpc: &'static str,
        code: tonic::Code,
        message: String,
        retries: u32,
    },

    /// A call took longer than its deadline (`ConnectOptions::call_timeout`).
    #[error("Triton {rpc} took longer than {after:?}; raise the timeout for large batches or a busy server")]
    Timeout {
        rpc: &'static str,
        after: std::time::Duration,
    },

    /// The server answered OK but left out a field it must send.
    #[error("Triton {rpc} response has no {field}")]
    MissingField {
        rpc: &'static str,
        field: &'static str,
    },

    /// A raw tensor buffer does not hold a whole number of elements.
    #[error(
        "raw {} tensor has {len} bytes, not a multiple of the \
         {elem_size}-byte element size (wrong datatype or truncated output?)",
        .datatype.wire_name()
    )]
    RawLength {
        datatype: clip_contract::DataType,
        len: usize,
        elem_size: usize,
    },

    /// A CLIP model this call needs is missing, not ready, or was not
    /// written by repo-gen (its config lacks the facts the client reads).
    #[error("model {model} cannot be used: {reason}")]
    Model { model: String, reason: String },

    /// The server's answer does not fit the model's contract.
    #[error("unexpected response from {model}: {reason}")]
    Response { model: String, reason: String },

    /// An input that a call needs every item of (rank, search) failed.
    #[error(transparent)]
    Item(#[from] ItemError),

    /// Reading or writing a local file of the job (not an input).
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    /// The on-disk index failed.
    #[error(transparent)]
    Index(#[from] clip_index::Error),
}

fn retried(retries: u32) -> String {
    match retries {
        0 => String::new(),
        n => format!(" (after {n} retries)"),
    }
}

impl Error {
    pub(crate) fn status(rpc: &'static str, status: tonic::Status, retries: u32) -> Self {
        // A transport failure's message is just "transport error"; the cause
        // (connection refused, certificate rejected) is in its sources.
        let message = match std::error::Error::source(&status) {
            Some(source) => format!(
                "{}: {}",
                status.message(),
                crate::triton::error_chain(source)
            ),
            None => status.message().to_owned(),
        };
        Error::Status {
            rpc,
            code: status.code(),
            message,
            retries,
        }
    }

    /// A failure worth trying again, on this server later or on another
    /// now: the server is down or restarting, or the connection dropped.
    pub(crate) fn is_transient(&self) -> bool {
        match self {
            Error::Status { code, .. } => crate::triton::is_transient(*code),
            Error::Unreachable { .. } => true,
            _ => false,
        }
    }

    /// The error of the last of `tries` further tries.
    pub(crate) fn after_tries(self, tries: u32) -> Self {
        match self {
            Error::Status {
                rpc, code, message, ..
            } => Error::Status {
                rpc,
                code,
                message,
                retries: tries,
            },
            other => other,
        }
    }

    /// The gRPC status code, when the server (or the transport) gave one.
    pub fn code(&self) -> Option<tonic::Code> {
        match self {
            Error::Status { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// Why one input produced no embedding.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ItemFailure {
    /// The client could not read or fetch it (missing file, HTTP error,
    /// malformed `data:` URI).
    #[error("cannot read: {0}")]
    Read(String),
    /// The server rejected it (corrupt or unsupported image, too large).
    #[error("rejected by the server: {0}")]
    Rejected(String),
    /// The client could not decode it for the pixel path
    /// ([`Preprocess::Local`](crate::Preprocess::Local)): corrupt,
    /// unsupported or too large, as the server would have said.
    #[error("cannot preprocess: {0}")]
    Preprocess(String),
    /// It was an [`Input::Invalid`](crate::Input::Invalid), known to be
    /// unusable before anything was sent (a listed line that is not UTF-8).
    #[error("invalid input: {0}")]
    Invalid(String),
}

/// One input that failed, with its position in the input sequence.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("input #{index} ({source_text}): {failure}")]
pub struct ItemError {
    /// Position of the input, counting from 0.
    pub index: usize,
    /// The input as given (a sentence, path or URI; shortened for display).
    pub source_text: String,
    pub failure: ItemFailure,
}
