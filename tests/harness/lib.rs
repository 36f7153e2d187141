//! Test harness: builds the backend, installs and starts a real
//! `tritonserver` on a throw-away model repository, and talks to it over
//! Triton's HTTP/REST protocol.

pub mod fixtures;
pub mod grpc;
pub mod http;
pub mod mixed;
pub mod repository;
pub mod server;

pub use clip_test_support::{fixture, workspace_root};

/// A runtime for the async client in tests: two workers, like the machine.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}
