//! Loading exported models with ONNX Runtime (`ort`, library loaded at run
//! time) and the probe run that checks them before anything is written.

use std::path::Path;

use clip_contract::tensor;
use ort::session::Session;
use ort::value::Tensor as OrtTensor;

use crate::arch::{ClipArchitecture, TextPooling};
use crate::error::{ExportError, Result};
use crate::onnx::OnnxModel;

/// ONNX Runtime as loaded into this process, through clip-ort (one library
/// and environment per process, shared with anything else that loads it).
#[derive(Clone, Copy)]
pub struct OrtRuntime {
    runtime: &'static clip_ort::Runtime,
}

impl OrtRuntime {
    /// Loads `explicit` when given (`explicit_origin` names where the path
    /// came from in errors, such as a command-line flag), else the library
    /// `ORT_DYLIB_PATH` names. Later calls reuse the first library; asking
    /// for a different one then is an error.
    pub fn load(explicit: Option<&Path>, explicit_origin: &str) -> Result<Self> {
        let library = clip_ort::library_path(
            explicit,
            explicit_origin,
            std::env::var_os(clip_ort::ORT_DYLIB_ENV),
        )?;
        Ok(OrtRuntime {
            runtime: clip_ort::load(&library, None)?,
        })
    }

    pub fn library(&self) -> &Path {
        self.runtime.library()
    }

    /// A session for an exported model. Models with external data are
    /// written to a temporary folder first (the runtime reads the data file
    /// from beside the model).
    pub fn session(&self, model: &OnnxModel) -> Result<LoadedModel> {
        let ort_err = |e: ort::Error<_>| ExportError::Ort(e.to_string());
        let mut builder = Session::builder(self.runtime.env())
            .map_err(|e| ExportError::Ort(e.to_string()))?
            .with_intra_threads(2)
            .map_err(ort_err)?;
        let (session, dir) = match &model.external_data {
            None => (
                builder
                    .commit_from_memory(&model.model)
                    .map_err(|e| ExportError::Ort(e.to_string()))?,
                None,
            ),
            Some(_) => {
                let dir =
                    tempfile::tempdir().map_err(|e| ExportError::io(std::env::temp_dir(), e))?;
                let paths = model.write(dir.path(), "model.onnx")?;
                let session = builder
                    .commit_from_file(&paths[0])
                    .map_err(|e| ExportError::Ort(e.to_string()))?;
                (session, Some(dir))
            }
        };
        Ok(LoadedModel { session, _dir: dir })
    }
}

/// A model loaded in ONNX Runtime.
pub struct LoadedModel {
    session: Session,
    _dir: Option<tempfile::TempDir>,
}

/// The embeddings a run returned, `[batch, dim]` row-major.
#[derive(Clone, Debug)]
pub struct Embeddings {
    pub shape: Vec<i64>,
    pub data: Vec<f32>,
}

impl LoadedModel {
    /// Runs the textual model on `batch` rows of token ids.
    pub fn embed_text(&mut self, input_ids: &[i64], batch: usize) -> Result<Embeddings> {
        let columns = input_ids.len().checked_div(batch).unwrap_or(0);
        assert_eq!(
            columns * batch,
            input_ids.len(),
            "ids do not fill {batch} rows"
        );
        let input = OrtTensor::from_array((vec![batch as i64, columns as i64], input_ids.to_vec()))
            .map_err(|e| ExportError::Ort(e.to_string()))?;
        self.run(tensor::INPUT_IDS, input)
    }

    /// Runs the visual model on `batch` CHW images.
    pub fn embed_images(
        &mut self,
        pixels: &[f32],
        batch: usize,
        image_size: usize,
    ) -> Result<Embeddings> {
        assert_eq!(
            pixels.len(),
            batch * 3 * image_size * image_size,
            "pixels do not fill the batch"
        );
        let s = image_size as i64;
        let input = OrtTensor::from_array((vec![batch as i64, 3, s, s], pixels.to_vec()))
            .map_err(|e| ExportError::Ort(e.to_string()))?;
        self.run(tensor::PIXEL_VALUES, input)
    }

    /// Runs the pixel path's visual model on `batch` uint8 HWC crops.
    pub fn embed_pixels(
        &mut self,
        pixels: &[u8],
        batch: usize,
        image_size: usize,
    ) -> Result<Embeddings> {
        assert_eq!(
            pixels.len(),
            batch * image_size * image_size * 3,
            "pixels do not fill the batch"
        );
        let s = image_size as i64;
        let input = OrtTensor::from_array((vec![batch as i64, s, s, 3], pixels.to_vec()))
            .map_err(|e| ExportError::Ort(e.to_string()))?;
        self.run(tensor::PIXELS, input)
    }

    fn run<T: ort::value::PrimitiveTensorElementType + std::fmt::Debug>(
        &mut self,
        name: &str,
        input: OrtTensor<T>,
    ) -> Result<Embeddings> {
        let outputs = self
            .session
            .run(ort::inputs![name => input])
            .map_err(|e| ExportError::Ort(e.to_string()))?;
        let value = outputs.get(tensor::EMBEDDING).ok_or_else(|| {
            ExportError::Ort(format!("the model has no {} output", tensor::EMBEDDING))
        })?;
        let (shape, data) = value
            .try_extract_tensor::<f32>()
            .map_err(|e| ExportError::Ort(e.to_string()))?;
        Ok(Embeddings {
            shape: shape.to_vec(),
            data: data.to_vec(),
        })
    }
}

