//! The `image_preprocess` kind: encoded image files (`IMAGE`, BYTES), or
//! decoded RGB images of any size (`PIXELS`, UINT8 `[H, W, 3]`, one size per
//! request), to normalised pixels (`PIXEL_VALUES`, FP32 or FP16 `[3, S, S]`).

use std::sync::Arc;
use std::time::Instant;

use clip_contract::{param, tensor};
use clip_image::{ImageError, ImageOptions, ImagePreprocessor};
use rayon::prelude::*;

use super::shared::{request_elements, Preprocess, Shared};
use crate::batch::{BatchOutput, HostTensor, Request, RequestError, Rows};
use crate::config::ImageSpec;
use crate::kind::{Instance, Kind, Runner};
use crate::metrics::{Metrics, Reason};
use crate::pool::BufferPool;

pub struct ImagePreprocess {
    /// `PIXELS` (decoded images) instead of `IMAGE` (files).
    decoded_input: bool,
    preprocessor: ImagePreprocessor,
    size: i64,
    half_precision: bool,
    max_image_bytes: usize,
    metrics: Metrics,
    buffers: Arc<BufferPool<f32>>,
}

impl ImagePreprocess {
    pub fn new(spec: ImageSpec, metrics: Metrics) -> Result<Self, String> {
        let options = ImageOptions {
            size: spec.size,
            mean: spec.mean,
            std: spec.std,
            max_pixels: spec.max_pixels,
            reduced_scale_decode: spec.reduced_scale_decode,
            center_crop: spec.center_crop,
        };
        let preprocessor = ImagePreprocessor::new(options).map_err(|e| e.to_string())?;
        Ok(ImagePreprocess {
            decoded_input: spec.decoded_input,
            preprocessor,
            size: i64::from(spec.size),
            half_precision: spec.half_precision,
            max_image_bytes: spec.max_image_bytes,
            metrics,
            buffers: Arc::default(),
        })
    }

    /// Every image into its slice of `pixels`, in parallel; one outcome per
    /// image, each counted (a decoded image is counted as preprocessed, not
    /// as decoded).
    fn preprocess(&self, images: &[Image<'_>], pixels: &mut [f32]) -> Vec<Result<(), ImageError>> {
        let per_image = self.preprocessor.pixels_per_image();
        let timed: Vec<_> = images
            .par_iter()
            .zip(pixels.par_chunks_mut(per_image))
            .map(|(image, out)| {
                let start = Instant::now();
                let outcome = match *image {
                    Image::File(bytes) => self
                        .preprocessor
                        .preprocess_reporting(bytes, out)
                        .map(|decode| self.metrics.image_decoded(decode, bytes.len())),
                    Image::Rgb {
                        width,
                        height,
                        pixels,
                    } => self.preprocessor.preprocess_rgb(width, height, pixels, out),
                };
                (outcome, start.elapsed())
            })
            .collect();
        timed
            .into_iter()
            .map(|(outcome, took)| {
                self.metrics.image_preprocessed(took);
                outcome.inspect_err(|error| self.metrics.rejected(Reason::of_image(error)))
            })
            .collect()
    }

    fn input_name(&self) -> &'static str {
        if self.decoded_input {
            tensor::PIXELS
        } else {
            tensor::IMAGE
        }
    }

    /// A request's images: its files, or its decoded `[n, H, W, 3]` pixels.
    fn request_images<'d>(
        &self,
        input: &'d Result<Request<'_>, RequestError>,
    ) -> Result<Vec<Image<'d>>, RequestError> {
        if !self.decoded_input {
            let limit = (self.max_image_bytes, param::MAX_IMAGE_BYTES);
            let files = request_elements(tensor::IMAGE, input, limit, &self.metrics)?;
            return Ok(files.into_iter().map(Image::File).collect());
        }
        decoded_images(input).inspect_err(|e| self.metrics.rejected(Reason::of_request(e)))
    }
}

/// One image of a batch, as its request sent it.
#[derive(Clone, Copy)]
enum Image<'d> {
    File(&'d [u8]),
    Rgb {
        width: u32,
        height: u32,
        pixels: &'d [u8],
    },
}

