//! Plain-Rust views of a batch: what each request carries in, the one
//! buffer every request's result lives in, and the cursor that hands out
//! its rows. Independent of the C API, so it unit-tests without a server.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

pub use clip_contract::DataType;

/// One input tensor of one request, its buffers joined.
#[derive(Clone)]
pub struct Input<'a> {
    pub datatype: DataType,
    pub shape: Vec<i64>,
    pub data: Cow<'a, [u8]>,
}

/// Everything one request carries in: its inputs, in the order its kind
/// names them ([`crate::kind::Kind::input_names`]). Most kinds take one.
#[derive(Clone)]
pub struct Request<'a> {
    pub inputs: Vec<Input<'a>>,
}

impl<'a> Request<'a> {
    /// The input a one-input kind reads (the first one it names).
    pub fn first(&self) -> Result<&Input<'a>, RequestError> {
        self.inputs
            .first()
            .ok_or_else(|| RequestError::internal("the request reached the model with no input"))
    }
}

impl<'a> From<Input<'a>> for Request<'a> {
    fn from(input: Input<'a>) -> Self {
        Request {
            inputs: vec![input],
        }
    }
}

/// A Rust element type of a Triton tensor.
pub trait Element: bytemuck::Pod + Send + Sync {
    const DATATYPE: DataType;
}

impl Element for u8 {
    const DATATYPE: DataType = DataType::Uint8;
}
impl Element for i32 {
    const DATATYPE: DataType = DataType::Int32;
}
impl Element for i64 {
    const DATATYPE: DataType = DataType::Int64;
}
impl Element for f32 {
    const DATATYPE: DataType = DataType::Fp32;
}
impl Element for half::f16 {
    const DATATYPE: DataType = DataType::Fp16;
}

/// A typed vector seen as the little-endian bytes Triton wants.
struct Typed<T>(Vec<T>);

impl<T: Element> AsRef<[u8]> for Typed<T> {
    fn as_ref(&self) -> &[u8] {
        bytemuck::cast_slice(&self.0)
    }
}

/// The one output buffer of a batch: every request's rows, back to back,
/// in host memory. Its bytes are what the FFI layer copies out, once.
pub struct HostTensor {
    datatype: DataType,
    /// Dims of one row (the shape after the batch axis).
    row_dims: Vec<i64>,
    row_bytes: usize,
    data: Box<dyn AsRef<[u8]> + Send>,
}

impl HostTensor {
    /// Rows of `values`, `row_dims` each.
    pub fn from_vec<T: Element>(row_dims: Vec<i64>, values: Vec<T>) -> HostTensor {
        HostTensor::from_bytes(T::DATATYPE, row_dims, Typed(values))
    }

    /// Rows held by someone else (an ONNX Runtime output), seen as bytes.
    pub fn from_bytes(
        datatype: DataType,
        row_dims: Vec<i64>,
        data: impl AsRef<[u8]> + Send + 'static,
    ) -> HostTensor {
        let row_elements: usize = row_dims.iter().map(|d| *d.max(&0) as usize).product();
        let element = datatype
            .element_size()
            .expect("batch buffers hold fixed-size elements");
        HostTensor {
            datatype,
            row_dims,
            row_bytes: row_elements * element,
            data: Box::new(data),
        }
    }

    pub fn datatype(&self) -> DataType {
        self.datatype
    }

    /// The shape of `rows` rows: `[rows, row_dims...]`.
    pub fn shape(&self, rows: usize) -> Vec<i64> {
        let mut shape = Vec::with_capacity(1 + self.row_dims.len());
        shape.push(rows as i64);
        shape.extend_from_slice(&self.row_dims);
        shape
    }

    /// The bytes of `rows`; `None` when the buffer is shorter, which is a
    /// runner's bug and answered as an internal error, never as data.
    pub fn bytes(&self, rows: Range<usize>) -> Option<&[u8]> {
        let all = (*self.data).as_ref();
        all.get(rows.start * self.row_bytes..rows.end * self.row_bytes)
    }
}

