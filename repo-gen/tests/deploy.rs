//! `repo-gen deploy k8s`: golden manifests, and every written file read back
//! into its typed API struct, checked against Triton's ports and health
//! paths and against the other objects (selectors, targets, volumes).
//! No cluster is involved: the types are the API server's schema.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{Container, PodSpec, Probe, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use repo_gen::deploy::kserve::InferenceService;
use repo_gen::deploy::monitoring::{AdapterConfig, ServiceMonitor};
use serde::de::DeserializeOwned;
use serde::Serialize;

// Triton's facts, stated here rather than taken from repo-gen.
const TRITON_HTTP: i32 = 8000;
const TRITON_GRPC: i32 = 8001;
const TRITON_METRICS: i32 = 8002;
const READY: &str = "/v2/health/ready";
const LIVE: &str = "/v2/health/live";
const BACKEND_DIR: &str = "/opt/tritonserver/backends/clip";

const BACKEND_IMAGE: &str = "registry.example/clip-backend:0.1.0";

/// The defaults: PVC repository, HPA, ServiceMonitor.
const DEFAULT_ARGS: &[&str] = &["--backend-image", BACKEND_IMAGE];

/// A fixed count, object storage and most options set.
const FIXED_ARGS: &[&str] = &[
    "--backend-image",
    BACKEND_IMAGE,
    "--name",
    "clip-vit-l-14",
    "--namespace",
    "ml-serving",
    "--replicas",
    "3",
    "--gpus",
    "2",
    "--cpu",
    "8",
    "--memory",
    "32Gi",
    "--triton-tag",
    "24.10-py3",
    "--repository",
    "s3://models/clip/vit-l-14",
    "--storage-secret",
    "clip-s3",
    "--service-account",
    "clip-serving",
    "--image-pull-secret",
    "registry-pull",
    "--node-selector",
    "nvidia.com/gpu.product=NVIDIA-L4",
    "--triton-arg=--cache-config=local,size=268435456",
    "--ort-dylib-path",
    "/opt/tritonserver/backends/clip/libonnxruntime.so",
    "--startup-timeout-s",
    "1200",
    "--no-service-monitor",
];

/// Runs `repo-gen deploy k8s --out <tmp>/k8s ARGS`; panics with stderr on failure.
fn deploy(args: &[&str]) -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("k8s");
    let output = run(&out, args);
    assert!(
        output.status.success(),
        "repo-gen deploy k8s {args:?} failed:\n{}",
        common::stderr(&output)
    );
    (tmp, out)
}

fn run(out: &Path, args: &[&str]) -> std::process::Output {
    let mut all = vec!["deploy", "k8s", "--out", out.to_str().unwrap()];
    all.extend_from_slice(args);
    common::repo_gen(&all)
}

/// `file` read into `T`, after checking that writing `T` back gives the
/// same YAML: a field the type does not know would be lost on the way.
fn read<T: DeserializeOwned + Serialize>(dir: &Path, file: &str) -> T {
    let text = std::fs::read_to_string(dir.join(file)).unwrap();
    let body = text
        .split_once('\n')
        .filter(|(header, _)| header.starts_with("# Written by `repo-gen deploy k8s`"))
        .map(|(_, body)| body)
        .unwrap_or_else(|| panic!("{file} has no repo-gen header"));
    let typed: T = serde_norway::from_str(body).unwrap_or_else(|e| panic!("{file}: {e}"));
    assert_eq!(
        serde_norway::to_string(&typed).unwrap(),
        body,
        "{file} holds fields its type does not know"
    );
    typed
}

