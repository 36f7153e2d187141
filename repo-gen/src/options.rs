//! Everything `repo-gen` is asked for, and the settings refused before
//! anything slow starts.

use std::path::PathBuf;

use clip_export::WeightDtype;

use crate::download::HubOptions;
use crate::encoder::Runtime;
use crate::error::GenerateError;
use crate::placement::GpuChoice;
use crate::render::Batching;

/// Where the model comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// `--model ARCH::PRETRAINED`: the registry and the Hugging Face hub.
    Model(String),
    /// `--weights DIR`: config, safetensors and tokenizer.json in a folder.
    Weights(PathBuf),
    /// `--onnx-dir DIR`: textual.onnx and visual.onnx, used as they are.
    OnnxDir {
        dir: PathBuf,
        tokenizer: Option<PathBuf>,
    },
    /// `--random-init --model ARCH::PRETRAINED`: the registry's architecture
    /// with seeded random weights, nothing downloaded. For benchmarks: the
    /// compute is the real model's, the embeddings mean nothing.
    RandomInit {
        model: String,
        seed: u64,
        /// The CLIP tokenizer.json for the text preprocessing model.
        tokenizer: PathBuf,
    },
}

/// Everything `repo-gen` was asked for.
#[derive(Clone, Debug)]
pub struct Options {
    pub source: Source,
    pub out: PathBuf,
    pub runtime: Runtime,
    pub dtype: WeightDtype,
    pub name_prefix: String,
    /// For every model; ensembles take only `max_batch_size`.
    pub batching: Batching,
    pub instances: Option<u32>,
    pub gpus: GpuChoice,
    /// `model_warmup` samples in the preprocessing and encoder models.
    pub warmup: bool,
    /// `response_cache` in the ensembles and encoders.
    pub response_cache: bool,
    pub trt_accelerator: bool,
    /// ONNX Runtime for the verification run (else `ORT_DYLIB_PATH`), and
    /// `ort_library` of `ort` encoders.
    pub ort_library: Option<PathBuf>,
    /// Write into a non-empty `out`, replacing models of the same names.
    pub force: bool,
    pub hub: HubOptions,
}

impl Options {
    /// Refuses combinations that cannot work, naming the flags.
    pub(crate) fn check(&self) -> Result<(), GenerateError> {
        if self.trt_accelerator && self.runtime != Runtime::OnnxRuntime {
            return Err(GenerateError::Invalid(format!(
                "--trt-accelerator is an option of --runtime onnxruntime (ONNX Runtime's TensorRT \
                 execution provider), not of --runtime {}",
                self.runtime
            )));
        }
        let max = self.batching.max_batch_size;
        if max == 0 {
            return Err(GenerateError::Invalid(
                "--max-batch-size must be at least 1: every model of the repository is batched"
                    .to_owned(),
            ));
        }
        if let Some(dynamic) = &self.batching.dynamic {
            if let Some(bad) = dynamic
                .preferred_batch_sizes
                .iter()
                .find(|&&s| s == 0 || s > max)
            {
                return Err(GenerateError::Invalid(format!(
                    "--preferred-batch-size {bad} is outside 1..={max} (--max-batch-size)"
                )));
            }
        }
        if self.instances == Some(0) {
            return Err(GenerateError::Invalid(
                "--instances must be at least 1".to_owned(),
            ));
        }
        if let Source::OnnxDir { .. } = self.source {
            if self.dtype != WeightDtype::F32 {
                return Err(GenerateError::Invalid(
                    "--dtype applies to exported models; --onnx-dir files are used as they are"
                        .to_owned(),
                ));
            }
        }
        Ok(())
    }
}
