//! Builds `libtriton_clip.so` and runs the real server on it.

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use clip_test_support::install;

use crate::{http, workspace_root};

/// Builds `package` with the profile these tests were built with, into the
/// same target folder, and returns `<target>/<profile>/<artifact>`.
fn build(package: &str, artifact: &str) -> PathBuf {
    // The test binary sits in <target>/<profile>/deps/.
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps");
    let target_dir = profile_dir.parent().expect("target folder");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .current_dir(workspace_root())
        .args(["build", "-p", package, "--target-dir"])
        .arg(target_dir);
    if !cfg!(debug_assertions) {
        build.arg("--release");
    }
    let status = build.status().expect("run cargo build");
    assert!(status.success(), "cargo build -p {package} failed");
    let path = profile_dir.join(artifact);
    assert!(
        path.is_file(),
        "cargo build -p {package} left no {}",
        path.display()
    );
    path
}

/// `libtriton_clip.so`, built once per test binary.
pub fn backend_library() -> &'static Path {
    static LIBRARY: OnceLock<PathBuf> = OnceLock::new();
    LIBRARY.get_or_init(|| build("clip-backend", "libtriton_clip.so"))
}

/// The `repo-gen` binary, built once per test binary.
pub fn repo_gen() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| build("repo-gen", "repo-gen"))
}

/// The `clip-client` command line (package `clip-client-cli`), built once per test binary.
pub fn clip_client_cli() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| build("clip-client-cli", "clip-client"))
}

/// The local tritonserver binary, installed once by the project's own script.
pub fn tritonserver() -> &'static Path {
    static SERVER: OnceLock<PathBuf> = OnceLock::new();
    SERVER.get_or_init(|| install("install-triton.sh"))
}

/// The python of a virtual environment holding NVIDIA's `tritonclient[grpc]`
/// at the server's version, installed once by the project's own script.
pub fn tritonclient_python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| install("install-tritonclient.sh"))
}

/// Generates a repository from the tiny CLIP fixture (`quick_gelu`) at
/// `out` with repo-gen (`--runtime ort`, CPU), plus `extra` flags.
pub fn tiny_clip_repository(out: &Path, extra: &[&str]) {
    weights_repository(&crate::fixture("tiny-clip/quick_gelu"), out, extra);
}

/// Generates a repository from the weights folder `weights` (`--weights`)
/// at `out` with repo-gen (`--runtime ort`, CPU), plus `extra` flags.
pub fn weights_repository(weights: &Path, out: &Path, extra: &[&str]) {
    let status = Command::new(repo_gen())
        .arg("--weights")
        .arg(weights)
        .arg("--out")
        .arg(out)
        .args(["--runtime", "ort", "--gpus", "none"])
        .args(extra)
        .arg("--ort-library")
        .arg(onnxruntime_library())
        .status()
        .expect("run repo-gen");
    assert!(status.success(), "repo-gen failed");
}

/// `scripts/launch-triton.sh` on `repository`, its output appended to `log_path`.
fn launch(repository: &Path, extra: &[String], ports: [u16; 3], log_path: &Path) -> Child {
    let log = File::options()
        .create(true)
        .append(true)
        .open(log_path)
        .expect("server log");
    Command::new("bash")
        .arg(workspace_root().join("scripts/launch-triton.sh"))
        .args(["--mode", "local", "--model-repository"])
        .arg(repository)
        .arg("--backend-lib")
        .arg(backend_library())
        .args(["--http-port", &ports[0].to_string()])
        .args(["--grpc-port", &ports[1].to_string()])
        .args(["--metrics-port", &ports[2].to_string()])
        .arg("--")
        .args(extra)
        .stdout(log.try_clone().expect("log handle"))
        .stderr(log)
        .spawn()
        .expect("start scripts/launch-triton.sh")
}

/// Ports nothing listens on now, all different: every listener is held
/// until the last is bound, since a port freed at once can be handed out
/// again (tritonserver refuses HTTP and gRPC on one port).
fn free_ports<const N: usize>() -> [u16; N] {
    let listeners: [TcpListener; N] =
        std::array::from_fn(|_| TcpListener::bind("127.0.0.1:0").expect("bind a free port"));
    listeners.map(|l| l.local_addr().expect("bound address").port())
}

