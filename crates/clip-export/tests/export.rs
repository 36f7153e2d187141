//! Export -> ONNX Runtime -> compare with transformers' reference embeddings
//! (tests/fixtures/tiny-clip, made by scripts/fixtures/tiny_clip.py).
//!
//! ONNX Runtime comes from scripts/install-onnxruntime.sh, run once per test
//! binary.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::OnceLock;

use clip_export::{
    export_textual, export_visual, export_visual_pixels, verify_textual, verify_visual,
    ClipArchitecture, ClipWeights, ExportError, ExportOptions, ExternalDataPolicy, OnnxModel,
    OrtRuntime, WeightDtype, WeightLayout,
};
use clip_test_support::{ort_library, tiny_clip};
use serde_json::Value;

const TOLERANCE: f32 = 1e-4;

fn fixtures() -> PathBuf {
    tiny_clip::dir()
}

fn runtime() -> OrtRuntime {
    OrtRuntime::load(Some(ort_library()), "the test's library").expect("load ONNX Runtime")
}

struct Fixtures {
    manifest: Value,
    input_ids: Vec<i64>,
    id_rows: usize,
    context: usize,
    pixels: Vec<f32>,
    images: usize,
    image_size: usize,
}

fn fx() -> &'static Fixtures {
    static FX: OnceLock<Fixtures> = OnceLock::new();
    FX.get_or_init(|| {
        let manifest = tiny_clip::manifest().clone();
        let ids = tiny_clip::input("input_ids");
        let (input_ids, ids_shape) = (ids.i64s(), ids.shape);
        let pixels = tiny_clip::input("pixel_values");
        let (pixels, px_shape) = (pixels.f32s(), pixels.shape);
        Fixtures {
            input_ids,
            id_rows: ids_shape[0],
            context: ids_shape[1],
            pixels,
            images: px_shape[0],
            image_size: px_shape[2],
            manifest,
        }
    })
}

fn reference(variant: &str, which: &str) -> (Vec<f32>, Vec<usize>) {
    let reference = tiny_clip::reference(variant, which);
    (reference.f32s(), reference.shape)
}

fn arch_for(variant: &str, layout: WeightLayout) -> ClipArchitecture {
    let file = match layout {
        WeightLayout::Transformers => "config.json",
        WeightLayout::OpenClip => "open_clip_config.json",
    };
    let json = std::fs::read_to_string(fixtures().join(variant).join(file)).unwrap();
    ClipArchitecture::from_config_json(&json).unwrap()
}

fn weights_path(variant: &str, layout: WeightLayout) -> PathBuf {
    fixtures().join(variant).join(match layout {
        WeightLayout::Transformers => "model.safetensors",
        WeightLayout::OpenClip => "open_clip_model.safetensors",
    })
}

fn load(variant: &str, layout: WeightLayout) -> ClipWeights {
    let arch = arch_for(variant, layout);
    let weights = ClipWeights::load(weights_path(variant, layout), &arch).unwrap();
    assert_eq!(weights.layout, layout);
    weights
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()))
}

/// Rows `rows` of a row-major matrix with `width` columns.
fn rows<T: Copy>(data: &[T], width: usize, rows: &[usize]) -> Vec<T> {
    rows.iter()
        .flat_map(|&r| data[r * width..(r + 1) * width].iter().copied())
        .collect()
}

fn text_parity(model: &OnnxModel, variant: &str, label: &str, tolerance: f32) {
    let f = fx();
    let (expected, shape) = reference(variant, "text_features");
    let mut session = runtime().session(model).unwrap();
    let out = session.embed_text(&f.input_ids, f.id_rows).unwrap();
    assert_eq!(out.shape, vec![shape[0] as i64, shape[1] as i64]);
    let diff = max_abs_diff(&out.data, &expected);
    eprintln!(
        "{label}: text max abs diff {diff:.3e} over {} rows",
        f.id_rows
    );
    assert!(
        diff <= tolerance,
        "{label}: text max abs diff {diff} > {tolerance}"
    );
}

