//! CLIP image preprocessing: encoded bytes in, normalised CHW `f32` pixels out.
//!
//! The reference is Hugging Face transformers 4.57.6 `CLIPImageProcessor(use_fast=False)` (PIL based):
//!
//! 1. decode (JPEG, PNG, WebP, GIF first frame, BMP) and convert to RGB the way PIL's `image.convert("RGB")` does:
//!    alpha is dropped (not composited), grey is replicated, palette entries are looked up (transparency ignored),
//!    CMYK/YCCK JPEGs use Pillow's `cmyk2rgb` on Adobe-inverted data, a GIF's first frame is placed on its canvas
//!    with PIL's fill and palette rules (see `gif_frame`). EXIF orientation is *not* applied (the reference does
//!    not apply it either);
//! 2. resize so the shortest side is `size` and the other side `int(size * long / short)`
//!    (transformers' `get_resize_output_image_size(default_to_square=False)`), PIL BICUBIC (Catmull-Rom, a = -0.5,
//!    kernel widened when downscaling), horizontal pass first like Pillow;
//! 3. center crop to `size x size` with transformers' offsets (`(new - size) // 2`);
//! 4. `x * (1/255)` (in f64, then f32) and `(x - mean) / std` in f32, channel-major (CHW).
//!
//! Steps 3 and 4 are fused: only the rows/columns the crop needs are resized (the filter taps are those of the
//! full resize), and normalisation is a per-channel 256-entry lookup table that reproduces the reference's float
//! arithmetic bit for bit. A JPEG is decoded only where that resize reads it (libjpeg-turbo's partial
//! decompression, see `jpeg`), with pixels identical to a whole decode's.
//!
//! Deliberate differences from PIL:
//! * 16-bit greyscale PNGs: PIL ("I;16" -> "RGB") clips every value above 255 to white, which turns a real 16-bit
//!   photo into a white sheet. We take the high byte (`v >> 8`), which is also what PIL itself does for 16-bit
//!   RGB/RGBA PNGs (read as "RGB;16B"), so all 16-bit inputs are treated alike.
//! * JPEG files that libjpeg decodes with a warning other than a premature end of file (e.g. "extraneous bytes
//!   before marker") are accepted as PIL accepts them; a truncated JPEG is an error (PIL raises "image file is
//!   truncated" too).
//! * The resize uses `fast_image_resize`'s Pillow-style fixed-point convolution (same kernel, pass order and
//!   rounding), whose coefficients are 16-bit integers (~14 significant bits for the largest tap) where Pillow's
//!   are scaled by 2^22. On photos a few hundred of the 150528 output values differ by one level; on two-level
//!   images (1-bit BMPs, fine patterns), where every tap is 0 or 255 so the coefficient errors add up instead of
//!   averaging out, up to 2 levels, and about half the values one level off on a 1-pixel checkerboard (see the
//!   reference test for measured figures). Decoding itself is exact for every format but lossy WebP, which shows
//!   no difference on the fixtures.
//! * With `reduced_scale_decode`, large JPEGs are decoded with libjpeg's DCT scaling (1/2, 1/4, or 1/8 for very
//!   large ones) before the bicubic resize; this is faster but not identical to the reference.

// Module graph, acyclic: format, scratch, color, jpeg_frame and turbo import no sibling; error uses format; options
// uses error; normalize uses options; resize uses error, options, scratch; jpeg uses color, error, jpeg_frame,
// options, resize, scratch, turbo; gif_frame uses error, options, scratch; other_formats uses error, format,
// options, scratch. lib.rs uses them all and no module imports from lib.rs.
mod color;
mod error;
mod format;
mod gif_frame;
mod jpeg;
mod jpeg_frame;
mod normalize;
mod options;
mod other_formats;
mod resize;
mod scratch;
mod turbo;

use rayon::prelude::*;

pub use error::ImageError;
pub use format::{Format, ACCEPTED_FORMATS};
pub use options::{CenterCrop, ImageOptions};

use normalize::Lut;
use scratch::{sized, Decoded, Scratch, RETAIN_SCRATCH_BYTES, SCRATCH};

/// Largest accepted `size` (keeps `3 * size * size` and the resize geometry far from overflow).
const MAX_SIZE: u32 = 8192;

/// What decoding one image used, for callers that count it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decode {
    pub format: Format,
    /// The image was decoded at 1/`scale_denominator` of its size: 2, 4 or 8 for a JPEG decoded at reduced scale,
    /// else 1.
    pub scale_denominator: u32,
}

