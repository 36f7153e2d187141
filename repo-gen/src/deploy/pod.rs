//! The Triton pod: the NGC server container, the init container that
//! installs the `clip` backend, their volumes and Triton's health probes.
//! The Deployment uses all of it; the KServe variant takes the parts KServe
//! lets a predictor override.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EmptyDirVolumeSource, EnvFromSource, EnvVar, HTTPGetAction,
    LocalObjectReference, PersistentVolumeClaimVolumeSource, PodSpec, Probe, ResourceRequirements,
    SecretEnvSource, TopologySpreadConstraint, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::options::{K8sOptions, ModelRepository};

/// Triton's default ports, named as the Services and probes refer to them.
pub const HTTP_PORT: (&str, i32) = ("http", 8000);
pub const GRPC_PORT: (&str, i32) = ("grpc", 8001);
pub const METRICS_PORT: (&str, i32) = ("metrics", 8002);
/// Triton's health endpoints (KServe v2 protocol) on the HTTP port.
pub const READY_PATH: &str = "/v2/health/ready";
pub const LIVE_PATH: &str = "/v2/health/live";

/// Where Triton looks for a backend named `clip`: `<backend-directory>/clip/`.
pub const BACKEND_MOUNT: &str = "/opt/tritonserver/backends/clip";
/// Where the repository claim is mounted in the Triton container.
pub const MODELS_MOUNT: &str = "/models";
pub const TRITON_CONTAINER: &str = "triton";
const BACKEND_VOLUME: &str = "clip-backend";
const MODELS_VOLUME: &str = "model-repository";
const GPU_RESOURCE: &str = "nvidia.com/gpu";
const PROBE_PERIOD_S: i32 = 10;

/// The pod spec of the Deployment.
pub fn pod_spec(options: &K8sOptions, selector: &BTreeMap<String, String>) -> PodSpec {
    let mut volumes = vec![backend_volume()];
    if let ModelRepository::Claim { claim, .. } = &options.repository {
        volumes.push(Volume {
            name: MODELS_VOLUME.into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim.clone(),
                read_only: Some(true),
            }),
            ..Volume::default()
        });
    }
    PodSpec {
        init_containers: Some(vec![backend_installer(options)]),
        containers: vec![triton_container(options)],
        volumes: Some(volumes),
        node_selector: node_selector(options),
        service_account_name: options.service_account.clone(),
        image_pull_secrets: image_pull_secrets(options),
        // Triton drains in-flight requests for up to 30 s (--exit-timeout-secs) after SIGTERM.
        termination_grace_period_seconds: Some(45),
        // Replicas spread over nodes where there is room: a node loss takes out as few as can be.
        topology_spread_constraints: Some(vec![TopologySpreadConstraint {
            max_skew: 1,
            topology_key: "kubernetes.io/hostname".into(),
            when_unsatisfiable: "ScheduleAnyway".into(),
            label_selector: Some(LabelSelector {
                match_labels: Some(selector.clone()),
                ..LabelSelector::default()
            }),
            ..TopologySpreadConstraint::default()
        }]),
        ..PodSpec::default()
    }
}

