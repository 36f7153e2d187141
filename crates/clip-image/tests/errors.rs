//! Bad inputs: every one returns `Err` (or `Ok`), never panics, and a bad image in a batch fails alone.

use std::path::{Path, PathBuf};

use clip_image::{ImageError, ImageOptions, ImagePreprocessor};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(inputs_dir().join(name)).unwrap()
}

fn inputs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/images/inputs")
}

fn pre() -> ImagePreprocessor {
    ImagePreprocessor::new(ImageOptions::default()).unwrap()
}

fn run(p: &ImagePreprocessor, bytes: &[u8]) -> Result<(), ImageError> {
    let mut out = vec![0f32; p.pixels_per_image()];
    p.preprocess_into(bytes, &mut out)
}

#[test]
fn empty_input() {
    let e = run(&pre(), &[]).unwrap_err();
    assert!(matches!(e, ImageError::Empty), "{e}");
    assert!(e.to_string().contains("empty"));
}

#[test]
fn unknown_format_names_accepted_formats() {
    let e = run(&pre(), b"hello world, not an image").unwrap_err();
    assert!(matches!(e, ImageError::UnknownFormat { .. }), "{e}");
    let msg = e.to_string();
    for f in ["JPEG", "PNG", "WebP", "GIF", "BMP"] {
        assert!(msg.contains(f), "{msg}");
    }
}

#[test]
fn truncated_jpeg_and_png() {
    let p = pre();
    let jpg = fixture("coffee_q90.jpg");
    let e = run(&p, &jpg[..jpg.len() / 2]).unwrap_err();
    assert!(
        matches!(e, ImageError::Truncated { format: "JPEG", .. }),
        "{e}"
    );
    let png = fixture("astronaut.png");
    let e = run(&p, &png[..png.len() / 2]).unwrap_err();
    assert!(
        matches!(
            e,
            ImageError::Truncated { format: "PNG", .. } | ImageError::Corrupt { format: "PNG", .. }
        ),
        "{e}"
    );
    // Header only.
    let e = run(&p, &jpg[..200]).unwrap_err();
    assert!(
        matches!(e, ImageError::Truncated { .. } | ImageError::Corrupt { .. }),
        "{e}"
    );
}

/// Minimal baseline JPEG header (SOI, DQT, SOF0, DHT-less) claiming `w x h`: enough for the header reader.
fn jpeg_header(w: u16, h: u16) -> Vec<u8> {
    let mut v = vec![0xFF, 0xD8];
    // DQT, table 0, all ones.
    v.extend_from_slice(&[0xFF, 0xDB, 0x00, 0x43, 0x00]);
    v.extend(std::iter::repeat_n(1u8, 64));
    // SOF0: precision 8, height, width, 3 components.
    v.extend_from_slice(&[0xFF, 0xC0, 0x00, 0x11, 0x08]);
    v.extend_from_slice(&h.to_be_bytes());
    v.extend_from_slice(&w.to_be_bytes());
    v.extend_from_slice(&[0x03, 0x01, 0x22, 0x00, 0x02, 0x11, 0x00, 0x03, 0x11, 0x00]);
    // A real DHT + SOS + data from a valid file would follow; the bomb check must fire before any of it.
    v.extend_from_slice(&[
        0xFF, 0xDA, 0x00, 0x0C, 0x03, 0x01, 0x00, 0x02, 0x11, 0x03, 0x11, 0x00, 0x3F, 0x00,
    ]);
    v.extend_from_slice(&[0u8; 64]);
    v.extend_from_slice(&[0xFF, 0xD9]);
    v
}

