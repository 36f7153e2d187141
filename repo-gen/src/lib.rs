//! Writes the models of a Triton model repository for CLIP.
//!
//! For now: the two preprocessing models that the `clip` backend serves
//! (`text_preprocess` and `image_preprocess`). Their `config.pbtxt` files are
//! rendered from the tera templates in `templates/` at the workspace root,
//! which are compiled into this library so that it works from any directory.
//!
//! Every name, tensor and parameter key comes from [`clip_contract`]; the
//! templates receive them as context variables.
//!
//! [`registry`] names the CLIP checkpoints repo-gen knows and their
//! architecture facts; [`download`] gets their files from the Hugging Face
//! hub (through its cache) or checks a local folder of them.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clip_contract::{defaults, kind, param, tensor, BACKEND_NAME};
use tera::{Context, Tera, Value};

pub mod download;
pub mod encoder;
pub mod generate;
pub mod onnx_io;
pub mod placement;
pub mod registry;
pub mod tensorrt;

pub use encoder::{DataType, EncoderModel, EnsembleModel, Facts, Runtime, TensorSpec, Tower};
pub use placement::{GpuChoice, InstanceGroup, InstanceKind};

const TEXT_TEMPLATE_NAME: &str = "text_preprocess.pbtxt.tera";
const TEXT_TEMPLATE: &str = include_str!("../../templates/text_preprocess.pbtxt.tera");
const IMAGE_TEMPLATE_NAME: &str = "image_preprocess.pbtxt.tera";
const IMAGE_TEMPLATE: &str = include_str!("../../templates/image_preprocess.pbtxt.tera");
pub(crate) const ENCODER_TEMPLATE_NAME: &str = "encoder.pbtxt.tera";
const ENCODER_TEMPLATE: &str = include_str!("../../templates/encoder.pbtxt.tera");
pub(crate) const ENSEMBLE_TEMPLATE_NAME: &str = "ensemble.pbtxt.tera";
const ENSEMBLE_TEMPLATE: &str = include_str!("../../templates/ensemble.pbtxt.tera");

/// Name of the tokenizer's own settings file, copied beside the tokenizer when present.
pub const TOKENIZER_CONFIG_FILE: &str = "tokenizer_config.json";

/// Version folder every generated model is written into.
pub const VERSION: &str = "1";

/// What went wrong, with what to change.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error(
        "model name {name:?} is not a plain folder name ({reason}); \
         use a single path component such as \"clip_text_preprocess\""
    )]
    InvalidName { name: String, reason: &'static str },
    #[error("model '{model}': {message}")]
    InvalidValue { model: String, message: String },
    #[error("model '{model}': an extra parameter has an empty key; give every parameter a name")]
    EmptyParameterKey { model: String },
    #[error(
        "model '{model}': tokenizer folder {} has no {file}; \
         point it at the folder holding the Hugging Face tokenizer files",
        dir.display()
    )]
    MissingTokenizer {
        model: String,
        dir: PathBuf,
        file: &'static str,
    },
    #[error("template {template} failed to render: {message}")]
    Template {
        template: &'static str,
        message: String,
    },
    #[error("cannot copy {} to {}: {source}", from.display(), to.display())]
    Copy {
        from: PathBuf,
        to: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// How Triton batches requests for a model.
#[derive(Clone, Debug, PartialEq)]
pub struct Batching {
    /// Largest batch the model takes; the `clip` backend needs at least 1.
    pub max_batch_size: u32,
    /// `Some` turns on Triton's dynamic batcher.
    pub dynamic: Option<DynamicBatching>,
}

/// Settings of Triton's dynamic batcher.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DynamicBatching {
    /// Batch sizes the batcher tries to form; each in 1..=max_batch_size.
    pub preferred_batch_sizes: Vec<u32>,
    /// How long a request may wait for others to join its batch.
    pub max_queue_delay_us: Option<u64>,
}

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
    /// TYPE_FP16 pixels instead of TYPE_FP32.
    pub half_precision: bool,
    /// Written after the parameters above; a key already written replaces its value.
    pub extra_parameters: Vec<(String, String)>,
}

