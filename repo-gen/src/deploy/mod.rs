//! `repo-gen deploy k8s`: Kubernetes manifests that serve a repo-gen
//! repository with the NGC Triton image and the `clip` backend.
//!
//! Every object is built from typed API structs (k8s-openapi for the
//! built-in kinds; minimal structs of our own for the ServiceMonitor, the
//! KServe InferenceService and the Prometheus adapter rule) and written as
//! YAML, one object per file:
//!
//! ```text
//! deployment.yaml, service.yaml, service-headless.yaml,
//! poddisruptionbudget.yaml, horizontalpodautoscaler.yaml, servicemonitor.yaml
//!                                      `kubectl apply -f DIR`
//! prometheus-adapter/config.yaml       the adapter rule behind the HPA's metric
//! kserve/inferenceservice.yaml         the KServe variant, instead of the above
//! ```
//!
//! The subfolders keep what is not for `kubectl apply -f DIR` out of it.

mod cli;
pub mod kserve;
pub mod monitoring;
mod objects;
mod options;
mod pod;

use std::path::{Path, PathBuf};

use serde::Serialize;

pub use cli::{run, DeployCommand, K8sArgs};
pub use options::{K8sOptions, ModelRepository, Replicas};

/// What can stop `repo-gen deploy k8s`.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("{0}")]
    Invalid(String),
    #[error(
        "--out {} is not empty; pass --force to write into it (files repo-gen deploy writes \
         are replaced or removed, others kept), or choose an empty or new folder",
        .0.display()
    )]
    NotEmpty(PathBuf),
    #[error("cannot write {file} as YAML: {source}")]
    Yaml {
        file: &'static str,
        #[source]
        source: serde_norway::Error,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// One written file: its path under `--out` and its YAML.
#[derive(Clone, Debug)]
pub struct Manifest {
    pub file: &'static str,
    pub yaml: String,
}

pub const DEPLOYMENT_FILE: &str = "deployment.yaml";
pub const SERVICE_FILE: &str = "service.yaml";
pub const HEADLESS_SERVICE_FILE: &str = "service-headless.yaml";
pub const DISRUPTION_BUDGET_FILE: &str = "poddisruptionbudget.yaml";
pub const AUTOSCALER_FILE: &str = "horizontalpodautoscaler.yaml";
pub const SERVICE_MONITOR_FILE: &str = "servicemonitor.yaml";
pub const ADAPTER_CONFIG_FILE: &str = "prometheus-adapter/config.yaml";
pub const INFERENCE_SERVICE_FILE: &str = "kserve/inferenceservice.yaml";

/// Every file this command can write; `--force` removes the ones a run
/// leaves out, so a stale HPA or ServiceMonitor is never applied again.
const ALL_FILES: [&str; 8] = [
    DEPLOYMENT_FILE,
    SERVICE_FILE,
    HEADLESS_SERVICE_FILE,
    DISRUPTION_BUDGET_FILE,
    AUTOSCALER_FILE,
    SERVICE_MONITOR_FILE,
    ADAPTER_CONFIG_FILE,
    INFERENCE_SERVICE_FILE,
];

const HEADER: &str =
    "# Written by `repo-gen deploy k8s`; change its options and run it again rather than \
                      editing.\n";

fn to_yaml(file: &'static str, object: &impl Serialize) -> Result<Manifest, DeployError> {
    let body =
        serde_norway::to_string(object).map_err(|source| DeployError::Yaml { file, source })?;
    Ok(Manifest {
        file,
        yaml: format!("{HEADER}{body}"),
    })
}

/// The manifests for `options`, in the order they are listed above.
pub fn manifests(options: &K8sOptions) -> Result<Vec<Manifest>, DeployError> {
    options.check()?;
    let mut out = vec![
        to_yaml(DEPLOYMENT_FILE, &objects::deployment(options))?,
        to_yaml(SERVICE_FILE, &objects::service(options))?,
        to_yaml(HEADLESS_SERVICE_FILE, &objects::headless_service(options))?,
        to_yaml(DISRUPTION_BUDGET_FILE, &objects::disruption_budget(options))?,
    ];
    if let Some(autoscaler) = objects::autoscaler(options) {
        out.push(to_yaml(AUTOSCALER_FILE, &autoscaler)?);
    }
    if options.service_monitor {
        out.push(to_yaml(
            SERVICE_MONITOR_FILE,
            &monitoring::service_monitor(options),
        )?);
    }
    if matches!(options.replicas, Replicas::Autoscaled { .. }) {
        out.push(to_yaml(ADAPTER_CONFIG_FILE, &monitoring::adapter_config())?);
    }
    out.push(to_yaml(
        INFERENCE_SERVICE_FILE,
        &kserve::inference_service(options),
    )?);
    Ok(out)
}

/// Writes `manifests` under `out`, which must be new or empty unless `force`.
pub fn write(out: &Path, manifests: &[Manifest], force: bool) -> Result<(), DeployError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| DeployError::Io { path, source }
    };
    let is_empty = match std::fs::read_dir(out) {
        Ok(mut entries) => entries.next().is_none(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
        Err(e) => return Err(io(out)(e)),
    };
    if !is_empty && !force {
        return Err(DeployError::NotEmpty(out.to_path_buf()));
    }
    for file in ALL_FILES {
        let path = out.join(file);
        if !manifests.iter().any(|m| m.file == file) && path.exists() {
            std::fs::remove_file(&path).map_err(io(&path))?;
        }
    }
    for manifest in manifests {
        let path = out.join(manifest.file);
        let folder = path.parent().expect("a manifest path has a folder");
        std::fs::create_dir_all(folder).map_err(io(folder))?;
        std::fs::write(&path, &manifest.yaml).map_err(io(&path))?;
    }
    Ok(())
}
