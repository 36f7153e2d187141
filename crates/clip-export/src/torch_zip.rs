//! PyTorch checkpoints in torch.save's zip format (torch >= 1.6):
//! `<archive>/data.pkl` (the pickled object), `<archive>/data/<key>` (one
//! record per storage), `<archive>/byteorder`. The pickle is read by
//! this crate's pickle reader, which calls no Python; tensors stay strided views of
//! the memory-mapped records until one is read.
//!
//! The state dict is the top-level dict, or the dict under `state_dict` (as
//! open_clip's training checkpoints nest it, which open_clip's
//! `load_state_dict` reads) or under `model`; a `module.` prefix on every
//! key (DistributedDataParallel's) is dropped, as open_clip does.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::pickle::{self, Object, Pickle, StorageDtype, TensorRef, Value};
use crate::tensor_store::FloatDtype;
use crate::zip_archive::ZipArchive;

/// What can be wrong with a torch checkpoint.
#[derive(Debug, thiserror::Error)]
pub enum TorchError {
    #[error(
        "a pickle without a zip archive around it: the legacy torch.save format (before torch 1.6), \
         which is not read; re-save it with a current torch (torch.save(torch.load(path), path)) \
         or convert it to safetensors"
    )]
    LegacyFormat,

    #[error(
        "a TorchScript archive (torch.jit.save; openai's CLIP .pt files are these) is a program, \
         not a state dict, and is not read; use the model's safetensors weights instead \
         (open_clip_model.safetensors or transformers' model.safetensors)"
    )]
    TorchScript,

    #[error("written on a {0}-endian machine; only little-endian checkpoints are read")]
    ByteOrder(String),

    #[error("not a readable zip archive: {0}")]
    Zip(String),

    #[error("archive record {name}: {message}")]
    Entry { name: String, message: String },

    #[error("data.pkl at byte {offset}: {message}")]
    Pickle { offset: usize, message: String },

    #[error("data.pkl at byte {offset}: opcode 0x{opcode:02x} is not one torch.save writes")]
    UnknownOpcode { offset: usize, opcode: u8 },

    #[error(
        "data.pkl calls {name}, which is refused: a pickle is a program, and only torch's tensor \
         rebuilders, its typed storages and collections.OrderedDict are allowed"
    )]
    ForbiddenGlobal { name: String },

    #[error("no state dict: {0}")]
    NoStateDict(String),

    #[error("tensor {key}: {message}")]
    Tensor { key: String, message: String },
}

/// `PK\x03\x04`: a zip archive's first local header.
const ZIP_MAGIC: &[u8] = b"PK\x03\x04";

/// Whether `bytes` start like a zip archive (as torch.save's do).
pub fn is_zip(bytes: &[u8]) -> bool {
    bytes.starts_with(ZIP_MAGIC)
}

/// The legacy format's first pickle: torch's magic number 0x1950a86a20f9469cfc6c as LONG1.
const LEGACY_MAGIC: [u8; 12] = [
    0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19,
];

/// Whether `bytes` start like the legacy torch.save format (before torch
/// 1.6): a bare pickle of torch's magic number (PROTO 2 to 5, a FRAME from
/// protocol 4 on).
pub fn is_legacy(bytes: &[u8]) -> bool {
    let [0x80, 2..=5, rest @ ..] = bytes else {
        return false;
    };
    let rest = match rest {
        [0x95, _, _, _, _, _, _, _, _, framed @ ..] => framed,
        _ => rest,
    };
    rest.starts_with(&LEGACY_MAGIC)
}

/// TorchScript's records (`<archive>/constants.pkl`, `<archive>/code/...`),
/// which torch.save never writes.
fn is_torchscript_record(name: &str) -> bool {
    name.split_once('/')
        .is_some_and(|(_, rest)| rest == "constants.pkl" || rest.starts_with("code/"))
}

/// A tensor of a checkpoint: a strided view of a storage record.
#[derive(Clone, Debug)]
pub struct StridedTensor<'data> {
    dtype: StorageDtype,
    /// The whole storage record, checked to hold every element the view reads.
    storage: &'data [u8],
    offset: usize,
    shape: Vec<usize>,
    stride: Vec<usize>,
}

