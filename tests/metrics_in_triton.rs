//! The backend's own counters on the real server's Prometheus endpoint:
//! after a known mix of requests (good elements, a JPEG large enough for the
//! reduced-scale decode, a text longer than the context, and bad elements of
//! every reason a request can reach the backend with), every `clip_` series
//! has exactly the expected value; time counters are positive. Requests go
//! one at a time, so each is its own batch and encoder runs are countable.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clip_contract::metric::{self, label, reason};
use clip_contract::{model, param, tensor};
use clip_export::{ClipArchitecture, ClipWeights, ExportOptions};
use clip_test_support::tiny_clip;
use harness::fixture;
use harness::fixtures::tokenizer_dir;
use harness::http::{self, Tensor};
use harness::repository::{Repository, Serving};
use harness::server::{onnxruntime_library, Server};
use repo_gen::{DataType, TensorSpec};

const TEXT: &str = model::TEXT_PREPROCESS;
const IMAGE: &str = model::IMAGE_PREPROCESS;
const ENCODER: &str = model::TEXT_ENCODER;
const MAX_TEXT_BYTES: usize = 1000;
const MAX_IMAGE_BYTES: usize = 2_000_000;
const CONTEXT: usize = 77;

fn image(name: &str) -> Vec<u8> {
    std::fs::read(fixture("images/inputs").join(name)).unwrap()
}

/// A BMP header claiming `width x height`, with no pixels after it.
fn bmp_header(width: i32, height: i32) -> Vec<u8> {
    let mut bmp = b"BM".to_vec();
    for field in [66u32, 0, 54, 40] {
        bmp.extend_from_slice(&field.to_le_bytes());
    }
    bmp.extend_from_slice(&width.to_le_bytes());
    bmp.extend_from_slice(&height.to_le_bytes());
    bmp.extend_from_slice(&1u16.to_le_bytes());
    bmp.extend_from_slice(&24u16.to_le_bytes());
    bmp.extend_from_slice(&[0; 36]);
    bmp
}

fn tiny(relative: &str) -> PathBuf {
    tiny_clip::dir().join(relative)
}

/// The tiny CLIP's text encoder (ONNX bytes) and its vocabulary size.
fn text_encoder() -> (Vec<u8>, u64) {
    let config = std::fs::read_to_string(tiny("quick_gelu/config.json")).unwrap();
    let arch = ClipArchitecture::from_config_json(&config).unwrap();
    let weights = ClipWeights::load(tiny("quick_gelu/model.safetensors"), &arch).unwrap();
    let onnx = clip_export::export_textual(&weights, &ExportOptions::default()).unwrap();
    (onnx.model, arch.text.vocab_size as u64)
}

/// Every `clip_` series on the endpoint, keyed `name{label="value",...}`
/// with the labels sorted.
fn clip_series(server: &Server) -> BTreeMap<String, f64> {
    let text = ureq::get(server.metrics_url())
        .call()
        .expect("GET /metrics")
        .body_mut()
        .read_to_string()
        .expect("metrics text");
    text.lines()
        .filter(|line| line.starts_with("clip_"))
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("series and value");
            let value: f64 = value.parse().expect("a number");
            let key = match series.split_once('{') {
                None => series.to_owned(),
                Some((name, labels)) => {
                    let mut labels: Vec<&str> = labels.trim_end_matches('}').split(',').collect();
                    labels.sort_unstable();
                    format!("{name}{{{}}}", labels.join(","))
                }
            };
            (key, value)
        })
        .collect()
}

/// `name{model="m"}` or `name{key="value",model="m"}`, as [`clip_series`] keys it.
fn key(name: &str, model: &str, label: Option<(&str, &str)>) -> String {
    let mut labels = vec![format!("{}=\"{model}\"", label::MODEL)];
    labels.extend(label.map(|(k, v)| format!("{k}=\"{v}\"")));
    labels.sort_unstable();
    format!("{name}{{{}}}", labels.join(","))
}

fn infer(server: &Server, model: &str, input: Tensor, output: &str) -> Result<(), String> {
    http::infer(&server.http_url, model, &[input], &[output])
        .map(|_| ())
        .map_err(|f| f.message)
}

fn ids_tensor(rows: &[Vec<i64>]) -> Tensor {
    Tensor {
        name: tensor::INPUT_IDS.into(),
        datatype: "INT64".into(),
        shape: vec![rows.len() as i64, CONTEXT as i64],
        data: rows
            .concat()
            .iter()
            .flat_map(|id| id.to_le_bytes())
            .collect(),
    }
}