fn golden_case(case: &str, args: &[&str]) {
    let (_tmp, out) = deploy(args);
    let files = common::tree(&out);
    for file in files.iter().filter(|f| !f.ends_with('/')) {
        let golden = format!("deploy/{case}/{}", file.replace('/', "-"));
        if std::env::var_os("REPO_GEN_BLESS").is_some() {
            let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/deploy");
            std::fs::create_dir_all(folder.join(case)).unwrap();
        }
        common::golden(&golden, &std::fs::read_to_string(out.join(file)).unwrap());
    }
    let expected = std::fs::read_dir(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/golden/deploy")
            .join(case),
    )
    .unwrap()
    .count();
    assert_eq!(
        files.iter().filter(|f| !f.ends_with('/')).count(),
        expected,
        "{case}: written files {files:?} differ from the golden folder's"
    );
}

#[test]
fn default_manifests_match_golden_files() {
    golden_case("default", DEFAULT_ARGS);
}

#[test]
fn fixed_replicas_on_object_storage_match_golden_files() {
    golden_case("fixed", FIXED_ARGS);
}

fn triton(pod: &PodSpec) -> &Container {
    let mut containers = pod.containers.iter().filter(|c| c.name == "triton");
    let triton = containers.next().expect("a container named triton");
    assert!(containers.next().is_none());
    triton
}

/// The container port a probe's port (a name or a number) resolves to.
fn probe_port(container: &Container, probe: &Probe) -> (i32, String) {
    let action = probe.http_get.as_ref().expect("an HTTP probe");
    let port = match &action.port {
        IntOrString::Int(number) => *number,
        IntOrString::String(name) => {
            container
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .unwrap_or_else(|| panic!("no container port named {name}"))
                .container_port
        }
    };
    (port, action.path.clone().unwrap_or_default())
}

fn container_port(container: &Container, name: &str) -> i32 {
    container
        .ports
        .iter()
        .flatten()
        .find(|p| p.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("no container port named {name}"))
        .container_port
}

/// Checks that a Service selects the pods and targets container ports of the same numbers.
fn check_service(service: &Service, pod_labels: &BTreeMap<String, String>, pod: &PodSpec) {
    let spec = service.spec.as_ref().unwrap();
    let selector = spec.selector.as_ref().unwrap();
    assert!(
        selector.iter().all(|(k, v)| pod_labels.get(k) == Some(v)),
        "{:?} selects {selector:?}, not the pods' {pod_labels:?}",
        service.metadata.name
    );
    for port in spec.ports.iter().flatten() {
        let IntOrString::String(target) = port.target_port.as_ref().unwrap() else {
            panic!("target ports are named")
        };
        assert_eq!(container_port(triton(pod), target), port.port);
    }
}

/// The backend is installed into, and served from, one emptyDir at Triton's backend folder.
fn check_backend(
    init: &[Container],
    triton: &Container,
    volumes: &[k8s_openapi::api::core::v1::Volume],
) {
    let installer = &init[0];
    assert_eq!(installer.image.as_deref(), Some(BACKEND_IMAGE));
    let mount = |c: &Container| {
        c.volume_mounts
            .iter()
            .flatten()
            .find(|m| m.mount_path == BACKEND_DIR)
            .unwrap_or_else(|| panic!("{} does not mount {BACKEND_DIR}", c.name))
            .clone()
    };
    let (written, served) = (mount(installer), mount(triton));
    assert_eq!(written.name, served.name);
    assert_eq!(served.read_only, Some(true));
    assert!(written.read_only != Some(true));
    let volume = volumes.iter().find(|v| v.name == served.name).unwrap();
    assert!(
        volume.empty_dir.is_some(),
        "the backend volume is an emptyDir"
    );
    let command = installer.command.as_ref().unwrap();
    assert_eq!(command[0], "cp");
    assert!(command.last().unwrap().starts_with(BACKEND_DIR));
}

