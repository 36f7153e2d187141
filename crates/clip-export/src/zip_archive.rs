//! The read side of a zip archive held in memory (a memory-mapped file), as
//! much as torch.save's archives need: the central directory (zip64 too:
//! torch always writes its records), stored entries, CRC-32 checks. Entries
//! are borrowed slices of the archive; nothing is copied.

use std::collections::BTreeMap;

use crate::torch_zip::TorchError;

const LOCAL_HEADER: u32 = 0x0403_4b50;
const CENTRAL_HEADER: u32 = 0x0201_4b50;
const END_OF_DIRECTORY: u32 = 0x0605_4b50;
const ZIP64_END_OF_DIRECTORY: u32 = 0x0606_4b50;
const ZIP64_LOCATOR: u32 = 0x0706_4b50;
const ZIP64_EXTRA: u16 = 0x0001;
/// The fixed part of the end-of-central-directory record.
const END_LEN: usize = 22;
const STORED: u16 = 0;

/// One record, as the central directory describes it.
#[derive(Clone, Copy, Debug)]
struct Entry {
    method: u16,
    flags: u16,
    crc32: u32,
    compressed_size: u64,
    size: u64,
    local_header: u64,
}

/// A zip archive's directory over the archive's bytes.
pub(crate) struct ZipArchive<'a> {
    bytes: &'a [u8],
    entries: BTreeMap<String, Entry>,
}

fn corrupt(message: impl Into<String>) -> TorchError {
    TorchError::Zip(message.into())
}

fn slice(bytes: &[u8], start: u64, len: u64) -> Option<&[u8]> {
    let start = usize::try_from(start).ok()?;
    let end = start.checked_add(usize::try_from(len).ok()?)?;
    bytes.get(start..end)
}

fn u16_at(bytes: &[u8], pos: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        bytes.get(pos..pos + 2)?.try_into().ok()?,
    ))
}

fn u32_at(bytes: &[u8], pos: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        bytes.get(pos..pos + 4)?.try_into().ok()?,
    ))
}

fn u64_at(bytes: &[u8], pos: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        bytes.get(pos..pos + 8)?.try_into().ok()?,
    ))
}

/// Where the central directory lies and how many records it holds.
struct Directory {
    offset: u64,
    size: u64,
    count: u64,
}

impl<'a> ZipArchive<'a> {
    pub(crate) fn parse(bytes: &'a [u8]) -> Result<Self, TorchError> {
        let directory = find_directory(bytes)?;
        let mut table = slice(bytes, directory.offset, directory.size).ok_or_else(|| {
            corrupt("the central directory lies outside the file (truncated archive)")
        })?;
        let mut entries = BTreeMap::new();
        for index in 0..directory.count {
            let (name, entry, rest) = central_record(table)
                .ok_or_else(|| corrupt(format!("central directory record {index} is cut short")))?;
            if entry.flags & 1 != 0 {
                return Err(corrupt(format!("{name} is encrypted")));
            }
            if entries.insert(name.clone(), entry).is_some() {
                return Err(corrupt(format!("{name} appears twice")));
            }
            table = rest;
        }
        Ok(ZipArchive { bytes, entries })
    }

    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    pub(crate) fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    /// A stored record's bytes, checked against its CRC-32.
    pub(crate) fn read(&self, name: &str) -> Result<&'a [u8], TorchError> {
        let entry = self
            .entries
            .get(name)
            .ok_or_else(|| corrupt(format!("the archive has no record {name}")))?;
        let bad = |message: String| TorchError::Entry {
            name: name.to_string(),
            message,
        };
        if entry.method != STORED || entry.compressed_size != entry.size {
            return Err(bad(format!(
                "compressed (method {}); torch.save stores its records uncompressed",
                entry.method
            )));
        }
        let header = slice(self.bytes, entry.local_header, 30)
            .filter(|h| u32_at(h, 0) == Some(LOCAL_HEADER))
            .ok_or_else(|| bad("its local header is missing or damaged".into()))?;
        let name_len = u64::from(u16_at(header, 26).unwrap_or_default());
        let extra_len = u64::from(u16_at(header, 28).unwrap_or_default());
        let data = entry
            .local_header
            .checked_add(30 + name_len + extra_len)
            .and_then(|start| slice(self.bytes, start, entry.size))
            .ok_or_else(|| {
                bad(format!(
                    "its {} bytes run past the end of the file (truncated archive)",
                    entry.size
                ))
            })?;
        let crc = crc32fast::hash(data);
        if crc != entry.crc32 {
            return Err(bad(format!(
                "CRC-32 {crc:08x} where the directory says {:08x} (corrupt archive)",
                entry.crc32
            )));
        }
        Ok(data)
    }
}

