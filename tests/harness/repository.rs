//! Throw-away model repositories for the tests, written by repo-gen. Their
//! models have no warmup samples, so Triton's statistics count only the
//! tests' own requests (tests/warmup.rs serves repo-gen's default, with).

use std::path::Path;

use clip_contract::{defaults, tensor};
use repo_gen::{
    Batching, DynamicBatching, EncoderModel, Facts, FileSource, ImagePreprocessModel,
    InstanceGroup, InstanceKind, OnnxModel, Runtime, TensorSpec, TextPreprocessModel, Tower,
};

/// How the test wants a model served.
#[derive(Clone, Debug)]
pub struct Serving {
    pub max_batch_size: u32,
    /// `Some(us)` turns on dynamic batching with this queue delay.
    pub queue_delay_us: Option<u64>,
    pub instances: u32,
}

impl Default for Serving {
    fn default() -> Self {
        Serving {
            max_batch_size: 16,
            queue_delay_us: Some(2_000),
            instances: 1,
        }
    }
}

impl Serving {
    fn batching(&self) -> Batching {
        Batching {
            max_batch_size: self.max_batch_size,
            dynamic: self.queue_delay_us.map(|delay| DynamicBatching {
                preferred_batch_sizes: Vec::new(),
                max_queue_delay_us: Some(delay),
            }),
        }
    }
}

/// Extra parameters as repo-gen takes them: they replace the generated
/// values of the same key, so tests can write deliberately bad configs.
fn extra(parameters: &[(&str, &str)]) -> Vec<(String, String)> {
    parameters
        .iter()
        .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
        .collect()
}

pub struct Repository {
    dir: tempfile::TempDir,
}

impl Default for Repository {
    fn default() -> Self {
        Repository::new()
    }
}

impl Repository {
    pub fn new() -> Repository {
        Repository {
            dir: tempfile::tempdir().expect("repository folder"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A `text_preprocess` model with the tokenizer files of `tokenizer_dir`
    /// (tokenizer.json, and tokenizer_config.json where present) and extra parameters.
    pub fn add_text(
        &self,
        name: &str,
        serving: &Serving,
        tokenizer_dir: &Path,
        parameters: &[(&str, &str)],
    ) {
        let model = TextPreprocessModel {
            instances: serving.instances,
            warmup: false,
            extra_parameters: extra(parameters),
            ..TextPreprocessModel::new(name, serving.batching())
        };
        model
            .write_into(self.path(), Some(tokenizer_dir))
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// An `image_preprocess` model; `half` picks TYPE_FP16 pixels.
    pub fn add_image(
        &self,
        name: &str,
        serving: &Serving,
        half: bool,
        parameters: &[(&str, &str)],
    ) {
        let model = ImagePreprocessModel {
            instances: serving.instances,
            half_precision: half,
            warmup: false,
            extra_parameters: extra(parameters),
            ..ImagePreprocessModel::new(name, serving.batching())
        };
        model
            .write_into(self.path())
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// An `onnx_encoder` model holding `onnx`, with the config repo-gen's
    /// encoder template writes for these tensors (dims after the batch axis).
    pub fn add_encoder(
        &self,
        name: &str,
        serving: &Serving,
        onnx: &[u8],
        input: &TensorSpec,
        output: &TensorSpec,
        parameters: &[(&str, &str)],
    ) {
        let tower = if input.name == tensor::INPUT_IDS {
            Tower::Text
        } else {
            Tower::Image
        };
        let model = EncoderModel {
            name: name.to_owned(),
            tower,
            runtime: Runtime::Ort,
            batching: serving.batching(),
            instance_groups: vec![InstanceGroup {
                count: serving.instances,
                kind: InstanceKind::Cpu,
                gpus: Vec::new(),
            }],
            inputs: vec![input.clone()],
            outputs: vec![output.clone()],
            facts: Facts {
                model_name: name.to_owned(),
                embedding_dim: output.dims.first().copied().unwrap_or(0) as usize,
                image_size: defaults::IMAGE_SIZE as usize,
                context_length: defaults::CONTEXT_LENGTH,
                logit_scale: None,
            },
            half_precision: false,
            trt_accelerator: false,
            ort_library: None,
            intra_op_threads: None,
            inter_op_threads: None,
            vocab_size: None,
            warmup: false,
            response_cache: false,
            extra_parameters: extra(parameters),
        };
        let onnx = FileSource::Onnx(OnnxModel {
            model: onnx.to_vec(),
            external_data: None,
        });
        model
            .model_dir(onnx)
            .and_then(|dir| dir.write_into(self.path()))
            .unwrap_or_else(|e| panic!("{e}"));
    }
}
