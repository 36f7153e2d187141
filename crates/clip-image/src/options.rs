//! Preprocessing parameters and the size guard they impose, kept apart so the decoders can read them without
//! depending on `ImagePreprocessor`.

use crate::error::ImageError;

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
    /// Decode large JPEGs at a reduced DCT scale (1/2 or 1/4: the strongest reduction that keeps the shortest side
    /// `>= 2 * size`; 1/8 only if it keeps it `>= 4 * size`) before the bicubic resize. Faster, slightly different
    /// from the reference (mean under one level: see the crate's reference test for measured figures). JPEGs with a
    /// shortest side below `4 * size` / other formats are unaffected.
    pub reduced_scale_decode: bool,
    /// Where the crop starts when the resized margin is odd.
    pub center_crop: CenterCrop,
}

/// The two center crops in use: they differ by one pixel when the margin
/// the crop leaves (resized side minus `size`) is odd.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CenterCrop {
    /// transformers' `center_crop`: offset `margin // 2`.
    #[default]
    Transformers,
    /// torchvision's `CenterCrop` (open_clip, OpenAI's `clip`, CLIP-as-service):
    /// offset `round(margin / 2)` with Python's `round`, half to even.
    Torchvision,
}

impl CenterCrop {
    pub const ALL: [CenterCrop; 2] = [CenterCrop::Transformers, CenterCrop::Torchvision];

    /// The name configs and flags use.
    pub fn name(self) -> &'static str {
        match self {
            CenterCrop::Transformers => "transformers",
            CenterCrop::Torchvision => "torchvision",
        }
    }

    /// Reads [`CenterCrop::name`]; `None` for anything else.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.name() == name)
    }

    /// The crop's first pixel along a side that leaves `margin` pixels.
    pub fn offset(self, margin: u64) -> u64 {
        let floor = margin / 2;
        match self {
            CenterCrop::Transformers => floor,
            // An odd margin halves to floor + 0.5: up when floor is odd.
            CenterCrop::Torchvision => floor + (margin % 2) * (floor % 2),
        }
    }
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
            center_crop: CenterCrop::Transformers,
        }
    }
}

impl ImageOptions {
    /// The header's dimensions against the decompression-bomb guard, checked before any pixel is decoded.
    pub(crate) fn check_dimensions(&self, width: u64, height: u64) -> Result<(), ImageError> {
        if width == 0 || height == 0 {
            return Err(ImageError::ZeroSize { width, height });
        }
        let pixels = width.saturating_mul(height);
        if pixels > self.max_pixels {
            return Err(ImageError::TooManyPixels {
                width,
                height,
                pixels,
                limit: self.max_pixels,
            });
        }
        Ok(())
    }
}
