//! The `image_preprocess` kind: encoded image files (`IMAGE`, BYTES) to
//! normalised pixels (`PIXEL_VALUES`, FP32 or FP16 `[3, S, S]`).

use std::sync::Arc;
use std::time::Instant;

use clip_contract::{param, tensor};
use clip_image::{ImageError, ImageOptions, ImagePreprocessor};
use rayon::prelude::*;

use super::shared::{request_elements, Preprocess, Shared};
use crate::batch::{BatchOutput, HostTensor, Input, RequestError, Rows};
use crate::config::ImageSpec;
use crate::kind::{Instance, Kind, Runner};
use crate::metrics::{Metrics, Reason};

pub struct ImagePreprocess {
    preprocessor: ImagePreprocessor,
    size: i64,
    half_precision: bool,
    max_image_bytes: usize,
    metrics: Metrics,
}

impl ImagePreprocess {
    pub fn new(spec: ImageSpec, metrics: Metrics) -> Result<Self, String> {
        let options = ImageOptions {
            size: spec.size,
            mean: spec.mean,
            std: spec.std,
            max_pixels: spec.max_pixels,
            reduced_scale_decode: spec.reduced_scale_decode,
        };
        let preprocessor = ImagePreprocessor::new(options).map_err(|e| e.to_string())?;
        Ok(ImagePreprocess {
            preprocessor,
            size: i64::from(spec.size),
            half_precision: spec.half_precision,
            max_image_bytes: spec.max_image_bytes,
            metrics,
        })
    }

    /// Every image into its slice of `pixels`, in parallel; one outcome per
    /// image, each counted.
    fn preprocess(&self, images: &[&[u8]], pixels: &mut [f32]) -> Vec<Result<(), ImageError>> {
        let per_image = self.preprocessor.pixels_per_image();
        let timed: Vec<_> = images
            .par_iter()
            .zip(pixels.par_chunks_mut(per_image))
            .map(|(image, out)| {
                let start = Instant::now();
                let outcome = self.preprocessor.preprocess_reporting(image, out);
                (outcome, start.elapsed())
            })
            .collect();
        timed
            .into_iter()
            .zip(images)
            .map(|((outcome, took), image)| {
                self.metrics.image_preprocessed(took);
                outcome
                    .map(|decode| self.metrics.image_decoded(decode, image.len()))
                    .inspect_err(|error| self.metrics.rejected(Reason::of_image(error)))
            })
            .collect()
    }
}

impl Kind for ImagePreprocess {
    fn input_name(&self) -> &str {
        tensor::IMAGE
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
    fn execute(&self, batch: &[Result<Input<'_>, RequestError>]) -> BatchOutput {
        let mut rows = Rows::default();
        let mut images: Vec<&[u8]> = Vec::new();
        let limit = (self.max_image_bytes, param::MAX_IMAGE_BYTES);
        let ranges: Vec<Result<_, RequestError>> = batch
            .iter()
            .map(|input| {
                let elements = request_elements(tensor::IMAGE, input, limit, &self.metrics)?;
                images.extend_from_slice(&elements);
                Ok(rows.take(elements.len()))
            })
            .collect();
        let mut pixels = vec![0f32; rows.total() * self.preprocessor.pixels_per_image()];
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
                        tensor::IMAGE
                    ))),
                    None => Ok(range),
                }
            })
            .collect();
        let row_dims = vec![3, self.size, self.size];
        let tensor = if self.half_precision {
            let half: Vec<half::f16> = pixels.iter().map(|v| half::f16::from_f32(*v)).collect();
            HostTensor::from_vec(row_dims, half)
        } else {
            HostTensor::from_vec(row_dims, pixels)
        };
        BatchOutput {
            name: tensor::PIXEL_VALUES.into(),
            tensor,
            requests,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use clip_contract::defaults;
    use clip_test_support::fixture;

    use super::*;
    use crate::batch::bytes_request;
    use crate::config::KindSpec;
    use crate::kind::Device;
    use crate::metrics::tests::{expect, tally, Tally};

    pub(crate) fn image_spec(half_precision: bool) -> ImageSpec {
        ImageSpec {
            size: defaults::IMAGE_SIZE,
            mean: defaults::IMAGE_MEAN,
            std: defaults::IMAGE_STD,
            max_pixels: defaults::MAX_PIXELS,
            max_image_bytes: defaults::MAX_IMAGE_BYTES,
            reduced_scale_decode: true,
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
}
