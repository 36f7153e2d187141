//! The partial decode against the whole decode: the crop's levels must be the same byte for byte.

use turbojpeg::{Compressor, Image, PixelFormat, Subsamp};

use super::*;
use crate::options::CenterCrop;
use crate::resize::resize_center_crop;

/// What a decode gave: the decoded pixels, the crop's geometry and RGB levels, the decoded size and scale, and the region
/// decoded.
struct Outcome {
    pixels: Vec<u8>,
    geometry: CropGeometry,
    crop: Vec<u8>,
    decoded: Decoded,
    denom: u32,
    region: Region,
}

/// Decodes `jpeg` (the `extent` asked for) into a decode buffer filled with `poison` beforehand, so a pixel the
/// resize read but the decode left unwritten shows in the crop, then resizes and crops as the pipeline does.
fn crop_levels(options: &ImageOptions, jpeg: &[u8], extent: Extent, poison: u8) -> Outcome {
    let header = Decompressor::new().unwrap().read_header(jpeg).unwrap();
    let mut scratch = Scratch::new();
    // As large as the decode could be (4 channels at full scale), so the poison is never grown over.
    scratch.decode = vec![poison; 4 * header.width as usize * header.height as usize];
    let (orig, decoded, denom, region) = decode_jpeg(options, jpeg, &mut scratch, extent).unwrap();
    let geometry = CropGeometry {
        orig,
        size: options.size,
        center_crop: options.center_crop,
    };
    let mut crop = vec![0; (options.size * options.size) as usize * decoded.channels];
    let len = decoded.width as usize * decoded.height as usize * decoded.channels;
    resize_center_crop(
        &mut scratch.resizer,
        &scratch.decode[..len],
        decoded,
        geometry,
        &mut scratch.temp,
        &mut crop,
    )
    .unwrap();
    Outcome {
        pixels: scratch.decode,
        geometry,
        crop,
        decoded,
        denom,
        region,
    }
}

/// The partial decode's pixels equal the whole decode's wherever the resize reads them, and its crop equals the
/// whole decode's, with either poison; returns the partial outcome.
fn assert_same_crop(options: &ImageOptions, jpeg: &[u8], what: &str) -> Outcome {
    let whole = crop_levels(options, jpeg, Extent::Whole, 0);
    let mut partial = None;
    for poison in [0, 255] {
        let part = crop_levels(options, jpeg, Extent::CropSources, poison);
        assert_eq!(whole.decoded.width, part.decoded.width, "{what}");
        let window = source_window(part.decoded, part.geometry);
        let ch = part.decoded.channels;
        let pitch = part.decoded.width as usize * ch;
        for y in window.top as usize..window.bottom as usize {
            let row = y * pitch + window.left as usize * ch..y * pitch + window.right as usize * ch;
            assert!(
                whole.pixels[row.clone()] == part.pixels[row],
                "{what}: decoded row {y} differs in {window:?}, region {:?} (poison {poison})",
                part.region
            );
        }
        if let Some(at) = whole.crop.iter().zip(&part.crop).position(|(a, b)| a != b) {
            panic!(
                "{what}: the partial decode {:?} of {}x{} at 1/{} differs at byte {at} (poison {poison})",
                part.region, part.decoded.width, part.decoded.height, part.denom
            );
        }
        partial = Some(part);
    }
    partial.unwrap()
}

/// A photo-like RGB image: smooth gradients under per-channel noise, so luma and chroma change at every pixel
/// and an upsampling difference at a region edge cannot hide.
fn photo(width: usize, height: usize, seed: u32) -> Vec<u8> {
    let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    let mut noise = move || {
        state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        (state >> 27) as i32 - 16
    };
    let mut rgb = Vec::with_capacity(width * height * 3);
    for y in 0..height {
        for x in 0..width {
            let base = [
                (x * 255 / width) as i32,
                (y * 255 / height) as i32,
                ((x + y) * 127 / (width + height)) as i32 + 64,
            ];
            rgb.extend(base.map(|v| (v + 3 * noise()).clamp(0, 255) as u8));
        }
    }
    rgb
}

fn encode(rgb: &[u8], width: usize, height: usize, subsamp: Subsamp, progressive: bool) -> Vec<u8> {
    let mut compressor = Compressor::new().unwrap();
    compressor.set_quality(90).unwrap();
    compressor.set_subsamp(subsamp).unwrap();
    compressor.set_progressive(progressive).unwrap();
    let image = Image {
        pixels: rgb,
        width,
        pitch: width * 3,
        height,
        format: PixelFormat::RGB,
    };
    compressor.compress_to_vec(image).unwrap()
}

const SUBSAMPLINGS: [Subsamp; 7] = [
    Subsamp::None,
    Subsamp::Sub2x1,
    Subsamp::Sub2x2,
    Subsamp::Sub1x2,
    Subsamp::Sub4x1,
    Subsamp::Sub1x4,
    Subsamp::Gray,
];