/// Turns encoded images into normalised CHW `f32` tensors. Cheap to share (`Send + Sync`); per-thread scratch
/// buffers (decode buffer, resizer, libjpeg-turbo handle) are reused across calls.
#[derive(Debug, Clone)]
pub struct ImagePreprocessor {
    options: ImageOptions,
    /// `lut[c][v]` = normalised value of level `v` in channel `c`, computed exactly like the reference.
    lut: Box<Lut>,
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
        let lut = normalize::build_lut(&options);
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
        self.preprocess_reporting(encoded, out).map(|_| ())
    }

    /// [`preprocess_into`](Self::preprocess_into), also saying what the decode used.
    pub fn preprocess_reporting(
        &self,
        encoded: &[u8],
        out: &mut [f32],
    ) -> Result<Decode, ImageError> {
        self.guarded(Target::Normalised(out), |out, scratch| {
            self.run(encoded, out, scratch)
        })
    }

    /// Steps 2 to 4 for an image the caller already decoded: `rgb` holds
    /// `width x height` RGB pixels, row-major, 3 bytes each (HWC). Resized,
    /// cropped and normalised exactly as a decoded file is, into `out` as
    /// [`preprocess_into`](Self::preprocess_into) does; `max_pixels` applies.
    pub fn preprocess_rgb(
        &self,
        width: u32,
        height: u32,
        rgb: &[u8],
        out: &mut [f32],
    ) -> Result<(), ImageError> {
        self.guarded(Target::Normalised(out), |out, scratch| {
            let (w, h) = (u64::from(width), u64::from(height));
            if w == 0 || h == 0 {
                return Err(ImageError::ZeroSize {
                    width: w,
                    height: h,
                });
            }
            if w * h > self.options.max_pixels {
                return Err(ImageError::TooManyPixels {
                    width: w,
                    height: h,
                    pixels: w * h,
                    limit: self.options.max_pixels,
                });
            }
            if rgb.len() as u64 != w * h * 3 {
                return Err(ImageError::Internal(format!(
                    "{} bytes of pixels for a {width}x{height} RGB image",
                    rgb.len()
                )));
            }
            let decoded = Decoded {
                width,
                height,
                channels: 3,
            };
            self.resize_crop_write(rgb, decoded, (width, height), out, scratch)
        })
    }

    /// Steps 1 to 3 only: decode + RGB + resize + center crop, the crop's
    /// RGB levels in HWC order (`size x size x 3` bytes into `out`), for the
    /// pixel path, whose encoder normalises in its graph. The levels are the
    /// ones [`preprocess_into`](Self::preprocess_into) normalises. On error
    /// `out` is zeroed (when its length is right).
    pub fn pixels_into(&self, encoded: &[u8], out: &mut [u8]) -> Result<Decode, ImageError> {
        self.guarded(Target::Pixels(out), |out, scratch| {
            self.run(encoded, out, scratch)
        })
    }

    /// Checks the output's length, runs `work` with this thread's scratch,
    /// and zeroes the output on error.
    fn guarded<T>(
        &self,
        mut out: Target<'_>,
        work: impl FnOnce(&mut Target<'_>, &mut Scratch) -> Result<T, ImageError>,
    ) -> Result<T, ImageError> {
        let expected = self.pixels_per_image();
        if out.len() != expected {
            return Err(ImageError::OutputLength {
                expected,
                actual: out.len(),
            });
        }
        // Last line of defence: a panic in a decoder must not take the server down.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            SCRATCH.with(|s| work(&mut out, &mut s.borrow_mut()))
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
            out.zero();
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
        out: &mut Target<'_>,
        scratch: &mut Scratch,
    ) -> Result<Decode, ImageError> {
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
        let result = self
            .decode_resize_normalize(format, encoded, out, scratch)
            .map(|scale_denominator| Decode {
                format,
                scale_denominator,
            });
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
        out: &mut Target<'_>,
        scratch: &mut Scratch,
    ) -> Result<u32, ImageError> {
        // Only a JPEG is ever decoded at a reduced scale.
        let mut scale_denominator = 1;
        let ((orig_w, orig_h), decoded) = match format {
            Format::Jpeg => {
                let (size, decoded, denominator, _) =
                    jpeg::decode_jpeg(&self.options, encoded, scratch, jpeg::Extent::CropSources)?;
                scale_denominator = denominator;
                (size, decoded)
            }
            Format::Gif => gif_frame::decode_gif(
                &self.options,
                encoded,
                &mut scratch.decode,
                &mut scratch.temp,
            )?,
            _ => other_formats::decode_other(&self.options, format, encoded, &mut scratch.decode)?,
        };
        let src_len = decoded.width as usize * decoded.height as usize * decoded.channels;
        let decode = std::mem::take(&mut scratch.decode);
        let result =
            self.resize_crop_write(&decode[..src_len], decoded, (orig_w, orig_h), out, scratch);
        scratch.decode = decode;
        result.map(|()| scale_denominator)
    }

    /// Steps 2 to 4 from `src`, the decoded pixels (`orig` is the image's
    /// size before any reduced-scale decode), into `out`.
    fn resize_crop_write(
        &self,
        src: &[u8],
        decoded: Decoded,
        orig: (u32, u32),
        out: &mut Target<'_>,
        scratch: &mut Scratch,
    ) -> Result<(), ImageError> {
        let size = self.options.size;
        let ch = decoded.channels;
        let crop_len = size as usize * size as usize * ch;
        let Scratch {
            temp,
            crop,
            resizer,
            ..
        } = scratch;
        let crop = sized(crop, crop_len);
        let geometry = resize::CropGeometry {
            orig,
            size,
            center_crop: self.options.center_crop,
        };
        resize::resize_center_crop(resizer, src, decoded, geometry, temp, crop)?;
        match out {
            Target::Normalised(out) => normalize::normalize(&self.lut, crop, ch, out),
            Target::Pixels(out) => normalize::to_rgb(crop, ch, out),
        }
        Ok(())
    }
}

/// Where the crop goes: normalised CHW floats, or its RGB levels HWC.
enum Target<'o> {
    Normalised(&'o mut [f32]),
    Pixels(&'o mut [u8]),
}

impl Target<'_> {
    /// Values, not bytes: `3 * size * size` for either.
    fn len(&self) -> usize {
        match self {
            Target::Normalised(out) => out.len(),
            Target::Pixels(out) => out.len(),
        }
    }

    fn zero(&mut self) {
        match self {
            Target::Normalised(out) => out.fill(0.0),
            Target::Pixels(out) => out.fill(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
