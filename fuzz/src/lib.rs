//! The fuzz targets: each takes arbitrary bytes, feeds them to one of the
//! project's parsers or decoders, and panics only on a bug: a panic inside
//! the code under test, or a result that breaks one of the invariants checked
//! here. An ordinary error (a corrupt image, a bad config) is the expected
//! outcome for most inputs and is not a failure.
//!
//! `src/bin/<target>.rs` runs a target under AFL++ (`scripts/fuzz.sh`);
//! `tests/replay.rs` runs every target over its committed corpus and crash
//! regressions with plain `cargo test`.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;

use clip_backend_core::batch::{self, DataType, Input};
use clip_backend_core::config::{self, KindSpec};
use clip_export::{ClipArchitecture, ClipWeights, ExportError, OnnxModel, WeightLayout};
use clip_image::{ImageError, ImageOptions, ImagePreprocessor};
use clip_text::{TextOptions, Tokenizer};
use safetensors::Dtype;

/// One fuzz target.
pub struct Target {
    /// Also the name of its AFL binary and of its folders under `fuzz/`.
    pub name: &'static str,
    /// Runs the target on one input; panics on a bug.
    pub run: fn(&[u8]),
    /// Builds what the target shares between inputs (a tokenizer, the
    /// preprocessors), so that AFL's fork server starts with it built.
    pub prepare: fn(),
}

/// Every target, in the order `scripts/fuzz.sh --smoke` runs them.
pub const TARGETS: &[Target] = &[
    Target {
        name: "image",
        run: image,
        prepare: prepare_image,
    },
    Target {
        name: "text",
        run: text,
        prepare: prepare_text,
    },
    Target {
        name: "triton_config",
        run: triton_config,
        prepare: nothing,
    },
    Target {
        name: "bytes_elements",
        run: bytes_elements,
        prepare: nothing,
    },
    Target {
        name: "safetensors",
        run: safetensors,
        prepare: prepare_tiny_arch,
    },
    Target {
        name: "onnx",
        run: onnx,
        prepare: nothing,
    },
    Target {
        name: "model_config",
        run: model_config,
        prepare: prepare_model_config,
    },
];

/// The target called `name`.
pub fn target(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}

/// `fuzz/` in the source tree.
pub fn fuzz_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A file under the repository's `tests/fixtures/`.
pub fn fixture(relative: &str) -> PathBuf {
    fuzz_dir().join("../tests/fixtures").join(relative)
}

fn nothing() {}

// ---------------------------------------------------------------- image

/// Two preprocessors: the exact full-scale path, and a small output size
/// with `reduced_scale_decode`, so that JPEGs from 32 pixels up take the
/// DCT-scaled path (1/2 from a short side of 32, 1/4 from 64, 1/8 from 128).
/// Both refuse images over 1 MP (the server's default guard is 40 MP): larger
/// decodes would only slow the fuzzer down.
fn preprocessors() -> &'static [ImagePreprocessor; 2] {
    static PREPROCESSORS: OnceLock<[ImagePreprocessor; 2]> = OnceLock::new();
    PREPROCESSORS.get_or_init(|| {
        let base = ImageOptions {
            size: 24,
            max_pixels: 1 << 20,
            ..ImageOptions::default()
        };
        let reduced = ImageOptions {
            size: 8,
            reduced_scale_decode: true,
            ..base
        };
        [base, reduced].map(|o| ImagePreprocessor::new(o).expect("valid options"))
    })
}

fn prepare_image() {
    preprocessors();
}

/// clip-image on arbitrary bytes (every format it sniffs: JPEG, PNG, GIF,
/// WebP, BMP). The preprocessor turns a decoder panic into
/// `ImageError::Internal`, which is a bug here (under AFL the panic hook
/// aborts first, at the panic itself).
pub fn image(data: &[u8]) {
    let [full, reduced] = preprocessors();
    let is_jpeg = data.starts_with(&[0xFF, 0xD8, 0xFF]);
    for p in [Some(full), is_jpeg.then_some(reduced)]
        .into_iter()
        .flatten()
    {
        let mut out = vec![f32::NAN; p.pixels_per_image()];
        match p.preprocess_into(data, &mut out) {
            Ok(()) => assert!(
                out.iter().all(|v| v.is_finite()),
                "a decoded image has non-finite pixels"
            ),
            Err(e @ (ImageError::Internal(_) | ImageError::OutputLength { .. })) => {
                panic!("bug in image preprocessing: {e}")
            }
            Err(_) => assert!(out.iter().all(|v| *v == 0.0), "failed output not zeroed"),
        }
    }
}

