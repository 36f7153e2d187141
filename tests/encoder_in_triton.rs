//! The `onnx_encoder` kind inside a real `tritonserver` 2.51.0, which has no
//! ONNX Runtime backend of its own: the tiny CLIP's text and image encoders,
//! exported by clip-export, run through ONNX Runtime 1.31.1 loaded by the
//! clip backend. Embeddings are checked against transformers' references
//! (tests/fixtures/tiny-clip), in dynamic batches formed by concurrent
//! requests; bad requests and bad configs fail alone.

use std::path::PathBuf;
use std::sync::{Arc, Barrier};

use clip_contract::{model, param, tensor};
use clip_export::{ClipArchitecture, ClipWeights, ExportOptions};
use clip_test_support::tiny_clip;
use harness::http::{self, Tensor};
use harness::mixed::Burst;
use harness::repository::{Repository, Serving};
use harness::server::{onnxruntime_library, Server};
use repo_gen::{DataType, TensorSpec};

const TOLERANCE: f32 = 1e-4;
const VARIANT: &str = "quick_gelu";
const EMBED_DIM: i64 = 24;
const CONTEXT: i64 = 77;
const IMAGE_SIZE: i64 = 224;

fn tiny(relative: &str) -> PathBuf {
    tiny_clip::dir().join(relative)
}

/// The reference token ids, one little-endian INT64 row of 77 per sentence.
fn id_rows() -> Vec<Vec<u8>> {
    tiny_clip::input("input_ids")
        .bytes
        .chunks_exact(CONTEXT as usize * 8)
        .map(<[u8]>::to_vec)
        .collect()
}

/// The reference pixels (stored as FP16), widened to little-endian FP32 rows.
fn pixel_rows() -> Vec<Vec<u8>> {
    let widened: Vec<u8> = tiny_clip::input("pixel_values")
        .f32s()
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    widened
        .chunks_exact((3 * IMAGE_SIZE * IMAGE_SIZE * 4) as usize)
        .map(<[u8]>::to_vec)
        .collect()
}

fn reference(which: &str) -> Vec<Vec<f32>> {
    tiny_clip::reference(VARIANT, which)
        .f32s()
        .chunks_exact(EMBED_DIM as usize)
        .map(<[f32]>::to_vec)
        .collect()
}

/// The tiny model's (textual, visual) ONNX bytes.
fn exported() -> (Vec<u8>, Vec<u8>) {
    let config = std::fs::read_to_string(tiny(&format!("{VARIANT}/config.json"))).unwrap();
    let arch = ClipArchitecture::from_config_json(&config).unwrap();
    let weights = ClipWeights::load(tiny(&format!("{VARIANT}/model.safetensors")), &arch).unwrap();
    let options = ExportOptions::default();
    (
        clip_export::export_textual(&weights, &options)
            .unwrap()
            .model,
        clip_export::export_visual(&weights, &options)
            .unwrap()
            .model,
    )
}

fn ids_tensor() -> TensorSpec {
    TensorSpec::new(tensor::INPUT_IDS, DataType::Int64, vec![CONTEXT])
}

fn pixels_tensor() -> TensorSpec {
    TensorSpec::new(
        tensor::PIXEL_VALUES,
        DataType::Fp32,
        vec![3, IMAGE_SIZE, IMAGE_SIZE],
    )
}

fn embedding_tensor() -> TensorSpec {
    TensorSpec::new(tensor::EMBEDDING, DataType::Fp32, vec![EMBED_DIM])
}

fn library() -> String {
    onnxruntime_library().display().to_string()
}

/// One request of `rows` joined; the tensor's shape is [rows, dims...].
fn request(name: &str, datatype: &str, dims: &[i64], rows: &[&Vec<u8>]) -> Tensor {
    let mut shape = vec![rows.len() as i64];
    shape.extend_from_slice(dims);
    Tensor {
        name: name.into(),
        datatype: datatype.into(),
        shape,
        data: rows.iter().flat_map(|r| r.iter().copied()).collect(),
    }
}

fn max_diff(got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len());
    got.iter()
        .zip(want)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()))
}

fn batch_sizes(server: &Server, model: &str) -> Vec<u64> {
    let (status, stats) =
        http::get(&server.http_url, &format!("/v2/models/{model}/stats")).unwrap();
    assert_eq!(status, 200, "{stats}");
    stats["model_stats"][0]["batch_stats"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["batch_size"].as_u64().unwrap())
        .collect()
}

