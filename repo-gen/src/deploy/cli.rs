//! The `repo-gen deploy` command line.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::options::{K8sOptions, ModelRepository, Replicas};
use super::DeployError;

#[derive(Subcommand)]
pub enum DeployCommand {
    /// Kubernetes manifests for the NGC Triton image with the `clip` backend:
    /// Deployment, Services (regular and headless), PodDisruptionBudget,
    /// HorizontalPodAutoscaler on queue time, ServiceMonitor, and a KServe
    /// InferenceService variant. Nothing is applied.
    #[command(
        after_help = "Writes one object per file: `kubectl apply -f DIR` applies the \
                            Deployment and what goes with it; DIR/kserve/ holds the KServe \
                            variant instead, DIR/prometheus-adapter/ the adapter rule behind \
                            the HPA's metric.\n\n\
                            Example:\n  repo-gen deploy k8s --out k8s --name clip-vit-b-32 \
                            --backend-image registry.example/clip-backend:0.1.0 \
                            --repository pvc:clip-models/vit-b-32 --gpus 1 --max-replicas 6"
    )]
    // Boxed: the options outweigh every other subcommand of repo-gen.
    K8s(Box<K8sArgs>),
    /// Prometheus's scrape config and alerting rules, and a Grafana dashboard, for
    /// Triton serving a repository: see `repo_gen::monitoring`.
    Monitoring(Box<crate::monitoring::MonitoringArgs>),
}

#[derive(Args)]
pub struct K8sArgs {
    /// The folder to write; must be new or empty unless --force.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Write into a non-empty --out: files this command writes are replaced, and the ones
    /// this run leaves out (an HPA after --replicas, say) removed; other files are kept.
    #[arg(long)]
    force: bool,
    /// Name of every object (the headless Service is NAME-headless).
    #[arg(long, default_value = "clip")]
    name: String,
    /// Namespace written into every object (default: none, kubectl's current one).
    #[arg(long)]
    namespace: Option<String>,

    /// The model repository: pvc:CLAIM[/SUBPATH] (mounted read-only), or s3://BUCKET/PATH /
    /// gs://BUCKET/PATH, which Triton reads itself. Default: pvc:NAME-models.
    #[arg(
        long,
        value_name = "pvc:CLAIM[/PATH]|s3://..|gs://..",
        help_heading = "Serving"
    )]
    repository: Option<String>,
    /// Image holding the backend folder (--backend-dir) and a `cp` command; an init
    /// container copies the folder into /opt/tritonserver/backends/clip.
    #[arg(long, value_name = "IMAGE", help_heading = "Serving")]
    backend_image: String,
    /// Folder in --backend-image with libtriton_clip.so (and, for --runtime ort,
    /// libonnxruntime); all of its files are copied.
    #[arg(
        long,
        value_name = "PATH",
        default_value = "/clip",
        help_heading = "Serving"
    )]
    backend_dir: String,
    /// Triton image, without tag.
    #[arg(
        long,
        value_name = "IMAGE",
        default_value = "nvcr.io/nvidia/tritonserver",
        help_heading = "Serving"
    )]
    triton_image: String,
    /// Triton image tag (KServe: runtimeVersion). 24.10-py3 is Triton 2.51, the version
    /// the tests run.
    #[arg(
        long,
        value_name = "TAG",
        default_value = "24.10-py3",
        help_heading = "Serving"
    )]
    triton_tag: String,
    /// A further tritonserver flag, e.g. --triton-arg=--cache-config=local,size=268435456
    /// (repeatable). Ports and --model-repository are repo-gen's.
    #[arg(
        long,
        value_name = "FLAG",
        allow_hyphen_values = true,
        help_heading = "Serving"
    )]
    triton_arg: Vec<String>,
    /// ORT_DYLIB_PATH in the Triton container, for --runtime ort repositories generated
    /// without --ort-library, e.g. /opt/tritonserver/backends/clip/libonnxruntime.so.
    #[arg(long, value_name = "PATH", help_heading = "Serving")]
    ort_dylib_path: Option<String>,
    /// How long the startup probe gives Triton to load every model (and warm it up).
    #[arg(
        long,
        value_name = "S",
        default_value_t = 600,
        help_heading = "Serving"
    )]
    startup_timeout_s: u32,

    /// nvidia.com/gpu per pod; 0 serves on the CPU.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 1,
        help_heading = "Resources"
    )]
    gpus: u16,
    /// CPU request of the Triton container (preprocessing runs on the CPU); no limit is set.
    #[arg(
        long,
        value_name = "QUANTITY",
        default_value = "4",
        help_heading = "Resources"
    )]
    cpu: String,
    /// Memory request and limit of the Triton container.
    #[arg(
        long,
        value_name = "QUANTITY",
        default_value = "16Gi",
        help_heading = "Resources"
    )]
    memory: String,
    /// Schedule only on nodes with this label (repeatable), e.g.
    /// nvidia.com/gpu.product=NVIDIA-L4.
    #[arg(long, value_name = "KEY=VALUE", value_parser = parse_key_value,
          help_heading = "Resources")]
    node_selector: Vec<(String, String)>,

    /// A fixed number of pods and no autoscaler; conflicts with the autoscaler's options.
    #[arg(long, value_name = "N", help_heading = "Scaling",
          conflicts_with_all = ["min_replicas", "max_replicas", "target_queue_us"])]
    replicas: Option<u16>,
    /// Fewest pods the HorizontalPodAutoscaler keeps.
    #[arg(long, value_name = "N", default_value_t = 2, help_heading = "Scaling")]
    min_replicas: u16,
    /// Most pods the HorizontalPodAutoscaler starts.
    #[arg(long, value_name = "N", default_value_t = 8, help_heading = "Scaling")]
    max_replicas: u16,
    /// Average queue time per request (microseconds, Triton's unit) the autoscaler keeps
    /// each pod at.
    #[arg(
        long,
        value_name = "US",
        default_value_t = 10_000,
        help_heading = "Scaling"
    )]
    target_queue_us: u32,
    /// Leave out the ServiceMonitor (no Prometheus Operator in the cluster).
    #[arg(long, help_heading = "Scaling")]
    no_service_monitor: bool,

    /// Secret whose keys become the Triton container's environment: object storage
    /// credentials such as AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION.
    #[arg(long, value_name = "SECRET", help_heading = "Access")]
    storage_secret: Option<String>,
    /// Service account of the pods (cloud workload identity; KServe's storage credentials).
    #[arg(long, value_name = "NAME", help_heading = "Access")]
    service_account: Option<String>,
    /// Secret for pulling a private --backend-image (repeatable).
    #[arg(long, value_name = "SECRET", help_heading = "Access")]
    image_pull_secret: Vec<String>,
}

