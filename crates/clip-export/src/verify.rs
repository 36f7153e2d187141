//! Loading exported models with ONNX Runtime (`ort`, library loaded at run
//! time) and the probe run that checks them before anything is written.

use std::path::Path;

use clip_contract::{defaults, tensor};
use ort::session::Session;
use ort::value::{DynValue, Tensor as OrtTensor, TensorElementType};

use crate::arch::{ClipArchitecture, TextPooling};
use crate::error::{ExportError, Result};
use crate::mclip::MclipTextArchitecture;
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

    /// A session for an ONNX file on disk (its external data, if any, beside it).
    pub fn session_from_file(&self, path: &Path) -> Result<LoadedModel> {
        let session = Session::builder(self.runtime.env())
            .map_err(|e| ExportError::Ort(e.to_string()))?
            .with_intra_threads(2)
            .map_err(|e| ExportError::Ort(e.to_string()))?
            .commit_from_file(path)
            .map_err(|e| ExportError::Ort(format!("{}: {e}", path.display())))?;
        Ok(LoadedModel {
            session,
            _dir: None,
        })
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
        self.embed_tokens(input_ids, None, batch)
    }

    /// Runs the textual model on `batch` rows of token ids and, for a model
    /// that takes one (CLIP-as-service's files do), their attention mask;
    /// each is fed in the integer type the model declares.
    pub fn embed_tokens(
        &mut self,
        input_ids: &[i64],
        attention_mask: Option<&[i64]>,
        batch: usize,
    ) -> Result<Embeddings> {
        let columns = input_ids.len().checked_div(batch).unwrap_or(0);
        assert_eq!(
            columns * batch,
            input_ids.len(),
            "ids do not fill {batch} rows"
        );
        let shape = vec![batch as i64, columns as i64];
        let mut inputs = Vec::new();
        for (name, element) in self.declared_inputs() {
            let values = if tensor::plays(&name, tensor::INPUT_IDS) {
                input_ids
            } else if tensor::plays(&name, tensor::ATTENTION_MASK) {
                attention_mask.ok_or_else(|| {
                    ExportError::Ort(format!("the model takes '{name}' and no mask was given"))
                })?
            } else {
                return Err(ExportError::Ort(format!(
                    "the text model takes '{name}', which is neither token ids nor an attention mask"
                )));
            };
            let value = match element {
                Some(TensorElementType::Int32) => {
                    let narrow: Vec<i32> = values.iter().map(|&v| v as i32).collect();
                    OrtTensor::from_array((shape.clone(), narrow)).map(OrtTensor::into_dyn)
                }
                _ => {
                    OrtTensor::from_array((shape.clone(), values.to_vec())).map(OrtTensor::into_dyn)
                }
            }
            .map_err(|e| ExportError::Ort(e.to_string()))?;
            inputs.push((name, value));
        }
        self.run(inputs)
    }

    /// Runs the visual model on `batch` CHW images, as FP32 or FP16 as the
    /// model declares them.
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
        let shape = vec![batch as i64, 3, s, s];
        let (name, element) = self.single_input()?;
        let value = match element {
            Some(TensorElementType::Float16) => {
                let half: Vec<half::f16> = pixels.iter().map(|&v| half::f16::from_f32(v)).collect();
                OrtTensor::from_array((shape, half)).map(OrtTensor::into_dyn)
            }
            _ => OrtTensor::from_array((shape, pixels.to_vec())).map(OrtTensor::into_dyn),
        }
        .map_err(|e| ExportError::Ort(e.to_string()))?;
        self.run(vec![(name, value)])
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
        self.run(vec![(tensor::PIXELS.to_owned(), input.into_dyn())])
    }

    /// The session's inputs: names and element types.
    fn declared_inputs(&self) -> Vec<(String, Option<TensorElementType>)> {
        self.session
            .inputs()
            .iter()
            .map(|i| (i.name().to_owned(), i.dtype().tensor_type()))
            .collect()
    }

    fn single_input(&self) -> Result<(String, Option<TensorElementType>)> {
        match self.declared_inputs().as_slice() {
            [only] => Ok(only.clone()),
            many => Err(ExportError::Ort(format!(
                "the image model takes {} inputs, expected one",
                many.len()
            ))),
        }
    }

    /// Runs the session; the embedding is the output named `EMBEDDING` or
    /// the only output, widened to f32.
    fn run(&mut self, inputs: Vec<(String, DynValue)>) -> Result<Embeddings> {
        let names: Vec<String> = self
            .session
            .outputs()
            .iter()
            .map(|o| o.name().to_owned())
            .collect();
        let output = match names.as_slice() {
            [only] => only.clone(),
            _ => tensor::EMBEDDING.to_owned(),
        };
        let outputs = self
            .session
            .run(inputs)
            .map_err(|e| ExportError::Ort(e.to_string()))?;
        let value = outputs
            .get(&output)
            .ok_or_else(|| ExportError::Ort(format!("the model has no {output} output")))?;
        let (shape, data) = match value.try_extract_tensor::<f32>() {
            Ok((shape, data)) => (shape.to_vec(), data.to_vec()),
            Err(_) => {
                let (shape, data) = value
                    .try_extract_tensor::<half::f16>()
                    .map_err(|e| ExportError::Ort(e.to_string()))?;
                (shape.to_vec(), data.iter().map(|v| v.to_f32()).collect())
            }
        };
        Ok(Embeddings { shape, data })
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
    check(&out, arch.embed_dim, "textual")
}

/// Loads the M-CLIP textual model and runs a probe batch of
/// [`defaults::CONTEXT_LENGTH`] columns: a short row padded with the pad id
/// (mask 0), a row holding the pad id as a real token (mask 1), and a row
/// with no padding. Checks the output is `[batch, embed_dim]` and finite.
pub fn verify_mclip_textual(
    runtime: &OrtRuntime,
    model: &OnnxModel,
    arch: &MclipTextArchitecture,
) -> Result<ProbeReport> {
    let ctx = defaults::CONTEXT_LENGTH.min(arch.encoder.max_sequence());
    let vocab = arch.encoder.vocab_size as i64;
    let pad = arch.encoder.pad_token_id;
    let word = |i: usize| (i as i64 * 7919 + 5) % vocab;
    let mut ids = Vec::with_capacity(PROBE_BATCH * ctx);
    let mut mask = Vec::with_capacity(PROBE_BATCH * ctx);
    for row in 0..PROBE_BATCH {
        let length = match row {
            0 => ctx.min(5),
            _ => ctx,
        };
        for i in 0..ctx {
            let real = i < length;
            let literal_pad = row == 1 && i == 2;
            ids.push(if !real || literal_pad {
                pad
            } else {
                word(row * ctx + i)
            });
            mask.push(i64::from(real));
        }
    }
    let mut loaded = runtime.session(model)?;
    let out = loaded
        .embed_tokens(&ids, Some(&mask), PROBE_BATCH)
        .map_err(|e| verification("mclip_textual", e.to_string()))?;
    check(&out, arch.embed_dim, "mclip_textual")
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
    check(&out, arch.embed_dim, "visual")
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
    check(&out, arch.embed_dim, "visual_pixels")
}

fn verification(model: &str, message: String) -> ExportError {
    ExportError::Verification {
        model: model.to_string(),
        message,
    }
}

fn check(out: &Embeddings, embed_dim: usize, model: &str) -> Result<ProbeReport> {
    let expected = vec![PROBE_BATCH as i64, embed_dim as i64];
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