enum Expect {
    /// Reference rows (indices into the reference embeddings).
    Rows(Vec<usize>),
    Fails(&'static str),
}

#[test]
fn concurrent_batches_match_the_reference_embeddings() {
    let (textual, visual) = exported();
    // A long queue delay so that the concurrent burst lands in shared batches, even on a loaded machine.
    let serving = Serving {
        max_batch_size: 16,
        queue_delay_us: Some(1_000_000),
        instances: 1,
    };
    let repository = Repository::new();
    let library = library();
    let ort = [(param::ORT_LIBRARY, library.as_str())];
    repository.add_encoder(
        model::TEXT_ENCODER,
        &serving,
        &textual,
        &ids_tensor(),
        &embedding_tensor(),
        &ort,
    );
    repository.add_encoder(
        model::IMAGE_ENCODER,
        &serving,
        &visual,
        &pixels_tensor(),
        &embedding_tensor(),
        &ort,
    );
    let server = Server::start(repository.path());

    let (ids, pixels) = (id_rows(), pixel_rows());
    let (text_ref, image_ref) = (reference("text_features"), reference("image_features"));
    assert_eq!((ids.len(), pixels.len()), (7, 5));

    // (model, request, expectation): every reference row in requests of 1, 2, 3 and 4 rows.
    let mut cases: Vec<(&str, Tensor, Expect)> = Vec::new();
    for groups in [
        vec![vec![0], vec![1, 2], vec![3, 4, 5, 6]],
        vec![vec![6, 5, 4], vec![3], vec![2, 1, 0]],
    ] {
        for rows in groups {
            let data: Vec<&Vec<u8>> = rows.iter().map(|&r| &ids[r]).collect();
            let input = request(tensor::INPUT_IDS, "INT64", &[CONTEXT], &data);
            cases.push((model::TEXT_ENCODER, input, Expect::Rows(rows)));
        }
    }
    for rows in [vec![0], vec![1, 2], vec![3, 4], vec![4, 0, 2], vec![1]] {
        let data: Vec<&Vec<u8>> = rows.iter().map(|&r| &pixels[r]).collect();
        let input = request(
            tensor::PIXEL_VALUES,
            "FP32",
            &[3, IMAGE_SIZE, IMAGE_SIZE],
            &data,
        );
        cases.push((model::IMAGE_ENCODER, input, Expect::Rows(rows)));
    }
    // Wrong shape and wrong type: rejected without disturbing the batch.
    let short: Vec<u8> = ids[0][..70 * 8].to_vec();
    cases.push((
        model::TEXT_ENCODER,
        request(tensor::INPUT_IDS, "INT64", &[70], &[&short]),
        Expect::Fails("shape"),
    ));
    cases.push((
        model::TEXT_ENCODER,
        request(tensor::INPUT_IDS, "FP64", &[CONTEXT], &[&ids[0]]),
        Expect::Fails("data-type"),
    ));
    let small_image = pixels[0][..(3 * 112 * 112 * 4) as usize].to_vec();
    cases.push((
        model::IMAGE_ENCODER,
        request(
            tensor::PIXEL_VALUES,
            "FP32",
            &[3, 112, 112],
            &[&small_image],
        ),
        Expect::Fails("shape"),
    ));

    let barrier = Arc::new(Barrier::new(cases.len()));
    let handles: Vec<_> = cases
        .into_iter()
        .map(|(model, input, expect)| {
            let (barrier, url) = (Arc::clone(&barrier), server.http_url.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let outcome = http::infer(
                    &url,
                    model,
                    std::slice::from_ref(&input),
                    &[tensor::EMBEDDING],
                );
                (model, input.shape, outcome, expect)
            })
        })
        .collect();

