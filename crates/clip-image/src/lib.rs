//! CLIP image preprocessing: encoded bytes in, normalised CHW `f32` pixels out.
//!
//! The reference is Hugging Face transformers 4.57.6 `CLIPImageProcessor(use_fast=False)` (PIL based):
//!
//! 1. decode (JPEG, PNG, WebP, GIF first frame, BMP) and convert to RGB the way PIL's `image.convert("RGB")` does:
//!    alpha is dropped (not composited), grey is replicated, palette entries are looked up (transparency ignored),
//!    CMYK/YCCK JPEGs use Pillow's `cmyk2rgb` on Adobe-inverted data. EXIF orientation is *not* applied (the
//!    reference does not apply it either);
//! 2. resize so the shortest side is `size` and the other side `int(size * long / short)`
//!    (transformers' `get_resize_output_image_size(default_to_square=False)`), PIL BICUBIC (Catmull-Rom, a = -0.5,
//!    kernel widened when downscaling), horizontal pass first like Pillow;
//! 3. center crop to `size x size` with transformers' offsets (`(new - size) // 2`);
//! 4. `x * (1/255)` (in f64, then f32) and `(x - mean) / std` in f32, channel-major (CHW).
//!
//! Steps 3 and 4 are fused: only the rows/columns the crop needs are resized (the filter taps are those of the
//! full resize), and normalisation is a per-channel 256-entry lookup table that reproduces the reference's float
//! arithmetic bit for bit.
//!
//! Deliberate differences from PIL:
//! * 16-bit greyscale PNGs: PIL ("I;16" -> "RGB") clips every value above 255 to white, which turns a real 16-bit
//!   photo into a white sheet. We take the high byte (`v >> 8`), which is also what PIL itself does for 16-bit
//!   RGB/RGBA PNGs (read as "RGB;16B"), so all 16-bit inputs are treated alike.
//! * JPEG files that libjpeg decodes with a warning other than a premature end of file (e.g. "extraneous bytes
//!   before marker") are accepted as PIL accepts them; a truncated JPEG is an error (PIL raises "image file is
//!   truncated" too).
//! * The resize uses `fast_image_resize`'s Pillow-style fixed-point convolution, whose coefficients have up to 15
//!   bits of precision instead of Pillow's 22: a few pixels differ by one level (see the tests for measured figures).
//! * With `reduced_scale_decode`, large JPEGs are decoded with libjpeg's DCT scaling (1/2, 1/4, 1/8) before the
//!   bicubic resize; this is faster but not identical to the reference.

use std::cell::RefCell;
use std::io::Cursor;

use fast_image_resize as fir;
use image::ImageDecoder;
use rayon::prelude::*;

/// Formats accepted by [`ImagePreprocessor`], for error messages.
pub const ACCEPTED_FORMATS: &str = "JPEG, PNG, WebP, GIF, BMP";

/// Decoded buffers bigger than this are freed after each image instead of being kept for the next one on the
/// same thread (a 16 MP RGB image fits).
const RETAIN_SCRATCH_BYTES: usize = 48 << 20;

/// Reduced-scale JPEG decode keeps the decoded shortest side >= `REDUCED_SCALE_MARGIN * size`, so the bicubic
/// filter still does at least a 2x reduction after the DCT scaling. With a margin of 1 (DCT-scale right down to
/// `size`) the result drifts much further from the reference (measured on a 741x500 photo decoded at 1/2 to
/// 371x250: mean 4.0 levels, max 74, against <= 0.5 / 36 with the margin), for little speed gain: entropy decoding,
/// not the IDCT, dominates large-JPEG decode time.
const REDUCED_SCALE_MARGIN: usize = 2;

/// Largest accepted `size` (keeps `3 * size * size` and the resize geometry far from overflow).
const MAX_SIZE: u32 = 8192;

