//! `preprocess_reporting` says what each decode used (the backend counts it): the format, and the DCT scale of a
//! reduced-scale JPEG decode.

use std::path::Path;

use clip_image::{Decode, Format, ImageOptions, ImagePreprocessor};

fn fixture(name: &str) -> Vec<u8> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/images/inputs");
    std::fs::read(dir.join(name)).unwrap()
}

fn report(p: &ImagePreprocessor, name: &str) -> Decode {
    let mut out = vec![0f32; p.pixels_per_image()];
    let decode = p.preprocess_reporting(&fixture(name), &mut out).unwrap();
    let mut plain = vec![0f32; p.pixels_per_image()];
    p.preprocess_into(&fixture(name), &mut plain).unwrap();
    assert_eq!(out, plain, "{name}: the same pixels either way");
    decode
}

#[test]
fn reports_the_format_and_the_jpeg_scale() {
    let reduced = ImagePreprocessor::new(ImageOptions {
        reduced_scale_decode: true,
        ..ImageOptions::default()
    })
    .unwrap();
    for (name, format) in [
        ("rocket.jpg", Format::Jpeg),
        ("astronaut.png", Format::Png),
        ("chelsea.gif", Format::Gif),
        ("chelsea_lossy.webp", Format::WebP),
        ("coffee.bmp", Format::Bmp),
    ] {
        let full = Decode {
            format,
            scale_denominator: 1,
        };
        assert_eq!(report(&reduced, name), full, "{name}");
    }
    // Shortest sides 1080 and 3000: the strongest DCT scale that keeps them >= 2 * 224.
    assert_eq!(report(&reduced, "large_2mp.jpg").scale_denominator, 2);
    assert_eq!(report(&reduced, "large_12mp.jpg").scale_denominator, 4);
    // Shortest side 4000: 1/8 would leave 500, under the 4 * 224 it needs (it keeps only each 8x8 block's mean and
    // was the furthest from the reference at a 2x margin), so 1/4; for size 112, 500 >= 4 * 112 and 1/8 is used.
    assert_eq!(report(&reduced, "detailed_24mp.jpg").scale_denominator, 4);
    let small = ImagePreprocessor::new(ImageOptions {
        size: 112,
        reduced_scale_decode: true,
        ..ImageOptions::default()
    })
    .unwrap();
    assert_eq!(report(&small, "detailed_24mp.jpg").scale_denominator, 8);
    let exact = ImagePreprocessor::new(ImageOptions::default()).unwrap();
    assert_eq!(report(&exact, "large_12mp.jpg").scale_denominator, 1);
}
