//! The encoders (`clip_text_encoder`, `clip_image_encoder`) on the three
//! runtimes, and the ensembles (`clip_text`, `clip_image`) that chain
//! preprocessing and encoder.
//!
//! An encoder's inputs and outputs are those its ONNX file declares (see
//! [`crate::onnx_io`]), so the config can never disagree with the model.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use clip_contract::{file, kind, param, triton, DataType, TensorSpec};
use serde::Serialize;

use crate::model_dir::{FileSource, ModelDir, VersionFile};
use crate::placement::{InstanceGroup, InstanceKind};
use crate::render::{
    check_name, render, Batching, Common, RenderError, ENCODER_TEMPLATE_NAME,
    ENSEMBLE_TEMPLATE_NAME,
};
use crate::warmup;

/// Which runtime serves the encoders.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Runtime {
    /// This project's `clip` backend, `kind: onnx_encoder` (ONNX Runtime through `ort`).
    Ort,
    /// Triton's ONNX Runtime backend (`platform: "onnxruntime_onnx"`).
    OnnxRuntime,
    /// Triton's TensorRT backend (`platform: "tensorrt_plan"`); the plan is built with trtexec.
    TensorRt,
}

impl Runtime {
    pub const ALL: [Runtime; 3] = [Runtime::Ort, Runtime::OnnxRuntime, Runtime::TensorRt];

    pub fn as_str(self) -> &'static str {
        match self {
            Runtime::Ort => "ort",
            Runtime::OnnxRuntime => "onnxruntime",
            Runtime::TensorRt => "tensorrt",
        }
    }

    /// Whether instances must run on a GPU (TensorRT engines do).
    pub fn needs_gpu(self) -> bool {
        self == Runtime::TensorRt
    }
}

impl fmt::Display for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Runtime {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        Runtime::ALL
            .into_iter()
            .find(|r| r.as_str() == text)
            .ok_or_else(|| {
                format!("unknown runtime {text:?}; expected ort, onnxruntime or tensorrt")
            })
    }
}

/// The two towers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Tower {
    Text,
    Image,
}

impl Tower {
    pub fn as_str(self) -> &'static str {
        match self {
            Tower::Text => "text",
            Tower::Image => "image",
        }
    }
}

#[derive(Serialize)]
struct TensorContext<'a> {
    name: &'a str,
    data_type: &'static str,
    dims: &'a [i64],
}

fn tensor_context(tensor: &TensorSpec) -> TensorContext<'_> {
    TensorContext {
        name: &tensor.name,
        data_type: tensor.data_type.config_name(),
        dims: &tensor.dims,
    }
}

/// What a client needs to know about the model, carried by every model of a
/// repository as parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct Facts {
    /// `ARCH::PRETRAINED`, or the folder the weights came from.
    pub model_name: String,
    pub embedding_dim: usize,
    pub image_size: usize,
    pub context_length: usize,
    /// The checkpoint's `logit_scale` (a logarithm: similarity logits are
    /// `exp(logit_scale) * cosine`); `None` when the files do not say.
    pub logit_scale: Option<f32>,
}

impl Facts {
    /// The facts as `parameters` entries.
    pub fn parameters(&self) -> Vec<(String, String)> {
        let mut entries = vec![
            (param::MODEL_NAME.to_owned(), self.model_name.clone()),
            (
                param::EMBEDDING_DIM.to_owned(),
                self.embedding_dim.to_string(),
            ),
            (param::IMAGE_SIZE.to_owned(), self.image_size.to_string()),
            (
                param::CONTEXT_LENGTH.to_owned(),
                self.context_length.to_string(),
            ),
        ];
        if let Some(scale) = self.logit_scale {
            entries.push((param::LOGIT_SCALE.to_owned(), scale.to_string()));
        }
        entries
    }
}

/// An encoder model on one of the [`Runtime`]s.
#[derive(Clone, Debug, PartialEq)]
pub struct EncoderModel {
    pub name: String,
    pub tower: Tower,
    pub runtime: Runtime,
    pub batching: Batching,
    pub instance_groups: Vec<InstanceGroup>,
    /// As the ONNX file declares them, batch dimension left out.
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
    pub facts: Facts,
    /// FP16 weights: the TensorRT accelerator and plans build in FP16.
    pub half_precision: bool,
    /// `onnxruntime` only: ONNX Runtime's TensorRT execution accelerator.
    pub trt_accelerator: bool,
    /// `ort` only: `libonnxruntime.so` the backend loads (else its `ORT_DYLIB_PATH`).
    pub ort_library: Option<String>,
    /// `ort` only: ONNX Runtime threads per instance.
    pub intra_op_threads: Option<u32>,
    pub inter_op_threads: Option<u32>,
    /// `ort` text encoders only: rows of the token embedding, so the backend
    /// refuses a request with an id outside it instead of running the batch.
    pub vocab_size: Option<usize>,
    /// A `model_warmup` sample of zeros at the largest batch (see [`crate::warmup`]).
    pub warmup: bool,
    /// `response_cache { enable: true }`: identical token ids or pixels (from
    /// differently written sentences, or re-encoded copies of a photo) are
    /// answered from Triton's cache when the server runs with one.
    pub response_cache: bool,
    /// Written after the parameters above; a key already written replaces its value.
    pub extra_parameters: Vec<(String, String)>,
}

