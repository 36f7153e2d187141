//! Does model.onnx take and give what config.pbtxt says? Checked once per
//! instance, when its session loads, so a mismatch fails the load and names
//! both sides instead of failing requests later.

use clip_contract::{DataType, TensorSpec};
use ort::value::{TensorElementType, ValueType};

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
    pub fn from_outlet(name: &str, dtype: &ValueType) -> Declared {
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

pub(super) fn element_of(data_type: DataType) -> Option<TensorElementType> {
    match data_type {
        DataType::Uint8 => Some(TensorElementType::Uint8),
        DataType::Int32 => Some(TensorElementType::Int32),
        DataType::Int64 => Some(TensorElementType::Int64),
        DataType::Fp32 => Some(TensorElementType::Float32),
        DataType::Fp16 => Some(TensorElementType::Float16),
        DataType::Bytes => Some(TensorElementType::String),
    }
}

fn config_describe(spec: &TensorSpec) -> String {
    let dims: Vec<String> = spec.dims.iter().map(i64::to_string).collect();
    format!("{} [batch, {}]", spec.data_type, dims.join(", "))
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

/// The session must take exactly the config's inputs and produce its output.
pub fn check_signature(
    inputs: &[TensorSpec],
    output: &TensorSpec,
    onnx_inputs: &[Declared],
    onnx_outputs: &[Declared],
) -> Result<(), String> {
    let names = |all: &[Declared]| all.iter().map(|d| d.name.clone()).collect::<Vec<_>>();
    let config_names: Vec<&str> = inputs.iter().map(|s| s.name.as_str()).collect();
    let same_names = onnx_inputs.len() == inputs.len()
        && onnx_inputs
            .iter()
            .all(|d| config_names.contains(&d.name.as_str()));
    if !same_names {
        return Err(format!(
            "config.pbtxt has the inputs {config_names:?}, model.onnx has inputs {:?}",
            names(onnx_inputs)
        ));
    }
    for spec in inputs {
        let declared = onnx_inputs
            .iter()
            .find(|d| d.name == spec.name)
            .expect("the names were checked");
        check_tensor("input", spec, declared)?;
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
