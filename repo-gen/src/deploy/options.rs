//! What `repo-gen deploy k8s` is asked for, checked before anything is
//! written: Kubernetes refuses bad names and quantities only at apply time,
//! far from the command that made them.

use std::collections::BTreeMap;

use super::DeployError;

/// Where Triton finds the model repository.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelRepository {
    /// `pvc:CLAIM[/SUBPATH]`: a PersistentVolumeClaim holding repo-gen's output.
    Claim {
        claim: String,
        sub_path: Option<String>,
    },
    /// `s3://...` or `gs://...`: read by Triton itself (`--model-repository=URL`).
    ObjectStorage(String),
}

impl std::str::FromStr for ModelRepository {
    type Err = DeployError;

    fn from_str(text: &str) -> Result<Self, DeployError> {
        if let Some(rest) = text.strip_prefix("pvc:") {
            let (claim, sub_path) = match rest.split_once('/') {
                Some((claim, sub_path)) => (claim, Some(sub_path.trim_matches('/'))),
                None => (rest, None),
            };
            check_subdomain("the claim in --repository pvc:CLAIM", claim)?;
            let sub_path = sub_path.filter(|path| !path.is_empty());
            if let Some(path) = sub_path {
                // The API server refuses absolute subPaths and any '..' element.
                if path.split('/').any(|part| part == ".." || part.is_empty()) {
                    return Err(invalid(format!(
                        "--repository {text}: the sub-path must be a plain relative path \
                         (no '..' and no empty elements)"
                    )));
                }
            }
            return Ok(Self::Claim {
                claim: claim.to_owned(),
                sub_path: sub_path.map(str::to_owned),
            });
        }
        let bucket_path = ["s3://", "gs://"]
            .iter()
            .find_map(|scheme| text.strip_prefix(scheme));
        match bucket_path {
            Some(rest) if !rest.is_empty() && !rest.contains(char::is_whitespace) => {
                Ok(Self::ObjectStorage(text.to_owned()))
            }
            _ => Err(invalid(format!(
                "--repository {text:?}: expected pvc:CLAIM[/SUBPATH], s3://BUCKET/PATH or \
                 gs://BUCKET/PATH"
            ))),
        }
    }
}

/// How many Triton pods run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Replicas {
    /// A fixed count; no HorizontalPodAutoscaler is written.
    Fixed(u16),
    /// A HorizontalPodAutoscaler on queue time per request owns the count.
    Autoscaled {
        min: u16,
        max: u16,
        /// Average queue time per request, in microseconds, that the HPA keeps each pod at.
        target_queue_us: u32,
    },
}

/// Everything `repo-gen deploy k8s` is asked for.
#[derive(Clone, Debug)]
pub struct K8sOptions {
    /// Name of every object; the headless Service adds `-headless`.
    pub name: String,
    /// Written into every object; none means kubectl's current namespace.
    pub namespace: Option<String>,
    pub replicas: Replicas,
    /// `nvidia.com/gpu` per pod; 0 runs Triton on the CPU.
    pub gpus: u16,
    /// CPU request of the Triton container (no limit: throttling hurts latency).
    pub cpu: String,
    /// Memory request and limit of the Triton container.
    pub memory: String,
    /// The Triton image without tag, e.g. nvcr.io/nvidia/tritonserver.
    pub triton_image: String,
    /// The Triton image tag; KServe's `runtimeVersion`.
    pub triton_tag: String,
    /// Image holding the `clip` backend, with a `cp` command.
    pub backend_image: String,
    /// Folder in `backend_image` whose files (libtriton_clip.so and anything beside it) are copied.
    pub backend_dir: String,
    pub repository: ModelRepository,
    /// Secret whose keys become the Triton container's environment (object storage credentials).
    pub storage_secret: Option<String>,
    pub service_account: Option<String>,
    pub image_pull_secrets: Vec<String>,
    /// `ORT_DYLIB_PATH` in the Triton container, for `--runtime ort` repositories.
    pub ort_dylib_path: Option<String>,
    pub node_selector: BTreeMap<String, String>,
    /// More tritonserver flags, after the ones repo-gen sets.
    pub triton_args: Vec<String>,
    /// How long the startup probe waits for every model to load.
    pub startup_timeout_s: u32,
    /// Write the Prometheus Operator's ServiceMonitor.
    pub service_monitor: bool,
}

/// Flags repo-gen sets itself: the probes, Services and the repository volume depend on them.
const OWNED_TRITON_FLAGS: [&str; 4] = [
    "--model-repository",
    "--http-port",
    "--grpc-port",
    "--metrics-port",
];

