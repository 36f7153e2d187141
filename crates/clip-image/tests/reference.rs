//! Our output vs the transformers/PIL reference (`tests/fixtures/images`, made by `scripts/fixtures/image.py`).
//!
//! The reference PNGs hold PIL's uint8 image after resize + center crop; the fixture script asserts that rescale +
//! normalize of them equals `CLIPImageProcessor(use_fast=False)` within 1e-6, and our normalisation reproduces
//! that float arithmetic exactly, so differences below are all from decode + resize. A difference of one uint8
//! level is 1/255/std = 0.0142 to 0.0150 normalised units (0.01501 for the smallest std, 0.2613).
//!
//! Measured (transformers 4.57.6 / Pillow 13.0.0 fixtures, 38 images, x86-64), printed by
//! `cargo test --release -p clip-image --test reference -- --nocapture`:
//!
//! Full-scale path (`reduced_scale_decode: false`). Decoding matches PIL's: JPEG is bit-identical to Pillow's (same
//! libjpeg-turbo, same settings), PNG/GIF/BMP are lossless and converted to RGB as PIL does, and even lossy WebP
//! (image-webp vs libwebp) shows no decoder difference here. All differences come from the resize:
//! `fast_image_resize` uses Pillow's kernel, pass order and rounding scheme, but 16-bit coefficients (~14
//! significant bits for the largest tap) where Pillow's are scaled by 2^22.
//! * Photos and everything else but two-level images (JPEG baseline/progressive/grey/CMYK/EXIF, PNG
//!   RGB/RGBA/L/LA/palette/16-bit, WebP lossy and lossless, GIF incl. first frames smaller than or past the screen,
//!   transparency and local/short/grey palettes, BMP 24-bit, tiny, wide, tall, 2 to 24 MP): max 1 level (0.01501
//!   normalised), mean 0.0005-0.0048 levels. Asserted: max <= 1 level, mean <= 0.01 level.
//! * Two-level images (the `*_1bit.bmp` fixtures): every tap is 0 or 255, so the coefficient errors add up instead
//!   of averaging out. checker4_1bit (4-pixel checkerboard): max 2 levels (24 samples), mean 0.0058;
//!   coffee_dithered_1bit (dithered photo): max 1, mean 0.0116; checker1_1bit (1-pixel checkerboard, where the
//!   resized values sit on exact .5 ties): max 1, mean 0.457. Two is the ceiling, not just the measured worst:
//!   the first (horizontal) pass differs by at most one level, and the second pass's weights sum in absolute
//!   value to at most 1.25 (Catmull-Rom), so before rounding the outputs are less than 2 levels apart. (84 more
//!   1-bit images, dithered photos and patterns from 300x225 to 4000x3000, measured with the `parity` example:
//!   max 2 in 4 of them, mean up to 0.51 on a 1-pixel checkerboard.) Asserted: max <= 2 levels, mean <= 0.5 level.
//!
//! Reduced-scale path (`reduced_scale_decode: true`): only JPEGs with shortest side >= 4 * 224 take it (decoded at
//! 1/2 or 1/4 keeping >= 2 * 224; 1/8 would need >= 4 * 224 left, i.e. a shortest side of 7168); the others are
//! identical to the full-scale path (asserted). Measured: detailed_2mp.jpg (high-detail, 1/2) mean 0.72 levels,
//! max 11; retina.jpg (1/2) mean 0.45, max 36 (a sharp black disc edge); large_2mp.jpg (1/2) mean 0.36, max 8;
//! detailed_24mp.jpg (high-detail, 1/4) mean 0.32, max 4 (0.98 / 10 when it was decoded at 1/8); large_12mp.jpg
//! (1/4) mean 0.29, max 4. Camera-like photos from `scripts/bench/photos.py` (0.4 bytes/pixel, q90 4:2:0, 4 of
//! each size) and more high-detail ones (2 seeds x q80/q90), with the `parity` example: 2 MP (1/2) mean 0.50-0.54
//! / 0.70-0.75 (high detail), max 13; 12 MP (1/4) 0.36-0.38 / 0.45-0.47, max 4; 24 MP (1/4) 0.26-0.28 /
//! 0.30-0.32, max 3. Asserted: mean <= 0.8 level (0.012 normalised), max <= 48 levels.

use std::path::{Path, PathBuf};

use clip_image::{ImageOptions, ImagePreprocessor};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/images")
}

/// (name, input path, reference path), from the reference folder (one PNG per input, same stem).
fn cases() -> Vec<(String, PathBuf, PathBuf)> {
    let dir = fixtures();
    let mut inputs: Vec<PathBuf> = std::fs::read_dir(dir.join("inputs"))
        .expect("fixtures")
        .map(|e| e.unwrap().path())
        .collect();
    inputs.sort();
    // Exactly the inputs the manifest lists: a fixture missing from the checkout fails here, not silently.
    let manifest = std::fs::read_to_string(dir.join("manifest.json")).expect("manifest");
    let listed: Vec<&str> = manifest
        .split("\"file\": \"inputs/")
        .skip(1)
        .map(|rest| &rest[..rest.find('"').expect("closing quote")])
        .collect();
    let mut names: Vec<String> = inputs
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    let mut listed: Vec<String> = listed.into_iter().map(String::from).collect();
    names.sort();
    listed.sort();
    assert!(listed.len() >= 20, "manifest lists {} inputs", listed.len());
    assert_eq!(names, listed, "inputs/ vs manifest.json");
    inputs
        .into_iter()
        .map(|p| {
            let stem = p.file_stem().unwrap().to_string_lossy().into_owned();
            let r = dir.join("reference").join(format!("{stem}.png"));
            assert!(r.exists(), "missing reference for {}", p.display());
            (p.file_name().unwrap().to_string_lossy().into_owned(), p, r)
        })
        .collect()
}

