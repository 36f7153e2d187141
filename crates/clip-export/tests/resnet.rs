//! ResNet CLIPs (open_clip `ModifiedResNet`) and the ViT-B-16-plus-240
//! geometry: export -> ONNX Runtime -> compare with open_clip's embeddings
//! (tests/fixtures/tiny-resnet-clip, made by
//! scripts/fixtures/tiny_resnet_clip.py).

use std::path::{Path, PathBuf};

use clip_contract::defaults;
use clip_export::{
    export_textual, export_visual, export_visual_pixels, verify_textual, verify_visual,
    verify_visual_pixels, ClipArchitecture, ClipWeights, ExportError, ExportOptions, OrtRuntime,
    VisionKind, VisualWeights, WeightDtype,
};
use clip_test_support::{fixture, ort_library, tiny_clip};
use serde_json::Value;

const TOLERANCE: f32 = 1e-4;

fn dir() -> PathBuf {
    fixture("tiny-resnet-clip")
}

fn manifest_in(base: &Path) -> Value {
    let text = std::fs::read_to_string(base.join("manifest.json")).expect("manifest.json");
    serde_json::from_str(&text).expect("manifest.json is JSON")
}

fn manifest() -> Value {
    manifest_in(&dir())
}

fn runtime() -> OrtRuntime {
    OrtRuntime::load(Some(ort_library()), "the test's library").expect("load ONNX Runtime")
}

fn arch_in(base: &Path, variant: &str) -> ClipArchitecture {
    let json = std::fs::read_to_string(base.join(variant).join("open_clip_config.json")).unwrap();
    ClipArchitecture::from_config_json(&json).unwrap()
}

fn arch(variant: &str) -> ClipArchitecture {
    arch_in(&dir(), variant)
}

fn load_in(base: &Path, variant: &str) -> ClipWeights {
    let path = base.join(variant).join("open_clip_model.safetensors");
    ClipWeights::load(path, &arch_in(base, variant)).unwrap()
}

fn load(variant: &str) -> ClipWeights {
    load_in(&dir(), variant)
}

/// The generator's `formula_pixels`: `count` CHW images of exact binary
/// fractions (two of hashed noise in [-2, 2), one of stripes).
fn formula_pixels(count: usize, size: usize) -> Vec<f32> {
    let per_image = 3 * size * size;
    let mut out = Vec::with_capacity(count * per_image);
    for b in 0..count {
        for j in 0..per_image {
            let value = if b < 2 {
                let h = (j as u64 * 2_654_435_761 + (b as u64 + 1) * 40503) & 0xFFFF_FFFF;
                ((h >> 20) as i64 - 2048) as f32 / 1024.0
            } else {
                let (c, rest) = (j / (size * size), j % (size * size));
                let (y, x) = (rest / size, rest % size);
                ((x + 2 * y + 37 * c) % 64) as f32 / 16.0 - 2.0
            };
            out.push(value);
        }
    }
    out
}

fn ids(variant: &Value) -> (Vec<i64>, usize) {
    let tensor = match variant["text_ids"].as_str().unwrap() {
        "full_vocab_ids" => tiny_clip::input("input_ids"),
        _ => tiny_clip::Tensor::read_in(&dir(), &manifest()["inputs"]["small_vocab_ids"]),
    };
    (tensor.i64s(), tensor.shape[0])
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()))
}

/// Text and image embeddings of `name` within [`TOLERANCE`] of open_clip's.
fn parity(name: &str) {
    parity_in(&dir(), name);
}