/// The `n` images of a `PIXELS` request, `[n, H, W, 3]` UINT8.
fn decoded_images<'d>(
    request: &'d Result<Request<'_>, RequestError>,
) -> Result<Vec<Image<'d>>, RequestError> {
    let input = request.as_ref().map_err(Clone::clone)?.first()?;
    let refuse = |why: String| {
        Err(RequestError::invalid(format!(
            "{} must be UINT8 [n, H, W, 3]: {why}",
            tensor::PIXELS
        )))
    };
    if input.datatype != clip_contract::DataType::Uint8 {
        return refuse(format!("it is {}", input.datatype));
    }
    let [n, h, w, 3] = input.shape[..] else {
        return refuse(format!("its shape is {:?}", input.shape));
    };
    let (Ok(width), Ok(height)) = (u32::try_from(w), u32::try_from(h)) else {
        return refuse(format!("its shape is {:?}", input.shape));
    };
    let per_image = usize::try_from(w * h * 3).unwrap_or(0);
    let count = usize::try_from(n).unwrap_or(0);
    if per_image.checked_mul(count) != Some(input.data.len()) {
        return refuse(format!(
            "{} bytes for shape {:?}",
            input.data.len(),
            input.shape
        ));
    }
    if per_image == 0 {
        return Ok((0..count)
            .map(|_| Image::Rgb {
                width,
                height,
                pixels: &[],
            })
            .collect());
    }
    Ok(input
        .data
        .chunks_exact(per_image)
        .map(|pixels| Image::Rgb {
            width,
            height,
            pixels,
        })
        .collect())
}

impl Kind for ImagePreprocess {
    fn input_names(&self) -> Vec<&str> {
        vec![self.input_name()]
    }

    fn runner(self: Arc<Self>, _instance: &Instance) -> Result<Box<dyn Runner>, String> {
        Ok(Box::new(Shared(self)))
    }
}

