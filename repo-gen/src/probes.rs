//! The conformance probes' embeddings ([`clip_contract::probes`]), computed
//! when the repository is written: the same tokenizer and image
//! preprocessing the backend runs, then the exported encoders in ONNX
//! Runtime. The ensembles carry them as parameters, so `clip-client verify`
//! can hold a live server to them.

use std::path::Path;

use base64::Engine;
use clip_contract::{param, probes};
use clip_export::LoadedModel;
use clip_image::{ImageOptions, ImagePreprocessor};
use clip_text::{TextOptions, TextTokenizer, TokenizerFamily};

use crate::encoder::Tower;
use crate::error::GenerateError;

/// Each tower's probe embeddings, `[probes, embedding_dim]` row-major.
#[derive(Clone, Debug)]
pub(crate) struct ProbeEmbeddings {
    text: Vec<f32>,
    image: Vec<f32>,
}

/// How the backend will prepare the probes: as the generated preprocessing
/// configs say.
pub(crate) struct Preparation<'a> {
    pub(crate) tokenizer: &'a Path,
    pub(crate) family: TokenizerFamily,
    pub(crate) text: TextOptions,
    pub(crate) image: ImageOptions,
}

fn failed(what: &str) -> impl Fn(String) -> GenerateError + '_ {
    move |reason| GenerateError::Invalid(format!("embedding the conformance {what}: {reason}"))
}

/// Runs every probe through the `textual` and `visual` sessions.
pub(crate) fn embed(
    textual: &mut LoadedModel,
    visual: &mut LoadedModel,
    preparation: &Preparation<'_>,
) -> Result<ProbeEmbeddings, GenerateError> {
    let tokenizer = TextTokenizer::from_file(
        preparation.tokenizer,
        preparation.family,
        preparation.text.clone(),
    )
    .map_err(|e| failed("sentences")(e.to_string()))?;
    let width = tokenizer.context_length();
    let rows = probes::SENTENCES.len();
    let (mut ids, mut mask) = (vec![0i64; rows * width], vec![0i64; rows * width]);
    for ((sentence, ids), mask) in probes::SENTENCES
        .iter()
        .zip(ids.chunks_exact_mut(width))
        .zip(mask.chunks_exact_mut(width))
    {
        let encoded = tokenizer
            .encode_reporting(sentence, ids)
            .map_err(|e| failed("sentences")(e.to_string()))?;
        mask[..encoded.tokens].fill(1);
    }
    let text = textual
        .embed_tokens(&ids, Some(&mask), rows)
        .map_err(|e| failed("sentences")(e.to_string()))?;

    let preprocessor =
        ImagePreprocessor::new(preparation.image).map_err(|e| failed("photos")(e.to_string()))?;
    let per_image = preprocessor.pixels_per_image();
    let mut pixels = vec![0f32; per_image * probes::IMAGES.len()];
    for ((name, bytes), out) in probes::IMAGES
        .iter()
        .zip(pixels.chunks_exact_mut(per_image))
    {
        preprocessor
            .preprocess_into(bytes, out)
            .map_err(|e| failed("photos")(format!("{name}: {e}")))?;
    }
    let image = visual
        .embed_images(
            &pixels,
            probes::IMAGES.len(),
            preparation.image.size as usize,
        )
        .map_err(|e| failed("photos")(e.to_string()))?;
    Ok(ProbeEmbeddings {
        text: text.data,
        image: image.data,
    })
}

impl ProbeEmbeddings {
    /// The parameters of `tower`'s ensemble: the probe set and its embeddings.
    pub(crate) fn parameters(&self, tower: Tower) -> Vec<(String, String)> {
        let values = match tower {
            Tower::Text => &self.text,
            Tower::Image => &self.image,
        };
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        vec![
            (param::PROBE_SET.to_owned(), probes::fingerprint()),
            (
                param::PROBE_EMBEDDINGS.to_owned(),
                base64::engine::general_purpose::STANDARD.encode(bytes),
            ),
        ]
    }
}
