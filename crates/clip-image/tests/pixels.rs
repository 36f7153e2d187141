//! The pixel path's crops: `pixels_into` gives the RGB levels that
//! `preprocess_into` normalises, on every fixture image (every format,
//! grey, alpha, palette, 16-bit, reduced-scale JPEGs), so a client that
//! crops locally and lets the encoder's graph normalise gets the same input.

use std::path::{Path, PathBuf};

use clip_contract::defaults;
use clip_image::{ImageError, ImageOptions, ImagePreprocessor};

fn inputs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/images/inputs")
}

/// The reference's step 4 on one level: `x / 255` in f64, then f32.
fn normalised(level: u8, c: usize) -> f32 {
    let x = (f64::from(level) * (1.0 / 255.0)) as f32;
    (x - defaults::IMAGE_MEAN[c]) / defaults::IMAGE_STD[c]
}

#[test]
fn pixels_are_the_levels_preprocessing_normalises_on_every_fixture() {
    let mut names: Vec<_> = std::fs::read_dir(inputs_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert!(names.len() >= 30, "fixtures missing: {names:?}");
    for reduced_scale_decode in [false, true] {
        let p = ImagePreprocessor::new(ImageOptions {
            reduced_scale_decode,
            ..ImageOptions::default()
        })
        .unwrap();
        let s = p.options().size as usize;
        // Only JPEGs decode at a reduced scale.
        let jpeg = |name: &&String| !reduced_scale_decode || name.ends_with(".jpg");
        for name in names.iter().filter(jpeg) {
            let bytes = std::fs::read(inputs_dir().join(name)).unwrap();
            let mut chw = vec![0f32; p.pixels_per_image()];
            let mut hwc = vec![0u8; p.pixels_per_image()];
            let normalised_decode = p.preprocess_reporting(&bytes, &mut chw).unwrap();
            let pixels_decode = p.pixels_into(&bytes, &mut hwc).unwrap();
            assert_eq!(pixels_decode, normalised_decode, "{name}");
            for (i, &level) in hwc.iter().enumerate() {
                let (pixel, c) = (i / 3, i % 3);
                let want = chw[c * s * s + pixel];
                assert_eq!(
                    normalised(level, c).to_bits(),
                    want.to_bits(),
                    "{name} (reduced scale {reduced_scale_decode}): pixel {pixel} channel {c}"
                );
            }
        }
    }
}

#[test]
fn a_bad_image_zeroes_the_pixels_and_a_wrong_length_is_refused() {
    let p = ImagePreprocessor::new(ImageOptions::default()).unwrap();
    let mut hwc = vec![7u8; p.pixels_per_image()];
    assert!(matches!(
        p.pixels_into(b"not an image", &mut hwc),
        Err(ImageError::UnknownFormat { .. })
    ));
    assert!(hwc.iter().all(|&v| v == 0));
    let mut short = vec![0u8; 10];
    assert!(matches!(
        p.pixels_into(b"whatever", &mut short),
        Err(ImageError::OutputLength { .. })
    ));
}

/// Already decoded pixels: `preprocess_rgb` resizes, crops and normalises
/// them exactly as a decoded file (lossless fixtures, so the `image` crate's
/// decode is the file's pixels; full-scale decode on both sides).
#[test]
fn decoded_pixels_give_the_files_output() {
    let p = ImagePreprocessor::new(ImageOptions {
        reduced_scale_decode: false,
        ..ImageOptions::default()
    })
    .unwrap();
    for name in [
        "astronaut.png",
        "coffee.bmp",
        "wide.png",
        "camera.png",
        "tiny.png",
    ] {
        let bytes = std::fs::read(inputs_dir().join(name)).unwrap();
        let rgb = image::load_from_memory(&bytes).unwrap().to_rgb8();
        let mut from_file = vec![0f32; p.pixels_per_image()];
        let mut from_rgb = vec![1f32; p.pixels_per_image()];
        p.preprocess_into(&bytes, &mut from_file).unwrap();
        p.preprocess_rgb(rgb.width(), rgb.height(), rgb.as_raw(), &mut from_rgb)
            .unwrap();
        let same = from_file
            .iter()
            .zip(&from_rgb)
            .all(|(a, b)| a.to_bits() == b.to_bits());
        assert!(same, "{name}");
    }
}

#[test]
fn decoded_pixels_of_no_size_too_many_or_the_wrong_length_are_refused() {
    let p = ImagePreprocessor::new(ImageOptions {
        max_pixels: 1000,
        ..ImageOptions::default()
    })
    .unwrap();
    let mut out = vec![5f32; p.pixels_per_image()];
    type Expected = fn(&ImageError) -> bool;
    let cases: [(u32, u32, usize, Expected); 3] = [
        (0, 10, 0, |e| matches!(e, ImageError::ZeroSize { .. })),
        (40, 40, 40 * 40 * 3, |e| {
            matches!(e, ImageError::TooManyPixels { .. })
        }),
        (10, 10, 299, |e| matches!(e, ImageError::Internal(_))),
    ];
    for (w, h, len, expected) in cases {
        let error = p
            .preprocess_rgb(w, h, &vec![9u8; len], &mut out)
            .unwrap_err();
        assert!(expected(&error), "{w}x{h} ({len} bytes): {error}");
        assert!(out.iter().all(|&v| v == 0.0), "the output is zeroed");
    }
}