    let mut worst = [0f32; 2];
    for handle in handles {
        let (model, shape, outcome, expect) = handle.join().expect("request thread");
        match (outcome, expect) {
            (Ok(outputs), Expect::Rows(rows)) => {
                let (references, slot) = if model == model::TEXT_ENCODER {
                    (&text_ref, 0)
                } else {
                    (&image_ref, 1)
                };
                assert_eq!(outputs[0].shape, vec![rows.len() as i64, EMBED_DIM]);
                let want: Vec<f32> = rows.iter().flat_map(|&r| references[r].clone()).collect();
                let diff = max_diff(&outputs[0].as_f32(), &want);
                assert!(diff <= TOLERANCE, "{model} rows {rows:?}: {diff}");
                worst[slot] = worst[slot].max(diff);
            }
            (Err(failure), Expect::Fails(says)) => {
                assert_eq!(failure.status, 400, "{failure:?}");
                assert!(
                    failure.message.contains(says),
                    "{model} {shape:?}: {:?} does not mention {says:?}",
                    failure.message
                );
            }
            (Ok(_), Expect::Fails(says)) => panic!("{model} {shape:?}: expected {says:?}"),
            (Err(failure), Expect::Rows(rows)) => {
                panic!("{model} rows {rows:?} failed: {failure:?}")
            }
        }
    }
    eprintln!(
        "max |server - transformers|: text {:.2e}, image {:.2e}",
        worst[0], worst[1]
    );

    for model in [model::TEXT_ENCODER, model::IMAGE_ENCODER] {
        let sizes = batch_sizes(&server, model);
        eprintln!("{model}: batch sizes {sizes:?}");
        assert!(
            sizes.iter().any(|&b| b > 1),
            "{model}: no batch of several rows formed: {sizes:?}"
        );
    }

    // An id past the vocabulary gets through Triton's checks; ONNX Runtime
    // refuses it, the request fails with ORT's message, the server goes on.
    let mut bad_id = ids[0].clone();
    bad_id[8..16].copy_from_slice(&1_000_000_000i64.to_le_bytes());
    let failure = http::infer(
        &server.http_url,
        model::TEXT_ENCODER,
        &[request(tensor::INPUT_IDS, "INT64", &[CONTEXT], &[&bad_id])],
        &[tensor::EMBEDDING],
    )
    .expect_err("ONNX Runtime refuses the id");
    assert_eq!(failure.status, 500, "{failure:?}");
    assert!(
        failure
            .message
            .contains("ONNX Runtime failed on this batch")
            && failure.message.contains("Gather"),
        "{failure:?}"
    );
    let mut server = server;
    assert!(server.is_live(), "server died:\n{}", server.log());
    // ONNX Runtime's own report of the failure reaches Triton's log, not stderr alone.
    let log = server.log();
    assert!(
        log.lines()
            .any(|l| l.starts_with('E') && l.contains("onnxruntime [") && l.contains("Gather")),
        "no ONNX Runtime error in Triton's log:\n{log}"
    );
    let again = http::infer(
        &server.http_url,
        model::TEXT_ENCODER,
        &[request(tensor::INPUT_IDS, "INT64", &[CONTEXT], &[&ids[1]])],
        &[tensor::EMBEDDING],
    )
    .expect("a good request after the failure");
    assert!(max_diff(&again[0].as_f32(), &text_ref[1]) <= TOLERANCE);
}

#[test]
fn encoders_whose_config_disagrees_fail_alone_and_say_why() {
    let (textual, visual) = exported();
    let serving = Serving::default();
    let repository = Repository::new();
    let library = library();
    let ort = [(param::ORT_LIBRARY, library.as_str())];
    repository.add_encoder(
        model::TEXT_ENCODER,
        &serving,
        &textual,
        &ids_tensor(),
        &embedding_tensor(),
        &ort,
    );
    repository.add_encoder(
        "wrong_dims",
        &serving,
        &visual,
        &TensorSpec::new(tensor::PIXEL_VALUES, DataType::Fp32, vec![3, 256, 256]),
        &embedding_tensor(),
        &ort,
    );
    repository.add_encoder(
        "wrong_type",
        &serving,
        &visual,
        &TensorSpec::new(
            tensor::PIXEL_VALUES,
            DataType::Fp16,
            vec![3, IMAGE_SIZE, IMAGE_SIZE],
        ),
        &embedding_tensor(),
        &ort,
    );
    repository.add_encoder(
        "wrong_embedding",
        &serving,
        &textual,
        &ids_tensor(),
        &TensorSpec::new(tensor::EMBEDDING, DataType::Fp32, vec![512]),
        &ort,
    );
    repository.add_encoder(
        "no_library",
        &serving,
        &textual,
        &ids_tensor(),
        &embedding_tensor(),
        &[(param::ORT_LIBRARY, "/nowhere/libonnxruntime.so")],
    );

    let server = Server::start_tolerant(repository.path());
    let state_of = |name: &str| server.model_state(name);
    assert_eq!(state_of(model::TEXT_ENCODER).0, "READY");
    for (name, says) in [
        (
            "wrong_dims",
            "input 'PIXEL_VALUES': config.pbtxt says TYPE_FP32 [batch, 3, 256, 256], model.onnx says FLOAT32 [?, 3, 224, 224] (the dims differ)",
        ),
        (
            "wrong_type",
            "config.pbtxt says TYPE_FP16 [batch, 3, 224, 224], model.onnx says FLOAT32 [?, 3, 224, 224] (the data types differ)",
        ),
        (
            "wrong_embedding",
            "output 'EMBEDDING': config.pbtxt says TYPE_FP32 [batch, 512], model.onnx says FLOAT32 [?, 24]",
        ),
        (
            "no_library",
            "parameter 'ort_library' names /nowhere/libonnxruntime.so, which is not a file (scripts/install-onnxruntime.sh",
        ),
    ] {
        let (state, reason) = state_of(name);
        assert_eq!(state, "UNAVAILABLE", "{name}: {reason}");
        assert!(
            reason.contains(says),
            "{name}: reason {reason:?} does not mention {says:?}"
        );
    }
    let ids = id_rows();
    let embedding = http::infer(
        &server.http_url,
        model::TEXT_ENCODER,
        &[request(tensor::INPUT_IDS, "INT64", &[CONTEXT], &[&ids[0]])],
        &[tensor::EMBEDDING],
    )
    .expect("the good encoder serves");
    assert!(max_diff(&embedding[0].as_f32(), &reference("text_features")[0]) <= TOLERANCE);
}

