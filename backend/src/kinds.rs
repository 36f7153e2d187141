//! What each model kind does with a batch of requests: the one narrow trait
//! between the Triton plumbing and the CLIP logic.
//!
//! A [`Kind`] is loaded once per model; it makes one [`Runner`] per model
//! instance, which answers that instance's batches. The preprocessing kinds
//! keep no per-instance state, so their instances share the model's copy;
//! an encoder instance owns its own ONNX Runtime session.

use std::path::Path;
use std::sync::Arc;

use clip_contract::{param, tensor};
use clip_image::{ImageOptions, ImagePreprocessor};
use clip_text::{TextError, TextOptions, Tokenizer};

use crate::config::{ImageSpec, KindSpec, TextSpec};
use crate::encoder::OnnxEncoder;
use crate::request::{bytes_elements, Input, Output, OutputData, RequestError};

/// Where Triton placed a model instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Device {
    Cpu,
    /// KIND_GPU, with the CUDA device id.
    Gpu(i32),
}

/// One model instance, as Triton describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instance {
    pub name: String,
    pub device: Device,
}

/// One model kind of the `clip` backend.
pub trait Kind: Send + Sync {
    /// The input tensor read from every request.
    fn input_name(&self) -> &'static str;

    /// What one instance of the model runs its batches with; called once
    /// per instance. An `Err` fails that instance's, and so the model's, load.
    fn runner(self: Arc<Self>, instance: &Instance) -> Result<Box<dyn Runner>, String>;
}

/// Answers the batches of one model instance. Triton calls an instance from
/// one thread at a time, hence `&mut self`.
pub trait Runner: Send {
    /// Where the work really runs.
    fn device(&self) -> Device;

    /// One result per request, in order. An `Err` fails that request alone;
    /// a request whose input could not even be read arrives as an `Err`.
    fn execute(
        &mut self,
        batch: &[Result<Input<'_>, RequestError>],
    ) -> Vec<Result<Output, RequestError>>;
}

/// Builds the kind a model config asks for; `version_dir` holds its files.
pub fn load(spec: KindSpec, version_dir: &Path) -> Result<Arc<dyn Kind>, String> {
    Ok(match spec {
        KindSpec::TextPreprocess(spec) => Arc::new(TextPreprocess::load(spec, version_dir)?),
        KindSpec::ImagePreprocess(spec) => Arc::new(ImagePreprocess::new(spec)?),
        KindSpec::OnnxEncoder(spec) => Arc::new(OnnxEncoder::load(spec, version_dir)?),
    })
}

/// A preprocessing step: stateless per batch, so every instance shares it.
trait Preprocess: Send + Sync {
    fn execute(
        &self,
        batch: &[Result<Input<'_>, RequestError>],
    ) -> Vec<Result<Output, RequestError>>;
}

/// The runner of a preprocessing model's instances: the model's one copy.
/// Preprocessing always runs on the CPU, whatever the instance group says.
struct Shared<P: ?Sized>(Arc<P>);

impl<P: Preprocess + ?Sized> Runner for Shared<P> {
    fn device(&self) -> Device {
        Device::Cpu
    }

    fn execute(
        &mut self,
        batch: &[Result<Input<'_>, RequestError>],
    ) -> Vec<Result<Output, RequestError>> {
        self.0.execute(batch)
    }
}

pub struct TextPreprocess {
    tokenizer: Tokenizer,
}

impl TextPreprocess {
    pub fn load(spec: TextSpec, version_dir: &Path) -> Result<Self, String> {
        let path = version_dir.join(&spec.tokenizer_file);
        let options = TextOptions {
            context_length: spec.context_length,
            pad_id: spec.pad_id,
        };
        let tokenizer = Tokenizer::from_file(&path, options).map_err(|e| match e {
            // The library names its own option; a Triton user sets a config parameter.
            TextError::NoPadId { .. } | TextError::PadTokenNotInVocab { .. } => {
                format!(
                    "{e} (in config.pbtxt: the '{}' parameter)",
                    param::PAD_TOKEN_ID
                )
            }
            e => e.to_string(),
        })?;
        Ok(TextPreprocess { tokenizer })
    }

    fn one(&self, input: &Input<'_>) -> Result<Output, RequestError> {
        let texts = bytes_elements(tensor::TEXT, input)?;
        let width = self.tokenizer.context_length();
        let mut ids = vec![0i64; texts.len() * width];
        for (index, (text, out)) in texts.iter().zip(ids.chunks_exact_mut(width)).enumerate() {
            let text = std::str::from_utf8(text).map_err(|e| {
                RequestError::invalid(format!(
                    "{} element {index} is not valid UTF-8: {e}",
                    tensor::TEXT
                ))
            })?;
            self.tokenizer.encode_into(text, out).map_err(|e| {
                RequestError::invalid(format!("{} element {index}: {e}", tensor::TEXT))
            })?;
        }
        Ok(Output {
            name: tensor::INPUT_IDS,
            shape: vec![texts.len() as i64, width as i64],
            data: OutputData::Int64(ids),
        })
    }
}

impl Kind for TextPreprocess {
    fn input_name(&self) -> &'static str {
        tensor::TEXT
    }

