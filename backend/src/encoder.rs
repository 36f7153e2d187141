//! The `onnx_encoder` kind: an ONNX encoder (`INPUT_IDS` or `PIXEL_VALUES`
//! to `EMBEDDING`) run through ONNX Runtime, loaded at run time with `ort`.
//!
//! ONNX Runtime is loaded once per process; every model shares that one
//! library and environment. Each model instance owns its own session, so
//! instances run batches in parallel without locks.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use half::f16;
use ort::environment::Environment;
use ort::ep::ExecutionProvider;
use ort::session::Session;
use ort::value::{DynValue, Tensor, TensorElementType, ValueType};

use crate::config::{EncoderSpec, TensorSpec};
use crate::kinds::{Device, Instance, Kind, Runner};
use crate::request::{DataType, Input, Output, OutputData, RequestError};

/// The environment variable ort reads, and the fallback for `ort_library`.
pub const ORT_DYLIB_ENV: &str = "ORT_DYLIB_PATH";
const INSTALL_HINT: &str =
    "scripts/install-onnxruntime.sh installs ONNX Runtime 1.31.1 and prints the library's path";

/// Where the ONNX Runtime library comes from: the `ort_library` parameter
/// (relative paths are inside the version folder), else `ORT_DYLIB_PATH`.
pub fn library_path(
    parameter: Option<&Path>,
    env: Option<OsString>,
    version_dir: &Path,
) -> Result<PathBuf, String> {
    let (path, origin) = match (parameter, env.filter(|v| !v.is_empty())) {
        (Some(p), _) => (
            version_dir.join(p),
            format!("parameter '{}'", clip_contract::param::ORT_LIBRARY),
        ),
        (None, Some(v)) => (PathBuf::from(v), ORT_DYLIB_ENV.to_string()),
        (None, None) => {
            return Err(format!(
                "no ONNX Runtime library: set the '{}' parameter or {ORT_DYLIB_ENV} to libonnxruntime.so ({INSTALL_HINT})",
                clip_contract::param::ORT_LIBRARY
            ))
        }
    };
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "{origin} names {}, which is not a file ({INSTALL_HINT})",
            path.display()
        ))
    }
}

/// ONNX Runtime as loaded into this process.
struct Runtime {
    library: PathBuf,
    env: Environment,
    /// Whether the library was built with the CUDA execution provider.
    cuda: bool,
}

static RUNTIME: OnceLock<Runtime> = OnceLock::new();
/// Triton loads models in parallel; one of them loads the library.
static LOADING: Mutex<()> = Mutex::new(());

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// The process's ONNX Runtime, loading `library` the first time. ort keeps
/// one library and one environment per process, so a later model asking
/// for another library is refused.
fn runtime(library: &Path) -> Result<&'static Runtime, String> {
    if RUNTIME.get().is_none() {
        let _guard = LOADING.lock().unwrap_or_else(|e| e.into_inner());
        if RUNTIME.get().is_none() {
            let env = ort::init_from(library)
                .map_err(|e| {
                    format!(
                        "could not load ONNX Runtime from {}: {e} ({INSTALL_HINT})",
                        library.display()
                    )
                })?
                .with_name("clip")
                .build()
                .map_err(|e| {
                    format!(
                        "could not start ONNX Runtime from {}: {e}",
                        library.display()
                    )
                })?;
            let cuda = ort::ep::CUDA::is_available().unwrap_or(false);
            let _ = RUNTIME.set(Runtime {
                library: library.to_path_buf(),
                env,
                cuda,
            });
        }
    }
    let runtime = RUNTIME.get().expect("set above");
    if !same_file(&runtime.library, library) {
        return Err(format!(
            "ONNX Runtime is already loaded from {} in this server; it cannot also load {} (one library per process: give every onnx_encoder model the same '{}')",
            runtime.library.display(),
            library.display(),
            clip_contract::param::ORT_LIBRARY
        ));
    }
    Ok(runtime)
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
            clip_contract::param::ORT_LIBRARY
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

/// A tensor as model.onnx declares it.
#[derive(Clone, Debug, PartialEq)]
pub struct Declared {
    pub name: String,
    /// `None` for anything that is not a tensor.
    pub element: Option<TensorElementType>,
    /// -1 for a dynamic axis.
    pub dims: Vec<i64>,
}

impl Declared {
    fn from_outlet(name: &str, dtype: &ValueType) -> Declared {
        Declared {
            name: name.to_string(),
            element: dtype.tensor_type(),
            dims: dtype.tensor_shape().map(|s| s.to_vec()).unwrap_or_default(),
        }
    }

    fn describe(&self) -> String {
        let element = match self.element {
            // ONNX's own spelling: INT64, FLOAT32, FLOAT16, ...
            Some(element) => format!("{element:?}").to_uppercase(),
            None => "not a tensor".to_string(),
        };
        let dims: Vec<String> = self
            .dims
            .iter()
            .map(|d| if *d < 0 { "?".into() } else { d.to_string() })
            .collect();
        format!("{element} [{}]", dims.join(", "))
    }
}

