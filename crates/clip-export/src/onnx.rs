//! A small ONNX graph builder over the prost types, and the model writer
//! (inline initializers, or an external-data file past a size threshold).

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

use prost::Message;

use crate::error::{ExportError, Result};
use crate::proto::{
    attribute_proto::AttributeType, tensor_proto::DataLocation, tensor_proto::DataType,
    tensor_shape_proto::dimension::Value as DimValue, tensor_shape_proto::Dimension,
    type_proto::Tensor as TensorType, type_proto::Value as TypeValue, AttributeProto, GraphProto,
    ModelProto, NodeProto, OperatorSetIdProto, StringStringEntryProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto,
};

/// The ONNX operator set the graphs use (LayerNormalization needs 17).
pub const OPSET: i64 = 17;
/// IR version 8 is the one that goes with opset 17.
pub const IR_VERSION: i64 = 8;
/// Protobuf cannot serialize a message of 2 GiB or more; past this many
/// bytes of weights they go to an external-data file.
pub const DEFAULT_EXTERNAL_DATA_THRESHOLD: usize = 2_000_000_000;
/// Initializers smaller than this stay inline even in external-data mode.
const EXTERNAL_MIN_BYTES: usize = 1024;
/// External tensors start at multiples of this, so runtimes can mmap them.
const EXTERNAL_ALIGN: usize = 4096;

/// Element type of the weights, and of the computation inside the graph.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WeightDtype {
    #[default]
    F32,
    /// Weights and activations in float16; the graph inputs and the
    /// embedding output stay float32 (casts at both ends).
    F16,
    /// Float32 graph whose weight matrices are int8 per output channel,
    /// multiplied by dynamically quantized activations (see `quantize`).
    Int8,
}

impl WeightDtype {
    pub fn name(self) -> &'static str {
        match self {
            WeightDtype::F32 => "fp32",
            WeightDtype::F16 => "fp16",
            WeightDtype::Int8 => "int8",
        }
    }

    pub(crate) fn onnx(self) -> DataType {
        match self {
            WeightDtype::F32 | WeightDtype::Int8 => DataType::Float,
            WeightDtype::F16 => DataType::Float16,
        }
    }
}

/// An encoded ONNX model, with its external data when it has any.
#[derive(Clone, Debug)]
pub struct OnnxModel {
    /// The serialized `ModelProto`.
    pub model: Vec<u8>,
    pub external_data: Option<ExternalData>,
}

/// The bytes the model's `EXTERNAL` initializers point into.
#[derive(Clone, Debug)]
pub struct ExternalData {
    /// The `location` every external tensor names: a file beside the model.
    pub file_name: String,
    pub bytes: Vec<u8>,
}

impl OnnxModel {
    /// Writes `dir/model_file_name` and, with external data, the data file
    /// beside it. Returns the paths written.
    pub fn write(&self, dir: &Path, model_file_name: &str) -> Result<Vec<PathBuf>> {
        fs::create_dir_all(dir).map_err(|e| ExportError::io(dir, e))?;
        let mut written = Vec::new();
        if let Some(external) = &self.external_data {
            if external.file_name == model_file_name {
                return Err(ExportError::Config(format!(
                    "the external-data file cannot share the model's name {model_file_name}"
                )));
            }
            let path = dir.join(&external.file_name);
            fs::write(&path, &external.bytes).map_err(|e| ExportError::io(&path, e))?;
            written.push(path);
        }
        let path = dir.join(model_file_name);
        fs::write(&path, &self.model).map_err(|e| ExportError::io(&path, e))?;
        written.insert(0, path);
        Ok(written)
    }

    /// Decodes the model again (tests, inspection).
    pub fn decode(&self) -> Result<ModelProto> {
        ModelProto::decode(self.model.as_slice())
            .map_err(|e| ExportError::Config(format!("the written model does not decode: {e}")))
    }
}

/// Collects nodes and initializers with unique names.
pub(crate) struct GraphBuilder {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    names: HashSet<String>,
    pub dtype: WeightDtype,
}

impl GraphBuilder {
    pub fn new(dtype: WeightDtype) -> Self {
        GraphBuilder {
            nodes: Vec::new(),
            initializers: Vec::new(),
            names: HashSet::new(),
            dtype,
        }
    }

    /// `hint`, or `hint_N` when taken.
    fn fresh(&mut self, hint: &str) -> String {
        let mut name = hint.to_string();
        let mut n = 1;
        while self.names.contains(&name) {
            name = format!("{hint}_{n}");
            n += 1;
        }
        self.names.insert(name.clone());
        name
    }

    /// Reserves a name the caller chose (graph inputs).
    pub fn reserve(&mut self, name: &str) {
        assert!(self.names.insert(name.to_string()), "{name} is taken");
    }

    /// An initializer of `count` values, `raw` their little-endian bytes.
    fn initializer(
        &mut self,
        hint: &str,
        shape: &[usize],
        count: usize,
        dtype: DataType,
        raw: Vec<u8>,
    ) -> String {
        assert_eq!(shape.iter().product::<usize>(), count, "{hint}: data/shape");
        let name = self.fresh(hint);
        self.initializers.push(raw_tensor(&name, shape, dtype, raw));
        name
    }