/// Preprocessing parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ImageOptions {
    /// Output side: the shortest side is resized to `size`, then a `size x size` center crop is taken.
    pub size: u32,
    /// Per-channel (RGB) mean subtracted after scaling to `[0, 1]`.
    pub mean: [f32; 3],
    /// Per-channel (RGB) standard deviation divided by after subtracting the mean.
    pub std: [f32; 3],
    /// Decompression-bomb guard: images with `width * height > max_pixels` are refused before decoding.
    pub max_pixels: u64,
    /// Decode large JPEGs at a reduced DCT scale (1/2, 1/4 or 1/8: the strongest reduction that keeps the shortest
    /// side `>= 2 * size`) before the bicubic resize. Faster, slightly different from the reference (mean well under
    /// one level on camera-like photos). JPEGs with a shortest side below `4 * size` / other formats are unaffected.
    pub reduced_scale_decode: bool,
}

impl Default for ImageOptions {
    /// CLIP's defaults (224, OpenAI mean/std, 40 MP) with the exact full-scale JPEG path.
    fn default() -> Self {
        use clip_contract::defaults;
        Self {
            size: defaults::IMAGE_SIZE,
            mean: defaults::IMAGE_MEAN,
            std: defaults::IMAGE_STD,
            max_pixels: defaults::MAX_PIXELS,
            reduced_scale_decode: false,
        }
    }
}

/// Why an image could not be preprocessed.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("invalid image options: {0}")]
    InvalidOptions(String),
    #[error("empty input: the image has no bytes")]
    Empty,
    #[error("unknown image format (first bytes: {magic}); accepted formats: {ACCEPTED_FORMATS}")]
    UnknownFormat { magic: String },
    #[error("truncated {format} data: {message}")]
    Truncated {
        format: &'static str,
        message: String,
    },
    #[error("corrupt {format} data: {message}")]
    Corrupt {
        format: &'static str,
        message: String,
    },
    #[error("unsupported {format} image: {message}")]
    Unsupported {
        format: &'static str,
        message: String,
    },
    #[error(
        "image too large: {width}x{height} = {pixels} pixels exceeds the limit of {limit} pixels"
    )]
    TooManyPixels {
        width: u64,
        height: u64,
        pixels: u64,
        limit: u64,
    },
    #[error("image has an empty dimension: {width}x{height}")]
    ZeroSize { width: u64, height: u64 },
    #[error("output buffer has {actual} floats, expected {expected}")]
    OutputLength { expected: usize, actual: usize },
    #[error("internal error while preprocessing the image: {0}")]
    Internal(String),
}

/// Turns encoded images into normalised CHW `f32` tensors. Cheap to share (`Send + Sync`); per-thread scratch
/// buffers (decode buffer, resizer, libjpeg-turbo handle) are reused across calls.
#[derive(Debug, Clone)]
pub struct ImagePreprocessor {
    options: ImageOptions,
    /// `lut[c][v]` = normalised value of level `v` in channel `c`, computed exactly like the reference.
    lut: Box<[[f32; 256]; 3]>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Jpeg,
    Png,
    Gif,
    WebP,
    Bmp,
}

impl Format {
    fn detect(data: &[u8]) -> Option<Self> {
        if data.starts_with(&[0xFF, 0xD8, 0xFF]) {
            Some(Self::Jpeg)
        } else if data.starts_with(b"\x89PNG\r\n\x1a\n") {
            Some(Self::Png)
        } else if data.starts_with(b"GIF87a") || data.starts_with(b"GIF89a") {
            Some(Self::Gif)
        } else if data.len() >= 12 && &data[..4] == b"RIFF" && &data[8..12] == b"WEBP" {
            Some(Self::WebP)
        } else if data.starts_with(b"BM") {
            Some(Self::Bmp)
        } else {
            None
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Jpeg => "JPEG",
            Self::Png => "PNG",
            Self::Gif => "GIF",
            Self::WebP => "WebP",
            Self::Bmp => "BMP",
        }
    }
}