impl Preprocess for ImagePreprocess {
    /// Decodes the images of all requests together, so one large request and
    /// many small ones spread over the cores alike. Image `i` of the batch is
    /// row `i` of the buffer and outcome `i`; each request reads both
    /// through the one range the cursor gave it.
    fn execute(&self, batch: &[Result<Request<'_>, RequestError>]) -> BatchOutput {
        let mut rows = Rows::default();
        let mut images: Vec<Image<'_>> = Vec::new();
        let ranges: Vec<Result<_, RequestError>> = batch
            .iter()
            .map(|input| {
                let elements = self.request_images(input)?;
                images.extend_from_slice(&elements);
                Ok(rows.take(elements.len()))
            })
            .collect();
        let mut pixels = self
            .buffers
            .take(rows.total() * self.preprocessor.pixels_per_image());
        let outcomes = self.preprocess(&images, &mut pixels);

        let requests = ranges
            .into_iter()
            .map(|range| {
                let range = range?;
                let failure = outcomes[range.clone()]
                    .iter()
                    .enumerate()
                    .find_map(|(index, outcome)| outcome.as_ref().err().map(|e| (index, e)));
                match failure {
                    Some((index, error)) => Err(RequestError::invalid(format!(
                        "{} element {index}: {error}",
                        self.input_name()
                    ))),
                    None => Ok(range),
                }
            })
            .collect();
        let row_dims = vec![3, self.size, self.size];
        let tensor = if self.half_precision {
            let half: Vec<half::f16> = pixels.iter().map(|v| half::f16::from_f32(*v)).collect();
            self.buffers.give_back(pixels);
            HostTensor::from_vec(row_dims, half)
        } else {
            self.buffers.tensor(row_dims, pixels)
        };
        BatchOutput::single(tensor::PIXEL_VALUES, tensor, requests)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use clip_contract::defaults;
    use clip_test_support::fixture;

    use super::*;
    use crate::batch::{bytes_request, Input};
    use crate::config::KindSpec;
    use crate::kind::Device;
    use crate::metrics::tests::{expect, tally, Tally};

    pub(crate) fn image_spec(half_precision: bool) -> ImageSpec {
        ImageSpec {
            decoded_input: false,
            size: defaults::IMAGE_SIZE,
            mean: defaults::IMAGE_MEAN,
            std: defaults::IMAGE_STD,
            max_pixels: defaults::MAX_PIXELS,
            max_image_bytes: defaults::MAX_IMAGE_BYTES,
            reduced_scale_decode: true,
            center_crop: clip_image::CenterCrop::Transformers,
            half_precision,
        }
    }

    /// The kind and what it counts.
    fn counted(spec: ImageSpec) -> (ImagePreprocess, Arc<Tally>) {
        let (metrics, tally) = tally(&KindSpec::ImagePreprocess(image_spec(false)));
        (ImagePreprocess::new(spec, metrics).unwrap(), tally)
    }

    fn uncounted(spec: ImageSpec) -> ImagePreprocess {
        counted(spec).0
    }

    /// An element over max_image_bytes fails its request before any of its
    /// images is decoded; the requests around it get their own pixels.
    #[test]
    fn an_oversized_image_fails_its_request_alone() {
        let (small, large) = (image("tall.jpg"), image("rocket.jpg"));
        let limit = small.len() + 1;
        let kind = uncounted(ImageSpec {
            max_image_bytes: limit,
            ..image_spec(false)
        });
        let results = kind.execute(&[
            bytes_request(&[&small]),
            bytes_request(&[&small, &large]),
            bytes_request(&[&large, b"not an image"]),
            bytes_request(&[&small, &small]),
        ]);
        let alone = uncounted(image_spec(false))
            .execute(&[bytes_request(&[&small])])
            .values::<f32>(0)
            .unwrap();
        assert_eq!(results.values::<f32>(0).unwrap(), alone);
        let over = results.response(1).unwrap_err();
        assert_eq!(
            over.message,
            format!(
                "IMAGE element 1 is {} bytes, over this model's limit of {limit} (parameter 'max_image_bytes')",
                large.len()
            )
        );
        assert!(results
            .response(2)
            .unwrap_err()
            .message
            .starts_with("IMAGE element 0 is"));
        assert_eq!(
            results.values::<f32>(3).unwrap(),
            [alone.clone(), alone].concat()
        );
    }

    fn image(name: &str) -> Vec<u8> {
        std::fs::read(fixture("images/inputs").join(name)).unwrap()
    }

    fn runner() -> Box<dyn Runner> {
        let kind = Arc::new(uncounted(image_spec(false)));
        assert_eq!(kind.input_name(), tensor::IMAGE);
        // Preprocessing ignores KIND_GPU and shares one copy between instances.
        let gpu = Instance {
            name: "gpu_0".into(),
            device: Device::Gpu(0),
        };
        let runner = kind.runner(&gpu).unwrap();
        assert_eq!(runner.device(), Device::Cpu);
        runner
    }

    fn alone(runner: &mut Box<dyn Runner>, bytes: &[u8]) -> Vec<f32> {
        runner
            .execute(&[bytes_request(&[bytes])])
            .values::<f32>(0)
            .unwrap()
    }

    #[test]
    fn image_batch_fails_per_request_and_keeps_order() {
        let mut kind = runner();
        let (jpeg, png) = (image("rocket.jpg"), image("astronaut.png"));
        let batch = vec![
            bytes_request(&[&png, &jpeg]),
            bytes_request(&[&jpeg, b"not an image"]),
            bytes_request(&[&jpeg]),
        ];
        let results = kind.execute(&batch);

        assert_eq!(results.shape(0), vec![2, 3, 224, 224]);
        assert_eq!(
            results.values::<f32>(0).unwrap(),
            [alone(&mut kind, &png), alone(&mut kind, &jpeg)].concat()
        );
        let bad = results.response(1).unwrap_err();
        assert!(
            bad.message
                .starts_with("IMAGE element 1: unknown image format"),
            "{bad}"
        );
        assert_eq!(results.values::<f32>(2).unwrap(), alone(&mut kind, &jpeg));
    }

    /// The case behind the old two-cursor defect: a failure before the end of
    /// a request must not shift the outcomes of the requests after it.
    #[test]
    fn bad_elements_anywhere_never_leak_into_other_requests() {
        let mut kind = runner();
        let (jpeg, png) = (image("rocket.jpg"), image("astronaut.png"));
        let (jpeg_pixels, png_pixels) = (alone(&mut kind, &jpeg), alone(&mut kind, &png));
        let bad: &[u8] = b"corrupt";
        let batch = vec![
            bytes_request(&[bad, &jpeg]),
            bytes_request(&[bad]),
            bytes_request(&[bad, bad]),
            bytes_request(&[&png]),
            bytes_request(&[&jpeg, bad, &png]),
            bytes_request(&[&png, &jpeg]),
        ];
        let results = kind.execute(&batch);
        for (index, element) in [(0, 0), (1, 0), (2, 0), (4, 1)] {
            let error = results.response(index).unwrap_err();
            assert!(
                error
                    .message
                    .starts_with(&format!("IMAGE element {element}:")),
                "request {index}: {error}"
            );
        }
        assert_eq!(results.values::<f32>(3).unwrap(), png_pixels);
        assert_eq!(
            results.values::<f32>(5).unwrap(),
            [png_pixels, jpeg_pixels].concat()
        );
    }

    #[test]
    fn half_precision_rounds_the_fp32_pixels() {
        let full = uncounted(image_spec(false));
        let half = uncounted(image_spec(true));
        let request = [bytes_request(&[&image("coffee_q90.jpg")])];
        let full = full.execute(&request).values::<f32>(0).unwrap();
        let half = half.execute(&request).values::<half::f16>(0).unwrap();
        let rounded: Vec<half::f16> = full.iter().copied().map(half::f16::from_f32).collect();
        assert_eq!(half, rounded);
    }

    /// A BMP header claiming `width x height` (nothing after it).
    fn bmp_header(width: i32, height: i32) -> Vec<u8> {
        let mut bmp = b"BM".to_vec();
        for field in [66u32, 0, 54, 40] {
            bmp.extend_from_slice(&field.to_le_bytes());
        }
        bmp.extend_from_slice(&width.to_le_bytes());
        bmp.extend_from_slice(&height.to_le_bytes());
        bmp.extend_from_slice(&1u16.to_le_bytes());
        bmp.extend_from_slice(&24u16.to_le_bytes());
        bmp.extend_from_slice(&[0; 36]);
        bmp
    }

    /// Every image that reaches the decoder is timed and counted once, by
    /// format and scale when decoded, by reason when not; a request refused
    /// before decoding counts once, as a whole.
    #[test]
    fn counts_every_decode_and_every_refusal_by_reason() {
        let (png, jpeg, large) = (
            image("astronaut.png"),
            image("rocket.jpg"),
            image("large_2mp.jpg"),
        );
        let mut corrupt = png.clone();
        corrupt[20] ^= 0xff; // inside IHDR: its CRC no longer matches
        let truncated = &jpeg[..jpeg.len() / 2];
        let too_large = vec![0u8; png.len() + 1];
        let (kind, tally) = counted(ImageSpec {
            max_image_bytes: png.len(),
            ..image_spec(false)
        });
        let results = kind.execute(&[
            bytes_request(&[&png, &large, &jpeg]),
            bytes_request(&[&jpeg, b"not an image", b""]),
            bytes_request(&[&corrupt, truncated]),
            bytes_request(&[&bmp_header(60_000, 60_000), &bmp_header(0, 10)]),
            bytes_request(&[&png, &too_large, b"never looked at"]),
            Err(RequestError::invalid("input 'IMAGE' is missing")),
            Err(RequestError::internal("Triton failed")),
        ]);
        assert!(results.response(0).is_ok());
        assert_eq!(
            tally.counts(),
            expect(&[
                ("clip_images_decoded_total{format=\"png\"}", 1.0),
                ("clip_images_decoded_total{format=\"jpeg\"}", 3.0),
                (
                    "clip_image_decoded_bytes_total{format=\"png\"}",
                    png.len() as f64
                ),
                (
                    "clip_image_decoded_bytes_total{format=\"jpeg\"}",
                    (large.len() + 2 * jpeg.len()) as f64
                ),
                ("clip_image_reduced_scale_decodes_total{scale=\"1/2\"}", 1.0),
                ("clip_image_preprocess_total", 10.0),
                ("clip_rejected_total{reason=\"unsupported_format\"}", 1.0),
                ("clip_rejected_total{reason=\"empty\"}", 1.0),
                ("clip_rejected_total{reason=\"corrupt\"}", 1.0),
                ("clip_rejected_total{reason=\"truncated\"}", 1.0),
                ("clip_rejected_total{reason=\"too_many_pixels\"}", 1.0),
                ("clip_rejected_total{reason=\"unsupported_feature\"}", 1.0),
                ("clip_rejected_total{reason=\"too_large\"}", 1.0),
                ("clip_rejected_total{reason=\"invalid_request\"}", 1.0),
                ("clip_rejected_total{reason=\"internal\"}", 1.0),
            ])
        );
    }

    /// A `[n, H, W, 3]` UINT8 request of `n` copies of one decoded image.
    fn pixels_request(
        width: i64,
        height: i64,
        rgb: &[u8],
        n: usize,
    ) -> Result<Request<'static>, RequestError> {
        Ok(Input {
            datatype: clip_contract::DataType::Uint8,
            shape: vec![n as i64, height, width, 3],
            data: std::borrow::Cow::Owned(rgb.repeat(n)),
        }
        .into())
    }

    /// Decoded images of two sizes in one batch, with a malformed request
    /// and one over max_pixels among them: each request gets its own rows,
    /// equal to its image preprocessed alone; the bad ones fail alone.
    #[test]
    fn decoded_images_of_any_size_share_a_batch_and_fail_alone() {
        let kind = uncounted(ImageSpec {
            decoded_input: true,
            max_pixels: 300 * 300,
            ..image_spec(false)
        });
        assert_eq!(kind.input_name(), tensor::PIXELS);
        let small: Vec<u8> = (0..240 * 160 * 3).map(|i| (i * 7 % 251) as u8).collect();
        let square: Vec<u8> = (0..256 * 256 * 3).map(|i| (i * 13 % 241) as u8).collect();
        let large = vec![128u8; 400 * 400 * 3];
        let one = |w: u32, h: u32, rgb: &[u8]| {
            let mut out = vec![0f32; kind.preprocessor.pixels_per_image()];
            kind.preprocessor
                .preprocess_rgb(w, h, rgb, &mut out)
                .unwrap();
            out
        };
        let wrong_type = Ok(Input {
            datatype: clip_contract::DataType::Fp32,
            shape: vec![1, 2, 2, 3],
            data: std::borrow::Cow::Owned(vec![0; 48]),
        }
        .into());
        let results = kind.execute(&[
            pixels_request(240, 160, &small, 2),
            wrong_type,
            pixels_request(256, 256, &square, 1),
            pixels_request(400, 400, &large, 1),
            pixels_request(240, 160, &small, 1),
            pixels_request(4, 4, &[0; 47], 1),
        ]);
        let (small_alone, square_alone) = (one(240, 160, &small), one(256, 256, &square));
        assert_eq!(
            results.values::<f32>(0).unwrap(),
            [small_alone.clone(), small_alone.clone()].concat()
        );
        assert!(results
            .response(1)
            .unwrap_err()
            .message
            .contains("PIXELS must be UINT8 [n, H, W, 3]: it is TYPE_FP32"));
        assert_eq!(results.values::<f32>(2).unwrap(), square_alone);
        let too_large = results.response(3).unwrap_err().message;
        assert!(
            too_large.starts_with("PIXELS element 0: image too large: 400x400"),
            "{too_large}"
        );
        assert_eq!(results.values::<f32>(4).unwrap(), small_alone);
        assert!(results
            .response(5)
            .unwrap_err()
            .message
            .contains("47 bytes for shape [1, 4, 4, 3]"));
    }
}