impl TextPreprocessModel {
    /// One CPU instance and the tokenizer settings every published CLIP shares.
    pub fn new(name: impl Into<String>, batching: Batching) -> Self {
        TextPreprocessModel {
            name: name.into(),
            batching,
            instances: 1,
            context_length: defaults::CONTEXT_LENGTH,
            pad_token_id: None,
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
        let mut context = common.context(&parameters, &self.extra_parameters)?;
        context.insert("input_name", tensor::TEXT);
        context.insert("output_name", tensor::INPUT_IDS);
        context.insert("context_length", &self.context_length);
        render(TEXT_TEMPLATE_NAME, &context)
    }

    /// Writes `<repository>/<name>/config.pbtxt` and the version folder
    /// `<name>/1/`, with tokenizer.json (required) and tokenizer_config.json
    /// (when present) copied from `tokenizer_dir`. Returns the model folder.
    pub fn write_into(
        &self,
        repository: &Path,
        tokenizer_dir: Option<&Path>,
    ) -> Result<PathBuf, RenderError> {
        let config = self.render()?;
        let mut files = Vec::new();
        if let Some(dir) = tokenizer_dir {
            let tokenizer = dir.join(defaults::TOKENIZER_FILE);
            if !tokenizer.is_file() {
                return Err(RenderError::MissingTokenizer {
                    model: self.name.clone(),
                    dir: dir.to_path_buf(),
                    file: defaults::TOKENIZER_FILE,
                });
            }
            files.push((defaults::TOKENIZER_FILE, tokenizer));
            let tokenizer_config = dir.join(TOKENIZER_CONFIG_FILE);
            if tokenizer_config.is_file() {
                files.push((TOKENIZER_CONFIG_FILE, tokenizer_config));
            }
        }
        write_model(repository, &self.name, &config, &files)
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
            half_precision: false,
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
        ];
        let mut context = common.context(&parameters, &self.extra_parameters)?;
        context.insert("input_name", tensor::IMAGE);
        context.insert("output_name", tensor::PIXEL_VALUES);
        context.insert("image_size", &self.image_size);
        context.insert("half_precision", &self.half_precision);
        render(IMAGE_TEMPLATE_NAME, &context)
    }

    /// Writes `<repository>/<name>/config.pbtxt` and an empty version folder
    /// `<name>/1/`. Returns the model folder.
    pub fn write_into(&self, repository: &Path) -> Result<PathBuf, RenderError> {
        let config = self.render()?;
        write_model(repository, &self.name, &config, &[])
    }
}

/// What every batched model has.
pub(crate) struct Common<'a> {
    pub(crate) name: &'a str,
    pub(crate) batching: &'a Batching,
    pub(crate) instances: u32,
}

impl Common<'_> {
    pub(crate) fn invalid(&self, message: impl Into<String>) -> RenderError {
        RenderError::InvalidValue {
            model: self.name.to_owned(),
            message: message.into(),
        }
    }

    pub(crate) fn validate(&self) -> Result<(), RenderError> {
        check_name(self.name)?;
        let max = self.batching.max_batch_size;
        if max == 0 {
            return Err(self.invalid(
                "max_batch_size must be at least 1: the clip backend serves batched models only",
            ));
        }
        if let Some(dynamic) = &self.batching.dynamic {
            if let Some(bad) = dynamic
                .preferred_batch_sizes
                .iter()
                .find(|&&size| size == 0 || size > max)
            {
                return Err(self.invalid(format!(
                    "preferred batch size {bad} is outside 1..={max} (max_batch_size)"
                )));
            }
        }
        if self.instances == 0 {
            return Err(self.invalid("instance count must be at least 1"));
        }
        Ok(())
    }

    /// The context both templates share. `extra` entries replace generated
    /// parameters with the same key in place, and the rest follow in order.
    pub(crate) fn context(
        &self,
        generated: &[(&str, String)],
        extra: &[(String, String)],
    ) -> Result<Context, RenderError> {
        let mut parameters: Vec<(String, String)> = generated
            .iter()
            .map(|(key, value)| ((*key).to_owned(), value.clone()))
            .collect();
        for (key, value) in extra {
            if key.is_empty() {
                return Err(RenderError::EmptyParameterKey {
                    model: self.name.to_owned(),
                });
            }
            match parameters.iter_mut().find(|(k, _)| k == key) {
                Some(existing) => existing.1 = value.clone(),
                None => parameters.push((key.clone(), value.clone())),
            }
        }
        let parameters: Vec<HashMap<&str, &str>> = parameters
            .iter()
            .map(|(key, value)| HashMap::from([("key", key.as_str()), ("value", value.as_str())]))
            .collect();

        let mut context = Context::new();
        context.insert("name", self.name);
        context.insert("backend", BACKEND_NAME);
        context.insert("max_batch_size", &self.batching.max_batch_size);
        context.insert("dynamic_batching", &self.batching.dynamic.is_some());
        if let Some(dynamic) = &self.batching.dynamic {
            context.insert("preferred_batch_sizes", &dynamic.preferred_batch_sizes);
            context.insert("max_queue_delay_us", &dynamic.max_queue_delay_us);
        }
        context.insert("instance_count", &self.instances);
        context.insert("parameters", &parameters);
        Ok(context)
    }
}

