//! Writes Triton model repositories for CLIP.
//!
//! Every model type ([`TextPreprocessModel`], [`ImagePreprocessModel`],
//! [`EncoderModel`], [`EnsembleModel`]) renders its `config.pbtxt` from the
//! tera templates in `templates/` at the workspace root and returns a
//! [`ModelDir`], which `repo-gen` and the tests write the same way.
//!
//! Every name, tensor and parameter key comes from [`clip_contract`]; the
//! templates receive them as context variables.
//!
//! [`registry`] names the CLIP checkpoints repo-gen knows and their
//! architectures; [`download`] gets their files from the Hugging Face hub
//! (through its cache) or checks a local folder of them; [`generate()`]
//! does the whole job of the `repo-gen` command.

pub mod deploy;
pub mod download;
pub mod encoder;
mod error;
mod generate;
mod lookup;
pub mod model_dir;
pub mod monitoring;
mod onnx_dir;
pub mod onnx_io;
mod options;
pub mod placement;
mod preprocess;
mod probes;
pub mod registry;
mod render;
mod repository;
mod sources;
mod staging;
pub mod tensorrt;
pub mod warmup;

/// Triton's data types and tensors, as the backend and the client know them.
pub use clip_contract::{DataType, TensorSpec};
/// What [`FileSource::Onnx`] holds.
pub use clip_export::OnnxModel;
pub use encoder::{EncoderModel, EnsembleModel, Facts, Runtime, Tower};
pub use error::GenerateError;
pub use generate::{generate, Generated};
pub use model_dir::{FileSource, ModelDir, VersionFile, VERSION};
pub use options::{auto_preprocess_instances, Options, PreprocessInstances, Source};
pub use placement::{GpuChoice, InstanceGroup, InstanceKind};
pub use preprocess::{ImagePreprocessModel, TextPreprocessModel, TOKENIZER_CONFIG_FILE};
pub use render::{check_name, pbtxt_string, Batching, DynamicBatching, RenderError};
pub use warmup::{WarmupFile, WARMUP_FOLDER};
