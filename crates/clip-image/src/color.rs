//! Colour conversion that no decoder does the way PIL's `convert("RGB")` does, reproduced here bit for bit.

/// Pillow's `cmyk2rgb` applied to libjpeg's raw CMYK output, which Pillow reads as Adobe-inverted ("CMYK;I"):
/// with `c = 255 - raw_c`, `nk = 255 - k = raw_k`: `out = nk - c * nk / 255` (rounded like Pillow's MULDIV255).
/// Writes RGB into the first three bytes of each 4-byte pixel (the fourth is left as is and ignored).
pub(crate) fn cmyk_to_rgb_in_place(buf: &mut [u8]) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmyk_matches_pillow_formula() {
        // raw (inverted) values: c = 255 - raw.
        let mut px = [255u8, 0, 128, 255, 10, 20, 30, 0];
        cmyk_to_rgb_in_place(&mut px);
        assert_eq!(&px[..3], &[255, 0, 128]); // k = 0: out = 255 - c = raw
        assert_eq!(&px[4..7], &[0, 0, 0]); // k = 255: black
    }
}
