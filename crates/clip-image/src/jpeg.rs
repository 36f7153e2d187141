//! JPEG through libjpeg-turbo rather than the `image` crate: the same library and settings as Pillow give
//! PIL-identical pixels, and its DCT scaling makes the optional reduced-scale decode possible.

use crate::color::cmyk_to_rgb_in_place;
use crate::error::ImageError;
use crate::options::ImageOptions;
use crate::scratch::{sized, Decoded, Scratch};

/// Reduced-scale JPEG decode: the DCT scales it may use, strongest first, each with the margin it must keep. The
/// decoded shortest side must stay >= `margin * size`, so the bicubic filter still does at least a `margin`x
/// reduction after the DCT scaling; the larger that reduction, the closer the result is to the reference.
///
/// Margin 2 for 1/2 and 1/4. With a margin of 1 (DCT-scale right down to `size`) the result drifts much further from
/// the reference (measured on a 741x500 photo decoded at 1/2 to 371x250: mean 4.0 levels, max 74, against
/// <= 0.5 / 36 with the margin), for little speed gain: entropy decoding, not the IDCT, dominates large-JPEG decode
/// time.
///
/// Margin 4 for 1/8, which keeps only each 8x8 block's DC coefficient (the block's mean). At margin 2 it was the
/// furthest from the reference of all: a high-detail 6000x4000 photo decoded at 1/8 to 750x500 for size 224 gave a
/// mean of 0.98 levels, max 10 (camera-like 24 MP photos at 0.4 bytes/pixel: 0.66-0.70, max 9), against 0.32 / 4
/// (0.26-0.28 / 3) at 1/4, and 0.33 / 3 at 1/8 with a 4.5x bicubic reduction left (the same photo for size 112).
/// For size 224 under the default 40 MP guard, 1/8 is then never used (it needs a shortest side of 7168): photos
/// with a shortest side from 3584 (~17 MP) decode at 1/4, which costs ~22% more CPU than 1/8 did (6000x4000: 83 ms
/// against 68 ms on one core; full scale: 147 ms). Smaller photos are unaffected.
const REDUCED_SCALES: [(turbojpeg::ScalingFactor, usize); 3] = [
    (turbojpeg::ScalingFactor::ONE_EIGHTH, 4),
    (turbojpeg::ScalingFactor::ONE_QUARTER, 2),
    (turbojpeg::ScalingFactor::ONE_HALF, 2),
];

/// libjpeg-turbo decode (same library and settings as Pillow: ISLOW IDCT, fancy upsampling), optionally at a
/// reduced DCT scale. Returns the original dimensions, the decoded image and the scale's denominator (1 at full
/// scale).
pub(crate) fn decode_jpeg(
    options: &ImageOptions,
    data: &[u8],
    scratch: &mut Scratch,
) -> Result<((u32, u32), Decoded, u32), ImageError> {
    const F: &str = "JPEG";
    // A fresh handle per image: libjpeg keeps quantization and Huffman tables
    // from one image to the next (abbreviated datastreams), so a reused handle
    // decodes a JPEG that lacks its tables with the previous image's instead
    // of refusing it, and a failed decode can leave the handle unusable.
    let mut tj = turbojpeg::Decompressor::new().map_err(|e| ImageError::Internal(e.to_string()))?;
    let header = tj.read_header(data).map_err(|e| jpeg_error(&e))?;
    let (w, h) = (header.width as u64, header.height as u64);
    options.check_dimensions(w, h)?;
    let (w32, h32) = (
        u32::try_from(w).map_err(|_| ImageError::Unsupported {
            format: F,
            message: "width".into(),
        })?,
        u32::try_from(h).map_err(|_| ImageError::Unsupported {
            format: F,
            message: "height".into(),
        })?,
    );

    let mut factor = turbojpeg::ScalingFactor::ONE;
    if options.reduced_scale_decode && !header.is_lossless {
        let short = header.width.min(header.height);
        for (f, margin) in REDUCED_SCALES {
            if f.scale(short) >= margin * options.size as usize {
                factor = f;
                break;
            }
        }
    }
    tj.set_scaling_factor(factor)
        .map_err(|e| ImageError::Internal(e.to_string()))?;
    let (sw, sh) = (factor.scale(header.width), factor.scale(header.height));

    use turbojpeg::{Colorspace, PixelFormat};
    let (pixel_format, channels) = match header.colorspace {
        Colorspace::Gray => (PixelFormat::GRAY, 1),
        Colorspace::CMYK | Colorspace::YCCK => (PixelFormat::CMYK, 4),
        _ => (PixelFormat::RGB, 3),
    };
    let buf = sized(&mut scratch.decode, sw * sh * channels);
    let image = turbojpeg::Image {
        pixels: &mut buf[..],
        width: sw,
        pitch: sw * channels,
        height: sh,
        format: pixel_format,
    };
    if let Err(e) = tj.decompress(data, image) {
        // libjpeg warnings leave a fully written image; PIL loads such files, except truncated ones.
        let accepted =
            matches!(&e, turbojpeg::Error::TurboJpegError(m) if is_benign_jpeg_warning(m));
        if !accepted {
            return Err(jpeg_error(&e));
        }
    }
    if channels == 4 {
        cmyk_to_rgb_in_place(buf);
    }
    let decoded = Decoded {
        width: sw as u32,
        height: sh as u32,
        channels,
    };
    Ok(((w32, h32), decoded, factor.denom() as u32))
}

/// libjpeg warnings (decoding finished, image fully written) that PIL tolerates. "Premature end of JPEG file"
/// (truncation) is not among them: PIL refuses truncated files.
fn is_benign_jpeg_warning(message: &str) -> bool {
    message.starts_with("Corrupt JPEG data")
        || message.starts_with("Invalid SOS parameters")
        || message.starts_with("Inconsistent progression sequence")
}

fn jpeg_error(e: &turbojpeg::Error) -> ImageError {
    let message = match e {
        turbojpeg::Error::TurboJpegError(m) => m.clone(),
        other => other.to_string(),
    };
    if message.contains("Premature end") {
        ImageError::Truncated {
            format: "JPEG",
            message,
        }
    } else if message.contains("Unsupported") || message.contains("not supported") {
        ImageError::Unsupported {
            format: "JPEG",
            message,
        }
    } else {
        ImageError::Corrupt {
            format: "JPEG",
            message,
        }
    }
}
