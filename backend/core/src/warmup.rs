//! The model's `model_warmup` samples that read a BYTES data file for the
//! kind's input, checked by each instance's runner before the instance is
//! ready. A sample the backend refuses then fails the instance's
//! initialization with its reason, and Triton's own warmup of that sample
//! never fails: in Triton 2.51 a failed warmup tears the instance down while
//! its backend thread may still be putting the instance back in its list
//! (`TritonBackendThread::StopBackendThread` reads `model_instances_.back()`
//! unlocked), and that race crashed the whole server about one load in
//! seven. A failed instance initialization has no backend thread yet.
//!
//! Each sample runs once, at batch size 1: its elements are the same at every
//! batch position, so one copy is refused exactly when the batch would be.
//! Zero and random data are not checked: zeros are valid token ids and
//! pixels, and random data is not known before Triton makes it.

use std::borrow::Cow;
use std::path::Path;

use clip_contract::DataType;
use serde::Deserialize;

use crate::batch::Input;
use crate::config::Dim;
use crate::kind::Runner;

/// The folder beside a model's version folders that Triton reads warmup files from.
const WARMUP_FOLDER: &str = "warmup";

/// One sample to check: its name, and the shape and serialized elements of
/// the request Triton would build from its file.
#[derive(Debug)]
struct Sample {
    name: String,
    shape: Vec<i64>,
    data: Vec<u8>,
}

/// The samples of one model that carry a BYTES file for its input.
#[derive(Debug, Default)]
pub struct WarmupCheck {
    samples: Vec<Sample>,
}

#[derive(Deserialize)]
struct RawConfig {
    #[serde(default)]
    model_warmup: Vec<RawSample>,
}

#[derive(Deserialize)]
struct RawSample {
    name: String,
    #[serde(default)]
    inputs: std::collections::HashMap<String, RawInput>,
}

#[derive(Deserialize)]
struct RawInput {
    data_type: String,
    #[serde(default)]
    dims: Vec<Dim>,
    #[serde(default)]
    input_data_file: String,
}

impl WarmupCheck {
    /// The samples of the model config `config_json` (Triton's JSON form)
    /// whose `input` is a BYTES tensor read from a file of `model_dir/warmup/`.
    /// A file that cannot be read is an error, named with its sample.
    pub fn from_config(config_json: &str, input: &str, model_dir: &Path) -> Result<Self, String> {
        let raw: RawConfig = serde_json::from_str(config_json)
            .map_err(|e| format!("model config is not valid JSON: {e}"))?;
        let mut samples = Vec::new();
        for sample in raw.model_warmup {
            let Some(tensor) = sample.inputs.get(input) else {
                continue;
            };
            if tensor.data_type != DataType::Bytes.config_name()
                || tensor.input_data_file.is_empty()
            {
                continue;
            }
            let dims = tensor
                .dims
                .iter()
                .map(Dim::value)
                .collect::<Result<Vec<i64>, _>>()
                .map_err(|dim| format!("warmup sample '{}' has dim '{dim}'", sample.name))?;
            let path = model_dir.join(WARMUP_FOLDER).join(&tensor.input_data_file);
            let data = std::fs::read(&path).map_err(|e| {
                format!(
                    "warmup sample '{}' cannot read {}: {e}",
                    sample.name,
                    path.display()
                )
            })?;
            let mut shape = vec![1];
            shape.extend(dims);
            samples.push(Sample {
                name: sample.name,
                shape,
                data,
            });
        }
        Ok(WarmupCheck { samples })
    }

    /// Runs every sample through `runner` as a batch of one request; the
    /// first refused sample is the error, worded like Triton's own.
    pub fn run(&self, runner: &mut dyn Runner) -> Result<(), String> {
        for sample in &self.samples {
            let input = Input {
                datatype: DataType::Bytes,
                shape: sample.shape.clone(),
                data: Cow::Borrowed(&sample.data),
            };
            let output = runner.execute(&[Ok(input.into())]);
            if let Err(error) = output.response(0) {
                return Err(format!(
                    "failed to run warmup sample '{}': {error}",
                    sample.name
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::batch::serialize_bytes;
    use crate::kind::cpu_instance;
    use crate::kinds::text::tests::text_kind;

    fn config(samples: serde_json::Value) -> String {
        json!({"name": "m", "model_warmup": samples}).to_string()
    }

    fn sample(name: &str, data_type: &str, file: &str) -> serde_json::Value {
        json!({"name": name, "batch_size": 8, "inputs": {"TEXT": {
            "data_type": data_type, "dims": ["1"], "zero_data": false,
            "random_data": false, "input_data_file": file
        }}})
    }

    fn model_dir(files: &[(&str, &[u8])]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(WARMUP_FOLDER)).unwrap();
        for (name, bytes) in files {
            std::fs::write(dir.path().join(WARMUP_FOLDER).join(name), bytes).unwrap();
        }
        dir
    }

    fn text_runner() -> Box<dyn Runner> {
        text_kind(None).runner(&cpu_instance()).unwrap()
    }

    #[test]
    fn a_good_sentence_passes_and_a_bad_one_fails_with_its_sample_and_element() {
        let good = serialize_bytes(&[b"a photo of a cat"]);
        let bad = serialize_bytes(&[b"caf\xc3"]);
        let dir = model_dir(&[("good", &good), ("bad", &bad)]);
        let mut runner = text_runner();

        let passing = config(json!([sample("ok", "TYPE_STRING", "good")]));
        let check = WarmupCheck::from_config(&passing, "TEXT", dir.path()).unwrap();
        assert_eq!(check.samples.len(), 1);
        check.run(runner.as_mut()).unwrap();

        let failing = config(json!([
            sample("ok", "TYPE_STRING", "good"),
            sample("broken", "TYPE_STRING", "bad")
        ]));
        let check = WarmupCheck::from_config(&failing, "TEXT", dir.path()).unwrap();
        let error = check.run(runner.as_mut()).unwrap_err();
        assert!(
            error.starts_with("failed to run warmup sample 'broken': ")
                && error.contains("element 0")
                && error.contains("UTF-8"),
            "{error}"
        );
    }

    #[test]
    fn only_bytes_files_for_the_kinds_input_are_checked() {
        let dir = model_dir(&[]);
        let others = config(json!([
            {"name": "zeros", "inputs": {"TEXT": {"data_type": "TYPE_STRING", "dims": ["1"], "zero_data": true}}},
            sample("ids", "TYPE_INT64", "ids"),
            {"name": "other input", "inputs": {"OTHER": {"data_type": "TYPE_STRING", "dims": ["1"], "input_data_file": "x"}}}
        ]));
        assert!(WarmupCheck::from_config(&others, "TEXT", dir.path())
            .unwrap()
            .samples
            .is_empty());
        assert!(
            WarmupCheck::from_config(&config(json!([])), "TEXT", dir.path())
                .unwrap()
                .samples
                .is_empty()
        );
        assert!(
            WarmupCheck::from_config(r#"{"name": "m"}"#, "TEXT", dir.path())
                .unwrap()
                .samples
                .is_empty()
        );
    }

    #[test]
    fn a_missing_file_is_named_with_its_sample() {
        let dir = model_dir(&[]);
        let missing = config(json!([sample("lost", "TYPE_STRING", "nowhere")]));
        let error = WarmupCheck::from_config(&missing, "TEXT", dir.path()).unwrap_err();
        assert!(
            error.starts_with("warmup sample 'lost' cannot read ") && error.contains("nowhere"),
            "{error}"
        );
    }
}
