//! The append-only log, `items.log`: the index's one source of truth. A
//! header names the format, dimension and model; then each append is one
//! frame holding its items (kind, source, embedding), checksummed, written
//! and fsynced before the append returns.
//!
//! A writer killed mid-append leaves at most its last frame incomplete: the
//! next frame is only written after the previous one was fsynced. Reading
//! drops such a torn tail (its batch was never reported written), and refuses
//! anything else that does not verify, so no damage passes unnoticed.

use std::fs::File;
use std::io::{BufReader, ErrorKind, Read};
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::error::{io_error, Error, Result};
use crate::item::{Item, ItemId, ItemKind};
use crate::spec::IndexSpec;

/// The log's name in the index directory.
pub(crate) const LOG_FILE: &str = "items.log";
/// The first bytes of a log: the format's name and version.
const MAGIC: &[u8; 8] = b"clipidx2";
/// The format's name, in errors about other versions.
pub(crate) const FORMAT: &str = "clip-index/2";
const FRAME_TAG: &[u8; 4] = b"BTCH";
/// tag, first id, count, payload length (u64), payload checksum, header checksum.
const FRAME_HEADER: usize = 4 + 4 + 4 + 8 + 4 + 4;

/// The bytes of a new log's header.
pub(crate) fn encode_header(spec: &IndexSpec) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&(spec.dim as u32).to_le_bytes());
    body.extend_from_slice(&(spec.model.len() as u32).to_le_bytes());
    body.extend_from_slice(spec.model.as_bytes());
    let mut header = MAGIC.to_vec();
    header.extend_from_slice(&(body.len() as u32).to_le_bytes());
    header.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    header.extend_from_slice(&body);
    header
}

/// The frame of one append: `items` with ids from `first`.
pub(crate) fn encode_frame(first: ItemId, items: &[Item<'_>]) -> Vec<u8> {
    let mut payload = Vec::new();
    for item in items {
        payload.push(item.kind.tag());
        payload.extend_from_slice(&(item.source.len() as u32).to_le_bytes());
        payload.extend_from_slice(item.source.as_bytes());
        for value in item.embedding {
            payload.extend_from_slice(&value.to_le_bytes());
        }
    }
    let mut frame = Vec::with_capacity(FRAME_HEADER + payload.len());
    frame.extend_from_slice(FRAME_TAG);
    frame.extend_from_slice(&first.to_le_bytes());
    frame.extend_from_slice(&(items.len() as u32).to_le_bytes());
    frame.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    frame.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    let header_crc = crc32fast::hash(&frame);
    frame.extend_from_slice(&header_crc.to_le_bytes());
    frame.extend_from_slice(&payload);
    frame
}

/// Writes `bytes` at `offset` and waits until they are on disk.
pub(crate) fn write_durably(log: &File, offset: u64, bytes: &[u8], path: &Path) -> Result<()> {
    log.write_all_at(bytes, offset)
        .and_then(|()| log.sync_data())
        .map_err(|source| io_error(path, source))
}

/// How far a log was read.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LogEnd {
    /// The items read.
    pub(crate) items: u64,
    /// Where the last whole frame ends: the next frame goes there.
    pub(crate) valid_len: u64,
}

impl LogEnd {
    /// A log of `spec` with no frame yet.
    pub(crate) fn empty(spec: &IndexSpec) -> LogEnd {
        LogEnd {
            items: 0,
            valid_len: encode_header(spec).len() as u64,
        }
    }
}

