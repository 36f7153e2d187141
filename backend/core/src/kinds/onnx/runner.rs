//! One instance's session: joins the rows of a batch's requests into one
//! input, refuses out-of-vocabulary token ids per request, runs the session
//! once, and hands ONNX Runtime's output back as the batch buffer itself.

use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;

use clip_contract::{tensor, DataType, TensorSpec};
use half::f16;
use ort::session::Session;
use ort::value::PrimitiveTensorElementType;
use ort::value::{DynValue, Tensor};

use super::signature::element_of;
use crate::batch::{BatchOutput, Element, HostTensor, Input, RequestError, Rows};
use crate::kind::{Device, Runner};
use crate::metrics::{Metrics, Reason};

/// What every instance of one encoder model runs: its tensors as the
/// config declares them (and the session was checked against).
pub(super) struct Io {
    pub input: TensorSpec,
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

/// Each request's rows (or its error) and the good requests' values, joined.
struct Gathered<T> {
    requests: Vec<Result<Range<usize>, RequestError>>,
    rows: usize,
    values: Vec<T>,
}

/// Checks every request against the config's input and copies the good
/// ones' values, in order, into one `[rows, dims...]` buffer. A refused
/// request is counted once, whatever its rows.
fn gather<T: Element>(
    spec: &TensorSpec,
    vocab_size: Option<u64>,
    batch: &[Result<Input<'_>, RequestError>],
    metrics: &Metrics,
) -> Gathered<T> {
    let per_row = spec.row_elements().unwrap_or(0);
    let mut cursor = Rows::default();
    let mut values: Vec<T> = Vec::new();
    let requests = batch
        .iter()
        .map(|input| {
            let input = input
                .as_ref()
                .map_err(Clone::clone)
                .inspect_err(|e| metrics.rejected(Reason::of_request(e)))?;
            let rows = check_request(spec, per_row, input)
                .inspect_err(|_| metrics.rejected(Reason::InvalidRequest))?;
            if spec.name == tensor::INPUT_IDS {
                check_token_ids(spec, vocab_size, per_row, &input.data)
                    .inspect_err(|_| metrics.rejected(Reason::TokenIdOutOfRange))?;
            }
            // Triton's buffers carry no alignment promise: copy them as bytes.
            let start = values.len();
            values.resize(start + rows * per_row, T::zeroed());
            bytemuck::cast_slice_mut::<T, u8>(&mut values[start..]).copy_from_slice(&input.data);
            Ok(cursor.take(rows))
        })
        .collect();
    Gathered {
        requests,
        rows: cursor.total(),
        values,
    }
}

fn check_request(
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

/// A token id outside the embedding table would fail the whole batch inside
/// ONNX Runtime (or, negative, be read from the wrong end); it fails its own
/// request here, naming the element, the id and the limit.
fn check_token_ids(
    spec: &TensorSpec,
    vocab_size: Option<u64>,
    per_row: usize,
    data: &[u8],
) -> Result<(), RequestError> {
    let width = per_row.max(1) * 8;
    for (row, ids) in data.chunks_exact(width).enumerate() {
        for id in ids.chunks_exact(8) {
            let id = i64::from_le_bytes(id.try_into().expect("8 bytes"));
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
    fn run<T: Element + PrimitiveTensorElementType + std::fmt::Debug>(
        &mut self,
        rows: usize,
        values: Vec<T>,
    ) -> Result<HostTensor, String> {
        let (input, output) = (&self.io.input, &self.io.output);
        let mut shape = vec![rows as i64];
        shape.extend_from_slice(&input.dims);
        let value = Tensor::from_array((shape, values)).map_err(|e| e.to_string())?;
        let start = Instant::now();
        let outputs = self.session.run(ort::inputs![input.name.as_str() => value]);
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

    fn execute_typed<T: Element + PrimitiveTensorElementType + std::fmt::Debug>(
        &mut self,
        batch: &[Result<Input<'_>, RequestError>],
    ) -> BatchOutput {
        let Gathered {
            mut requests,
            rows,
            values,
        } = gather::<T>(&self.io.input, self.io.vocab_size, batch, &self.metrics);
        let io = Arc::clone(&self.io);
        let empty =
            || HostTensor::from_bytes(io.output.data_type, io.output.dims.clone(), Vec::new());
        let tensor = if rows == 0 {
            empty()
        } else {
            match self.run(rows, values) {
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
        BatchOutput {
            name: self.io.output.name.clone(),
            tensor,
            requests,
        }
    }
}

impl Runner for EncoderRunner {
    fn device(&self) -> Device {
        self.device
    }

    /// Joins the batch, runs the session once, answers each request with
    /// its rows of the output. A bad request fails alone; an ONNX Runtime
    /// failure fails the good ones.
    fn execute(&mut self, batch: &[Result<Input<'_>, RequestError>]) -> BatchOutput {
        match self.io.input.data_type {
            DataType::Int64 => self.execute_typed::<i64>(batch),
            DataType::Uint8 => self.execute_typed::<u8>(batch),
            DataType::Fp16 => self.execute_typed::<f16>(batch),
            _ => self.execute_typed::<f32>(batch),
        }
    }
}
