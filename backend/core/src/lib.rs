//! The `clip` Triton backend's logic, in safe Rust that unit-tests without
//! a server: reading a model's config ([`config`]), the batch and its one
//! buffer ([`batch`]), the seam between Triton and the work ([`kind`]), and
//! the model kinds ([`kinds`]), what they count ([`metrics`]), the batch buffers they reuse ([`pool`]), and the warmup samples checked before an
//! instance is ready ([`warmup`]). `libtriton_clip.so` (the `backend` package)
//! is only the C API over this crate.

pub mod batch;
pub mod config;
pub mod kind;
pub mod kinds;
pub mod metrics;
pub mod pool;
pub mod warmup;

pub use clip_ort::{LogLevel, LogSink};
