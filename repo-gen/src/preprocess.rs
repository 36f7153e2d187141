//! The two preprocessing models the `clip` backend serves:
//! `text_preprocess` (sentences to token ids) and `image_preprocess`
//! (encoded image files to normalised pixels).

use std::path::{Path, PathBuf};

use clip_contract::{defaults, kind, param, tensor, tokenizer_family, DataType, TensorSpec};
use clip_image::CenterCrop;
use clip_text::TokenizerFamily;

use crate::model_dir::{FileSource, ModelDir, VersionFile};
use crate::render::{
    render, Batching, Common, RenderError, IMAGE_TEMPLATE_NAME, TEXT_TEMPLATE_NAME,
};
use crate::warmup;

/// Name of the tokenizer's own settings file, copied beside the tokenizer when present.
pub const TOKENIZER_CONFIG_FILE: &str = "tokenizer_config.json";

/// A `text_preprocess` model: UTF-8 sentences in, token ids out.
#[derive(Clone, Debug, PartialEq)]
pub struct TextPreprocessModel {
    pub name: String,
    pub batching: Batching,
    /// CPU instances (preprocessing never runs on the GPU).
    pub instances: u32,
    pub context_length: usize,
    /// Overrides the pad token id that the tokenizer files declare.
    pub pad_token_id: Option<u32>,
    /// open_clip's BPE (the default, not written) or a Hugging Face tokenizer.json whole (`hf`).
    pub tokenizer_family: TokenizerFamily,
    /// INT64 or INT32, as the text encoder takes its ids.
    pub ids_type: DataType,
    /// Output `ATTENTION_MASK` too, for a two-input text encoder.
    pub attention_mask: bool,
    /// A `model_warmup` sample at the largest batch (see [`crate::warmup`]).
    pub warmup: bool,
    /// Written after the parameters above; a key already written replaces its value.
    pub extra_parameters: Vec<(String, String)>,
}

/// An `image_preprocess` model: encoded image files in, normalised pixels out.
#[derive(Clone, Debug, PartialEq)]
pub struct ImagePreprocessModel {
    pub name: String,
    pub batching: Batching,
    /// CPU instances (preprocessing never runs on the GPU).
    pub instances: u32,
    /// Side of the square output image.
    pub image_size: u32,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    /// Largest image (width x height) the preprocessor decodes.
    pub max_pixels: u64,
    pub reduced_scale_decode: bool,
    /// Whose center crop (they differ by a pixel on odd margins).
    pub center_crop: CenterCrop,
    /// TYPE_FP16 pixels instead of TYPE_FP32.
    pub half_precision: bool,
    /// Decoded RGB images of any size (`PIXELS`, UINT8 `[-1, -1, 3]`)
    /// instead of encoded files (`IMAGE`).
    pub decoded_input: bool,
    /// A `model_warmup` sample at the largest batch (see [`crate::warmup`]).
    pub warmup: bool,
    /// Written after the parameters above; a key already written replaces its value.
    pub extra_parameters: Vec<(String, String)>,
}

impl TextPreprocessModel {
    /// What the model takes: `TEXT`, one sentence per batch entry.
    pub fn input(&self) -> TensorSpec {
        TensorSpec::new(tensor::TEXT, DataType::Bytes, vec![1])
    }

    /// One CPU instance and the tokenizer settings every published CLIP shares.
    pub fn new(name: impl Into<String>, batching: Batching) -> Self {
        TextPreprocessModel {
            name: name.into(),
            batching,
            instances: 1,
            context_length: defaults::CONTEXT_LENGTH,
            pad_token_id: None,
            tokenizer_family: TokenizerFamily::ClipBpe,
            ids_type: DataType::Int64,
            attention_mask: false,
            warmup: true,
            extra_parameters: Vec::new(),
        }
    }

