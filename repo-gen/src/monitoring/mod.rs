//! `repo-gen deploy monitoring`: Prometheus and Grafana for Triton serving a
//! repo-gen repository. Writes, into one folder:
//!
//! ```text
//! prometheus.yml           scrape config for Triton's metrics port(s), loads alerts.yml
//! alerts.yml               alerting rules: server down, queue time per request,
//!                          ensemble failure ratio, the clip backend's rejection ratio
//! grafana-dashboard.json   throughput, latency, queue vs compute per step, decode and
//!                          rejection counters, GPU and CPU use
//! ```
//!
//! Every file is built from typed structs ([`prometheus`], [`rules`],
//! [`dashboard`]) and serialized with serde; the backend's metric names come
//! from [`clip_contract::metric`], Triton's from [`promql::triton`].
//!
//! Latency percentiles come from Triton's summaries, which tritonserver
//! exports only with `--metrics-config summary_latencies=true`; the means
//! beside them come from its duration counters, always exported.

pub mod dashboard;
mod exprs;
pub mod prometheus;
pub mod promql;
pub mod rules;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use clip_contract::model;
use serde::Serialize;

pub const PROMETHEUS_FILE: &str = "prometheus.yml";
pub const RULES_FILE: &str = "alerts.yml";
pub const DASHBOARD_FILE: &str = "grafana-dashboard.json";
/// Every file this command writes.
pub const FILES: [&str; 3] = [PROMETHEUS_FILE, RULES_FILE, DASHBOARD_FILE];

/// What to monitor and how.
#[derive(Clone, Debug)]
pub struct MonitoringOptions {
    /// Triton metrics endpoints, `host:port` (its `--metrics-port`, 8002 by default).
    pub targets: Vec<String>,
    /// The scrape job's name, and so the `job` label of every series.
    pub job: String,
    pub scrape_interval: String,
    pub evaluation_interval: String,
    /// Put before every model name, as repo-gen's `--name-prefix`.
    pub name_prefix: String,
    /// Alertmanagers, `host:port`; none: Prometheus only shows the alerts.
    pub alertmanagers: Vec<String>,
    /// Every rule's `for:` instead of its own (1m for server down, 5m or 10m for the others).
    pub alert_for: Option<String>,
    /// The rules' rate window.
    pub rate_window: String,
    /// Mean queue time per request above which a step alerts, in milliseconds.
    pub queue_alert_ms: f64,
    /// Ensemble failure ratio (0-1) above which an ensemble alerts.
    pub failure_ratio: f64,
    /// Rejected-input ratio (0-1) above which a model alerts.
    pub rejection_ratio: f64,
}

impl Default for MonitoringOptions {
    fn default() -> Self {
        MonitoringOptions {
            targets: vec!["localhost:8002".into()],
            job: "triton".into(),
            scrape_interval: "15s".into(),
            evaluation_interval: "15s".into(),
            name_prefix: String::new(),
            alertmanagers: Vec::new(),
            alert_for: None,
            rate_window: "5m".into(),
            queue_alert_ms: 100.0,
            failure_ratio: 0.05,
            rejection_ratio: 0.05,
        }
    }
}

/// The repository's model names, with the prefix.
pub struct Models {
    prefix: String,
}

/// An ensemble and the regex of its steps.
#[derive(Clone, Debug)]
pub struct Pipeline {
    pub ensemble: String,
    pub steps: String,
}

impl Models {
    /// The two ensembles, each with its steps.
    pub fn pipelines(&self) -> Vec<Pipeline> {
        [
            (
                model::TEXT_ENSEMBLE,
                [model::TEXT_PREPROCESS, model::TEXT_ENCODER],
            ),
            (
                model::IMAGE_ENSEMBLE,
                [model::IMAGE_PREPROCESS, model::IMAGE_ENCODER],
            ),
        ]
        .into_iter()
        .map(|(ensemble, steps)| Pipeline {
            ensemble: format!("{}{ensemble}", self.prefix),
            steps: self.names(&steps),
        })
        .collect()
    }

