//! Steps 2 and 3 of the reference, fused: PIL-style bicubic resize of the shortest side to `size` with
//! transformers' output geometry, computing only the center `size x size` crop.

use fast_image_resize as fir;

use crate::error::ImageError;
use crate::options::CenterCrop;
use crate::scratch::{sized, Decoded};

/// Where the crop lies: the image's size before any reduced-scale decode,
/// the output side, and whose center crop.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CropGeometry {
    pub(crate) orig: (u32, u32),
    pub(crate) size: u32,
    pub(crate) center_crop: CenterCrop,
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

/// Where the crop lies in the decoded image: the fractional source box of the crop (`x0`, `y0`, `xw`, `yh`, in
/// decoded pixels) and the source rows `r0..r1` the horizontal pass covers.
struct SourceBox {
    x0: f64,
    xw: f64,
    y0: f64,
    yh: f64,
    r0: u32,
    r1: u32,
}

impl SourceBox {
    fn new(decoded: Decoded, geometry: CropGeometry) -> Self {
        let (sw, sh) = (decoded.width, decoded.height);
        let size = geometry.size;
        let (new_w, new_h) = resize_output_size(geometry.orig.0, geometry.orig.1, size);
        // Crop offsets in the resized image, mapped to source coordinates.
        let left = geometry.center_crop.offset(new_w - size as u64) as f64;
        let top = geometry.center_crop.offset(new_h - size as u64) as f64;
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
        Self {
            x0,
            xw,
            y0,
            yh,
            r0,
            r1,
        }
    }
}

/// The part of the decoded image the resize reads: columns `left..right`, rows `top..bottom`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SourceWindow {
    pub(crate) left: u32,
    pub(crate) top: u32,
    pub(crate) right: u32,
    pub(crate) bottom: u32,
}

/// Every source pixel [`resize_center_crop`] gives a weight for this crop of a `decoded` image: the horizontal
/// pass's rows, and the columns its taps reach (radius `2 * max(scale, 1)` around the centres, which all lie
/// inside the crop's source box) with a one-column margin. Pixels outside it are never read with a weight, so a
/// decoder may leave them unwritten.
pub(crate) fn source_window(decoded: Decoded, geometry: CropGeometry) -> SourceWindow {
    let b = SourceBox::new(decoded, geometry);
    let radius = 2.0 * (b.xw / geometry.size as f64).max(1.0);
    SourceWindow {
        left: ((b.x0 - radius).floor() - 1.0).max(0.0) as u32,
        top: b.r0,
        right: ((b.x0 + b.xw + radius).ceil() + 1.0).min(decoded.width as f64) as u32,
        bottom: b.r1,
    }
}

/// Bicubic-resizes `src` (a decoded image that covers the original `orig` extent, possibly DCT-downscaled, of
/// which only the [`source_window`] need be written) to the reference's resize dimensions and writes only the
/// center `size x size` crop into `dst`.
///
/// Two passes like Pillow, horizontal first: the horizontal pass produces the crop's columns for the source rows
/// the vertical pass needs, the vertical pass produces the crop's rows. The filter positions are those of the full
/// resize (the crop is expressed as a fractional source box), so the result equals resize-then-crop.
pub(crate) fn resize_center_crop(
    resizer: &mut fir::Resizer,
    src: &[u8],
    decoded: Decoded,
    geometry: CropGeometry,
    temp: &mut Vec<u8>,
    dst: &mut [u8],
) -> Result<(), ImageError> {
    let internal = |e: &dyn std::fmt::Display| ImageError::Internal(format!("resize: {e}"));
    let (sw, sh, size) = (decoded.width, decoded.height, geometry.size);
    let pixel_type = match decoded.channels {
        1 => fir::PixelType::U8,
        2 => fir::PixelType::U8x2,
        3 => fir::PixelType::U8x3,
        _ => fir::PixelType::U8x4,
    };
    let b = SourceBox::new(decoded, geometry);
    let rows = b.r1 - b.r0;

    let options = fir::ResizeOptions::new()
        .resize_alg(fir::ResizeAlg::Convolution(fir::FilterType::CatmullRom))
        .use_alpha(false);

    let temp = sized(temp, size as usize * rows as usize * decoded.channels);
    {
        let src_img =
            fir::images::ImageRef::new(sw, sh, src, pixel_type).map_err(|e| internal(&e))?;
        let mut tmp_img = fir::images::Image::from_slice_u8(size, rows, temp, pixel_type)
            .map_err(|e| internal(&e))?;
        let opts = options.crop(b.x0, b.r0 as f64, b.xw, rows as f64);
        resizer
            .resize(&src_img, &mut tmp_img, &opts)
            .map_err(|e| internal(&e))?;
    }
    let tmp_img =
        fir::images::ImageRef::new(size, rows, temp, pixel_type).map_err(|e| internal(&e))?;
    let mut dst_img =
        fir::images::Image::from_slice_u8(size, size, dst, pixel_type).map_err(|e| internal(&e))?;
    let opts = options.crop(0.0, b.y0 - b.r0 as f64, size as f64, b.yh);
    resizer
        .resize(&tmp_img, &mut dst_img, &opts)
        .map_err(|e| internal(&e))?;
    Ok(())
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
            for center_crop in CenterCrop::ALL {
                let left = center_crop.offset(u64::from(nw - size)) as u32;
                let top = center_crop.offset(u64::from(nh - size)) as u32;

                let mut fused = vec![0u8; (size * size * 3) as usize];
                let decoded = Decoded {
                    width: w,
                    height: h,
                    channels: 3,
                };
                let geometry = CropGeometry {
                    orig: (w, h),
                    size,
                    center_crop,
                };
                resize_center_crop(&mut r, &src, decoded, geometry, &mut Vec::new(), &mut fused)
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
    }

    #[test]
    fn torchvision_rounds_half_offsets_to_even_and_transformers_floors_them() {
        // Python: round(m / 2) for the torchvision column, m // 2 for transformers.
        for (margin, transformers, torchvision) in [
            (0, 0, 0),
            (1, 0, 0),
            (2, 1, 1),
            (3, 1, 2),
            (5, 2, 2),
            (7, 3, 4),
            (111, 55, 56),
            (112, 56, 56),
            (925, 462, 462),
        ] {
            assert_eq!(
                CenterCrop::Transformers.offset(margin),
                transformers,
                "{margin}"
            );
            assert_eq!(
                CenterCrop::Torchvision.offset(margin),
                torchvision,
                "{margin}"
            );
        }
        for crop in CenterCrop::ALL {
            assert_eq!(CenterCrop::from_name(crop.name()), Some(crop));
        }
        assert_eq!(CenterCrop::from_name("pil"), None);
    }
}