impl StridedTensor<'_> {
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// torch's name of the element type: `float32`, `float16`, `int64`, ...
    pub fn dtype(&self) -> &'static str {
        self.dtype.name()
    }

    /// The elements in row-major order, widened to f32; `None` unless the
    /// dtype is float32, float16 or bfloat16.
    pub fn to_f32(&self) -> Option<Vec<f32>> {
        let dtype = match self.dtype {
            StorageDtype::Float => FloatDtype::F32,
            StorageDtype::Half => FloatDtype::F16,
            StorageDtype::BFloat16 => FloatDtype::BF16,
            _ => return None,
        };
        let width = dtype.size();
        let count: usize = self.shape.iter().product();
        if count == 0 {
            return Some(Vec::new());
        }
        if self.is_contiguous() {
            let start = self.offset * width;
            return Some(dtype.widen(&self.storage[start..start + count * width]));
        }
        // An odometer over the index space; positions wrap (a stride of a
        // size-1 dimension may be anything) but every one read is in bounds.
        let mut out = Vec::with_capacity(count);
        let mut index = vec![0usize; self.shape.len()];
        let mut pos = self.offset;
        for _ in 0..count {
            out.push(dtype.decode(&self.storage[pos * width..(pos + 1) * width]));
            for d in (0..index.len()).rev() {
                index[d] += 1;
                pos = pos.wrapping_add(self.stride[d]);
                if index[d] < self.shape[d] {
                    break;
                }
                pos = pos.wrapping_sub(self.stride[d].wrapping_mul(self.shape[d]));
                index[d] = 0;
            }
        }
        Some(out)
    }

    fn is_contiguous(&self) -> bool {
        let mut expected = 1;
        for (&size, &stride) in self.shape.iter().zip(&self.stride).rev() {
            if size != 1 && stride != expected {
                return false;
            }
            expected *= size;
        }
        true
    }
}

/// A torch.save checkpoint's state dict over the archive's bytes.
#[derive(Debug)]
pub struct TorchCheckpoint<'data> {
    tensors: BTreeMap<String, StridedTensor<'data>>,
}

impl<'data> TorchCheckpoint<'data> {
    /// Reads the archive's directory and pickle and checks every tensor of
    /// the state dict against its storage record (CRC-32 included).
    pub fn parse(bytes: &'data [u8]) -> Result<Self, TorchError> {
        if !is_zip(bytes) {
            return Err(if is_legacy(bytes) {
                TorchError::LegacyFormat
            } else {
                TorchError::Zip("no zip local header at the start".into())
            });
        }
        let archive = ZipArchive::parse(bytes)?;
        if archive.names().any(is_torchscript_record) {
            return Err(TorchError::TorchScript);
        }
        let prefix = archive_prefix(&archive)?;
        check_byte_order(&archive, &prefix)?;
        let pickle = archive.read(&format!("{prefix}/data.pkl"))?;
        Self::from_pickle(&archive, &prefix, pickle)
    }

    /// The state dict of `data.pkl`, each tensor checked against its record.
    fn from_pickle(
        archive: &ZipArchive<'data>,
        prefix: &str,
        data_pkl: &[u8],
    ) -> Result<Self, TorchError> {
        let pickle = pickle::load(data_pkl)?;
        let mut storages: HashMap<Arc<str>, (StorageDtype, &'data [u8])> = HashMap::new();
        let mut tensors = BTreeMap::new();
        for (key, tensor) in state_dict(&pickle)? {
            let storage = &tensor.storage;
            let bytes = match storages.get(&storage.key) {
                Some(&(dtype, bytes)) if dtype == storage.dtype => bytes,
                Some((dtype, _)) => {
                    return Err(tensor_error(
                        &key,
                        format!(
                            "storage {} is read as {} and as {}",
                            storage.key,
                            dtype.name(),
                            storage.dtype.name()
                        ),
                    ))
                }
                None => {
                    let bytes = archive.read(&format!("{prefix}/data/{}", storage.key))?;
                    storages.insert(storage.key.clone(), (storage.dtype, bytes));
                    bytes
                }
            };
            let view = strided(&key, tensor, bytes)?;
            tensors.insert(key, view);
        }
        Ok(TorchCheckpoint { tensors })
    }

    /// The state dict's keys, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    pub fn get(&self, key: &str) -> Option<&StridedTensor<'data>> {
        self.tensors.get(key)
    }
}

fn tensor_error(key: &str, message: String) -> TorchError {
    TorchError::Tensor {
        key: key.to_string(),
        message,
    }
}

/// The one folder every record sits in (torch names it after the file).
fn archive_prefix(archive: &ZipArchive) -> Result<String, TorchError> {
    let mut pickles = archive.names().filter_map(|n| {
        n.strip_suffix("/data.pkl")
            .filter(|prefix| !prefix.contains('/'))
    });
    match (pickles.next(), pickles.next()) {
        (Some(prefix), None) => Ok(prefix.to_string()),
        (None, _) => Err(TorchError::Zip(
            "no <archive>/data.pkl record: a zip archive, but not a torch.save checkpoint".into(),
        )),
        (Some(a), Some(b)) => Err(TorchError::Zip(format!(
            "two pickles, {a}/data.pkl and {b}/data.pkl"
        ))),
    }
}

