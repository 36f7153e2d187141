//! Triton's raw tensor encoding: `BYTES` elements with length prefixes, and
//! little-endian numeric outputs from `raw_output_contents`.

use clip_contract::{DataType, TensorSpec};

use crate::proto::model_infer_request::{InferInputTensor, InferRequestedOutputTensor};
use crate::proto::{ModelInferRequest, ModelInferResponse};
use crate::Error;

/// A request of `[n, 1]` `BYTES` items for tensor `input` of `model`,
/// asking for tensor `output`.
pub fn bytes_request(model: &str, input: &str, output: &str, items: &[&[u8]]) -> ModelInferRequest {
    ModelInferRequest {
        model_name: model.into(),
        inputs: vec![InferInputTensor {
            name: input.into(),
            datatype: DataType::Bytes.wire_name().into(),
            shape: vec![items.len() as i64, 1],
            ..Default::default()
        }],
        outputs: vec![InferRequestedOutputTensor {
            name: output.into(),
            ..Default::default()
        }],
        raw_input_contents: vec![serialize_bytes_tensor(items)],
        ..Default::default()
    }
}

/// A request of `n` fixed-size items of tensor `input` (its type and dims),
/// each item its raw little-endian elements, asking for tensor `output`.
pub fn fixed_request(
    model: &str,
    input: &TensorSpec,
    output: &str,
    items: &[&[u8]],
) -> ModelInferRequest {
    let mut shape = vec![items.len() as i64];
    shape.extend(&input.dims);
    ModelInferRequest {
        model_name: model.into(),
        inputs: vec![InferInputTensor {
            name: input.name.clone(),
            datatype: input.data_type.wire_name().into(),
            shape,
            ..Default::default()
        }],
        outputs: vec![InferRequestedOutputTensor {
            name: output.into(),
            ..Default::default()
        }],
        raw_input_contents: vec![items.concat()],
        ..Default::default()
    }
}

/// Encodes `BYTES` tensor elements in Triton's raw format: each element is
/// preceded by its length as a 4-byte little-endian unsigned integer, with
/// no padding. The result goes into `raw_input_contents`.
///
/// # Panics
///
/// If an element is 4 GiB or larger (not representable in the format).
pub fn serialize_bytes_tensor(items: &[&[u8]]) -> Vec<u8> {
    let total = items.iter().map(|item| 4 + item.len()).sum();
    let mut out = Vec::with_capacity(total);
    for item in items {
        let len = u32::try_from(item.len()).expect("BYTES tensor element must be under 4 GiB");
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(item);
    }
    out
}

/// Splits a raw little-endian buffer into `N`-byte chunks, or reports a
/// length that is not a whole number of elements.
fn le_chunks<'a, const N: usize>(
    bytes: &'a [u8],
    datatype: DataType,
) -> Result<impl Iterator<Item = [u8; N]> + 'a, Error> {
    debug_assert_eq!(datatype.element_size(), Some(N));
    if !bytes.len().is_multiple_of(N) {
        return Err(Error::RawLength {
            datatype,
            len: bytes.len(),
            elem_size: N,
        });
    }
    Ok(bytes
        .chunks_exact(N)
        .map(|chunk| <[u8; N]>::try_from(chunk).expect("chunks_exact yields N bytes")))
}

/// Decodes a raw `FP32` tensor (little-endian, as Triton sends it).
pub fn f32_from_raw(bytes: &[u8]) -> Result<Vec<f32>, Error> {
    Ok(le_chunks::<4>(bytes, DataType::Fp32)?
        .map(f32::from_le_bytes)
        .collect())
}

/// Decodes a raw `FP16` tensor (little-endian) and widens each value to
/// `f32`, which is exact.
pub fn f16_from_raw(bytes: &[u8]) -> Result<Vec<f32>, Error> {
    Ok(le_chunks::<2>(bytes, DataType::Fp16)?
        .map(|b| half::f16::from_le_bytes(b).to_f32())
        .collect())
}

/// Decodes a raw `INT64` tensor (little-endian).
pub fn i64_from_raw(bytes: &[u8]) -> Result<Vec<i64>, Error> {
    Ok(le_chunks::<8>(bytes, DataType::Int64)?
        .map(i64::from_le_bytes)
        .collect())
}

