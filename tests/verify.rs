//! The conformance gate: repo-gen stores the probes' embeddings in the
//! ensembles, and `clip-client verify` holds the real server to them. A
//! faithful deployment passes; one whose normalisation constants or text
//! weights changed after generation fails, naming the cosine it got.

use std::process::Command;

use clip_client::{Client, DEFAULT_MIN_COSINE};
use clip_contract::{file, model, param};
use harness::grpc::assert_verified;
use harness::server::{clip_client_cli, tiny_clip_repository, Server};

/// `clip-client verify` against `server`: its exit code and output.
fn verify_cli(server: &Server) -> (i32, String) {
    let output = Command::new(clip_client_cli())
        .args(["--server", &server.grpc_url, "verify"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.code().unwrap_or(-1), text)
}

#[test]
fn verify_passes_a_faithful_deployment_and_catches_changed_constants_and_weights() {
    let dir = tempfile::tempdir().unwrap();
    let repository = dir.path().join("repository");
    tiny_clip_repository(&repository, &["--no-warmup"]);
    let config =
        std::fs::read_to_string(repository.join(model::TEXT_ENSEMBLE).join("config.pbtxt"))
            .unwrap();
    assert!(config.contains(param::PROBE_EMBEDDINGS), "{config}");

    let server = Server::start(&repository);
    harness::runtime().block_on(assert_verified(&server.grpc_url, 0.99999));
    let (code, output) = verify_cli(&server);
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("verified: 2 ensembles"), "{output}");
    drop(server);

    // After generation: other normalisation constants for images, and the
    // text encoder of another checkpoint (the GELU twin of the fixture).
    let preprocess = repository
        .join(model::IMAGE_PREPROCESS)
        .join("config.pbtxt");
    let text = std::fs::read_to_string(&preprocess).unwrap();
    let changed = text.replace("0.26862955,0.2613026,0.2757771", "0.5,0.5,0.5");
    assert_ne!(changed, text, "the std is in the config");
    std::fs::write(&preprocess, changed).unwrap();
    let gelu = dir.path().join("gelu");
    let status = Command::new(harness::server::repo_gen())
        .arg("--weights")
        .arg(harness::fixture("tiny-clip/gelu"))
        .arg("--out")
        .arg(&gelu)
        .args([
            "--runtime",
            "ort",
            "--gpus",
            "none",
            "--no-warmup",
            "--ort-library",
        ])
        .arg(harness::server::onnxruntime_library())
        .status()
        .unwrap();
    assert!(status.success());
    let encoder = |root: &std::path::Path| {
        root.join(model::TEXT_ENCODER)
            .join("1")
            .join(file::ONNX_MODEL)
    };
    std::fs::copy(encoder(&gelu), encoder(&repository)).unwrap();

    let server = Server::start(&repository);
    let checks = harness::runtime().block_on(async {
        Client::connect(&server.grpc_url)
            .await
            .unwrap()
            .verify()
            .await
            .unwrap()
    });
    for check in &checks {
        assert!(!check.passed(DEFAULT_MIN_COSINE), "{check:?}");
    }
    let (code, output) = verify_cli(&server);
    assert_eq!(code, 4, "{output}");
    for check in &checks {
        let (probe, cosine) = &check.outcome.as_ref().unwrap()[0];
        let line = output
            .lines()
            .find(|l| l.contains(&check.model) && l.contains(probe.as_str()))
            .unwrap_or_else(|| panic!("no line for {}: {output}", check.model));
        if *cosine < DEFAULT_MIN_COSINE {
            assert!(
                line.contains(&format!("cosine {cosine:.6}")) && line.ends_with("FAILED"),
                "{line}"
            );
        }
    }
    assert!(output.contains("2 of 2 ensembles differ"), "{output}");
}