// ---------------------------------------------------------------- text

fn tokenizer() -> &'static Tokenizer {
    static TOKENIZER: OnceLock<Tokenizer> = OnceLock::new();
    TOKENIZER.get_or_init(|| {
        Tokenizer::from_file(&fixture("text/tokenizer.json"), TextOptions::default())
            .expect("the fixture tokenizer loads")
    })
}

fn prepare_text() {
    tokenizer();
}

/// clip-text's cleaning and BPE on arbitrary text. Bytes that are not UTF-8
/// are replaced (the server refuses them before tokenizing); the rest is
/// exercised as sent.
pub fn text(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let t = tokenizer();
    let ids = t
        .encode(&text)
        .unwrap_or_else(|e| panic!("a CLIP tokenizer failed on text: {e}"));
    let (start, end, pad) = (t.start_id() as i64, t.end_id() as i64, t.pad_id() as i64);
    assert_eq!(ids.len(), t.context_length());
    assert_eq!(ids[0], start, "first id is not the start token");
    // The end token follows the content; only padding comes after it.
    assert!(
        (1..ids.len()).any(|k| ids[k] == end && ids[k + 1..].iter().all(|&id| id == pad)),
        "no end token followed by padding only: {ids:?}"
    );
    assert!(
        ids.iter().all(|&id| (0..=end.max(start)).contains(&id)),
        "an id outside the vocabulary: {ids:?}"
    );
}

// ---------------------------------------------------------------- backend config

fn is_plain_relative(path: &Path) -> bool {
    path.components().next().is_some()
        && path.components().all(|c| matches!(c, Component::Normal(_)))
}

/// The backend's model config parser (the JSON Triton hands the backend).
/// What it accepts must be usable: files stay inside the version folder,
/// sizes are positive, an image spec builds a preprocessor or is refused
/// with an error.
pub fn triton_config(data: &[u8]) {
    let Ok(json) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(spec) = config::parse(json) else {
        return;
    };
    match spec {
        KindSpec::TextPreprocess(s) => {
            assert!(is_plain_relative(&s.tokenizer_file), "{s:?}");
            assert!(s.context_length >= 1 && s.max_text_bytes >= 1, "{s:?}");
        }
        KindSpec::ImagePreprocess(s) => {
            assert!(s.size >= 1 && s.max_image_bytes >= 1, "{s:?}");
            assert!(s.std.iter().all(|v| v.is_finite() && *v > 0.0), "{s:?}");
            let options = ImageOptions {
                size: s.size,
                mean: s.mean,
                std: s.std,
                max_pixels: s.max_pixels,
                reduced_scale_decode: s.reduced_scale_decode,
                center_crop: s.center_crop,
            };
            match ImagePreprocessor::new(options) {
                Ok(p) => assert!(p.pixels_per_image() >= 3),
                Err(e) => assert!(matches!(e, ImageError::InvalidOptions(_)), "{e}"),
            }
        }
        KindSpec::OnnxEncoder(s) => {
            assert!(is_plain_relative(&s.model_file), "{s:?}");
            assert!(s.instance_count >= 1, "{s:?}");
            assert!(matches!(s.inputs.len(), 1 | 2), "{s:?}");
            for spec in s.inputs.iter().chain([&s.output]) {
                assert!(!spec.dims.is_empty() && spec.dims.iter().all(|d| *d >= 1));
            }
            assert!(s.intra_op_threads != Some(0) && s.inter_op_threads != Some(0));
        }
    }
}

// ---------------------------------------------------------------- BYTES elements