/// What a probe run saw.
#[derive(Clone, Debug)]
pub struct ProbeReport {
    pub batch: usize,
    pub output_shape: Vec<i64>,
    /// Largest |value| in the output.
    pub max_abs: f32,
}

/// Probe batch size: more than one row, so batching is exercised.
pub const PROBE_BATCH: usize = 3;

/// Loads the textual model and runs a probe batch: a start token, a few ids,
/// the end-of-text token and padding, padded once with end-of-text and once
/// with 0, plus a row with no padding at all. Checks the output is
/// `[batch, embed_dim]` and finite.
pub fn verify_textual(
    runtime: &OrtRuntime,
    model: &OnnxModel,
    arch: &ClipArchitecture,
) -> Result<ProbeReport> {
    let ctx = arch.text.context_length;
    let vocab = arch.text.vocab_size as i64;
    // CLIP puts start and end of text at the top of its vocabulary.
    let eos = match arch.text.pooling {
        TextPooling::FirstEos(id) => id,
        TextPooling::ArgMax => vocab - 1,
    };
    let bos = vocab - 2;
    let word = |i: usize| {
        let id = (i as i64 * 7919 + 320) % (vocab - 2);
        if id == eos {
            id + 1
        } else {
            id
        }
    };
    let mut ids = Vec::with_capacity(PROBE_BATCH * ctx);
    for row in 0..PROBE_BATCH {
        let body = if row == 2 {
            ctx.saturating_sub(2)
        } else {
            (3 + row).min(ctx - 2)
        };
        let pad = if row == 0 { eos } else { 0 };
        ids.push(bos);
        ids.extend((0..body).map(word));
        ids.push(eos);
        ids.resize((row + 1) * ctx, pad);
    }
    let mut loaded = runtime.session(model)?;
    let out = loaded
        .embed_text(&ids, PROBE_BATCH)
        .map_err(|e| verification("textual", e.to_string()))?;
    check(&out, arch, "textual")
}

/// Loads the visual model and runs a probe batch of smooth synthetic images
/// in the normalised range, checking shape and finiteness.
pub fn verify_visual(
    runtime: &OrtRuntime,
    model: &OnnxModel,
    arch: &ClipArchitecture,
) -> Result<ProbeReport> {
    let s = arch.vision.image_size;
    let mut pixels = Vec::with_capacity(PROBE_BATCH * 3 * s * s);
    for b in 0..PROBE_BATCH {
        for c in 0..3 {
            for y in 0..s {
                for x in 0..s {
                    let phase = (x as f32 * 0.05 + y as f32 * 0.03) * (b + 1) as f32 + c as f32;
                    pixels.push(1.5 * phase.sin());
                }
            }
        }
    }
    let mut loaded = runtime.session(model)?;
    let out = loaded
        .embed_images(&pixels, PROBE_BATCH, s)
        .map_err(|e| verification("visual", e.to_string()))?;
    check(&out, arch, "visual")
}

/// Loads the pixel path's visual model and runs a probe batch of uint8 HWC
/// crops, as [`verify_visual`] does for the normalised one.
pub fn verify_visual_pixels(
    runtime: &OrtRuntime,
    model: &OnnxModel,
    arch: &ClipArchitecture,
) -> Result<ProbeReport> {
    let s = arch.vision.image_size;
    let pixels: Vec<u8> = (0..PROBE_BATCH * s * s * 3)
        .map(|i| ((i * 31 + i / (3 * s) * 7) % 256) as u8)
        .collect();
    let mut loaded = runtime.session(model)?;
    let out = loaded
        .embed_pixels(&pixels, PROBE_BATCH, s)
        .map_err(|e| verification("visual_pixels", e.to_string()))?;
    check(&out, arch, "visual_pixels")
}

fn verification(model: &str, message: String) -> ExportError {
    ExportError::Verification {
        model: model.to_string(),
        message,
    }
}

fn check(out: &Embeddings, arch: &ClipArchitecture, model: &str) -> Result<ProbeReport> {
    let expected = vec![PROBE_BATCH as i64, arch.embed_dim as i64];
    if out.shape != expected {
        return Err(verification(
            model,
            format!(
                "output {} has shape {:?}, expected {expected:?}",
                tensor::EMBEDDING,
                out.shape
            ),
        ));
    }
    if let Some(i) = out.data.iter().position(|v| !v.is_finite()) {
        return Err(verification(
            model,
            format!(
                "output {} holds {} at index {i}",
                tensor::EMBEDDING,
                out.data[i]
            ),
        ));
    }
    Ok(ProbeReport {
        batch: PROBE_BATCH,
        output_shape: out.shape.clone(),
        max_abs: out.data.iter().fold(0.0f32, |m, v| m.max(v.abs())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_library_is_named_with_its_origin_and_the_install_script() {
        // An explicit path wins over ORT_DYLIB_PATH, so this holds whatever the environment says.
        let missing = Path::new("/nonexistent/libonnxruntime.so");
        let err = OrtRuntime::load(Some(missing), "--ort-library")
            .err()
            .expect("no such file")
            .to_string();
        assert!(
            err.contains("--ort-library names /nonexistent/libonnxruntime.so"),
            "{err}"
        );
        assert!(err.contains("scripts/install-onnxruntime.sh"), "{err}");
    }
}
