//! `prometheus.yml`: the part of Prometheus's configuration file this
//! command writes (global intervals, the rule file, one scrape job for
//! Triton's metrics port, optionally Alertmanagers).

use serde::Serialize;

use super::MonitoringOptions;

#[derive(Debug, Serialize)]
pub struct PrometheusConfig {
    pub global: Global,
    pub rule_files: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alerting: Option<Alerting>,
    pub scrape_configs: Vec<ScrapeConfig>,
}

#[derive(Debug, Serialize)]
pub struct Global {
    pub scrape_interval: String,
    pub evaluation_interval: String,
}

#[derive(Debug, Serialize)]
pub struct Alerting {
    pub alertmanagers: Vec<AlertmanagerConfig>,
}

#[derive(Debug, Serialize)]
pub struct AlertmanagerConfig {
    pub static_configs: Vec<StaticConfig>,
}

#[derive(Debug, Serialize)]
pub struct ScrapeConfig {
    pub job_name: String,
    pub metrics_path: String,
    pub static_configs: Vec<StaticConfig>,
}

#[derive(Debug, Serialize)]
pub struct StaticConfig {
    pub targets: Vec<String>,
}

/// Triton serves Prometheus's text format at `/metrics` on `--metrics-port` (8002 by default).
pub const METRICS_PATH: &str = "/metrics";

pub fn config(options: &MonitoringOptions) -> PrometheusConfig {
    PrometheusConfig {
        global: Global {
            scrape_interval: options.scrape_interval.clone(),
            evaluation_interval: options.evaluation_interval.clone(),
        },
        // Relative paths in rule_files are read from the config file's folder.
        rule_files: vec![super::RULES_FILE.to_owned()],
        alerting: (!options.alertmanagers.is_empty()).then(|| Alerting {
            alertmanagers: vec![AlertmanagerConfig {
                static_configs: vec![StaticConfig {
                    targets: options.alertmanagers.clone(),
                }],
            }],
        }),
        scrape_configs: vec![ScrapeConfig {
            job_name: options.job.clone(),
            metrics_path: METRICS_PATH.to_owned(),
            static_configs: vec![StaticConfig {
                targets: options.targets.clone(),
            }],
        }],
    }
}
