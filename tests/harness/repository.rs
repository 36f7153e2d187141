//! Throw-away model repositories for the tests, with config.pbtxt files
//! spelled from the shared contract.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clip_contract::{defaults, kind, param, tensor, BACKEND_NAME};

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

    /// A model folder with `config` and version 1 holding `files` (name in the version folder, source).
    pub fn add(&self, name: &str, config: &str, files: &[(&str, &Path)]) {
        let version = self.path().join(name).join("1");
        std::fs::create_dir_all(&version).expect("model folder");
        std::fs::write(self.path().join(name).join("config.pbtxt"), config).expect("config.pbtxt");
        for (file, source) in files {
            std::fs::copy(source, version.join(file))
                .unwrap_or_else(|e| panic!("copy {}: {e}", source.display()));
        }
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
        let mut all = vec![(param::KIND, kind::TEXT_PREPROCESS)];
        all.extend_from_slice(parameters);
        let config = render(
            name,
            serving,
            (tensor::TEXT, "TYPE_STRING", "1"),
            (
                tensor::INPUT_IDS,
                "TYPE_INT64",
                &defaults::CONTEXT_LENGTH.to_string(),
            ),
            &all,
        );
        let files: Vec<(&str, PathBuf)> = [defaults::TOKENIZER_FILE, "tokenizer_config.json"]
            .into_iter()
            .map(|file| (file, tokenizer_dir.join(file)))
            .filter(|(_, path)| path.is_file())
            .collect();
        let files: Vec<(&str, &Path)> = files
            .iter()
            .map(|(file, path)| (*file, path.as_path()))
            .collect();
        self.add(name, &config, &files);
    }

    /// An `image_preprocess` model; `half` picks TYPE_FP16 pixels.
    pub fn add_image(
        &self,
        name: &str,
        serving: &Serving,
        half: bool,
        parameters: &[(&str, &str)],
    ) {
        let mut all = vec![(param::KIND, kind::IMAGE_PREPROCESS)];
        all.extend_from_slice(parameters);
        let size = defaults::IMAGE_SIZE;
        let dims = format!("3, {size}, {size}");
        let dtype = if half { "TYPE_FP16" } else { "TYPE_FP32" };
        let config = render(
            name,
            serving,
            (tensor::IMAGE, "TYPE_STRING", "1"),
            (tensor::PIXEL_VALUES, dtype, &dims),
            &all,
        );
        self.add(name, &config, &[]);
    }
}

/// A `clip` backend config.pbtxt with one input and one output.
pub fn render(
    name: &str,
    serving: &Serving,
    input: (&str, &str, &str),
    output: (&str, &str, &str),
    parameters: &[(&str, &str)],
) -> String {
    let mut config = format!(
        "name: \"{name}\"\nbackend: \"{BACKEND_NAME}\"\nmax_batch_size: {}\n",
        serving.max_batch_size
    );
    if let Some(delay) = serving.queue_delay_us {
        writeln!(
            config,
            "dynamic_batching {{ max_queue_delay_microseconds: {delay} }}"
        )
        .unwrap();
    }
    for (section, (tensor, dtype, dims)) in [("input", input), ("output", output)] {
        writeln!(
            config,
            "{section} [ {{ name: \"{tensor}\" data_type: {dtype} dims: [ {dims} ] }} ]"
        )
        .unwrap();
    }
    writeln!(
        config,
        "instance_group [ {{ kind: KIND_CPU count: {} }} ]",
        serving.instances
    )
    .unwrap();
    for (key, value) in parameters {
        writeln!(
            config,
            "parameters {{ key: \"{key}\" value: {{ string_value: \"{value}\" }} }}"
        )
        .unwrap();
    }
    config
}