    /// A floating-point initializer in the graph's weight dtype.
    pub fn weight(&mut self, hint: &str, shape: &[usize], data: &[f32]) -> String {
        let raw: Vec<u8> = match self.dtype {
            WeightDtype::F32 | WeightDtype::Int8 => {
                data.iter().flat_map(|v| v.to_le_bytes()).collect()
            }
            WeightDtype::F16 => data
                .iter()
                .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
                .collect(),
        };
        self.initializer(hint, shape, data.len(), self.dtype.onnx(), raw)
    }

    /// A float32 initializer whatever the weight dtype (constants that must
    /// keep the reference's float arithmetic).
    pub fn float32(&mut self, hint: &str, shape: &[usize], data: &[f32]) -> String {
        let raw = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.initializer(hint, shape, data.len(), DataType::Float, raw)
    }

    /// A scalar in the weight dtype.
    pub fn scalar(&mut self, hint: &str, value: f32) -> String {
        self.weight(hint, &[], &[value])
    }

    pub fn int64(&mut self, hint: &str, shape: &[usize], data: &[i64]) -> String {
        let raw = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.initializer(hint, shape, data.len(), DataType::Int64, raw)
    }

    /// Adds a node with one output and returns the output's name.
    pub fn op(
        &mut self,
        op_type: &str,
        inputs: &[&str],
        attributes: Vec<AttributeProto>,
        hint: &str,
    ) -> String {
        let output = self.fresh(hint);
        self.push(op_type, inputs, attributes, std::slice::from_ref(&output));
        output
    }

    /// Adds a node whose single output gets exactly `name` (graph outputs).
    pub fn op_named(
        &mut self,
        op_type: &str,
        inputs: &[&str],
        attributes: Vec<AttributeProto>,
        name: &str,
    ) {
        self.reserve(name);
        self.push(op_type, inputs, attributes, &[name.to_string()]);
    }

    fn push(
        &mut self,
        op_type: &str,
        inputs: &[&str],
        attribute: Vec<AttributeProto>,
        outputs: &[String],
    ) {
        let node_name = format!("{}/{op_type}", outputs[0]);
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.to_vec(),
            name: Some(node_name),
            op_type: Some(op_type.to_string()),
            attribute,
            ..Default::default()
        });
    }

    pub fn finish(
        self,
        name: &str,
        inputs: Vec<ValueInfoProto>,
        outputs: Vec<ValueInfoProto>,
    ) -> GraphProto {
        GraphProto {
            node: self.nodes,
            name: Some(name.to_string()),
            initializer: self.initializers,
            input: inputs,
            output: outputs,
            ..Default::default()
        }
    }
}

/// An initializer holding `raw`, the values' little-endian bytes.
pub(crate) fn raw_tensor(
    name: &str,
    shape: &[usize],
    dtype: DataType,
    raw: Vec<u8>,
) -> TensorProto {
    TensorProto {
        dims: shape.iter().map(|&d| d as i64).collect(),
        data_type: Some(dtype as i32),
        name: Some(name.to_string()),
        raw_data: Some(raw),
        ..Default::default()
    }
}

pub(crate) fn attr_int(name: &str, value: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Int as i32),
        i: Some(value),
        ..Default::default()
    }
}

pub(crate) fn attr_ints(name: &str, values: &[i64]) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Ints as i32),
        ints: values.to_vec(),
        ..Default::default()
    }
}

pub(crate) fn attr_float(name: &str, value: f32) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Float as i32),
        f: Some(value),
        ..Default::default()
    }
}

