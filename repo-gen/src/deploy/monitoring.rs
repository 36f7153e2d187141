//! Scraping Triton's metrics and turning them into the autoscaler's metric:
//! a ServiceMonitor for the Prometheus Operator, and the Prometheus
//! adapter rule that serves queue time per request as a per-pod custom
//! metric. Neither type is in k8s-openapi, so each is a minimal typed struct
//! of the fields written here; `deny_unknown_fields` makes reading one back
//! fail on anything else.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use serde::{Deserialize, Serialize};

use super::objects::{metadata, selector_labels};
use super::options::K8sOptions;
use super::pod::METRICS_PORT;

/// The per-pod custom metric the HPA reads: microseconds in Triton's queues
/// per successful request, over the last minute.
pub const QUEUE_METRIC: &str = "clip_triton_queue_us_per_request";

pub const SERVICE_MONITOR_API_VERSION: &str = "monitoring.coreos.com/v1";
pub const SERVICE_MONITOR_KIND: &str = "ServiceMonitor";

/// The Prometheus Operator's ServiceMonitor (CRD
/// `servicemonitors.monitoring.coreos.com`, version v1).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceMonitor {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: ServiceMonitorSpec,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceMonitorSpec {
    /// Services (in the ServiceMonitor's namespace) whose endpoints are scraped.
    pub selector: LabelSelector,
    pub endpoints: Vec<ScrapeEndpoint>,
}

/// One `spec.endpoints[]` entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScrapeEndpoint {
    /// A Service port name.
    pub port: String,
    pub path: String,
    pub interval: String,
}

pub fn service_monitor(options: &K8sOptions) -> ServiceMonitor {
    ServiceMonitor {
        api_version: SERVICE_MONITOR_API_VERSION.into(),
        kind: SERVICE_MONITOR_KIND.into(),
        metadata: metadata(options, &options.name),
        spec: ServiceMonitorSpec {
            selector: LabelSelector {
                match_labels: Some(selector_labels(options)),
                ..LabelSelector::default()
            },
            endpoints: vec![ScrapeEndpoint {
                port: METRICS_PORT.0.into(),
                path: "/metrics".into(),
                interval: "15s".into(),
            }],
        },
    }
}

/// The Prometheus adapter's configuration file (`--config`): its `rules`
/// list, here one rule. Its Helm chart takes the same rule under `rules.custom`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AdapterConfig {
    pub rules: Vec<AdapterRule>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AdapterRule {
    /// The series the rule applies to.
    pub series_query: String,
    /// Which series labels name Kubernetes objects.
    pub resources: AdapterResources,
    pub name: AdapterName,
    /// The PromQL the metric is computed with, a Go template.
    pub metrics_query: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdapterResources {
    pub overrides: BTreeMap<String, AdapterResource>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdapterResource {
    pub resource: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdapterName {
    pub matches: String,
    #[serde(rename = "as")]
    pub as_: String,
}

/// Queue time per request for each pod: the rate of Triton's cumulative
/// queue microseconds over the rate of successful requests, summed over the
/// pod's models (ensembles and their steps alike). An idle pod reads 0, not
/// NaN: the divisor is clamped above zero.
pub fn adapter_config() -> AdapterConfig {
    let rate =
        |metric: &str| format!("sum by (<<.GroupBy>>) (rate({metric}{{<<.LabelMatchers>>}}[1m]))");
    let resource = |name: &str| AdapterResource {
        resource: name.into(),
    };
    AdapterConfig {
        rules: vec![AdapterRule {
            series_query: r#"nv_inference_queue_duration_us{namespace!="",pod!=""}"#.into(),
            resources: AdapterResources {
                overrides: BTreeMap::from([
                    ("namespace".into(), resource("namespace")),
                    ("pod".into(), resource("pod")),
                ]),
            },
            name: AdapterName {
                matches: "^nv_inference_queue_duration_us$".into(),
                as_: QUEUE_METRIC.into(),
            },
            metrics_query: format!(
                "{} / clamp_min({}, 1e-9)",
                rate("nv_inference_queue_duration_us"),
                rate("nv_inference_request_success")
            ),
        }],
    }
}
