//! Requests for Triton's gRPC API through the project's own client.

pub use clip_client::bytes_request;
