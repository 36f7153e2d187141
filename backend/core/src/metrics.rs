//! What the kinds count about their work, and the one narrow trait it is
//! recorded through. A kind reports what happened to its [`Metrics`], which
//! turns each report into counter increments for a [`Recorder`]: Triton's
//! custom metrics in the backend, memory in tests. Every counter belongs to
//! one model; names and label values are clip-contract's.

use std::sync::Arc;
use std::time::Duration;

use clip_contract::metric::{self, format, label, reason, scale};
use clip_image::{Decode, Format, ImageError};

use crate::batch::{ErrorKind, RequestError};
use crate::config::KindSpec;

/// A family of counters: one metric name, split by at most one label
/// besides `model`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    ImagesDecoded,
    ImageDecodedBytes,
    ImageReducedScaleDecodes,
    ImagePreprocessSeconds,
    ImagePreprocess,
    TextsTokenized,
    TextsTruncated,
    Rejected,
    EncoderSessionSeconds,
    EncoderSessionRuns,
    EncoderRows,
}

impl Family {
    pub const ALL: [Family; 11] = [
        Family::ImagesDecoded,
        Family::ImageDecodedBytes,
        Family::ImageReducedScaleDecodes,
        Family::ImagePreprocessSeconds,
        Family::ImagePreprocess,
        Family::TextsTokenized,
        Family::TextsTruncated,
        Family::Rejected,
        Family::EncoderSessionSeconds,
        Family::EncoderSessionRuns,
        Family::EncoderRows,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Family::ImagesDecoded => metric::IMAGES_DECODED,
            Family::ImageDecodedBytes => metric::IMAGE_DECODED_BYTES,
            Family::ImageReducedScaleDecodes => metric::IMAGE_REDUCED_SCALE_DECODES,
            Family::ImagePreprocessSeconds => metric::IMAGE_PREPROCESS_SECONDS,
            Family::ImagePreprocess => metric::IMAGE_PREPROCESS,
            Family::TextsTokenized => metric::TEXTS_TOKENIZED,
            Family::TextsTruncated => metric::TEXTS_TRUNCATED,
            Family::Rejected => metric::REJECTED,
            Family::EncoderSessionSeconds => metric::ENCODER_SESSION_SECONDS,
            Family::EncoderSessionRuns => metric::ENCODER_SESSION_RUNS,
            Family::EncoderRows => metric::ENCODER_ROWS,
        }
    }

    /// The description on the metrics endpoint.
    pub fn help(self) -> &'static str {
        match self {
            Family::ImagesDecoded => "Images decoded, by format",
            Family::ImageDecodedBytes => "Encoded bytes of the images decoded, by format",
            Family::ImageReducedScaleDecodes => {
                "JPEGs decoded at a reduced DCT scale (reduced_scale_decode), by scale"
            }
            Family::ImagePreprocessSeconds => {
                "Seconds spent decoding, resizing and normalizing images, failed ones included"
            }
            Family::ImagePreprocess => {
                "Images that went through decode, resize and normalize, failed ones included"
            }
            Family::TextsTokenized => "Texts tokenized",
            Family::TextsTruncated => "Texts longer than the context, truncated to fit",
            Family::Rejected => {
                "Inputs refused, by reason: one per element, or one per request refused before its elements were read"
            }
            Family::EncoderSessionSeconds => "Seconds spent in ONNX Runtime session runs",
            Family::EncoderSessionRuns => "ONNX Runtime session runs (one per batch)",
            Family::EncoderRows => "Rows (embeddings) the encoder returned",
        }
    }
}

/// One counter of a model: its family and, where the family splits, the
/// label's name and value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Counter {
    pub family: Family,
    pub label: Option<(&'static str, &'static str)>,
}

impl Counter {
    fn plain(family: Family) -> Counter {
        Counter {
            family,
            label: None,
        }
    }
}

/// How a model's counters are recorded. Called from the threads that run
/// batches, so it must be cheap and thread-safe.
pub trait Recorder: Send + Sync {
    /// Adds `value` (never negative) to `counter`.
    fn add(&self, counter: Counter, value: f64);
}

/// Why an input was refused: the `reason` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    InvalidRequest,
    TooLarge,
    Empty,
    UnsupportedFormat,
    UnsupportedFeature,
    Truncated,
    Corrupt,
    TooManyPixels,
    ZeroSize,
    InvalidUtf8,
    TokenizerError,
    TokenIdOutOfRange,
    Internal,
}