/// One output of a batch: its name and its one buffer.
pub struct NamedTensor {
    pub name: String,
    pub tensor: HostTensor,
}

/// One output of one request: its rows of a batch buffer.
#[derive(Debug, PartialEq)]
pub struct OutputRows<'b> {
    pub name: &'b str,
    pub datatype: DataType,
    pub shape: Vec<i64>,
    pub bytes: &'b [u8],
}

/// What a runner answers one batch with: one buffer per output, and for
/// each request (in order) the range of rows that is its result in every
/// one of them, or its error.
pub struct BatchOutput {
    pub tensors: Vec<NamedTensor>,
    pub requests: Vec<Result<Range<usize>, RequestError>>,
}

impl BatchOutput {
    /// A batch with one output.
    pub fn single(
        name: impl Into<String>,
        tensor: HostTensor,
        requests: Vec<Result<Range<usize>, RequestError>>,
    ) -> Self {
        BatchOutput {
            tensors: vec![NamedTensor {
                name: name.into(),
                tensor,
            }],
            requests,
        }
    }

    /// Request `index`'s result: its rows of every output, or its error.
    pub fn response(&self, index: usize) -> Result<Vec<OutputRows<'_>>, RequestError> {
        let rows = match self.requests.get(index) {
            Some(Ok(rows)) => rows.clone(),
            Some(Err(error)) => return Err(error.clone()),
            None => {
                return Err(RequestError::internal(
                    "the clip backend produced no result for this request",
                ))
            }
        };
        self.tensors
            .iter()
            .map(|named| {
                let bytes = named.tensor.bytes(rows.clone()).ok_or_else(|| {
                    RequestError::internal(format!(
                        "the clip backend's batch buffer '{}' lacks rows {rows:?} of this request",
                        named.name
                    ))
                })?;
                Ok(OutputRows {
                    name: &named.name,
                    datatype: named.tensor.datatype(),
                    shape: named.tensor.shape(rows.len()),
                    bytes,
                })
            })
            .collect()
    }

    /// Request `index`'s values of output `name`, typed (tests read results this way).
    #[cfg(test)]
    pub(crate) fn values_of<T: Element>(
        &self,
        name: &str,
        index: usize,
    ) -> Result<Vec<T>, RequestError> {
        let outputs = self.response(index)?;
        let rows = outputs
            .iter()
            .find(|o| o.name == name)
            .unwrap_or_else(|| panic!("no output '{name}'"));
        assert_eq!(rows.datatype, T::DATATYPE, "element type of {name}");
        Ok(bytemuck::pod_collect_to_vec(rows.bytes))
    }

    /// Request `index`'s values of the first output, typed.
    #[cfg(test)]
    pub(crate) fn values<T: Element>(&self, index: usize) -> Result<Vec<T>, RequestError> {
        self.values_of(&self.tensors[0].name, index)
    }

    /// Request `index`'s shape of the first output.
    #[cfg(test)]
    pub(crate) fn shape(&self, index: usize) -> Vec<i64> {
        self.response(index).expect("a result").remove(0).shape
    }

    /// The output names, in order.
    #[cfg(test)]
    pub(crate) fn names(&self) -> Vec<&str> {
        self.tensors.iter().map(|t| t.name.as_str()).collect()
    }
}

/// Hands out consecutive rows of one batch buffer to its requests, in
/// request order: the batch's one cursor. Every per-request lookup (pixels,
/// decode outcomes, embeddings) goes through the range it hands out.
#[derive(Default)]
pub struct Rows {
    next: usize,
}

impl Rows {
    pub fn take(&mut self, count: usize) -> Range<usize> {
        let range = self.next..self.next + count;
        self.next = range.end;
        range
    }

    /// Rows handed out so far.
    pub fn total(&self) -> usize {
        self.next
    }
}

