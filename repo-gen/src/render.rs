//! config.pbtxt from the tera templates in `templates/` at the workspace
//! root, compiled into this library so that it works from any directory,
//! and what every batched model's config shares (name, batching, instance
//! count, parameters).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::LazyLock;

use clip_contract::BACKEND_NAME;
use tera::{Context, Tera, Value};

use crate::warmup::Sample;

pub(crate) const TEXT_TEMPLATE_NAME: &str = "text_preprocess.pbtxt.tera";
pub(crate) const IMAGE_TEMPLATE_NAME: &str = "image_preprocess.pbtxt.tera";
pub(crate) const ENCODER_TEMPLATE_NAME: &str = "encoder.pbtxt.tera";
pub(crate) const ENSEMBLE_TEMPLATE_NAME: &str = "ensemble.pbtxt.tera";
/// Included by the three batched models' templates.
const WARMUP_TEMPLATE_NAME: &str = "warmup.pbtxt.tera";
/// Included by the encoder and ensemble templates.
const RESPONSE_CACHE_TEMPLATE_NAME: &str = "response_cache.pbtxt.tera";

const TEMPLATE_SOURCES: [(&str, &str); 6] = [
    (
        RESPONSE_CACHE_TEMPLATE_NAME,
        include_str!("../../templates/response_cache.pbtxt.tera"),
    ),
    (
        WARMUP_TEMPLATE_NAME,
        include_str!("../../templates/warmup.pbtxt.tera"),
    ),
    (
        TEXT_TEMPLATE_NAME,
        include_str!("../../templates/text_preprocess.pbtxt.tera"),
    ),
    (
        IMAGE_TEMPLATE_NAME,
        include_str!("../../templates/image_preprocess.pbtxt.tera"),
    ),
    (
        ENCODER_TEMPLATE_NAME,
        include_str!("../../templates/encoder.pbtxt.tera"),
    ),
    (
        ENSEMBLE_TEMPLATE_NAME,
        include_str!("../../templates/ensemble.pbtxt.tera"),
    ),
];

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
        file: String,
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
    #[error("cannot write the ONNX model into {}: {source}", dir.display())]
    Onnx {
        dir: PathBuf,
        source: clip_export::ExportError,
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

    /// The context every template shares. `extra` entries replace generated
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
        context.insert("warmup", &Vec::<Sample>::new());
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

/// Parsed once per process: the templates are compiled in, so the result
/// never changes, and a repository renders six configs. A failure keeps the
/// template's name and tera's message.
static TEMPLATES: LazyLock<Result<Tera, (&'static str, String)>> = LazyLock::new(|| {
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
    for (name, source) in TEMPLATE_SOURCES {
        tera.add_raw_template(name, source)
            .map_err(|e| (name, error_chain(&e)))?;
    }
    Ok(tera)
});

pub(crate) fn render(template: &'static str, context: &Context) -> Result<String, RenderError> {
    let tera = TEMPLATES
        .as_ref()
        .map_err(|(template, message)| RenderError::Template {
            template,
            message: message.clone(),
        })?;
    tera.render(template, context)
        .map_err(|e| RenderError::Template {
            template,
            message: error_chain(&e),
        })
}

/// tera's top-level message rarely says what failed; the cause chain does.
fn error_chain(error: &tera::Error) -> String {
    let mut message = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        write!(message, ": {cause}").unwrap();
        source = cause.source();
    }
    message
}
