//! Where `encode` writes: JSON lines (a file or stdout) or a `.npy` matrix.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::Context;
use clip_client::{Encoded, Input};

use crate::npy::NpyWriter;

/// One JSON line per input: where it was, what it was, and its embedding
/// or error.
#[derive(serde::Serialize)]
struct JsonLine<'a> {
    index: usize,
    input: String,
    /// "text" or "image"; absent for an input that was invalid (a `--from`
    /// line that is not UTF-8), which went to neither.
    #[serde(skip_serializing_if = "Option::is_none")]
    modality: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    embedding: Option<&'a [f32]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

impl<'a> JsonLine<'a> {
    fn of(item: &'a Encoded) -> Self {
        JsonLine {
            embedding: item.result.as_deref().ok(),
            error: item.result.as_ref().err().map(|e| e.failure.to_string()),
            ..JsonLine::without_result(item.index, &item.input)
        }
    }

    fn without_result(index: usize, input: &Input) -> Self {
        JsonLine {
            index,
            input: input.source(),
            modality: input.modality().map(|m| m.to_string()),
            embedding: None,
            error: None,
        }
    }

    fn write_to(&self, out: &mut dyn Write) -> std::io::Result<()> {
        serde_json::to_writer(&mut *out, self)
            .map_err(std::io::Error::from)
            .and_then(|()| out.write_all(b"\n"))
    }
}

pub enum Sink {
    Npy(NpyWriter),
    Json(Box<dyn Write>),
}

impl Sink {
    /// `*.npy` for a float32 matrix, any other path for JSON lines, none
    /// for JSON lines on stdout.
    pub fn create(out: Option<&Path>) -> anyhow::Result<Sink> {
        let cannot_create = |path: &Path| format!("cannot create {}", path.display());
        Ok(match out {
            Some(path) if path.extension().is_some_and(|e| e == "npy") => {
                Sink::Npy(NpyWriter::create(path).with_context(|| cannot_create(path))?)
            }
            Some(path) => Sink::Json(Box::new(BufWriter::new(
                File::create(path).with_context(|| cannot_create(path))?,
            ))),
            None => Sink::Json(Box::new(BufWriter::new(std::io::stdout().lock()))),
        })
    }

    /// Writes the next input's row: its embedding, or NaN / its error.
    pub fn write(&mut self, item: &Encoded) -> std::io::Result<()> {
        match (self, &item.result) {
            (Sink::Npy(npy), Ok(embedding)) => npy.push(embedding),
            (Sink::Npy(npy), Err(_)) => npy.push_missing(),
            (Sink::Json(out), _) => JsonLine::of(item).write_to(out),
        }
    }

    /// Writes the row of an input the job stopped before: `reason` in its
    /// JSON line, NaN in .npy, so row i stays input i.
    pub fn write_unfinished(
        &mut self,
        index: usize,
        input: &Input,
        reason: &str,
    ) -> std::io::Result<()> {
        match self {
            Sink::Npy(npy) => npy.push_missing(),
            Sink::Json(out) => JsonLine {
                error: Some(reason.to_owned()),
                ..JsonLine::without_result(index, input)
            }
            .write_to(out),
        }
    }

    pub fn finish(self) -> anyhow::Result<()> {
        match self {
            Sink::Npy(npy) => {
                let (rows, columns) = npy.finish().context("cannot finish the .npy file")?;
                eprintln!("wrote a {rows} x {columns} float32 matrix");
            }
            Sink::Json(mut out) => out.flush().context("cannot write the output")?,
        }
        Ok(())
    }
}