/// Why one request failed; the rest of its batch is unaffected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestError {
    pub kind: ErrorKind,
    pub message: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The client sent something unusable: maps to TRITONSERVER_ERROR_INVALID_ARG.
    InvalidArg,
    /// Our fault or the server's: maps to TRITONSERVER_ERROR_INTERNAL.
    Internal,
}

impl RequestError {
    pub fn invalid(message: impl Into<String>) -> Self {
        RequestError {
            kind: ErrorKind::InvalidArg,
            message: message.into(),
        }
    }

    pub fn internal(message: impl Into<String>) -> Self {
        RequestError {
            kind: ErrorKind::Internal,
            message: message.into(),
        }
    }
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Refuses a request holding an element over `limit` bytes, naming the
/// first such element and the config parameter that sets the limit; checked
/// before any of the request's elements is worked on.
pub fn check_element_sizes(
    tensor: &str,
    elements: &[&[u8]],
    limit: usize,
    parameter: &str,
) -> Result<(), RequestError> {
    match elements.iter().position(|e| e.len() > limit) {
        Some(index) => Err(RequestError::invalid(format!(
            "{tensor} element {index} is {} bytes, over this model's limit of {limit} (parameter '{parameter}')",
            elements[index].len()
        ))),
        None => Ok(()),
    }
}

/// Checks that `input` is a batch of single BYTES elements (shape `[n, 1]`)
/// and splits Triton's serialisation (a 4-byte little-endian length before
/// each element) into the elements.
pub fn bytes_elements<'d>(
    tensor: &str,
    input: &'d Input<'_>,
) -> Result<Vec<&'d [u8]>, RequestError> {
    if input.datatype != DataType::Bytes {
        return Err(RequestError::invalid(format!(
            "input '{tensor}' must be BYTES (TYPE_STRING), got {}",
            input.datatype.wire_name()
        )));
    }
    let count = match input.shape.as_slice() {
        [n, 1] if *n >= 0 => *n as usize,
        shape => {
            return Err(RequestError::invalid(format!(
                "input '{tensor}' must have shape [batch, 1], got {shape:?}"
            )))
        }
    };
    let mut rest: &[u8] = &input.data;
    // The shape is the sender's word; every element takes at least its
    // 4-byte length, so the data bounds how many there can be.
    let mut elements = Vec::with_capacity(count.min(rest.len() / 4));
    for index in 0..count {
        let Some((prefix, tail)) = rest.split_first_chunk::<4>() else {
            return Err(RequestError::invalid(format!(
                "input '{tensor}' holds {index} of the {count} elements its shape announces"
            )));
        };
        let len = u32::from_le_bytes(*prefix) as usize;
        if tail.len() < len {
            return Err(RequestError::invalid(format!(
                "input '{tensor}' element {index} claims {len} bytes but only {} remain",
                tail.len()
            )));
        }
        let (element, tail) = tail.split_at(len);
        elements.push(element);
        rest = tail;
    }
    if !rest.is_empty() {
        return Err(RequestError::invalid(format!(
            "input '{tensor}' has {} bytes after its {count} elements",
            rest.len()
        )));
    }
    Ok(elements)
}

/// One request of BYTES elements, as Triton hands it over (tests).
#[cfg(test)]
pub(crate) fn bytes_request(elements: &[&[u8]]) -> Result<Request<'static>, RequestError> {
    Ok(Input {
        datatype: DataType::Bytes,
        shape: vec![elements.len() as i64, 1],
        data: Cow::Owned(serialize_bytes(elements)),
    }
    .into())
}

