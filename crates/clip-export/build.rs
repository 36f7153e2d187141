//! Generates the ONNX protobuf types from `proto/onnx.proto`.
//!
//! The .proto is this crate's own subset of the public ONNX schema (only the
//! messages a model file needs, field numbers as in onnx/onnx.proto). `protox`
//! parses it in pure Rust, so no `protoc` is needed; prost-build writes
//! `onnx.rs` into OUT_DIR.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    const PROTO: &str = "proto/onnx.proto";
    println!("cargo:rerun-if-changed={PROTO}");

    let descriptors = protox::compile([PROTO], ["proto"])?;
    prost_build::Config::new().compile_fds(descriptors)?;
    Ok(())
}