#[test]
fn the_backends_counters_count_a_known_mix_of_requests_exactly() {
    let (onnx, vocab_size) = text_encoder();
    let serving = Serving::default();
    let repository = Repository::new();
    let (max_text, max_image) = (MAX_TEXT_BYTES.to_string(), MAX_IMAGE_BYTES.to_string());
    repository.add_text(
        TEXT,
        &serving,
        &tokenizer_dir(),
        &[(param::MAX_TEXT_BYTES, &max_text)],
    );
    repository.add_image(
        IMAGE,
        &serving,
        false,
        &[
            (param::MAX_IMAGE_BYTES, &max_image),
            (param::REDUCED_SCALE_DECODE, "true"),
        ],
    );
    let library = onnxruntime_library().display().to_string();
    let vocab = vocab_size.to_string();
    repository.add_encoder(
        ENCODER,
        &serving,
        &onnx,
        &TensorSpec::new(tensor::INPUT_IDS, DataType::Int64, vec![CONTEXT as i64]),
        &TensorSpec::new(tensor::EMBEDDING, DataType::Fp32, vec![24]),
        &[
            (param::ORT_LIBRARY, library.as_str()),
            (param::VOCAB_SIZE, vocab.as_str()),
        ],
    );
    let server = Server::start(repository.path());

    // Every series exists from the load on, at 0: a dashboard sees the model before its first request.
    let before = clip_series(&server);
    for series in [
        key(
            metric::IMAGES_DECODED,
            IMAGE,
            Some((label::FORMAT, metric::format::WEBP)),
        ),
        key(
            metric::REJECTED,
            TEXT,
            Some((label::REASON, reason::INVALID_UTF8)),
        ),
        key(metric::ENCODER_ROWS, ENCODER, None),
    ] {
        assert_eq!(before.get(&series), Some(&0.0), "{series} in {before:#?}");
    }

    // Texts: 3 tokenized (one truncated), one not UTF-8, one over max_text_bytes.
    let text = |texts: &[&[u8]]| {
        infer(
            &server,
            TEXT,
            Tensor::bytes(tensor::TEXT, texts),
            tensor::INPUT_IDS,
        )
    };
    let long = "a photo of a cat ".repeat(40);
    text(&[b"a photo of a cat", long.as_bytes()]).expect("good texts");
    text(&[b"a dog", b"\xff\xfe", b"never tokenized"]).expect_err("not UTF-8");
    text(&[&[b'x'; MAX_TEXT_BYTES + 1]]).expect_err("too large");

    // Images: one of each format (the 1920x1080 JPEG decoded at 1/2), then one bad element per reason.
    let images = |elements: &[&[u8]]| {
        infer(
            &server,
            IMAGE,
            Tensor::bytes(tensor::IMAGE, elements),
            tensor::PIXEL_VALUES,
        )
    };
    let (png, large_jpeg, gif, webp, bmp, jpeg) = (
        image("astronaut.png"),
        image("large_2mp.jpg"),
        image("chelsea.gif"),
        image("chelsea_lossy.webp"),
        image("coffee.bmp"),
        image("rocket.jpg"),
    );
    images(&[&png, &large_jpeg, &gif, &webp, &bmp]).expect("one of each format");
    images(&[&jpeg, b"not an image"]).expect_err("unknown format");
    let mut corrupt = png.clone();
    corrupt[20] ^= 0xff; // inside IHDR: its CRC no longer matches
    images(&[&corrupt]).expect_err("corrupt");
    images(&[&jpeg[..jpeg.len() / 2]]).expect_err("truncated");
    images(&[b""]).expect_err("empty");
    images(&[&bmp_header(60_000, 60_000)]).expect_err("too many pixels");
    images(&[&bmp_header(0, 10)]).expect_err("unsupported");
    let over = image("large_12mp.jpg");
    assert!(over.len() > MAX_IMAGE_BYTES);
    images(&[&over]).expect_err("too large");

    // The encoder: 2 runs of 3 good rows; 2 requests refused for one bad id each, never run.
    let ids: Vec<Vec<i64>> = tiny_clip::input("input_ids")
        .bytes
        .chunks_exact(8)
        .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
        .collect::<Vec<_>>()
        .chunks_exact(CONTEXT)
        .map(<[i64]>::to_vec)
        .collect();
    let with_id = |row: &Vec<i64>, id: i64| {
        let mut row = row.clone();
        row[3] = id;
        row
    };
    let encode = |rows: &[Vec<i64>]| infer(&server, ENCODER, ids_tensor(rows), tensor::EMBEDDING);
    encode(&ids[..2]).expect("good ids");
    encode(&[with_id(&ids[0], vocab_size as i64)]).expect_err("id past the vocabulary");
    encode(&[ids[2].clone(), with_id(&ids[1], -1)]).expect_err("negative id");
    encode(&ids[3..4]).expect("good ids");

    let mut after = clip_series(&server);
    for (seconds, model) in [
        (metric::IMAGE_PREPROCESS_SECONDS, IMAGE),
        (metric::ENCODER_SESSION_SECONDS, ENCODER),
    ] {
        let took = after.remove(&key(seconds, model, None)).expect(seconds);
        assert!(took > 0.0, "{seconds}: {took}");
    }
    let format = |f| Some((label::FORMAT, f));
    let rejected = |r| Some((label::REASON, r));
    let expected: BTreeMap<String, f64> = [
        (metric::TEXTS_TOKENIZED, TEXT, None, 3.0),
        (metric::TEXTS_TRUNCATED, TEXT, None, 1.0),
        (metric::REJECTED, TEXT, rejected(reason::INVALID_UTF8), 1.0),
        (metric::REJECTED, TEXT, rejected(reason::TOO_LARGE), 1.0),
        (
            metric::IMAGES_DECODED,
            IMAGE,
            format(metric::format::PNG),
            1.0,
        ),
        (
            metric::IMAGES_DECODED,
            IMAGE,
            format(metric::format::JPEG),
            2.0,
        ),
        (
            metric::IMAGES_DECODED,
            IMAGE,
            format(metric::format::GIF),
            1.0,
        ),
        (
            metric::IMAGES_DECODED,
            IMAGE,
            format(metric::format::WEBP),
            1.0,
        ),
        (
            metric::IMAGES_DECODED,
            IMAGE,
            format(metric::format::BMP),
            1.0,
        ),
        (
            metric::IMAGE_DECODED_BYTES,
            IMAGE,
            format(metric::format::PNG),
            png.len() as f64,
        ),
        (
            metric::IMAGE_DECODED_BYTES,
            IMAGE,
            format(metric::format::JPEG),
            (large_jpeg.len() + jpeg.len()) as f64,
        ),
        (
            metric::IMAGE_DECODED_BYTES,
            IMAGE,
            format(metric::format::GIF),
            gif.len() as f64,
        ),
        (
            metric::IMAGE_DECODED_BYTES,
            IMAGE,
            format(metric::format::WEBP),
            webp.len() as f64,
        ),
        (
            metric::IMAGE_DECODED_BYTES,
            IMAGE,
            format(metric::format::BMP),
            bmp.len() as f64,
        ),
        (
            metric::IMAGE_REDUCED_SCALE_DECODES,
            IMAGE,
            Some((label::SCALE, metric::scale::HALF)),
            1.0,
        ),
        (metric::IMAGE_PREPROCESS, IMAGE, None, 12.0),
        (
            metric::REJECTED,
            IMAGE,
            rejected(reason::UNSUPPORTED_FORMAT),
            1.0,
        ),
        (metric::REJECTED, IMAGE, rejected(reason::CORRUPT), 1.0),
        (metric::REJECTED, IMAGE, rejected(reason::TRUNCATED), 1.0),
        (metric::REJECTED, IMAGE, rejected(reason::EMPTY), 1.0),
        (
            metric::REJECTED,
            IMAGE,
            rejected(reason::TOO_MANY_PIXELS),
            1.0,
        ),
        (
            metric::REJECTED,
            IMAGE,
            rejected(reason::UNSUPPORTED_FEATURE),
            1.0,
        ),
        (metric::REJECTED, IMAGE, rejected(reason::TOO_LARGE), 1.0),
        (metric::ENCODER_SESSION_RUNS, ENCODER, None, 2.0),
        (metric::ENCODER_ROWS, ENCODER, None, 3.0),
        (
            metric::REJECTED,
            ENCODER,
            rejected(reason::TOKEN_ID_OUT_OF_RANGE),
            2.0,
        ),
    ]
    .into_iter()
    .map(|(name, model, label, value)| (key(name, model, label), value))
    .collect();
    let moved: BTreeMap<String, f64> = after.into_iter().filter(|(_, v)| *v != 0.0).collect();
    assert_eq!(moved, expected);
}
