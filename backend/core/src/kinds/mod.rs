//! The model kinds and the factory that builds the one a config asks for.
//! The preprocessing kinds keep no per-instance state, so their instances
//! share the model's copy; an encoder instance owns its own ONNX Runtime
//! session.

mod image;
pub mod onnx;
mod text;

use std::path::Path;
use std::sync::Arc;

use clip_ort::LogSink;

use crate::batch::{BatchOutput, Input, RequestError};
use crate::config::KindSpec;
use crate::kind::{Device, Kind, Runner};

pub use image::ImagePreprocess;
pub use onnx::OnnxEncoder;
pub use text::TextPreprocess;

/// Builds the kind a model config asks for; `version_dir` holds its files.
/// `ort_log` receives ONNX Runtime's own log when an encoder loads it first.
pub fn load(
    spec: KindSpec,
    version_dir: &Path,
    ort_log: Option<LogSink>,
) -> Result<Arc<dyn Kind>, String> {
    Ok(match spec {
        KindSpec::TextPreprocess(spec) => Arc::new(TextPreprocess::load(spec, version_dir)?),
        KindSpec::ImagePreprocess(spec) => Arc::new(ImagePreprocess::new(spec)?),
        KindSpec::OnnxEncoder(spec) => Arc::new(OnnxEncoder::load(spec, version_dir, ort_log)?),
    })
}

/// A preprocessing step: stateless per batch, so every instance shares it.
trait Preprocess: Send + Sync {
    fn execute(&self, batch: &[Result<Input<'_>, RequestError>]) -> BatchOutput;
}

/// The runner of a preprocessing model's instances: the model's one copy.
/// Preprocessing always runs on the CPU, whatever the instance group says.
struct Shared<P: ?Sized>(Arc<P>);

impl<P: Preprocess + ?Sized> Runner for Shared<P> {
    fn device(&self) -> Device {
        Device::Cpu
    }

    fn execute(&mut self, batch: &[Result<Input<'_>, RequestError>]) -> BatchOutput {
        self.0.execute(batch)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::borrow::Cow;
    use std::path::PathBuf;

    use super::*;
    use crate::batch::{serialize_bytes, DataType};
    use crate::kind::Instance;

    pub(crate) fn fixtures() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
    }

    pub(crate) fn bytes_request(elements: &[&[u8]]) -> Result<Input<'static>, RequestError> {
        Ok(Input {
            datatype: DataType::Bytes,
            shape: vec![elements.len() as i64, 1],
            data: Cow::Owned(serialize_bytes(elements)),
        })
    }

    pub(crate) fn cpu_instance() -> Instance {
        Instance {
            name: "test_0".into(),
            device: Device::Cpu,
        }
    }
}
