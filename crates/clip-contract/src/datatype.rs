//! Triton's tensor data types as this project uses them, with every
//! spelling in one place: config.pbtxt (`TYPE_FP32`), the inference
//! protocol (`FP32`) and the element size.

use std::fmt;

/// A Triton tensor data type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DataType {
    /// Length-prefixed byte strings: `TYPE_STRING` in configs, `BYTES` on the wire.
    Bytes,
    /// Decoded pixels, 0..=255 (the pixel path's HWC images).
    Uint8,
    Int32,
    Int64,
    Fp16,
    Fp32,
}

impl DataType {
    pub const ALL: [DataType; 6] = [
        DataType::Bytes,
        DataType::Uint8,
        DataType::Int32,
        DataType::Int64,
        DataType::Fp16,
        DataType::Fp32,
    ];

    /// As config.pbtxt spells it (`data_type: TYPE_FP32`).
    pub const fn config_name(self) -> &'static str {
        match self {
            DataType::Bytes => "TYPE_STRING",
            DataType::Uint8 => "TYPE_UINT8",
            DataType::Int32 => "TYPE_INT32",
            DataType::Int64 => "TYPE_INT64",
            DataType::Fp16 => "TYPE_FP16",
            DataType::Fp32 => "TYPE_FP32",
        }
    }

    /// As the KServe v2 inference protocol spells it (`"datatype": "FP32"`).
    pub const fn wire_name(self) -> &'static str {
        match self {
            DataType::Bytes => "BYTES",
            DataType::Uint8 => "UINT8",
            DataType::Int32 => "INT32",
            DataType::Int64 => "INT64",
            DataType::Fp16 => "FP16",
            DataType::Fp32 => "FP32",
        }
    }

    /// Bytes per element; `None` for BYTES, whose elements vary in length.
    pub const fn element_size(self) -> Option<usize> {
        match self {
            DataType::Bytes => None,
            DataType::Uint8 => Some(1),
            DataType::Int32 | DataType::Fp32 => Some(4),
            DataType::Int64 => Some(8),
            DataType::Fp16 => Some(2),
        }
    }

    pub fn from_config_name(name: &str) -> Option<DataType> {
        DataType::ALL.into_iter().find(|t| t.config_name() == name)
    }

    pub fn from_wire_name(name: &str) -> Option<DataType> {
        DataType::ALL.into_iter().find(|t| t.wire_name() == name)
    }
}

/// Messages name types as the user wrote them in config.pbtxt.
impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.config_name())
    }
}

/// One input or output of a model: its name, type and the dims after the
/// batch axis (-1 for a variable one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorSpec {
    pub name: String,
    pub data_type: DataType,
    pub dims: Vec<i64>,
}

impl TensorSpec {
    pub fn new(name: impl Into<String>, data_type: DataType, dims: Vec<i64>) -> Self {
        TensorSpec {
            name: name.into(),
            data_type,
            dims,
        }
    }

    /// Elements per batch row; `None` while a dim is variable.
    pub fn row_elements(&self) -> Option<usize> {
        self.dims
            .iter()
            .try_fold(1usize, |n, &d| usize::try_from(d).ok().map(|d| n * d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_round_trips() {
        for t in DataType::ALL {
            assert_eq!(DataType::from_config_name(t.config_name()), Some(t));
            assert_eq!(DataType::from_wire_name(t.wire_name()), Some(t));
            assert_eq!(
                t.config_name().strip_prefix("TYPE_").unwrap(),
                if t == DataType::Bytes {
                    "STRING"
                } else {
                    t.wire_name()
                }
            );
        }
        assert_eq!(DataType::from_config_name("TYPE_BF16"), None);
        assert_eq!(DataType::from_wire_name("TYPE_FP32"), None);
    }

    #[test]
    fn sizes_and_rows() {
        assert_eq!(DataType::Fp16.element_size(), Some(2));
        assert_eq!(DataType::Bytes.element_size(), None);
        let pixels = TensorSpec::new("PIXEL_VALUES", DataType::Fp32, vec![3, 224, 224]);
        assert_eq!(pixels.row_elements(), Some(3 * 224 * 224));
        let variable = TensorSpec::new("EMBEDDING", DataType::Fp32, vec![-1]);
        assert_eq!(variable.row_elements(), None);
    }
}