fn parity_in(base: &Path, name: &str) {
    let manifest = manifest_in(base);
    let variant = &manifest["variants"][name];
    let weights = load_in(base, name);
    let size = weights.arch.vision.image_size;
    assert_eq!(size as u64, variant["image_size"].as_u64().unwrap());
    let options = ExportOptions::default();
    let runtime = runtime();

    let (ids, rows) = ids(variant);
    let text = runtime
        .session(&export_textual(&weights, &options).unwrap())
        .unwrap()
        .embed_text(&ids, rows)
        .unwrap();
    let expected = tiny_clip::Tensor::read_in(base, &variant["text_features"]).f32s();
    let diff = max_abs_diff(&text.data, &expected);
    eprintln!("{name}: text max abs diff {diff:.3e}");
    assert!(diff <= TOLERANCE, "{name}: text max abs diff {diff}");

    let image = runtime
        .session(&export_visual(&weights, &options).unwrap())
        .unwrap()
        .embed_images(&formula_pixels(3, size), 3, size)
        .unwrap();
    let reference = tiny_clip::Tensor::read_in(base, &variant["image_features"]);
    assert_eq!(image.shape, [3, reference.shape[1] as i64]);
    let expected = reference.f32s();
    let diff = max_abs_diff(&image.data, &expected);
    let scale = expected.iter().fold(0f32, |m, v| m.max(v.abs()));
    eprintln!("{name}: image max abs diff {diff:.3e} (largest value {scale:.2})");
    assert!(diff <= TOLERANCE, "{name}: image max abs diff {diff}");
}

#[test]
fn resnet_224_matches_open_clip() {
    parity("rn224");
}

#[test]
fn resnet_288_matches_open_clip() {
    parity("rn288");
}

#[test]
fn resnet_384_matches_open_clip() {
    parity("rn384");
}

#[test]
fn resnet_448_matches_open_clip() {
    parity("rn448");
}

#[test]
fn vit_240_patch_16_matches_open_clip() {
    let arch = arch("vit240");
    assert_eq!(arch.vision.kind, VisionKind::Transformer);
    assert_eq!((arch.vision.image_size, arch.vision.patch_size), (240, 16));
    parity("vit240");
}

#[test]
fn resnet_config_reads_as_open_clip_builds_it() {
    let arch = arch("rn448");
    assert_eq!(
        arch.vision.kind,
        VisionKind::ResNet {
            stages: [2, 1, 1, 1]
        }
    );
    assert_eq!(arch.vision.feature_width(), 128);
    // heads = width * 32 // head_width
    assert_eq!(arch.vision.heads, 4);
    assert_eq!(arch.vision.tokens(), 14 * 14 + 1);
    let weights = load("rn448");
    let VisualWeights::ResNet(resnet) = &weights.vision else {
        panic!("a ResNet tower")
    };
    assert_eq!(resnet.stages[0].len(), 2);
    assert!(resnet.stages[0][0].downsample.is_some());
    assert!(resnet.stages[0][1].downsample.is_none());
    assert_eq!(resnet.stages[1][0].stride, 2);
}

#[test]
fn resnet_fp16_and_pixel_graphs_run() {
    let weights = load("rn288");
    let runtime = runtime();
    let size = weights.arch.vision.image_size;
    let pixels = formula_pixels(3, size);
    let full = runtime
        .session(&export_visual(&weights, &ExportOptions::default()).unwrap())
        .unwrap()
        .embed_images(&pixels, 3, size)
        .unwrap();
    let half = ExportOptions {
        dtype: WeightDtype::F16,
        ..ExportOptions::default()
    };
    let model = export_visual(&weights, &half).unwrap();
    verify_visual(&runtime, &model, &weights.arch).unwrap();
    let low = runtime
        .session(&model)
        .unwrap()
        .embed_images(&pixels, 3, size)
        .unwrap();
    let scale = full.data.iter().fold(0f32, |m, v| m.max(v.abs()));
    let diff = max_abs_diff(&low.data, &full.data);
    eprintln!("fp16 ResNet: max abs diff {diff:.3e} of values up to {scale:.2}");
    assert!(diff <= 0.02 * scale, "fp16 ResNet drifted by {diff}");

    let (mean, std) = (defaults::IMAGE_MEAN, defaults::IMAGE_STD);
    let pixel_model = export_visual_pixels(&weights, &ExportOptions::default(), mean, std).unwrap();
    verify_visual_pixels(&runtime, &pixel_model, &weights.arch).unwrap();
}