    fn names(&self, names: &[&str]) -> String {
        let prefixed: Vec<String> = names
            .iter()
            .map(|name| format!("{}{name}", self.prefix))
            .collect();
        promql::any_of(&prefixed)
    }

    pub fn ensembles(&self) -> String {
        self.names(&[model::TEXT_ENSEMBLE, model::IMAGE_ENSEMBLE])
    }

    /// The ensembles' steps: preprocessing and encoders.
    pub fn steps(&self) -> String {
        self.names(&[
            model::TEXT_PREPROCESS,
            model::TEXT_ENCODER,
            model::IMAGE_PREPROCESS,
            model::IMAGE_ENCODER,
        ])
    }

    pub fn encoders(&self) -> String {
        self.names(&[model::TEXT_ENCODER, model::IMAGE_ENCODER])
    }

    pub fn all(&self) -> String {
        self.names(&[
            model::TEXT_ENSEMBLE,
            model::IMAGE_ENSEMBLE,
            model::TEXT_PREPROCESS,
            model::TEXT_ENCODER,
            model::IMAGE_PREPROCESS,
            model::IMAGE_ENCODER,
        ])
    }
}

impl MonitoringOptions {
    pub fn models(&self) -> Models {
        Models {
            prefix: self.name_prefix.clone(),
        }
    }

    /// Refuses what Prometheus would refuse later, or what makes no alert sense.
    pub fn check(&self) -> Result<(), MonitoringError> {
        let invalid = |message: String| Err(MonitoringError::Invalid(message));
        if self.targets.is_empty() {
            return invalid("at least one --target is needed".into());
        }
        for target in self.targets.iter().chain(&self.alertmanagers) {
            if !is_host_port(target) {
                return invalid(format!(
                    "'{target}' is not host:port (Prometheus takes no scheme or path here)"
                ));
            }
        }
        if !is_label_value(&self.job) {
            return invalid(format!(
                "--job '{}': letters, digits, '_' and '-' only",
                self.job
            ));
        }
        if !self.name_prefix.is_empty() && !is_label_value(&self.name_prefix) {
            return invalid(format!(
                "--name-prefix '{}': letters, digits, '_' and '-' only",
                self.name_prefix
            ));
        }
        for (flag, value) in [
            ("--scrape-interval", Some(&self.scrape_interval)),
            ("--evaluation-interval", Some(&self.evaluation_interval)),
            ("--rate-window", Some(&self.rate_window)),
            ("--alert-for", self.alert_for.as_ref()),
        ] {
            if let Some(value) = value {
                if !is_duration(value) {
                    return invalid(format!(
                        "{flag} '{value}' is not a Prometheus duration such as 30s, 5m or 1h"
                    ));
                }
            }
        }
        if !(self.queue_alert_ms >= 0.0 && self.queue_alert_ms.is_finite()) {
            return invalid("--queue-alert-ms must be 0 or more".into());
        }
        for (flag, value) in [
            ("--failure-ratio", self.failure_ratio),
            ("--rejection-ratio", self.rejection_ratio),
        ] {
            if !(0.0..1.0).contains(&value) {
                return invalid(format!("{flag} {value} is not a ratio in [0, 1)"));
            }
        }
        Ok(())
    }
}