/// Reference as CHW u8.
fn reference_chw(path: &Path, size: usize) -> Vec<u8> {
    let img = image::open(path).expect("reference png").to_rgb8();
    assert_eq!((img.width() as usize, img.height() as usize), (size, size));
    let mut chw = vec![0u8; 3 * size * size];
    for (i, px) in img.pixels().enumerate() {
        for c in 0..3 {
            chw[c * size * size + i] = px[c];
        }
    }
    chw
}

#[derive(Debug, Default, Clone, Copy)]
struct Stats {
    max_levels: f64,
    mean_levels: f64,
    max_norm: f64,
    mean_norm: f64,
}

fn compare(out: &[f32], reference: &[u8], opts: &ImageOptions) -> Stats {
    let plane = reference.len() / 3;
    let (mut max_n, mut sum_n, mut max_l, mut sum_l) = (0f64, 0f64, 0f64, 0f64);
    for (i, (&o, &r)) in out.iter().zip(reference).enumerate() {
        let c = i / plane;
        let want = ((r as f64 * (1.0 / 255.0)) as f32 - opts.mean[c]) / opts.std[c];
        let dn = (o as f64 - want as f64).abs();
        // Back to levels through the inverse of the normalisation.
        let level = ((o * opts.std[c] + opts.mean[c]) as f64 * 255.0).round();
        let dl = (level - r as f64).abs();
        max_n = max_n.max(dn);
        sum_n += dn;
        max_l = max_l.max(dl);
        sum_l += dl;
    }
    let n = out.len() as f64;
    Stats {
        max_levels: max_l,
        mean_levels: sum_l / n,
        max_norm: max_n,
        mean_norm: sum_n / n,
    }
}

fn run_path(reduced: bool) -> Vec<(String, Stats)> {
    let opts = ImageOptions {
        reduced_scale_decode: reduced,
        ..ImageOptions::default()
    };
    let pre = ImagePreprocessor::new(opts).unwrap();
    let size = opts.size as usize;
    let mut out = vec![0f32; pre.pixels_per_image()];
    let mut rows = Vec::new();
    println!(
        "\n{} path: fixture, max levels, mean levels, max normalised, mean normalised",
        if reduced {
            "REDUCED-SCALE"
        } else {
            "FULL-SCALE"
        }
    );
    for (name, input, reference) in cases() {
        let bytes = std::fs::read(&input).unwrap();
        pre.preprocess_into(&bytes, &mut out)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let s = compare(&out, &reference_chw(&reference, size), &opts);
        println!(
            "MEASURED {:32} max {:5.1}  mean {:.4}  max_n {:.5}  mean_n {:.6}",
            name, s.max_levels, s.mean_levels, s.max_norm, s.mean_norm
        );
        rows.push((name, s));
    }
    rows
}

/// Two-level fixtures (1-bit BMPs): the resize's fixed-point rounding is at its worst on them (module doc).
fn two_level(name: &str) -> bool {
    name.ends_with("_1bit.bmp")
}

/// Full-scale path (measured figures in the module doc). Asserted: max <= 1 level and <= 0.0151 normalised, mean
/// <= 0.01 level and <= 0.00015 normalised; on two-level images max <= 2 levels and <= 0.0302 normalised, mean
/// <= 0.5 level and <= 0.0075 normalised.
#[test]
fn full_scale_matches_reference() {
    let mut two_level_seen = 0;
    for (name, s) in run_path(false) {
        let (max, mean) = if two_level(&name) {
            two_level_seen += 1;
            (2.0, 0.5)
        } else {
            (1.0, 0.01)
        };
        assert!(
            s.max_levels <= max,
            "{name}: max {} levels > {max}",
            s.max_levels
        );
        assert!(
            s.mean_levels <= mean,
            "{name}: mean {} levels > {mean}",
            s.mean_levels
        );
        assert!(
            s.max_norm <= 0.0151 * max,
            "{name}: max normalised {}",
            s.max_norm
        );
        assert!(
            s.mean_norm <= 0.015 * mean,
            "{name}: mean normalised {}",
            s.mean_norm
        );
    }
    assert_eq!(two_level_seen, 3, "the three *_1bit.bmp fixtures");
}

/// Reduced-scale path. Fixtures that do not take it (not JPEG, or shortest side < 4 * 224) must give exactly the
/// full-scale output; the DCT-scaled ones (measured mean <= 0.72 level, max <= 36): mean <= 0.8 level
/// (0.012 normalised), max <= 48 levels. The five large JPEGs must take the path.
#[test]
fn reduced_scale_close_to_reference() {
    let full: std::collections::HashMap<String, Stats> = run_path(false).into_iter().collect();
    let mut taken = Vec::new();
    for (name, s) in run_path(true) {
        let f = full[&name];
        let takes_path = s.mean_levels != f.mean_levels || s.max_levels != f.max_levels;
        if takes_path {
            assert!(name.ends_with(".jpg"), "{name}: only JPEGs are DCT-scaled");
            assert!(
                s.mean_levels <= 0.8,
                "{name}: mean {} levels > 0.8",
                s.mean_levels
            );
            assert!(
                s.mean_norm <= 0.012,
                "{name}: mean normalised {}",
                s.mean_norm
            );
            assert!(
                s.max_levels <= 48.0,
                "{name}: max {} levels > 48",
                s.max_levels
            );
            taken.push(name);
        }
    }
    taken.sort();
    assert_eq!(
        taken,
        [
            "detailed_24mp.jpg",
            "detailed_2mp.jpg",
            "large_12mp.jpg",
            "large_2mp.jpg",
            "retina.jpg"
        ]
    );
}