/// With `vocab_size` set, a request holding a token id outside the
/// vocabulary (or a negative one) fails alone with INVALID_ARG naming the
/// element, whatever its position and whoever shares its batch; every other
/// request gets exactly its reference rows.
#[test]
fn token_ids_outside_the_vocabulary_fail_their_request_alone() {
    let (textual, _) = exported();
    let serving = Serving {
        max_batch_size: 32,
        queue_delay_us: Some(1_000_000),
        instances: 1,
    };
    let repository = Repository::new();
    let library = library();
    let vocab_size = ClipArchitecture::from_config_json(
        &std::fs::read_to_string(tiny(&format!("{VARIANT}/config.json"))).unwrap(),
    )
    .unwrap()
    .text
    .vocab_size;
    let vocab = vocab_size.to_string();
    repository.add_encoder(
        model::TEXT_ENCODER,
        &serving,
        &textual,
        &ids_tensor(),
        &embedding_tensor(),
        &[
            (param::ORT_LIBRARY, library.as_str()),
            (param::VOCAB_SIZE, vocab.as_str()),
        ],
    );
    let server = Server::start(repository.path());
    let (ids, text_ref) = (id_rows(), reference("text_features"));
    let with_id = |row: &Vec<u8>, id: i64| {
        let mut row = row.clone();
        row[3 * 8..4 * 8].copy_from_slice(&id.to_le_bytes());
        row
    };
    let burst = Burst {
        model: model::TEXT_ENCODER,
        input: tensor::INPUT_IDS,
        output: tensor::EMBEDDING,
        bads: vec![with_id(&ids[0], vocab_size as i64), with_id(&ids[1], -1)],
        goods: ids,
        tensor: |rows| Tensor {
            name: tensor::INPUT_IDS.into(),
            datatype: "INT64".into(),
            shape: vec![rows.len() as i64, CONTEXT],
            data: rows.concat(),
        },
    };
    let dim = EMBED_DIM as usize;
    burst.check(&server, |output, row, good| {
        max_diff(
            &output.as_f32()[row * dim..(row + 1) * dim],
            &text_ref[good],
        ) <= TOLERANCE
    });
    let sizes = batch_sizes(&server, model::TEXT_ENCODER);
    assert!(
        sizes.iter().any(|&b| b > 3),
        "no batch of several requests formed: {sizes:?}"
    );

    // The message names the element, the id and the limit.
    let failure = http::infer(
        &server.http_url,
        model::TEXT_ENCODER,
        &[(burst.tensor)(&[&burst.goods[2], &burst.bads[0]])],
        &[tensor::EMBEDDING],
    )
    .expect_err("an id outside the vocabulary");
    assert_eq!(failure.status, 400, "{failure:?}");
    assert!(
        failure.message.contains(&format!(
            "INPUT_IDS element 1: token id {vocab_size} is outside the vocabulary (ids must be in 0..{vocab_size})"
        )),
        "{failure:?}"
    );
}
