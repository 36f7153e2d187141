//! `alerts.yml`: Prometheus alerting rules in its rule-file format.

use std::collections::BTreeMap;

use clip_contract::metric;
use serde::Serialize;

use super::exprs::{self, Scope};
use super::promql::{rate, selector, sum_by, triton, Matcher};
use super::MonitoringOptions;

#[derive(Debug, Serialize)]
pub struct RuleFile {
    pub groups: Vec<RuleGroup>,
}

#[derive(Debug, Serialize)]
pub struct RuleGroup {
    pub name: String,
    pub rules: Vec<AlertingRule>,
}

#[derive(Debug, Serialize)]
pub struct AlertingRule {
    pub alert: String,
    pub expr: String,
    /// How long the expression must hold before the alert fires.
    #[serde(rename = "for")]
    pub for_: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

pub const SERVER_DOWN: &str = "TritonDown";
pub const QUEUE_TIME_HIGH: &str = "TritonQueueTimeHigh";
pub const FAILURE_RATIO_HIGH: &str = "ClipFailureRatioHigh";
pub const REJECTION_RATIO_HIGH: &str = "ClipRejectionRatioHigh";

fn rule(
    options: &MonitoringOptions,
    alert: &str,
    expr: String,
    default_for: &str,
    severity: &str,
    summary: &str,
    description: &str,
) -> AlertingRule {
    AlertingRule {
        alert: alert.to_owned(),
        expr,
        for_: options
            .alert_for
            .clone()
            .unwrap_or_else(|| default_for.to_owned()),
        labels: BTreeMap::from([("severity".to_owned(), severity.to_owned())]),
        annotations: BTreeMap::from([
            ("summary".to_owned(), summary.to_owned()),
            ("description".to_owned(), description.to_owned()),
        ]),
    }
}

pub fn rule_file(options: &MonitoringOptions) -> RuleFile {
    let models = options.models();
    let job = vec![Matcher::Eq("job", options.job.clone())];
    let scope = Scope {
        matchers: job.clone(),
        window: options.rate_window.clone(),
    };
    let window = &options.rate_window;
    let queue_us = options.queue_alert_ms * 1000.0;
    let rules = vec![
        rule(
            options,
            SERVER_DOWN,
            format!("{} == 0", selector(triton::UP, &job)),
            "1m",
            "critical",
            "Triton at {{ $labels.instance }} is down",
            "Prometheus cannot scrape Triton's metrics port at {{ $labels.instance }}: the \
             server is not running or not reachable.",
        ),
        rule(
            options,
            QUEUE_TIME_HIGH,
            format!(
                "{} > {queue_us}",
                exprs::mean_per_request(
                    &scope,
                    triton::QUEUE_DURATION_US,
                    &models.all(),
                    &["instance", "model"]
                )
            ),
            "5m",
            "warning",
            "{{ $labels.model }} on {{ $labels.instance }}: requests wait long in the queue",
            &format!(
                "Mean queue time per request of {{{{ $labels.model }}}} over {window} is \
                 {{{{ $value | humanize }}}} µs (alert above {queue_us} µs): the model's \
                 instances do not keep up; add instances or servers."
            ),
        ),
        rule(
            options,
            FAILURE_RATIO_HIGH,
            format!(
                "{} > {}",
                exprs::failure_ratio(&scope, &models.pipelines()),
                options.failure_ratio
            ),
            "5m",
            "critical",
            "{{ $labels.model }}: many requests fail",
            &format!(
                "{{{{ $value | humanizePercentage }}}} of {{{{ $labels.model }}}} requests \
                 failed over {window} (alert above {}), counted at its steps. Requests \
                 refused for bad inputs count too: see {REJECTION_RATIO_HIGH} and the server log.",
                options.failure_ratio
            ),
        ),
        rule(
            options,
            REJECTION_RATIO_HIGH,
            format!(
                "{} > {}",
                exprs::rejection_ratio(&scope, &[metric::label::MODEL]),
                options.rejection_ratio
            ),
            "10m",
            "warning",
            "{{ $labels.model }}: many inputs refused",
            &format!(
                "{{{{ $value | humanizePercentage }}}} of the inputs {{{{ $labels.model }}}} \
                 looked at over {window} were refused (alert above {}); \
                 {} says why.",
                options.rejection_ratio,
                sum_by(
                    &[metric::label::MODEL, metric::label::REASON],
                    &rate(&selector(metric::REJECTED, &job), window)
                ),
            ),
        ),
    ];
    RuleFile {
        groups: vec![RuleGroup {
            name: "clip-triton".to_owned(),
            rules,
        }],
    }
}
