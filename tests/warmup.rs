//! Warm starts. repo-gen's default repository warms every instance up as it
//! loads: the real `tritonserver` runs each model's `model_warmup` sample (a
//! sentence, a generated JPEG photo, zeros for the encoders) at the largest
//! batch before the model is ready, and a sample the backend refuses fails
//! the model's load, loudly, instead of the first user request. With
//! `--response-cache`, repeated requests are answered from Triton's cache.

use clip_contract::model;
use harness::http::{self, Tensor};
use harness::repository::{Repository, Serving};
use harness::server::{tiny_clip_repository, Server};
use repo_gen::WARMUP_FOLDER;

/// The `inference_stats` counter `name` ("cache_hit", "success", ...) of `model`.
fn stat(server: &Server, model: &str, name: &str) -> u64 {
    let (status, stats) =
        http::get(&server.http_url, &format!("/v2/models/{model}/stats")).unwrap();
    assert_eq!(status, 200, "{stats}");
    stats["model_stats"][0]["inference_stats"][name]["count"]
        .as_u64()
        .unwrap_or(0)
}

/// `stat` once it has had time to reach `expected`: Triton records a composing
/// model's statistics after the ensemble has answered, so a count read at once
/// can lag. Read again a moment after it gets there, so that one still rising
/// past `expected` is seen.
fn settled_stat(server: &Server, model: &str, name: &str, expected: u64) -> u64 {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while stat(server, model, name) < expected && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    stat(server, model, name)
}

/// Triton's count of inferences `model` has run.
fn inference_count(server: &Server, model: &str) -> u64 {
    let (status, stats) =
        http::get(&server.http_url, &format!("/v2/models/{model}/stats")).unwrap();
    assert_eq!(status, 200, "{stats}");
    stats["model_stats"][0]["inference_count"]
        .as_u64()
        .unwrap_or(0)
}

#[test]
fn every_model_runs_its_warmup_sample_before_it_is_ready() {
    let out = tempfile::tempdir().unwrap();
    let repository = out.path().join("repository");
    // Two preprocessing instances whatever the cores here (auto follows them).
    tiny_clip_repository(
        &repository,
        &["--max-batch-size", "8", "--preprocess-instances", "2"],
    );
    let server = Server::start_with(&repository, &["--log-verbose=1"]);

    let log = server.log();
    for (name, instances) in [
        (model::TEXT_PREPROCESS, 2),
        (model::IMAGE_PREPROCESS, 2),
        (model::TEXT_ENCODER, 1),
        (model::IMAGE_ENCODER, 1),
    ] {
        for instance in 0..instances {
            assert!(
                log.contains(&format!(
                    "model '{name}' instance {name}_0_{instance} is running warmup sample \
                     'largest_batch'"
                )),
                "{name}: no warmup of instance {instance} in the log"
            );
        }
        // Nothing was sent yet: these are the warmup's 8 requests per instance, all answered.
        assert_eq!(inference_count(&server, name), 8 * instances, "{name}");
    }
    assert!(!log.contains("failed to run warmup sample"), "{log}");
    for ensemble in [model::TEXT_ENSEMBLE, model::IMAGE_ENSEMBLE] {
        assert_eq!(server.model_state(ensemble).0, "READY");
    }

    // Without warmup, nothing has run at load.
    let cold = out.path().join("cold");
    tiny_clip_repository(&cold, &["--no-warmup"]);
    assert!(!cold
        .join(model::IMAGE_PREPROCESS)
        .join(WARMUP_FOLDER)
        .exists());
    let server = Server::start(&cold);
    assert_eq!(inference_count(&server, model::IMAGE_PREPROCESS), 0);
}

