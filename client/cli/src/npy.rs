//! A `.npy` writer for an embedding matrix whose row count is known only
//! at the end: the header is written with room to spare and rewritten with
//! the final shape when the file is finished.

use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::Path;

/// Magic, version 1.0, header length, and the header itself: 128 bytes in
/// all (a multiple of 64, as the format asks), enough for any shape.
const HEADER_BYTES: usize = 128;
const PREAMBLE: &[u8] = b"\x93NUMPY\x01\x00";

pub struct NpyWriter {
    file: BufWriter<File>,
    columns: Option<usize>,
    rows: u64,
    /// Failed rows seen before the first embedding told the width.
    pending_nan_rows: u64,
}

fn header(rows: u64, columns: usize) -> Vec<u8> {
    let dict =
        format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {columns}), }}");
    let mut out = PREAMBLE.to_vec();
    let body_len = HEADER_BYTES - PREAMBLE.len() - 2;
    out.extend_from_slice(&(body_len as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out.resize(HEADER_BYTES - 1, b' ');
    out.push(b'\n');
    out
}

impl NpyWriter {
    pub fn create(path: &Path) -> std::io::Result<NpyWriter> {
        let mut file = BufWriter::new(File::create(path)?);
        file.write_all(&header(0, 0))?;
        Ok(NpyWriter {
            file,
            columns: None,
            rows: 0,
            pending_nan_rows: 0,
        })
    }

    fn write_nan_rows(&mut self, columns: usize, count: u64) -> std::io::Result<()> {
        let row: Vec<u8> = std::iter::repeat_n(f32::NAN.to_le_bytes(), columns)
            .flatten()
            .collect();
        for _ in 0..count {
            self.file.write_all(&row)?;
        }
        self.rows += count;
        Ok(())
    }

    /// Appends one embedding; every row must have the first row's length.
    pub fn push(&mut self, row: &[f32]) -> std::io::Result<()> {
        let columns = *self.columns.get_or_insert(row.len());
        if row.len() != columns {
            return Err(std::io::Error::other(format!(
                "embedding of {} values in a matrix of width {columns}",
                row.len()
            )));
        }
        let pending = std::mem::take(&mut self.pending_nan_rows);
        self.write_nan_rows(columns, pending)?;
        for value in row {
            self.file.write_all(&value.to_le_bytes())?;
        }
        self.rows += 1;
        Ok(())
    }

    /// Appends a row of NaN for an input that has no embedding, so row i
    /// stays input i.
    pub fn push_missing(&mut self) -> std::io::Result<()> {
        match self.columns {
            Some(columns) => self.write_nan_rows(columns, 1),
            None => {
                self.pending_nan_rows += 1;
                Ok(())
            }
        }
    }

    /// Writes the final shape into the header and flushes to disk.
    pub fn finish(mut self) -> std::io::Result<(u64, usize)> {
        // With no embedding at all the width is unknown: (n, 0) holds no data.
        let columns = self.columns.unwrap_or(0);
        let rows = self.rows + self.pending_nan_rows;
        self.file.seek(SeekFrom::Start(0))?;
        self.file.write_all(&header(rows, columns))?;
        let file = self.file.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        Ok((rows, columns))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_128_bytes_and_names_the_shape() {
        let h = header(12345, 512);
        assert_eq!(h.len(), HEADER_BYTES);
        assert_eq!(&h[..8], PREAMBLE);
        assert_eq!(u16::from_le_bytes([h[8], h[9]]) as usize, HEADER_BYTES - 10);
        let text = std::str::from_utf8(&h[10..]).unwrap();
        assert!(
            text.starts_with("{'descr': '<f4', 'fortran_order': False, 'shape': (12345, 512), }")
        );
        assert!(text.ends_with(" \n"));
        // The largest shape still fits.
        assert_eq!(header(u64::MAX, usize::MAX).len(), HEADER_BYTES);
    }

    #[test]
    fn rows_keep_input_positions_with_nan_for_failures() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.npy");
        let mut npy = NpyWriter::create(&path).unwrap();
        npy.push_missing().unwrap();
        npy.push(&[1.0, 2.0]).unwrap();
        npy.push_missing().unwrap();
        assert!(npy.push(&[1.0]).is_err());
        assert_eq!(npy.finish().unwrap(), (3, 2));
        let bytes = std::fs::read(&path).unwrap();
        assert!(std::str::from_utf8(&bytes[10..HEADER_BYTES])
            .unwrap()
            .contains("(3, 2)"));
        let values: Vec<f32> = bytes[HEADER_BYTES..]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(values.len(), 6);
        assert!(values[0].is_nan() && values[1].is_nan());
        assert_eq!(&values[2..4], &[1.0, 2.0]);
        assert!(values[4].is_nan() && values[5].is_nan());
    }
}