fn image_parity(model: &OnnxModel, variant: &str, label: &str, tolerance: f32) {
    let f = fx();
    let (expected, shape) = reference(variant, "image_features");
    let mut session = runtime().session(model).unwrap();
    let out = session
        .embed_images(&f.pixels, f.images, f.image_size)
        .unwrap();
    assert_eq!(out.shape, vec![shape[0] as i64, shape[1] as i64]);
    let diff = max_abs_diff(&out.data, &expected);
    eprintln!(
        "{label}: image max abs diff {diff:.3e} over {} images",
        f.images
    );
    assert!(
        diff <= tolerance,
        "{label}: image max abs diff {diff} > {tolerance}"
    );
}

fn parity(variant: &str, layout: WeightLayout) {
    let weights = load(variant, layout);
    let options = ExportOptions::default();
    let label = format!("{variant}/{}", layout.name());
    text_parity(
        &export_textual(&weights, &options).unwrap(),
        variant,
        &label,
        TOLERANCE,
    );
    image_parity(
        &export_visual(&weights, &options).unwrap(),
        variant,
        &label,
        TOLERANCE,
    );
}

#[test]
fn quick_gelu_transformers_layout_matches_transformers() {
    parity("quick_gelu", WeightLayout::Transformers);
}

#[test]
fn gelu_transformers_layout_matches_transformers() {
    parity("gelu", WeightLayout::Transformers);
}

#[test]
fn gelu_open_clip_layout_matches_transformers() {
    parity("gelu", WeightLayout::OpenClip);
}

#[test]
fn both_layouts_load_to_the_same_weights() {
    let hf = load("gelu", WeightLayout::Transformers);
    let oc = load("gelu", WeightLayout::OpenClip);
    // open_clip configs carry no end-of-text id: argmax pooling, which picks
    // the same token on CLIP-tokenized rows.
    assert_eq!(
        hf.arch.text.pooling,
        clip_export::TextPooling::FirstEos(49407)
    );
    assert_eq!(oc.arch.text.pooling, clip_export::TextPooling::ArgMax);
    let mut oc_arch = oc.arch;
    oc_arch.text.pooling = hf.arch.text.pooling;
    assert_eq!(hf.arch, oc_arch);
    assert_eq!(hf.text, oc.text);
    assert_eq!(hf.vision, oc.vision);
    assert_eq!(hf.logit_scale, oc.logit_scale);
    let expected = fx().manifest["variants"]["gelu"]["logit_scale"]
        .as_f64()
        .unwrap() as f32;
    assert_eq!(hf.logit_scale, Some(expected));
}

#[test]
fn dynamic_batch_one_and_five() {
    let f = fx();
    for variant in ["quick_gelu", "gelu"] {
        let weights = load(variant, WeightLayout::Transformers);
        let options = ExportOptions::default();
        let dim = weights.arch.embed_dim;
        let runtime = runtime();

        let (text_ref, _) = reference(variant, "text_features");
        let mut text = runtime
            .session(&export_textual(&weights, &options).unwrap())
            .unwrap();
        for picked in [vec![6], vec![0, 3, 1, 5, 6]] {
            let ids = rows(&f.input_ids, f.context, &picked);
            let out = text.embed_text(&ids, picked.len()).unwrap();
            assert_eq!(out.shape, vec![picked.len() as i64, dim as i64]);
            let diff = max_abs_diff(&out.data, &rows(&text_ref, dim, &picked));
            assert!(diff <= TOLERANCE, "{variant} text batch {picked:?}: {diff}");
        }

        let (image_ref, _) = reference(variant, "image_features");
        let mut visual = runtime
            .session(&export_visual(&weights, &options).unwrap())
            .unwrap();
        let pixels_per_image = 3 * f.image_size * f.image_size;
        for picked in [vec![4], vec![4, 0, 3, 2, 1]] {
            let px = rows(&f.pixels, pixels_per_image, &picked);
            let out = visual
                .embed_images(&px, picked.len(), f.image_size)
                .unwrap();
            assert_eq!(out.shape, vec![picked.len() as i64, dim as i64]);
            let diff = max_abs_diff(&out.data, &rows(&image_ref, dim, &picked));
            assert!(
                diff <= TOLERANCE,
                "{variant} image batch {picked:?}: {diff}"
            );
        }
    }
}

