//! Reads a model's config (the JSON Triton hands the backend) into what a
//! kind needs, and refuses at load time anything that would only fail later.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

use clip_contract::{defaults, file, kind, param, tensor, tokenizer_family, DataType, TensorSpec};
use clip_image::CenterCrop;
use clip_text::TokenizerFamily;
use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
#[error("model '{model}': {message}")]
pub struct ConfigError {
    model: String,
    message: String,
}

/// What a `clip` model does, with everything it needs to start.
#[derive(Debug, PartialEq)]
pub enum KindSpec {
    TextPreprocess(TextSpec),
    ImagePreprocess(ImageSpec),
    OnnxEncoder(EncoderSpec),
}

#[derive(Debug, PartialEq)]
pub struct TextSpec {
    /// Relative to the model's version folder.
    pub tokenizer_file: PathBuf,
    pub context_length: usize,
    pub pad_id: Option<u32>,
    pub family: TokenizerFamily,
    /// Larger elements fail their request before any work.
    pub max_text_bytes: usize,
    /// INT64 or INT32: what the text encoder takes.
    pub ids_type: DataType,
    /// Whether `ATTENTION_MASK` is output too (for two-input text encoders).
    pub attention_mask: bool,
}

#[derive(Debug, PartialEq)]
pub struct ImageSpec {
    /// `PIXELS` UINT8 `[H, W, 3]` (any H and W) of decoded images instead
    /// of `IMAGE` files.
    pub decoded_input: bool,
    pub size: u32,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    pub max_pixels: u64,
    /// Larger elements fail their request before any work.
    pub max_image_bytes: usize,
    pub reduced_scale_decode: bool,
    pub center_crop: CenterCrop,
    pub half_precision: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct EncoderSpec {
    /// The ONNX file, relative to the model's version folder.
    pub model_file: PathBuf,
    /// The `ort_library` parameter, if set (else `ORT_DYLIB_PATH` applies).
    pub ort_library: Option<PathBuf>,
    pub intra_op_threads: Option<usize>,
    pub inter_op_threads: Option<usize>,
    /// The `allow_spinning` parameter: idle ONNX Runtime threads spin-wait.
    pub allow_spinning: bool,
    /// Instances of this model across all its instance groups.
    pub instance_count: u32,
    /// The `vocab_size` parameter of a text encoder: ids at or above it are
    /// refused per request (negative ids always are).
    pub vocab_size: Option<u64>,
    /// One input, or a text encoder's `INPUT_IDS` and `ATTENTION_MASK`.
    pub inputs: Vec<TensorSpec>,
    pub output: TensorSpec,
}

#[derive(Deserialize)]
struct RawConfig {
    name: String,
    #[serde(default)]
    max_batch_size: i64,
    #[serde(default)]
    input: Vec<RawTensor>,
    #[serde(default)]
    output: Vec<RawTensor>,
    #[serde(default)]
    parameters: HashMap<String, RawParameter>,
    #[serde(default)]
    instance_group: Vec<RawInstanceGroup>,
}

#[derive(Deserialize)]
struct RawInstanceGroup {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    count: Option<Dim>,
    #[serde(default)]
    gpus: Vec<i64>,
}

#[derive(Deserialize)]
struct RawTensor {
    name: String,
    data_type: String,
    #[serde(default)]
    dims: Vec<Dim>,
}

/// Triton prints int64 fields of its config as JSON strings; accept both.
#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum Dim {
    Number(i64),
    Text(String),
}

impl Dim {
    /// The number, or the text that is not one.
    pub(crate) fn value(&self) -> Result<i64, String> {
        match self {
            Dim::Number(n) => Ok(*n),
            Dim::Text(t) => t.parse().map_err(|_| t.clone()),
        }
    }
}

#[derive(Deserialize)]
struct RawParameter {
    #[serde(default)]
    string_value: String,
}

pub fn parse(config_json: &str) -> Result<KindSpec, ConfigError> {
    let raw: RawConfig = serde_json::from_str(config_json).map_err(|e| ConfigError {
        model: "?".into(),
        message: format!("unreadable model config: {e}"),
    })?;
    let reader = Reader { raw: &raw };
    reader.kind()
}

struct Reader<'a> {
    raw: &'a RawConfig,
}