/// A decoded 8-bit image in `Scratch::decode`: `channels` interleaved bytes per pixel, RGB in the first three
/// (1 = grey, 2 = grey + alpha, 3 = RGB, 4 = RGB + alpha or padding). Alpha is never used.
#[derive(Clone, Copy, Debug)]
struct Decoded {
    width: u32,
    height: u32,
    channels: usize,
}

/// Per-thread reusable state.
struct Scratch {
    decode: Vec<u8>,
    temp: Vec<u8>,
    crop: Vec<u8>,
    resizer: fir::Resizer,
    jpeg: Option<turbojpeg::Decompressor>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch {
        decode: Vec::new(),
        temp: Vec::new(),
        crop: Vec::new(),
        resizer: fir::Resizer::new(),
        jpeg: None,
    });
}

/// `buf[..len]`, growing (zero-filled) only when the buffer is too short: reused buffers are not re-zeroed.
fn sized(buf: &mut Vec<u8>, len: usize) -> &mut [u8] {
    if buf.len() < len {
        buf.resize(len, 0);
    }
    &mut buf[..len]
}

impl ImagePreprocessor {
    /// Validates the options and precomputes the normalisation tables.
    pub fn new(options: ImageOptions) -> Result<Self, ImageError> {
        let bad = |m: String| Err(ImageError::InvalidOptions(m));
        if options.size == 0 || options.size > MAX_SIZE {
            return bad(format!(
                "size must be in 1..={MAX_SIZE}, got {}",
                options.size
            ));
        }
        if options.max_pixels == 0 {
            return bad("max_pixels must be > 0".into());
        }
        for c in 0..3 {
            if !options.mean[c].is_finite() {
                return bad(format!("mean[{c}] must be finite, got {}", options.mean[c]));
            }
            if !options.std[c].is_finite() || options.std[c] == 0.0 {
                return bad(format!(
                    "std[{c}] must be finite and non-zero, got {}",
                    options.std[c]
                ));
            }
        }
        let mut lut = Box::new([[0f32; 256]; 3]);
        for (c, table) in lut.iter_mut().enumerate() {
            for (v, entry) in table.iter_mut().enumerate() {
                // transformers: rescale in f64 then cast to f32; normalize in f32.
                let x = (v as f64 * (1.0 / 255.0)) as f32;
                *entry = (x - options.mean[c]) / options.std[c];
            }
        }
        Ok(Self { options, lut })
    }

    /// The options this preprocessor was built with.
    pub fn options(&self) -> &ImageOptions {
        &self.options
    }

    /// `3 * size * size`: the number of floats one image produces.
    pub fn pixels_per_image(&self) -> usize {
        let s = self.options.size as usize;
        3 * s * s
    }

