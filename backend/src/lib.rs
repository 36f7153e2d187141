//! `libtriton_clip.so`, the `clip` backend for NVIDIA Triton Inference Server.
//!
//! A model picks what it does with its `kind` parameter (see
//! `clip_contract::kind`): tokenizing text or decoding and normalising
//! images. [`triton`] is the only module that touches the C API; the rest is
//! safe Rust that unit-tests without a server.

mod config;
mod kinds;
mod request;

// The C entry points need the server's symbols, which a test binary lacks.
#[cfg(not(test))]
mod triton;
