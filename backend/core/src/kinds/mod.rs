//! The model kinds and the factory that builds the one a config asks for.
//! The preprocessing kinds keep no per-instance state, so their instances
//! share the model's copy; an encoder instance owns its own ONNX Runtime
//! session.

mod image;
pub mod onnx;
mod shared;
pub(crate) mod text;

use std::path::Path;
use std::sync::Arc;

use clip_ort::LogSink;

use crate::config::KindSpec;
use crate::kind::Kind;
use crate::metrics::Metrics;

pub use image::ImagePreprocess;
pub use onnx::OnnxEncoder;
pub use text::TextPreprocess;

/// Builds the kind a model config asks for; `version_dir` holds its files.
/// `ort_log` receives ONNX Runtime's own log when an encoder loads it first;
/// `metrics` receives what the model counts (see [`crate::metrics::counters`]).
pub fn load(
    spec: KindSpec,
    version_dir: &Path,
    ort_log: Option<LogSink>,
    metrics: Metrics,
) -> Result<Arc<dyn Kind>, String> {
    Ok(match spec {
        KindSpec::TextPreprocess(spec) => {
            Arc::new(TextPreprocess::load(spec, version_dir, metrics)?)
        }
        KindSpec::ImagePreprocess(spec) => Arc::new(ImagePreprocess::new(spec, metrics)?),
        KindSpec::OnnxEncoder(spec) => {
            Arc::new(OnnxEncoder::load(spec, version_dir, ort_log, metrics)?)
        }
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use clip_contract::tensor;
    use clip_test_support::fixture;

    use super::*;
    use crate::metrics::tests::tally;
    use image::tests::image_spec;
    use text::tests::text_spec;

    #[test]
    fn the_factory_builds_the_kind_the_config_names() {
        let text = KindSpec::TextPreprocess(text_spec(None));
        let (metrics, _) = tally(&text);
        assert_eq!(
            load(text, &fixture("text"), None, metrics)
                .unwrap()
                .input_names(),
            [tensor::TEXT]
        );
        let image = KindSpec::ImagePreprocess(image_spec(false));
        let (metrics, _) = tally(&image);
        let image = load(image, Path::new("/nonexistent"), None, metrics).unwrap();
        assert_eq!(image.input_names(), [tensor::IMAGE]);
    }
}
