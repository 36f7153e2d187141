//! A safe wrapper over libjpeg-turbo's TurboJPEG 3 decompressor (`turbojpeg-sys`). The `turbojpeg` crate does not
//! expose partial decompression (`tj3SetCroppingRegion`), which needs the same handle between reading the header
//! and decompressing.

use std::ffi::{c_int, c_ulong, CStr};

use turbojpeg_sys as tj;

/// libjpeg-turbo's message for a failed call (an error, or a warning that left the image fully written).
#[derive(Debug)]
pub(crate) struct TurboMessage(pub(crate) String);

/// What the JPEG header says.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Header {
    pub(crate) width: u32,
    pub(crate) height: u32,
    /// `TJSAMP_*`; `TJSAMP_UNKNOWN` for sampling factors TurboJPEG does not name.
    subsamp: c_int,
    pub(crate) colorspace: Colorspace,
    pub(crate) lossless: bool,
    /// Progressive files are read whole before the first row comes out, so a truncation anywhere is seen even when
    /// the bottom rows are skipped.
    pub(crate) progressive: bool,
}

/// The colour spaces that decode differently.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Colorspace {
    Gray,
    Cmyk,
    Color,
}

impl Header {
    /// Width in pixels at 1/`denom` scale that a partial decode's left edge must be a multiple of, for a frame
    /// whose largest horizontal sampling factor is `max_h_sampling`; `None` when the file can only be decoded
    /// whole (lossless files, sampling factors TurboJPEG cannot name). `tj3SetCroppingRegion` checks the edge
    /// against the scaled MCU width of the subsampling's name, libjpeg against the file's iMCU width (8 x the
    /// largest factor, scaled); they differ for factors written in non-standard ways (4:4:4 as 2x1 on every
    /// component), so the edge must suit both.
    pub(crate) fn region_alignment(&self, denom: u32, max_h_sampling: u32) -> Option<u32> {
        const MCU_WIDTH: [u32; 7] = [8, 16, 16, 8, 8, 32, 8];
        let mcu = usize::try_from(self.subsamp)
            .ok()
            .and_then(|s| MCU_WIDTH.get(s))?;
        let (named, imcu) = (scaled(*mcu, denom), scaled(8 * max_h_sampling, denom));
        (!self.lossless && imcu > 0).then(|| named / gcd(named, imcu) * imcu)
    }
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// `TJSCALED`: a dimension at 1/`denom` scale, rounded up.
pub(crate) fn scaled(dimension: u32, denom: u32) -> u32 {
    dimension.div_ceil(denom)
}

/// Which part of the (scaled) image to decode, in pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Region {
    pub(crate) x: u32,
    pub(crate) y: u32,
    pub(crate) width: u32,
    pub(crate) height: u32,
}

/// One TurboJPEG decompressor instance.
pub(crate) struct Decompressor {
    handle: tj::tjhandle,
}

impl Decompressor {
    pub(crate) fn new() -> Result<Self, TurboMessage> {
        // SAFETY: tj3Init has no preconditions; a null handle is checked for before any use.
        let handle = unsafe { tj::tj3Init(tj::TJINIT_TJINIT_DECOMPRESS as c_int) };
        if handle.is_null() {
            return Err(TurboMessage("tj3Init failed".into()));
        }
        Ok(Self { handle })
    }

    fn status(&self, code: c_int) -> Result<(), TurboMessage> {
        if code == 0 {
            return Ok(());
        }
        // SAFETY: the handle is valid; tj3GetErrorStr returns a NUL-terminated string it owns, copied here.
        let message = unsafe { CStr::from_ptr(tj::tj3GetErrorStr(self.handle)) };
        Err(TurboMessage(message.to_string_lossy().into_owned()))
    }

    fn get(&self, param: tj::TJPARAM) -> c_int {
        // SAFETY: the handle is valid; tj3Get only reads the instance.
        unsafe { tj::tj3Get(self.handle, param as c_int) }
    }

