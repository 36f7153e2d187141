//! Rust client for CLIP served on Triton by this project's repository.
//!
//! ```no_run
//! # async fn demo() -> Result<(), clip_client::Error> {
//! use clip_client::{Client, EncodeOptions};
//!
//! let client = Client::connect("grpc://localhost:8001").await?;
//! let options = EncodeOptions { normalize: true, ..EncodeOptions::default() };
//! // Sentences and images (paths, file://, http(s)://, data: URIs) mix freely.
//! for item in client.encode(["a photo of a cat", "photos/cat.jpg"], &options).await? {
//!     match item.result {
//!         Ok(embedding) => println!("{}: {} values", item.input.source(), embedding.len()),
//!         Err(error) => eprintln!("{error}"),
//!     }
//! }
//! let ranked = client
//!     .rank("photos/cat.jpg", ["a cat", "a dog"], &EncodeOptions::default())
//!     .await?;
//! println!("best: {} ({:.3})", ranked[0].input.source(), ranked[0].clip_score);
//! # Ok(()) }
//! ```
//!
//! Layers, bottom up:
//! - [`proto`]: Triton's KServe v2 gRPC API (package `inference`),
//!   generated at build time from `proto/*.proto`.
//! - [`Triton`]: the transport to one server: plaintext or TLS, request
//!   metadata, deadlines.
//! - [`Servers`]: one or many servers of a deployment, round-robin, with
//!   failover and bounded retries of transient failures.
//! - [`Client`]: CLIP: finds the `clip_text` / `clip_image` ensembles and
//!   their facts, then `encode`, `rank`, `index` / `search` (on-disk, via
//!   `clip-index`), `profile`, `health` and `verify`.
//! - [`blocking::Client`]: the same without async.

pub mod blocking;
mod client;
mod encode;
mod error;
mod index;
mod input;
mod models;
mod profile;
mod rank;
mod servers;
mod tensor;
mod triton;
mod verify;

/// Generated protobuf messages and the gRPC client for Triton's `inference`
/// package.
#[allow(
    clippy::all,
    clippy::pedantic,
    missing_docs,
    rustdoc::invalid_html_tags,
    rustdoc::bare_urls
)]
pub mod proto {
    tonic::include_proto!("inference");
}

pub use client::{Client, ClientOptions, Health};
pub use clip_index::{Hit, ItemKind};
pub use encode::{l2_normalize, EncodeOptions, Encoded, Preprocess, Summary};
pub use error::{Error, ItemError, ItemFailure};
pub use index::IndexSummary;
pub use input::{has_image_extension, ImageSource, Input, Modality};
pub use models::{ModelInfo, PixelModel};
pub use profile::{ModelTiming, Profile};
pub use rank::{clip_scores, cosine, Ranked};
pub use servers::Servers;
pub use tensor::{
    bytes_request, f16_from_raw, f32_from_raw, fixed_request, i64_from_raw, output_as_f32,
    serialize_bytes_tensor,
};
pub use triton::{ConnectOptions, TlsOptions, Triton};
pub use verify::{Verification, DEFAULT_MIN_COSINE};
