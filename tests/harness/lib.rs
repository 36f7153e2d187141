//! Test harness: builds the backend, installs and starts a real
//! `tritonserver` on a throw-away model repository, and talks to it over
//! Triton's HTTP/REST protocol.

pub mod fixtures;
pub mod grpc;
pub mod http;
pub mod repository;
pub mod server;

use std::path::{Path, PathBuf};

/// The workspace root (this crate lives in `tests/`).
pub fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
}

pub fn fixture(relative: &str) -> PathBuf {
    workspace_root().join("tests/fixtures").join(relative)
}