/// Reads the log's header.
pub(crate) fn read_header(log: &mut impl Read, path: &Path) -> Result<IndexSpec> {
    let not_an_index = |reason: &str| Error::NotAnIndex {
        path: path.to_owned(),
        reason: reason.into(),
    };
    let mut fixed = [0u8; 16];
    let whole = read_exact_or_none(log, &mut fixed, path)?;
    if whole.is_none() {
        return Err(Error::Corrupt(format!(
            "{} is cut short: it does not even hold its header",
            path.display()
        )));
    }
    if fixed[..7] != MAGIC[..7] {
        return Err(not_an_index(
            "items.log does not start with the index's magic bytes",
        ));
    }
    if fixed[7] != MAGIC[7] {
        return Err(Error::UnsupportedFormat {
            found: format!("clip-index/{}", fixed[7]),
        });
    }
    let body_len = u32::from_le_bytes(fixed[8..12].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(fixed[12..16].try_into().expect("4 bytes"));
    let corrupt = || Error::Corrupt("the header of items.log does not verify".into());
    if body_len > 1 << 20 {
        return Err(corrupt());
    }
    let mut body = vec![0u8; body_len];
    read_exact_or_none(log, &mut body, path)?.ok_or_else(corrupt)?;
    if crc32fast::hash(&body) != crc || body.len() < 8 {
        return Err(corrupt());
    }
    let dim = u32::from_le_bytes(body[0..4].try_into().expect("4 bytes")) as usize;
    let model_len = u32::from_le_bytes(body[4..8].try_into().expect("4 bytes")) as usize;
    let model = body
        .get(8..)
        .filter(|model| model.len() == model_len)
        .and_then(|model| std::str::from_utf8(model).ok())
        .ok_or_else(corrupt)?;
    Ok(IndexSpec {
        dim,
        model: model.to_owned(),
    })
}

/// Reads the frames from `from` on, handing each item to `on_item` in id
/// order. The caller holds the log's lock, so no frame is being written and a
/// frame cut short is a torn one.
pub(crate) fn read_frames(
    log: &File,
    path: &Path,
    spec: &IndexSpec,
    from: LogEnd,
    mut on_item: impl FnMut(ItemKind, &str, &[f32]),
) -> Result<LogEnd> {
    let file_len = log
        .metadata()
        .map_err(|source| io_error(path, source))?
        .len();
    if file_len < from.valid_len {
        return Err(Error::Corrupt(format!(
            "{} shrank to {file_len} bytes; {} were read from it already",
            path.display(),
            from.valid_len
        )));
    }
    if file_len == from.valid_len {
        return Ok(from);
    }
    let LogEnd {
        mut items,
        valid_len: mut offset,
    } = from;
    let mut reader = BufReader::with_capacity(1 << 20, log);
    std::io::Seek::seek(&mut reader, std::io::SeekFrom::Start(offset))
        .map_err(|source| io_error(path, source))?;
    let mut payload = Vec::new();
    let mut embedding = vec![0f32; spec.dim];
    loop {
        let remaining = file_len - offset;
        if remaining == 0 {
            break;
        }
        let torn = |reason: &str| -> Result<()> {
            if is_torn_tail(log, offset, file_len, path)? {
                Ok(())
            } else {
                Err(Error::Corrupt(format!(
                    "items.log: the frame at byte {offset} {reason}, and {remaining} bytes \
                     follow it (not a write cut short)"
                )))
            }
        };
        let mut header = [0u8; FRAME_HEADER];
        if read_exact_or_none(&mut reader, &mut header, path)?.is_none() {
            torn("is cut short")?;
            break;
        }
        let field = |range: std::ops::Range<usize>| &header[range];
        let header_crc = u32::from_le_bytes(field(24..28).try_into().expect("4 bytes"));
        if field(0..4) != FRAME_TAG || crc32fast::hash(&header[..24]) != header_crc {
            torn("has a damaged header")?;
            break;
        }
        let first = u32::from_le_bytes(field(4..8).try_into().expect("4 bytes"));
        let count = u32::from_le_bytes(field(8..12).try_into().expect("4 bytes"));
        let payload_len = u64::from_le_bytes(field(12..20).try_into().expect("8 bytes"));
        let payload_crc = u32::from_le_bytes(field(20..24).try_into().expect("4 bytes"));
        let frame_end = offset + FRAME_HEADER as u64 + payload_len;
        if frame_end > file_len {
            // The header made it to disk, not all of the payload.
            break;
        }
        if u64::from(first) != items {
            return Err(Error::Corrupt(format!(
                "items.log: the frame at byte {offset} starts at id {first}, expected {items}"
            )));
        }
        payload.resize(payload_len as usize, 0);
        read_exact_or_none(&mut reader, &mut payload, path)?
            .ok_or_else(|| Error::Corrupt("items.log shrank while being read".into()))?;
        if crc32fast::hash(&payload) != payload_crc {
            if frame_end == file_len {
                break;
            }
            return Err(Error::Corrupt(format!(
                "items.log: the items of the frame at byte {offset} do not match their checksum"
            )));
        }
        decode_payload(&payload, count, &mut embedding, &mut on_item).ok_or_else(|| {
            Error::Corrupt(format!(
                "items.log: the frame at byte {offset} does not decode"
            ))
        })?;
        items += u64::from(count);
        offset = frame_end;
    }
    Ok(LogEnd {
        items,
        valid_len: offset,
    })
}

fn decode_payload(
    mut payload: &[u8],
    count: u32,
    embedding: &mut [f32],
    on_item: &mut impl FnMut(ItemKind, &str, &[f32]),
) -> Option<()> {
    for _ in 0..count {
        let (&tag, rest) = payload.split_first()?;
        let kind = ItemKind::from_tag(tag)?;
        let (len, rest) = rest.split_first_chunk::<4>()?;
        let (source, rest) = rest.split_at_checked(u32::from_le_bytes(*len) as usize)?;
        let source = std::str::from_utf8(source).ok()?;
        let (values, rest) = rest.split_at_checked(embedding.len() * 4)?;
        for (value, bytes) in embedding.iter_mut().zip(values.as_chunks::<4>().0) {
            *value = f32::from_le_bytes(*bytes);
        }
        on_item(kind, source, embedding);
        payload = rest;
    }
    payload.is_empty().then_some(())
}

/// Whether the bytes from `offset` on are what a write cut short leaves: fewer
/// than a frame header, or zeros (space the file system allocated but whose
/// data never reached the disk).
fn is_torn_tail(log: &File, offset: u64, file_len: u64, path: &Path) -> Result<bool> {
    if file_len - offset < FRAME_HEADER as u64 {
        return Ok(true);
    }
    let mut buffer = vec![0u8; 1 << 20];
    let mut at = offset;
    while at < file_len {
        let n = log
            .read_at(&mut buffer, at)
            .map_err(|source| io_error(path, source))?;
        if n == 0 {
            break;
        }
        if buffer[..n].iter().any(|&b| b != 0) {
            return Ok(false);
        }
        at += n as u64;
    }
    Ok(true)
}

/// Fills `buffer`, or returns `None` when the input ends first.
fn read_exact_or_none(input: &mut impl Read, buffer: &mut [u8], path: &Path) -> Result<Option<()>> {
    match input.read_exact(buffer) {
        Ok(()) => Ok(Some(())),
        Err(e) if e.kind() == ErrorKind::UnexpectedEof => Ok(None),
        Err(source) => Err(io_error(path, source)),
    }
}
