//! The committed reference fixtures (tests/fixtures), read once per test.

use std::path::PathBuf;

use clip_contract::defaults;
use clip_image::{ImageOptions, ImagePreprocessor};
use serde_json::Value;

use crate::fixture;

/// tokenizer.json and tokenizer_config.json as Hugging Face writes them.
pub fn tokenizer_dir() -> PathBuf {
    fixture("text")
}

pub struct Sentence {
    pub text: String,
    /// open_clip's ids, padded with 0.
    pub open_clip: Vec<i64>,
    /// Start token, content and end token, without padding.
    pub content_len: usize,
}

impl Sentence {
    /// The same ids padded with the end token, as Hugging Face's tokenizer files pad.
    pub fn end_padded(&self) -> Vec<i64> {
        let mut ids = self.open_clip.clone();
        let end = ids[self.content_len - 1];
        ids[self.content_len..].fill(end);
        ids
    }
}

/// The reference token ids (open_clip's tokenizer), less the few sentences
/// that need ftfy's mojibake repair, which clip-text leaves out (its own
/// parity test pins that gap down).
pub fn sentences() -> Vec<Sentence> {
    let lines = std::fs::read_to_string(fixture("text/tokens.jsonl")).expect("tokens.jsonl");
    lines
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).expect("fixture row"))
        .filter(|row| row["mojibake"] != Value::Bool(true))
        .map(|row| Sentence {
            text: row["text"].as_str().expect("text").to_owned(),
            open_clip: row["open_clip"]
                .as_array()
                .expect("ids")
                .iter()
                .map(|v| v.as_i64().unwrap())
                .collect(),
            content_len: row["open_clip_len"].as_u64().expect("length") as usize,
        })
        .collect()
}

/// Every fixture photo: (file name, encoded bytes).
pub fn images() -> Vec<(String, Vec<u8>)> {
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("images/manifest.json")).unwrap())
            .expect("images/manifest.json");
    manifest["images"]
        .as_array()
        .expect("images")
        .iter()
        .map(|entry| {
            let file = entry["file"].as_str().expect("file");
            (
                file.to_owned(),
                std::fs::read(fixture(&format!("images/{file}"))).unwrap(),
            )
        })
        .collect()
}

pub fn image(suffix: &str) -> Vec<u8> {
    images()
        .into_iter()
        .find(|(name, _)| name.ends_with(suffix))
        .unwrap_or_else(|| panic!("no fixture {suffix}"))
        .1
}

/// The in-process preprocessor with the settings a default model uses.
pub fn library_preprocessor() -> ImagePreprocessor {
    ImagePreprocessor::new(ImageOptions {
        size: defaults::IMAGE_SIZE,
        mean: defaults::IMAGE_MEAN,
        std: defaults::IMAGE_STD,
        max_pixels: defaults::MAX_PIXELS,
        reduced_scale_decode: true,
        center_crop: clip_image::CenterCrop::Transformers,
    })
    .expect("default options")
}

/// What the server must return for `image`: the library's own output.
pub fn library_pixels(image: &[u8]) -> Vec<f32> {
    let preprocessor = library_preprocessor();
    let mut out = vec![0f32; preprocessor.pixels_per_image()];
    preprocessor
        .preprocess_into(image, &mut out)
        .expect("fixture image preprocesses");
    out
}

/// Hugging Face's pipeline on the end-to-end inputs (tests/fixtures/end-to-end,
/// made by scripts/fixtures/end_to_end.py).
pub struct EndToEnd {
    pub sentences: Vec<String>,
    pub text: Vec<Vec<f32>>,
    /// The raw image files, in tests/fixtures/images/inputs.
    pub images: Vec<PathBuf>,
    pub image: Vec<Vec<f32>>,
    /// Per image, the sentence indices from best match to worst.
    pub ranking: Vec<Vec<usize>>,
}

/// Rows of numbers from a JSON array of arrays.
pub fn rows(value: &Value) -> Vec<Vec<f32>> {
    value
        .as_array()
        .expect("rows")
        .iter()
        .map(|row| {
            row.as_array()
                .expect("row")
                .iter()
                .map(|v| v.as_f64().expect("number") as f32)
                .collect()
        })
        .collect()
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .expect("strings")
        .iter()
        .map(|v| v.as_str().expect("string").to_owned())
        .collect()
}

pub fn end_to_end() -> EndToEnd {
    end_to_end_from("end-to-end/reference.json")
}

/// open_clip's text and transformers' image pipeline on raw inputs for the
/// CLIP-as-service-style ONNX files of tests/fixtures/cas-onnx
/// (scripts/fixtures/cas_onnx.py); no ranking.
pub fn cas_onnx() -> EndToEnd {
    end_to_end_from("cas-onnx/reference.json")
}

/// An end-to-end reference file of the same form under tests/fixtures (the
/// ranking is optional).
pub fn end_to_end_from(relative: &str) -> EndToEnd {
    let text = std::fs::read_to_string(fixture(relative)).unwrap();
    let json: Value = serde_json::from_str(&text).unwrap();
    EndToEnd {
        sentences: strings(&json["sentences"]),
        text: rows(&json["text_embeddings"]),
        images: strings(&json["images"])
            .iter()
            .map(|name| fixture(&format!("images/inputs/{name}")))
            .collect(),
        image: rows(&json["image_embeddings"]),
        ranking: json["ranking_of_sentences_per_image"]
            .as_array()
            .map(|rankings| {
                rankings
                    .iter()
                    .map(|r| {
                        r.as_array()
                            .expect("ranking")
                            .iter()
                            .map(|v| v.as_u64().expect("index") as usize)
                            .collect()
                    })
                    .collect()
            })
            .unwrap_or_default(),
    }
}
