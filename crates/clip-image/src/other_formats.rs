//! PNG, WebP and BMP through the `image` crate, decoded straight into the scratch buffer (no
//! `DynamicImage` copy), 16-bit samples reduced to 8 bits in place.

use std::io::Cursor;

use image::ImageDecoder;

use crate::error::ImageError;
use crate::format::Format;
use crate::options::ImageOptions;
use crate::scratch::{sized, Decoded};

/// PNG / WebP / BMP through the `image` crate, decoded straight into `buf`.
pub(crate) fn decode_other(
    options: &ImageOptions,
    format: Format,
    data: &[u8],
    buf: &mut Vec<u8>,
) -> Result<((u32, u32), Decoded), ImageError> {
    let f = format.name();
    let err = |e: image::ImageError| image_error(f, e);
    let cursor = Cursor::new(data);
    match format {
        Format::Png => {
            check_png_palette(data)?;
            decode_with(
                options,
                image::codecs::png::PngDecoder::new(cursor).map_err(err)?,
                f,
                buf,
            )
        }
        Format::WebP => decode_with(
            options,
            image::codecs::webp::WebPDecoder::new(cursor).map_err(err)?,
            f,
            buf,
        ),
        Format::Bmp => decode_with(
            options,
            image::codecs::bmp::BmpDecoder::new(cursor).map_err(err)?,
            f,
            buf,
        ),
        Format::Jpeg => unreachable!("JPEG goes through libjpeg-turbo"),
        Format::Gif => unreachable!("GIF goes through gif_frame"),
    }
}

/// png 0.18.1 accepts a PLTE chunk whose length is not a multiple of 3 and
/// then panics expanding it (image-rs/image-png#694, fixed upstream after
/// 0.18.1; found by fuzzing). The PNG spec makes such a file invalid, so it
/// is refused here, before the decoder sees it.
fn check_png_palette(data: &[u8]) -> Result<(), ImageError> {
    // The chunks after the signature: length (u32 BE), type, data, CRC.
    let mut rest = data.get(8..).unwrap_or_default();
    while let Some((header, tail)) = rest.split_first_chunk::<8>() {
        let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        if &header[4..] == b"PLTE" && !len.is_multiple_of(3) {
            return Err(ImageError::Corrupt {
                format: "PNG",
                message: format!("PLTE chunk of {len} bytes is not a whole number of RGB entries"),
            });
        }
        rest = tail.get(len.saturating_add(4)..).unwrap_or_default();
    }
    Ok(())
}

fn decode_with<D: ImageDecoder>(
    options: &ImageOptions,
    mut decoder: D,
    f: &'static str,
    buf: &mut Vec<u8>,
) -> Result<((u32, u32), Decoded), ImageError> {
    let (w, h) = decoder.dimensions();
    options.check_dimensions(w as u64, h as u64)?;
    decoder
        .set_limits(image::Limits::default())
        .map_err(|e| image_error(f, e))?;
    use image::ColorType as C;
    let (channels, sixteen) = match decoder.color_type() {
        C::L8 => (1, false),
        C::La8 => (2, false),
        C::Rgb8 => (3, false),
        C::Rgba8 => (4, false),
        C::L16 => (1, true),
        C::La16 => (2, true),
        C::Rgb16 => (3, true),
        C::Rgba16 => (4, true),
        other => {
            return Err(ImageError::Unsupported {
                format: f,
                message: format!("colour type {other:?}"),
            })
        }
    };
    let pixels = w as usize * h as usize * channels;
    let bytes = if sixteen { pixels * 2 } else { pixels };
    if decoder.total_bytes() != bytes as u64 {
        return Err(ImageError::Internal(format!(
            "{f} decoder reports {} bytes, expected {bytes}",
            decoder.total_bytes()
        )));
    }
    let out = sized(buf, bytes);
    decoder.read_image(out).map_err(|e| image_error(f, e))?;
    if sixteen {
        // Native-endian u16 samples -> high byte, in place (index i reads 2i, 2i+1 >= i).
        for i in 0..pixels {
            let v = u16::from_ne_bytes([buf[2 * i], buf[2 * i + 1]]);
            buf[i] = (v >> 8) as u8;
        }
    }
    Ok((
        (w, h),
        Decoded {
            width: w,
            height: h,
            channels,
        },
    ))
}

fn image_error(format: &'static str, e: image::ImageError) -> ImageError {
    use image::ImageError as E;
    match e {
        E::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => ImageError::Truncated {
            format,
            message: io.to_string(),
        },
        E::Unsupported(u) => ImageError::Unsupported {
            format,
            message: u.to_string(),
        },
        E::Limits(l) => ImageError::Unsupported {
            format,
            message: format!("decoder limit: {l}"),
        },
        other => {
            let message = other.to_string();
            let lower = message.to_ascii_lowercase();
            if lower.contains("eof")
                || lower.contains("end of file")
                || lower.contains("unexpected end")
            {
                ImageError::Truncated { format, message }
            } else {
                ImageError::Corrupt { format, message }
            }
        }
    }
}