fn check_all(args: &[&str], name: &str, namespace: Option<&str>, gpus: &str) {
    let (_tmp, out) = deploy(args);
    let deployment: Deployment = read(&out, "deployment.yaml");
    let spec = deployment.spec.as_ref().unwrap();
    let template = &spec.template;
    let labels = template.metadata.as_ref().unwrap().labels.clone().unwrap();
    let pod = template.spec.as_ref().unwrap();
    let selects_pods = |selector: &BTreeMap<String, String>| {
        !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
    };
    assert!(selects_pods(spec.selector.match_labels.as_ref().unwrap()));
    assert_eq!(deployment.metadata.name.as_deref(), Some(name));

    let triton = triton(pod);
    assert!(triton
        .image
        .as_deref()
        .unwrap()
        .starts_with("nvcr.io/nvidia/tritonserver:"));
    for (probe, path) in [
        (&triton.startup_probe, READY),
        (&triton.readiness_probe, READY),
        (&triton.liveness_probe, LIVE),
    ] {
        let (port, probe_path) = probe_port(triton, probe.as_ref().unwrap());
        assert_eq!((port, probe_path.as_str()), (TRITON_HTTP, path));
    }
    for (port, number) in [
        ("http", TRITON_HTTP),
        ("grpc", TRITON_GRPC),
        ("metrics", TRITON_METRICS),
    ] {
        assert_eq!(container_port(triton, port), number);
        let flag = format!("--{port}-port={number}");
        assert!(triton.args.iter().flatten().any(|a| *a == flag), "{flag}");
    }
    let limits = triton.resources.as_ref().unwrap().limits.as_ref().unwrap();
    assert_eq!(
        limits.get("nvidia.com/gpu").map(|q| q.0.as_str()),
        Some(gpus)
    );
    check_backend(
        pod.init_containers.as_deref().unwrap(),
        triton,
        pod.volumes.as_deref().unwrap(),
    );

    let service: Service = read(&out, "service.yaml");
    check_service(&service, &labels, pod);
    let headless: Service = read(&out, "service-headless.yaml");
    check_service(&headless, &labels, pod);
    let headless_spec = headless.spec.as_ref().unwrap();
    assert_eq!(headless_spec.cluster_ip.as_deref(), Some("None"));
    assert_eq!(
        headless.metadata.name.as_deref(),
        Some(format!("{name}-headless").as_str())
    );
    assert!(headless_spec
        .ports
        .iter()
        .flatten()
        .any(|p| p.port == TRITON_GRPC));

    let budget: PodDisruptionBudget = read(&out, "poddisruptionbudget.yaml");
    let budget_selector = budget.spec.as_ref().unwrap().selector.as_ref().unwrap();
    assert!(selects_pods(budget_selector.match_labels.as_ref().unwrap()));

    let kserve: InferenceService = read(&out, "kserve/inferenceservice.yaml");
    assert_eq!(kserve.api_version, "serving.kserve.io/v1beta1");
    assert_eq!(kserve.kind, "InferenceService");
    let predictor = &kserve.spec.predictor;
    let kserve_triton = Container {
        name: "kserve-container".into(),
        volume_mounts: Some(predictor.triton.volume_mounts.clone()),
        ..Container::default()
    };
    check_backend(
        &predictor.init_containers,
        &kserve_triton,
        &predictor.volumes,
    );

    let namespaces = [
        &deployment.metadata,
        &service.metadata,
        &headless.metadata,
        &budget.metadata,
        &kserve.metadata,
    ]
    .map(|m| m.namespace.as_deref());
    assert!(namespaces.iter().all(|n| *n == namespace), "{namespaces:?}");
}

