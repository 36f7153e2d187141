//! Plain-Rust views of what a request carries in and out, independent of the
//! C API, so the processing code unit-tests without a server.

use std::borrow::Cow;
use std::fmt;

/// Triton's tensor data types that this backend reads or writes.
#[cfg_attr(test, allow(dead_code))] // Some variants come from the FFI layer only, absent in tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataType {
    Bytes,
    Int64,
    Fp32,
    Fp16,
    /// Anything else the server may hand over; always rejected.
    Other(u32),
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DataType::Bytes => f.write_str("BYTES"),
            DataType::Int64 => f.write_str("INT64"),
            DataType::Fp32 => f.write_str("FP32"),
            DataType::Fp16 => f.write_str("FP16"),
            DataType::Other(code) => write!(f, "data type #{code}"),
        }
    }
}

/// One input tensor of one request, its buffers joined.
pub struct Input<'a> {
    pub datatype: DataType,
    pub shape: Vec<i64>,
    pub data: Cow<'a, [u8]>,
}

/// Output values, typed so the FFI layer copies them out without conversion.
#[derive(Debug, PartialEq)]
pub enum OutputData {
    Int64(Vec<i64>),
    Fp32(Vec<f32>),
    Fp16(Vec<half::f16>),
}

impl OutputData {
    #[cfg_attr(test, allow(dead_code))] // Used by the FFI layer only, absent in tests.
    pub fn datatype(&self) -> DataType {
        match self {
            OutputData::Int64(_) => DataType::Int64,
            OutputData::Fp32(_) => DataType::Fp32,
            OutputData::Fp16(_) => DataType::Fp16,
        }
    }
}

/// One output tensor of one request.
#[derive(Debug, PartialEq)]
pub struct Output {
    pub name: &'static str,
    pub shape: Vec<i64>,
    pub data: OutputData,
}

/// Why one request failed; the rest of its batch is unaffected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestError {
    pub kind: ErrorKind,
    pub message: String,
}

#[cfg_attr(test, allow(dead_code))] // Internal errors come from the FFI layer only, absent in tests.
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

    #[cfg_attr(test, allow(dead_code))] // Used by the FFI layer only, absent in tests.
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
            input.datatype
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
    let mut elements = Vec::with_capacity(count);
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
}
