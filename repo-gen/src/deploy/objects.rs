//! The built-in Kubernetes objects around the Triton pods: Deployment,
//! Services, PodDisruptionBudget and HorizontalPodAutoscaler.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec,
    MetricIdentifier, MetricSpec, MetricTarget, PodsMetricSource,
};
use k8s_openapi::api::core::v1::{PodTemplateSpec, Service, ServicePort, ServiceSpec};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::Resource;

use super::monitoring::QUEUE_METRIC;
use super::options::{K8sOptions, Replicas};
use super::pod::{self, GRPC_PORT, HTTP_PORT, METRICS_PORT};

/// The labels that select the Triton pods; every object carries them.
pub fn selector_labels(options: &K8sOptions) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "app.kubernetes.io/name".to_owned(),
            "clip-triton".to_owned(),
        ),
        (
            "app.kubernetes.io/instance".to_owned(),
            options.name.clone(),
        ),
    ])
}

pub fn metadata(options: &K8sOptions, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: options.namespace.clone(),
        labels: Some(selector_labels(options)),
        ..ObjectMeta::default()
    }
}

fn selector(options: &K8sOptions) -> LabelSelector {
    LabelSelector {
        match_labels: Some(selector_labels(options)),
        ..LabelSelector::default()
    }
}

pub fn deployment(options: &K8sOptions) -> Deployment {
    let labels = selector_labels(options);
    Deployment {
        metadata: metadata(options, &options.name),
        spec: Some(DeploymentSpec {
            // Left out under an HPA, so that re-applying does not reset its count.
            replicas: match options.replicas {
                Replicas::Fixed(count) => Some(i32::from(count)),
                Replicas::Autoscaled { .. } => None,
            },
            selector: selector(options),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels.clone()),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod::pod_spec(options, &labels)),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}

fn service_port((name, number): (&str, i32)) -> ServicePort {
    ServicePort {
        name: Some(name.into()),
        port: number,
        target_port: Some(IntOrString::String(name.into())),
        protocol: Some("TCP".into()),
        ..ServicePort::default()
    }
}

/// One virtual IP for HTTP, gRPC and metrics. kube-proxy balances
/// connections, not requests, so one gRPC client stays on one pod.
pub fn service(options: &K8sOptions) -> Service {
    Service {
        metadata: metadata(options, &options.name),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(selector_labels(options)),
            ports: Some(vec![
                service_port(HTTP_PORT),
                service_port(GRPC_PORT),
                service_port(METRICS_PORT),
            ]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

pub fn headless_service_name(options: &K8sOptions) -> String {
    format!("{}-headless", options.name)
}

/// DNS answers with every ready pod's address, for client-side balancing
/// (`clip-client --server grpc://NAME-headless:8001`). No metrics port, so
/// the ServiceMonitor, which selects both Services, scrapes each pod once.
pub fn headless_service(options: &K8sOptions) -> Service {
    Service {
        metadata: metadata(options, &headless_service_name(options)),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            selector: Some(selector_labels(options)),
            ports: Some(vec![service_port(GRPC_PORT), service_port(HTTP_PORT)]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// Voluntary evictions (node drains, upgrades) take one pod at a time.
pub fn disruption_budget(options: &K8sOptions) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: metadata(options, &options.name),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(selector(options)),
            // A pod that never got ready (a bad model, a missing GPU) must not block drains.
            unhealthy_pod_eviction_policy: Some("AlwaysAllow".into()),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    }
}

/// Scales on each pod's average queue time per request, a custom metric
/// that the Prometheus adapter computes (see `monitoring::adapter_config`).
pub fn autoscaler(options: &K8sOptions) -> Option<HorizontalPodAutoscaler> {
    let Replicas::Autoscaled {
        min,
        max,
        target_queue_us,
    } = options.replicas
    else {
        return None;
    };
    Some(HorizontalPodAutoscaler {
        metadata: metadata(options, &options.name),
        spec: Some(HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some(Deployment::API_VERSION.into()),
                kind: Deployment::KIND.into(),
                name: options.name.clone(),
            },
            min_replicas: Some(i32::from(min)),
            max_replicas: i32::from(max),
            metrics: Some(vec![MetricSpec {
                type_: "Pods".into(),
                pods: Some(PodsMetricSource {
                    metric: MetricIdentifier {
                        name: QUEUE_METRIC.into(),
                        selector: None,
                    },
                    target: MetricTarget {
                        type_: "AverageValue".into(),
                        average_value: Some(Quantity(target_queue_us.to_string())),
                        ..MetricTarget::default()
                    },
                }),
                ..MetricSpec::default()
            }]),
            ..HorizontalPodAutoscalerSpec::default()
        }),
        ..HorizontalPodAutoscaler::default()
    })
}