/// The pixel path's graph (uint8 HWC in, normalised inside) gives the
/// normalised graph's embedding for the same crops, in both weight dtypes.
#[test]
fn the_pixel_graph_normalises_like_the_preprocessing_model() {
    let f = fx();
    let weights = load("quick_gelu", WeightLayout::Transformers);
    let (mean, std) = (
        clip_contract::defaults::IMAGE_MEAN,
        clip_contract::defaults::IMAGE_STD,
    );
    let s = f.image_size;
    let batch = 4;
    // Every level in every channel, in a scrambled order.
    let hwc: Vec<u8> = (0..batch * s * s * 3)
        .map(|i| (i * 97 % 256) as u8)
        .collect();
    // What clip-image's lookup table gives: x / 255 in f64, then f32 arithmetic.
    let mut chw = vec![0f32; hwc.len()];
    for b in 0..batch {
        for y in 0..s {
            for x in 0..s {
                for c in 0..3 {
                    let level = hwc[((b * s + y) * s + x) * 3 + c];
                    let scaled = (f64::from(level) * (1.0 / 255.0)) as f32;
                    chw[((b * 3 + c) * s + y) * s + x] = (scaled - mean[c]) / std[c];
                }
            }
        }
    }
    let runtime = runtime();
    for dtype in [WeightDtype::F32, WeightDtype::F16] {
        let options = ExportOptions {
            dtype,
            ..Default::default()
        };
        let mut normalised = runtime
            .session(&export_visual(&weights, &options).unwrap())
            .unwrap();
        let mut pixels = runtime
            .session(&export_visual_pixels(&weights, &options, mean, std).unwrap())
            .unwrap();
        let expected = normalised.embed_images(&chw, batch, s).unwrap();
        let got = pixels.embed_pixels(&hwc, batch, s).unwrap();
        assert_eq!(got.shape, expected.shape);
        let diff = max_abs_diff(&got.data, &expected.data);
        assert!(diff <= 1e-5, "{dtype:?}: {diff}");
    }
}

#[test]
fn probe_verification_passes() {
    let runtime = runtime();
    for (variant, layout) in [
        ("quick_gelu", WeightLayout::Transformers),
        ("gelu", WeightLayout::OpenClip),
    ] {
        let weights = load(variant, layout);
        let options = ExportOptions::default();
        let report = verify_textual(
            &runtime,
            &export_textual(&weights, &options).unwrap(),
            &weights.arch,
        )
        .unwrap();
        assert_eq!(report.output_shape, vec![3, 24]);
        assert!(report.max_abs > 0.0);
        let report = verify_visual(
            &runtime,
            &export_visual(&weights, &options).unwrap(),
            &weights.arch,
        )
        .unwrap();
        assert_eq!(report.output_shape, vec![3, 24]);
    }
}

#[test]
fn models_declare_the_contract() {
    let weights = load("quick_gelu", WeightLayout::Transformers);
    let options = ExportOptions::default();
    for (model, input) in [
        (
            export_textual(&weights, &options).unwrap(),
            clip_contract::tensor::INPUT_IDS,
        ),
        (
            export_visual(&weights, &options).unwrap(),
            clip_contract::tensor::PIXEL_VALUES,
        ),
    ] {
        let proto = model.decode().unwrap();
        assert_eq!(proto.opset_import[0].version, Some(17));
        let graph = proto.graph.unwrap();
        let names = |v: &[clip_export::proto::ValueInfoProto]| {
            v.iter()
                .map(|i| i.name.clone().unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&graph.input), vec![input]);
        assert_eq!(names(&graph.output), vec![clip_contract::tensor::EMBEDDING]);
        let meta: HashMap<_, _> = proto
            .metadata_props
            .iter()
            .map(|e| (e.key.clone().unwrap(), e.value.clone().unwrap()))
            .collect();
        assert_eq!(meta["clip.activation"], "quick_gelu");
        assert_eq!(meta["clip.embed_dim"], "24");
    }
}

