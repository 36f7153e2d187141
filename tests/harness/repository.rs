//! Throw-away model repositories for the tests, written by repo-gen.

use std::path::Path;

use repo_gen::{Batching, DynamicBatching, ImagePreprocessModel, TextPreprocessModel};

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
            extra_parameters: extra(parameters),
            ..ImagePreprocessModel::new(name, serving.batching())
        };
        model
            .write_into(self.path())
            .unwrap_or_else(|e| panic!("{e}"));
    }
}

/// One tensor of an encoder's config: name, Triton data type, dims after the batch axis.
#[derive(Clone, Debug)]
pub struct ConfigTensor {
    pub name: String,
    pub data_type: String,
    pub dims: Vec<i64>,
}

impl ConfigTensor {
    pub fn new(name: &str, data_type: &str, dims: &[i64]) -> ConfigTensor {
        ConfigTensor {
            name: name.into(),
            data_type: data_type.into(),
            dims: dims.to_vec(),
        }
    }

    fn render(&self) -> String {
        let dims: Vec<String> = self.dims.iter().map(i64::to_string).collect();
        format!(
            "{{ name: \"{}\" data_type: {} dims: [ {} ] }}",
            self.name,
            self.data_type,
            dims.join(", ")
        )
    }
}

impl Repository {
    /// An `onnx_encoder` model: `onnx` becomes `1/model.onnx`, and the
    /// config.pbtxt says what the test wants, right or deliberately wrong.
    ///
    /// The config is rendered here for now; repo-gen's encoder template
    /// will take over once it is in.
    pub fn add_encoder(
        &self,
        name: &str,
        serving: &Serving,
        onnx: &[u8],
        input: &ConfigTensor,
        output: &ConfigTensor,
        parameters: &[(&str, &str)],
    ) {
        let dir = self.path().join(name);
        std::fs::create_dir_all(dir.join("1")).expect("model folder");
        std::fs::write(dir.join("1").join(clip_contract::file::ONNX_MODEL), onnx)
            .expect("model.onnx");
        let mut config = format!(
            "name: \"{name}\"\nbackend: \"{}\"\nmax_batch_size: {}\n",
            clip_contract::BACKEND_NAME,
            serving.max_batch_size
        );
        if let Some(delay) = serving.queue_delay_us {
            config += &format!("dynamic_batching {{ max_queue_delay_microseconds: {delay} }}\n");
        }
        config += &format!(
            "input [ {} ]\noutput [ {} ]\ninstance_group [ {{ kind: KIND_CPU count: {} }} ]\n",
            input.render(),
            output.render(),
            serving.instances
        );
        let mut all = vec![(
            clip_contract::param::KIND,
            clip_contract::kind::ONNX_ENCODER,
        )];
        all.extend_from_slice(parameters);
        for (key, value) in all {
            config += &format!(
                "parameters {{ key: \"{key}\" value: {{ string_value: \"{value}\" }} }}\n"
            );
        }
        std::fs::write(dir.join("config.pbtxt"), config).expect("config.pbtxt");
    }
}