impl Reader<'_> {
    fn error(&self, message: impl Into<String>) -> ConfigError {
        ConfigError {
            model: self.raw.name.clone(),
            message: message.into(),
        }
    }

    fn kind(&self) -> Result<KindSpec, ConfigError> {
        if self.raw.max_batch_size < 1 {
            return Err(self.error(
                "max_batch_size must be at least 1: the clip backend serves batched models only",
            ));
        }
        let known = [
            kind::TEXT_PREPROCESS,
            kind::IMAGE_PREPROCESS,
            kind::ONNX_ENCODER,
        ]
        .join(", ");
        match self.parameter(param::KIND) {
            Some(kind::TEXT_PREPROCESS) => self.text().map(KindSpec::TextPreprocess),
            Some(kind::IMAGE_PREPROCESS) => self.image().map(KindSpec::ImagePreprocess),
            Some(kind::ONNX_ENCODER) => self.encoder().map(KindSpec::OnnxEncoder),
            Some(other) => Err(self.error(format!(
                "unknown parameter {}='{other}'; expected one of: {known}",
                param::KIND
            ))),
            None => Err(self.error(format!(
                "parameter '{}' is missing; set it to one of: {known}",
                param::KIND
            ))),
        }
    }

    /// Outputs: `INPUT_IDS`, and `ATTENTION_MASK` when the encoder takes
    /// one; both INT64 or both INT32, dims `[context_length]`.
    fn text(&self) -> Result<TextSpec, ConfigError> {
        self.single_tensor("input", &self.raw.input, tensor::TEXT, DataType::Bytes)?;
        let (ids, mask) = match self.raw.output.as_slice() {
            [ids] if ids.name == tensor::INPUT_IDS => (ids, None),
            [ids, mask] | [mask, ids]
                if ids.name == tensor::INPUT_IDS && mask.name == tensor::ATTENTION_MASK =>
            {
                (ids, Some(mask))
            }
            tensors => {
                let names: Vec<&str> = tensors.iter().map(|t| t.name.as_str()).collect();
                return Err(self.error(format!(
                    "needs the output '{}', and optionally '{}', config has {names:?}",
                    tensor::INPUT_IDS,
                    tensor::ATTENTION_MASK
                )));
            }
        };
        let integers = [DataType::Int64, DataType::Int32];
        let ids = self.typed(ids, "output", &integers)?;
        let context_length = match ids.dims.as_slice() {
            [n] => *n as usize,
            dims => {
                return Err(self.error(format!(
                    "output '{}' must have dims [context_length], got {dims:?}",
                    tensor::INPUT_IDS
                )))
            }
        };
        if let Some(mask) = mask {
            let mask = self.typed(mask, "output", &integers)?;
            if (mask.data_type, &mask.dims) != (ids.data_type, &ids.dims) {
                return Err(self.error(format!(
                    "output '{}' must have the type and dims of '{}' ({} {:?}), got {} {:?}",
                    tensor::ATTENTION_MASK,
                    tensor::INPUT_IDS,
                    ids.data_type,
                    ids.dims,
                    mask.data_type,
                    mask.dims
                )));
            }
        }
        self.agrees(param::CONTEXT_LENGTH, context_length as u64)?;
        let tokenizer_file = self
            .parameter(param::TOKENIZER_FILE)
            .unwrap_or(defaults::TOKENIZER_FILE);
        Ok(TextSpec {
            tokenizer_file: self.inside_version_folder(tokenizer_file)?,
            context_length,
            pad_id: self.number(param::PAD_TOKEN_ID)?,
            family: self.tokenizer_family()?,
            max_text_bytes: self.limit(param::MAX_TEXT_BYTES, defaults::MAX_TEXT_BYTES)?,
            ids_type: ids.data_type,
            attention_mask: mask.is_some(),
        })
    }

    /// `clip_bpe` unless the config says otherwise; an unknown family is refused.
    fn tokenizer_family(&self) -> Result<TokenizerFamily, ConfigError> {
        match self.parameter(param::TOKENIZER_FAMILY) {
            None | Some(tokenizer_family::CLIP_BPE) => Ok(TokenizerFamily::ClipBpe),
            Some(tokenizer_family::HF) => Ok(TokenizerFamily::Hf),
            Some(other) => Err(self.error(format!(
                "unknown parameter {}='{other}'; expected one of: {}",
                param::TOKENIZER_FAMILY,
                tokenizer_family::ALL.join(", ")
            ))),
        }
    }

    /// transformers' unless the config says otherwise; an unknown name is refused.
    fn center_crop(&self) -> Result<CenterCrop, ConfigError> {
        let Some(name) = self.parameter(param::CENTER_CROP) else {
            return Ok(CenterCrop::default());
        };
        CenterCrop::from_name(name).ok_or_else(|| {
            let known: Vec<&str> = CenterCrop::ALL.iter().map(|c| c.name()).collect();
            self.error(format!(
                "unknown parameter {}='{name}'; expected one of: {}",
                param::CENTER_CROP,
                known.join(", ")
            ))
        })
    }

    fn image(&self) -> Result<ImageSpec, ConfigError> {
        let decoded_input = match self.raw.input.as_slice() {
            [only] if only.name == tensor::PIXELS => {
                if only.data_type != DataType::Uint8.config_name() {
                    return Err(self.error(format!(
                        "input '{}' must be {}, got {}",
                        tensor::PIXELS,
                        DataType::Uint8,
                        only.data_type
                    )));
                }
                match self.dims(only)?.as_slice() {
                    [-1, -1, 3] => true,
                    dims => {
                        return Err(self.error(format!(
                            "input '{}' must have dims [-1, -1, 3] (decoded RGB images of \
                             any size), got {dims:?}",
                            tensor::PIXELS
                        )))
                    }
                }
            }
            _ => {
                self.single_tensor("input", &self.raw.input, tensor::IMAGE, DataType::Bytes)?;
                false
            }
        };
        let output = self.single_tensor_of("output", &self.raw.output, tensor::PIXEL_VALUES)?;
        let half_precision = match DataType::from_config_name(&output.data_type) {
            Some(DataType::Fp32) => false,
            Some(DataType::Fp16) => true,
            _ => {
                return Err(self.error(format!(
                    "output '{}' must be {} or {}, got {}",
                    tensor::PIXEL_VALUES,
                    DataType::Fp32,
                    DataType::Fp16,
                    output.data_type
                )))
            }
        };
        let size = match self.dims(output)?.as_slice() {
            [3, h, w] if h == w && *h > 0 && *h <= u32::MAX as i64 => *h as u32,
            dims => {
                return Err(self.error(format!(
                    "output '{}' must have dims [3, S, S], got {dims:?}",
                    tensor::PIXEL_VALUES
                )))
            }
        };
        self.agrees(param::IMAGE_SIZE, u64::from(size))?;
        let std = self
            .triple(param::IMAGE_STD)?
            .unwrap_or(defaults::IMAGE_STD);
        if std.iter().any(|s| !s.is_finite() || *s <= 0.0) {
            return Err(self.error(format!(
                "parameter '{}' must be positive, got {std:?}",
                param::IMAGE_STD
            )));
        }
        Ok(ImageSpec {
            decoded_input,
            size,
            mean: self
                .triple(param::IMAGE_MEAN)?
                .unwrap_or(defaults::IMAGE_MEAN),
            std,
            max_pixels: self
                .number(param::MAX_PIXELS)?
                .unwrap_or(defaults::MAX_PIXELS),
            max_image_bytes: self.limit(param::MAX_IMAGE_BYTES, defaults::MAX_IMAGE_BYTES)?,
            reduced_scale_decode: self.flag(param::REDUCED_SCALE_DECODE)?.unwrap_or(true),
            center_crop: self.center_crop()?,
            half_precision,
        })
    }

    /// The tensors are checked here for what the contract fixes (names and
    /// allowed types); whether they match the ONNX file is checked when the
    /// model is loaded.
    fn encoder(&self) -> Result<EncoderSpec, ConfigError> {
        let integers = [DataType::Int64, DataType::Int32];
        let plays = |raw: &RawTensor, contract: &str| tensor::plays(&raw.name, contract);
        let inputs = match self.raw.input.as_slice() {
            [only] if plays(only, tensor::INPUT_IDS) => {
                vec![self.typed(only, "input", &integers)?]
            }
            [ids, mask] | [mask, ids]
                if plays(ids, tensor::INPUT_IDS) && plays(mask, tensor::ATTENTION_MASK) =>
            {
                let ids = self.typed(ids, "input", &integers)?;
                let mask = self.typed(mask, "input", &integers)?;
                if mask.dims != ids.dims {
                    return Err(self.error(format!(
                        "input '{}' must have the dims of '{}' ({:?}), got {:?}",
                        mask.name, ids.name, ids.dims, mask.dims
                    )));
                }
                vec![ids, mask]
            }
            [only] if plays(only, tensor::PIXEL_VALUES) => {
                vec![self.typed(only, "input", &[DataType::Fp32, DataType::Fp16])?]
            }
            [only] if plays(only, tensor::PIXELS) => {
                vec![self.typed(only, "input", &[DataType::Uint8])?]
            }
            tensors => {
                let names: Vec<&str> = tensors.iter().map(|t| t.name.as_str()).collect();
                return Err(self.error(format!(
                    "needs one input named '{}' (and optionally '{}'), '{}' or '{}' (in any \
                     case), config has {names:?}",
                    tensor::INPUT_IDS,
                    tensor::ATTENTION_MASK,
                    tensor::PIXEL_VALUES,
                    tensor::PIXELS
                )));
            }
        };
        let text = tensor::plays(&inputs[0].name, tensor::INPUT_IDS);
        // The embedding, named as the ONNX file names it.
        let output = match self.raw.output.as_slice() {
            [only] => self.typed(only, "output", &[DataType::Fp32, DataType::Fp16])?,
            tensors => {
                let names: Vec<&str> = tensors.iter().map(|t| t.name.as_str()).collect();
                return Err(self.error(format!(
                    "needs exactly one output (the embedding, '{}' in our exports), config has {names:?}",
                    tensor::EMBEDDING
                )));
            }
        };
        let threads = |key: &str| -> Result<Option<usize>, ConfigError> {
            match self.number::<usize>(key)? {
                Some(0) => Err(self.error(format!("parameter '{key}' must be at least 1"))),
                n => Ok(n),
            }
        };
        let vocab_size = match self.number::<u64>(param::VOCAB_SIZE)? {
            Some(0) => {
                return Err(self.error(format!(
                    "parameter '{}' must be at least 1",
                    param::VOCAB_SIZE
                )))
            }
            Some(_) if !text => {
                return Err(self.error(format!(
                    "parameter '{}' applies to text encoders (input '{}') only",
                    param::VOCAB_SIZE,
                    tensor::INPUT_IDS
                )))
            }
            n => n,
        };
        let ort_library = self
            .parameter(param::ORT_LIBRARY)
            .filter(|p| !p.is_empty())
            .map(PathBuf::from);
        Ok(EncoderSpec {
            model_file: PathBuf::from(file::ONNX_MODEL),
            ort_library,
            intra_op_threads: threads(param::INTRA_OP_THREADS)?,
            inter_op_threads: threads(param::INTER_OP_THREADS)?,
            allow_spinning: self.flag(param::ALLOW_SPINNING)?.unwrap_or(false),
            instance_count: self.instance_count()?,
            vocab_size,
            inputs,
            output,
        })
    }

    fn typed(
        &self,
        found: &RawTensor,
        what: &str,
        allowed: &[DataType],
    ) -> Result<TensorSpec, ConfigError> {
        let name = found.name.as_str();
        let data_type = DataType::from_config_name(&found.data_type)
            .filter(|t| allowed.contains(t))
            .ok_or_else(|| {
                let allowed: Vec<&str> = allowed.iter().map(|t| t.config_name()).collect();
                self.error(format!(
                    "{what} '{name}' must be {}, got {}",
                    allowed.join(" or "),
                    found.data_type
                ))
            })?;
        let dims = self.dims(found)?;
        if dims.is_empty() || dims.iter().any(|d| *d < 1) {
            return Err(self.error(format!(
                "{what} '{name}' needs fixed positive dims after the batch axis, got {dims:?}"
            )));
        }
        Ok(TensorSpec::new(name, data_type, dims))
    }

    /// Every instance Triton will create: `count` per group, per GPU for KIND_GPU.
    fn instance_count(&self) -> Result<u32, ConfigError> {
        let mut total = 0u32;
        for group in &self.raw.instance_group {
            let count = match &group.count {
                None => 1,
                Some(Dim::Number(n)) => *n,
                Some(Dim::Text(t)) => t.parse().unwrap_or(1),
            }
            .max(1);
            // Saturate: a count past u32 must not wrap to a small one.
            let count = u32::try_from(count).unwrap_or(u32::MAX);
            let devices = if group.kind == "KIND_GPU" {
                group.gpus.len().max(1) as u32
            } else {
                1
            };
            total = total.saturating_add(count.saturating_mul(devices));
        }
        Ok(total.max(1))
    }

    fn parameter(&self, key: &str) -> Option<&str> {
        self.raw.parameters.get(key).map(|p| p.string_value.trim())
    }

    fn number<T: std::str::FromStr>(&self, key: &str) -> Result<Option<T>, ConfigError> {
        self.parameter(key)
            .map(|text| {
                text.parse().map_err(|_| {
                    self.error(format!(
                        "parameter '{key}' must be a whole number, got '{text}'"
                    ))
                })
            })
            .transpose()
    }

    /// A size limit: a whole number of at least 1, else `default`.
    fn limit(&self, key: &str, default: usize) -> Result<usize, ConfigError> {
        match self.number::<usize>(key)? {
            Some(0) => Err(self.error(format!("parameter '{key}' must be at least 1"))),
            limit => Ok(limit.unwrap_or(default)),
        }
    }

    fn flag(&self, key: &str) -> Result<Option<bool>, ConfigError> {
        self.parameter(key)
            .map(|text| match text.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => Ok(true),
                "false" | "0" | "no" => Ok(false),
                _ => Err(self.error(format!(
                    "parameter '{key}' must be true or false, got '{text}'"
                ))),
            })
            .transpose()
    }

    fn triple(&self, key: &str) -> Result<Option<[f32; 3]>, ConfigError> {
        let Some(text) = self.parameter(key) else {
            return Ok(None);
        };
        let values: Vec<f32> = text
            .split(',')
            .map(|v| v.trim().parse::<f32>())
            .collect::<Result<_, _>>()
            .map_err(|_| {
                self.error(format!(
                    "parameter '{key}' must be three comma-separated numbers, got '{text}'"
                ))
            })?;
        <[f32; 3]>::try_from(values).map(Some).map_err(|_| {
            self.error(format!(
                "parameter '{key}' must be three comma-separated numbers, got '{text}'"
            ))
        })
    }

    /// A parameter that restates a fact the tensor dims already fix must agree with them.
    fn agrees(&self, key: &str, from_dims: u64) -> Result<(), ConfigError> {
        match self.number::<u64>(key)? {
            Some(stated) if stated != from_dims => Err(self.error(format!(
                "parameter '{key}' is {stated} but the tensor dims say {from_dims}"
            ))),
            _ => Ok(()),
        }
    }

    fn single_tensor_of<'t>(
        &self,
        what: &str,
        tensors: &'t [RawTensor],
        name: &str,
    ) -> Result<&'t RawTensor, ConfigError> {
        match tensors {
            [only] if only.name == name => Ok(only),
            _ => {
                let names: Vec<&str> = tensors.iter().map(|t| t.name.as_str()).collect();
                Err(self.error(format!(
                    "needs exactly one {what} named '{name}', config has {names:?}"
                )))
            }
        }
    }

    fn single_tensor<'t>(
        &self,
        what: &str,
        tensors: &'t [RawTensor],
        name: &str,
        data_type: DataType,
    ) -> Result<&'t RawTensor, ConfigError> {
        let found = self.single_tensor_of(what, tensors, name)?;
        if found.data_type != data_type.config_name() {
            return Err(self.error(format!(
                "{what} '{name}' must be {data_type}, got {}",
                found.data_type
            )));
        }
        if what == "input" && self.dims(found)? != [1] {
            return Err(self.error(format!(
                "input '{name}' must have dims [1] (one item per batch entry)"
            )));
        }
        Ok(found)
    }

    fn dims(&self, tensor: &RawTensor) -> Result<Vec<i64>, ConfigError> {
        tensor
            .dims
            .iter()
            .map(|d| {
                d.value().map_err(|t| {
                    self.error(format!(
                        "tensor '{}' has a non-numeric dim '{t}'",
                        tensor.name
                    ))
                })
            })
            .collect()
    }

    /// Model files come from the model's own version folder, never beside it.
    fn inside_version_folder(&self, file: &str) -> Result<PathBuf, ConfigError> {
        let path = Path::new(file);
        let plain =
            !file.is_empty() && path.components().all(|c| matches!(c, Component::Normal(_)));
        if !plain {
            return Err(self.error(format!(
                "parameter '{}' must be a relative path inside the version folder, got '{file}'",
                param::TOKENIZER_FILE
            )));
        }
        Ok(path.to_path_buf())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn text_config(extra: serde_json::Value) -> serde_json::Value {
        let mut config = json!({
            "name": "clip_text_preprocess",
            "max_batch_size": 8,
            "input": [{"name": "TEXT", "data_type": "TYPE_STRING", "dims": ["1"]}],
            "output": [{"name": "INPUT_IDS", "data_type": "TYPE_INT64", "dims": ["77"]}],
            "parameters": {"kind": {"string_value": "text_preprocess"}}
        });
        merge(&mut config, extra);
        config
    }

    fn image_config(extra: serde_json::Value) -> serde_json::Value {
        let mut config = json!({
            "name": "clip_image_preprocess",
            "max_batch_size": 8,
            "input": [{"name": "IMAGE", "data_type": "TYPE_STRING", "dims": [1]}],
            "output": [{"name": "PIXEL_VALUES", "data_type": "TYPE_FP32", "dims": [3, 224, 224]}],
            "parameters": {"kind": {"string_value": "image_preprocess"}}
        });
        merge(&mut config, extra);
        config
    }

    fn merge(base: &mut serde_json::Value, extra: serde_json::Value) {
        if let (Some(base), serde_json::Value::Object(extra)) = (base.as_object_mut(), extra) {
            for (key, value) in extra {
                match (base.get_mut(&key), value) {
                    (Some(serde_json::Value::Object(inner)), serde_json::Value::Object(value)) => {
                        inner.extend(value)
                    }
                    (_, value) => {
                        base.insert(key, value);
                    }
                }
            }
        }
    }

    fn parse_value(config: serde_json::Value) -> Result<KindSpec, ConfigError> {
        parse(&config.to_string())
    }

    fn string(value: &str) -> serde_json::Value {
        json!({ "string_value": value })
    }

    #[test]
    fn text_defaults() {
        let spec = parse_value(text_config(json!({}))).unwrap();
        assert_eq!(
            spec,
            KindSpec::TextPreprocess(TextSpec {
                tokenizer_file: "tokenizer.json".into(),
                context_length: 77,
                pad_id: None,
                family: TokenizerFamily::ClipBpe,
                max_text_bytes: defaults::MAX_TEXT_BYTES,
                ids_type: DataType::Int64,
                attention_mask: false,
            })
        );
    }

    /// `hf` is taken with or without an attention mask output; an unknown
    /// family is refused at load, naming the ones there are.
    #[test]
    fn text_tokenizer_family() {
        let family = |value: &str, outputs: serde_json::Value| {
            let mut config = json!({"parameters": {"tokenizer_family": string(value)}});
            merge(&mut config, outputs);
            parse_value(text_config(config)).map(|spec| match spec {
                KindSpec::TextPreprocess(spec) => (spec.family, spec.attention_mask),
                other => panic!("not a text model: {other:?}"),
            })
        };
        let with_mask = json!({"output": [
            {"name": "INPUT_IDS", "data_type": "TYPE_INT64", "dims": [77]},
            {"name": "ATTENTION_MASK", "data_type": "TYPE_INT64", "dims": [77]}
        ]});
        assert_eq!(
            family("hf", with_mask.clone()).unwrap(),
            (TokenizerFamily::Hf, true)
        );
        assert_eq!(
            family("hf", json!({})).unwrap(),
            (TokenizerFamily::Hf, false)
        );
        assert_eq!(
            family("clip_bpe", with_mask).unwrap(),
            (TokenizerFamily::ClipBpe, true)
        );
        let error = family("sentencepiece", json!({})).unwrap_err().to_string();
        assert!(
            error.ends_with(
                "unknown parameter tokenizer_family='sentencepiece'; expected one of: clip_bpe, hf"
            ),
            "{error}"
        );
    }

    /// A two-input text encoder: ids and mask, in either order, of the
    /// encoder's integer type; anything else is refused at load.
    #[test]
    fn text_outputs_follow_the_encoder() {
        let outputs = |ids: &str, mask: &str, mask_dims: i64| {
            json!({"output": [
                {"name": "ATTENTION_MASK", "data_type": mask, "dims": [mask_dims]},
                {"name": "INPUT_IDS", "data_type": ids, "dims": [77]}
            ]})
        };
        let KindSpec::TextPreprocess(spec) =
            parse_value(text_config(outputs("TYPE_INT32", "TYPE_INT32", 77))).unwrap()
        else {
            panic!("not a text model")
        };
        assert_eq!(
            (spec.ids_type, spec.attention_mask),
            (DataType::Int32, true)
        );
        for (config, expected) in [
            (
                outputs("TYPE_INT64", "TYPE_INT32", 77),
                "output 'ATTENTION_MASK' must have the type and dims of 'INPUT_IDS' (TYPE_INT64 [77]), got TYPE_INT32 [77]",
            ),
            (
                outputs("TYPE_INT32", "TYPE_INT32", 76),
                "output 'ATTENTION_MASK' must have the type and dims of 'INPUT_IDS' (TYPE_INT32 [77]), got TYPE_INT32 [76]",
            ),
            (
                outputs("TYPE_FP32", "TYPE_FP32", 77),
                "output 'INPUT_IDS' must be TYPE_INT64 or TYPE_INT32, got TYPE_FP32",
            ),
            (
                json!({"output": [{"name": "MASK", "data_type": "TYPE_INT64", "dims": [77]}]}),
                "needs the output 'INPUT_IDS', and optionally 'ATTENTION_MASK', config has [\"MASK\"]",
            ),
        ] {
            let error = parse_value(text_config(config)).unwrap_err().to_string();
            assert!(error.ends_with(expected), "{error}");
        }
    }

    #[test]
    fn text_parameters() {
        let config = text_config(json!({
            "output": [{"name": "INPUT_IDS", "data_type": "TYPE_INT64", "dims": [64]}],
            "parameters": {"pad_token_id": string("0"), "tokenizer_file": string("tok/tokenizer.json"), "context_length": string("64"), "max_text_bytes": string("1000")}
        }));
        let KindSpec::TextPreprocess(spec) = parse_value(config).unwrap() else {
            panic!("not a text model")
        };
        assert_eq!((spec.context_length, spec.pad_id), (64, Some(0)));
        assert_eq!(spec.max_text_bytes, 1000);
        assert_eq!(spec.tokenizer_file, PathBuf::from("tok/tokenizer.json"));
    }

    #[test]
    fn image_defaults_and_half_precision() {
        let config = image_config(json!({
            "output": [{"name": "PIXEL_VALUES", "data_type": "TYPE_FP16", "dims": ["3", "336", "336"]}]
        }));
        let spec = parse_value(config).unwrap();
        assert_eq!(
            spec,
            KindSpec::ImagePreprocess(ImageSpec {
                decoded_input: false,
                size: 336,
                mean: defaults::IMAGE_MEAN,
                std: defaults::IMAGE_STD,
                max_pixels: defaults::MAX_PIXELS,
                max_image_bytes: defaults::MAX_IMAGE_BYTES,
                reduced_scale_decode: true,
                center_crop: CenterCrop::Transformers,
                half_precision: true,
            })
        );
    }

    #[test]
    fn image_preprocessing_of_decoded_pixels_takes_any_size() {
        let pixels = |dims: serde_json::Value| {
            parse_value(image_config(json!({
                "input": [{"name": "PIXELS", "data_type": "TYPE_UINT8", "dims": dims}]
            })))
        };
        let parsed = pixels(json!(["-1", "-1", "3"]));
        let Ok(KindSpec::ImagePreprocess(spec)) = parsed else {
            panic!("{parsed:?}")
        };
        assert!(spec.decoded_input);
        let fixed = pixels(json!([224, 224, 3])).unwrap_err().to_string();
        assert!(fixed.contains("must have dims [-1, -1, 3]"), "{fixed}");
    }

    #[test]
    fn image_parameters() {
        let config = image_config(json!({"parameters": {
            "image_mean": string("0.5, 0.5,0.5"), "image_std": string("0.25,0.25,0.25"),
            "max_pixels": string("1000"), "reduced_scale_decode": string("false"),
            "max_image_bytes": string("4096"), "center_crop": string("torchvision")
        }}));
        let KindSpec::ImagePreprocess(spec) = parse_value(config).unwrap() else {
            panic!("not an image model")
        };
        assert_eq!((spec.mean, spec.std), ([0.5; 3], [0.25; 3]));
        assert_eq!(spec.max_image_bytes, 4096);
        assert_eq!((spec.max_pixels, spec.reduced_scale_decode), (1000, false));
        assert_eq!(spec.center_crop, CenterCrop::Torchvision);
    }

    fn encoder_config(extra: serde_json::Value) -> serde_json::Value {
        let mut config = json!({
            "name": "clip_text_encoder",
            "max_batch_size": 8,
            "input": [{"name": "INPUT_IDS", "data_type": "TYPE_INT64", "dims": ["77"]}],
            "output": [{"name": "EMBEDDING", "data_type": "TYPE_FP32", "dims": ["512"]}],
            "instance_group": [{"name": "g0", "kind": "KIND_CPU", "count": 2, "gpus": []}],
            "parameters": {"kind": {"string_value": "onnx_encoder"}}
        });
        merge(&mut config, extra);
        config
    }

    #[test]
    fn encoder_defaults_and_parameters() {
        let KindSpec::OnnxEncoder(spec) = parse_value(encoder_config(json!({}))).unwrap() else {
            panic!("not an encoder")
        };
        assert_eq!(
            spec,
            EncoderSpec {
                model_file: file::ONNX_MODEL.into(),
                ort_library: None,
                intra_op_threads: None,
                inter_op_threads: None,
                allow_spinning: false,
                instance_count: 2,
                vocab_size: None,
                inputs: vec![TensorSpec::new(
                    tensor::INPUT_IDS,
                    DataType::Int64,
                    vec![77]
                )],
                output: TensorSpec::new(tensor::EMBEDDING, DataType::Fp32, vec![512]),
            }
        );
        let config = encoder_config(json!({
            "input": [{"name": "PIXEL_VALUES", "data_type": "TYPE_FP16", "dims": [3, 336, 336]}],
            "output": [{"name": "EMBEDDING", "data_type": "TYPE_FP16", "dims": [768]}],
            "instance_group": [
                {"kind": "KIND_GPU", "count": 2, "gpus": [0, 1]},
                {"kind": "KIND_CPU", "count": "1"}
            ],
            "parameters": {
                "ort_library": string("/opt/ort/libonnxruntime.so"),
                "intra_op_threads": string("4"), "inter_op_threads": string("2"),
                "allow_spinning": string("true")
            }
        }));
        let KindSpec::OnnxEncoder(spec) = parse_value(config).unwrap() else {
            panic!("not an encoder")
        };
        assert_eq!(spec.inputs[0].data_type, DataType::Fp16);
        assert_eq!(spec.inputs[0].dims, vec![3, 336, 336]);
        assert_eq!(spec.output.data_type, DataType::Fp16);
        assert_eq!(
            spec.instance_count, 5,
            "two per GPU on two GPUs, and one on the CPU"
        );
        assert_eq!(
            spec.ort_library,
            Some(PathBuf::from("/opt/ort/libonnxruntime.so"))
        );
        assert_eq!(
            (spec.intra_op_threads, spec.inter_op_threads),
            (Some(4), Some(2))
        );
        assert!(spec.allow_spinning);
    }

    #[test]
    fn a_two_input_text_encoder_takes_ids_and_mask_in_either_order() {
        let config = encoder_config(json!({"input": [
            {"name": "ATTENTION_MASK", "data_type": "TYPE_INT32", "dims": [77]},
            {"name": "INPUT_IDS", "data_type": "TYPE_INT32", "dims": [77]}
        ], "parameters": {"vocab_size": string("49408")}}));
        let KindSpec::OnnxEncoder(spec) = parse_value(config).unwrap() else {
            panic!("not an encoder")
        };
        let names: Vec<&str> = spec.inputs.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, [tensor::INPUT_IDS, tensor::ATTENTION_MASK]);
        assert!(spec.inputs.iter().all(|s| s.data_type == DataType::Int32));
        assert_eq!(spec.vocab_size, Some(49408));

        // CLIP-as-service's spelling: the config names follow the ONNX file.
        let config = encoder_config(json!({"input": [
            {"name": "input_ids", "data_type": "TYPE_INT32", "dims": [77]},
            {"name": "attention_mask", "data_type": "TYPE_INT32", "dims": [77]}
        ], "output": [{"name": "output", "data_type": "TYPE_FP32", "dims": [512]}]}));
        let KindSpec::OnnxEncoder(spec) = parse_value(config).unwrap() else {
            panic!("not an encoder")
        };
        let names: Vec<&str> = spec.inputs.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["input_ids", "attention_mask"]);
        assert_eq!(spec.output.name, "output");
    }

    #[test]
    fn a_text_encoder_takes_its_vocabulary_size() {
        let config = encoder_config(json!({"parameters": {"vocab_size": string("49408")}}));
        let KindSpec::OnnxEncoder(spec) = parse_value(config).unwrap() else {
            panic!("not an encoder")
        };
        assert_eq!(spec.vocab_size, Some(49408));
    }

    #[test]
    fn an_instance_count_past_u32_saturates_instead_of_wrapping() {
        let config = encoder_config(json!({"instance_group": [
            {"name": "g0", "kind": "KIND_CPU", "count": 4294967297i64, "gpus": []}
        ]}));
        let KindSpec::OnnxEncoder(spec) = parse_value(config).unwrap() else {
            panic!("not an encoder")
        };
        assert_eq!(spec.instance_count, u32::MAX);
    }

    #[test]
    fn encoder_refusals() {
        let cases = [
            (
                encoder_config(
                    json!({"input": [{"name": "INPUT_IDS", "data_type": "TYPE_FP32", "dims": [77]}]}),
                ),
                "input 'INPUT_IDS' must be TYPE_INT64 or TYPE_INT32, got TYPE_FP32",
            ),
            (
                encoder_config(json!({"input": [
                    {"name": "INPUT_IDS", "data_type": "TYPE_INT32", "dims": [77]},
                    {"name": "ATTENTION_MASK", "data_type": "TYPE_INT32", "dims": [64]}
                ]})),
                "input 'ATTENTION_MASK' must have the dims of 'INPUT_IDS' ([77]), got [64]",
            ),
            (
                encoder_config(json!({"input": [
                    {"name": "PIXEL_VALUES", "data_type": "TYPE_FP32", "dims": [3, 224, 224]},
                    {"name": "ATTENTION_MASK", "data_type": "TYPE_INT32", "dims": [77]}
                ]})),
                "needs one input named 'INPUT_IDS' (and optionally 'ATTENTION_MASK'), 'PIXEL_VALUES' or 'PIXELS'",
            ),
            (
                encoder_config(
                    json!({"input": [{"name": "PIXEL_VALUES", "data_type": "TYPE_INT64", "dims": [3, 224, 224]}]}),
                ),
                "input 'PIXEL_VALUES' must be TYPE_FP32 or TYPE_FP16",
            ),
            (
                encoder_config(
                    json!({"input": [{"name": "TEXT", "data_type": "TYPE_STRING", "dims": [1]}]}),
                ),
                "needs one input named 'INPUT_IDS' (and optionally 'ATTENTION_MASK'), 'PIXEL_VALUES' or 'PIXELS'",
            ),
            (
                encoder_config(
                    json!({"input": [{"name": "PIXELS", "data_type": "TYPE_FP32", "dims": [224, 224, 3]}]}),
                ),
                "input 'PIXELS' must be TYPE_UINT8, got TYPE_FP32",
            ),
            (
                encoder_config(
                    json!({"output": [
                        {"name": "EMBEDDING", "data_type": "TYPE_FP32", "dims": [512]},
                        {"name": "POOLED", "data_type": "TYPE_FP32", "dims": [512]}
                    ]}),
                ),
                "needs exactly one output (the embedding, 'EMBEDDING' in our exports), config has [\"EMBEDDING\", \"POOLED\"]",
            ),
            (
                encoder_config(
                    json!({"output": [{"name": "EMBEDDING", "data_type": "TYPE_FP32", "dims": [-1]}]}),
                ),
                "fixed positive dims",
            ),
            (
                encoder_config(json!({"parameters": {"intra_op_threads": string("0")}})),
                "'intra_op_threads' must be at least 1",
            ),
            (
                encoder_config(json!({"parameters": {"inter_op_threads": string("many")}})),
                "'inter_op_threads' must be a whole number",
            ),
            (
                encoder_config(json!({"parameters": {"vocab_size": string("0")}})),
                "'vocab_size' must be at least 1",
            ),
            (
                encoder_config(json!({
                    "input": [{"name": "PIXEL_VALUES", "data_type": "TYPE_FP32", "dims": [3, 224, 224]}],
                    "parameters": {"vocab_size": string("49408")}
                })),
                "'vocab_size' applies to text encoders (input 'INPUT_IDS') only",
            ),
        ];
        for (config, expected) in cases {
            let message = error_of(config);
            assert!(message.contains(expected), "{message:?} lacks {expected:?}");
        }
    }

    fn error_of(config: serde_json::Value) -> String {
        parse_value(config).unwrap_err().to_string()
    }

    #[test]
    fn refuses_what_would_fail_later() {
        let cases = [
            (
                text_config(json!({"parameters": {"kind": string("resize")}})),
                "unknown parameter kind='resize'",
            ),
            (
                text_config(json!({"max_batch_size": 0})),
                "max_batch_size must be at least 1",
            ),
            (
                text_config(json!({"parameters": {"max_text_bytes": string("0")}})),
                "parameter 'max_text_bytes' must be at least 1",
            ),
            (
                image_config(json!({"parameters": {"max_image_bytes": string("64MB")}})),
                "parameter 'max_image_bytes' must be a whole number",
            ),
            (
                text_config(
                    json!({"input": [{"name": "TEXT", "data_type": "TYPE_FP32", "dims": [1]}]}),
                ),
                "input 'TEXT' must be TYPE_STRING",
            ),
            (
                text_config(
                    json!({"input": [{"name": "PROMPT", "data_type": "TYPE_STRING", "dims": [1]}]}),
                ),
                "exactly one input named 'TEXT'",
            ),
            (
                text_config(
                    json!({"input": [{"name": "TEXT", "data_type": "TYPE_STRING", "dims": [2]}]}),
                ),
                "dims [1]",
            ),
            (
                text_config(json!({"parameters": {"context_length": string("32")}})),
                "tensor dims say 77",
            ),
            (
                text_config(json!({"parameters": {"pad_token_id": string("end")}})),
                "whole number",
            ),
            (
                text_config(json!({"parameters": {"tokenizer_file": string("../../etc/passwd")}})),
                "inside the version folder",
            ),
            (
                image_config(
                    json!({"output": [{"name": "PIXEL_VALUES", "data_type": "TYPE_FP32", "dims": [3, 224, 200]}]}),
                ),
                "dims [3, S, S]",
            ),
            (
                image_config(
                    json!({"output": [{"name": "PIXEL_VALUES", "data_type": "TYPE_INT64", "dims": [3, 224, 224]}]}),
                ),
                "TYPE_FP32 or TYPE_FP16",
            ),
            (
                image_config(json!({"parameters": {"image_std": string("0.2,0,0.2")}})),
                "must be positive",
            ),
            (
                image_config(json!({"parameters": {"image_mean": string("0.2,0.2")}})),
                "three comma-separated",
            ),
            (
                image_config(json!({"parameters": {"reduced_scale_decode": string("maybe")}})),
                "true or false",
            ),
            (
                image_config(json!({"parameters": {"center_crop": string("pil")}})),
                "center_crop='pil'; expected one of: transformers, torchvision",
            ),
        ];
        for (config, expected) in cases {
            let message = error_of(config);
            assert!(message.contains(expected), "{message:?} lacks {expected:?}");
        }
        let missing_kind = error_of(json!({"name": "m", "max_batch_size": 1}));
        assert!(missing_kind.contains("'kind' is missing"), "{missing_kind}");
        assert!(missing_kind.starts_with("model 'm'"), "{missing_kind}");
    }
}