    /// Decode + RGB + resize shortest side to `size` (bicubic) + center crop + `/255` + normalize, CHW `f32` into
    /// `out` (whose length must equal [`pixels_per_image`](Self::pixels_per_image)). On error `out` is zeroed
    /// (when its length is right).
    pub fn preprocess_into(&self, encoded: &[u8], out: &mut [f32]) -> Result<(), ImageError> {
        let expected = self.pixels_per_image();
        if out.len() != expected {
            return Err(ImageError::OutputLength {
                expected,
                actual: out.len(),
            });
        }
        // Last line of defence: a panic in a decoder must not take the server down.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            SCRATCH.with(|s| self.run(encoded, out, &mut s.borrow_mut()))
        }))
        .unwrap_or_else(|panic| {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic".into());
            Err(ImageError::Internal(msg))
        });
        if result.is_err() {
            out.fill(0.0);
        }
        result
    }

    /// The images of one batch in parallel (rayon), each into its slice of `out` (`len = n * pixels_per_image()`);
    /// one result per image: a bad image fails alone (its slice is zeroed). If `out` has the wrong length every
    /// image fails with [`ImageError::OutputLength`].
    pub fn preprocess_batch(
        &self,
        images: &[&[u8]],
        out: &mut [f32],
    ) -> Vec<Result<(), ImageError>> {
        let per = self.pixels_per_image();
        let expected = images.len() * per;
        if out.len() != expected {
            return images
                .iter()
                .map(|_| {
                    Err(ImageError::OutputLength {
                        expected,
                        actual: out.len(),
                    })
                })
                .collect();
        }
        images
            .par_iter()
            .zip(out.par_chunks_mut(per))
            .map(|(img, o)| self.preprocess_into(img, o))
            .collect()
    }

    fn run(
        &self,
        encoded: &[u8],
        out: &mut [f32],
        scratch: &mut Scratch,
    ) -> Result<(), ImageError> {
        if encoded.is_empty() {
            return Err(ImageError::Empty);
        }
        let format = Format::detect(encoded).ok_or_else(|| ImageError::UnknownFormat {
            magic: encoded
                .iter()
                .take(8)
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(" "),
        })?;
        let result = self.decode_resize_normalize(format, encoded, out, scratch);
        if scratch.decode.capacity() > RETAIN_SCRATCH_BYTES {
            scratch.decode = Vec::new();
        }
        if scratch.temp.capacity() > RETAIN_SCRATCH_BYTES {
            scratch.temp = Vec::new();
        }
        result
    }

    fn decode_resize_normalize(
        &self,
        format: Format,
        encoded: &[u8],
        out: &mut [f32],
        scratch: &mut Scratch,
    ) -> Result<(), ImageError> {
        let ((orig_w, orig_h), decoded) = match format {
            Format::Jpeg => self.decode_jpeg(encoded, scratch)?,
            _ => self.decode_other(format, encoded, &mut scratch.decode)?,
        };
        let size = self.options.size;
        let ch = decoded.channels;
        let crop_len = size as usize * size as usize * ch;
        let Scratch {
            decode,
            temp,
            crop,
            resizer,
            ..
        } = scratch;
        let src_len = decoded.width as usize * decoded.height as usize * ch;
        let crop = sized(crop, crop_len);
        resize_center_crop(
            resizer,
            &decode[..src_len],
            decoded,
            (orig_w, orig_h),
            size,
            temp,
            crop,
        )?;
        self.normalize(crop, ch, out);
        Ok(())
    }

    fn check_dimensions(&self, width: u64, height: u64) -> Result<(), ImageError> {
        if width == 0 || height == 0 {
            return Err(ImageError::ZeroSize { width, height });
        }
        let pixels = width.saturating_mul(height);
        if pixels > self.options.max_pixels {
            return Err(ImageError::TooManyPixels {
                width,
                height,
                pixels,
                limit: self.options.max_pixels,
            });
        }
        Ok(())
    }

    /// libjpeg-turbo decode (same library and settings as Pillow: ISLOW IDCT, fancy upsampling), optionally at a
    /// reduced DCT scale. Returns the original dimensions and the decoded image.
    fn decode_jpeg(
        &self,
        data: &[u8],
        scratch: &mut Scratch,
    ) -> Result<((u32, u32), Decoded), ImageError> {
        const F: &str = "JPEG";
        if scratch.jpeg.is_none() {
            let d =
                turbojpeg::Decompressor::new().map_err(|e| ImageError::Internal(e.to_string()))?;
            scratch.jpeg = Some(d);
        }
        let tj = scratch.jpeg.as_mut().expect("initialised above");
        let header = tj.read_header(data).map_err(|e| jpeg_error(&e))?;
        let (w, h) = (header.width as u64, header.height as u64);
        self.check_dimensions(w, h)?;
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
        if self.options.reduced_scale_decode && !header.is_lossless {
            let short = header.width.min(header.height);
            for f in [
                turbojpeg::ScalingFactor::ONE_EIGHTH,
                turbojpeg::ScalingFactor::ONE_QUARTER,
                turbojpeg::ScalingFactor::ONE_HALF,
            ] {
                if f.scale(short) >= REDUCED_SCALE_MARGIN * self.options.size as usize {
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
        Ok(((w32, h32), decoded))
    }

    /// PNG / GIF / WebP / BMP through the `image` crate, decoded straight into `buf`.
    fn decode_other(
        &self,
        format: Format,
        data: &[u8],
        buf: &mut Vec<u8>,
    ) -> Result<((u32, u32), Decoded), ImageError> {
        let f = format.name();
        let err = |e: image::ImageError| image_error(f, e);
        let cursor = Cursor::new(data);
        match format {
            Format::Png => self.decode_with(
                image::codecs::png::PngDecoder::new(cursor).map_err(err)?,
                f,
                buf,
            ),
            Format::Gif => self.decode_with(
                image::codecs::gif::GifDecoder::new(cursor).map_err(err)?,
                f,
                buf,
            ),
            Format::WebP => self.decode_with(
                image::codecs::webp::WebPDecoder::new(cursor).map_err(err)?,
                f,
                buf,
            ),
            Format::Bmp => self.decode_with(
                image::codecs::bmp::BmpDecoder::new(cursor).map_err(err)?,
                f,
                buf,
            ),
            Format::Jpeg => unreachable!("JPEG goes through libjpeg-turbo"),
        }
    }

    fn decode_with<D: ImageDecoder>(
        &self,
        mut decoder: D,
        f: &'static str,
        buf: &mut Vec<u8>,
    ) -> Result<((u32, u32), Decoded), ImageError> {
        let (w, h) = decoder.dimensions();
        self.check_dimensions(w as u64, h as u64)?;
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

    /// Crop buffer (size x size x channels) -> CHW floats through the lookup tables.
    fn normalize(&self, crop: &[u8], channels: usize, out: &mut [f32]) {
        let plane = out.len() / 3;
        for (c, (dst, table)) in out.chunks_exact_mut(plane).zip(self.lut.iter()).enumerate() {
            let src_c = if channels < 3 { 0 } else { c };
            match channels {
                1 => dst
                    .iter_mut()
                    .zip(crop)
                    .for_each(|(o, &v)| *o = table[v as usize]),
                _ => dst
                    .iter_mut()
                    .zip(crop.chunks_exact(channels))
                    .for_each(|(o, px)| *o = table[px[src_c] as usize]),
            }
        }
    }
}

/// Output dimensions of transformers' `get_resize_output_image_size(size, default_to_square=False)`:
/// shortest side -> `size`, the other `int(size * long / short)`. Returned as `(width, height)`, in u64 because
/// absurd aspect ratios overflow u32.
fn resize_output_size(width: u32, height: u32, size: u32) -> (u64, u64) {
    let (short, long) = if width <= height {
        (width, height)
    } else {
        (height, width)
    };
    let new_long = ((size as f64 * long as f64) / short as f64) as u64;
    if width <= height {
        (size as u64, new_long)
    } else {
        (new_long, size as u64)
    }
}

/// Bicubic-resizes `src` (a decoded image that covers the original `orig` extent, possibly DCT-downscaled) to the
/// reference's resize dimensions and writes only the center `size x size` crop into `dst`.
///
/// Two passes like Pillow, horizontal first: the horizontal pass produces the crop's columns for the source rows
/// the vertical pass needs, the vertical pass produces the crop's rows. The filter positions are those of the full
/// resize (the crop is expressed as a fractional source box), so the result equals resize-then-crop.
fn resize_center_crop(
    resizer: &mut fir::Resizer,
    src: &[u8],
    decoded: Decoded,
    orig: (u32, u32),
    size: u32,
    temp: &mut Vec<u8>,
    dst: &mut [u8],
) -> Result<(), ImageError> {
    let internal = |e: &dyn std::fmt::Display| ImageError::Internal(format!("resize: {e}"));
    let (sw, sh) = (decoded.width, decoded.height);
    let (new_w, new_h) = resize_output_size(orig.0, orig.1, size);
    let pixel_type = match decoded.channels {
        1 => fir::PixelType::U8,
        2 => fir::PixelType::U8x2,
        3 => fir::PixelType::U8x3,
        _ => fir::PixelType::U8x4,
    };
    // Crop offsets in the resized image (transformers' center_crop), mapped to source coordinates.
    let left = ((new_w - size as u64) / 2) as f64;
    let top = ((new_h - size as u64) / 2) as f64;
    let scale_x = sw as f64 / new_w as f64;
    let scale_y = sh as f64 / new_h as f64;
    let x0 = left * scale_x;
    let xw = (size as f64 * scale_x).min(sw as f64 - x0);
    let y0 = top * scale_y;
    let yh = (size as f64 * scale_y).min(sh as f64 - y0);

    // Source rows the vertical pass reads (its kernel radius is 2 * max(scale, 1)), with a one-row margin.
    let radius = 2.0 * scale_y.max(1.0);
    let r0 = ((y0 + 0.5 * scale_y - radius).floor() - 1.0).max(0.0) as u32;
    let r1 = ((y0 + yh - 0.5 * scale_y + radius).ceil() + 1.0).min(sh as f64) as u32;
    let rows = r1 - r0;

    let options = fir::ResizeOptions::new()
        .resize_alg(fir::ResizeAlg::Convolution(fir::FilterType::CatmullRom))
        .use_alpha(false);

    let temp = sized(temp, size as usize * rows as usize * decoded.channels);
    {
        let src_img =
            fir::images::ImageRef::new(sw, sh, src, pixel_type).map_err(|e| internal(&e))?;
        let mut tmp_img = fir::images::Image::from_slice_u8(size, rows, temp, pixel_type)
            .map_err(|e| internal(&e))?;
        let opts = options.crop(x0, r0 as f64, xw, rows as f64);
        resizer
            .resize(&src_img, &mut tmp_img, &opts)
            .map_err(|e| internal(&e))?;
    }
    let tmp_img =
        fir::images::ImageRef::new(size, rows, temp, pixel_type).map_err(|e| internal(&e))?;
    let mut dst_img =
        fir::images::Image::from_slice_u8(size, size, dst, pixel_type).map_err(|e| internal(&e))?;
    let opts = options.crop(0.0, y0 - r0 as f64, size as f64, yh);
    resizer
        .resize(&tmp_img, &mut dst_img, &opts)
        .map_err(|e| internal(&e))?;
    Ok(())
}

/// Pillow's `cmyk2rgb` applied to libjpeg's raw CMYK output, which Pillow reads as Adobe-inverted ("CMYK;I"):
/// with `c = 255 - raw_c`, `nk = 255 - k = raw_k`: `out = nk - c * nk / 255` (rounded like Pillow's MULDIV255).
/// Writes RGB into the first three bytes of each 4-byte pixel (the fourth is left as is and ignored).
fn cmyk_to_rgb_in_place(buf: &mut [u8]) {
    #[inline(always)]
    fn muldiv255(a: u32, b: u32) -> u32 {
        let t = a * b + 128;
        ((t >> 8) + t) >> 8
    }
    for px in buf.chunks_exact_mut(4) {
        let nk = px[3] as u32;
        for v in &mut px[..3] {
            let c = 255 - *v as u32;
            *v = (nk - muldiv255(c, nk)) as u8;
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resize_dims_follow_transformers() {
        assert_eq!(resize_output_size(512, 512, 224), (224, 224));
        assert_eq!(resize_output_size(640, 427, 224), (335, 224)); // int(224 * 640 / 427) = 335
        assert_eq!(resize_output_size(150, 400, 224), (224, 597)); // int(597.33)
        assert_eq!(resize_output_size(100, 75, 224), (298, 224));
    }

    /// The fused crop (fractional source box, only the needed rows) vs a full two-pass resize then crop. Filter
    /// positions and weights are the same, but `fast_image_resize` picks its fixed-point precision from the largest
    /// weight of the pass, which can differ when only the cropped outputs are computed: a few samples may then
    /// round one level apart (neither is closer to Pillow's 22-bit arithmetic).
    #[test]
    fn fused_crop_equals_resize_then_crop() {
        let mut seed = 12345u32;
        let mut rnd = || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (seed >> 24) as u8
        };
        for &(w, h, size) in &[
            (300u32, 200u32, 224u32),
            (200, 333, 64),
            (97, 41, 50),
            (640, 427, 224),
            (1000, 17, 16),
        ] {
            let src: Vec<u8> = (0..w * h * 3).map(|_| rnd()).collect();
            let (nw, nh) = resize_output_size(w, h, size);
            let (nw, nh) = (nw as u32, nh as u32);
            let opts = fir::ResizeOptions::new()
                .resize_alg(fir::ResizeAlg::Convolution(fir::FilterType::CatmullRom))
                .use_alpha(false);
            let pt = fir::PixelType::U8x3;
            let mut r = fir::Resizer::new();
            // Horizontal pass, then vertical pass, on the whole image.
            let mut horiz = vec![0u8; (nw * h * 3) as usize];
            let s_img = fir::images::ImageRef::new(w, h, &src, pt).unwrap();
            let mut h_img = fir::images::Image::from_slice_u8(nw, h, &mut horiz, pt).unwrap();
            r.resize(&s_img, &mut h_img, &opts).unwrap();
            let mut full = vec![0u8; (nw * nh * 3) as usize];
            let h_ref = fir::images::ImageRef::new(nw, h, &horiz, pt).unwrap();
            let mut f_img = fir::images::Image::from_slice_u8(nw, nh, &mut full, pt).unwrap();
            r.resize(&h_ref, &mut f_img, &opts).unwrap();
            let (left, top) = ((nw - size) / 2, (nh - size) / 2);

            let mut fused = vec![0u8; (size * size * 3) as usize];
            let decoded = Decoded {
                width: w,
                height: h,
                channels: 3,
            };
            resize_center_crop(
                &mut r,
                &src,
                decoded,
                (w, h),
                size,
                &mut Vec::new(),
                &mut fused,
            )
            .unwrap();
            let mut differing = 0usize;
            for y in 0..size {
                for x in 0..size {
                    let a = ((y * size + x) * 3) as usize;
                    let b = (((y + top) * nw + x + left) * 3) as usize;
                    for c in 0..3 {
                        let d = (fused[a + c] as i32 - full[b + c] as i32).abs();
                        assert!(d <= 1, "{w}x{h}->{size} at ({x},{y}): {d} levels");
                        differing += (d != 0) as usize;
                    }
                }
            }
            let frac = differing as f64 / (3 * size * size) as f64;
            eprintln!(
                "{w}x{h}->{size}: {differing} samples differ by one level ({:.4}%)",
                frac * 100.0
            );
            assert!(frac < 0.01, "{w}x{h}->{size}: {differing} samples differ");
        }
    }

    #[test]
    fn cmyk_matches_pillow_formula() {
        // raw (inverted) values: c = 255 - raw.
        let mut px = [255u8, 0, 128, 255, 10, 20, 30, 0];
        cmyk_to_rgb_in_place(&mut px);
        assert_eq!(&px[..3], &[255, 0, 128]); // k = 0: out = 255 - c = raw
        assert_eq!(&px[4..7], &[0, 0, 0]); // k = 255: black
    }

    #[test]
    fn options_are_validated() {
        let ok = ImageOptions::default();
        assert!(ImagePreprocessor::new(ok).is_ok());
        for bad in [
            ImageOptions { size: 0, ..ok },
            ImageOptions {
                std: [0.2, 0.0, 0.2],
                ..ok
            },
            ImageOptions {
                mean: [f32::NAN, 0.0, 0.0],
                ..ok
            },
            ImageOptions {
                max_pixels: 0,
                ..ok
            },
        ] {
            assert!(matches!(
                ImagePreprocessor::new(bad),
                Err(ImageError::InvalidOptions(_))
            ));
        }
    }

    #[test]
    fn preprocessor_is_send_sync() {
        fn check<T: Send + Sync>() {}
        check::<ImagePreprocessor>();
    }
}