    pub(crate) fn read_header(&mut self, data: &[u8]) -> Result<Header, TurboMessage> {
        // SAFETY: the handle is valid and `data` is readable for its length.
        let code =
            unsafe { tj::tj3DecompressHeader(self.handle, data.as_ptr(), data.len() as c_ulong) };
        self.status(code)?;
        let dimension = |param| {
            u32::try_from(self.get(param))
                .map_err(|_| TurboMessage(format!("negative dimension {}", self.get(param))))
        };
        let colorspace = match self.get(tj::TJPARAM_TJPARAM_COLORSPACE) as tj::TJCS {
            tj::TJCS_TJCS_GRAY => Colorspace::Gray,
            tj::TJCS_TJCS_CMYK | tj::TJCS_TJCS_YCCK => Colorspace::Cmyk,
            _ => Colorspace::Color,
        };
        Ok(Header {
            width: dimension(tj::TJPARAM_TJPARAM_JPEGWIDTH)?,
            height: dimension(tj::TJPARAM_TJPARAM_JPEGHEIGHT)?,
            subsamp: self.get(tj::TJPARAM_TJPARAM_SUBSAMP),
            colorspace,
            lossless: self.get(tj::TJPARAM_TJPARAM_LOSSLESS) != 0,
            progressive: self.get(tj::TJPARAM_TJPARAM_PROGRESSIVE) != 0,
        })
    }

    /// Decodes at 1/`denom` scale (1, 2, 4 or 8), after [`read_header`](Self::read_header).
    pub(crate) fn set_scale(&mut self, denom: u32) -> Result<(), TurboMessage> {
        let factor = tj::tjscalingfactor {
            num: 1,
            denom: denom as c_int,
        };
        // SAFETY: the handle is valid; the factor is passed by value.
        let code = unsafe { tj::tj3SetScalingFactor(self.handle, factor) };
        self.status(code)
    }

    /// Decodes only `region` of the scaled image, after [`set_scale`](Self::set_scale), into `image`, an image
    /// `pitch` bytes a row of `channels` bytes a pixel, at the region's own position; the rest of `image` is left
    /// as it was. libjpeg-turbo skips the IDCT, upsampling and colour conversion of the columns left and right of
    /// the region (whose left edge must lie on an iMCU boundary, see [`Header::region_alignment`]), all but the
    /// entropy decoding of the rows above it, and all of the rows below it.
    pub(crate) fn decompress_region(
        &mut self,
        data: &[u8],
        image: &mut [u8],
        pitch: usize,
        channels: usize,
        region: Region,
    ) -> Result<(), TurboMessage> {
        let format = match channels {
            1 => tj::TJPF_TJPF_GRAY,
            3 => tj::TJPF_TJPF_RGB,
            4 => tj::TJPF_TJPF_CMYK,
            _ => return Err(TurboMessage(format!("{channels} channels"))),
        };
        let (x, y) = (region.x as usize, region.y as usize);
        let (width, height) = (region.width as usize, region.height as usize);
        let start = y * pitch + x * channels;
        // libjpeg-turbo writes `height` rows of `width` pixels from `start`, `pitch` bytes apart.
        let end = start + height.saturating_sub(1) * pitch + width * channels;
        if width == 0 || height == 0 || (x + width) * channels > pitch || end > image.len() {
            return Err(TurboMessage(format!(
                "region {region:?} does not fit {} bytes at pitch {pitch}",
                image.len()
            )));
        }
        let int = |v: usize| c_int::try_from(v).map_err(|_| TurboMessage(format!("{v} > c_int")));
        let tj_region = tj::tjregion {
            x: int(x)?,
            y: int(y)?,
            w: int(width)?,
            h: int(height)?,
        };
        let pitch = int(pitch)?;
        // SAFETY: the handle is valid; the region is passed by value and checked against the scaled image.
        let code = unsafe { tj::tj3SetCroppingRegion(self.handle, tj_region) };
        self.status(code)?;
        let destination = image[start..end].as_mut_ptr();
        // SAFETY: the handle is valid, `data` is readable for its length, and every byte libjpeg-turbo writes
        // (`height` rows of `width * channels` bytes, `pitch` apart, from `destination`: the region just set) lies
        // in `image[start..end]`, checked above.
        let code = unsafe {
            tj::tj3Decompress8(
                self.handle,
                data.as_ptr(),
                data.len() as c_ulong,
                destination,
                pitch,
                format,
            )
        };
        self.status(code)
    }
}

impl Drop for Decompressor {
    fn drop(&mut self) {
        // SAFETY: the handle came from tj3Init and is destroyed once.
        unsafe { tj::tj3Destroy(self.handle) }
    }
}