fn png_header(w: u32, h: u32) -> Vec<u8> {
    fn crc32(data: &[u8]) -> u32 {
        let mut crc = 0xFFFF_FFFFu32;
        for &b in data {
            crc ^= b as u32;
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut v = b"\x89PNG\r\n\x1a\n".to_vec();
    v.extend_from_slice(&13u32.to_be_bytes());
    v.extend_from_slice(&ihdr);
    v.extend_from_slice(&crc32(&ihdr).to_be_bytes());
    // A tiny (invalid for this size) IDAT + IEND.
    let idat = b"IDAT\x78\x9c\x03\x00\x00\x00\x00\x01";
    v.extend_from_slice(&((idat.len() - 4) as u32).to_be_bytes());
    v.extend_from_slice(idat);
    v.extend_from_slice(&crc32(idat).to_be_bytes());
    v.extend_from_slice(&[0, 0, 0, 0]);
    v.extend_from_slice(b"IEND");
    v.extend_from_slice(&crc32(b"IEND").to_be_bytes());
    v
}

#[test]
fn decompression_bomb_headers_are_refused() {
    let p = pre();
    let e = run(&p, &png_header(100_000, 100_000)).unwrap_err();
    match e {
        ImageError::TooManyPixels {
            width: 100_000,
            height: 100_000,
            pixels,
            limit,
        } => {
            assert_eq!(pixels, 10_000_000_000);
            assert_eq!(limit, 40_000_000);
        }
        other => panic!("{other}"),
    }
    assert!(run(&p, &png_header(100_000, 100_000))
        .unwrap_err()
        .to_string()
        .contains("100000x100000"));
    // JPEG dimensions are 16-bit: 65000 x 65000 = 4.2 GP.
    let e = run(&p, &jpeg_header(65_000, 65_000)).unwrap_err();
    assert!(
        matches!(
            e,
            ImageError::TooManyPixels {
                width: 65_000,
                height: 65_000,
                ..
            }
        ),
        "{e}"
    );
    // A tighter limit applies to real images too.
    let small = ImagePreprocessor::new(ImageOptions {
        max_pixels: 1000,
        ..ImageOptions::default()
    })
    .unwrap();
    assert!(matches!(
        run(&small, &fixture("rocket.jpg")),
        Err(ImageError::TooManyPixels { .. })
    ));
    assert!(matches!(
        run(&small, &fixture("astronaut.png")),
        Err(ImageError::TooManyPixels { .. })
    ));
}

/// One-frame GIF: a `sw x sh` logical screen, global palette of two entries, a `fw x fh` frame at the origin
/// whose LZW data is only a clear code and an end code (enough for the header readers).
fn gif_header(sw: u16, sh: u16, fw: u16, fh: u16) -> Vec<u8> {
    let mut v = b"GIF89a".to_vec();
    v.extend_from_slice(&sw.to_le_bytes());
    v.extend_from_slice(&sh.to_le_bytes());
    v.extend_from_slice(&[0x80, 0, 0, 0, 0, 0, 255, 255, 255]);
    v.extend_from_slice(&[b',', 0, 0, 0, 0]);
    v.extend_from_slice(&fw.to_le_bytes());
    v.extend_from_slice(&fh.to_le_bytes());
    v.extend_from_slice(&[0, 2, 1, 0x2C, 0, b';']); // min code size 2; codes 4 (clear), 5 (end)
    v
}

/// PIL grows a GIF's canvas to hold a first frame that reaches past the logical screen, so the size guard must
/// apply to the grown canvas, not to the screen descriptor alone.
#[test]
fn gif_canvas_grown_by_its_frame_is_size_checked() {
    let e = run(&pre(), &gif_header(10, 10, 60_000, 60_000)).unwrap_err();
    assert!(
        matches!(
            e,
            ImageError::TooManyPixels {
                width: 60_000,
                height: 60_000,
                ..
            }
        ),
        "{e}"
    );
    // A real file: 200x150 screen (30000 pixels), 200x133 frame at (60, 45): the canvas is 260x178.
    let tight = ImagePreprocessor::new(ImageOptions {
        max_pixels: 200 * 150,
        ..ImageOptions::default()
    })
    .unwrap();
    let e = run(&tight, &fixture("gif_frame_beyond_screen.gif")).unwrap_err();
    assert!(
        matches!(
            e,
            ImageError::TooManyPixels {
                width: 260,
                height: 178,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn truncated_gif() {
    let gif = fixture("gif_offset_frame.gif");
    let e = run(&pre(), &gif[..gif.len() / 2]).unwrap_err();
    assert!(
        matches!(e, ImageError::Truncated { format: "GIF", .. }),
        "{e}"
    );
}

/// Found by fuzzing: png 0.18.1 panicked on a PLTE chunk that is not a whole
/// number of RGB entries. This 1x1 indexed PNG with a 4-byte PLTE is
/// fuzz/regressions/image/png_plte_not_multiple_of_3.png.
const PNG_PALETTE_OF_4_BYTES: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x03, 0x00, 0x00, 0x00, 0x28, 0xcb, 0x34,
    0xbb, 0x00, 0x00, 0x00, 0x04, 0x50, 0x4c, 0x54, 0x45, 0xff, 0x00, 0x00, 0x00, 0x6a, 0xa6, 0xa8,
    0x8b, 0x00, 0x00, 0x00, 0x0a, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0x60, 0x00, 0x00, 0x00,
    0x02, 0x00, 0x01, 0x48, 0xaf, 0xa4, 0x71, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae,
    0x42, 0x60, 0x82,
];

#[test]
fn png_palette_with_a_partial_entry_is_corrupt() {
    let e = run(&pre(), PNG_PALETTE_OF_4_BYTES).unwrap_err();
    assert!(
        matches!(e, ImageError::Corrupt { format: "PNG", .. }),
        "{e}"
    );
    assert!(e.to_string().contains("PLTE chunk of 4 bytes"), "{e}");
    // A whole palette still decodes.
    run(&pre(), &fixture("logo_palette_trns.png")).unwrap();
}

#[test]
fn wrong_output_length() {
    let p = pre();
    let mut out = vec![0f32; p.pixels_per_image() - 1];
    let e = p
        .preprocess_into(&fixture("rocket.jpg"), &mut out)
        .unwrap_err();
    assert!(
        matches!(
            e,
            ImageError::OutputLength {
                expected: 150_528,
                actual: 150_527
            }
        ),
        "{e}"
    );
    let imgs: Vec<&[u8]> = vec![&[1, 2, 3]; 2];
    let res = p.preprocess_batch(&imgs, &mut out);
    assert_eq!(res.len(), 2);
    assert!(res
        .iter()
        .all(|r| matches!(r, Err(ImageError::OutputLength { .. }))));
}

#[test]
fn batch_with_one_bad_image() {
    let p = pre();
    let n = p.pixels_per_image();
    let good: Vec<Vec<u8>> = [
        "rocket.jpg",
        "astronaut.png",
        "chelsea_lossy.webp",
        "coffee.bmp",
    ]
    .iter()
    .map(|f| fixture(f))
    .collect();
    let bad = good[0][..good[0].len() / 3].to_vec();
    let imgs: Vec<&[u8]> = vec![&good[0], &good[1], &bad, &good[2], b"garbage", &good[3]];
    let mut out = vec![f32::NAN; imgs.len() * n];
    let res = p.preprocess_batch(&imgs, &mut out);
    assert_eq!(res.len(), imgs.len());
    let ok: Vec<bool> = res.iter().map(|r| r.is_ok()).collect();
    assert_eq!(ok, [true, true, false, true, false, true]);
    // Good images equal their single-image result; bad slots are zeroed.
    let mut single = vec![0f32; n];
    for (i, img) in imgs.iter().enumerate() {
        let slot = &out[i * n..(i + 1) * n];
        if ok[i] {
            p.preprocess_into(img, &mut single).unwrap();
            assert_eq!(slot, &single[..], "image {i}");
        } else {
            assert!(slot.iter().all(|&v| v == 0.0), "image {i}");
        }
    }
}

/// Truncations of every fixture at several lengths, bit flips, random bytes and magic-prefixed random bytes, on
/// both paths: each returns Ok or Err, never panics (a caught panic would show up as `ImageError::Internal`).
#[test]
fn no_panics_on_garbage() {
    let paths = [
        ImagePreprocessor::new(ImageOptions::default()).unwrap(),
        ImagePreprocessor::new(ImageOptions {
            reduced_scale_decode: true,
            ..ImageOptions::default()
        })
        .unwrap(),
    ];
    let mut seed = 0x1234_5678u64;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut cases: Vec<Vec<u8>> = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(inputs_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for f in &files {
        let data = std::fs::read(f).unwrap();
        if data.len() > 1_000_000 {
            // The large JPEGs: a few truncations are enough (decoding them is slow in debug builds).
            cases.push(data[..data.len() / 2].to_vec());
            continue;
        }
        for frac in [0.0, 0.01, 0.1, 0.3, 0.6, 0.9, 0.99] {
            cases.push(data[..(data.len() as f64 * frac) as usize + 1].to_vec());
        }
        for len in [2usize, 8, 16, 33, 64, 100] {
            cases.push(data[..len.min(data.len())].to_vec());
        }
        // Corrupted copies: random bytes overwritten after the first 32.
        for _ in 0..2 {
            let mut c = data.clone();
            for _ in 0..16 {
                let i = 32 + (rnd() as usize) % (c.len() - 32);
                c[i] = rnd() as u8;
            }
            cases.push(c);
        }
    }
    for magic in [
        &b"\xFF\xD8\xFF"[..],
        b"\x89PNG\r\n\x1a\n",
        b"GIF89a",
        b"RIFF\x00\x00\x00\x00WEBP",
        b"BM",
    ] {
        for len in [0usize, 10, 100, 1000] {
            let mut c = magic.to_vec();
            c.extend((0..len).map(|_| rnd() as u8));
            cases.push(c);
        }
    }
    for len in [1usize, 3, 100, 5000] {
        cases.push((0..len).map(|_| rnd() as u8).collect());
    }
    let mut out = vec![0f32; paths[0].pixels_per_image()];
    let (mut oks, mut errs) = (0, 0);
    for p in &paths {
        for c in &cases {
            match p.preprocess_into(c, &mut out) {
                Ok(()) => oks += 1,
                Err(ImageError::Internal(m)) => {
                    panic!("internal error (caught panic?) on {} bytes: {m}", c.len())
                }
                Err(e) => {
                    assert!(!e.to_string().is_empty());
                    errs += 1
                }
            }
        }
    }
    eprintln!("{} cases: {oks} ok, {errs} errors", cases.len() * 2);
    assert!(errs > oks);
}

/// libjpeg keeps quantization tables from one image to the next on a handle
/// (abbreviated datastreams): a JPEG without its own must be refused even
/// right after a good JPEG on the same thread, never decoded with the other
/// image's tables; and a broken SOF must not break the next decode (both
/// found by scripts/soak.sh).
#[test]
fn a_jpeg_missing_its_tables_is_refused_even_after_a_good_one() {
    let good = fixture("rocket.jpg");
    let p = pre();
    let mut want = vec![0f32; p.pixels_per_image()];
    p.preprocess_into(&good, &mut want).unwrap();

    let marker = |bytes: &[u8], code: u8| {
        bytes
            .windows(2)
            .position(|w| w == [0xFF, code])
            .expect("marker")
    };
    let mut no_tables = good.clone();
    let dqt = marker(&no_tables, 0xDB);
    no_tables[dqt + 1] = 0xFE; // now a comment
    let e = run(&p, &no_tables).unwrap_err();
    assert!(e.to_string().contains("Quantization table"), "{e}");

    let mut bad_sof = good.clone();
    let sof = marker(&bad_sof, 0xC0);
    bad_sof[sof + 2..sof + 4].copy_from_slice(&[0, 3]); // a length too short for any frame
    assert!(run(&p, &bad_sof).is_err());

    let mut again = vec![0f32; p.pixels_per_image()];
    p.preprocess_into(&good, &mut again).unwrap();
    assert_eq!(again, want);
}