const IMAGE_REASONS: [Reason; 10] = [
    Reason::InvalidRequest,
    Reason::TooLarge,
    Reason::Empty,
    Reason::UnsupportedFormat,
    Reason::UnsupportedFeature,
    Reason::Truncated,
    Reason::Corrupt,
    Reason::TooManyPixels,
    Reason::ZeroSize,
    Reason::Internal,
];
const TEXT_REASONS: [Reason; 5] = [
    Reason::InvalidRequest,
    Reason::TooLarge,
    Reason::InvalidUtf8,
    Reason::TokenizerError,
    Reason::Internal,
];
const ENCODER_REASONS: [Reason; 3] = [
    Reason::InvalidRequest,
    Reason::TokenIdOutOfRange,
    Reason::Internal,
];

impl Reason {
    fn label(self) -> &'static str {
        match self {
            Reason::InvalidRequest => reason::INVALID_REQUEST,
            Reason::TooLarge => reason::TOO_LARGE,
            Reason::Empty => reason::EMPTY,
            Reason::UnsupportedFormat => reason::UNSUPPORTED_FORMAT,
            Reason::UnsupportedFeature => reason::UNSUPPORTED_FEATURE,
            Reason::Truncated => reason::TRUNCATED,
            Reason::Corrupt => reason::CORRUPT,
            Reason::TooManyPixels => reason::TOO_MANY_PIXELS,
            Reason::ZeroSize => reason::ZERO_SIZE,
            Reason::InvalidUtf8 => reason::INVALID_UTF8,
            Reason::TokenizerError => reason::TOKENIZER_ERROR,
            Reason::TokenIdOutOfRange => reason::TOKEN_ID_OUT_OF_RANGE,
            Reason::Internal => reason::INTERNAL,
        }
    }

    /// A request refused as a whole, before its elements were read.
    pub fn of_request(error: &RequestError) -> Reason {
        match error.kind {
            ErrorKind::InvalidArg => Reason::InvalidRequest,
            ErrorKind::Internal => Reason::Internal,
        }
    }

    /// An image the preprocessor refused.
    pub fn of_image(error: &ImageError) -> Reason {
        match error {
            ImageError::Empty => Reason::Empty,
            ImageError::UnknownFormat { .. } => Reason::UnsupportedFormat,
            ImageError::Unsupported { .. } => Reason::UnsupportedFeature,
            ImageError::Truncated { .. } => Reason::Truncated,
            ImageError::Corrupt { .. } => Reason::Corrupt,
            ImageError::TooManyPixels { .. } => Reason::TooManyPixels,
            ImageError::ZeroSize { .. } => Reason::ZeroSize,
            ImageError::InvalidOptions(_)
            | ImageError::OutputLength { .. }
            | ImageError::Internal(_) => Reason::Internal,
        }
    }
}

fn format_label(format: Format) -> &'static str {
    match format {
        Format::Jpeg => format::JPEG,
        Format::Png => format::PNG,
        Format::Gif => format::GIF,
        Format::WebP => format::WEBP,
        Format::Bmp => format::BMP,
    }
}

fn scale_label(denominator: u32) -> Option<&'static str> {
    match denominator {
        2 => Some(scale::HALF),
        4 => Some(scale::QUARTER),
        8 => Some(scale::EIGHTH),
        _ => None,
    }
}

/// Every counter a model of this kind reports, so that all of them exist
/// (at 0) from the moment it loads.
pub fn counters(kind: &KindSpec) -> Vec<Counter> {
    let split = |family: Family, name: &'static str, values: &[&'static str]| {
        values
            .iter()
            .map(|&value| Counter {
                family,
                label: Some((name, value)),
            })
            .collect::<Vec<_>>()
    };
    let rejected = |reasons: &[Reason]| {
        let values: Vec<_> = reasons.iter().map(|r| r.label()).collect();
        split(Family::Rejected, label::REASON, &values)
    };
    match kind {
        KindSpec::ImagePreprocess(_) => [
            split(Family::ImagesDecoded, label::FORMAT, &format::ALL),
            split(Family::ImageDecodedBytes, label::FORMAT, &format::ALL),
            split(Family::ImageReducedScaleDecodes, label::SCALE, &scale::ALL),
            vec![
                Counter::plain(Family::ImagePreprocessSeconds),
                Counter::plain(Family::ImagePreprocess),
            ],
            rejected(&IMAGE_REASONS),
        ]
        .concat(),
        KindSpec::TextPreprocess(_) => [
            vec![
                Counter::plain(Family::TextsTokenized),
                Counter::plain(Family::TextsTruncated),
            ],
            rejected(&TEXT_REASONS),
        ]
        .concat(),
        KindSpec::OnnxEncoder(_) => [
            vec![
                Counter::plain(Family::EncoderSessionSeconds),
                Counter::plain(Family::EncoderSessionRuns),
                Counter::plain(Family::EncoderRows),
            ],
            rejected(&ENCODER_REASONS),
        ]
        .concat(),
    }
}