/// torch before 1.9 wrote no byteorder record; its checkpoints are little-endian.
fn check_byte_order(archive: &ZipArchive, prefix: &str) -> Result<(), TorchError> {
    let name = format!("{prefix}/byteorder");
    if !archive.contains(&name) {
        return Ok(());
    }
    match archive.read(&name)? {
        b"little" => Ok(()),
        b"big" => Err(TorchError::ByteOrder("big".into())),
        other => Err(TorchError::Entry {
            name,
            message: format!(
                "{:?} is neither little nor big",
                String::from_utf8_lossy(other)
            ),
        }),
    }
}

/// The dict items of `value` with string keys, or `None` if it is no dict.
fn string_items<'p>(
    pickle: &'p Pickle,
    value: &Value,
) -> Option<Result<Vec<(&'p str, &'p Value)>, TorchError>> {
    let Some(Object::Dict(items)) = pickle.object(value) else {
        return None;
    };
    Some(
        items
            .iter()
            .map(|(k, v)| match k {
                Value::Str(s) => Ok((&**s, v)),
                other => Err(TorchError::NoStateDict(format!(
                    "a dict key is {}, not a string",
                    other.kind(&pickle.heap)
                ))),
            })
            .collect(),
    )
}

/// The state dict: see the module's documentation for where it is looked for.
fn state_dict(pickle: &Pickle) -> Result<BTreeMap<String, TensorRef>, TorchError> {
    let root = string_items(pickle, &pickle.root).ok_or_else(|| {
        TorchError::NoStateDict(format!(
            "data.pkl holds {}, not a dict",
            pickle.root.kind(&pickle.heap)
        ))
    })??;
    let nested = ["state_dict", "model"].iter().find_map(|wanted| {
        root.iter()
            .rev()
            .find(|(key, _)| key == wanted)
            .and_then(|(_, value)| string_items(pickle, value))
    });
    let items = nested.transpose()?.unwrap_or(root);
    let mut tensors = BTreeMap::new();
    for (key, value) in &items {
        match pickle.object(value) {
            Some(Object::Tensor(tensor)) => {
                tensors.insert(key.to_string(), tensor.clone());
            }
            _ => {
                return Err(TorchError::NoStateDict(format!(
                    "entry {key} is {}, not a tensor (a state dict is read at the top level, \
                     or under state_dict or model)",
                    value.kind(&pickle.heap)
                )))
            }
        }
    }
    let prefix = "module.";
    if !tensors.is_empty() && tensors.keys().all(|k| k.starts_with(prefix)) {
        tensors = tensors
            .into_iter()
            .map(|(k, v)| (k[prefix.len()..].to_string(), v))
            .collect();
    }
    Ok(tensors)
}

