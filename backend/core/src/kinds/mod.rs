//! The model kinds and the factory that builds the one a config asks for.
//! The preprocessing kinds keep no per-instance state, so their instances
//! share the model's copy; an encoder instance owns its own ONNX Runtime
//! session.

mod image;
pub mod onnx;
mod shared;
mod text;

use std::path::Path;
use std::sync::Arc;

use clip_ort::LogSink;

use crate::config::KindSpec;
use crate::kind::Kind;

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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use clip_contract::tensor;
    use clip_test_support::fixture;

    use super::*;
    use image::tests::image_spec;
    use text::tests::text_spec;

    #[test]
    fn the_factory_builds_the_kind_the_config_names() {
        let text = KindSpec::TextPreprocess(text_spec(None));
        assert_eq!(
            load(text, &fixture("text"), None).unwrap().input_name(),
            tensor::TEXT
        );
        let image = KindSpec::ImagePreprocess(image_spec(false));
        let image = load(image, Path::new("/nonexistent"), None).unwrap();
        assert_eq!(image.input_name(), tensor::IMAGE);
    }
}