/// The end-of-central-directory record (searched from the end, past a
/// comment of up to 64 KiB) and, where present, its zip64 extension.
fn find_directory(bytes: &[u8]) -> Result<Directory, TorchError> {
    let last = bytes
        .len()
        .checked_sub(END_LEN)
        .ok_or_else(|| corrupt("shorter than a zip directory (truncated archive)"))?;
    let end = (last.saturating_sub(u16::MAX as usize)..=last)
        .rev()
        .find(|&pos| u32_at(bytes, pos) == Some(END_OF_DIRECTORY))
        .ok_or_else(|| corrupt("no end of central directory (truncated archive)"))?;
    let field16 = |off| u16_at(bytes, end + off).unwrap_or_default();
    let field32 = |off| u32_at(bytes, end + off).unwrap_or_default();
    if field16(4) != 0 || field16(6) != 0 {
        return Err(corrupt("spans several disks"));
    }
    let locator = end
        .checked_sub(20)
        .filter(|&pos| u32_at(bytes, pos) == Some(ZIP64_LOCATOR));
    let Some(locator) = locator else {
        return Ok(Directory {
            count: u64::from(field16(10)),
            size: u64::from(field32(12)),
            offset: u64::from(field32(16)),
        });
    };
    let record = u64_at(bytes, locator + 8)
        .and_then(|offset| slice(bytes, offset, 56))
        .filter(|r| u32_at(r, 0) == Some(ZIP64_END_OF_DIRECTORY))
        .ok_or_else(|| corrupt("the zip64 end of central directory is missing or damaged"))?;
    let field64 = |off| u64_at(record, off).unwrap_or_default();
    Ok(Directory {
        count: field64(32),
        size: field64(40),
        offset: field64(48),
    })
}

/// One central directory record: its name, what it says, and the rest of
/// the table.
fn central_record(table: &[u8]) -> Option<(String, Entry, &[u8])> {
    if u32_at(table, 0)? != CENTRAL_HEADER {
        return None;
    }
    let name_len = usize::from(u16_at(table, 28)?);
    let extra_len = usize::from(u16_at(table, 30)?);
    let comment_len = usize::from(u16_at(table, 32)?);
    let name_end = 46 + name_len;
    let extra_end = name_end + extra_len;
    let record_end = extra_end + comment_len;
    let name = String::from_utf8_lossy(table.get(46..name_end)?).into_owned();
    let mut entry = Entry {
        flags: u16_at(table, 8)?,
        method: u16_at(table, 10)?,
        crc32: u32_at(table, 16)?,
        compressed_size: u64::from(u32_at(table, 20)?),
        size: u64::from(u32_at(table, 24)?),
        local_header: u64::from(u32_at(table, 42)?),
    };
    apply_zip64(&mut entry, table.get(name_end..extra_end)?)?;
    Some((name, entry, table.get(record_end..)?))
}

