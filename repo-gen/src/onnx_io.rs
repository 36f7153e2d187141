//! The inputs and outputs an ONNX model declares, as config.pbtxt tensors.
//!
//! Decoded with clip-export's ONNX protobuf types. The first dimension of
//! every tensor is the batch (Triton's `max_batch_size` stands for it) and
//! is left out; any other dimension without a fixed size becomes -1.

use std::path::{Path, PathBuf};

use clip_contract::{DataType, TensorSpec};
use clip_export::proto::tensor_proto::DataType as OnnxType;
use clip_export::proto::tensor_shape_proto::dimension::Value as Dim;
use clip_export::proto::type_proto::Value as TypeValue;
use clip_export::proto::{ModelProto, ValueInfoProto};
use clip_export::OnnxModel;

use crate::model_dir::FileSource;

/// Why an ONNX model's interface cannot be written as a config.
#[derive(Debug, thiserror::Error)]
#[error("{}: {message}", source_name.display())]
pub struct OnnxIoError {
    /// The file, or the model's name when it is still in memory.
    pub source_name: PathBuf,
    pub message: String,
}

/// The graph's inputs (initializers left out) and outputs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelIo {
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
    /// `metadata_props` (clip-export writes `clip.embed_dim`, `clip.logit_scale`, ...).
    pub metadata: Vec<(String, String)>,
    /// The external data files the initializers name, relative to the
    /// model file (large exports keep their weights there).
    pub external_files: Vec<PathBuf>,
}

impl ModelIo {
    pub fn metadata(&self, key: &str) -> Option<&str> {
        self.metadata
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads the interface of an encoded model.
pub fn read_model(model: &OnnxModel, source_name: &Path) -> Result<ModelIo, OnnxIoError> {
    let proto = model.decode().map_err(|e| OnnxIoError {
        source_name: source_name.to_path_buf(),
        message: e.to_string(),
    })?;
    interface(&proto, source_name)
}

/// Reads the interface of an encoder about to go into a repository;
/// `what` names an in-memory model in errors.
pub fn read_source(source: &FileSource, what: &str) -> Result<ModelIo, OnnxIoError> {
    match source {
        FileSource::Onnx(model) => read_model(model, Path::new(what)),
        FileSource::Copy(path) | FileSource::OnnxFile { path, .. } => read_file(path),
    }
}

/// Reads the interface of an ONNX file.
pub fn read_file(path: &Path) -> Result<ModelIo, OnnxIoError> {
    let bytes = std::fs::read(path).map_err(|e| OnnxIoError {
        source_name: path.to_path_buf(),
        message: format!("cannot read it: {e}"),
    })?;
    let model = OnnxModel {
        model: bytes,
        external_data: None,
    };
    read_model(&model, path)
}

fn interface(proto: &ModelProto, source_name: &Path) -> Result<ModelIo, OnnxIoError> {
    let fail = |message: String| OnnxIoError {
        source_name: source_name.to_path_buf(),
        message,
    };
    let graph = proto
        .graph
        .as_ref()
        .ok_or_else(|| fail("the model has no graph; is it an ONNX model?".to_owned()))?;
    let initializers: Vec<&str> = graph
        .initializer
        .iter()
        .filter_map(|t| t.name.as_deref())
        .collect();
    let convert = |info: &ValueInfoProto| tensor(info).map_err(&fail);
    let inputs = graph
        .input
        .iter()
        .filter(|i| !initializers.contains(&i.name.as_deref().unwrap_or("")))
        .map(convert)
        .collect::<Result<Vec<_>, _>>()?;
    let outputs = graph
        .output
        .iter()
        .map(convert)
        .collect::<Result<Vec<_>, _>>()?;
    if inputs.is_empty() || outputs.is_empty() {
        return Err(fail(format!(
            "the graph has {} input(s) and {} output(s); an encoder needs both",
            inputs.len(),
            outputs.len()
        )));
    }
    let external_files = external_files(graph).map_err(fail)?;
    let metadata = proto
        .metadata_props
        .iter()
        .map(|p| {
            (
                p.key.clone().unwrap_or_default(),
                p.value.clone().unwrap_or_default(),
            )
        })
        .collect();
    Ok(ModelIo {
        inputs,
        outputs,
        metadata,
        external_files,
    })
}

/// The distinct `location`s of the initializers stored outside the file:
/// each must be a path below the model's folder, as the ONNX spec has it.
fn external_files(graph: &clip_export::proto::GraphProto) -> Result<Vec<PathBuf>, String> {
    use clip_export::proto::tensor_proto::DataLocation;
    let mut files: Vec<PathBuf> = Vec::new();
    for tensor in &graph.initializer {
        if tensor.data_location != Some(DataLocation::External as i32) {
            continue;
        }
        let name = tensor.name.as_deref().unwrap_or("");
        let location = tensor
            .external_data
            .iter()
            .find(|e| e.key.as_deref() == Some("location"))
            .and_then(|e| e.value.as_deref())
            .ok_or_else(|| format!("initializer '{name}' is external but names no location"))?;
        let path = PathBuf::from(location);
        let inside = path
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
        if !inside || location.is_empty() {
            return Err(format!(
                "initializer '{name}' keeps its data at {location:?}, outside the model's folder"
            ));
        }
        if !files.contains(&path) {
            files.push(path);
        }
    }
    Ok(files)
}

fn tensor(info: &ValueInfoProto) -> Result<TensorSpec, String> {
    let name = info.name.clone().unwrap_or_default();
    if name.is_empty() {
        return Err("a graph input or output has no name".to_owned());
    }
    let tensor_type = match info.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(TypeValue::TensorType(t)) => t,
        None => return Err(format!("'{name}' is not a tensor")),
    };
    let elem = tensor_type.elem_type.unwrap_or(0);
    let data_type = match OnnxType::try_from(elem) {
        Ok(OnnxType::Float) => DataType::Fp32,
        Ok(OnnxType::Float16) => DataType::Fp16,
        Ok(OnnxType::Int64) => DataType::Int64,
        Ok(OnnxType::Int32) => DataType::Int32,
        Ok(OnnxType::Uint8) => DataType::Uint8,
        other => {
            return Err(format!(
                "'{name}' has element type {} ({}), which CLIP encoders do not use; \
                 expected float, float16, int64 or int32",
                elem,
                other.map(|t| t.as_str_name()).unwrap_or("unknown"),
            ))
        }
    };
    let shape = tensor_type
        .shape
        .as_ref()
        .ok_or_else(|| format!("'{name}' has no shape"))?;
    let mut dims: Vec<i64> = shape
        .dim
        .iter()
        .map(|d| match d.value {
            Some(Dim::DimValue(v)) if v > 0 => v,
            _ => -1,
        })
        .collect();
    if dims.is_empty() {
        return Err(format!(
            "'{name}' is a scalar; encoder tensors have a batch dimension first"
        ));
    }
    if dims[0] != -1 {
        return Err(format!(
            "'{name}' has a fixed batch dimension of {}; export it with a dynamic batch",
            dims[0]
        ));
    }
    dims.remove(0);
    Ok(TensorSpec::new(name, data_type, dims))
}