#[test]
fn default_manifests_agree_with_triton_and_each_other() {
    check_all(DEFAULT_ARGS, "clip", None, "1");
    let (_tmp, out) = deploy(DEFAULT_ARGS);
    let deployment: Deployment = read(&out, "deployment.yaml");
    let spec = deployment.spec.as_ref().unwrap();
    assert_eq!(spec.replicas, None, "the HPA owns the replica count");
    let pod = spec.template.spec.as_ref().unwrap();
    let claim = pod
        .volumes
        .iter()
        .flatten()
        .find_map(|v| v.persistent_volume_claim.as_ref())
        .expect("the repository claim");
    assert_eq!(claim.claim_name, "clip-models");
    assert!(triton(pod)
        .args
        .iter()
        .flatten()
        .any(|a| a == "--model-repository=/models"));

    let autoscaler: HorizontalPodAutoscaler = read(&out, "horizontalpodautoscaler.yaml");
    let hpa = autoscaler.spec.as_ref().unwrap();
    assert_eq!(hpa.scale_target_ref.kind, "Deployment");
    assert_eq!(hpa.scale_target_ref.api_version.as_deref(), Some("apps/v1"));
    assert_eq!(
        Some(&hpa.scale_target_ref.name),
        deployment.metadata.name.as_ref()
    );
    assert_eq!((hpa.min_replicas, hpa.max_replicas), (Some(2), 8));
    let metric = hpa.metrics.as_ref().unwrap()[0].pods.as_ref().unwrap();

    // The HPA reads the metric the adapter rule makes from Triton's counters.
    let adapter: AdapterConfig = read(&out, "prometheus-adapter/config.yaml");
    let rule = &adapter.rules[0];
    assert_eq!(rule.name.as_, metric.metric.name);
    for counter in [
        "nv_inference_queue_duration_us",
        "nv_inference_request_success",
    ] {
        assert!(rule.metrics_query.contains(counter), "{counter}");
    }

    // Both Services carry the monitor's labels; only the regular one has the metrics port.
    let monitor: ServiceMonitor = read(&out, "servicemonitor.yaml");
    assert_eq!(monitor.api_version, "monitoring.coreos.com/v1");
    assert_eq!(monitor.kind, "ServiceMonitor");
    let wanted = monitor.spec.selector.match_labels.clone().unwrap();
    let scraped: Vec<_> = ["service.yaml", "service-headless.yaml"]
        .iter()
        .map(|file| read::<Service>(&out, file))
        .filter(|s| {
            let labels = s.metadata.labels.clone().unwrap_or_default();
            wanted.iter().all(|(k, v)| labels.get(k) == Some(v))
        })
        .filter(|s| {
            s.spec
                .as_ref()
                .unwrap()
                .ports
                .iter()
                .flatten()
                .any(|p| p.name.as_deref() == Some(monitor.spec.endpoints[0].port.as_str()))
        })
        .collect();
    assert_eq!(scraped.len(), 1, "each pod is scraped through one Service");
    assert_eq!(scraped[0].metadata.name.as_deref(), Some("clip"));

    let kserve: InferenceService = read(&out, "kserve/inferenceservice.yaml");
    assert_eq!(
        kserve.spec.predictor.triton.storage_uri,
        "pvc://clip-models"
    );
    assert_eq!(
        (
            kserve.spec.predictor.min_replicas,
            kserve.spec.predictor.max_replicas
        ),
        (2, 8)
    );
}

#[test]
fn fixed_manifests_agree_with_triton_and_each_other() {
    check_all(FIXED_ARGS, "clip-vit-l-14", Some("ml-serving"), "2");
    let (_tmp, out) = deploy(FIXED_ARGS);
    for absent in [
        "horizontalpodautoscaler.yaml",
        "servicemonitor.yaml",
        "prometheus-adapter/config.yaml",
    ] {
        assert!(!out.join(absent).exists(), "{absent} was written");
    }
    let deployment: Deployment = read(&out, "deployment.yaml");
    let spec = deployment.spec.as_ref().unwrap();
    assert_eq!(spec.replicas, Some(3));
    let pod = spec.template.spec.as_ref().unwrap();
    assert!(pod
        .volumes
        .iter()
        .flatten()
        .all(|v| v.persistent_volume_claim.is_none()));
    let triton = triton(pod);
    let args = triton.args.clone().unwrap();
    assert!(args.contains(&"--model-repository=s3://models/clip/vit-l-14".to_owned()));
    assert_eq!(
        args.last().map(String::as_str),
        Some("--cache-config=local,size=268435456")
    );
    let secret = &triton.env_from.as_ref().unwrap()[0];
    assert_eq!(secret.secret_ref.as_ref().unwrap().name, "clip-s3");
    // 1200 s at one probe every 10 s.
    let startup = triton.startup_probe.as_ref().unwrap();
    assert_eq!(
        startup.failure_threshold.unwrap() * startup.period_seconds.unwrap(),
        1200
    );

    let kserve: InferenceService = read(&out, "kserve/inferenceservice.yaml");
    let predictor = &kserve.spec.predictor;
    assert_eq!(predictor.triton.storage_uri, "s3://models/clip/vit-l-14");
    assert_eq!(predictor.triton.runtime_version, "24.10-py3");
    assert_eq!((predictor.min_replicas, predictor.max_replicas), (3, 3));
    assert_eq!(
        predictor.service_account_name.as_deref(),
        Some("clip-serving")
    );
}

