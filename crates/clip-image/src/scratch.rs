//! Per-thread buffers reused from one image to the next (so a steady stream of images allocates nothing), and
//! [`Decoded`], the description of the image a decoder left in them.

use std::cell::RefCell;

use fast_image_resize as fir;

/// Decoded buffers bigger than this are freed after each image instead of being kept for the next one on the
/// same thread (a 16 MP RGB image fits).
pub(crate) const RETAIN_SCRATCH_BYTES: usize = 48 << 20;

/// A decoded 8-bit image in `Scratch::decode`: `channels` interleaved bytes per pixel, RGB in the first three
/// (1 = grey, 2 = grey + alpha, 3 = RGB, 4 = RGB + alpha or padding). Alpha is never used. A JPEG decode writes only
/// the part the resize reads (see `jpeg::decode_jpeg`); the rest holds whatever the buffer held.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Decoded {
    pub(crate) width: u32,
    pub(crate) height: u32,
    pub(crate) channels: usize,
}

/// Per-thread reusable state.
pub(crate) struct Scratch {
    pub(crate) decode: Vec<u8>,
    pub(crate) temp: Vec<u8>,
    pub(crate) crop: Vec<u8>,
    pub(crate) resizer: fir::Resizer,
}

impl Scratch {
    pub(crate) fn new() -> Self {
        Self {
            decode: Vec::new(),
            temp: Vec::new(),
            crop: Vec::new(),
            resizer: fir::Resizer::new(),
        }
    }
}

thread_local! {
    pub(crate) static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::new());
}

/// `buf[..len]`, growing (zero-filled) only when the buffer is too short: reused buffers are not re-zeroed.
pub(crate) fn sized(buf: &mut Vec<u8>, len: usize) -> &mut [u8] {
    if buf.len() < len {
        buf.resize(len, 0);
    }
    &mut buf[..len]
}