fn is_label_value(text: &str) -> bool {
    !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn is_host_port(text: &str) -> bool {
    match text.rsplit_once(':') {
        Some((host, port)) => {
            !host.is_empty() && !host.contains('/') && port.parse::<u16>().is_ok_and(|p| p > 0)
        }
        None => false,
    }
}

/// One or more `<number><unit>`, as Prometheus's durations (`1h30m`).
fn is_duration(text: &str) -> bool {
    let mut rest = text;
    if rest.is_empty() {
        return false;
    }
    while !rest.is_empty() {
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        if digits == 0 {
            return false;
        }
        rest = &rest[digits..];
        let Some(unit) = ["ms", "s", "m", "h", "d", "w", "y"]
            .into_iter()
            .find(|u| rest.starts_with(u))
        else {
            return false;
        };
        rest = &rest[unit.len()..];
    }
    true
}

#[derive(Debug, thiserror::Error)]
pub enum MonitoringError {
    #[error("{0}")]
    Invalid(String),
    #[error(
        "--out {} is not empty; pass --force to replace the files repo-gen deploy monitoring writes \
         (others are kept), or choose an empty or new folder",
        .0.display()
    )]
    NotEmpty(PathBuf),
    #[error("cannot write {file}: {message}")]
    Serialize { file: &'static str, message: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// One file: its name and its text.
#[derive(Clone, Debug)]
pub struct File {
    pub name: &'static str,
    pub text: String,
}

const YAML_HEADER: &str =
    "# Written by `repo-gen deploy monitoring`; change its options and run it again rather than \
     editing.\n";

fn yaml(name: &'static str, value: &impl Serialize) -> Result<File, MonitoringError> {
    let body = serde_norway::to_string(value).map_err(|e| MonitoringError::Serialize {
        file: name,
        message: e.to_string(),
    })?;
    Ok(File {
        name,
        text: format!("{YAML_HEADER}{body}"),
    })
}

/// The three files for `options`, in [`FILES`] order.
pub fn render(options: &MonitoringOptions) -> Result<Vec<File>, MonitoringError> {
    options.check()?;
    let mut dashboard =
        serde_json::to_string_pretty(&dashboard::dashboard(options)).map_err(|e| {
            MonitoringError::Serialize {
                file: DASHBOARD_FILE,
                message: e.to_string(),
            }
        })?;
    dashboard.push('\n');
    Ok(vec![
        yaml(PROMETHEUS_FILE, &prometheus::config(options))?,
        yaml(RULES_FILE, &rules::rule_file(options))?,
        File {
            name: DASHBOARD_FILE,
            text: dashboard,
        },
    ])
}

/// Renders and writes the files into `out`, which must be new or empty unless `force`.
pub fn write(options: &MonitoringOptions, out: &Path, force: bool) -> Result<(), MonitoringError> {
    let files = render(options)?;
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| MonitoringError::Io { path, source }
    };
    if out.exists() && !force {
        let mut entries = std::fs::read_dir(out).map_err(io(out))?;
        if entries.next().is_some() {
            return Err(MonitoringError::NotEmpty(out.to_owned()));
        }
    }
    std::fs::create_dir_all(out).map_err(io(out))?;
    for file in files {
        let path = out.join(file.name);
        std::fs::write(&path, file.text).map_err(io(&path))?;
    }
    Ok(())
}