/// What one model reports; its clones share the model's recorder.
#[derive(Clone)]
pub struct Metrics(Arc<dyn Recorder>);

impl Metrics {
    pub fn new(recorder: Arc<dyn Recorder>) -> Metrics {
        Metrics(recorder)
    }

    fn add(&self, family: Family, label: Option<(&'static str, &'static str)>, value: f64) {
        self.0.add(Counter { family, label }, value);
    }

    /// An image decoded from `bytes` encoded bytes.
    pub fn image_decoded(&self, decode: Decode, bytes: usize) {
        let format = Some((label::FORMAT, format_label(decode.format)));
        self.add(Family::ImagesDecoded, format, 1.0);
        self.add(Family::ImageDecodedBytes, format, bytes as f64);
        if let Some(scale) = scale_label(decode.scale_denominator) {
            self.add(
                Family::ImageReducedScaleDecodes,
                Some((label::SCALE, scale)),
                1.0,
            );
        }
    }

    /// One image through decode, resize and normalize, whatever the outcome.
    pub fn image_preprocessed(&self, took: Duration) {
        self.add(Family::ImagePreprocessSeconds, None, took.as_secs_f64());
        self.add(Family::ImagePreprocess, None, 1.0);
    }

    pub fn text_tokenized(&self, truncated: bool) {
        self.add(Family::TextsTokenized, None, 1.0);
        if truncated {
            self.add(Family::TextsTruncated, None, 1.0);
        }
    }

    pub fn rejected(&self, reason: Reason) {
        self.add(Family::Rejected, Some((label::REASON, reason.label())), 1.0);
    }

    /// One ONNX Runtime session run, whatever the outcome.
    pub fn encoder_ran(&self, took: Duration) {
        self.add(Family::EncoderSessionSeconds, None, took.as_secs_f64());
        self.add(Family::EncoderSessionRuns, None, 1.0);
    }

    pub fn rows_encoded(&self, rows: usize) {
        self.add(Family::EncoderRows, None, rows as f64);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::{BTreeMap, HashMap};
    use std::sync::Mutex;

    use super::*;

    /// Counters in memory. Adding to a counter the kind does not declare
    /// fails the test: the backend would have nowhere to record it.
    pub(crate) struct Tally {
        declared: Vec<Counter>,
        values: Mutex<HashMap<Counter, f64>>,
    }

    impl Recorder for Tally {
        fn add(&self, counter: Counter, value: f64) {
            assert!(
                self.declared.contains(&counter),
                "{counter:?} is not among the kind's counters"
            );
            assert!(value >= 0.0, "{counter:?} += {value}");
            *self.values.lock().unwrap().entry(counter).or_default() += value;
        }
    }

    impl Tally {
        /// Every counter that moved, as `name` or `name{label="value"}`.
        pub(crate) fn moved(&self) -> BTreeMap<String, f64> {
            self.values
                .lock()
                .unwrap()
                .iter()
                .map(|(counter, value)| {
                    let name = counter.family.name();
                    let key = match counter.label {
                        Some((label, value)) => format!("{name}{{{label}=\"{value}\"}}"),
                        None => name.to_owned(),
                    };
                    (key, *value)
                })
                .collect()
        }

        /// The counts that moved, without the seconds (which vary); those
        /// must be positive wherever their count moved.
        pub(crate) fn counts(&self) -> BTreeMap<String, f64> {
            let mut moved = self.moved();
            for (seconds, count) in [
                (metric::IMAGE_PREPROCESS_SECONDS, metric::IMAGE_PREPROCESS),
                (
                    metric::ENCODER_SESSION_SECONDS,
                    metric::ENCODER_SESSION_RUNS,
                ),
            ] {
                let took = moved.remove(seconds).unwrap_or(0.0);
                assert_eq!(took > 0.0, moved.contains_key(count), "{seconds}: {took}");
            }
            moved
        }
    }

    /// A kind's metrics, recorded in memory.
    pub(crate) fn tally(kind: &KindSpec) -> (Metrics, Arc<Tally>) {
        let tally = Arc::new(Tally {
            declared: counters(kind),
            values: Mutex::default(),
        });
        (Metrics::new(Arc::clone(&tally) as Arc<dyn Recorder>), tally)
    }

    /// Expected counts, written as the metrics endpoint shows them.
    pub(crate) fn expect(counts: &[(&str, f64)]) -> BTreeMap<String, f64> {
        counts.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
    }

    #[test]
    fn every_family_has_its_own_prometheus_counter_name() {
        let mut names: Vec<_> = Family::ALL.iter().map(|f| f.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Family::ALL.len());
        for name in names {
            assert!(
                name.starts_with("clip_") && name.ends_with("_total"),
                "{name}"
            );
        }
    }
}
