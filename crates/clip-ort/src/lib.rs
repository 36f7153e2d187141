//! ONNX Runtime, found and loaded once per process. The backend's
//! `onnx_encoder` kind and clip-export's verification both go through here,
//! so they find the library the same way: an explicit path always wins over
//! `ORT_DYLIB_PATH`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use ort::environment::Environment;
pub use ort::logging::LogLevel;

/// The environment variable naming libonnxruntime.so when no path is given.
pub const ORT_DYLIB_ENV: &str = "ORT_DYLIB_PATH";

/// Said with every failure to find or load the library.
pub const INSTALL_HINT: &str =
    "scripts/install-onnxruntime.sh installs ONNX Runtime 1.31.1 and prints the library's path";

#[derive(Debug, thiserror::Error)]
pub enum OrtError {
    /// No library was named, or the name is not a file.
    #[error("{0} ({INSTALL_HINT})")]
    NotFound(String),
    /// The library is there but would not load or start.
    #[error("{0} ({INSTALL_HINT})")]
    Load(String),
    /// Another library is already loaded in this process.
    #[error("{0}")]
    AlreadyLoaded(String),
}

/// Where the library comes from: `explicit` (named by whoever asked: a
/// command-line flag, a config parameter) when given, else `env`, the value
/// of `ORT_DYLIB_PATH`. `explicit_origin` names the explicit source in errors.
pub fn library_path(
    explicit: Option<&Path>,
    explicit_origin: &str,
    env: Option<OsString>,
) -> Result<PathBuf, OrtError> {
    let (path, origin) = match (explicit, env.filter(|v| !v.is_empty())) {
        (Some(path), _) => (path.to_path_buf(), explicit_origin),
        (None, Some(value)) => (PathBuf::from(value), ORT_DYLIB_ENV),
        (None, None) => {
            return Err(OrtError::NotFound(format!(
                "no ONNX Runtime library: give {explicit_origin} or set {ORT_DYLIB_ENV} to libonnxruntime.so"
            )))
        }
    };
    if path.is_file() {
        Ok(path)
    } else {
        Err(OrtError::NotFound(format!(
            "{origin} names {}, which is not a file",
            path.display()
        )))
    }
}

/// Receives ONNX Runtime's own log lines, so a host (Triton) can route them.
pub type LogSink = Arc<dyn Fn(LogLevel, &str) + Send + Sync>;

/// ONNX Runtime as loaded into this process.
pub struct Runtime {
    library: PathBuf,
    env: Environment,
    cuda: bool,
}

impl Runtime {
    pub fn library(&self) -> &Path {
        &self.library
    }

    pub fn env(&self) -> &Environment {
        &self.env
    }

    /// Whether the library was built with the CUDA execution provider.
    pub fn has_cuda(&self) -> bool {
        self.cuda
    }
}

static RUNTIME: OnceLock<Runtime> = OnceLock::new();
/// Loaders may race (Triton loads models in parallel); one of them loads.
static LOADING: Mutex<()> = Mutex::new(());

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// ort's message for a library that dlopen refused is just "dlopen failed";
/// the reason (not an ELF file, a dependency missing, wrong architecture)
/// is in the loader's error, which ort keeps but does not show.
fn load_error_text(error: &ort::LoadDynamicError) -> String {
    let text = error.to_string();
    let ort::LoadDynamicError::Dlopen { error: loader, .. } = error else {
        return text;
    };
    let mut text = text;
    let mut cause = std::error::Error::source(loader);
    while let Some(reason) = cause {
        text.push_str(&format!(": {reason}"));
        cause = reason.source();
    }
    text
}

/// The process's ONNX Runtime, loading `library` the first time; the first
/// caller's `log` receives the runtime's log (else ONNX Runtime prints to
/// stderr). ort keeps one library and one environment per process, so a
/// later call naming another library is refused.
pub fn load(library: &Path, log: Option<LogSink>) -> Result<&'static Runtime, OrtError> {
    if RUNTIME.get().is_none() {
        let _guard = LOADING.lock().unwrap_or_else(|e| e.into_inner());
        if RUNTIME.get().is_none() {
            let mut builder = ort::init_from(library)
                .map_err(|e| {
                    OrtError::Load(format!(
                        "could not load ONNX Runtime from {}: {}",
                        library.display(),
                        load_error_text(&e)
                    ))
                })?
                .with_name("clip");
            if let Some(log) = log {
                builder = builder.with_logger(Arc::new(
                    move |level, category: &str, _id: &str, location: &str, message: &str| {
                        log(
                            level,
                            &format!("onnxruntime [{category}] {location}: {message}"),
                        )
                    },
                ));
            }
            let env = builder.build().map_err(|e| {
                OrtError::Load(format!(
                    "could not start ONNX Runtime from {}: {e}",
                    library.display()
                ))
            })?;
            use ort::ep::ExecutionProvider;
            let cuda = ort::ep::CUDA::is_available().unwrap_or(false);
            let _ = RUNTIME.set(Runtime {
                library: library.to_path_buf(),
                env,
                cuda,
            });
        }
    }
    let runtime = RUNTIME.get().expect("set above");
    if !same_file(&runtime.library, library) {
        return Err(OrtError::AlreadyLoaded(format!(
            "ONNX Runtime is already loaded from {} in this process; it cannot also load {} (one library per process)",
            runtime.library.display(),
            library.display()
        )));
    }
    Ok(runtime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_explicit_path_wins_over_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let (given, from_env) = (dir.path().join("given.so"), dir.path().join("env.so"));
        std::fs::write(&given, b"").unwrap();
        std::fs::write(&from_env, b"").unwrap();
        let env = || Some(OsString::from(&from_env));
        assert_eq!(
            library_path(Some(&given), "--ort-library", env()).unwrap(),
            given
        );
        assert_eq!(
            library_path(None, "--ort-library", env()).unwrap(),
            from_env
        );
        // An empty variable counts as unset.
        let none = library_path(None, "--ort-library", Some(OsString::new()))
            .unwrap_err()
            .to_string();
        assert!(
            none.contains("--ort-library") && none.contains(ORT_DYLIB_ENV),
            "{none}"
        );
        assert!(none.contains("install-onnxruntime.sh"), "{none}");
    }

    #[test]
    fn a_missing_file_names_where_its_path_came_from() {
        let missing = Path::new("/nonexistent/libonnxruntime.so");
        let explicit = library_path(Some(missing), "parameter 'ort_library'", None)
            .unwrap_err()
            .to_string();
        assert!(
            explicit.contains("parameter 'ort_library' names /nonexistent"),
            "{explicit}"
        );
        let env = library_path(None, "x", Some(missing.into()))
            .unwrap_err()
            .to_string();
        assert!(env.contains("ORT_DYLIB_PATH names /nonexistent"), "{env}");
    }

    #[test]
    fn a_file_that_is_not_the_library_fails_to_load_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("libonnxruntime.so");
        std::fs::write(&fake, b"not a shared object").unwrap();
        let message = load(&fake, None).err().expect("fails").to_string();
        assert!(message.contains("libonnxruntime.so"), "{message}");
        // The loader's reason, not only "dlopen failed" (issue 14, faults).
        assert!(message.contains("file too short"), "{message}");
    }
}