fn element_of(data_type: DataType) -> Option<TensorElementType> {
    match data_type {
        DataType::Int64 => Some(TensorElementType::Int64),
        DataType::Fp32 => Some(TensorElementType::Float32),
        DataType::Fp16 => Some(TensorElementType::Float16),
        DataType::Bytes | DataType::Other(_) => None,
    }
}

fn triton_type(data_type: DataType) -> String {
    match data_type {
        DataType::Bytes => "TYPE_STRING".into(),
        other => format!("TYPE_{other}"),
    }
}

fn config_describe(spec: &TensorSpec) -> String {
    let dims: Vec<String> = spec.dims.iter().map(i64::to_string).collect();
    format!(
        "{} [batch, {}]",
        triton_type(spec.data_type),
        dims.join(", ")
    )
}

/// Checks one config tensor against its ONNX declaration: same element
/// type, same rank, a dynamic first axis, equal fixed dims after it.
fn check_tensor(what: &str, spec: &TensorSpec, declared: &Declared) -> Result<(), String> {
    let mismatch = |why: &str| {
        Err(format!(
            "{what} '{}': config.pbtxt says {}, model.onnx says {} ({why})",
            spec.name,
            config_describe(spec),
            declared.describe()
        ))
    };
    if declared.element != element_of(spec.data_type) {
        return mismatch("the data types differ");
    }
    let Some((batch, rest)) = declared.dims.split_first() else {
        return mismatch("model.onnx gives no batch axis");
    };
    if *batch >= 0 {
        return mismatch("the batch axis of model.onnx must be dynamic");
    }
    if rest.len() != spec.dims.len() {
        return mismatch("the ranks differ");
    }
    if rest
        .iter()
        .zip(&spec.dims)
        .any(|(onnx, config)| *onnx >= 0 && onnx != config)
    {
        return mismatch("the dims differ");
    }
    Ok(())
}

/// The session must take exactly the config's input and produce its output.
pub fn check_signature(
    input: &TensorSpec,
    output: &TensorSpec,
    onnx_inputs: &[Declared],
    onnx_outputs: &[Declared],
) -> Result<(), String> {
    let names = |all: &[Declared]| all.iter().map(|d| d.name.clone()).collect::<Vec<_>>();
    match onnx_inputs {
        [only] if only.name == input.name => check_tensor("input", input, only)?,
        _ => {
            return Err(format!(
                "config.pbtxt has the one input '{}', model.onnx has inputs {:?}",
                input.name,
                names(onnx_inputs)
            ))
        }
    }
    let Some(declared) = onnx_outputs.iter().find(|d| d.name == output.name) else {
        return Err(format!(
            "config.pbtxt has the output '{}', model.onnx has outputs {:?}",
            output.name,
            names(onnx_outputs)
        ));
    };
    check_tensor("output", output, declared)
}

/// The `onnx_encoder` kind, once per model: what every instance's session needs.
pub struct OnnxEncoder {
    runtime: &'static Runtime,
    model_path: PathBuf,
    input: TensorSpec,
    output: TensorSpec,
    intra_op_threads: usize,
    inter_op_threads: usize,
}

impl OnnxEncoder {
    pub fn load(spec: EncoderSpec, version_dir: &Path) -> Result<Self, String> {
        let model_path = version_dir.join(&spec.model_file);
        if !model_path.is_file() {
            return Err(format!("no ONNX model at {}", model_path.display()));
        }
        let library = library_path(
            spec.ort_library.as_deref(),
            std::env::var_os(ORT_DYLIB_ENV),
            version_dir,
        )?;
        let runtime = runtime(&library)?;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let (intra_op_threads, inter_op_threads) = threads(&spec, cores);
        Ok(OnnxEncoder {
            runtime,
            model_path,
            input: spec.input,
            output: spec.output,
            intra_op_threads,
            inter_op_threads,
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
        let mut builder = Session::builder(&self.runtime.env)
            .map_err(|e| failed(&e))?
            .with_intra_threads(self.intra_op_threads)
            .map_err(|e| failed(&e))?
            .with_inter_threads(self.inter_op_threads)
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
            &self.input,
            &self.output,
            &declared(session.inputs()),
            &declared(session.outputs()),
        )?;
        Ok(session)
    }
}

impl Kind for OnnxEncoder {
    fn input_name(&self) -> &'static str {
        self.input.name
    }

    fn runner(self: Arc<Self>, instance: &Instance) -> Result<Box<dyn Runner>, String> {
        let provider = provider_for(instance.device, self.runtime.cuda, &self.runtime.library)?;
        let session = self.session(provider)?;
        Ok(Box::new(EncoderRunner {
            kind: self,
            session,
            device: match provider {
                Provider::Cpu => Device::Cpu,
                Provider::Cuda { device_id } => Device::Gpu(device_id),
            },
        }))
    }
}

/// One instance's session.
struct EncoderRunner {
    kind: Arc<OnnxEncoder>,
    session: Session,
    device: Device,
}