    /// The model's config.pbtxt.
    pub fn render(&self) -> Result<String, RenderError> {
        let common = Common {
            name: &self.name,
            batching: &self.batching,
            instances: self.instances,
        };
        common.validate()?;
        if self.context_length == 0 {
            return Err(common.invalid("context_length must be at least 1"));
        }
        let mut parameters = vec![
            (param::KIND, kind::TEXT_PREPROCESS.to_owned()),
            (param::TOKENIZER_FILE, defaults::TOKENIZER_FILE.to_owned()),
            (param::CONTEXT_LENGTH, self.context_length.to_string()),
        ];
        if let Some(pad) = self.pad_token_id {
            parameters.push((param::PAD_TOKEN_ID, pad.to_string()));
        }
        if self.tokenizer_family == TokenizerFamily::Hf {
            parameters.push((param::TOKENIZER_FAMILY, tokenizer_family::HF.to_owned()));
        }
        let mut context = common.context(&parameters, &self.extra_parameters)?;
        if !matches!(self.ids_type, DataType::Int64 | DataType::Int32) {
            return Err(common.invalid(format!(
                "token ids are INT64 or INT32, not {}",
                self.ids_type
            )));
        }
        context.insert("input_name", tensor::TEXT);
        let mut outputs = vec![tensor::INPUT_IDS];
        if self.attention_mask {
            outputs.push(tensor::ATTENTION_MASK);
        }
        context.insert("output_names", &outputs);
        context.insert("output_type", self.ids_type.config_name());
        context.insert("context_length", &self.context_length);
        if self.warmup {
            let sample = warmup::text_sample(tensor::TEXT, self.batching.max_batch_size);
            context.insert("warmup", &[sample]);
        }
        render(TEXT_TEMPLATE_NAME, &context)
    }

    /// The model folder, with `tokenizer` (a Hugging Face tokenizer.json,
    /// whatever its name) copied in as tokenizer.json, and the
    /// tokenizer_config.json beside it when there is one.
    pub fn model_dir(&self, tokenizer: Option<&Path>) -> Result<ModelDir, RenderError> {
        let config = self.render()?;
        let mut files = Vec::new();
        if let Some(tokenizer) = tokenizer {
            let dir = match tokenizer.parent() {
                Some(dir) if !dir.as_os_str().is_empty() => dir,
                _ => Path::new("."),
            };
            if !tokenizer.is_file() {
                return Err(RenderError::MissingTokenizer {
                    model: self.name.clone(),
                    dir: dir.to_path_buf(),
                    file: tokenizer
                        .file_name()
                        .unwrap_or(tokenizer.as_os_str())
                        .to_string_lossy()
                        .into_owned(),
                });
            }
            files.push(VersionFile::new(
                defaults::TOKENIZER_FILE,
                FileSource::Copy(tokenizer.to_path_buf()),
            ));
            let tokenizer_config = dir.join(TOKENIZER_CONFIG_FILE);
            if tokenizer_config.is_file() {
                files.push(VersionFile::new(
                    TOKENIZER_CONFIG_FILE,
                    FileSource::Copy(tokenizer_config),
                ));
            }
        }
        Ok(ModelDir {
            name: self.name.clone(),
            config,
            files,
            warmup: self.warmup.then(warmup::text_file).into_iter().collect(),
        })
    }

    /// Writes `<repository>/<name>/config.pbtxt` and the version folder
    /// `<name>/1/`, with tokenizer.json (required) and tokenizer_config.json
    /// (when present) copied from `tokenizer_dir`. Returns the model folder.
    pub fn write_into(
        &self,
        repository: &Path,
        tokenizer_dir: Option<&Path>,
    ) -> Result<PathBuf, RenderError> {
        let tokenizer = tokenizer_dir.map(|dir| dir.join(defaults::TOKENIZER_FILE));
        self.model_dir(tokenizer.as_deref())?.write_into(repository)
    }
}