/// `repo-gen deploy monitoring`'s command line.
#[derive(Args, Debug)]
pub struct MonitoringArgs {
    /// The folder to write prometheus.yml, alerts.yml and grafana-dashboard.json into;
    /// must be new or empty unless --force.
    #[arg(long, value_name = "DIR", default_value = "monitoring")]
    pub out: PathBuf,
    /// Replace the three files in a non-empty --out, keeping anything else there.
    #[arg(long)]
    pub force: bool,
    /// A Triton metrics endpoint to scrape, host:port (tritonserver's --metrics-port);
    /// repeat or comma-separate for several servers.
    #[arg(
        long = "target",
        value_name = "HOST:PORT",
        value_delimiter = ',',
        default_value = "localhost:8002"
    )]
    pub targets: Vec<String>,
    /// The scrape job's name: the `job` label the rules and the dashboard select.
    #[arg(long, value_name = "NAME", default_value = "triton")]
    pub job: String,
    /// How often Prometheus scrapes Triton.
    #[arg(long, value_name = "DURATION", default_value = "15s")]
    pub scrape_interval: String,
    /// How often Prometheus evaluates the alerting rules.
    #[arg(long, value_name = "DURATION", default_value = "15s")]
    pub evaluation_interval: String,
    /// The --name-prefix the repository was generated with.
    #[arg(long, value_name = "P", default_value = "")]
    pub name_prefix: String,
    /// An Alertmanager to send alerts to, host:port; repeatable. Without one,
    /// Prometheus only shows them (/alerts).
    #[arg(long = "alertmanager", value_name = "HOST:PORT", value_delimiter = ',')]
    pub alertmanagers: Vec<String>,
    /// How long every alert's condition must hold before it fires, instead of each
    /// rule's own (1m for TritonDown, 5m or 10m for the ratios). For tests: 0s.
    #[arg(long, value_name = "DURATION", help_heading = "Alert thresholds")]
    pub alert_for: Option<String>,
    /// The window the rules' rates are taken over.
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "5m",
        help_heading = "Alert thresholds"
    )]
    pub rate_window: String,
    /// TritonQueueTimeHigh: mean queue time per request of a model, in milliseconds.
    #[arg(
        long,
        value_name = "MS",
        default_value_t = 100.0,
        help_heading = "Alert thresholds"
    )]
    pub queue_alert_ms: f64,
    /// ClipFailureRatioHigh: failed over all requests of an ensemble (0-1).
    #[arg(
        long,
        value_name = "RATIO",
        default_value_t = 0.05,
        help_heading = "Alert thresholds"
    )]
    pub failure_ratio: f64,
    /// ClipRejectionRatioHigh: inputs the clip backend refused over those it looked at (0-1).
    #[arg(
        long,
        value_name = "RATIO",
        default_value_t = 0.05,
        help_heading = "Alert thresholds"
    )]
    pub rejection_ratio: f64,
}

impl MonitoringArgs {
    pub fn options(&self) -> MonitoringOptions {
        MonitoringOptions {
            targets: self.targets.clone(),
            job: self.job.clone(),
            scrape_interval: self.scrape_interval.clone(),
            evaluation_interval: self.evaluation_interval.clone(),
            name_prefix: self.name_prefix.clone(),
            alertmanagers: self.alertmanagers.clone(),
            alert_for: self.alert_for.clone(),
            rate_window: self.rate_window.clone(),
            queue_alert_ms: self.queue_alert_ms,
            failure_ratio: self.failure_ratio,
            rejection_ratio: self.rejection_ratio,
        }
    }
}

/// Runs `repo-gen deploy monitoring`.
pub fn run(args: MonitoringArgs) -> ExitCode {
    match write(&args.options(), &args.out, args.force) {
        Ok(()) => {
            eprintln!(
                "repo-gen: wrote {} into {}; start tritonserver with --metrics-config \
                 summary_latencies=true for the latency percentiles",
                FILES.join(", "),
                args.out.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("repo-gen: error: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        for good in ["1s", "15s", "5m", "1h30m", "500ms", "0s"] {
            assert!(is_duration(good), "{good}");
        }
        for bad in ["", "5", "m", "5 m", "1.5m", "5min"] {
            assert!(!is_duration(bad), "{bad}");
        }
    }

    #[test]
    fn targets() {
        assert!(is_host_port("localhost:8002"));
        assert!(is_host_port("[::1]:8002"));
        assert!(!is_host_port("http://localhost:8002"));
        assert!(!is_host_port("localhost"));
        assert!(!is_host_port("localhost:0"));
    }

    #[test]
    fn bad_options_are_refused() {
        let bad = |change: fn(&mut MonitoringOptions)| {
            let mut options = MonitoringOptions::default();
            change(&mut options);
            assert!(render(&options).is_err());
        };
        bad(|o| o.targets.clear());
        bad(|o| o.job = "a b".into());
        bad(|o| o.rate_window = "5".into());
        bad(|o| o.alert_for = Some("soon".into()));
        bad(|o| o.failure_ratio = 1.5);
        bad(|o| o.queue_alert_ms = -1.0);
        assert!(render(&MonitoringOptions::default()).is_ok());
    }
}