/// Checks a view against its storage record and converts it to indices.
fn strided<'data>(
    key: &str,
    tensor: TensorRef,
    bytes: &'data [u8],
) -> Result<StridedTensor<'data>, TorchError> {
    let storage = &tensor.storage;
    let width = storage.dtype.size() as u64;
    if storage.numel.checked_mul(width) != Some(bytes.len() as u64) {
        return Err(tensor_error(
            key,
            format!(
                "storage {} has {} bytes where its {} {} elements take {}",
                storage.key,
                bytes.len(),
                storage.numel,
                storage.dtype.name(),
                storage.numel.saturating_mul(width)
            ),
        ));
    }
    let too_big = || tensor_error(key, "a size or stride beyond this machine's range".into());
    let count = tensor
        .size
        .iter()
        .try_fold(1u64, |acc, &s| acc.checked_mul(s))
        .ok_or_else(too_big)?;
    if count > 0 {
        let last = tensor
            .size
            .iter()
            .zip(&tensor.stride)
            .try_fold(tensor.offset, |acc, (&size, &stride)| {
                acc.checked_add((size - 1).checked_mul(stride)?)
            })
            .ok_or_else(too_big)?;
        if last >= storage.numel {
            return Err(tensor_error(
                key,
                format!(
                    "the view (offset {}, size {:?}, stride {:?}) reads element {last} of storage {}, \
                     which holds {} (the storage is shorter than the view needs)",
                    tensor.offset, tensor.size, tensor.stride, storage.key, storage.numel
                ),
            ));
        }
    }
    let to_usize = |v: &u64| usize::try_from(*v).map_err(|_| too_big());
    Ok(StridedTensor {
        dtype: storage.dtype,
        storage: bytes,
        offset: to_usize(&tensor.offset)?,
        shape: tensor.size.iter().map(to_usize).collect::<Result<_, _>>()?,
        stride: tensor
            .stride
            .iter()
            .map(to_usize)
            .collect::<Result<_, _>>()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pickle::StorageRef;

    fn view(offset: u64, size: &[u64], stride: &[u64], numel: u64) -> TensorRef {
        TensorRef {
            storage: StorageRef {
                dtype: StorageDtype::Float,
                key: "0".into(),
                numel,
            },
            offset,
            size: size.to_vec(),
            stride: stride.to_vec(),
        }
    }

    fn floats(values: &[f32]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    #[test]
    fn strided_views_read_in_row_major_order() {
        let bytes = floats(&[0., 1., 2., 3., 4., 5.]);
        let read = |offset, size: &[u64], stride: &[u64]| {
            strided("t", view(offset, size, stride, 6), &bytes)
                .unwrap()
                .to_f32()
                .unwrap()
        };
        assert_eq!(read(0, &[2, 3], &[3, 1]), [0., 1., 2., 3., 4., 5.]);
        assert_eq!(read(0, &[3, 2], &[1, 3]), [0., 3., 1., 4., 2., 5.]);
        assert_eq!(read(4, &[2], &[1]), [4., 5.]);
        assert_eq!(read(1, &[2, 2], &[0, 2]), [1., 3., 1., 3.]);
        assert_eq!(read(5, &[], &[]), [5.]);
        assert_eq!(read(9, &[0, 4], &[4, 1]), [] as [f32; 0]);
        // a size-1 dimension's stride is never stepped through
        assert_eq!(read(2, &[1, 2], &[u64::MAX / 2, 1]), [2., 3.]);
    }

    /// Every truncation and many byte flips of a real data.pkl: errors, or a
    /// checkpoint whose every tensor can be read, never a panic.
    #[test]
    fn damaged_pickles_never_panic() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/fixtures/torch-checkpoint/views.bin"
        );
        let bytes = std::fs::read(path).unwrap();
        let archive = ZipArchive::parse(&bytes).unwrap();
        let pickle = archive.read("views/data.pkl").unwrap();
        let parse = |data: &[u8]| {
            TorchCheckpoint::from_pickle(&archive, "views", data).map(|c| {
                c.tensors.values().for_each(|t| {
                    t.to_f32();
                })
            })
        };
        assert!(parse(pickle).is_ok());
        for len in 0..pickle.len() {
            assert!(parse(&pickle[..len]).is_err(), "{len} bytes parsed");
        }
        let mut readable = 0;
        for pos in 0..pickle.len() {
            for flip in [0x01, 0x02, 0x10, 0x80, 0xff] {
                let mut damaged = pickle.to_vec();
                damaged[pos] ^= flip;
                readable += usize::from(parse(&damaged).is_ok());
            }
        }
        eprintln!(
            "{readable} of {} flipped pickles still parse",
            pickle.len() * 5
        );
    }

    #[test]
    fn state_dicts_are_found_where_open_clip_looks() {
        // {"epoch": 1}: no tensors anywhere
        let pickle = pickle::load(b"\x80\x02}(X\x05\x00\x00\x00epochK\x01u.").unwrap();
        let err = state_dict(&pickle).unwrap_err();
        assert!(err.to_string().contains("entry epoch is an int"), "{err}");
        // a list at the top
        let pickle = pickle::load(b"\x80\x02].").unwrap();
        assert!(state_dict(&pickle)
            .unwrap_err()
            .to_string()
            .contains("a list"));
    }

    #[test]
    fn legacy_files_are_told_from_safetensors_headers() {
        let legacy = [&[0x80, 2][..], &LEGACY_MAGIC, b"."].concat();
        assert!(is_legacy(&legacy));
        let framed = [
            &[0x80, 4, 0x95][..],
            &[14, 0, 0, 0, 0, 0, 0, 0],
            &LEGACY_MAGIC,
        ]
        .concat();
        assert!(is_legacy(&framed));
        // a safetensors file with a 640-byte header starts 0x80 0x02 too
        assert!(!is_legacy(&[0x80, 2, 0, 0, 0, 0, 0, 0, b'{', b'"']));
    }

    #[test]
    fn views_past_their_storage_are_refused() {
        let bytes = floats(&[0.; 6]);
        for (offset, size, stride) in [
            (0, vec![2, 4], vec![3, 1]),
            (6, vec![], vec![]),
            (0, vec![7], vec![1]),
            (0, vec![2, 2], vec![u64::MAX, 1]),
        ] {
            let err = strided("t", view(offset, &size, &stride, 6), &bytes).unwrap_err();
            assert!(matches!(err, TorchError::Tensor { .. }), "{err}");
        }
        let err = strided("t", view(0, &[6], &[1], 7), &bytes).unwrap_err();
        assert!(err.to_string().contains("has 24 bytes"), "{err}");
    }
}