/// The rows of all requests of one batch, joined.
#[derive(Debug, PartialEq)]
pub enum Joined {
    Int64(Vec<i64>),
    Fp32(Vec<f32>),
    Fp16(Vec<f16>),
}

/// Checks every request against the config's input and joins the good ones
/// into one `[rows, dims...]` buffer. Returns each request's row count (or
/// its error) and the buffer.
pub fn gather(
    spec: &TensorSpec,
    batch: &[Result<Input<'_>, RequestError>],
) -> (Vec<Result<usize, RequestError>>, Joined) {
    let per_row: usize = spec.dims.iter().map(|d| *d as usize).product();
    let mut joined = match spec.data_type {
        DataType::Int64 => Joined::Int64(Vec::new()),
        DataType::Fp16 => Joined::Fp16(Vec::new()),
        _ => Joined::Fp32(Vec::new()),
    };
    let rows = batch
        .iter()
        .map(|input| {
            let input = input.as_ref().map_err(Clone::clone)?;
            let rows = check_request(spec, per_row, input)?;
            match &mut joined {
                Joined::Int64(v) => v.extend(
                    input
                        .data
                        .chunks_exact(8)
                        .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes"))),
                ),
                Joined::Fp32(v) => v.extend(
                    input
                        .data
                        .chunks_exact(4)
                        .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes"))),
                ),
                Joined::Fp16(v) => v.extend(
                    input
                        .data
                        .chunks_exact(2)
                        .map(|c| f16::from_le_bytes(c.try_into().expect("2 bytes"))),
                ),
            }
            Ok(rows)
        })
        .collect();
    (rows, joined)
}

fn check_request(
    spec: &TensorSpec,
    per_row: usize,
    input: &Input<'_>,
) -> Result<usize, RequestError> {
    if input.datatype != spec.data_type {
        return Err(RequestError::invalid(format!(
            "input '{}' must be {}, got {}",
            spec.name, spec.data_type, input.datatype
        )));
    }
    let rows = match input.shape.split_first() {
        Some((rows, rest)) if *rows >= 0 && rest == spec.dims.as_slice() => *rows as usize,
        _ => {
            let dims: Vec<String> = spec.dims.iter().map(i64::to_string).collect();
            return Err(RequestError::invalid(format!(
                "input '{}' must have shape [batch, {}], got {:?}",
                spec.name,
                dims.join(", "),
                input.shape
            )));
        }
    };
    let element = match spec.data_type {
        DataType::Int64 => 8,
        DataType::Fp16 => 2,
        _ => 4,
    };
    let expected = rows * per_row * element;
    if input.data.len() != expected {
        return Err(RequestError::invalid(format!(
            "input '{}' holds {} bytes, its shape {:?} needs {expected}",
            spec.name,
            input.data.len(),
            input.shape
        )));
    }
    Ok(rows)
}

/// The batch's `[rows, dims...]` output, as ONNX Runtime returned it.
#[derive(Debug, PartialEq)]
pub enum Embeddings {
    Fp32(Vec<f32>),
    Fp16(Vec<f16>),
}

/// Splits the batch output back into one result per request.
pub fn split(
    name: &'static str,
    dims: &[i64],
    rows: Vec<Result<usize, RequestError>>,
    embeddings: Result<Embeddings, RequestError>,
) -> Vec<Result<Output, RequestError>> {
    let per_row: usize = dims.iter().map(|d| *d as usize).product();
    let mut offset = 0;
    rows.into_iter()
        .map(|rows| {
            let rows = rows?;
            let range = offset * per_row..(offset + rows) * per_row;
            offset += rows;
            let data = match embeddings.as_ref().map_err(Clone::clone)? {
                Embeddings::Fp32(v) => OutputData::Fp32(v[range].to_vec()),
                Embeddings::Fp16(v) => OutputData::Fp16(v[range].to_vec()),
            };
            let mut shape = vec![rows as i64];
            shape.extend_from_slice(dims);
            Ok(Output { name, shape, data })
        })
        .collect()
}

impl EncoderRunner {
    /// Runs the session once on the joined rows.
    fn run(&mut self, rows: usize, joined: Joined) -> Result<Embeddings, String> {
        let kind = &*self.kind;
        let mut shape = vec![rows as i64];
        shape.extend_from_slice(&kind.input.dims);
        let value: DynValue = match joined {
            Joined::Int64(v) => Tensor::from_array((shape, v)).map(Tensor::into_dyn),
            Joined::Fp32(v) => Tensor::from_array((shape, v)).map(Tensor::into_dyn),
            Joined::Fp16(v) => Tensor::from_array((shape, v)).map(Tensor::into_dyn),
        }
        .map_err(|e| e.to_string())?;
        let outputs = self
            .session
            .run(ort::inputs![kind.input.name => value])
            .map_err(|e| e.to_string())?;
        let output = outputs
            .get(kind.output.name)
            .ok_or_else(|| format!("model.onnx returned no '{}'", kind.output.name))?;
        let mut expected = vec![rows as i64];
        expected.extend_from_slice(&kind.output.dims);
        let check = |shape: &[i64]| {
            if shape == expected.as_slice() {
                Ok(())
            } else {
                Err(format!(
                    "model.onnx returned '{}' with shape {shape:?}, expected {expected:?}",
                    kind.output.name
                ))
            }
        };
        match kind.output.data_type {
            DataType::Fp16 => {
                let (shape, data) = output
                    .try_extract_tensor::<f16>()
                    .map_err(|e| e.to_string())?;
                check(shape)?;
                Ok(Embeddings::Fp16(data.to_vec()))
            }
            _ => {
                let (shape, data) = output
                    .try_extract_tensor::<f32>()
                    .map_err(|e| e.to_string())?;
                check(shape)?;
                Ok(Embeddings::Fp32(data.to_vec()))
            }
        }
    }
}

impl Runner for EncoderRunner {
    fn device(&self) -> Device {
        self.device
    }

    /// Joins the batch, runs the session once, splits the embeddings. A bad
    /// request fails alone; an ONNX Runtime failure fails the good ones.
    fn execute(
        &mut self,
        batch: &[Result<Input<'_>, RequestError>],
    ) -> Vec<Result<Output, RequestError>> {
        let (rows, joined) = gather(&self.kind.input, batch);
        let total: usize = rows.iter().flatten().sum();
        let embeddings = if total == 0 {
            Ok(match self.kind.output.data_type {
                DataType::Fp16 => Embeddings::Fp16(Vec::new()),
                _ => Embeddings::Fp32(Vec::new()),
            })
        } else {
            self.run(total, joined).map_err(|e| {
                RequestError::internal(format!("ONNX Runtime failed on this batch: {e}"))
            })
        };
        split(
            self.kind.output.name,
            &self.kind.output.dims,
            rows,
            embeddings,
        )
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::borrow::Cow;
    use std::process::{Command, Stdio};

    use clip_contract::tensor;
    use clip_export::proto::{
        attribute_proto::AttributeType, tensor_proto::DataType as OnnxType, type_proto,
        AttributeProto, NodeProto,
    };
    use clip_export::{ClipArchitecture, ClipWeights, ExportOptions, OnnxModel};
    use prost::Message;
    use serde_json::Value;

    use super::*;
    use crate::request::ErrorKind;

    const TOLERANCE: f32 = 1e-4;

    fn root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
    }

    fn tiny() -> PathBuf {
        root().join("tests/fixtures/tiny-clip")
    }

    /// libonnxruntime through the project's installer, as clip-export's tests find it.
    pub(crate) fn ort_library() -> &'static Path {
        static LIBRARY: OnceLock<PathBuf> = OnceLock::new();
        LIBRARY.get_or_init(|| {
            let output = Command::new("bash")
                .arg(root().join("scripts/install-onnxruntime.sh"))
                .stderr(Stdio::inherit())
                .output()
                .expect("run scripts/install-onnxruntime.sh");
            assert!(output.status.success(), "install-onnxruntime.sh failed");
            let stdout = String::from_utf8(output.stdout).expect("utf-8");
            PathBuf::from(stdout.lines().last().expect("a path").trim())
        })
    }

    fn manifest() -> &'static Value {
        static MANIFEST: OnceLock<Value> = OnceLock::new();
        MANIFEST.get_or_init(|| {
            serde_json::from_str(&std::fs::read_to_string(tiny().join("manifest.json")).unwrap())
                .unwrap()
        })
    }

    fn bin(entry: &Value) -> (Vec<u8>, Vec<usize>) {
        let bytes = std::fs::read(tiny().join(entry["file"].as_str().unwrap())).unwrap();
        let shape = entry["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap() as usize)
            .collect();
        (bytes, shape)
    }

    /// The reference token ids: raw little-endian INT64 bytes, [rows, 77].
    pub(crate) fn input_ids() -> (Vec<u8>, Vec<usize>) {
        bin(&manifest()["inputs"]["input_ids"])
    }

    /// The reference pixels: raw little-endian FP16 bytes, [rows, 3, 224, 224].
    pub(crate) fn pixels_f16() -> (Vec<u8>, Vec<usize>) {
        bin(&manifest()["inputs"]["pixel_values"])
    }

    fn pixels_f32() -> Vec<u8> {
        pixels_f16()
            .0
            .chunks_exact(2)
            .flat_map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32().to_le_bytes())
            .collect()
    }

    fn reference(variant: &str, which: &str) -> Vec<f32> {
        bin(&manifest()["variants"][variant][which])
            .0
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect()
    }

    fn weights(variant: &str) -> ClipWeights {
        let config = std::fs::read_to_string(tiny().join(variant).join("config.json")).unwrap();
        let arch = ClipArchitecture::from_config_json(&config).unwrap();
        ClipWeights::load(tiny().join(variant).join("model.safetensors"), &arch).unwrap()
    }

    /// The tiny model's text or image encoder, exported and written as
    /// `<dir>/model.onnx`.
    fn exported(variant: &str, textual: bool) -> (tempfile::TempDir, OnnxModel) {
        let weights = weights(variant);
        let options = ExportOptions::default();
        let model = if textual {
            clip_export::export_textual(&weights, &options)
        } else {
            clip_export::export_visual(&weights, &options)
        }
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        model
            .write(dir.path(), clip_contract::file::ONNX_MODEL)
            .unwrap();
        (dir, model)
    }

    fn ids_spec() -> TensorSpec {
        TensorSpec {
            name: tensor::INPUT_IDS,
            data_type: DataType::Int64,
            dims: vec![77],
        }
    }

    fn pixels_spec(data_type: DataType) -> TensorSpec {
        TensorSpec {
            name: tensor::PIXEL_VALUES,
            data_type,
            dims: vec![3, 224, 224],
        }
    }

    fn embedding_spec(data_type: DataType) -> TensorSpec {
        TensorSpec {
            name: tensor::EMBEDDING,
            data_type,
            dims: vec![24],
        }
    }

    fn spec(input: TensorSpec, output: TensorSpec) -> EncoderSpec {
        EncoderSpec {
            model_file: clip_contract::file::ONNX_MODEL.into(),
            ort_library: Some(ort_library().to_path_buf()),
            intra_op_threads: Some(1),
            inter_op_threads: None,
            instance_count: 1,
            input,
            output,
        }
    }

    fn cpu() -> Instance {
        crate::kinds::tests::cpu_instance()
    }

    fn runner(spec: EncoderSpec, dir: &Path) -> Result<Box<dyn Runner>, String> {
        Arc::new(OnnxEncoder::load(spec, dir)?).runner(&cpu())
    }

    fn request(
        datatype: DataType,
        shape: Vec<i64>,
        data: &[u8],
    ) -> Result<Input<'_>, RequestError> {
        Ok(Input {
            datatype,
            shape,
            data: Cow::Borrowed(data),
        })
    }

    fn fp32(output: &Result<Output, RequestError>) -> &[f32] {
        match &output.as_ref().unwrap().data {
            OutputData::Fp32(v) => v,
            other => panic!("{other:?}"),
        }
    }

    fn max_diff(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()))
    }

    #[test]
    fn text_batches_of_several_requests_match_the_reference() {
        for variant in ["quick_gelu", "gelu"] {
            let (dir, _) = exported(variant, true);
            let mut runner =
                runner(spec(ids_spec(), embedding_spec(DataType::Fp32)), dir.path()).unwrap();
            let (ids, shape) = input_ids();
            let row = 77 * 8;
            let want = reference(variant, "text_features");
            // Requests of 1, 2, 4 rows (all 7 reference rows) in one batch, with bad ones between.
            let wrong_width = vec![0u8; 76 * 8];
            let batch = vec![
                request(DataType::Int64, vec![1, 77], &ids[..row]),
                request(DataType::Fp32, vec![1, 77], &ids[..row]),
                request(DataType::Int64, vec![2, 77], &ids[row..3 * row]),
                request(DataType::Int64, vec![1, 76], &wrong_width),
                Err(RequestError::invalid("input 'INPUT_IDS' is missing")),
                request(DataType::Int64, vec![2, 77], &ids[3 * row..4 * row]),
                request(DataType::Int64, vec![4, 77], &ids[3 * row..]),
                request(DataType::Int64, vec![0, 77], &[]),
            ];
            assert_eq!(shape, [7, 77]);
            let results = runner.execute(&batch);
            assert_eq!(results.len(), batch.len());
            for (index, rows) in [(0, 0..1), (2, 1..3), (6, 3..7)] {
                let out = results[index].as_ref().unwrap();
                assert_eq!(out.name, tensor::EMBEDDING);
                assert_eq!(out.shape, vec![rows.len() as i64, 24]);
                let diff = max_diff(fp32(&results[index]), &want[rows.start * 24..rows.end * 24]);
                assert!(diff <= TOLERANCE, "{variant} request {index}: {diff}");
            }
            let wrong_type = results[1].as_ref().unwrap_err();
            assert_eq!(wrong_type.kind, ErrorKind::InvalidArg);
            assert_eq!(
                wrong_type.message,
                "input 'INPUT_IDS' must be INT64, got FP32"
            );
            let wrong_shape = results[3].as_ref().unwrap_err();
            assert!(
                wrong_shape
                    .message
                    .contains("shape [batch, 77], got [1, 76]"),
                "{wrong_shape}"
            );
            assert_eq!(
                results[4].as_ref().unwrap_err().message,
                "input 'INPUT_IDS' is missing"
            );
            let short = results[5].as_ref().unwrap_err();
            assert!(short.message.contains("holds 616 bytes"), "{short}");
            assert_eq!(results[7].as_ref().unwrap().shape, vec![0, 24]);
        }
    }

    #[test]
    fn image_batches_match_the_reference() {
        let (dir, _) = exported("quick_gelu", false);
        let mut runner = runner(
            spec(pixels_spec(DataType::Fp32), embedding_spec(DataType::Fp32)),
            dir.path(),
        )
        .unwrap();
        let pixels = pixels_f32();
        let image = 3 * 224 * 224 * 4;
        let want = reference("quick_gelu", "image_features");
        let batch = vec![
            request(DataType::Fp32, vec![2, 3, 224, 224], &pixels[..2 * image]),
            request(DataType::Fp32, vec![1, 3, 224, 224, 1], &pixels[..image]),
            request(DataType::Fp32, vec![3, 3, 224, 224], &pixels[2 * image..]),
        ];
        let results = runner.execute(&batch);
        assert!(max_diff(fp32(&results[0]), &want[..48]) <= TOLERANCE);
        assert!(results[1]
            .as_ref()
            .unwrap_err()
            .message
            .contains("[batch, 3, 224, 224]"));
        assert!(max_diff(fp32(&results[2]), &want[48..]) <= TOLERANCE);
        // One request alone gives what it gave inside the batch.
        let alone = runner.execute(&batch[2..]);
        assert!(max_diff(fp32(&alone[0]), fp32(&results[2])) <= 1e-6);
    }

    /// The visual model with FP16 pixels in and an FP16 embedding out, by
    /// casts around the exported FP32 graph.
    fn half_precision_io(model: &OnnxModel) -> Vec<u8> {
        let mut proto = model.decode().unwrap();
        let graph = proto.graph.as_mut().unwrap();
        let retype = |info: &mut clip_export::proto::ValueInfoProto| {
            if let Some(type_proto::Value::TensorType(t)) =
                info.r#type.as_mut().and_then(|t| t.value.as_mut())
            {
                t.elem_type = Some(OnnxType::Float16 as i32);
            }
        };
        let rename = |names: &mut Vec<String>, from: &str, to: &str| {
            for name in names.iter_mut().filter(|n| n.as_str() == from) {
                *name = to.to_string();
            }
        };
        for node in &mut graph.node {
            rename(&mut node.input, tensor::PIXEL_VALUES, "pixels_f32");
            rename(&mut node.output, tensor::EMBEDDING, "embedding_f32");
        }
        let cast = |from: &str, to: &str, elem: OnnxType| NodeProto {
            input: vec![from.into()],
            output: vec![to.into()],
            name: Some(format!("cast_{to}")),
            op_type: Some("Cast".into()),
            attribute: vec![AttributeProto {
                name: Some("to".into()),
                r#type: Some(AttributeType::Int as i32),
                i: Some(elem as i64),
                ..Default::default()
            }],
            ..Default::default()
        };
        graph
            .node
            .insert(0, cast(tensor::PIXEL_VALUES, "pixels_f32", OnnxType::Float));
        graph
            .node
            .push(cast("embedding_f32", tensor::EMBEDDING, OnnxType::Float16));
        retype(&mut graph.input[0]);
        retype(&mut graph.output[0]);
        proto.encode_to_vec()
    }

    #[test]
    fn half_precision_pixels_and_embeddings() {
        let (dir, model) = exported("gelu", false);
        std::fs::write(
            dir.path().join(clip_contract::file::ONNX_MODEL),
            half_precision_io(&model),
        )
        .unwrap();
        // The FP32 config no longer fits the model.
        let refused = runner(
            spec(pixels_spec(DataType::Fp32), embedding_spec(DataType::Fp32)),
            dir.path(),
        )
        .err()
        .unwrap();
        assert!(
            refused.contains(
                "config.pbtxt says TYPE_FP32 [batch, 3, 224, 224], model.onnx says FLOAT16"
            ),
            "{refused}"
        );
        let mut runner = runner(
            spec(pixels_spec(DataType::Fp16), embedding_spec(DataType::Fp16)),
            dir.path(),
        )
        .unwrap();
        let (pixels, _) = pixels_f16();
        let results = runner.execute(&[
            request(DataType::Fp16, vec![5, 3, 224, 224], &pixels),
            request(
                DataType::Fp32,
                vec![1, 3, 224, 224],
                &pixels[..3 * 224 * 224 * 4],
            ),
        ]);
        let OutputData::Fp16(got) = &results[0].as_ref().unwrap().data else {
            panic!("FP16 embeddings")
        };
        let got: Vec<f32> = got.iter().map(|v| v.to_f32()).collect();
        let want = reference("gelu", "image_features");
        // The fixture pixels are FP16 already; only the output is rounded.
        assert!(max_diff(&got, &want) <= 4e-3, "{}", max_diff(&got, &want));
        assert!(results[1]
            .as_ref()
            .unwrap_err()
            .message
            .contains("must be FP16"));
    }

    #[test]
    fn an_onnx_runtime_failure_fails_the_batch_with_its_message() {
        let (dir, _) = exported("quick_gelu", true);
        let mut runner =
            runner(spec(ids_spec(), embedding_spec(DataType::Fp32)), dir.path()).unwrap();
        let (ids, _) = input_ids();
        let mut out_of_vocabulary = ids[..77 * 8].to_vec();
        out_of_vocabulary[8..16].copy_from_slice(&1_000_000_000i64.to_le_bytes());
        let results = runner.execute(&[
            request(DataType::Int64, vec![1, 77], &ids[..77 * 8]),
            request(DataType::Int64, vec![1, 77], &out_of_vocabulary),
            request(DataType::Int64, vec![1, 70], &ids[..70 * 8]),
        ]);
        for result in &results[..2] {
            let error = result.as_ref().unwrap_err();
            assert_eq!(error.kind, ErrorKind::Internal);
            assert!(
                error
                    .message
                    .starts_with("ONNX Runtime failed on this batch: ")
                    && error.message.contains("Gather"),
                "{error}"
            );
        }
        assert_eq!(results[2].as_ref().unwrap_err().kind, ErrorKind::InvalidArg);
        // The session keeps working.
        let again = runner.execute(&[request(DataType::Int64, vec![1, 77], &ids[..77 * 8])]);
        assert!(again[0].is_ok());
    }

    #[test]
    fn a_config_that_disagrees_with_the_onnx_fails_the_load_naming_both() {
        let (text, _) = exported("quick_gelu", true);
        let (image, _) = exported("quick_gelu", false);
        let cases = [
            (
                text.path(),
                spec(
                    TensorSpec { dims: vec![64], ..ids_spec() },
                    embedding_spec(DataType::Fp32),
                ),
                "input 'INPUT_IDS': config.pbtxt says TYPE_INT64 [batch, 64], model.onnx says INT64 [?, 77] (the dims differ)",
            ),
            (
                image.path(),
                spec(
                    TensorSpec { dims: vec![3, 256, 256], ..pixels_spec(DataType::Fp32) },
                    embedding_spec(DataType::Fp32),
                ),
                "config.pbtxt says TYPE_FP32 [batch, 3, 256, 256], model.onnx says FLOAT32 [?, 3, 224, 224]",
            ),
            (
                image.path(),
                spec(pixels_spec(DataType::Fp32), TensorSpec { dims: vec![512], ..embedding_spec(DataType::Fp32) }),
                "output 'EMBEDDING': config.pbtxt says TYPE_FP32 [batch, 512]",
            ),
            (
                image.path(),
                spec(ids_spec(), embedding_spec(DataType::Fp32)),
                "config.pbtxt has the one input 'INPUT_IDS', model.onnx has inputs [\"PIXEL_VALUES\"]",
            ),
        ];
        for (dir, spec, says) in cases {
            let message = runner(spec, dir).err().expect("load fails");
            assert!(message.contains(says), "{message:?} lacks {says:?}");
        }
        let missing = OnnxEncoder::load(
            spec(ids_spec(), embedding_spec(DataType::Fp32)),
            Path::new("/nonexistent"),
        )
        .err()
        .unwrap();
        assert!(
            missing.contains("no ONNX model at /nonexistent/model.onnx"),
            "{missing}"
        );
    }

    #[test]
    fn signature_checks() {
        let declared = |name: &str, element, dims: &[i64]| Declared {
            name: name.into(),
            element: Some(element),
            dims: dims.to_vec(),
        };
        let ids = declared(tensor::INPUT_IDS, TensorElementType::Int64, &[-1, 77]);
        let out = declared(tensor::EMBEDDING, TensorElementType::Float32, &[-1, 24]);
        let embedding = embedding_spec(DataType::Fp32);
        let one = |d: &Declared| vec![d.clone()];
        assert!(check_signature(&ids_spec(), &embedding, &one(&ids), &one(&out)).is_ok());
        // Extra outputs are computed and ignored.
        let pooled = declared("pooled", TensorElementType::Float32, &[-1, 32]);
        assert!(check_signature(
            &ids_spec(),
            &embedding,
            &one(&ids),
            &[pooled.clone(), out.clone()]
        )
        .is_ok());

        let fixed_batch = declared(tensor::INPUT_IDS, TensorElementType::Int64, &[1, 77]);
        let int32 = declared(tensor::INPUT_IDS, TensorElementType::Int32, &[-1, 77]);
        let flat = declared(tensor::INPUT_IDS, TensorElementType::Int64, &[-1]);
        let cases = [
            (
                vec![fixed_batch],
                vec![out.clone()],
                "the batch axis of model.onnx must be dynamic",
            ),
            (
                vec![int32],
                vec![out.clone()],
                "model.onnx says INT32 [?, 77] (the data types differ)",
            ),
            (vec![flat], vec![out.clone()], "(the ranks differ)"),
            (
                vec![ids.clone(), ids.clone()],
                vec![out.clone()],
                "model.onnx has inputs",
            ),
            (
                vec![ids.clone()],
                vec![pooled],
                "config.pbtxt has the output 'EMBEDDING', model.onnx has outputs [\"pooled\"]",
            ),
        ];
        for (inputs, outputs, says) in cases {
            let message = check_signature(&ids_spec(), &embedding, &inputs, &outputs).unwrap_err();
            assert!(message.contains(says), "{message:?} lacks {says:?}");
        }
    }

    #[test]
    fn gpu_instances_need_the_cuda_provider() {
        let library = Path::new("/opt/ort/libonnxruntime.so");
        assert_eq!(provider_for(Device::Cpu, false, library), Ok(Provider::Cpu));
        assert_eq!(provider_for(Device::Cpu, true, library), Ok(Provider::Cpu));
        assert_eq!(
            provider_for(Device::Gpu(1), true, library),
            Ok(Provider::Cuda { device_id: 1 })
        );
        let refused = provider_for(Device::Gpu(1), false, library).unwrap_err();
        assert!(refused.contains("KIND_GPU (device 1)"), "{refused}");
        assert!(
            refused.contains("/opt/ort/libonnxruntime.so has no CUDA execution provider"),
            "{refused}"
        );

        // The installed CPU build really lacks CUDA: a KIND_GPU instance fails to load.
        let (dir, _) = exported("quick_gelu", true);
        let kind = Arc::new(
            OnnxEncoder::load(spec(ids_spec(), embedding_spec(DataType::Fp32)), dir.path())
                .unwrap(),
        );
        let gpu = Instance {
            name: "gpu_0".into(),
            device: Device::Gpu(0),
        };
        let refused = kind.runner(&gpu).err().expect("no CUDA in the CPU build");
        assert!(
            refused.contains("has no CUDA execution provider"),
            "{refused}"
        );
    }

    #[test]
    fn threads_default_to_the_cores_split_across_instances() {
        let mut spec = spec(ids_spec(), embedding_spec(DataType::Fp32));
        spec.intra_op_threads = None;
        spec.instance_count = 3;
        assert_eq!(threads(&spec, 16), (5, 1));
        assert_eq!(threads(&spec, 2), (1, 1));
        spec.intra_op_threads = Some(4);
        spec.inter_op_threads = Some(2);
        assert_eq!(threads(&spec, 16), (4, 2));
    }

    #[test]
    fn the_library_comes_from_the_parameter_or_the_environment() {
        let version_dir = Path::new("/models/enc/1");
        let none = library_path(None, None, version_dir).unwrap_err();
        assert!(
            none.contains("'ort_library'") && none.contains(ORT_DYLIB_ENV),
            "{none}"
        );
        assert!(none.contains("scripts/install-onnxruntime.sh"), "{none}");

        let missing = library_path(
            Some(Path::new("/nowhere/libonnxruntime.so")),
            None,
            version_dir,
        )
        .unwrap_err();
        assert!(
            missing.contains(
                "parameter 'ort_library' names /nowhere/libonnxruntime.so, which is not a file"
            ),
            "{missing}"
        );
        assert!(
            missing.contains("scripts/install-onnxruntime.sh"),
            "{missing}"
        );
        let relative = library_path(Some(Path::new("lib/ort.so")), None, version_dir).unwrap_err();
        assert!(relative.contains("/models/enc/1/lib/ort.so"), "{relative}");

        let real = ort_library();
        assert_eq!(
            library_path(None, Some(real.into()), version_dir).unwrap(),
            real
        );
        // The parameter wins over the environment; an empty variable is unset.
        assert_eq!(
            library_path(Some(real), Some("/nowhere".into()), version_dir).unwrap(),
            real
        );
        assert!(library_path(None, Some("".into()), version_dir).is_err());
    }

    #[test]
    fn one_library_per_process() {
        runtime(ort_library()).unwrap();
        let other = std::env::current_exe().unwrap();
        let refused = runtime(&other).err().unwrap();
        assert!(refused.contains("already loaded from"), "{refused}");
        assert!(refused.contains(&other.display().to_string()), "{refused}");
        // A symlink to the same file is the same library.
        let link_dir = tempfile::tempdir().unwrap();
        let link = link_dir.path().join("libonnxruntime.so");
        std::os::unix::fs::symlink(ort_library(), &link).unwrap();
        assert!(runtime(&link).is_ok());
    }

    #[test]
    fn an_unloadable_library_is_a_clear_error() {
        // Runs before or after the real library is loaded; either way it names the file.
        let not_a_library = tempfile::NamedTempFile::new().unwrap();
        let message = runtime(not_a_library.path()).err().unwrap();
        assert!(
            message.contains(&not_a_library.path().display().to_string()),
            "{message}"
        );
    }

    #[test]
    fn split_keeps_request_order_and_errors() {
        let rows = vec![Ok(2), Err(RequestError::invalid("bad")), Ok(1)];
        let embeddings = Embeddings::Fp32((0..6).map(|v| v as f32).collect());
        let out = split(tensor::EMBEDDING, &[2], rows.clone(), Ok(embeddings));
        assert_eq!(
            out[0].as_ref().unwrap().data,
            OutputData::Fp32(vec![0., 1., 2., 3.])
        );
        assert_eq!(out[0].as_ref().unwrap().shape, vec![2, 2]);
        assert_eq!(out[1].as_ref().unwrap_err().message, "bad");
        assert_eq!(
            out[2].as_ref().unwrap().data,
            OutputData::Fp32(vec![4., 5.])
        );
        let failed = split(
            tensor::EMBEDDING,
            &[2],
            rows,
            Err(RequestError::internal("ort said no")),
        );
        assert_eq!(failed[0].as_ref().unwrap_err().message, "ort said no");
        assert_eq!(failed[1].as_ref().unwrap_err().message, "bad");
    }
}