/// Workspace the TensorRT accelerator may use: 1 GiB.
pub const TRT_ACCELERATOR_WORKSPACE_BYTES: u64 = 1 << 30;

#[derive(Serialize)]
struct Accelerator {
    name: &'static str,
    parameters: Vec<HashMap<&'static str, String>>,
}

impl EncoderModel {
    /// The model's config.pbtxt.
    pub fn render(&self) -> Result<String, RenderError> {
        let common = Common {
            name: &self.name,
            batching: &self.batching,
            instances: self.instance_groups.iter().map(|g| g.count).sum(),
        };
        common.validate()?;
        if self.instance_groups.iter().any(|g| g.count == 0) {
            return Err(common.invalid("every instance group needs a count of at least 1"));
        }
        for (what, tensors) in [("input", &self.inputs), ("output", &self.outputs)] {
            if tensors.is_empty() {
                return Err(common.invalid(format!("an encoder needs at least one {what}")));
            }
            if let Some(bad) = tensors.iter().find(|t| t.name.is_empty()) {
                return Err(common.invalid(format!("an {what} has no name ({bad:?})")));
            }
        }
        if self.trt_accelerator && self.runtime != Runtime::OnnxRuntime {
            return Err(common.invalid(format!(
                "the TensorRT accelerator is an option of the onnxruntime runtime, not {}",
                self.runtime
            )));
        }
        if self.runtime.needs_gpu()
            && self
                .instance_groups
                .iter()
                .any(|g| g.kind == InstanceKind::Cpu)
        {
            return Err(
                common.invalid("TensorRT plans run on the GPU only; use KIND_GPU instances")
            );
        }
        match (self.tower, self.vocab_size) {
            (Tower::Image, Some(_)) => {
                return Err(common.invalid("vocab_size belongs to a text encoder"))
            }
            (Tower::Text, Some(0)) => return Err(common.invalid("vocab_size must be at least 1")),
            _ => {}
        }

        let mut parameters = Vec::new();
        if self.runtime == Runtime::Ort {
            parameters.push((param::KIND, kind::ONNX_ENCODER.to_owned()));
            if let Some(library) = &self.ort_library {
                parameters.push((param::ORT_LIBRARY, library.clone()));
            }
            if let Some(threads) = self.intra_op_threads {
                parameters.push((param::INTRA_OP_THREADS, threads.to_string()));
            }
            if let Some(threads) = self.inter_op_threads {
                parameters.push((param::INTER_OP_THREADS, threads.to_string()));
            }
            if let Some(vocab_size) = self.vocab_size {
                parameters.push((param::VOCAB_SIZE, vocab_size.to_string()));
            }
        }
        let facts = self.facts.parameters();
        let mut extra: Vec<(String, String)> = facts;
        extra.extend(self.extra_parameters.iter().cloned());
        let mut context = common.context(&parameters, &extra)?;
        match self.runtime {
            Runtime::Ort => {}
            Runtime::OnnxRuntime => {
                context.remove("backend");
                context.insert("platform", triton::PLATFORM_ONNXRUNTIME);
            }
            Runtime::TensorRt => {
                context.remove("backend");
                context.insert("platform", triton::PLATFORM_TENSORRT);
            }
        }
        context.insert("tower", self.tower.as_str());
        context.insert(
            "runtime_note",
            match self.runtime {
                Runtime::Ort => "ONNX Runtime inside the clip backend (model.onnx)",
                Runtime::OnnxRuntime => "Triton's ONNX Runtime backend (model.onnx)",
                Runtime::TensorRt => {
                    "Triton's TensorRT backend (model.plan, built from model.onnx by trtexec)"
                }
            },
        );
        context.insert(
            "input_note",
            match (self.tower, self.inputs.first().map(|t| t.data_type)) {
                (Tower::Text, _) => "token ids, one row per sentence",
                (Tower::Image, Some(DataType::Uint8)) => {
                    "RGB pixels, HWC, resized and center-cropped (normalised in the graph)"
                }
                (Tower::Image, _) => "normalised RGB pixels, CHW",
            },
        );
        context.insert("embedding_dim", &self.facts.embedding_dim);
        let inputs: Vec<_> = self.inputs.iter().map(tensor_context).collect();
        let outputs: Vec<_> = self.outputs.iter().map(tensor_context).collect();
        context.insert("inputs", &inputs);
        context.insert("outputs", &outputs);
        let groups: Vec<_> = self
            .instance_groups
            .iter()
            .map(InstanceGroup::context)
            .collect();
        context.insert("instance_groups", &groups);
        if self.warmup {
            let (sample, _) = warmup::tensor_sample(&self.inputs, self.batching.max_batch_size);
            context.insert("warmup", &[sample]);
        }
        context.insert("response_cache", &self.response_cache);
        if self.trt_accelerator {
            let precision = if self.half_precision { "FP16" } else { "FP32" };
            context.insert(
                "accelerator",
                &Accelerator {
                    name: triton::ACCELERATOR_TENSORRT,
                    parameters: vec![
                        HashMap::from([
                            ("key", triton::ACCELERATOR_PRECISION_MODE.to_owned()),
                            ("value", precision.to_owned()),
                        ]),
                        HashMap::from([
                            ("key", triton::ACCELERATOR_MAX_WORKSPACE.to_owned()),
                            ("value", TRT_ACCELERATOR_WORKSPACE_BYTES.to_string()),
                        ]),
                    ],
                },
            );
        }
        render(ENCODER_TEMPLATE_NAME, &context)
    }