#[test]
fn a_claim_sub_path_is_mounted_and_named_for_kserve() {
    let mut args = DEFAULT_ARGS.to_vec();
    args.extend(["--repository", "pvc:shared-models/clip/vit-b-32"]);
    let (_tmp, out) = deploy(&args);
    let deployment: Deployment = read(&out, "deployment.yaml");
    let pod = deployment.spec.unwrap().template.spec.unwrap();
    let mount = triton(&pod)
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.mount_path == "/models")
        .cloned()
        .unwrap();
    assert_eq!(mount.sub_path.as_deref(), Some("clip/vit-b-32"));
    let kserve: InferenceService = read(&out, "kserve/inferenceservice.yaml");
    assert_eq!(
        kserve.spec.predictor.triton.storage_uri,
        "pvc://shared-models/clip/vit-b-32"
    );
}

#[test]
fn a_non_empty_folder_needs_force_and_force_removes_stale_objects() {
    let (_tmp, out) = deploy(DEFAULT_ARGS);
    assert!(out.join("horizontalpodautoscaler.yaml").exists());
    std::fs::write(out.join("kustomization.yaml"), "resources: []\n").unwrap();

    let mut fixed = DEFAULT_ARGS.to_vec();
    fixed.extend(["--replicas", "2"]);
    let refused = run(&out, &fixed);
    assert!(!refused.status.success());
    assert!(common::stderr(&refused).contains("--force"));
    assert!(out.join("horizontalpodautoscaler.yaml").exists());

    fixed.push("--force");
    assert!(run(&out, &fixed).status.success());
    assert!(!out.join("horizontalpodautoscaler.yaml").exists());
    assert!(!out.join("prometheus-adapter/config.yaml").exists());
    assert!(
        out.join("kustomization.yaml").exists(),
        "other files are kept"
    );
}

#[test]
fn bad_options_are_refused_before_anything_is_written() {
    let cases: &[(&[&str], &str)] = &[
        (&["--name", "Clip"], "--name"),
        (&["--name", &"c".repeat(55)], "--name"),
        (&["--namespace", "ml_serving"], "--namespace"),
        (&["--memory", "16GB"], "--memory"),
        (&["--cpu", "0"], "--cpu"),
        (&["--repository", "http://models/clip"], "--repository"),
        (&["--repository", "pvc:models/../etc"], "--repository"),
        (
            &["--min-replicas", "4", "--max-replicas", "2"],
            "--min-replicas",
        ),
        (&["--triton-arg=--http-port=9000"], "--http-port"),
        (&["--backend-dir", "clip"], "--backend-dir"),
        (&["--triton-tag", "24.10:py3"], "--triton-tag"),
        (
            &["--replicas", "2", "--max-replicas", "4"],
            "--max-replicas",
        ),
    ];
    for (extra, named) in cases {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("k8s");
        let mut args = DEFAULT_ARGS.to_vec();
        args.extend_from_slice(extra);
        let output = run(&out, &args);
        let stderr = common::stderr(&output);
        assert!(!output.status.success(), "{extra:?} was accepted");
        assert!(stderr.contains(named), "{extra:?}: {stderr}");
        assert!(!out.exists(), "{extra:?} wrote files");
    }
}
