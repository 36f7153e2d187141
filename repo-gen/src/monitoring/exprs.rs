//! Expressions shared by the alerting rules and the dashboard, so an alert
//! and the panel that explains it compute the same thing.

use clip_contract::metric;

use super::promql::{ratio, summed_rate, triton, Matcher};
use super::Pipeline;

/// Where an expression looks: the scrape job, and on the dashboard the
/// instances chosen in its `instance` variable.
#[derive(Clone, Debug)]
pub struct Scope {
    pub matchers: Vec<Matcher>,
    pub window: String,
}

impl Scope {
    /// The scope's matchers plus `model=~"models"`.
    pub fn models(&self, models: &str) -> Vec<Matcher> {
        let mut all = self.matchers.clone();
        all.push(Matcher::Regex(metric::label::MODEL, models.to_owned()));
        all
    }

    /// `sum by (by) (rate(name{scope, model=~models}[window]))`.
    pub fn rate(&self, name: &str, models: &str, by: &[&str]) -> String {
        summed_rate(name, &self.models(models), &self.window, by)
    }

    /// `sum by (by) (rate(name{scope}[window]))`.
    pub fn rate_all(&self, name: &str, by: &[&str]) -> String {
        summed_rate(name, &self.matchers, &self.window, by)
    }
}

/// Failed requests per second of each ensemble, labelled `model` with the
/// ensemble's name, counted at its steps. Triton 2.51 counts a request that
/// fails in a step more than once in the ensemble's own failure counter (the
/// step's failure and its own: 2 per failed request, measured), while every
/// failed request fails at exactly one step, so the steps' failures count
/// each once. Requests refused for bad inputs are failures too.
pub fn ensemble_failures(scope: &Scope, pipelines: &[Pipeline]) -> String {
    pipelines
        .iter()
        .map(|p| {
            format!(
                "label_replace({}, \"{}\", \"{}\", \"\", \"\")",
                scope.rate(triton::REQUEST_FAILURE, &p.steps, &[]),
                metric::label::MODEL,
                p.ensemble
            )
        })
        .collect::<Vec<_>>()
        .join(" or ")
}

/// Failed over all requests of each ensemble ([`ensemble_failures`]).
pub fn failure_ratio(scope: &Scope, pipelines: &[Pipeline]) -> String {
    let failures = ensemble_failures(scope, pipelines);
    let ensembles: Vec<String> = pipelines.iter().map(|p| p.ensemble.clone()).collect();
    let successes = scope.rate(
        triton::REQUEST_SUCCESS,
        &super::promql::any_of(&ensembles),
        &[metric::label::MODEL],
    );
    ratio(
        &format!("({failures})"),
        &format!("{successes} + ({failures})"),
    )
}

/// Mean microseconds per successful request of the cumulative duration
/// counter `duration` (Triton adds each successful request's time to it).
pub fn mean_per_request(scope: &Scope, duration: &str, models: &str, by: &[&str]) -> String {
    ratio(
        &scope.rate(duration, models, by),
        &scope.rate(triton::REQUEST_SUCCESS, models, by),
    )
}

/// Compute time (input + infer + output) per successful request, in microseconds.
pub fn mean_compute_per_request(scope: &Scope, models: &str, by: &[&str]) -> String {
    let parts = [
        triton::COMPUTE_INPUT_DURATION_US,
        triton::COMPUTE_INFER_DURATION_US,
        triton::COMPUTE_OUTPUT_DURATION_US,
    ]
    .map(|name| scope.rate(name, models, by));
    ratio(
        &parts.join(" + "),
        &scope.rate(triton::REQUEST_SUCCESS, models, by),
    )
}

/// Inputs the backend refused over inputs it looked at, per `model` (and
/// the rest of `by`): refusals over refusals plus the inputs each kind of
/// model accepted (images decoded, texts tokenized, rows encoded). The
/// three accepted counters carry different `model` values, so `or` joins them.
pub fn rejection_ratio(scope: &Scope, by: &[&str]) -> String {
    let rejected = scope.rate_all(metric::REJECTED, by);
    let accepted = [
        metric::IMAGES_DECODED,
        metric::TEXTS_TOKENIZED,
        metric::ENCODER_ROWS,
    ]
    .map(|name| scope.rate_all(name, by))
    .join(" or ");
    ratio(&rejected, &format!("{rejected} + ({accepted})"))
}