#[test]
fn a_warmup_sample_the_backend_refuses_fails_the_load_and_says_why() {
    let out = tempfile::tempdir().unwrap();
    let repository = out.path().join("repository");
    tiny_clip_repository(&repository, &[]);
    // The photo cut short: still a well-formed BYTES element, no longer a decodable JPEG.
    let photo = repository
        .join(model::IMAGE_PREPROCESS)
        .join(WARMUP_FOLDER)
        .join("photo");
    let bytes = std::fs::read(&photo).unwrap();
    let mut truncated = 2000u32.to_le_bytes().to_vec();
    truncated.extend_from_slice(&bytes[4..2004]);
    std::fs::write(&photo, truncated).unwrap();

    let server = Server::start_tolerant(&repository);
    let (state, reason) = server.model_state(model::IMAGE_PREPROCESS);
    assert_eq!(state, "UNAVAILABLE", "{reason}");
    // Refused by the instance's own check, before Triton's warmup (whose
    // failure can crash Triton 2.51): the reason names the instance.
    assert!(
        reason.contains("model 'clip_image_preprocess' instance '")
            && reason.contains("failed to run warmup sample 'largest_batch'")
            && reason.contains("IMAGE element 0"),
        "{reason}"
    );
    assert_eq!(server.model_state(model::TEXT_PREPROCESS).0, "READY");

    // The harness's own models carry no warmup: tests count only their requests.
    let plain = Repository::new();
    plain.add_image(model::IMAGE_PREPROCESS, &Serving::default(), false, &[]);
    assert!(!plain
        .path()
        .join(model::IMAGE_PREPROCESS)
        .join(WARMUP_FOLDER)
        .exists());
}

/// `--response-cache`: an identical request is answered from Triton's local
/// cache with the same bytes and without running a step; differently written
/// sentences with the same tokens hit the encoder's cache; a failed request
/// is never cached, so it fails again instead of getting someone's result.
#[test]
fn the_response_cache_answers_repeats_and_never_caches_errors() {
    let out = tempfile::tempdir().unwrap();
    let repository = out.path().join("repository");
    tiny_clip_repository(&repository, &["--response-cache", "--no-warmup"]);
    let server = Server::start_with(&repository, &["--cache-config", "local,size=16777216"]);
    let embed = |model: &str, input: &str, elements: &[&[u8]]| {
        http::infer(
            &server.http_url,
            model,
            &[Tensor::bytes(input, elements)],
            &["EMBEDDING"],
        )
        .map(|outputs| outputs[0].data.clone())
    };
    let text = |elements: &[&[u8]]| embed(model::TEXT_ENSEMBLE, "TEXT", elements);

    let first = text(&[b"a photo of a cat", b"a dog"]).unwrap();
    let again = text(&[b"a photo of a cat", b"a dog"]).unwrap();
    assert_eq!(first, again);
    assert_eq!(
        settled_stat(&server, model::TEXT_ENSEMBLE, "cache_hit", 1),
        1
    );
    assert_eq!(
        settled_stat(&server, model::TEXT_ENSEMBLE, "cache_miss", 1),
        1
    );
    assert_eq!(
        settled_stat(&server, model::TEXT_ENCODER, "success", 1),
        1,
        "the hit ran no step"
    );

    // Other bytes, the same tokens (open_clip lower-cases and folds spaces):
    // the ensemble misses, the encoder hits.
    let rewritten = text(&[b"A  Photo of a CAT", b"a dog "]).unwrap();
    assert_eq!(rewritten, first);
    assert_eq!(
        settled_stat(&server, model::TEXT_ENSEMBLE, "cache_miss", 2),
        2
    );
    assert_eq!(
        settled_stat(&server, model::TEXT_ENCODER, "cache_hit", 1),
        1
    );

    // A request with a bad element fails every time, and leaves nothing cached.
    for _ in 0..2 {
        let failure = text(&[b"a dog", b"\xff\xfe"]).unwrap_err();
        assert!(
            failure.message.contains("element 1 is not valid UTF-8"),
            "{}",
            failure.message
        );
    }
    assert_eq!(
        settled_stat(&server, model::TEXT_ENSEMBLE, "cache_hit", 1),
        1
    );
    assert_eq!(text(&[b"a dog"]).unwrap().len(), first.len() / 2);

    let photo = harness::fixtures::image("rocket.jpg");
    let image = |elements: &[&[u8]]| embed(model::IMAGE_ENSEMBLE, "IMAGE", elements);
    assert_eq!(image(&[&photo]).unwrap(), image(&[&photo]).unwrap());
    assert_eq!(
        settled_stat(&server, model::IMAGE_ENSEMBLE, "cache_hit", 1),
        1
    );
    for _ in 0..2 {
        assert!(image(&[&photo[..photo.len() / 2]]).is_err());
    }
    assert_eq!(
        settled_stat(&server, model::IMAGE_ENSEMBLE, "cache_hit", 1),
        1
    );
}