    /// The model folder with `onnx` as model.onnx (TensorRT plans are built
    /// from it beside it, see [`crate::tensorrt`]).
    pub fn model_dir(&self, onnx: FileSource) -> Result<ModelDir, RenderError> {
        Ok(ModelDir {
            name: self.name.clone(),
            config: self.render()?,
            files: vec![VersionFile::new(file::ONNX_MODEL, onnx)],
            warmup: if self.warmup {
                warmup::tensor_sample(&self.inputs, self.batching.max_batch_size).1
            } else {
                Vec::new()
            },
        })
    }
}

/// One step of an ensemble: which model, and how its tensors map onto the
/// ensemble's (model tensor name -> ensemble tensor name).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnsembleStep {
    pub model_name: String,
    pub input_map: Vec<(String, String)>,
    pub output_map: Vec<(String, String)>,
}

/// `platform: "ensemble"`: preprocessing then encoder, in one request.
#[derive(Clone, Debug, PartialEq)]
pub struct EnsembleModel {
    pub name: String,
    pub tower: Tower,
    pub max_batch_size: u32,
    pub input: TensorSpec,
    pub output: TensorSpec,
    pub steps: Vec<EnsembleStep>,
    pub facts: Facts,
    /// `response_cache { enable: true }`: a request identical to an earlier
    /// one is answered from Triton's cache without running any step.
    pub response_cache: bool,
    /// Written after the facts (the conformance probes, for one).
    pub extra_parameters: Vec<(String, String)>,
}

#[derive(Serialize)]
struct StepContext<'a> {
    model_name: &'a str,
    input_map: Vec<HashMap<&'static str, &'a str>>,
    output_map: Vec<HashMap<&'static str, &'a str>>,
}

impl EnsembleModel {
    /// The model's config.pbtxt.
    pub fn render(&self) -> Result<String, RenderError> {
        let batching = Batching {
            max_batch_size: self.max_batch_size,
            dynamic: None,
        };
        let common = Common {
            name: &self.name,
            batching: &batching,
            instances: 1,
        };
        common.validate()?;
        if self.steps.is_empty() {
            return Err(common.invalid("an ensemble needs at least one step"));
        }
        for step in &self.steps {
            check_name(&step.model_name)?;
        }
        let mut parameters = self.facts.parameters();
        parameters.extend(self.extra_parameters.iter().cloned());
        let mut context = common.context(&[], &parameters)?;
        context.remove("backend");
        context.insert("platform", triton::PLATFORM_ENSEMBLE);
        context.insert("tower", self.tower.as_str());
        context.insert("input_name", &self.input.name);
        context.insert("output_name", &self.output.name);
        context.insert("input", &tensor_context(&self.input));
        context.insert("output", &tensor_context(&self.output));
        let names: Vec<&str> = self.steps.iter().map(|s| s.model_name.as_str()).collect();
        context.insert("step_names", &names);
        fn map(pairs: &[(String, String)]) -> Vec<HashMap<&'static str, &str>> {
            pairs
                .iter()
                .map(|(k, v)| HashMap::from([("key", k.as_str()), ("value", v.as_str())]))
                .collect()
        }
        let steps: Vec<StepContext<'_>> = self
            .steps
            .iter()
            .map(|s| StepContext {
                model_name: &s.model_name,
                input_map: map(&s.input_map),
                output_map: map(&s.output_map),
            })
            .collect();
        context.insert("steps", &steps);
        context.insert("response_cache", &self.response_cache);
        render(ENSEMBLE_TEMPLATE_NAME, &context)
    }

    /// The model folder: the config and an empty version folder.
    pub fn model_dir(&self) -> Result<ModelDir, RenderError> {
        Ok(ModelDir {
            name: self.name.clone(),
            config: self.render()?,
            files: Vec::new(),
            warmup: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtimes_parse_back() {
        for runtime in Runtime::ALL {
            assert_eq!(runtime.as_str().parse::<Runtime>().unwrap(), runtime);
        }
        assert!("onnx"
            .parse::<Runtime>()
            .unwrap_err()
            .contains("onnxruntime"));
    }
}
