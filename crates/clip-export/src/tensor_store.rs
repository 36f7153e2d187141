//! Where [`crate::weights`] reads named tensors from: a safetensors file or
//! a torch.save zip checkpoint, told apart by their first bytes (a zip
//! local header, the legacy format's pickled magic number, else a
//! safetensors header), not by the file's name.

use safetensors::{Dtype, SafeTensors};

use crate::error::{ExportError, Result};
use crate::torch_zip::{self, TorchCheckpoint, TorchError};

/// The float element types weights are read from, all widened to f32.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FloatDtype {
    F32,
    F16,
    BF16,
}

impl FloatDtype {
    pub(crate) fn size(self) -> usize {
        match self {
            FloatDtype::F32 => 4,
            FloatDtype::F16 | FloatDtype::BF16 => 2,
        }
    }

    /// One little-endian element of `self.size()` bytes.
    pub(crate) fn decode(self, b: &[u8]) -> f32 {
        match self {
            FloatDtype::F32 => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            FloatDtype::F16 => half::f16::from_le_bytes([b[0], b[1]]).to_f32(),
            FloatDtype::BF16 => half::bf16::from_le_bytes([b[0], b[1]]).to_f32(),
        }
    }

    /// Consecutive little-endian elements.
    pub(crate) fn widen(self, bytes: &[u8]) -> Vec<f32> {
        bytes
            .chunks_exact(self.size())
            .map(|b| self.decode(b))
            .collect()
    }
}

/// A file's named tensors.
pub(crate) enum TensorStore<'data> {
    Safetensors(SafeTensors<'data>),
    Torch(TorchCheckpoint<'data>),
}

impl<'data> TensorStore<'data> {
    pub(crate) fn parse(bytes: &'data [u8]) -> Result<Self> {
        if torch_zip::is_zip(bytes) {
            return Ok(TensorStore::Torch(TorchCheckpoint::parse(bytes)?));
        }
        if torch_zip::is_legacy(bytes) {
            return Err(TorchError::LegacyFormat.into());
        }
        SafeTensors::deserialize(bytes)
            .map(TensorStore::Safetensors)
            .map_err(|e| ExportError::Safetensors(e.to_string()))
    }

    pub(crate) fn names(&self) -> Vec<String> {
        match self {
            TensorStore::Safetensors(st) => st.names().into_iter().map(str::to_string).collect(),
            TensorStore::Torch(ckpt) => ckpt.names().map(str::to_string).collect(),
        }
    }

    /// The tensor's shape, `None` if the file has no tensor `key`.
    pub(crate) fn shape(&self, key: &str) -> Option<Vec<usize>> {
        match self {
            TensorStore::Safetensors(st) => st.tensor(key).ok().map(|v| v.shape().to_vec()),
            TensorStore::Torch(ckpt) => ckpt.get(key).map(|t| t.shape().to_vec()),
        }
    }

    /// The tensor's elements widened to f32, row-major; `None` if the file
    /// has no tensor `key`.
    pub(crate) fn read_f32(&self, key: &str) -> Option<Result<Vec<f32>>> {
        let unsupported = |dtype: String| ExportError::UnsupportedDtype {
            key: key.to_string(),
            dtype,
        };
        Some(match self {
            TensorStore::Safetensors(st) => {
                let view = st.tensor(key).ok()?;
                let dtype = match view.dtype() {
                    Dtype::F32 => FloatDtype::F32,
                    Dtype::F16 => FloatDtype::F16,
                    Dtype::BF16 => FloatDtype::BF16,
                    other => return Some(Err(unsupported(format!("{other:?}")))),
                };
                Ok(dtype.widen(view.data()))
            }
            TensorStore::Torch(ckpt) => {
                let tensor = ckpt.get(key)?;
                tensor
                    .to_f32()
                    .ok_or_else(|| unsupported(tensor.dtype().to_string()))
            }
        })
    }
}
