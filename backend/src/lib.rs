//! `libtriton_clip.so`, the `clip` backend for NVIDIA Triton Inference Server.
//!
//! A model picks what it does with its `kind` parameter (see
//! `clip_contract::kind`): tokenizing text, decoding and normalising
//! images, or running an ONNX encoder through ONNX Runtime. [`triton`] is the only module that touches the C API; the rest is
//! safe Rust that unit-tests without a server.

mod config;
mod encoder;
mod kinds;
mod request;

// The C entry points need the server's symbols, which a test binary lacks.
#[cfg(not(test))]
mod triton;
