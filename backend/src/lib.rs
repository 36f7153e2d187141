//! `libtriton_clip.so`, the `clip` backend for NVIDIA Triton Inference Server.
//!
//! A model picks what it does with its `kind` parameter (see
//! `clip_contract::kind`): tokenizing text, decoding and normalising
//! images, or running an ONNX encoder through ONNX Runtime. This crate is
//! only the C API, and holds every raw pointer and `unsafe` block of the
//! backend: [`triton`] the entry points, [`io`] tensors in and out,
//! [`metrics`] the counters on Triton's `/metrics`, [`status`] errors,
//! logs and panic guards. The work is
//! `clip-backend-core`, safe Rust that unit-tests without a server.

mod io;
mod metrics;
mod status;
mod triton;
