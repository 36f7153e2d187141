//! Generates the Triton gRPC client from `proto/grpc_service.proto` (which
//! imports `proto/model_config.proto`).
//!
//! `protox` parses the .proto in pure Rust, so building needs no `protoc`
//! binary on the host; its FileDescriptorSet goes to tonic's prost code
//! generator, which writes `inference.rs` into OUT_DIR.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    const PROTO: &str = "proto/grpc_service.proto";
    println!("cargo:rerun-if-changed=proto");

    let descriptors = protox::compile([PROTO], ["proto"])?;
    tonic_prost_build::configure()
        .build_server(false)
        .build_client(true)
        .compile_fds(descriptors)?;
    Ok(())
}
