//! README's curl recipes, run exactly as written (each `sh` block after a
//! `<!-- recipe: NAME -->` line) against the real tritonserver, every
//! number compared with clip-client's embedding of the same input.

use std::path::Path;
use std::process::Command;

use clip_client::{Client, EncodeOptions, Input};
use harness::server::{tiny_clip_repository, Server};
use harness::workspace_root;
use serde_json::Value;

/// The `sh` block that follows `<!-- recipe: name -->` in README.md.
fn recipe(readme: &str, name: &str) -> String {
    let marker = format!("<!-- recipe: {name} -->");
    let after = readme
        .split_once(&marker)
        .unwrap_or_else(|| panic!("README has no recipe {name}"))
        .1;
    let block = after
        .trim_start()
        .strip_prefix("```sh\n")
        .unwrap_or_else(|| panic!("recipe {name} is not followed by a sh block"));
    block
        .split_once("```")
        .expect("the block ends")
        .0
        .to_owned()
}

/// Runs `script` with bash in a scratch folder that sees the repository's
/// tests/ folder (the recipes name a fixture photo by its relative path).
fn run(script: &str, server: &Server) -> String {
    let scratch = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(workspace_root().join("tests"), scratch.path().join("tests"))
        .unwrap();
    let address = server.http_url.trim_start_matches("http://");
    let output = Command::new("bash")
        .args(["-eo", "pipefail", "-c", script])
        .current_dir(scratch.path())
        .env("TRITON_HTTP", address)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{script}\nfailed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let leftovers: Vec<_> = std::fs::read_dir(scratch.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|name| name != "tests")
        .collect();
    assert!(leftovers.is_empty(), "the recipe left {leftovers:?}");
    String::from_utf8(output.stdout).unwrap()
}

fn json_embedding(stdout: &str) -> Vec<f32> {
    let reply: Value = serde_json::from_str(stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    let output = &reply["outputs"][0];
    assert_eq!(output["name"], "EMBEDDING", "{reply}");
    output["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect()
}

fn assert_same(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-5 * w.abs().max(1.0),
            "{what}[{i}]: {g} vs {w}"
        );
    }
}

#[test]
fn the_curl_recipes_in_readme_give_clip_clients_embeddings() {
    let readme = std::fs::read_to_string(workspace_root().join("README.md")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let repository = dir.path().join("repository");
    tiny_clip_repository(&repository, &["--no-warmup"]);
    let server = Server::start(&repository);
    let photo = workspace_root().join("tests/fixtures/images/inputs/rocket.jpg");
    let inputs = [
        Input::text("a photo of a cat"),
        Input::text("a rocket on the launch pad"),
        Input::image_path(Path::new(&photo)),
    ];
    let expected: Vec<Vec<f32>> = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let client = Client::connect(&server.grpc_url).await.unwrap();
            let encoded = client
                .encode(inputs, &EncodeOptions::default())
                .await
                .unwrap();
            encoded.into_iter().map(|e| e.result.unwrap()).collect()
        });

    let text = json_embedding(&run(&recipe(&readme, "text-json"), &server));
    assert_same(
        &text,
        &[expected[0].clone(), expected[1].clone()].concat(),
        "text-json",
    );

    let image = json_embedding(&run(&recipe(&readme, "image-binary"), &server));
    assert_same(&image, &expected[2], "image-binary");

    let raw: Vec<f32> = run(&recipe(&readme, "text-raw-output"), &server)
        .split_whitespace()
        .map(|v| v.parse().unwrap_or_else(|e| panic!("{v}: {e}")))
        .collect();
    assert_same(&raw, &expected[0], "text-raw-output");
}