#[test]
fn external_data_models_run_the_same() {
    let weights = load("gelu", WeightLayout::OpenClip);
    let options = ExportOptions {
        external_data: ExternalDataPolicy {
            threshold: 64 * 1024,
            file_name: "model.onnx.data".into(),
        },
        ..Default::default()
    };
    let textual = export_textual(&weights, &options).unwrap();
    let visual = export_visual(&weights, &options).unwrap();
    for model in [&textual, &visual] {
        let external = model
            .external_data
            .as_ref()
            .expect("external data past 64 KiB");
        assert!(model.model.len() < 64 * 1024, "weights left the model file");
        assert!(external.bytes.len() > 500_000);
    }
    text_parity(&textual, "gelu", "gelu/open_clip external data", TOLERANCE);
    image_parity(&visual, "gelu", "gelu/open_clip external data", TOLERANCE);

    let dir = tempfile::tempdir().unwrap();
    let written = textual.write(dir.path(), "model.onnx").unwrap();
    assert_eq!(
        written,
        vec![
            dir.path().join("model.onnx"),
            dir.path().join("model.onnx.data")
        ]
    );
}

// ---- weight errors ----

/// The gelu fixture's tensors, re-serialised after `edit`.
fn edited_file(
    edit: impl FnOnce(&mut Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)>),
) -> Vec<u8> {
    let bytes = std::fs::read(weights_path("gelu", WeightLayout::Transformers)).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Vec<_> = file
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            (
                name,
                view.dtype(),
                view.shape().to_vec(),
                view.data().to_vec(),
            )
        })
        .collect();
    edit(&mut tensors);
    let views: Vec<_> = tensors
        .iter()
        .map(|(name, dtype, shape, data)| {
            (
                name.clone(),
                safetensors::tensor::TensorView::new(*dtype, shape.clone(), data).unwrap(),
            )
        })
        .collect();
    safetensors::serialize(views, None).unwrap()
}

#[test]
fn shape_mismatch_names_key_and_both_shapes() {
    let mut arch = arch_for("gelu", WeightLayout::Transformers);
    arch.embed_dim = 32;
    let err =
        ClipWeights::load(weights_path("gelu", WeightLayout::Transformers), &arch).unwrap_err();
    match &err {
        ExportError::ShapeMismatch {
            key,
            expected,
            found,
        } => {
            assert_eq!(key, "text_projection.weight");
            assert_eq!(expected, &vec![32, 32]);
            assert_eq!(found, &vec![24, 32]);
        }
        other => panic!("expected a shape mismatch, got {other}"),
    }
    let text = err.to_string();
    assert!(
        text.contains("text_projection.weight")
            && text.contains("[32, 32]")
            && text.contains("[24, 32]"),
        "{text}"
    );

    // Same through the open_clip layout (its projection is [width, embed]).
    let mut arch = arch_for("gelu", WeightLayout::OpenClip);
    arch.text.layers = 2;
    arch.vision.patch_size = 16;
    let err = ClipWeights::load(weights_path("gelu", WeightLayout::OpenClip), &arch).unwrap_err();
    assert!(
        matches!(&err, ExportError::ShapeMismatch { key, .. } if key == "visual.conv1.weight"),
        "{err}"
    );
}

#[test]
fn missing_key_is_named() {
    let arch = arch_for("gelu", WeightLayout::Transformers);
    let bytes =
        edited_file(|t| t.retain(|(name, ..)| name != "text_model.encoder.layers.1.mlp.fc2.bias"));
    let err = ClipWeights::from_bytes(&bytes, &arch).unwrap_err();
    assert!(
        matches!(&err, ExportError::MissingKey { key, .. } if key == "text_model.encoder.layers.1.mlp.fc2.bias"),
        "{err}"
    );
    assert!(err.to_string().contains("transformers layout"), "{err}");

    // A config with more layers than the file holds.
    let mut arch = arch_for("gelu", WeightLayout::OpenClip);
    arch.vision.layers = 3;
    let err = ClipWeights::load(weights_path("gelu", WeightLayout::OpenClip), &arch).unwrap_err();
    assert!(
        matches!(&err, ExportError::MissingKey { key, .. } if key == "visual.transformer.resblocks.2.attn.in_proj_weight"),
        "{err}"
    );
}

