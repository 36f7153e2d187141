//! GIF: the first frame, composited onto its canvas as PIL's `Image.open(gif).convert("RGB")` does (Pillow
//! 13.0.0, `GifImagePlugin`). The `gif` crate parses the file and decodes the LZW data to palette indices; the
//! compositing and the palette lookup are ours, because the `image` crate's reading differs from PIL's: it fills
//! the area outside a smaller first frame with black, clips a frame that reaches past the logical screen, and
//! leaves pixels whose index is past the colour table unwritten.
//!
//! PIL's rules for the first frame (pinned by `scripts/fixtures/gif_frames.py` and its fixtures):
//! * the canvas is the logical screen, grown to contain the frame when the frame reaches past it;
//! * outside the frame every pixel is index T when the frame's graphic control extension sets transparency index
//!   T, else index 0. The screen's background colour index and the disposal method play no part in frame 0;
//! * every index, T included, is looked up in the frame's palette (the local colour table, else the global one):
//!   `convert("RGB")` of a "P" image keeps transparency as info, never applies it to the pixels;
//! * an index past the colour table (`2^bits` entries) is black;
//! * a colour table that is the identity grey ramp (entry `i` = `(i, i, i)` for all its entries) is not a
//!   palette to PIL: the image is "L", the pixel value is the index itself (also past the table), and a local
//!   table of that kind falls back to the global colour table when there is one.
//!
//! Known differences, all on malformed or unusual files: a GIF with no colour table at all (PIL: greyscale from
//! the indices) and a zero-size first frame (PIL: an error too) are refused; with several graphic control
//! extensions before the first frame the last one decides the transparency (PIL: any that sets it).

use std::io::Cursor;

use crate::error::ImageError;
use crate::options::ImageOptions;
use crate::scratch::{sized, Decoded};

const F: &str = "GIF";

/// Decodes the first frame into `buf` as RGB (3 bytes per pixel) on its PIL canvas; `indices` is scratch space
/// for the frame's palette indices. Returns the canvas dimensions and the decoded image (the same extent).
pub(crate) fn decode_gif(
    options: &ImageOptions,
    data: &[u8],
    buf: &mut Vec<u8>,
    indices: &mut Vec<u8>,
) -> Result<((u32, u32), Decoded), ImageError> {
    let mut opts = gif::DecodeOptions::new();
    opts.set_color_output(gif::ColorOutput::Indexed);
    let mut decoder = opts.read_info(Cursor::new(data)).map_err(gif_error)?;
    let (screen_w, screen_h) = (u32::from(decoder.width()), u32::from(decoder.height()));
    let (left, top, fw, fh, transparent) = match decoder.next_frame_info().map_err(gif_error)? {
        Some(f) => (
            u32::from(f.left),
            u32::from(f.top),
            u32::from(f.width),
            u32::from(f.height),
            f.transparent,
        ),
        None => {
            return Err(ImageError::Corrupt {
                format: F,
                message: "no image in the file".into(),
            })
        }
    };
    let (cw, ch) = (screen_w.max(left + fw), screen_h.max(top + fh));
    options.check_dimensions(cw as u64, ch as u64)?;
    if fw == 0 || fh == 0 {
        return Err(ImageError::Corrupt {
            format: F,
            message: format!("first frame is {fw}x{fh}"),
        });
    }
    let lut = {
        let local = decoder
            .current_frame_info()
            .and_then(|f| f.palette.as_deref());
        local
            .and_then(palette_lut)
            .or_else(|| decoder.global_palette().and_then(palette_lut))
            .unwrap_or_else(grey_lut)
    };
    let (fw, fh, left, top) = (fw as usize, fh as usize, left as usize, top as usize);
    let frame = sized(indices, fw * fh);
    decoder.read_into_buffer(frame).map_err(gif_error)?;

    let cw_px = cw as usize;
    let out = sized(buf, cw_px * ch as usize * 3);
    let fill = lut[usize::from(transparent.unwrap_or(0))];
    let fill_px = |px: &mut [u8]| {
        px.chunks_exact_mut(3)
            .for_each(|p| p.copy_from_slice(&fill))
    };
    for (y, row) in out.chunks_exact_mut(cw_px * 3).enumerate() {
        if y < top || y >= top + fh {
            fill_px(row);
            continue;
        }
        let (before, rest) = row.split_at_mut(left * 3);
        let (inside, after) = rest.split_at_mut(fw * 3);
        fill_px(before);
        let src = &frame[(y - top) * fw..][..fw];
        for (p, &i) in inside.chunks_exact_mut(3).zip(src) {
            p.copy_from_slice(&lut[usize::from(i)]);
        }
        fill_px(after);
    }
    let decoded = Decoded {
        width: cw,
        height: ch,
        channels: 3,
    };
    Ok(((cw, ch), decoded))
}

type Lut = [[u8; 3]; 256];

/// The lookup table of a colour table (`3 * 2^bits` bytes), black past its end; `None` when it is the identity
/// grey ramp, which PIL does not treat as a palette.
fn palette_lut(table: &[u8]) -> Option<Lut> {
    let entries = table.chunks_exact(3).take(256);
    if entries
        .clone()
        .enumerate()
        .all(|(i, c)| c.iter().all(|&v| usize::from(v) == i))
    {
        return None;
    }
    let mut lut = [[0u8; 3]; 256];
    for (dst, c) in lut.iter_mut().zip(entries) {
        dst.copy_from_slice(c);
    }
    Some(lut)
}

/// PIL's "L" reading: the value is the index.
fn grey_lut() -> Lut {
    std::array::from_fn(|i| [i as u8; 3])
}

fn gif_error(e: gif::DecodingError) -> ImageError {
    use gif::DecodingError as E;
    let message = e.to_string();
    match e {
        E::UnexpectedEof => ImageError::Truncated { format: F, message },
        E::Io(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            ImageError::Truncated { format: F, message }
        }
        E::MemoryLimit | E::OutOfMemory => ImageError::Unsupported {
            format: F,
            message: format!("decoder limit: {message}"),
        },
        _ if message.contains("truncated") => ImageError::Truncated { format: F, message },
        _ => ImageError::Corrupt { format: F, message },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_grey_table_is_not_a_palette() {
        let grey: Vec<u8> = (0..16u8).flat_map(|i| [i, i, i]).collect();
        assert!(palette_lut(&grey).is_none());
        let mut almost = grey.clone();
        almost[47] = 0; // entry 15 = (15, 15, 0)
        let lut = palette_lut(&almost).expect("a palette");
        assert_eq!(lut[15], [15, 15, 0]);
        assert_eq!(lut[16], [0, 0, 0]); // past the table: black
        assert_eq!(grey_lut()[200], [200, 200, 200]);
    }
}
