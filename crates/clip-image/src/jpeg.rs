//! JPEG through libjpeg-turbo rather than the `image` crate: the same library and settings as Pillow give
//! PIL-identical pixels, and its DCT scaling makes the optional reduced-scale decode possible.

use crate::color::cmyk_to_rgb_in_place;
use crate::error::ImageError;
use crate::jpeg_frame::max_horizontal_sampling;
use crate::options::ImageOptions;
use crate::resize::{source_window, CropGeometry};
use crate::scratch::{sized, Decoded, Scratch};
use crate::turbo::{scaled, Colorspace, Decompressor, Header, Region, TurboMessage};

/// Reduced-scale JPEG decode: the DCT scales it may use (their denominators), strongest first, each with the
/// margin it must keep. The
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
const REDUCED_SCALES: [(u32, u32); 3] = [(8, 4), (4, 2), (2, 2)];

/// Margin in decoded pixels between the pixels the resize reads and the edges of a partial decode, where
/// libjpeg-turbo's fancy upsampling sees an image edge (it replicates the edge chroma sample instead of reading its
/// neighbour) and so decodes differently from a whole decode. Measured on the tests' JPEGs: the outermost column
/// on each side differs with 2x horizontal chroma subsampling (4:2:2 at every DCT scale, 4:2:0 at full scale,
/// where reduced scales upsample chroma in the IDCT instead); rows never differ. Four keeps a safe distance.
const REGION_EDGE_MARGIN: u32 = 4;

/// Which part of the image to decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Extent {
    /// Only what the center crop's resize reads (plus [`REGION_EDGE_MARGIN`], aligned outward to iMCU columns).
    CropSources,
    /// All of it (the tests' reference).
    #[cfg(test)]
    Whole,
}

/// libjpeg-turbo decode (same library and settings as Pillow: ISLOW IDCT, fancy upsampling), optionally at a
/// reduced DCT scale, of the part of the image the center crop's resize reads (see [`region`]). Returns the
/// original dimensions, the decoded image (full scaled size, written only in the region), the scale's denominator
/// (1 at full scale), and the region decoded.
pub(crate) fn decode_jpeg(
    options: &ImageOptions,
    data: &[u8],
    scratch: &mut Scratch,
    extent: Extent,
) -> Result<((u32, u32), Decoded, u32, Region), ImageError> {
    // A fresh handle per image: libjpeg keeps quantization and Huffman tables
    // from one image to the next (abbreviated datastreams), so a reused handle
    // decodes a JPEG that lacks its tables with the previous image's instead
    // of refusing it, and a failed decode can leave the handle unusable.
    let mut tj = Decompressor::new().map_err(|e| ImageError::Internal(e.0))?;
    let header = tj.read_header(data).map_err(jpeg_error)?;
    options.check_dimensions(u64::from(header.width), u64::from(header.height))?;

    let mut denom = 1;
    if options.reduced_scale_decode && !header.lossless {
        let short = header.width.min(header.height);
        for (d, margin) in REDUCED_SCALES {
            if u64::from(scaled(short, d)) >= u64::from(margin) * u64::from(options.size) {
                denom = d;
                break;
            }
        }
    }
    tj.set_scale(denom).map_err(|e| ImageError::Internal(e.0))?;
    let channels = match header.colorspace {
        Colorspace::Gray => 1,
        Colorspace::Cmyk => 4,
        Colorspace::Color => 3,
    };
    let decoded = Decoded {
        width: scaled(header.width, denom),
        height: scaled(header.height, denom),
        channels,
    };
    let geometry = CropGeometry {
        orig: (header.width, header.height),
        size: options.size,
        center_crop: options.center_crop,
    };
    let region = match extent {
        Extent::CropSources => region(data, &header, denom, decoded, geometry),
        #[cfg(test)]
        Extent::Whole => whole(decoded),
    };
    let pitch = decoded.width as usize * channels;
    let buf = sized(&mut scratch.decode, pitch * decoded.height as usize);
    if let Err(e) = tj.decompress_region(data, buf, pitch, channels, region) {
        // libjpeg warnings leave a fully written image; PIL loads such files, except truncated ones.
        if !is_benign_jpeg_warning(&e.0) {
            return Err(jpeg_error(e));
        }
    }
    if channels == 4 {
        let rows = region.y as usize * pitch..(region.y + region.height) as usize * pitch;
        cmyk_to_rgb_in_place(&mut buf[rows]);
    }
    Ok((geometry.orig, decoded, denom, region))
}

/// The part of the scaled image to decode: the resize's [`source_window`] widened by [`REGION_EDGE_MARGIN`], its
/// left edge moved down to an iMCU boundary (libjpeg-turbo starts a row there, see [`Header::region_alignment`]),
/// and its bottom extended to the image's unless the file is progressive: libjpeg-turbo reads the rows below a
/// region only when it decodes them, and a baseline JPEG truncated there must still be refused as PIL refuses it
/// (a progressive file is read whole first). A file that cannot be decoded in part is decoded whole.
fn region(
    data: &[u8],
    header: &Header,
    denom: u32,
    decoded: Decoded,
    geometry: CropGeometry,
) -> Region {
    let alignment = max_horizontal_sampling(data).and_then(|h| header.region_alignment(denom, h));
    let Some(align) = alignment else {
        return whole(decoded);
    };
    let window = source_window(decoded, geometry);
    let left = window.left.saturating_sub(REGION_EDGE_MARGIN) / align * align;
    let right = (window.right + REGION_EDGE_MARGIN).min(decoded.width);
    let top = window.top.saturating_sub(REGION_EDGE_MARGIN);
    let bottom = if header.progressive {
        (window.bottom + REGION_EDGE_MARGIN).min(decoded.height)
    } else {
        decoded.height
    };
    Region {
        x: left,
        y: top,
        width: right - left,
        height: bottom - top,
    }
}

fn whole(decoded: Decoded) -> Region {
    Region {
        x: 0,
        y: 0,
        width: decoded.width,
        height: decoded.height,
    }
}

/// libjpeg warnings (decoding finished, image fully written) that PIL tolerates. "Premature end of JPEG file"
/// (truncation) is not among them: PIL refuses truncated files.
fn is_benign_jpeg_warning(message: &str) -> bool {
    message.starts_with("Corrupt JPEG data")
        || message.starts_with("Invalid SOS parameters")
        || message.starts_with("Inconsistent progression sequence")
}

fn jpeg_error(TurboMessage(message): TurboMessage) -> ImageError {
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

#[cfg(test)]
mod tests;
