//! Step 4 of the reference, `x * (1/255)` then `(x - mean) / std`, as per-channel lookup tables: 256 levels per
//! channel, each computed once with the reference's float arithmetic, so the result is bit-identical and cheap.
//! Also where grey is replicated to RGB and alpha dropped (the channel each output plane reads).

use crate::options::ImageOptions;

/// `lut[c][v]` = normalised value of level `v` in channel `c`.
pub(crate) type Lut = [[f32; 256]; 3];

/// The tables for `options.mean` / `options.std`, computed exactly like the reference.
pub(crate) fn build_lut(options: &ImageOptions) -> Box<Lut> {
    let mut lut = Box::new([[0f32; 256]; 3]);
    for (c, table) in lut.iter_mut().enumerate() {
        for (v, entry) in table.iter_mut().enumerate() {
            // transformers: rescale in f64 then cast to f32; normalize in f32.
            let x = (v as f64 * (1.0 / 255.0)) as f32;
            *entry = (x - options.mean[c]) / options.std[c];
        }
    }
    lut
}

/// Crop buffer (size x size x channels) -> RGB bytes, HWC: the pixel path's
/// input, with grey replicated and alpha dropped as [`normalize`] does.
pub(crate) fn to_rgb(crop: &[u8], channels: usize, out: &mut [u8]) {
    match channels {
        3 => out.copy_from_slice(crop),
        // Grey, with or without alpha.
        1 | 2 => out
            .chunks_exact_mut(3)
            .zip(crop.chunks_exact(channels))
            .for_each(|(o, px)| o.fill(px[0])),
        _ => out
            .chunks_exact_mut(3)
            .zip(crop.chunks_exact(channels))
            .for_each(|(o, px)| o.copy_from_slice(&px[..3])),
    }
}

/// Crop buffer (size x size x channels) -> CHW floats through the lookup tables.
pub(crate) fn normalize(lut: &Lut, crop: &[u8], channels: usize, out: &mut [f32]) {
    let plane = out.len() / 3;
    for (c, (dst, table)) in out.chunks_exact_mut(plane).zip(lut.iter()).enumerate() {
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
