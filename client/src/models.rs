//! What the client learns about a served CLIP model from its Triton config:
//! the parameters repo-gen writes into every model (see `clip_contract::param`),
//! its input and embedding tensors, and the ensemble's steps.

use std::collections::HashMap;

use clip_contract::{param, tensor, DataType, TensorSpec};

use crate::input::Modality;
use crate::proto::model_config::SchedulingChoice;
use crate::{proto, Error};

/// One CLIP ensemble (`clip_text` or `clip_image`, with any name prefix) as
/// the server describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelInfo {
    /// Triton model name, e.g. `clip_text`.
    pub name: String,
    pub modality: Modality,
    /// The CLIP checkpoint, e.g. `ViT-B-32::openai`.
    pub clip_model: String,
    /// Length of each embedding.
    pub embedding_dim: usize,
    /// The checkpoint's logit scale, as stored (its natural log); see
    /// [`ModelInfo::logit_scale`].
    pub log_logit_scale: Option<f32>,
    /// Largest batch one request may carry.
    pub max_batch_size: usize,
    /// The models the ensemble runs, in order (preprocessing, encoder).
    pub steps: Vec<String>,
    /// What a request carries: `TEXT` or `IMAGE`, BYTES.
    pub input: TensorSpec,
    /// What comes back: `EMBEDDING`, FP32 or FP16 (widened to `f32` by the client).
    pub output: TensorSpec,
}

/// CLIP clamps the learned scale at 100 (OpenAI's training code does so
/// after each step; the released checkpoints sit at the clamp).
const MAX_LOGIT_SCALE: f32 = 100.0;

/// A config's tensor in the shared vocabulary; `None` for a type this
/// project never serves.
fn spec(name: &str, data_type: i32, dims: &[i64]) -> Option<TensorSpec> {
    let config_name = proto::DataType::try_from(data_type).ok()?.as_str_name();
    let data_type = DataType::from_config_name(config_name)?;
    Some(TensorSpec::new(name, data_type, dims.to_vec()))
}

impl ModelInfo {
    /// Reads the facts repo-gen writes into an ensemble's config.
    pub fn from_config(
        modality: Modality,
        config: &proto::ModelConfig,
    ) -> Result<ModelInfo, Error> {
        let input = match modality {
            Modality::Text => tensor::TEXT,
            Modality::Image => tensor::IMAGE,
        };
        Self::read(modality, config, input, DataType::Bytes)
    }

    /// The facts of a model whose input is `input_name` of `input_type`.
    fn read(
        modality: Modality,
        config: &proto::ModelConfig,
        input_name: &str,
        input_type: DataType,
    ) -> Result<ModelInfo, Error> {
        let params: HashMap<&str, &str> = config
            .parameters
            .iter()
            .map(|(k, v)| (k.as_str(), v.string_value.as_str()))
            .collect();
        let unusable = |reason: String| Error::Model {
            model: config.name.clone(),
            reason,
        };
        let embedding_dim = params
            .get(param::EMBEDDING_DIM)
            .ok_or_else(|| {
                unusable(format!(
                    "its config has no {:?} parameter; was the repository written by repo-gen?",
                    param::EMBEDDING_DIM
                ))
            })?
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|d| *d > 0)
            .ok_or_else(|| {
                unusable(format!(
                    "{} is not a positive integer",
                    param::EMBEDDING_DIM
                ))
            })?;
        let input = config
            .input
            .iter()
            .find(|t| t.name == input_name)
            .and_then(|t| spec(&t.name, t.data_type, &t.dims))
            .filter(|t| t.data_type == input_type)
            .ok_or_else(|| {
                unusable(format!(
                    "its config has no {input_name} input of {input_type}"
                ))
            })?;
        let output = config
            .output
            .iter()
            .find(|t| t.name == tensor::EMBEDDING)
            .and_then(|t| spec(&t.name, t.data_type, &t.dims))
            .filter(|t| matches!(t.data_type, DataType::Fp32 | DataType::Fp16))
            .ok_or_else(|| {
                unusable(format!(
                    "its config has no {} output of {} or {}",
                    tensor::EMBEDDING,
                    DataType::Fp32,
                    DataType::Fp16
                ))
            })?;
        // A variable dim is left to each response's check of its length.
        if output.row_elements().is_some_and(|n| n != embedding_dim) {
            return Err(unusable(format!(
                "its {} dims {:?} disagree with {} = {embedding_dim}",
                tensor::EMBEDDING,
                output.dims,
                param::EMBEDDING_DIM
            )));
        }
        let log_logit_scale = params
            .get(param::LOGIT_SCALE)
            .and_then(|v| v.trim().parse::<f32>().ok())
            .filter(|v| v.is_finite());
        let steps = match &config.scheduling_choice {
            Some(SchedulingChoice::EnsembleScheduling(e)) => {
                e.step.iter().map(|s| s.model_name.clone()).collect()
            }
            _ => Vec::new(),
        };
        Ok(ModelInfo {
            name: config.name.clone(),
            modality,
            clip_model: params
                .get(param::MODEL_NAME)
                .map_or_else(String::new, |v| v.to_string()),
            embedding_dim,
            log_logit_scale,
            // 0 means the model takes no batch dimension; send one item at a time.
            max_batch_size: usize::try_from(config.max_batch_size).unwrap_or(0).max(1),
            steps,
            input,
            output,
        })
    }

    /// The multiplier of cosine similarities before the softmax:
    /// `exp(log_logit_scale)` clamped at 100, or 100 when the config does
    /// not say.
    pub fn logit_scale(&self) -> f32 {
        self.log_logit_scale
            .map_or(MAX_LOGIT_SCALE, |log| log.exp().min(MAX_LOGIT_SCALE))
    }
}