impl K8sOptions {
    /// Refuses what the API server or Triton would refuse later.
    pub fn check(&self) -> Result<(), DeployError> {
        // A DNS-1035 label, as Services need; 54 leaves room for "-headless".
        check_label("--name", &self.name, 54, true)?;
        if let Some(namespace) = &self.namespace {
            check_label("--namespace", namespace, 63, false)?;
        }
        match self.replicas {
            Replicas::Fixed(0) => return Err(invalid("--replicas must be at least 1".into())),
            Replicas::Autoscaled { min, max, .. } if min == 0 || max < min => {
                return Err(invalid(format!(
                    "--min-replicas {min} and --max-replicas {max}: need 1 <= min <= max"
                )))
            }
            Replicas::Autoscaled {
                target_queue_us: 0, ..
            } => return Err(invalid("--target-queue-us must be at least 1".into())),
            _ => {}
        }
        check_quantity("--cpu", &self.cpu)?;
        check_quantity("--memory", &self.memory)?;
        check_image("--triton-image", &self.triton_image)?;
        check_image("--backend-image", &self.backend_image)?;
        if self.triton_tag.is_empty()
            || !self
                .triton_tag
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        {
            return Err(invalid(format!(
                "--triton-tag {:?} is not an image tag (letters, digits, '.', '_', '-')",
                self.triton_tag
            )));
        }
        if !self.backend_dir.starts_with('/') {
            return Err(invalid(format!(
                "--backend-dir {:?} must be an absolute path in the backend image",
                self.backend_dir
            )));
        }
        for (what, name) in [
            ("--storage-secret", &self.storage_secret),
            ("--service-account", &self.service_account),
        ] {
            if let Some(name) = name {
                check_subdomain(what, name)?;
            }
        }
        for name in &self.image_pull_secrets {
            check_subdomain("--image-pull-secret", name)?;
        }
        if let Some(path) = &self.ort_dylib_path {
            if !path.starts_with('/') {
                return Err(invalid(format!(
                    "--ort-dylib-path {path:?} must be an absolute path in the Triton container"
                )));
            }
        }
        for (key, value) in &self.node_selector {
            if key.is_empty() || value.len() > 63 {
                return Err(invalid(format!(
                    "--node-selector {key}={value}: need a key and a value of at most 63 characters"
                )));
            }
        }
        for arg in &self.triton_args {
            let flag = arg.split('=').next().unwrap_or_default();
            if OWNED_TRITON_FLAGS.contains(&flag) {
                return Err(invalid(format!(
                    "--triton-arg {arg}: repo-gen sets {flag} itself (the probes, Services and \
                     repository volume depend on it)"
                )));
            }
        }
        if self.startup_timeout_s < 10 {
            return Err(invalid("--startup-timeout-s must be at least 10".into()));
        }
        Ok(())
    }
}

fn invalid(message: String) -> DeployError {
    DeployError::Invalid(message)
}

/// An RFC 1123 label (`dns_1035`: starting with a letter, as Service names must).
fn check_label(what: &str, name: &str, max: usize, dns_1035: bool) -> Result<(), DeployError> {
    let first_ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || (!dns_1035 && c.is_ascii_digit()));
    let ok = first_ok
        && name.len() <= max
        && !name.ends_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "{what} {name:?}: use at most {max} lowercase letters, digits and '-', starting with \
             a {} and ending with a letter or digit",
            if dns_1035 {
                "letter"
            } else {
                "letter or digit"
            }
        )))
    }
}

/// An RFC 1123 subdomain, as object names (claims, secrets, accounts) are.
fn check_subdomain(what: &str, name: &str) -> Result<(), DeployError> {
    let ok = name.len() <= 253
        && !name.is_empty()
        && name.split('.').all(|label| {
            label.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                && label.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                && label
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        });
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "{what} {name:?} is not a Kubernetes object name (lowercase letters, digits, '-' \
             and '.')"
        )))
    }
}

fn check_image(what: &str, image: &str) -> Result<(), DeployError> {
    if image.is_empty() || image.contains(char::is_whitespace) {
        return Err(invalid(format!(
            "{what} {image:?} is not an image reference"
        )));
    }
    Ok(())
}

/// A positive Kubernetes quantity: a decimal number with an optional
/// binary (Ki..Ei), decimal (m, k..E) or exponent (e3) suffix.
fn check_quantity(what: &str, text: &str) -> Result<(), DeployError> {
    const SUFFIXES: [&str; 16] = [
        "", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "n", "u", "m", "k", "M", "G", "T", "P", "E",
    ];
    let number_end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(number_end);
    let number_ok =
        number.matches('.').count() <= 1 && number.chars().any(|c| c.is_ascii_digit() && c != '0');
    let suffix_ok = SUFFIXES.contains(&suffix)
        || suffix
            .strip_prefix(['e', 'E'])
            .map(|exponent| exponent.strip_prefix(['+', '-']).unwrap_or(exponent))
            .is_some_and(|digits| !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit()));
    if number_ok && suffix_ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "{what} {text:?} is not a positive Kubernetes quantity (e.g. 4, 500m, 16Gi)"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        for good in ["4", "500m", "16Gi", "1.5", "2e3", "1E", "0.5Gi"] {
            check_quantity("q", good).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        for bad in ["", "0", "-1", "16GB", "1..5", "Gi", "1e", "abc", "16 Gi"] {
            assert!(check_quantity("q", bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn repositories() {
        assert_eq!(
            "pvc:models/clip/vit-b-32"
                .parse::<ModelRepository>()
                .unwrap(),
            ModelRepository::Claim {
                claim: "models".into(),
                sub_path: Some("clip/vit-b-32".into())
            }
        );
        assert_eq!(
            "pvc:models".parse::<ModelRepository>().unwrap(),
            ModelRepository::Claim {
                claim: "models".into(),
                sub_path: None
            }
        );
        assert_eq!(
            "gs://bucket/repo".parse::<ModelRepository>().unwrap(),
            ModelRepository::ObjectStorage("gs://bucket/repo".into())
        );
        for bad in [
            "pvc:Models",
            "pvc:m/../x",
            "s3://",
            "http://x",
            "/models",
            "as://a/b",
        ] {
            assert!(
                bad.parse::<ModelRepository>().is_err(),
                "{bad} was accepted"
            );
        }
    }

    #[test]
    fn labels() {
        check_label("n", "clip-vit-b-32", 54, true).unwrap();
        for bad in ["", "9clip", "Clip", "clip-", "clip_b", &"a".repeat(55)] {
            assert!(
                check_label("n", bad, 54, true).is_err(),
                "{bad} was accepted"
            );
        }
        check_label("n", "9ns", 63, false).unwrap();
    }
}