/// The NGC Triton container serving the repository with the `clip` backend.
fn triton_container(options: &K8sOptions) -> Container {
    let repository = match &options.repository {
        ModelRepository::Claim { .. } => MODELS_MOUNT.to_owned(),
        ModelRepository::ObjectStorage(url) => url.clone(),
    };
    let mut args = vec![
        format!("--model-repository={repository}"),
        format!("--http-port={}", HTTP_PORT.1),
        format!("--grpc-port={}", GRPC_PORT.1),
        format!("--metrics-port={}", METRICS_PORT.1),
    ];
    args.extend(options.triton_args.iter().cloned());
    let mut mounts = vec![backend_mount(true)];
    if let ModelRepository::Claim { sub_path, .. } = &options.repository {
        mounts.push(VolumeMount {
            name: MODELS_VOLUME.into(),
            mount_path: MODELS_MOUNT.into(),
            sub_path: sub_path.clone(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
    }
    let port = |(name, number): (&str, i32)| ContainerPort {
        name: Some(name.into()),
        container_port: number,
        protocol: Some("TCP".into()),
        ..ContainerPort::default()
    };
    Container {
        name: TRITON_CONTAINER.into(),
        image: Some(format!("{}:{}", options.triton_image, options.triton_tag)),
        command: Some(vec!["tritonserver".into()]),
        args: Some(args),
        ports: Some(vec![port(HTTP_PORT), port(GRPC_PORT), port(METRICS_PORT)]),
        env: triton_env(options),
        env_from: options.storage_secret.as_ref().map(|secret| {
            vec![EnvFromSource {
                secret_ref: Some(SecretEnvSource {
                    name: secret.clone(),
                    optional: Some(false),
                }),
                ..EnvFromSource::default()
            }]
        }),
        resources: Some(triton_resources(options)),
        volume_mounts: Some(mounts),
        // Triton starts its HTTP endpoint only once every model has loaded.
        startup_probe: Some(http_probe(
            READY_PATH,
            options.startup_timeout_s.div_ceil(PROBE_PERIOD_S as u32) as i32,
        )),
        readiness_probe: Some(http_probe(READY_PATH, 3)),
        liveness_probe: Some(http_probe(LIVE_PATH, 3)),
        ..Container::default()
    }
}

fn http_probe(path: &str, failure_threshold: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String(HTTP_PORT.0.into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(PROBE_PERIOD_S),
        timeout_seconds: Some(5),
        failure_threshold: Some(failure_threshold),
        ..Probe::default()
    }
}

/// Copies the backend folder of the user's image into the shared emptyDir.
/// `DIR/.` copies the folder's contents, so libonnxruntime can ride along.
pub fn backend_installer(options: &K8sOptions) -> Container {
    Container {
        name: "install-clip-backend".into(),
        image: Some(options.backend_image.clone()),
        command: Some(vec![
            "cp".into(),
            "-R".into(),
            format!("{}/.", options.backend_dir.trim_end_matches('/')),
            format!("{BACKEND_MOUNT}/"),
        ]),
        volume_mounts: Some(vec![backend_mount(false)]),
        ..Container::default()
    }
}

/// The emptyDir that holds the installed backend for the pod's life.
pub fn backend_volume() -> Volume {
    Volume {
        name: BACKEND_VOLUME.into(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Volume::default()
    }
}

pub fn backend_mount(read_only: bool) -> VolumeMount {
    VolumeMount {
        name: BACKEND_VOLUME.into(),
        mount_path: BACKEND_MOUNT.into(),
        read_only: read_only.then_some(true),
        ..VolumeMount::default()
    }
}

/// glibc's mmap threshold, fixed (as scripts/launch-triton.sh sets it):
/// otherwise it grows to each large block freed, later decode and batch
/// buffers come from the arenas, and their freed pages stay in the pod's
/// RSS (the soak measured the creep; docs/reliability.md).
const MALLOC_MMAP_THRESHOLD: &str = "131072";

pub fn triton_env(options: &K8sOptions) -> Option<Vec<EnvVar>> {
    let var = |name: &str, value: &str| EnvVar {
        name: name.into(),
        value: Some(value.into()),
        ..EnvVar::default()
    };
    let mut env = vec![var("MALLOC_MMAP_THRESHOLD_", MALLOC_MMAP_THRESHOLD)];
    if let Some(path) = &options.ort_dylib_path {
        env.push(var("ORT_DYLIB_PATH", path));
    }
    Some(env)
}

/// CPU requested without a limit; memory requested and capped; GPUs as a
/// limit, which Kubernetes also takes as the request for extended resources.
pub fn triton_resources(options: &K8sOptions) -> ResourceRequirements {
    let quantity = |text: &str| Quantity(text.to_owned());
    let mut limits = BTreeMap::from([("memory".to_owned(), quantity(&options.memory))]);
    if options.gpus > 0 {
        limits.insert(GPU_RESOURCE.into(), quantity(&options.gpus.to_string()));
    }
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_owned(), quantity(&options.cpu)),
            ("memory".to_owned(), quantity(&options.memory)),
        ])),
        limits: Some(limits),
        ..ResourceRequirements::default()
    }
}

pub fn node_selector(options: &K8sOptions) -> Option<BTreeMap<String, String>> {
    (!options.node_selector.is_empty()).then(|| options.node_selector.clone())
}

pub fn image_pull_secrets(options: &K8sOptions) -> Option<Vec<LocalObjectReference>> {
    (!options.image_pull_secrets.is_empty()).then(|| {
        options
            .image_pull_secrets
            .iter()
            .map(|name| LocalObjectReference { name: name.clone() })
            .collect()
    })
}