/// Output `name` of `response` as `f32` values: `FP32` as sent, `FP16`
/// widened (exactly). Any other type, or a missing output, is an error
/// naming the model, so a float embedding is never read from the wrong bytes.
pub fn output_as_f32(response: &ModelInferResponse, name: &str) -> Result<Vec<f32>, Error> {
    let bad = |reason: String| Error::Response {
        model: response.model_name.clone(),
        reason,
    };
    // raw_output_contents[i] holds the data of outputs[i].
    let position = response
        .outputs
        .iter()
        .position(|output| output.name == name)
        .ok_or_else(|| bad(format!("no {name} output")))?;
    let raw = response
        .raw_output_contents
        .get(position)
        .ok_or_else(|| bad(format!("no raw contents for output {name}")))?;
    let datatype = &response.outputs[position].datatype;
    match DataType::from_wire_name(datatype) {
        Some(DataType::Fp32) => f32_from_raw(raw),
        Some(DataType::Fp16) => f16_from_raw(raw),
        _ => Err(bad(format!(
            "output {name} is {datatype}; it must be {} or {}",
            DataType::Fp32.wire_name(),
            DataType::Fp16.wire_name()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_tensor_prefixes_each_element_with_le_u32_length() {
        let out = serialize_bytes_tensor(&[b"ab", b"", b"xyz"]);
        assert_eq!(
            out,
            [
                2, 0, 0, 0, b'a', b'b', //
                0, 0, 0, 0, //
                3, 0, 0, 0, b'x', b'y', b'z',
            ]
        );
    }

    #[test]
    fn bytes_tensor_length_is_little_endian_beyond_one_byte() {
        let big = vec![7u8; 0x0102];
        let out = serialize_bytes_tensor(&[&big]);
        assert_eq!(&out[..4], &[0x02, 0x01, 0, 0]);
        assert_eq!(out.len(), 4 + 0x0102);
        assert!(out[4..].iter().all(|&b| b == 7));
    }

    #[test]
    fn bytes_tensor_of_nothing_is_empty() {
        assert!(serialize_bytes_tensor(&[]).is_empty());
    }

    #[test]
    fn f32_round_trips_little_endian() {
        let values = [0.0f32, -1.5, 3.25, f32::MAX, f32::MIN_POSITIVE];
        let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(f32_from_raw(&raw).unwrap(), values);
        // 1.0f32 is 0x3F800000: little-endian puts 0x3F last.
        assert_eq!(f32_from_raw(&[0, 0, 0x80, 0x3F]).unwrap(), [1.0]);
    }

    #[test]
    fn f16_decodes_known_bit_patterns() {
        // 0x3C00 = 1.0, 0xC000 = -2.0, 0x3555 ~= 0.33325, 0x7BFF = 65504 (max).
        let raw = [0x00, 0x3C, 0x00, 0xC0, 0x55, 0x35, 0xFF, 0x7B];
        let got = f16_from_raw(&raw).unwrap();
        assert_eq!(got[0], 1.0);
        assert_eq!(got[1], -2.0);
        assert!((got[2] - 0.33325195).abs() < 1e-7);
        assert_eq!(got[3], 65504.0);
    }

    #[test]
    fn i64_round_trips_little_endian() {
        let values = [0i64, -1, 49406, i64::MIN, i64::MAX];
        let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(i64_from_raw(&raw).unwrap(), values);
    }

    #[test]
    fn empty_raw_buffers_decode_to_empty() {
        assert!(f32_from_raw(&[]).unwrap().is_empty());
        assert!(f16_from_raw(&[]).unwrap().is_empty());
        assert!(i64_from_raw(&[]).unwrap().is_empty());
    }

    #[test]
    fn ragged_raw_buffers_are_rejected_with_sizes() {
        let err = f32_from_raw(&[0; 6]).unwrap_err();
        assert!(matches!(
            err,
            Error::RawLength {
                datatype: DataType::Fp32,
                len: 6,
                elem_size: 4
            }
        ));
        assert!(err.to_string().contains("6 bytes"));
        assert!(matches!(
            f16_from_raw(&[0; 3]),
            Err(Error::RawLength { elem_size: 2, .. })
        ));
        assert!(matches!(
            i64_from_raw(&[0; 12]),
            Err(Error::RawLength { elem_size: 8, .. })
        ));
    }

    fn response(outputs: &[(&str, &str, Vec<u8>)]) -> ModelInferResponse {
        use crate::proto::model_infer_response::InferOutputTensor;
        ModelInferResponse {
            model_name: "clip_text".into(),
            outputs: outputs
                .iter()
                .map(|(name, datatype, _)| InferOutputTensor {
                    name: (*name).into(),
                    datatype: (*datatype).into(),
                    ..Default::default()
                })
                .collect(),
            raw_output_contents: outputs.iter().map(|(_, _, raw)| raw.clone()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn outputs_are_found_by_name_and_fp16_is_widened() {
        let fp32: Vec<u8> = [0.5f32, -2.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        // 0x3C00 = 1.0, 0xC000 = -2.0, 0x3555 ~= 0.33325.
        let fp16 = vec![0x00, 0x3C, 0x00, 0xC0, 0x55, 0x35];
        let both = response(&[("OTHER", "FP32", fp32.clone()), ("EMBEDDING", "FP16", fp16)]);
        assert_eq!(
            output_as_f32(&both, "EMBEDDING").unwrap(),
            [1.0, -2.0, 0.33325195]
        );
        assert_eq!(output_as_f32(&both, "OTHER").unwrap(), [0.5, -2.0]);
    }

    #[test]
    fn outputs_that_are_not_float_or_not_there_are_errors() {
        let ints = response(&[("EMBEDDING", "INT64", vec![0; 8])]);
        let err = output_as_f32(&ints, "EMBEDDING").unwrap_err().to_string();
        assert!(
            err.contains("clip_text") && err.contains("EMBEDDING is INT64"),
            "{err}"
        );
        let err = output_as_f32(&ints, "MISSING").unwrap_err().to_string();
        assert!(err.contains("no MISSING output"), "{err}");
        let mut no_data = ints.clone();
        no_data.raw_output_contents.clear();
        assert!(output_as_f32(&no_data, "EMBEDDING").is_err());
        let ragged = response(&[("EMBEDDING", "FP16", vec![0; 3])]);
        assert!(matches!(
            output_as_f32(&ragged, "EMBEDDING"),
            Err(Error::RawLength { elem_size: 2, .. })
        ));
    }
}