/// The pixel path's model (`clip_image_pixels`, `repo-gen --pixel-path`):
/// its facts, and the decode, resize and crop the client runs for it, set
/// as the server's image preprocessing model has them.
#[derive(Debug, Clone)]
pub struct PixelModel {
    pub info: ModelInfo,
    pub preprocessor: clip_image::ImagePreprocessor,
}

impl PixelModel {
    /// Reads the model's config: input `PIXELS`, UINT8 `[S, S, 3]`, and the
    /// preprocessing parameters repo-gen copies into it.
    pub fn from_config(config: &proto::ModelConfig) -> Result<PixelModel, Error> {
        let info = ModelInfo::read(Modality::Image, config, tensor::PIXELS, DataType::Uint8)?;
        let unusable = |reason: String| Error::Model {
            model: config.name.clone(),
            reason,
        };
        let size = match info.input.dims.as_slice() {
            [h, w, 3] if h == w && *h > 0 => u32::try_from(*h).ok(),
            _ => None,
        }
        .ok_or_else(|| {
            unusable(format!(
                "its {} dims {:?} are not [S, S, 3]",
                tensor::PIXELS,
                info.input.dims
            ))
        })?;
        let param = |key: &str| {
            config
                .parameters
                .get(key)
                .map(|p| p.string_value.trim().to_owned())
        };
        let mut options = clip_image::ImageOptions {
            size,
            ..Default::default()
        };
        if let Some(text) = param(param::MAX_PIXELS) {
            options.max_pixels = text
                .parse()
                .map_err(|_| unusable(format!("{} {text:?} is not a count", param::MAX_PIXELS)))?;
        }
        if let Some(text) = param(param::REDUCED_SCALE_DECODE) {
            options.reduced_scale_decode = text.parse().map_err(|_| {
                unusable(format!(
                    "{} {text:?} is not true or false",
                    param::REDUCED_SCALE_DECODE
                ))
            })?;
        }
        if let Some(name) = param(param::CENTER_CROP) {
            options.center_crop = clip_image::CenterCrop::from_name(&name).ok_or_else(|| {
                unusable(format!(
                    "{} {name:?} is neither transformers nor torchvision",
                    param::CENTER_CROP
                ))
            })?;
        }
        let preprocessor =
            clip_image::ImagePreprocessor::new(options).map_err(|e| unusable(e.to_string()))?;
        Ok(PixelModel { info, preprocessor })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The text ensemble's config as Triton reports it, with `params`; its
    /// EMBEDDING has a variable dim unless a test sets one.
    fn config(params: &[(&str, &str)]) -> proto::ModelConfig {
        proto::ModelConfig {
            name: "clip_text".into(),
            max_batch_size: 64,
            input: vec![proto::ModelInput {
                name: tensor::TEXT.into(),
                data_type: proto::DataType::TypeString.into(),
                dims: vec![1],
                ..Default::default()
            }],
            output: vec![embedding(proto::DataType::TypeFp32, -1)],
            parameters: params
                .iter()
                .map(|(k, v)| {
                    (
                        k.to_string(),
                        proto::ModelParameter {
                            string_value: v.to_string(),
                        },
                    )
                })
                .collect(),
            scheduling_choice: Some(SchedulingChoice::EnsembleScheduling(
                proto::ModelEnsembling {
                    step: ["clip_text_preprocess", "clip_text_encoder"]
                        .iter()
                        .map(|name| proto::model_ensembling::Step {
                            model_name: name.to_string(),
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                },
            )),
            ..Default::default()
        }
    }

    fn embedding(data_type: proto::DataType, dim: i64) -> proto::ModelOutput {
        proto::ModelOutput {
            name: tensor::EMBEDDING.into(),
            data_type: data_type.into(),
            dims: vec![dim],
            ..Default::default()
        }
    }

    #[test]
    fn reads_repo_gen_parameters_and_steps() {
        let info = ModelInfo::from_config(
            Modality::Text,
            &config(&[
                (param::EMBEDDING_DIM, "512"),
                (param::MODEL_NAME, "ViT-B-32::openai"),
                (param::LOGIT_SCALE, "4.6052"),
            ]),
        )
        .unwrap();
        assert_eq!(info.embedding_dim, 512);
        assert_eq!(info.clip_model, "ViT-B-32::openai");
        assert_eq!(info.max_batch_size, 64);
        assert_eq!(info.steps, ["clip_text_preprocess", "clip_text_encoder"]);
        assert!((info.logit_scale() - 100.0).abs() < 0.01);
    }

    #[test]
    fn logit_scale_is_exponentiated_and_clamped() {
        let with = |v: &str| {
            ModelInfo::from_config(
                Modality::Text,
                &config(&[(param::EMBEDDING_DIM, "8"), (param::LOGIT_SCALE, v)]),
            )
            .unwrap()
            .logit_scale()
        };
        assert!((with("2.6593") - 14.285).abs() < 0.01);
        assert_eq!(with("9"), 100.0);
        assert_eq!(with("nan"), 100.0);
    }

    #[test]
    fn a_config_without_repo_gen_facts_is_refused_with_the_reason() {
        let err = ModelInfo::from_config(Modality::Text, &config(&[])).unwrap_err();
        assert!(err.to_string().contains("repo-gen"), "{err}");
        let err = ModelInfo::from_config(Modality::Text, &config(&[(param::EMBEDDING_DIM, "0")]))
            .unwrap_err();
        assert!(err.to_string().contains("positive"), "{err}");
    }

    #[test]
    fn the_tensors_come_from_the_config_and_fp16_embeddings_are_accepted() {
        let mut fp16 = config(&[(param::EMBEDDING_DIM, "8")]);
        fp16.output = vec![embedding(proto::DataType::TypeFp16, 8)];
        let info = ModelInfo::from_config(Modality::Text, &fp16).unwrap();
        assert_eq!(
            info.input,
            TensorSpec::new(tensor::TEXT, DataType::Bytes, vec![1])
        );
        assert_eq!(
            info.output,
            TensorSpec::new(tensor::EMBEDDING, DataType::Fp16, vec![8])
        );
    }

    #[test]
    fn tensors_the_client_cannot_use_are_refused_with_the_reason() {
        let refused = |modality: Modality, output: proto::ModelOutput| {
            let mut config = config(&[(param::EMBEDDING_DIM, "8")]);
            config.output = vec![output];
            ModelInfo::from_config(modality, &config)
                .unwrap_err()
                .to_string()
        };
        let err = refused(Modality::Text, embedding(proto::DataType::TypeInt64, 8));
        assert!(
            err.contains("no EMBEDDING output of TYPE_FP32 or TYPE_FP16"),
            "{err}"
        );
        let err = refused(Modality::Text, embedding(proto::DataType::TypeFp32, 16));
        assert!(
            err.contains("[16]") && err.contains("embedding_dim = 8"),
            "{err}"
        );
        // The text ensemble's config read as the image ensemble's: no IMAGE input.
        let err = refused(Modality::Image, embedding(proto::DataType::TypeFp32, 8));
        assert!(err.contains("no IMAGE input of TYPE_STRING"), "{err}");
    }
}
