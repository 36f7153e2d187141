//! One instance's session: joins the rows of a batch's requests into one
//! tensor per input, refuses out-of-vocabulary token ids and malformed
//! attention masks per request, runs the session once, and hands ONNX
//! Runtime's output back as the batch buffer itself.

use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;

use clip_contract::{tensor, DataType, TensorSpec};
use half::f16;
use ort::session::Session;
use ort::value::PrimitiveTensorElementType;
use ort::value::{DynValue, Tensor};

use super::signature::element_of;
use crate::batch::{BatchOutput, Element, HostTensor, Input, Request, RequestError, Rows};
use crate::kind::{Device, Runner};
use crate::metrics::{Metrics, Reason};

/// What every instance of one encoder model runs: its tensors as the
/// config declares them (and the session was checked against).
pub(super) struct Io {
    /// In the order requests carry them.
    pub inputs: Vec<TensorSpec>,
    pub output: TensorSpec,
    /// Token ids at or above it are refused per request (text encoders).
    pub vocab_size: Option<u64>,
}

pub(super) struct EncoderRunner {
    io: Arc<Io>,
    session: Session,
    device: Device,
    metrics: Metrics,
}

/// One input's values for the whole batch, in its element type.
enum Column {
    Int64(Vec<i64>),
    Int32(Vec<i32>),
    Uint8(Vec<u8>),
    Fp16(Vec<f16>),
    Fp32(Vec<f32>),
}

impl Column {
    /// An empty column with room for `bytes` of values, so that gathering
    /// a batch allocates once and never moves what it copied.
    fn new(data_type: DataType, bytes: usize) -> Column {
        fn room<T>(bytes: usize) -> Vec<T> {
            Vec::with_capacity(bytes / size_of::<T>())
        }
        match data_type {
            DataType::Int64 => Column::Int64(room(bytes)),
            DataType::Int32 => Column::Int32(room(bytes)),
            DataType::Uint8 => Column::Uint8(room(bytes)),
            DataType::Fp16 => Column::Fp16(room(bytes)),
            // The config admits no BYTES encoder input.
            DataType::Fp32 | DataType::Bytes => Column::Fp32(room(bytes)),
        }
    }

    /// Appends a request's values. Triton's buffers carry no alignment
    /// promise: the values are read unaligned, in one pass.
    fn append(&mut self, bytes: &[u8]) {
        fn extend<T: Element>(values: &mut Vec<T>, bytes: &[u8]) {
            values.extend(
                bytes
                    .chunks_exact(size_of::<T>())
                    .map(bytemuck::pod_read_unaligned::<T>),
            );
        }
        match self {
            Column::Int64(v) => extend(v, bytes),
            Column::Int32(v) => extend(v, bytes),
            Column::Uint8(v) => extend(v, bytes),
            Column::Fp16(v) => extend(v, bytes),
            Column::Fp32(v) => extend(v, bytes),
        }
    }

    fn into_value(self, shape: Vec<i64>) -> Result<DynValue, String> {
        fn value<T: PrimitiveTensorElementType + Clone + std::fmt::Debug + 'static>(
            shape: Vec<i64>,
            values: Vec<T>,
        ) -> Result<DynValue, String> {
            Tensor::from_array((shape, values))
                .map(Tensor::into_dyn)
                .map_err(|e| e.to_string())
        }
        match self {
            Column::Int64(v) => value(shape, v),
            Column::Int32(v) => value(shape, v),
            Column::Uint8(v) => value(shape, v),
            Column::Fp16(v) => value(shape, v),
            Column::Fp32(v) => value(shape, v),
        }
    }
}

/// Each request's rows (or its error) and the good requests' values,
/// joined: one column per input.
struct Gathered {
    requests: Vec<Result<Range<usize>, RequestError>>,
    rows: usize,
    columns: Vec<Column>,
}