/// A dimension of a graph input/output: fixed size or named (dynamic).
#[derive(Clone, Debug)]
pub(crate) enum Dim {
    Fixed(usize),
    Named(&'static str),
}

pub(crate) fn value_info(name: &str, elem: DataType, dims: &[Dim]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                Dim::Fixed(n) => DimValue::DimValue(*n as i64),
                Dim::Named(s) => DimValue::DimParam(s.to_string()),
            }),
            ..Default::default()
        })
        .collect();
    ValueInfoProto {
        name: Some(name.to_string()),
        r#type: Some(TypeProto {
            value: Some(TypeValue::TensorType(TensorType {
                elem_type: Some(elem as i32),
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// How a model is laid out on disk.
#[derive(Clone, Debug)]
pub struct ExternalDataPolicy {
    /// Weights (bytes of all initializers together) above which they go to
    /// an external file.
    pub threshold: usize,
    /// That file's name, relative to the model file.
    pub file_name: String,
}

impl Default for ExternalDataPolicy {
    fn default() -> Self {
        ExternalDataPolicy {
            threshold: DEFAULT_EXTERNAL_DATA_THRESHOLD,
            file_name: "model.onnx.data".into(),
        }
    }
}

/// Wraps a graph in a model and encodes it, moving large initializers to an
/// external-data buffer when the policy says so.
pub(crate) fn encode_model(
    mut graph: GraphProto,
    metadata: Vec<(String, String)>,
    doc: &str,
    policy: &ExternalDataPolicy,
) -> OnnxModel {
    let total: usize = graph
        .initializer
        .iter()
        .map(|t| t.raw_data.as_ref().map_or(0, Vec::len))
        .sum();
    let external_data = if total > policy.threshold {
        Some(move_to_external(&mut graph, &policy.file_name))
    } else {
        None
    };
    let model = ModelProto {
        ir_version: Some(IR_VERSION),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(OPSET),
        }],
        producer_name: Some("clip-export".into()),
        producer_version: Some(env!("CARGO_PKG_VERSION").into()),
        doc_string: Some(doc.to_string()),
        graph: Some(graph),
        metadata_props: metadata
            .into_iter()
            .map(|(key, value)| StringStringEntryProto {
                key: Some(key),
                value: Some(value),
            })
            .collect(),
        ..Default::default()
    };
    OnnxModel {
        model: model.encode_to_vec(),
        external_data,
    }
}

fn move_to_external(graph: &mut GraphProto, file_name: &str) -> ExternalData {
    let mut bytes = Vec::new();
    for tensor in &mut graph.initializer {
        let Some(raw) = tensor
            .raw_data
            .take_if(|raw| raw.len() >= EXTERNAL_MIN_BYTES)
        else {
            continue;
        };
        let offset = bytes.len().next_multiple_of(EXTERNAL_ALIGN);
        bytes.resize(offset, 0);
        bytes.extend_from_slice(&raw);
        let entry = |key: &str, value: String| StringStringEntryProto {
            key: Some(key.into()),
            value: Some(value),
        };
        tensor.data_location = Some(DataLocation::External as i32);
        tensor.external_data = vec![
            entry("location", file_name.to_string()),
            entry("offset", offset.to_string()),
            entry("length", raw.len().to_string()),
        ];
    }
    ExternalData {
        file_name: file_name.to_string(),
        bytes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph_with(sizes: &[usize]) -> GraphProto {
        let mut g = GraphBuilder::new(WeightDtype::F32);
        for (i, &n) in sizes.iter().enumerate() {
            let data: Vec<f32> = (0..n).map(|v| (v + i) as f32).collect();
            g.weight(&format!("w{i}"), &[n], &data);
        }
        g.finish("g", vec![], vec![])
    }

    #[test]
    fn small_models_keep_weights_inline() {
        let model = encode_model(
            graph_with(&[300, 5]),
            vec![],
            "",
            &ExternalDataPolicy::default(),
        );
        assert!(model.external_data.is_none());
        let decoded = model.decode().unwrap();
        let graph = decoded.graph.unwrap();
        assert!(graph.initializer.iter().all(|t| t.raw_data.is_some()));
        assert_eq!(decoded.opset_import[0].version, Some(OPSET));
    }

    #[test]
    fn external_data_past_the_threshold() {
        let policy = ExternalDataPolicy {
            threshold: 1000,
            file_name: "w.bin".into(),
        };
        // 300 floats = 1200 bytes (external), 5 floats = 20 bytes (inline),
        // 1000 floats = 4000 bytes (external, starts on the next 4096 boundary).
        let model = encode_model(graph_with(&[300, 5, 1000]), vec![], "", &policy);
        let external = model.external_data.as_ref().expect("external data");
        assert_eq!(external.file_name, "w.bin");
        assert_eq!(external.bytes.len(), 4096 + 4000);

        let graph = model.decode().unwrap().graph.unwrap();
        let find = |t: &TensorProto, key: &str| {
            t.external_data
                .iter()
                .find(|e| e.key.as_deref() == Some(key))
                .and_then(|e| e.value.clone())
                .unwrap()
        };
        let [w0, w1, w2] = &graph.initializer[..] else {
            panic!("three initializers")
        };
        assert_eq!(w0.data_location, Some(DataLocation::External as i32));
        assert!(w0.raw_data.is_none());
        assert_eq!(find(w0, "location"), "w.bin");
        assert_eq!(find(w0, "offset"), "0");
        assert_eq!(find(w0, "length"), "1200");
        assert!(w1.raw_data.is_some() && w1.external_data.is_empty());
        assert_eq!(find(w2, "offset"), "4096");
        assert_eq!(find(w2, "length"), "4000");
        // The bytes at the recorded offset are the tensor's little-endian floats.
        let at = &external.bytes[4096..4096 + 8];
        assert_eq!(f32::from_le_bytes(at[..4].try_into().unwrap()), 2.0);
        assert_eq!(f32::from_le_bytes(at[4..].try_into().unwrap()), 3.0);

        let dir = tempfile::tempdir().unwrap();
        let written = model.write(dir.path(), "model.onnx").unwrap();
        assert_eq!(written.len(), 2);
        assert_eq!(fs::read(dir.path().join("w.bin")).unwrap(), external.bytes);
    }
}
