//! The one fact of a JPEG frame header that TurboJPEG does not report: the largest horizontal sampling factor,
//! which sets the width of an iMCU column and so where a partial decode may start a row.

/// The largest horizontal sampling factor of the first frame header (SOF0 to SOF15) in `data`, 1 for a
/// single-component frame (libjpeg ignores its factors), or `None` when no well-formed frame header comes before
/// the first scan.
pub(crate) fn max_horizontal_sampling(data: &[u8]) -> Option<u32> {
    let mut at = 2; // after SOI
    loop {
        let (&[0xFF, marker], rest) = data.get(at..)?.split_first_chunk::<2>()? else {
            return None;
        };
        if marker == 0xFF {
            at += 1; // a fill byte
            continue;
        }
        let length = usize::from(u16::from_be_bytes(*rest.first_chunk::<2>()?));
        let segment = rest.get(2..length)?;
        match marker {
            // DHT, JPG and DAC share the range but are not frame headers.
            0xC4 | 0xC8 | 0xCC => {}
            0xC0..=0xCF => {
                let components = usize::from(*segment.get(5)?);
                let factors = segment.get(6..6 + 3 * components)?;
                if components == 1 {
                    return Some(1);
                }
                return factors.chunks_exact(3).map(|c| u32::from(c[1] >> 4)).max();
            }
            0xDA => return None, // a scan before any frame header
            _ => {}
        }
        at += 2 + length;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SOI, an APP0 segment, a fill byte, then an SOF0 for `components` with `factors` each.
    fn header(components: &[u8]) -> Vec<u8> {
        let mut jpeg = vec![0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x04, b'J', b'F', 0xFF];
        let length = 8 + 3 * components.len() as u16;
        jpeg.extend([0xFF, 0xC0]);
        jpeg.extend(length.to_be_bytes());
        jpeg.extend([8, 0x01, 0xE0, 0x02, 0x80, components.len() as u8]);
        for (id, &factors) in components.iter().enumerate() {
            jpeg.extend([id as u8 + 1, factors, 0]);
        }
        jpeg
    }

    #[test]
    fn reads_the_largest_horizontal_factor() {
        assert_eq!(
            max_horizontal_sampling(&header(&[0x22, 0x11, 0x11])),
            Some(2)
        );
        assert_eq!(
            max_horizontal_sampling(&header(&[0x11, 0x11, 0x11])),
            Some(1)
        );
        assert_eq!(
            max_horizontal_sampling(&header(&[0x31, 0x31, 0x31])),
            Some(3)
        );
        assert_eq!(
            max_horizontal_sampling(&header(&[0x41, 0x11, 0x11, 0x41])),
            Some(4)
        );
        assert_eq!(max_horizontal_sampling(&header(&[0x22])), Some(1));
    }

    #[test]
    fn malformed_or_missing_headers_give_none() {
        let good = header(&[0x22, 0x11, 0x11]);
        for cut in 0..good.len() {
            assert_eq!(max_horizontal_sampling(&good[..cut]), None, "cut at {cut}");
        }
        assert_eq!(
            max_horizontal_sampling(&[0xFF, 0xD8, 0xFF, 0xDA, 0, 2]),
            None
        );
        assert_eq!(max_horizontal_sampling(&[0xFF, 0xD8, 0x00, 0xC0]), None);
    }
}
