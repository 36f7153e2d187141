//! M-CLIP end to end: `repo-gen --weights` on a folder holding a tiny
//! seeded M-CLIP text tower (XLM-R base, tests/fixtures/mclip/xlmr, with the
//! XLM-R-style tokenizer of tests/fixtures/text/hf/xlmr) beside the tiny
//! open_clip image tower it pairs with (tests/fixtures/mclip/image), served
//! by the real tritonserver: raw multilingual sentences come back as
//! transformers' tokenizer, model, mask mean pooling and projection embed
//! them, photos as open_clip embeds transformers' preprocessing, a bad
//! element in any position of requests sharing a batch fails its request
//! alone, and the probes repo-gen ran hold.

use std::path::{Path, PathBuf};

use clip_contract::model;
use clip_test_support::tiny_clip::Tensor;
use harness::fixture;
use harness::fixtures::{rows, EndToEnd};
use harness::grpc::assert_serves;
use harness::server::{onnxruntime_library, repo_gen, Server};

const TEXT_COSINE: f32 = 0.9999;
const IMAGE_COSINE: f32 = 0.999;

/// The M-CLIP hub repository's files and the image tower's open_clip files
/// in one folder, as `--weights` takes them.
fn weights_folder(dir: &Path) {
    for (from, to) in [
        ("mclip/xlmr/config.json", "config.json"),
        ("mclip/xlmr/model.safetensors", "model.safetensors"),
        ("text/hf/xlmr/tokenizer.json", "tokenizer.json"),
        ("mclip/image/open_clip_config.json", "open_clip_config.json"),
        (
            "mclip/image/open_clip_model.safetensors",
            "open_clip_model.safetensors",
        ),
    ] {
        std::fs::copy(fixture(from), dir.join(to)).unwrap();
    }
}

/// The sentences and their embeddings at context 77 (transformers' reference).
fn text_reference() -> (Vec<String>, Vec<Vec<f32>>) {
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("mclip/manifest.json")).unwrap())
            .unwrap();
    let sentences: Vec<String> = serde_json::from_value(manifest["sentences"].clone()).unwrap();
    let embedding = Tensor::read_in(
        &fixture("mclip"),
        &manifest["bases"]["xlmr"]["max_length"]["embedding"],
    );
    let values = embedding.f32s();
    let [rows, width] = embedding.shape[..] else {
        panic!("embedding shape {:?}", embedding.shape)
    };
    assert_eq!(rows, sentences.len());
    (
        sentences,
        values.chunks(width).map(<[f32]>::to_vec).collect(),
    )
}

fn image_reference() -> (Vec<PathBuf>, Vec<Vec<f32>>) {
    let reference: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("mclip/image/reference.json")).unwrap(),
    )
    .unwrap();
    let names: Vec<String> = serde_json::from_value(reference["images"].clone()).unwrap();
    let paths = names
        .iter()
        .map(|name| fixture(&format!("images/inputs/{name}")))
        .collect();
    (paths, rows(&reference["image_embeddings"]))
}

#[test]
fn mclip_serves_transformers_embeddings_in_every_language() {
    let out = tempfile::tempdir().unwrap();
    let weights = out.path().join("weights");
    std::fs::create_dir(&weights).unwrap();
    weights_folder(&weights);
    let repository = out.path().join("repository");
    let status = std::process::Command::new(repo_gen())
        .arg("--weights")
        .arg(&weights)
        .arg("--out")
        .arg(&repository)
        .args(["--runtime", "ort", "--gpus", "none"])
        // A long batching window, so concurrent requests share batches.
        .args(["--max-queue-delay-us", "200000"])
        .arg("--ort-library")
        .arg(onnxruntime_library())
        .status()
        .expect("run repo-gen");
    assert!(status.success(), "repo-gen failed");
    let preprocess =
        std::fs::read_to_string(repository.join(model::TEXT_PREPROCESS).join("config.pbtxt"))
            .unwrap();
    for expected in [
        "key: \"tokenizer_family\"\n  value: { string_value: \"hf\" }",
        "\"ATTENTION_MASK\"",
    ] {
        assert!(preprocess.contains(expected), "{preprocess}");
    }

    let (sentences, text) = text_reference();
    let (images, image) = image_reference();
    let reference = EndToEnd {
        sentences,
        text,
        images,
        image,
        ranking: Vec::new(),
    };
    let server = Server::start(&repository);
    harness::runtime().block_on(assert_serves(
        &server.grpc_url,
        &reference,
        (TEXT_COSINE, IMAGE_COSINE),
    ));
}