fn parse_key_value(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .ok_or_else(|| format!("expected KEY=VALUE, got {text:?}"))
}

impl K8sArgs {
    fn options(self) -> Result<(PathBuf, bool, K8sOptions), DeployError> {
        let repository = match self.repository {
            Some(text) => text.parse()?,
            None => ModelRepository::Claim {
                claim: format!("{}-models", self.name),
                sub_path: None,
            },
        };
        let options = K8sOptions {
            replicas: match self.replicas {
                Some(count) => Replicas::Fixed(count),
                None => Replicas::Autoscaled {
                    min: self.min_replicas,
                    max: self.max_replicas,
                    target_queue_us: self.target_queue_us,
                },
            },
            name: self.name,
            namespace: self.namespace,
            gpus: self.gpus,
            cpu: self.cpu,
            memory: self.memory,
            triton_image: self.triton_image,
            triton_tag: self.triton_tag,
            backend_image: self.backend_image,
            backend_dir: self.backend_dir,
            repository,
            storage_secret: self.storage_secret,
            service_account: self.service_account,
            image_pull_secrets: self.image_pull_secret,
            ort_dylib_path: self.ort_dylib_path,
            node_selector: BTreeMap::from_iter(self.node_selector),
            triton_args: self.triton_arg,
            startup_timeout_s: self.startup_timeout_s,
            service_monitor: !self.no_service_monitor,
        };
        Ok((self.out, self.force, options))
    }
}

/// Runs `repo-gen deploy ...`.
pub fn run(command: DeployCommand) -> ExitCode {
    let args = match command {
        DeployCommand::K8s(args) => args,
        DeployCommand::Monitoring(args) => return crate::monitoring::run(*args),
    };
    let result = (*args).options().and_then(|(out, force, options)| {
        let manifests = super::manifests(&options)?;
        super::write(&out, &manifests, force)?;
        Ok((out, manifests))
    });
    match result {
        Ok((out, manifests)) => {
            for manifest in &manifests {
                eprintln!("repo-gen: wrote {}", out.join(manifest.file).display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("repo-gen: error: {e}");
            ExitCode::FAILURE
        }
    }
}
