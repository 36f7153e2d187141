//! Every response checked against what it must be: each row against its
//! element's embedding, each refusal against the element it must name and
//! that element's reason. What a client saw goes into a [`Tally`]; the
//! Python clients write the same shape as JSON.

use std::collections::BTreeMap;

use clip_client::proto::ModelInferResponse;
use clip_client::{Error, Modality};
use serde::{Deserialize, Serialize};

use crate::clients::Ctx;
use crate::inputs::{Element, Inputs, Plan};

/// Wrong results of one kind: how many, when the first came (seconds into
/// the load) and what it looked like.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct WrongGroup {
    pub count: u64,
    pub first_t: f64,
    pub example: String,
}

/// What one client (or a group of clients) sent and saw.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Tally {
    /// Requests (for the library clients: `encode` calls).
    pub requests: u64,
    pub elements: u64,
    pub good_elements: u64,
    pub bad_elements: u64,
    /// Requests (library: items) answered exactly as expected.
    pub succeeded: u64,
    pub refused_as_expected: u64,
    /// Bad elements sent, by kind.
    pub bad_sent: BTreeMap<String, u64>,
    /// Refusals as expected, by the kind of the element they named.
    pub refused_naming: BTreeMap<String, u64>,
    pub wrong: u64,
    pub wrong_groups: BTreeMap<String, WrongGroup>,
    /// Largest deviation of a row from its expected embedding (max |a - b|
    /// over the expected embedding's L2 norm), among rows within tolerance.
    pub max_deviation: f64,
    /// (seconds into the load at the request's start, milliseconds, 0 text / 1 image).
    pub latencies: Vec<(f64, f64, u8)>,
}

impl Tally {
    pub fn merge(&mut self, other: Tally) {
        self.requests += other.requests;
        self.elements += other.elements;
        self.good_elements += other.good_elements;
        self.bad_elements += other.bad_elements;
        self.succeeded += other.succeeded;
        self.refused_as_expected += other.refused_as_expected;
        for (k, v) in other.bad_sent {
            *self.bad_sent.entry(k).or_default() += v;
        }
        for (k, v) in other.refused_naming {
            *self.refused_naming.entry(k).or_default() += v;
        }
        self.wrong += other.wrong;
        for (k, g) in other.wrong_groups {
            let mine = self.wrong_groups.entry(k).or_insert_with(|| WrongGroup {
                first_t: g.first_t,
                example: g.example.clone(),
                ..WrongGroup::default()
            });
            if g.first_t < mine.first_t {
                mine.first_t = g.first_t;
                mine.example = g.example;
            }
            mine.count += g.count;
        }
        self.max_deviation = self.max_deviation.max(other.max_deviation);
        self.latencies.extend(other.latencies);
    }

    pub fn wrong(&mut self, t: f64, category: String, example: String) {
        self.wrong += 1;
        let group = self
            .wrong_groups
            .entry(category)
            .or_insert_with(|| WrongGroup {
                count: 0,
                first_t: t,
                example,
            });
        group.count += 1;
    }

    /// Counts what a request of `elements` carries.
    pub fn sent(&mut self, inputs: &Inputs, elements: &[Element]) {
        self.elements += elements.len() as u64;
        for element in elements {
            match element {
                Element::Good(_) => self.good_elements += 1,
                Element::Bad(b) => {
                    self.bad_elements += 1;
                    *self
                        .bad_sent
                        .entry(inputs.bads[*b].kind.name().into())
                        .or_default() += 1;
                }
            }
        }
    }

    pub fn latency(&mut self, t: f64, ms: f64, modality: Modality) {
        let code = match modality {
            Modality::Text => 0,
            Modality::Image => 1,
        };
        self.latencies.push((t, ms, code));
    }
}

/// max |a - b| / |b|: 0 for the same vector, about 1 and more for another input's.
pub fn deviation(actual: &[f32], expected: &[f32]) -> f64 {
    let norm = expected
        .iter()
        .map(|x| f64::from(*x).powi(2))
        .sum::<f64>()
        .sqrt()
        .max(1e-12);
    let max = actual
        .iter()
        .zip(expected)
        .map(|(a, b)| (f64::from(*a) - f64::from(*b)).abs())
        .fold(0.0, f64::max);
    if actual.len() != expected.len() {
        return f64::INFINITY;
    }
    max / norm
}