impl ImagePreprocessModel {
    /// One CPU instance, FP32 pixels and OpenAI CLIP's preprocessing.
    pub fn new(name: impl Into<String>, batching: Batching) -> Self {
        ImagePreprocessModel {
            name: name.into(),
            batching,
            instances: 1,
            image_size: defaults::IMAGE_SIZE,
            mean: defaults::IMAGE_MEAN,
            std: defaults::IMAGE_STD,
            max_pixels: defaults::MAX_PIXELS,
            reduced_scale_decode: true,
            center_crop: CenterCrop::Transformers,
            half_precision: false,
            decoded_input: false,
            warmup: true,
            extra_parameters: Vec::new(),
        }
    }

    /// The model's config.pbtxt.
    pub fn render(&self) -> Result<String, RenderError> {
        let common = Common {
            name: &self.name,
            batching: &self.batching,
            instances: self.instances,
        };
        common.validate()?;
        if self.image_size == 0 {
            return Err(common.invalid("image_size must be at least 1"));
        }
        if self.max_pixels == 0 {
            return Err(common.invalid("max_pixels must be at least 1"));
        }
        if self.mean.iter().any(|m| !m.is_finite()) {
            return Err(common.invalid(format!("mean must be finite, got {:?}", self.mean)));
        }
        if self.std.iter().any(|s| !s.is_finite() || *s <= 0.0) {
            return Err(common.invalid(format!(
                "std must be positive and finite, got {:?}",
                self.std
            )));
        }
        let parameters = vec![
            (param::KIND, kind::IMAGE_PREPROCESS.to_owned()),
            (param::IMAGE_SIZE, self.image_size.to_string()),
            (param::IMAGE_MEAN, triple(&self.mean)),
            (param::IMAGE_STD, triple(&self.std)),
            (param::MAX_PIXELS, self.max_pixels.to_string()),
            (
                param::REDUCED_SCALE_DECODE,
                self.reduced_scale_decode.to_string(),
            ),
            (param::CENTER_CROP, self.center_crop.name().to_owned()),
        ];
        let mut context = common.context(&parameters, &self.extra_parameters)?;
        context.insert("input_name", self.input().name.as_str());
        context.insert("decoded_input", &self.decoded_input);
        context.insert("output_name", tensor::PIXEL_VALUES);
        context.insert("image_size", &self.image_size);
        context.insert("half_precision", &self.half_precision);
        if self.warmup {
            let batch = self.batching.max_batch_size;
            let sample = if self.decoded_input {
                // A black square of the output size: Triton needs fixed dims.
                let side = i64::from(self.image_size);
                let square = TensorSpec::new(tensor::PIXELS, DataType::Uint8, vec![side, side, 3]);
                warmup::tensor_sample(std::slice::from_ref(&square), batch).0
            } else {
                warmup::image_sample(tensor::IMAGE, batch)
            };
            context.insert("warmup", &[sample]);
        }
        render(IMAGE_TEMPLATE_NAME, &context)
    }

    /// The model folder: the config and an empty version folder.
    pub fn model_dir(&self) -> Result<ModelDir, RenderError> {
        Ok(ModelDir {
            name: self.name.clone(),
            config: self.render()?,
            files: Vec::new(),
            warmup: (self.warmup && !self.decoded_input)
                .then(warmup::image_file)
                .into_iter()
                .collect(),
        })
    }

    /// What the model takes: `IMAGE` files, or `PIXELS` of any size.
    pub fn input(&self) -> TensorSpec {
        if self.decoded_input {
            TensorSpec::new(tensor::PIXELS, DataType::Uint8, vec![-1, -1, 3])
        } else {
            TensorSpec::new(tensor::IMAGE, DataType::Bytes, vec![1])
        }
    }

    /// Writes `<repository>/<name>/config.pbtxt` and an empty version folder
    /// `<name>/1/`. Returns the model folder.
    pub fn write_into(&self, repository: &Path) -> Result<PathBuf, RenderError> {
        self.model_dir()?.write_into(repository)
    }
}

/// Three floats as the backend reads them: comma-separated, shortest exact form.
fn triple(values: &[f32; 3]) -> String {
    values
        .iter()
        .map(f32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}