#[test]
fn unknown_keys_are_refused() {
    let arch = arch_for("gelu", WeightLayout::Transformers);
    let bytes = edited_file(|t| {
        t.push((
            "text_model.encoder.layers.2.mlp.fc1.bias".into(),
            safetensors::Dtype::F32,
            vec![1],
            vec![0; 4],
        ));
        t.push((
            "text_model.embeddings.position_ids".into(),
            safetensors::Dtype::I64,
            vec![1, 77],
            vec![0; 8 * 77],
        ));
    });
    let err = ClipWeights::from_bytes(&bytes, &arch).unwrap_err();
    match &err {
        ExportError::UnexpectedKeys { count, keys, .. } => {
            // position_ids is a known buffer and is ignored.
            assert_eq!(*count, 1);
            assert_eq!(keys, "text_model.encoder.layers.2.mlp.fc1.bias");
        }
        other => panic!("expected unexpected keys, got {other}"),
    }
}

#[test]
fn unknown_layout_and_bad_dtype() {
    let arch = arch_for("gelu", WeightLayout::Transformers);
    let bytes = edited_file(|t| {
        for (name, ..) in t.iter_mut() {
            *name = format!("model.{name}")
                .replace("text_model", "txt")
                .replace("vision_model", "vis");
        }
    });
    let err = ClipWeights::from_bytes(&bytes, &arch).unwrap_err();
    assert!(matches!(err, ExportError::UnknownLayout { .. }), "{err}");

    let bytes = edited_file(|t| {
        let entry = t
            .iter_mut()
            .find(|(n, ..)| n == "vision_model.post_layernorm.bias")
            .unwrap();
        entry.1 = safetensors::Dtype::I32;
    });
    let err = ClipWeights::from_bytes(&bytes, &arch).unwrap_err();
    assert!(
        matches!(&err, ExportError::UnsupportedDtype { key, .. } if key == "vision_model.post_layernorm.bias"),
        "{err}"
    );
}

#[test]
fn half_precision_weights_load_and_match_loosely() {
    // The same weights stored as F16 in the file: loading widens them, and
    // the export stays within float16 rounding of the reference.
    let arch = arch_for("quick_gelu", WeightLayout::Transformers);
    let bytes = std::fs::read(weights_path("quick_gelu", WeightLayout::Transformers)).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let tensors: Vec<_> = file
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            let halves: Vec<u8> = view
                .data()
                .chunks_exact(4)
                .flat_map(|c| {
                    half::f16::from_f32(f32::from_le_bytes(c.try_into().unwrap())).to_le_bytes()
                })
                .collect();
            (name, view.shape().to_vec(), halves)
        })
        .collect();
    let views: Vec<_> = tensors
        .iter()
        .map(|(n, s, d)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F16, s.clone(), d)
                    .unwrap(),
            )
        })
        .collect();
    let f16_file = safetensors::serialize(views, None).unwrap();
    let weights = ClipWeights::from_bytes(&f16_file, &arch).unwrap();
    let model = export_textual(&weights, &ExportOptions::default()).unwrap();
    text_parity(&model, "quick_gelu", "quick_gelu f16 file", 0.05);
}

#[test]
fn fp16_export_runs_close_to_fp32() {
    for variant in ["quick_gelu", "gelu"] {
        let weights = load(variant, WeightLayout::Transformers);
        let options = ExportOptions {
            dtype: WeightDtype::F16,
            ..Default::default()
        };
        let textual = export_textual(&weights, &options).unwrap();
        let visual = export_visual(&weights, &options).unwrap();
        let fp32 = export_textual(&weights, &ExportOptions::default()).unwrap();
        assert!(
            textual.model.len() < fp32.model.len() * 6 / 10,
            "fp16 weights halve the file"
        );
        let label = format!("{variant} fp16");
        text_parity(&textual, variant, &label, 0.01);
        image_parity(&visual, variant, &label, 0.01);
    }
}