/// Triton's BYTES serialisation of `elements`.
#[cfg(test)]
pub(crate) fn serialize_bytes(elements: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for element in elements {
        out.extend_from_slice(&(element.len() as u32).to_le_bytes());
        out.extend_from_slice(element);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes_input(shape: Vec<i64>, data: Vec<u8>) -> Input<'static> {
        Input {
            datatype: DataType::Bytes,
            shape,
            data: Cow::Owned(data),
        }
    }

    #[test]
    fn each_request_reads_only_its_own_rows() {
        let mut rows = Rows::default();
        let ranges = [rows.take(2), rows.take(0), rows.take(1)];
        assert_eq!(ranges, [0..2, 2..2, 2..3]);
        assert_eq!(rows.total(), 3);
        let values: Vec<f32> = (0..6).map(|v| v as f32).collect();
        let output = BatchOutput::single(
            "EMBEDDING",
            HostTensor::from_vec(vec![2], values),
            vec![
                Ok(ranges[0].clone()),
                Err(RequestError::invalid("bad")),
                Ok(ranges[1].clone()),
                Ok(ranges[2].clone()),
                Ok(3..4),
            ],
        );
        let first = output.response(0).unwrap().remove(0);
        assert_eq!((first.name, first.datatype), ("EMBEDDING", DataType::Fp32));
        assert_eq!(first.shape, [2, 2]);
        assert_eq!(
            bytemuck::cast_slice::<u8, f32>(first.bytes),
            [0., 1., 2., 3.]
        );
        assert_eq!(output.response(1).unwrap_err().message, "bad");
        assert_eq!(output.shape(2), [0, 2]);
        assert_eq!(output.values::<f32>(3).unwrap(), [4., 5.]);
        // A range past the buffer, or a request without a result, is an
        // internal error for that request, never other rows.
        for index in [4, 5] {
            assert_eq!(
                output.response(index).unwrap_err().kind,
                ErrorKind::Internal
            );
        }
    }

    #[test]
    fn splits_elements_in_order() {
        let input = bytes_input(vec![3, 1], serialize_bytes(&[b"a photo", b"", b"of a cat"]));
        let elements = bytes_elements("TEXT", &input).unwrap();
        assert_eq!(elements, vec![&b"a photo"[..], b"", b"of a cat"]);
    }

    #[test]
    fn rejects_shape_other_than_batch_by_one() {
        let input = bytes_input(vec![1, 2], serialize_bytes(&[b"a", b"b"]));
        let err = bytes_elements("TEXT", &input).unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidArg);
        assert!(err.message.contains("[batch, 1]"), "{err}");
    }

    #[test]
    fn rejects_wrong_datatype() {
        let input = Input {
            datatype: DataType::Fp32,
            shape: vec![1, 1],
            data: Cow::Owned(vec![0; 4]),
        };
        assert!(bytes_elements("IMAGE", &input)
            .unwrap_err()
            .message
            .contains("BYTES"));
    }

    #[test]
    fn rejects_truncated_and_overlong_payloads() {
        let mut data = serialize_bytes(&[b"hello"]);
        data.pop();
        let err = bytes_elements("TEXT", &bytes_input(vec![1, 1], data)).unwrap_err();
        assert!(err.message.contains("claims 5 bytes"), "{err}");

        let err =
            bytes_elements("TEXT", &bytes_input(vec![2, 1], serialize_bytes(&[b"x"]))).unwrap_err();
        assert!(err.message.contains("1 of the 2 elements"), "{err}");

        let mut data = serialize_bytes(&[b"x"]);
        data.push(7);
        let err = bytes_elements("TEXT", &bytes_input(vec![1, 1], data)).unwrap_err();
        assert!(err.message.contains("1 bytes after"), "{err}");
    }

    /// Found by fuzzing (fuzz/regressions/bytes_elements): a batch size far
    /// beyond the data reserved room for that many elements first, a
    /// "capacity overflow" panic or an abort on the failed allocation.
    #[test]
    fn a_huge_batch_size_is_refused_without_reserving_it() {
        for n in [i64::MAX, 0x0101_0101_0101_0101, 1 << 40] {
            let input = bytes_input(vec![n, 1], serialize_bytes(&[b"x"]));
            let err = bytes_elements("TEXT", &input).unwrap_err();
            assert!(err.message.contains("holds 1 of the"), "{err}");
        }
    }
}