/// Generated JPEGs: landscape and portrait, odd sizes, every subsampling TurboJPEG names, baseline and
/// progressive, both center crops, at full scale and at each reduced DCT scale.
#[test]
fn partial_decode_gives_the_whole_decodes_crop() {
    // (width, height, size, reduced-scale decode): the scale the selection then picks is checked below.
    let cases = [
        (640, 480, 224, false, 1),
        (480, 640, 224, false, 1),
        (333, 251, 96, false, 1),
        (251, 333, 96, false, 1),
        (1001, 517, 128, true, 2),
        (517, 1001, 128, true, 2),
        (1203, 803, 100, true, 4),
        (803, 1203, 100, true, 4),
        (1551, 1037, 32, true, 8),
        (1037, 1551, 32, true, 8),
        (301, 300, 64, true, 2),
    ];
    let mut checked = 0;
    for (i, (width, height, size, reduced_scale_decode, denom)) in cases.into_iter().enumerate() {
        let rgb = photo(width, height, i as u32);
        for subsamp in SUBSAMPLINGS {
            for progressive in [false, true] {
                let jpeg = encode(&rgb, width, height, subsamp, progressive);
                for center_crop in CenterCrop::ALL {
                    let options = ImageOptions {
                        size,
                        reduced_scale_decode,
                        center_crop,
                        ..ImageOptions::default()
                    };
                    let what = format!(
                        "{width}x{height} {subsamp:?} progressive={progressive} size {size} {center_crop:?}"
                    );
                    let part = assert_same_crop(&options, &jpeg, &what);
                    assert_eq!(part.denom, denom, "{what}");
                    // The partial decode really is partial: the crop discards a side of every non-square case.
                    let Decoded {
                        width: sw,
                        height: sh,
                        ..
                    } = part.decoded;
                    if sw > sh + 16 {
                        assert!(part.region.width < sw, "{what}: {:?}", part.region);
                    } else if sh > sw + 16 {
                        assert!(part.region.y > 0, "{what}: {:?}", part.region);
                    }
                    checked += 1;
                }
            }
        }
    }
    assert_eq!(checked, 11 * 7 * 2 * 2);
}

/// Every JPEG fixture (and those in the folders of `$CLIP_IMAGE_MORE_JPEGS`, a path list, when set: e.g. the bench
/// photos), at the default size with and without reduced-scale decoding, both center crops.
#[test]
fn partial_decode_of_fixture_jpegs_gives_the_whole_decodes_crop() {
    let fixtures =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/images/inputs");
    let mut folders = vec![fixtures];
    if let Some(more) = std::env::var_os("CLIP_IMAGE_MORE_JPEGS") {
        folders.extend(std::env::split_paths(&more));
    }
    let mut checked = 0;
    for folder in folders {
        let mut paths: Vec<_> = std::fs::read_dir(&folder)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "jpg"))
            .collect();
        paths.sort();
        for path in paths {
            let jpeg = std::fs::read(&path).unwrap();
            for reduced_scale_decode in [false, true] {
                for center_crop in CenterCrop::ALL {
                    let options = ImageOptions {
                        reduced_scale_decode,
                        center_crop,
                        ..ImageOptions::default()
                    };
                    let what = format!("{} {options:?}", path.display());
                    assert_same_crop(&options, &jpeg, &what);
                    checked += 1;
                }
            }
        }
    }
    assert!(checked >= 4 * 12, "{checked} decodes: fixtures missing?");
    eprintln!("{checked} partial decodes checked");
}

/// A baseline JPEG cut short in rows below the crop is still refused as truncated (the region then runs to the
/// bottom), as is a progressive one (read whole before any row comes out).
#[test]
fn truncation_below_the_crop_is_still_refused() {
    let (width, height) = (300, 900);
    let rgb = photo(width, height, 7);
    for progressive in [false, true] {
        let jpeg = encode(&rgb, width, height, Subsamp::Sub2x2, progressive);
        let cut = &jpeg[..jpeg.len() * 19 / 20];
        let options = ImageOptions {
            size: 64,
            ..ImageOptions::default()
        };
        let e = decode_jpeg(&options, cut, &mut Scratch::new(), Extent::CropSources).unwrap_err();
        assert!(
            matches!(e, ImageError::Truncated { .. }),
            "progressive={progressive}: {e}"
        );
    }
}

/// `jpeg` with every component's sampling factors set to `factors` (high nibble horizontal) in its frame header.
fn with_sampling_factors(mut jpeg: Vec<u8>, factors: u8) -> Vec<u8> {
    let sof = jpeg
        .windows(2)
        .position(|m| m == [0xFF, 0xC0] || m == [0xFF, 0xC2])
        .unwrap();
    let components = jpeg[sof + 9] as usize;
    for c in 0..components {
        jpeg[sof + 11 + 3 * c] = factors;
    }
    jpeg
}

/// 4:4:4 written with 2x1 sampling factors on every component (libjpeg-turbo reads it as 4:4:4, but its iMCU is
/// 16 pixels wide, not 8): the region's left edge must follow the file's factors, not the subsampling's name.
#[test]
fn non_standard_sampling_factors_decode_in_part() {
    for width in [600, 616, 632, 648, 664] {
        let rgb = photo(width, 480, 11);
        for progressive in [false, true] {
            let jpeg =
                with_sampling_factors(encode(&rgb, width, 480, Subsamp::None, progressive), 0x21);
            let what = format!("{width}x480 4:4:4 as 2x1, progressive={progressive}");
            let part = assert_same_crop(&ImageOptions::default(), &jpeg, &what);
            assert!(
                part.region.width < part.decoded.width,
                "{what}: {:?}",
                part.region
            );
        }
    }
}