/// The zip64 extra field carries, in order, each 32-bit field that is
/// saturated in the record: size, compressed size, local header offset.
fn apply_zip64(entry: &mut Entry, mut extra: &[u8]) -> Option<()> {
    while extra.len() >= 4 {
        let id = u16_at(extra, 0)?;
        let len = usize::from(u16_at(extra, 2)?);
        let body = extra.get(4..4 + len)?;
        if id == ZIP64_EXTRA {
            let mut pos = 0;
            for field in [
                &mut entry.size,
                &mut entry.compressed_size,
                &mut entry.local_header,
            ] {
                if *field == u64::from(u32::MAX) {
                    *field = u64_at(body, pos)?;
                    pos += 8;
                }
            }
        }
        extra = &extra[4 + len..];
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-record archive whose directory uses zip64 throughout (as
    /// archives past 4 GiB must: every 32-bit field saturated), followed by
    /// an archive comment.
    fn zip64_archive(name: &str, data: &[u8], crc: u32) -> Vec<u8> {
        let name_len = (name.len() as u16).to_le_bytes();
        let mut out = LOCAL_HEADER.to_le_bytes().to_vec();
        out.extend([20, 0, 8, 0, 0, 0, 0, 0, 0, 0]); // version, flags (descriptor), method, time, date
        out.extend([0; 12]); // crc and sizes: in the directory
        out.extend(name_len);
        out.extend([0, 0]);
        out.extend(name.as_bytes());
        out.extend(data);
        let directory = out.len() as u64;
        out.extend(CENTRAL_HEADER.to_le_bytes());
        out.extend([45, 3, 45, 0, 8, 0, 0, 0, 0, 0, 0, 0]);
        out.extend(crc.to_le_bytes());
        out.extend([0xff; 8]); // sizes: in the zip64 extra field
        out.extend(name_len);
        out.extend(28u16.to_le_bytes());
        out.extend([0; 10]); // comment length, disk, attributes
        out.extend([0xff; 4]); // offset: in the zip64 extra field
        out.extend(name.as_bytes());
        out.extend(ZIP64_EXTRA.to_le_bytes());
        out.extend(24u16.to_le_bytes());
        out.extend((data.len() as u64).to_le_bytes());
        out.extend((data.len() as u64).to_le_bytes());
        out.extend(0u64.to_le_bytes());
        let directory_size = out.len() as u64 - directory;
        let end64 = out.len() as u64;
        out.extend(ZIP64_END_OF_DIRECTORY.to_le_bytes());
        out.extend(44u64.to_le_bytes());
        out.extend([45, 3, 45, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        out.extend(1u64.to_le_bytes());
        out.extend(1u64.to_le_bytes());
        out.extend(directory_size.to_le_bytes());
        out.extend(directory.to_le_bytes());
        out.extend(ZIP64_LOCATOR.to_le_bytes());
        out.extend(0u32.to_le_bytes());
        out.extend(end64.to_le_bytes());
        out.extend(1u32.to_le_bytes());
        out.extend(END_OF_DIRECTORY.to_le_bytes());
        out.extend([0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]);
        out.extend([0xff; 8]);
        out.extend(7u16.to_le_bytes());
        out.extend(b"comment");
        out
    }

    #[test]
    fn zip64_directories_and_comments() {
        let data = b"little";
        let bytes = zip64_archive("a/byteorder", data, crc32fast::hash(data));
        let archive = ZipArchive::parse(&bytes).unwrap();
        assert_eq!(archive.names().collect::<Vec<_>>(), ["a/byteorder"]);
        assert_eq!(archive.read("a/byteorder").unwrap(), data);
        assert!(matches!(archive.read("a/version"), Err(TorchError::Zip(_))));
    }

    #[test]
    fn a_wrong_crc_is_refused() {
        let bytes = zip64_archive("a/data/0", b"\x00\x00\x80\x3f", 0x1234_5678);
        let err = ZipArchive::parse(&bytes)
            .unwrap()
            .read("a/data/0")
            .unwrap_err();
        assert!(err.to_string().contains("CRC-32"), "{err}");
    }
}