/// Refuses anything but one plain path component: the name is a folder in the repository.
pub fn check_name(name: &str) -> Result<(), RenderError> {
    let reason = if name.is_empty() {
        Some("it is empty")
    } else if name == "." || name == ".." {
        Some("it names the current or parent folder")
    } else if name.contains(['/', '\\']) {
        Some("it contains a path separator")
    } else if name.chars().any(char::is_control) {
        Some("it contains a control character")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(RenderError::InvalidName {
            name: name.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

/// `text` as a protobuf text-format string literal, quotes included.
///
/// Backslash, double quote and the usual control characters get their C
/// escapes, other control characters a three-digit octal escape; everything
/// else, non-ASCII included, stays as UTF-8.
pub fn pbtxt_string(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    for c in text.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            '\n' => quoted.push_str("\\n"),
            '\r' => quoted.push_str("\\r"),
            '\t' => quoted.push_str("\\t"),
            c if c.is_ascii_control() => write!(quoted, "\\{:03o}", c as u32).unwrap(),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

/// Three floats as the backend reads them: comma-separated, shortest exact form.
fn triple(values: &[f32; 3]) -> String {
    values
        .iter()
        .map(f32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

fn templates() -> Result<Tera, RenderError> {
    let mut tera = Tera::default();
    tera.autoescape_on(Vec::new());
    tera.register_filter(
        "pbtxt_string",
        |value: &Value, _: &HashMap<String, Value>| -> tera::Result<Value> {
            match value {
                Value::String(text) => Ok(Value::String(pbtxt_string(text))),
                other => Err(tera::Error::msg(format!(
                    "pbtxt_string takes a string, got {other}"
                ))),
            }
        },
    );
    for (name, source) in [
        (TEXT_TEMPLATE_NAME, TEXT_TEMPLATE),
        (IMAGE_TEMPLATE_NAME, IMAGE_TEMPLATE),
        (ENCODER_TEMPLATE_NAME, ENCODER_TEMPLATE),
        (ENSEMBLE_TEMPLATE_NAME, ENSEMBLE_TEMPLATE),
    ] {
        tera.add_raw_template(name, source)
            .map_err(|e| template_error(name, &e))?;
    }
    Ok(tera)
}

pub(crate) fn render(template: &'static str, context: &Context) -> Result<String, RenderError> {
    templates()?
        .render(template, context)
        .map_err(|e| template_error(template, &e))
}

/// tera's top-level message rarely says what failed; the cause chain does.
fn template_error(template: &'static str, error: &tera::Error) -> RenderError {
    let mut message = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        write!(message, ": {cause}").unwrap();
        source = cause.source();
    }
    RenderError::Template { template, message }
}

pub(crate) fn write_model(
    repository: &Path,
    name: &str,
    config: &str,
    files: &[(&str, PathBuf)],
) -> Result<PathBuf, RenderError> {
    check_name(name)?;
    let model = repository.join(name);
    let version = model.join(VERSION);
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| RenderError::Io { path, source }
    };
    std::fs::create_dir_all(&version).map_err(io(&version))?;
    let config_path = model.join("config.pbtxt");
    std::fs::write(&config_path, config).map_err(io(&config_path))?;
    for (file, source) in files {
        let target = version.join(file);
        std::fs::copy(source, &target).map_err(|e| RenderError::Copy {
            from: source.clone(),
            to: target.clone(),
            source: e,
        })?;
    }
    Ok(model)
}