/// Checks every request against the config's inputs and copies the good
/// ones' values, in order, into one `[rows, dims...]` column per input. A
/// refused request is counted once, whatever its rows.
fn gather(io: &Io, batch: &[Result<Request<'_>, RequestError>], metrics: &Metrics) -> Gathered {
    let mut cursor = Rows::default();
    // Room for every request's values, refused ones included: an upper bound.
    let mut columns: Vec<Column> = io
        .inputs
        .iter()
        .enumerate()
        .map(|(at, spec)| {
            let bytes = batch
                .iter()
                .flatten()
                .filter_map(|request| request.inputs.get(at))
                .map(|input| input.data.len())
                .sum();
            Column::new(spec.data_type, bytes)
        })
        .collect();
    let requests = batch
        .iter()
        .map(|request| {
            let request = request
                .as_ref()
                .map_err(Clone::clone)
                .inspect_err(|e| metrics.rejected(Reason::of_request(e)))?;
            let rows = check_request(io, request, metrics)?;
            for (column, input) in columns.iter_mut().zip(&request.inputs) {
                column.append(&input.data);
            }
            Ok(cursor.take(rows))
        })
        .collect();
    Gathered {
        requests,
        rows: cursor.total(),
        columns,
    }
}

/// A request's row count, after checking each of its inputs (and that they
/// agree on the rows) and its token ids and mask values.
fn check_request(io: &Io, request: &Request<'_>, metrics: &Metrics) -> Result<usize, RequestError> {
    if request.inputs.len() != io.inputs.len() {
        metrics.rejected(Reason::InvalidRequest);
        return Err(RequestError::internal(format!(
            "the request reached the model with {} inputs, it takes {}",
            request.inputs.len(),
            io.inputs.len()
        )));
    }
    let mut rows = None;
    for (spec, input) in io.inputs.iter().zip(&request.inputs) {
        let per_row = spec.row_elements().unwrap_or(0);
        let these = check_input(spec, per_row, input)
            .inspect_err(|_| metrics.rejected(Reason::InvalidRequest))?;
        if let Some((first, name)) = rows.filter(|(first, _)| *first != these) {
            metrics.rejected(Reason::InvalidRequest);
            return Err(RequestError::invalid(format!(
                "input '{}' has {these} rows but '{name}' has {first}",
                spec.name
            )));
        }
        rows = Some((these, spec.name.as_str()));
        let values = || integers(spec.data_type, &input.data);
        if tensor::plays(&spec.name, tensor::INPUT_IDS) {
            check_token_ids(spec, io.vocab_size, values())
                .inspect_err(|_| metrics.rejected(Reason::TokenIdOutOfRange))?;
        } else if tensor::plays(&spec.name, tensor::ATTENTION_MASK) {
            check_mask(spec, values()).inspect_err(|_| metrics.rejected(Reason::InvalidRequest))?;
        }
    }
    Ok(rows.map_or(0, |(rows, _)| rows))
}

fn check_input(
    spec: &TensorSpec,
    per_row: usize,
    input: &Input<'_>,
) -> Result<usize, RequestError> {
    if input.datatype != spec.data_type {
        return Err(RequestError::invalid(format!(
            "input '{}' must be {}, got {}",
            spec.name,
            spec.data_type.wire_name(),
            input.datatype.wire_name()
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
    let element = spec.data_type.element_size().unwrap_or(0);
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

/// The values of an INT64 or INT32 input's (length-checked) bytes, widened.
fn integers(data_type: DataType, data: &[u8]) -> Vec<i64> {
    match data_type {
        DataType::Int32 => data
            .chunks_exact(4)
            .map(|v| i64::from(i32::from_le_bytes(v.try_into().expect("4 bytes"))))
            .collect(),
        _ => data
            .chunks_exact(8)
            .map(|v| i64::from_le_bytes(v.try_into().expect("8 bytes")))
            .collect(),
    }
}

/// A token id outside the embedding table would fail the whole batch inside
/// ONNX Runtime (or, negative, be read from the wrong end); it fails its own
/// request here, naming the element, the id and the limit.
fn check_token_ids(
    spec: &TensorSpec,
    vocab_size: Option<u64>,
    ids: Vec<i64>,
) -> Result<(), RequestError> {
    let per_row = spec.row_elements().unwrap_or(0).max(1);
    for (row, ids) in ids.chunks_exact(per_row).enumerate() {
        for &id in ids {
            let outside = id < 0 || vocab_size.is_some_and(|size| id as u64 >= size);
            if outside {
                let limit = vocab_size
                    .map_or_else(|| "0 or more".to_string(), |size| format!("in 0..{size}"));
                return Err(RequestError::invalid(format!(
                    "{} element {row}: token id {id} is outside the vocabulary (ids must be {limit})",
                    spec.name
                )));
            }
        }
    }
    Ok(())
}

/// A mask is 0 or 1 per token, with at least one 1: an all-zero row would
/// make a mean-pooled text tower divide by zero and answer NaN.
fn check_mask(spec: &TensorSpec, mask: Vec<i64>) -> Result<(), RequestError> {
    let per_row = spec.row_elements().unwrap_or(0).max(1);
    for (row, values) in mask.chunks_exact(per_row).enumerate() {
        let refuse = |why: String| {
            Err(RequestError::invalid(format!(
                "{} element {row}: {why}",
                spec.name
            )))
        };
        if let Some(value) = values.iter().find(|v| !matches!(v, 0 | 1)) {
            return refuse(format!("value {value} is not 0 or 1"));
        }
        if !values.contains(&1) {
            return refuse("no token is attended (every value is 0)".into());
        }
    }
    Ok(())
}

/// ONNX Runtime's output tensor, seen as the batch buffer's bytes.
struct OrtOutput {
    value: DynValue,
    datatype: DataType,
}

impl AsRef<[u8]> for OrtOutput {
    /// The element type was checked when the batch ran; were it different,
    /// the buffer reads as empty and every request gets an internal error.
    fn as_ref(&self) -> &[u8] {
        fn bytes<T: PrimitiveTensorElementType + Element>(value: &DynValue) -> &[u8] {
            value
                .try_extract_tensor::<T>()
                .map_or(&[][..], |(_, data)| bytemuck::cast_slice(data))
        }
        match self.datatype {
            DataType::Fp16 => bytes::<f16>(&self.value),
            _ => bytes::<f32>(&self.value),
        }
    }
}

impl EncoderRunner {
    pub(super) fn new(io: Arc<Io>, session: Session, device: Device, metrics: Metrics) -> Self {
        EncoderRunner {
            io,
            session,
            device,
            metrics,
        }
    }

    /// Runs the session once on the joined rows; its output is the buffer.
    fn run(&mut self, rows: usize, columns: Vec<Column>) -> Result<HostTensor, String> {
        let io = Arc::clone(&self.io);
        let inputs = io
            .inputs
            .iter()
            .zip(columns)
            .map(|(spec, column)| {
                let mut shape = vec![rows as i64];
                shape.extend_from_slice(&spec.dims);
                Ok((spec.name.as_str(), column.into_value(shape)?))
            })
            .collect::<Result<Vec<_>, String>>()?;
        let output = &io.output;
        let start = Instant::now();
        let outputs = self.session.run(inputs);
        self.metrics.encoder_ran(start.elapsed());
        let mut outputs = outputs.map_err(|e| e.to_string())?;
        let value = outputs
            .remove(&output.name)
            .ok_or_else(|| format!("model.onnx returned no '{}'", output.name))?;
        let mut expected = vec![rows as i64];
        expected.extend_from_slice(&output.dims);
        let returned = value.dtype();
        if returned.tensor_type() != element_of(output.data_type)
            || returned.tensor_shape().map(|s| s.to_vec()) != Some(expected.clone())
        {
            return Err(format!(
                "model.onnx returned '{}' as {returned}, expected {} {expected:?}",
                output.name, output.data_type
            ));
        }
        Ok(HostTensor::from_bytes(
            output.data_type,
            output.dims.clone(),
            OrtOutput {
                value,
                datatype: output.data_type,
            },
        ))
    }
}

impl Runner for EncoderRunner {
    fn device(&self) -> Device {
        self.device
    }

    /// Joins the batch, runs the session once, answers each request with
    /// its rows of the output. A bad request fails alone; an ONNX Runtime
    /// failure fails the good ones.
    fn execute(&mut self, batch: &[Result<Request<'_>, RequestError>]) -> BatchOutput {
        let Gathered {
            mut requests,
            rows,
            columns,
        } = gather(&self.io, batch, &self.metrics);
        let io = Arc::clone(&self.io);
        let empty =
            || HostTensor::from_bytes(io.output.data_type, io.output.dims.clone(), Vec::new());
        let tensor = if rows == 0 {
            empty()
        } else {
            match self.run(rows, columns) {
                Ok(tensor) => {
                    self.metrics.rows_encoded(rows);
                    tensor
                }
                Err(error) => {
                    let error = RequestError::internal(format!(
                        "ONNX Runtime failed on this batch: {error}"
                    ));
                    for request in requests.iter_mut().filter(|r| r.is_ok()) {
                        *request = Err(error.clone());
                    }
                    empty()
                }
            }
        };
        BatchOutput::single(self.io.output.name.clone(), tensor, requests)
    }
}