/// The BYTES element parser. The first 8 bytes are the batch size
/// (little-endian i64, the shape `[n, 1]`), the rest is the tensor's data:
/// Triton's serialisation, a 4-byte little-endian length before each
/// element. What it accepts must serialise back to the same bytes.
pub fn bytes_elements(data: &[u8]) {
    let Some((n, rest)) = data.split_first_chunk::<8>() else {
        return;
    };
    let n = i64::from_le_bytes(*n);
    let input = Input {
        datatype: DataType::Bytes,
        shape: vec![n, 1],
        data: Cow::Borrowed(rest),
    };
    let Ok(elements) = batch::bytes_elements("TEXT", &input) else {
        return;
    };
    assert_eq!(elements.len() as i64, n);
    let mut again = Vec::with_capacity(rest.len());
    for e in &elements {
        again.extend_from_slice(&(e.len() as u32).to_le_bytes());
        again.extend_from_slice(e);
    }
    assert_eq!(again, rest, "elements do not serialise back to the input");
    let limit = 16;
    let too_big = elements.iter().any(|e| e.len() > limit);
    let checked = batch::check_element_sizes("TEXT", &elements, limit, "max_text_bytes");
    assert_eq!(checked.is_err(), too_big);
}

// ---------------------------------------------------------------- clip-export / repo-gen readers

/// A transformers config of a CLIP small enough that its safetensors file
/// is a few kilobytes (the corpus's seeds are written for it by make-seeds).
pub const TINY_CONFIG: &str = r#"{
  "model_type": "clip",
  "projection_dim": 4,
  "text_config": {
    "hidden_size": 4, "intermediate_size": 8, "num_attention_heads": 2, "num_hidden_layers": 1,
    "max_position_embeddings": 4, "vocab_size": 8, "eos_token_id": 7, "hidden_act": "gelu"
  },
  "vision_config": {
    "hidden_size": 4, "intermediate_size": 8, "num_attention_heads": 2, "num_hidden_layers": 1,
    "image_size": 4, "patch_size": 2, "num_channels": 3, "hidden_act": "gelu"
  }
}"#;

/// The architecture of [`TINY_CONFIG`].
pub fn tiny_arch() -> &'static ClipArchitecture {
    static ARCH: OnceLock<ClipArchitecture> = OnceLock::new();
    ARCH.get_or_init(|| ClipArchitecture::from_config_json(TINY_CONFIG).expect("valid config"))
}

fn prepare_tiny_arch() {
    tiny_arch();
}

/// clip-export's safetensors reader (both key layouts, F32/F16/BF16) against
/// the tiny architecture.
pub fn safetensors(data: &[u8]) {
    if let Ok(w) = ClipWeights::from_bytes(data, tiny_arch()) {
        assert_eq!(&w.arch, tiny_arch());
        assert!(w.logit_scale.is_none_or(f32::is_finite));
    }
}

/// A safetensors file of the tiny CLIP ([`TINY_CONFIG`]) in `layout` with
/// every weight stored as `dtype` (F32, F16 or BF16), small made-up values,
/// `logit_scale`, and for transformers the ignorable `position_ids` buffer.
/// The keys and shapes are the ones clip-export asks for: found by reading
/// the file and adding what its errors name until it loads.
pub fn tiny_safetensors(layout: WeightLayout, dtype: Dtype) -> Vec<u8> {
    let first = match layout {
        WeightLayout::Transformers => "text_model.embeddings.token_embedding.weight",
        WeightLayout::OpenClip => "visual.class_embedding",
    };
    let mut shapes: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    shapes.insert(first.into(), vec![1]);
    shapes.insert("logit_scale".into(), vec![]);
    for _ in 0..1000 {
        let bytes = write_safetensors(&shapes, dtype, layout);
        match ClipWeights::from_bytes(&bytes, tiny_arch()) {
            Ok(_) => return bytes,
            Err(ExportError::MissingKey { key, .. }) => {
                shapes.insert(key, vec![1]);
            }
            Err(ExportError::ShapeMismatch { key, expected, .. }) => {
                shapes.insert(key, expected);
            }
            Err(e) => panic!("cannot write the tiny CLIP's weights: {e}"),
        }
    }
    panic!("the tiny CLIP's weights did not converge")
}