/// The element index a message names ("... IMAGE element 2: ..."), and what
/// follows it, with digits folded to `#` so messages group.
pub fn named(message: &str, tensor: &str) -> (Option<usize>, String) {
    let marker = format!("{tensor} element ");
    let Some(at) = message.rfind(&marker) else {
        return (None, fold(message));
    };
    let rest = &message[at + marker.len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let tail = rest[digits.len()..].trim_start_matches(':').trim_start();
    (digits.parse().ok(), fold(tail))
}

/// Digit runs become `#`, the bytes an unknown format's message quotes
/// become `...`; at most 100 characters.
fn fold(text: &str) -> String {
    const QUOTED: &str = "(first bytes: ";
    let text = match text.find(QUOTED) {
        Some(at) => match text[at..].find(')') {
            Some(end) => format!("{}{QUOTED}...{}", &text[..at], &text[at + end..]),
            None => text.to_owned(),
        },
        None => text.to_owned(),
    };
    let mut out = String::new();
    let mut in_digits = false;
    for c in text.chars() {
        if c.is_ascii_digit() {
            if !in_digits {
                out.push('#');
            }
            in_digits = true;
        } else {
            out.push(c);
            in_digits = false;
        }
    }
    out.chars().take(100).collect()
}

/// What a good element's row that is not its own embedding is: the closest
/// other good input of the same modality, when within tolerance (a swap).
fn mismatch(inputs: &Inputs, good: usize, row: &[f32], tolerance: f64) -> (String, String) {
    let own = deviation(row, &inputs.goods[good].expected);
    let closest = inputs
        .goods
        .iter()
        .enumerate()
        .filter(|(g, other)| *g != good && other.modality == inputs.goods[good].modality)
        .map(|(g, other)| (g, deviation(row, &other.expected)))
        .min_by(|a, b| a.1.total_cmp(&b.1));
    let label = &inputs.goods[good].label;
    match closest {
        Some((g, d)) if d <= tolerance => (
            "swapped: a row holds another input's embedding".into(),
            format!(
                "{label}: its row is the embedding of {} (deviation {d:.2e}; from its own {own:.2e})",
                inputs.goods[g].label
            ),
        ),
        _ => (
            format!("wrong embedding for a good {}", inputs.goods[good].class),
            format!("{label}: deviation {own:.2e}, over the tolerance {tolerance:.0e}"),
        ),
    }
}

/// Checks the rows of a good element against its embedding.
pub fn check_row(
    inputs: &Inputs,
    tally: &mut Tally,
    t: f64,
    good: usize,
    row: &[f32],
    tolerance: f64,
) -> bool {
    let d = deviation(row, &inputs.goods[good].expected);
    if d <= tolerance {
        tally.max_deviation = tally.max_deviation.max(d);
        true
    } else {
        let (category, example) = mismatch(inputs, good, row, tolerance);
        tally.wrong(t, category, example);
        false
    }
}

/// Why a refusal that was not expected (or not this one) happened, for
/// grouping: which element it named and what it said.
fn refusal_category(
    inputs: &Inputs,
    elements: &[Element],
    tensor: &str,
    message: &str,
    expected: Option<(usize, &str)>,
) -> String {
    let (index, tail) = named(message, tensor);
    let what = match index.and_then(|i| elements.get(i)) {
        Some(Element::Good(g)) => format!("a good {} refused", inputs.goods[*g].class),
        Some(Element::Bad(b)) => match expected {
            Some((pos, kind)) if index == Some(pos) => {
                format!("{kind} refused with another reason")
            }
            Some((_, kind)) => format!(
                "the refusal named a {} element, not the {kind} one",
                inputs.bads[*b].kind.name()
            ),
            None => "refused".into(),
        },
        None => "a refusal naming no element of the request".into(),
    };
    format!("{what}: {tail}")
}

/// Checks one raw request's outcome (Rust clients over gRPC).
pub fn check_request(
    ctx: &Ctx,
    plan: &Plan,
    request_id: &str,
    outcome: Result<ModelInferResponse, Error>,
    t: f64,
    tally: &mut Tally,
) {
    let (inputs, tolerance) = (&ctx.inputs, ctx.tolerance);
    let model = ctx.model(plan.modality);
    let (tensor, output) = (model.input.as_str(), model.output.as_str());
    let elements = &plan.elements;
    let expected = inputs.expected_refusal(elements);
    match (expected, outcome) {
        (Some((pos, bad)), Err(error)) => {
            let kind = bad.kind.name();
            match &error {
                Error::Status {
                    code: tonic::Code::InvalidArgument,
                    message,
                    ..
                } => {
                    if message.contains(&format!("{tensor} element {pos}{}", bad.fragment)) {
                        tally.refused_as_expected += 1;
                        *tally.refused_naming.entry(kind.into()).or_default() += 1;
                    } else {
                        let category =
                            refusal_category(inputs, elements, tensor, message, Some((pos, kind)));
                        tally.wrong(
                            t,
                            category,
                            format!(
                                "{request_id}: expected element {pos} ({kind}), got: {message}"
                            ),
                        );
                    }
                }
                other => unexpected(tally, t, request_id, other),
            }
        }
        (Some((pos, bad)), Ok(_)) => tally.wrong(
            t,
            format!("a bad element accepted: {}", bad.kind.name()),
            format!(
                "{request_id}: element {pos} ({}) got an embedding",
                bad.kind.name()
            ),
        ),
        (None, Err(error)) => match &error {
            Error::Status {
                code: tonic::Code::InvalidArgument,
                message,
                ..
            } => {
                let category = refusal_category(inputs, elements, tensor, message, None);
                tally.wrong(t, category, format!("{request_id}: {message}"));
            }
            other => unexpected(tally, t, request_id, other),
        },
        (None, Ok(response)) => {
            if response.id != request_id {
                tally.wrong(
                    t,
                    "response id is not the request's".into(),
                    format!("sent {request_id}, got {:?}", response.id),
                );
                return;
            }
            let values = match clip_client::output_as_f32(&response, output) {
                Ok(values) => values,
                Err(e) => {
                    tally.wrong(
                        t,
                        "unreadable response".into(),
                        format!("{request_id}: {e}"),
                    );
                    return;
                }
            };
            // Every element is good here, and every good one of a modality has the same size.
            let dim = match elements.first() {
                Some(Element::Good(g)) => inputs.goods[*g].expected.len().max(1),
                _ => 1,
            };
            if values.len() != elements.len() * dim {
                tally.wrong(
                    t,
                    "wrong number of rows".into(),
                    format!(
                        "{request_id}: {} values for {} elements of {dim}",
                        values.len(),
                        elements.len()
                    ),
                );
                return;
            }
            let mut all = true;
            for (row, element) in values.chunks_exact(dim).zip(elements) {
                if let Element::Good(g) = element {
                    all &= check_row(inputs, tally, t, *g, row, tolerance);
                }
            }
            if all {
                tally.succeeded += 1;
            }
        }
    }
}

/// A failure that is no refusal: the server gone, a timeout, another status.
pub fn unexpected(tally: &mut Tally, t: f64, request_id: &str, error: &Error) {
    let category = match error {
        Error::Status { code, message, .. } => format!("{code:?}: {}", fold(message)),
        Error::Timeout { .. } => "no response within the deadline".into(),
        other => format!("failed: {}", fold(&other.to_string())),
    };
    tally.wrong(t, category, format!("{request_id}: {error}"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_their_element_and_group_without_numbers() {
        let m = "in ensemble 'clip_image', IMAGE element 2 is 6291999 bytes, over this model's limit of 6291456 (parameter 'max_image_bytes')";
        assert_eq!(
            named(m, "IMAGE"),
            (
                Some(2),
                "is # bytes, over this model's limit of # (parameter 'max_image_bytes')".into()
            )
        );
        let m = "in ensemble 'clip_image', IMAGE element 0: corrupt JPEG data: Bogus marker length";
        assert_eq!(
            named(m, "IMAGE"),
            (Some(0), "corrupt JPEG data: Bogus marker length".into())
        );
        assert_eq!(named("boom", "TEXT"), (None, "boom".into()));
        let m = "IMAGE element 1: unknown image format (first bytes: 5a 66 69 02); accepted formats: JPEG";
        assert_eq!(
            named(m, "IMAGE").1,
            "unknown image format (first bytes: ...); accepted formats: JPEG"
        );
    }

    #[test]
    fn deviation_is_relative_to_the_expected_norm() {
        assert_eq!(deviation(&[3.0, 4.0], &[3.0, 4.0]), 0.0);
        assert!((deviation(&[3.0, 4.5], &[3.0, 4.0]) - 0.1).abs() < 1e-9);
        assert_eq!(deviation(&[1.0], &[1.0, 2.0]), f64::INFINITY);
    }
}
