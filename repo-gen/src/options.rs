//! Everything `repo-gen` is asked for, and the settings refused before
//! anything slow starts.

use std::path::PathBuf;
use std::str::FromStr;

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
        /// `--model NAME` beside it: the registry model the files are, which
        /// decides the image size, normalisation, vocabulary and tokenizer.
        model: Option<String>,
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

/// `--preprocess-instances N|auto`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PreprocessInstances {
    /// From the cores of the machine repo-gen runs on: [`auto_preprocess_instances`].
    Auto,
    Count(u32),
}

/// The most instances `auto` gives each preprocessing model.
pub const MAX_AUTO_PREPROCESS_INSTANCES: u32 = 4;

/// `auto`: one instance per core, 1 to [`MAX_AUTO_PREPROCESS_INSTANCES`]. A
/// one-photo request runs on one core (rayon spreads only a batch's images
/// over the cores), so one instance per core lets concurrent requests
/// overlap; past 4, queued requests batch up and fill the cores anyway.
pub fn auto_preprocess_instances(cores: usize) -> u32 {
    u32::try_from(cores)
        .unwrap_or(u32::MAX)
        .clamp(1, MAX_AUTO_PREPROCESS_INSTANCES)
}

impl PreprocessInstances {
    /// The count, and a note saying why; `cores` (of this machine, `None`
    /// when unknown) only matters for `Auto`.
    pub(crate) fn resolve(self, cores: Option<usize>) -> (u32, String) {
        let (count, why) = match (self, cores) {
            (PreprocessInstances::Count(n), _) => (n, format!("--preprocess-instances {n}")),
            (PreprocessInstances::Auto, Some(cores)) => (
                auto_preprocess_instances(cores),
                format!(
                    "--preprocess-instances auto: one per core ({cores} here), at most \
                     {MAX_AUTO_PREPROCESS_INSTANCES}; pass N when the server has other cores"
                ),
            ),
            (PreprocessInstances::Auto, None) => (
                1,
                "--preprocess-instances auto: this machine's core count is unknown".to_owned(),
            ),
        };
        let note = format!(
            "the preprocessing models get {count} CPU instance{} each ({why})",
            if count == 1 { "" } else { "s" }
        );
        (count, note)
    }
}

impl FromStr for PreprocessInstances {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text.trim() {
            "auto" => Ok(PreprocessInstances::Auto),
            n => n.parse().map(PreprocessInstances::Count).map_err(|_| {
                format!("--preprocess-instances {text:?}: write auto or a count such as 2")
            }),
        }
    }
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
    /// CPU instances of each preprocessing model.
    pub preprocess_instances: PreprocessInstances,
    /// `model_warmup` samples in the preprocessing and encoder models.
    pub warmup: bool,
    /// `response_cache` in the ensembles and encoders.
    pub response_cache: bool,
    /// Also write `clip_image_pixels`, the image encoder for decoded pixels.
    pub pixel_path: bool,
    /// Whose center crop the image preprocessing takes.
    pub center_crop: clip_image::CenterCrop,
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
        if self.pixel_path && matches!(self.source, Source::OnnxDir { .. }) {
            return Err(GenerateError::Invalid(
                "--pixel-path exports its image encoder from weights (--model, --weights or \
                 --random-init); --onnx-dir files are served as they are"
                    .to_owned(),
            ));
        }
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
        if self.preprocess_instances == PreprocessInstances::Count(0) {
            return Err(GenerateError::Invalid(
                "--preprocess-instances must be at least 1 (or auto): Triton serves a \
                 preprocessing model through its instances"
                    .to_owned(),
            ));
        }
        if self.dtype == WeightDtype::Int8
            && (self.runtime == Runtime::TensorRt || self.trt_accelerator)
        {
            return Err(GenerateError::Invalid(
                "--dtype int8 writes ONNX Runtime's dynamic quantization (DynamicQuantizeLinear, \
                 MatMulInteger), which TensorRT does not run: TensorRT's int8 needs \
                 QuantizeLinear/DequantizeLinear pairs with scales calibrated on sample data. \
                 Use --dtype fp16 with TensorRT, or int8 with --runtime ort or onnxruntime \
                 without --trt-accelerator"
                    .to_owned(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_gives_one_instance_per_core_from_1_to_4() {
        for (cores, want) in [(0, 1), (1, 1), (2, 2), (3, 3), (4, 4), (8, 4), (128, 4)] {
            assert_eq!(auto_preprocess_instances(cores), want, "{cores} cores");
        }
        assert_eq!(auto_preprocess_instances(usize::MAX), 4);
    }

    #[test]
    fn resolve_says_which_count_and_why() {
        let (count, note) = PreprocessInstances::Auto.resolve(Some(2));
        assert_eq!(count, 2);
        assert!(note.contains("2 CPU instances each"), "{note}");
        assert!(note.contains("auto: one per core (2 here)"), "{note}");
        let (count, note) = PreprocessInstances::Auto.resolve(None);
        assert_eq!(count, 1);
        assert!(note.contains("1 CPU instance each"), "{note}");
        assert!(note.contains("unknown"), "{note}");
        let (count, note) = PreprocessInstances::Count(6).resolve(Some(2));
        assert_eq!(count, 6);
        assert!(note.contains("(--preprocess-instances 6)"), "{note}");
    }

    #[test]
    fn parses_auto_and_counts() {
        assert_eq!("auto".parse(), Ok(PreprocessInstances::Auto));
        assert_eq!(" 3 ".parse(), Ok(PreprocessInstances::Count(3)));
        // 0 parses; Options::check refuses it with its own message.
        assert_eq!("0".parse(), Ok(PreprocessInstances::Count(0)));
        for bad in ["", "-1", "two", "2.5"] {
            let err = bad.parse::<PreprocessInstances>().unwrap_err();
            assert!(err.contains("write auto or a count"), "{bad}: {err}");
        }
    }
}