fn write_safetensors(
    shapes: &BTreeMap<String, Vec<usize>>,
    dtype: Dtype,
    layout: WeightLayout,
) -> Vec<u8> {
    let mut tensors: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = shapes
        .iter()
        .map(|(key, shape)| {
            let count: usize = shape.iter().product();
            let values = (0..count).map(|i| ((i * 7 + key.len()) % 13) as f32 / 16.0 - 0.375);
            let data: Vec<u8> = match dtype {
                Dtype::F16 => values
                    .flat_map(|v| half::f16::from_f32(v).to_le_bytes())
                    .collect(),
                Dtype::BF16 => values
                    .flat_map(|v| half::bf16::from_f32(v).to_le_bytes())
                    .collect(),
                _ => values.flat_map(f32::to_le_bytes).collect(),
            };
            (key.clone(), dtype, shape.clone(), data)
        })
        .collect();
    if layout == WeightLayout::Transformers {
        let ids: Vec<u8> = (0..4i64).flat_map(i64::to_le_bytes).collect();
        tensors.push((
            "text_model.embeddings.position_ids".into(),
            Dtype::I64,
            vec![1, 4],
            ids,
        ));
    }
    let views = tensors.iter().map(|(key, dtype, shape, data)| {
        let view = safetensors::tensor::TensorView::new(*dtype, shape.clone(), data)
            .expect("consistent tensor");
        (key.as_str(), view)
    });
    let metadata = Some(HashMap::from([("format".to_string(), "pt".to_string())]));
    safetensors::serialize(views, metadata).expect("serialisable")
}

/// The file every `model_config` input reads as its weights.
fn tiny_weights() -> &'static [u8] {
    static WEIGHTS: OnceLock<Vec<u8>> = OnceLock::new();
    WEIGHTS.get_or_init(|| tiny_safetensors(WeightLayout::Transformers, Dtype::F32))
}

fn prepare_model_config() {
    tiny_weights();
}

/// clip-export's config.json reader (transformers `config.json`, open_clip's
/// `open_clip_config.json` or bare model config), as repo-gen calls it; an
/// accepted architecture then reads the tiny CLIP's weights, which computes
/// the expected shapes from the fuzzed sizes.
pub fn model_config(data: &[u8]) {
    let Ok(json) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(arch) = ClipArchitecture::from_config_json(json) else {
        return;
    };
    arch.validate()
        .expect("from_config_json returned an architecture validate() refuses");
    let _ = (arch.vision.grid(), arch.vision.tokens());
    let _ = ClipWeights::from_bytes(tiny_weights(), &arch);
}

/// repo-gen's reader of an ONNX model's interface (protobuf decode through
/// clip-export's types, then inputs, outputs and metadata). The names it
/// returns go into config.pbtxt: quoted, each must read back unchanged.
pub fn onnx(data: &[u8]) {
    let model = OnnxModel {
        model: data.to_vec(),
        external_data: None,
    };
    let Ok(io) = repo_gen::onnx_io::read_model(&model, Path::new("fuzz.onnx")) else {
        return;
    };
    assert!(!io.inputs.is_empty() && !io.outputs.is_empty());
    for spec in io.inputs.iter().chain(&io.outputs) {
        assert!(!spec.name.is_empty());
        assert!(spec.dims.iter().all(|d| *d == -1 || *d > 0), "{spec:?}");
        let quoted = repo_gen::pbtxt_string(&spec.name);
        assert_eq!(
            unquote_pbtxt(&quoted).as_deref(),
            Some(spec.name.as_str()),
            "{quoted}"
        );
    }
}

/// Reads back a protobuf text-format string literal (the escapes
/// `pbtxt_string` writes, and no raw newline or unescaped quote inside).
fn unquote_pbtxt(quoted: &str) -> Option<String> {
    let inner = quoted.strip_prefix('"')?.strip_suffix('"')?;
    let mut out = Vec::with_capacity(inner.len());
    let mut bytes = inner.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'"' | b'\n' => return None,
            b'\\' => match bytes.next()? {
                b'n' => out.push(b'\n'),
                b'r' => out.push(b'\r'),
                b't' => out.push(b'\t'),
                b'"' => out.push(b'"'),
                b'\\' => out.push(b'\\'),
                d @ b'0'..=b'7' => {
                    let mut v = u32::from(d - b'0');
                    for _ in 0..2 {
                        let d = bytes.next()?;
                        if !(b'0'..=b'7').contains(&d) {
                            return None;
                        }
                        v = v * 8 + u32::from(d - b'0');
                    }
                    out.push(u8::try_from(v).ok()?);
                }
                _ => return None,
            },
            b => out.push(b),
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pbtxt_unquote_reads_back_escapes() {
        for s in ["", "INPUT_IDS", "a\"b\\c\nd\te\r\u{1}\u{7f}é"] {
            assert_eq!(
                unquote_pbtxt(&repo_gen::pbtxt_string(s)).as_deref(),
                Some(s)
            );
        }
        assert_eq!(unquote_pbtxt("\"a\"b\""), None);
    }
}