    fn runner(self: Arc<Self>, _instance: &Instance) -> Result<Box<dyn Runner>, String> {
        Ok(Box::new(Shared(self)))
    }
}

impl Preprocess for TextPreprocess {
    fn execute(
        &self,
        batch: &[Result<Input<'_>, RequestError>],
    ) -> Vec<Result<Output, RequestError>> {
        batch
            .iter()
            .map(|input| {
                input
                    .as_ref()
                    .map_err(Clone::clone)
                    .and_then(|input| self.one(input))
            })
            .collect()
    }
}

pub struct ImagePreprocess {
    preprocessor: ImagePreprocessor,
    size: i64,
    half_precision: bool,
}

impl ImagePreprocess {
    pub fn new(spec: ImageSpec) -> Result<Self, String> {
        let options = ImageOptions {
            size: spec.size,
            mean: spec.mean,
            std: spec.std,
            max_pixels: spec.max_pixels,
            reduced_scale_decode: spec.reduced_scale_decode,
        };
        let preprocessor = ImagePreprocessor::new(options).map_err(|e| e.to_string())?;
        Ok(ImagePreprocess {
            preprocessor,
            size: i64::from(spec.size),
            half_precision: spec.half_precision,
        })
    }
}

impl Kind for ImagePreprocess {
    fn input_name(&self) -> &'static str {
        tensor::IMAGE
    }

    fn runner(self: Arc<Self>, _instance: &Instance) -> Result<Box<dyn Runner>, String> {
        Ok(Box::new(Shared(self)))
    }
}

impl Preprocess for ImagePreprocess {
    /// Decodes the images of all requests together, so one large request and
    /// many small ones spread over the cores alike.
    fn execute(
        &self,
        batch: &[Result<Input<'_>, RequestError>],
    ) -> Vec<Result<Output, RequestError>> {
        let per_request: Vec<Result<Vec<&[u8]>, RequestError>> = batch
            .iter()
            .map(|input| {
                let input = input.as_ref().map_err(Clone::clone)?;
                bytes_elements(tensor::IMAGE, input)
            })
            .collect();
        let images: Vec<&[u8]> = per_request.iter().flatten().flatten().copied().collect();
        let stride = self.preprocessor.pixels_per_image();
        let mut pixels = vec![0f32; images.len() * stride];
        let mut outcomes = self
            .preprocessor
            .preprocess_batch(&images, &mut pixels)
            .into_iter();

        let mut offset = 0;
        per_request
            .into_iter()
            .map(|elements| {
                let count = elements?.len();
                let failure = outcomes
                    .by_ref()
                    .take(count)
                    .enumerate()
                    .find_map(|(index, outcome)| outcome.err().map(|e| (index, e)));
                let values = &pixels[offset * stride..(offset + count) * stride];
                offset += count;
                if let Some((index, error)) = failure {
                    return Err(RequestError::invalid(format!(
                        "{} element {index}: {error}",
                        tensor::IMAGE
                    )));
                }
                let data = if self.half_precision {
                    OutputData::Fp16(values.iter().copied().map(half::f16::from_f32).collect())
                } else {
                    OutputData::Fp32(values.to_vec())
                };
                Ok(Output {
                    name: tensor::PIXEL_VALUES,
                    shape: vec![count as i64, 3, self.size, self.size],
                    data,
                })
            })
            .collect()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::borrow::Cow;
    use std::path::PathBuf;

    use clip_contract::defaults;

    use super::*;
    use crate::request::{serialize_bytes, DataType, ErrorKind};

    fn fixtures() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
    }

    fn bytes_request(elements: &[&[u8]]) -> Result<Input<'static>, RequestError> {
        Ok(Input {
            datatype: DataType::Bytes,
            shape: vec![elements.len() as i64, 1],
            data: Cow::Owned(serialize_bytes(elements)),
        })
    }

    pub(crate) fn cpu_instance() -> Instance {
        Instance {
            name: "test_0".into(),
            device: Device::Cpu,
        }
    }

    fn text_kind(pad_id: Option<u32>) -> Arc<dyn Kind> {
        let spec = KindSpec::TextPreprocess(TextSpec {
            tokenizer_file: defaults::TOKENIZER_FILE.into(),
            context_length: defaults::CONTEXT_LENGTH,
            pad_id,
        });
        load(spec, &fixtures().join("text")).unwrap_or_else(|e| panic!("{e}"))
    }

    fn image_spec(half_precision: bool) -> ImageSpec {
        ImageSpec {
            size: defaults::IMAGE_SIZE,
            mean: defaults::IMAGE_MEAN,
            std: defaults::IMAGE_STD,
            max_pixels: defaults::MAX_PIXELS,
            reduced_scale_decode: true,
            half_precision,
        }
    }