/// A running `tritonserver`, killed when dropped.
pub struct Server {
    child: Child,
    pub http_url: String,
    pub grpc_url: String,
    log_path: PathBuf,
    _log_dir: tempfile::TempDir,
    /// What [`Server::restart`] launches again: the repository, the flags and the ports.
    repository: PathBuf,
    extra: Vec<String>,
    ports: [u16; 3],
}

impl Server {
    /// Starts the server through `scripts/launch-triton.sh` and waits until
    /// every model loaded. Panics with the server log if it does not.
    pub fn start(repository: &Path) -> Server {
        Server::start_with(repository, &[])
    }

    /// As [`Server::start`], with extra `tritonserver` flags. With
    /// `--strict-readiness=false` it waits for the server, not the models.
    pub fn start_with(repository: &Path, extra: &[&str]) -> Server {
        tritonserver();
        let log_dir = tempfile::tempdir().expect("log folder");
        let log_path = log_dir.path().join("tritonserver.log");
        let ports = free_ports();
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let child = launch(repository, &extra, ports, &log_path);
        let mut server = Server {
            child,
            http_url: format!("http://127.0.0.1:{}", ports[0]),
            grpc_url: format!("http://127.0.0.1:{}", ports[1]),
            log_path,
            _log_dir: log_dir,
            repository: repository.to_owned(),
            extra,
            ports,
        };
        server.wait_ready(Duration::from_secs(120));
        server
    }

    /// Triton's Prometheus endpoint, `http://127.0.0.1:PORT/metrics`.
    pub fn metrics_url(&self) -> String {
        format!("http://127.0.0.1:{}/metrics", self.ports[2])
    }

    /// Kills the server (SIGKILL) and waits for it to be gone.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Kills the server if it runs, then starts it again on the same ports
    /// and waits until it is ready; its log goes on in the same file.
    pub fn restart(&mut self) {
        self.kill();
        self.child = launch(&self.repository, &self.extra, self.ports, &self.log_path);
        self.wait_ready(Duration::from_secs(120));
    }

    fn wait_ready(&mut self, limit: Duration) {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("poll server") {
                panic!(
                    "tritonserver exited ({status}) before it was ready:\n{}",
                    self.log()
                );
            }
            // tritonserver opens its metrics endpoint after the HTTP one that
            // answers readiness: wait for both, or a test reading /metrics
            // right away can find nothing listening yet.
            let metrics = ("127.0.0.1", self.ports[2]);
            if matches!(http::get(&self.http_url, "/v2/health/ready"), Ok((200, _)))
                && std::net::TcpStream::connect(metrics).is_ok()
            {
                return;
            }
            if start.elapsed() > limit {
                panic!("tritonserver not ready after {limit:?}:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Starts a server that keeps serving when some models fail to load,
    /// for tests of models that must fail alone.
    pub fn start_tolerant(repository: &Path) -> Server {
        Server::start_with(
            repository,
            &["--exit-on-error=false", "--strict-readiness=false"],
        )
    }

    /// The state of a model in the repository index ("READY", "UNAVAILABLE", ...)
    /// and the reason Triton gives for it.
    pub fn model_state(&self, name: &str) -> (String, String) {
        let (status, index) = http::post_json(
            &self.http_url,
            "/v2/repository/index",
            &serde_json::json!({}),
        )
        .expect("repository index");
        assert_eq!(status, 200, "{index}");
        let entry = index
            .as_array()
            .and_then(|models| models.iter().find(|m| m["name"] == name))
            .unwrap_or_else(|| panic!("no model {name} in {index}"));
        let text = |key: &str| entry[key].as_str().unwrap_or_default().to_owned();
        (text("state"), text("reason"))
    }

    /// Everything the server printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// True while the server process is alive and answers `/v2/health/live`.
    pub fn is_live(&mut self) -> bool {
        self.child.try_wait().ok().flatten().is_none()
            && matches!(http::get(&self.http_url, "/v2/health/live"), Ok((200, _)))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `libonnxruntime.so` for the `onnx_encoder` kind, installed once by the project's own script.
pub use clip_test_support::ort_library as onnxruntime_library;
