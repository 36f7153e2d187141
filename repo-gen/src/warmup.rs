//! `model_warmup` samples: what every instance of a generated model runs as
//! it loads, and the data files Triton reads them from (the model's
//! `warmup/` folder). The preprocessing models warm up on real input (a
//! sentence, a JPEG photo large enough for the reduced-scale decode), the
//! encoders on zeros, each at the model's largest batch.

use clip_contract::{tensor, DataType, TensorSpec};
use serde::Serialize;

/// Folder of a model, beside its version folder, that Triton reads warmup data files from.
pub const WARMUP_FOLDER: &str = "warmup";

const SAMPLE_NAME: &str = "largest_batch";
const SENTENCE_FILE: &str = "sentence";
const SENTENCE: &str = "a photo of a cat sitting on a wooden table";
const PHOTO_FILE: &str = "photo";
const MASK_FILE: &str = "attention_mask_ones";
/// 1280x960: a shortest side of at least 4 x 224, so the reduced-scale JPEG
/// path runs too.
const PHOTO_SIZE: (u32, u32) = (1280, 960);

/// One warmup sample, as the templates render it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Sample {
    pub name: String,
    pub batch_size: u32,
    pub inputs: Vec<SampleInput>,
}

/// One input of a sample: zeros, or the contents of a data file.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SampleInput {
    pub key: String,
    pub data_type: &'static str,
    pub dims: Vec<i64>,
    /// A file of the model's `warmup/` folder; `None` means zero data.
    pub data_file: Option<String>,
}

/// A file of a model's `warmup/` folder.
#[derive(Clone, Debug, PartialEq)]
pub struct WarmupFile {
    pub name: String,
    pub bytes: Vec<u8>,
}

/// Triton reads a TYPE_STRING warmup file as serialized elements: each one
/// a 4-byte little-endian length, then its bytes.
fn one_bytes_element(element: &[u8]) -> Vec<u8> {
    let mut bytes = (element.len() as u32).to_le_bytes().to_vec();
    bytes.extend_from_slice(element);
    bytes
}

fn bytes_sample(input: &str, batch_size: u32, file: &str) -> Sample {
    Sample {
        name: SAMPLE_NAME.into(),
        batch_size,
        inputs: vec![SampleInput {
            key: input.into(),
            data_type: DataType::Bytes.config_name(),
            dims: vec![1],
            data_file: Some(file.into()),
        }],
    }
}

/// A sentence, `batch_size` times in one batch.
pub fn text_sample(input: &str, batch_size: u32) -> Sample {
    bytes_sample(input, batch_size, SENTENCE_FILE)
}

/// The file [`text_sample`] reads.
pub fn text_file() -> WarmupFile {
    WarmupFile {
        name: SENTENCE_FILE.into(),
        bytes: one_bytes_element(SENTENCE.as_bytes()),
    }
}

/// A generated JPEG photo, `batch_size` times in one batch.
pub fn image_sample(input: &str, batch_size: u32) -> Sample {
    bytes_sample(input, batch_size, PHOTO_FILE)
}

/// The file [`image_sample`] reads.
pub fn image_file() -> WarmupFile {
    WarmupFile {
        name: PHOTO_FILE.into(),
        bytes: one_bytes_element(&photo()),
    }
}

/// A sample of fixed-size tensors (an encoder's inputs), `batch_size` rows:
/// zeros for every input but an attention mask, which is all ones (an all-zero mask attends nothing and
/// is refused), read from the file returned beside the sample.
pub fn tensor_sample(inputs: &[TensorSpec], batch_size: u32) -> (Sample, Vec<WarmupFile>) {
    let mut files = Vec::new();
    let inputs = inputs
        .iter()
        .map(|input| {
            let data_file = tensor::plays(&input.name, tensor::ATTENTION_MASK).then(|| {
                let ones = ones(input);
                files.push(WarmupFile {
                    name: MASK_FILE.into(),
                    bytes: ones,
                });
                MASK_FILE.to_owned()
            });
            SampleInput {
                key: input.name.clone(),
                data_type: input.data_type.config_name(),
                dims: input.dims.clone(),
                data_file,
            }
        })
        .collect();
    let sample = Sample {
        name: SAMPLE_NAME.into(),
        batch_size,
        inputs,
    };
    (sample, files)
}

/// One row of `input` (an integer tensor) set to 1, as raw little-endian
/// bytes: what Triton reads for each request of a warmup batch.
fn ones(input: &TensorSpec) -> Vec<u8> {
    let count = input.row_elements().unwrap_or(0);
    match input.data_type {
        DataType::Int32 => 1i32.to_le_bytes().repeat(count),
        _ => 1i64.to_le_bytes().repeat(count),
    }
}

/// A smooth, photo-like picture (gradients and soft waves, no flat areas),
/// as a baseline JPEG at quality 85: the same bytes on every run.
fn photo() -> Vec<u8> {
    let (width, height) = PHOTO_SIZE;
    let picture = image::RgbImage::from_fn(width, height, |x, y| {
        let (fx, fy) = (x as f32 / width as f32, y as f32 / height as f32);
        let wave = ((fx * 23.0).sin() * (fy * 17.0).cos() * 0.5 + 0.5) * 80.0;
        image::Rgb([
            (fx * 160.0 + wave) as u8,
            (fy * 150.0 + wave * 0.6) as u8,
            ((1.0 - fx) * 120.0 + wave * 0.8) as u8,
        ])
    });
    let mut bytes = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 85)
        .encode_image(&picture)
        .expect("a JPEG of a generated picture encodes into memory");
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_photo_is_a_large_enough_jpeg_and_the_same_every_time() {
        let photo = photo();
        assert_eq!(&photo[..3], &[0xFF, 0xD8, 0xFF], "a JPEG");
        let decoded = image::load_from_memory(&photo).unwrap();
        assert_eq!((decoded.width(), decoded.height()), PHOTO_SIZE);
        assert!(PHOTO_SIZE.1 >= 4 * 224, "the reduced-scale path runs");
        assert_eq!(photo, super::photo());
    }

    #[test]
    fn string_files_hold_one_length_prefixed_element() {
        let (sample, file) = (text_sample("TEXT", 8), text_file());
        assert_eq!(sample.batch_size, 8);
        assert_eq!(sample.inputs[0].data_file.as_deref(), Some(SENTENCE_FILE));
        assert_eq!(&file.bytes[..4], &(SENTENCE.len() as u32).to_le_bytes());
        assert_eq!(&file.bytes[4..], SENTENCE.as_bytes());
    }
}
