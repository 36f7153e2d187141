//! The `onnx_encoder` kind: an ONNX encoder (`INPUT_IDS`, with or without
//! `ATTENTION_MASK`, or `PIXEL_VALUES` or `PIXELS`, to `EMBEDDING`) run
//! through ONNX Runtime, loaded at run time with `ort`.
//!
//! ONNX Runtime is loaded once per process (clip-ort); every model shares
//! that one library and environment. Each model instance owns its own
//! session ([`runner`]), so instances run batches in parallel without locks.

mod runner;
mod signature;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clip_contract::param;
use clip_ort::{LogSink, OrtError, Runtime, ORT_DYLIB_ENV};
use ort::ep::ExecutionProvider;
use ort::session::Session;

use crate::config::EncoderSpec;
use crate::kind::{Device, Instance, Kind, Runner};
use crate::metrics::Metrics;
use runner::{EncoderRunner, Io};
use signature::{check_signature, Declared};

/// Where the ONNX Runtime library comes from: the `ort_library` parameter
/// (relative paths are inside the version folder), else `ORT_DYLIB_PATH`.
pub fn library_path(
    parameter: Option<&Path>,
    env: Option<OsString>,
    version_dir: &Path,
) -> Result<PathBuf, String> {
    let parameter = parameter.map(|p| version_dir.join(p));
    let origin = format!("parameter '{}'", param::ORT_LIBRARY);
    clip_ort::library_path(parameter.as_deref(), &origin, env).map_err(|e| e.to_string())
}

/// The process's ONNX Runtime, loading `library` the first time.
fn runtime(library: &Path, log: Option<LogSink>) -> Result<&'static Runtime, String> {
    clip_ort::load(library, log).map_err(|e| match e {
        OrtError::AlreadyLoaded(message) => format!(
            "{message}: give every onnx_encoder model the same '{}'",
            param::ORT_LIBRARY
        ),
        e => e.to_string(),
    })
}

/// The execution provider an instance's session gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Provider {
    Cpu,
    Cuda { device_id: i32 },
}

/// KIND_CPU runs on the CPU; KIND_GPU needs a library with the CUDA
/// execution provider, never a silent fall-back to the CPU.
pub fn provider_for(
    device: Device,
    cuda_available: bool,
    library: &Path,
) -> Result<Provider, String> {
    match device {
        Device::Cpu => Ok(Provider::Cpu),
        Device::Gpu(device_id) if cuda_available => Ok(Provider::Cuda { device_id }),
        Device::Gpu(device_id) => Err(format!(
            "the instance is KIND_GPU (device {device_id}) but the ONNX Runtime at {} has no CUDA execution provider; use KIND_CPU or point '{}' at a GPU build of onnxruntime 1.31",
            library.display(),
            param::ORT_LIBRARY
        )),
    }
}

/// Threads per session: the parameters, else the cores split across the
/// model's instances for intra-op and 1 for inter-op.
pub fn threads(spec: &EncoderSpec, cores: usize) -> (usize, usize) {
    let intra = spec
        .intra_op_threads
        .unwrap_or_else(|| (cores / spec.instance_count.max(1) as usize).max(1));
    (intra, spec.inter_op_threads.unwrap_or(1))
}

/// The `onnx_encoder` kind, once per model: what every instance's session needs.
pub struct OnnxEncoder {
    runtime: &'static Runtime,
    model_path: PathBuf,
    io: Arc<Io>,
    intra_op_threads: usize,
    inter_op_threads: usize,
    allow_spinning: bool,
    metrics: Metrics,
}

impl OnnxEncoder {
    pub fn load(
        spec: EncoderSpec,
        version_dir: &Path,
        ort_log: Option<LogSink>,
        metrics: Metrics,
    ) -> Result<Self, String> {
        let model_path = version_dir.join(&spec.model_file);
        if !model_path.is_file() {
            return Err(format!("no ONNX model at {}", model_path.display()));
        }
        let library = library_path(
            spec.ort_library.as_deref(),
            std::env::var_os(ORT_DYLIB_ENV),
            version_dir,
        )?;
        let runtime = runtime(&library, ort_log)?;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let (intra_op_threads, inter_op_threads) = threads(&spec, cores);
        Ok(OnnxEncoder {
            runtime,
            model_path,
            io: Arc::new(Io {
                inputs: spec.inputs,
                output: spec.output,
                vocab_size: spec.vocab_size,
            }),
            intra_op_threads,
            inter_op_threads,
            allow_spinning: spec.allow_spinning,
            metrics,
        })
    }

    /// One session for one instance, its signature checked against the config.
    fn session(&self, provider: Provider) -> Result<Session, String> {
        let failed = |e: &dyn std::fmt::Display| {
            format!(
                "ONNX Runtime could not load {}: {e}",
                self.model_path.display()
            )
        };
        let mut builder = Session::builder(self.runtime.env())
            .map_err(|e| failed(&e))?
            .with_intra_threads(self.intra_op_threads)
            .map_err(|e| failed(&e))?
            .with_inter_threads(self.inter_op_threads)
            .map_err(|e| failed(&e))?
            .with_intra_op_spinning(self.allow_spinning)
            .map_err(|e| failed(&e))?
            .with_inter_op_spinning(self.allow_spinning)
            .map_err(|e| failed(&e))?;
        if self.inter_op_threads > 1 {
            builder = builder
                .with_parallel_execution(true)
                .map_err(|e| failed(&e))?;
        }
        if let Provider::Cuda { device_id } = provider {
            ort::ep::CUDA::default()
                .with_device_id(device_id)
                .register(&mut builder)
                .map_err(|e| {
                    format!("could not use CUDA device {device_id} through ONNX Runtime: {e}")
                })?;
        }
        let session = builder
            .commit_from_file(&self.model_path)
            .map_err(|e| failed(&e))?;
        let declared = |outlets: &[ort::value::Outlet]| {
            outlets
                .iter()
                .map(|o| Declared::from_outlet(o.name(), o.dtype()))
                .collect::<Vec<_>>()
        };
        check_signature(
            &self.io.inputs,
            &self.io.output,
            &declared(session.inputs()),
            &declared(session.outputs()),
        )?;
        Ok(session)
    }
}

impl Kind for OnnxEncoder {
    fn input_names(&self) -> Vec<&str> {
        self.io.inputs.iter().map(|s| s.name.as_str()).collect()
    }

    fn runner(self: Arc<Self>, instance: &Instance) -> Result<Box<dyn Runner>, String> {
        let provider = provider_for(
            instance.device,
            self.runtime.has_cuda(),
            self.runtime.library(),
        )?;
        let session = self.session(provider)?;
        let device = match provider {
            Provider::Cpu => Device::Cpu,
            Provider::Cuda { device_id } => Device::Gpu(device_id),
        };
        Ok(Box::new(EncoderRunner::new(
            Arc::clone(&self.io),
            session,
            device,
            self.metrics.clone(),
        )))
    }
}

#[cfg(test)]
mod mask_tests;
#[cfg(test)]
mod tests;