    #[test]
    fn text_batch_fails_per_request() {
        let kind = text_kind(Some(0));
        assert_eq!(kind.input_name(), tensor::TEXT);
        let mut kind = kind.runner(&cpu_instance()).unwrap();
        assert_eq!(kind.device(), Device::Cpu);
        let batch = vec![
            bytes_request(&[b"a photo of a cat", b""]),
            Err(RequestError::invalid("input 'TEXT' is missing")),
            bytes_request(&[b"ok", b"\xc3\x28"]),
            bytes_request(&[b"a dog"]),
        ];
        let results = kind.execute(&batch);
        assert_eq!(results.len(), 4);

        let first = results[0].as_ref().unwrap();
        assert_eq!(
            (first.name, first.shape.as_slice()),
            (tensor::INPUT_IDS, &[2, 77][..])
        );
        let OutputData::Int64(ids) = &first.data else {
            panic!("INT64 ids")
        };
        assert_eq!(&ids[..8], &[49406, 320, 1125, 539, 320, 2368, 49407, 0]);
        assert_eq!(
            &ids[77..80],
            &[49406, 49407, 0],
            "an empty text is start, end, padding"
        );

        assert_eq!(
            results[1].as_ref().unwrap_err().message,
            "input 'TEXT' is missing"
        );
        let utf8 = results[2].as_ref().unwrap_err();
        assert_eq!(utf8.kind, ErrorKind::InvalidArg);
        assert!(
            utf8.message
                .starts_with("TEXT element 1 is not valid UTF-8"),
            "{utf8}"
        );
        assert!(results[3].is_ok());
    }

    #[test]
    fn text_pads_as_the_tokenizer_files_say_unless_overridden() {
        let run = |kind: Arc<dyn Kind>| match kind
            .runner(&cpu_instance())
            .unwrap()
            .execute(&[bytes_request(&[b"cat"])])
            .remove(0)
            .unwrap()
            .data
        {
            OutputData::Int64(ids) => ids[3..5].to_vec(),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            run(text_kind(None)),
            [49407, 49407],
            "tokenizer_config.json names <|endoftext|>"
        );
        assert_eq!(run(text_kind(Some(0))), [0, 0]);
    }

    #[test]
    fn missing_tokenizer_names_the_file() {
        let spec = KindSpec::TextPreprocess(TextSpec {
            tokenizer_file: "absent.json".into(),
            context_length: 77,
            pad_id: None,
        });
        let message = load(spec, &fixtures().join("text"))
            .err()
            .expect("load fails");
        assert!(message.contains("absent.json"), "{message}");
    }

    fn image(name: &str) -> Vec<u8> {
        std::fs::read(fixtures().join("images/inputs").join(name)).unwrap()
    }

    #[test]
    fn image_batch_fails_per_request_and_keeps_order() {
        let kind = load(
            KindSpec::ImagePreprocess(image_spec(false)),
            Path::new("/nonexistent"),
        )
        .unwrap();
        assert_eq!(kind.input_name(), tensor::IMAGE);
        // Preprocessing ignores KIND_GPU and shares one copy between instances.
        let gpu = Instance {
            name: "gpu_0".into(),
            device: Device::Gpu(0),
        };
        let mut kind = kind.runner(&gpu).unwrap();
        assert_eq!(kind.device(), Device::Cpu);
        let (jpeg, png) = (image("rocket.jpg"), image("astronaut.png"));
        let batch = vec![
            bytes_request(&[&png, &jpeg]),
            bytes_request(&[&jpeg, b"not an image"]),
            bytes_request(&[&jpeg]),
        ];
        let results = kind.execute(&batch);

        let mut alone = |bytes: &[u8]| match kind
            .execute(&[bytes_request(&[bytes])])
            .remove(0)
            .unwrap()
            .data
        {
            OutputData::Fp32(values) => values,
            other => panic!("{other:?}"),
        };
        let first = results[0].as_ref().unwrap();
        assert_eq!(first.shape, vec![2, 3, 224, 224]);
        assert_eq!(
            first.data,
            OutputData::Fp32([alone(&png), alone(&jpeg)].concat())
        );
        let bad = results[1].as_ref().unwrap_err();
        assert!(
            bad.message
                .starts_with("IMAGE element 1: unknown image format"),
            "{bad}"
        );
        assert_eq!(
            results[2].as_ref().unwrap().data,
            OutputData::Fp32(alone(&jpeg))
        );
    }

    #[test]
    fn half_precision_rounds_the_fp32_pixels() {
        let full = ImagePreprocess::new(image_spec(false)).unwrap();
        let half = ImagePreprocess::new(image_spec(true)).unwrap();
        let request = [bytes_request(&[&image("coffee_q90.jpg")])];
        let (OutputData::Fp32(full), OutputData::Fp16(half)) = (
            full.execute(&request).remove(0).unwrap().data,
            half.execute(&request).remove(0).unwrap().data,
        ) else {
            panic!("unexpected output types")
        };
        let rounded: Vec<half::f16> = full.iter().copied().map(half::f16::from_f32).collect();
        assert_eq!(half, rounded);
    }
}