#[test]
fn a_resnet_file_with_a_vit_config_is_refused_by_name() {
    let mut arch = arch("rn224");
    arch.vision = self::arch("vit240").vision;
    let err = ClipWeights::load(dir().join("rn224/open_clip_model.safetensors"), &arch)
        .expect_err("a ViT config cannot read ResNet weights");
    assert!(
        matches!(&err, ExportError::MissingKey { key, .. } if key == "visual.conv1.weight")
            || matches!(&err, ExportError::ShapeMismatch { key, .. } if key == "visual.conv1.weight"),
        "{err}"
    );
}

#[test]
fn bad_resnet_configs_name_the_problem() {
    let with_layers = |layers: &str| {
        format!(
            r#"{{"embed_dim": 16, "vision_cfg": {{"image_size": 224, "layers": {layers}, "width": 8}},
                "text_cfg": {{"width": 8, "heads": 2, "layers": 1}}}}"#
        )
    };
    for (layers, wanted) in [
        ("[1, 1, 1]", "has 3 stages; a ModifiedResNet has 4"),
        ("[1, 1, 0, 1]", "include an empty one"),
        ("[1, \"a\", 1, 1]", "should be four block counts"),
        (
            "[18446744073709551615, 18446744073709551615, 1, 1]",
            "above 2^24",
        ),
    ] {
        let err = ClipArchitecture::from_config_json(&with_layers(layers)).unwrap_err();
        assert!(err.to_string().contains(wanted), "{layers}: {err}");
    }
    // 200 px does not tile into the 32 px cells the attention pool sees.
    let huge =
        with_layers("[1, 1, 1, 1]").replace("\"width\": 8}", "\"width\": 18446744073709551615}");
    let err = ClipArchitecture::from_config_json(&huge).unwrap_err();
    assert!(
        err.to_string()
            .contains("vision width 18446744073709551615 is above"),
        "{err}"
    );
    let json = with_layers("[1, 1, 1, 1]").replace("224", "200");
    let err = ClipArchitecture::from_config_json(&json).unwrap_err();
    assert!(
        err.to_string()
            .contains("image size 200 is not a multiple of patch size 32"),
        "{err}"
    );
}

/// RN50's real sizes, random weights: both towers export, load and run.
#[test]
fn random_rn50_exports_and_runs() {
    let json = r#"{"embed_dim": 1024, "quick_gelu": true,
        "vision_cfg": {"image_size": 224, "layers": [3, 4, 6, 3], "width": 64, "patch_size": null},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 512, "heads": 8, "layers": 12}}"#;
    let arch = ClipArchitecture::from_config_json(json).unwrap();
    assert_eq!(arch.vision.heads, 32);
    let weights = ClipWeights::random(&arch, 5).unwrap();
    let runtime = runtime();
    let options = ExportOptions::default();
    let report =
        verify_visual(&runtime, &export_visual(&weights, &options).unwrap(), &arch).unwrap();
    assert_eq!(report.output_shape, [3, 1024]);
    assert!(report.max_abs > 0.0);
    verify_textual(
        &runtime,
        &export_textual(&weights, &options).unwrap(),
        &arch,
    )
    .unwrap();
}

/// A full-size open_clip model with random weights (ViT-B-16-plus-240, or
/// any other, RN50x64 included), written with its reference by
/// `scripts/fixtures/full_size_reference.py MODEL DIR`: too big to commit.
#[test]
#[ignore = "needs CLIP_FULL_SIZE_DIR, written by scripts/fixtures/full_size_reference.py"]
fn full_size_model_matches_open_clip() {
    let base = std::env::var_os("CLIP_FULL_SIZE_DIR")
        .expect("CLIP_FULL_SIZE_DIR names the folder full_size_reference.py wrote");
    parity_in(Path::new(&base), "full");
}
