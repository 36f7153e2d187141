//! Getting a model's files: from the Hugging Face hub through the local
//! cache, or from a folder the user already has (`--weights DIR`).
//!
//! Downloads go through `hf-hub`'s blocking client and its cache, the same
//! `models--owner--name/{blobs,refs,snapshots}` layout Python's
//! `huggingface_hub` uses, so a cache filled by either serves both.
//! Interrupted downloads resume from their `.part` file. [`HubOptions::from_env`]
//! reads the variables Python's client reads:
//!
//! | variable | effect |
//! | --- | --- |
//! | `HF_ENDPOINT` | hub or mirror to download from (default `https://huggingface.co`) |
//! | `HF_HUB_OFFLINE` | `1`/`true`/`yes`/`on`: never touch the network, use the cache only |
//! | `HF_HUB_CACHE` | cache folder; else `$HF_HOME/hub`; else `~/.cache/huggingface/hub` |
//! | `HF_TOKEN` | access token for gated or private repos (else `$HF_HOME/token`) |

use std::path::{Path, PathBuf};

use hf_hub::api::sync::{ApiBuilder, ApiError};
use hf_hub::{Cache, Repo, RepoType};

use crate::registry::{HubFiles, ModelSpec, WeightsLayout};

/// The public hub.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// Where and how to download.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubOptions {
    /// Base URL of the hub or a mirror, without a trailing slash.
    pub endpoint: String,
    /// The hub cache folder (`.../huggingface/hub`).
    pub cache_dir: PathBuf,
    /// Use the cache only; a file not in it is an error.
    pub offline: bool,
    /// Access token; `None` falls back to the token file beside the cache.
    pub token: Option<String>,
    /// Draw a progress bar per file on stderr.
    pub progress: bool,
}

impl HubOptions {
    /// The public hub, online, no token, no progress bars, caching in `cache_dir`.
    pub fn new(cache_dir: impl Into<PathBuf>) -> Self {
        HubOptions {
            endpoint: DEFAULT_ENDPOINT.to_owned(),
            cache_dir: cache_dir.into(),
            offline: false,
            token: None,
            progress: false,
        }
    }

    /// Settings from the process environment (see the module docs), with progress bars on.
    pub fn from_env() -> Self {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// Settings from any source of variables: [`HubOptions::from_env`] without the process
    /// environment, for tests and for callers that layer their own settings.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Self {
        let set = |name: &str| var(name).filter(|value| !value.trim().is_empty());
        let cache_dir = if let Some(cache) = set("HF_HUB_CACHE") {
            PathBuf::from(cache)
        } else if let Some(home) = set("HF_HOME") {
            Path::new(&home).join("hub")
        } else if let Some(xdg) = set("XDG_CACHE_HOME") {
            Path::new(&xdg).join("huggingface").join("hub")
        } else {
            let home = set("HOME").unwrap_or_else(|| ".".to_owned());
            Path::new(&home)
                .join(".cache")
                .join("huggingface")
                .join("hub")
        };
        let endpoint = set("HF_ENDPOINT").unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned());
        HubOptions {
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            cache_dir,
            offline: set("HF_HUB_OFFLINE").is_some_and(|value| is_true(&value)),
            token: set("HF_TOKEN"),
            progress: true,
        }
    }

    pub fn with_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = endpoint.into().trim_end_matches('/').to_owned();
        self
    }

    pub fn with_offline(mut self, offline: bool) -> Self {
        self.offline = offline;
        self
    }

    pub fn with_progress(mut self, progress: bool) -> Self {
        self.progress = progress;
        self
    }

    pub fn with_token(mut self, token: Option<String>) -> Self {
        self.token = token;
        self
    }
}

/// huggingface_hub's reading of a boolean variable.
fn is_true(value: &str) -> bool {
    matches!(
        value.trim().to_ascii_lowercase().as_str(),
        "1" | "true" | "yes" | "on"
    )
}

/// A model's files on local disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelFiles {
    pub layout: WeightsLayout,
    /// `config.json` or `open_clip_config.json`.
    pub config: PathBuf,
    /// The safetensors weights.
    pub weights: PathBuf,
    /// Hugging Face `tokenizer.json` (the multilingual tower's, for M-CLIP).
    pub tokenizer: PathBuf,
    /// M-CLIP's text tower; `config` and `weights` are then the CLIP whose
    /// image tower it pairs with.
    pub multilingual: Option<MultilingualFiles>,
}

/// An M-CLIP text tower's files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MultilingualFiles {
    /// M-CLIP's `config.json` (`model_type` "M-CLIP").
    pub config: PathBuf,
    /// `pytorch_model.bin` or a safetensors file.
    pub weights: PathBuf,
}

/// Why the hub did not deliver a model's files.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error(
        "cannot reach the Hugging Face hub at {endpoint} (fetching {file} of {repo}): {detail}. \
         Without access to it: set HF_ENDPOINT to a reachable mirror, or fill the cache \
         ({}) where the hub is reachable and run with HF_HUB_OFFLINE=1, or download the \
         files yourself and pass --weights DIR",
        cache_dir.display()
    )]
    Unreachable {
        endpoint: String,
        repo: String,
        file: String,
        cache_dir: PathBuf,
        detail: String,
    },
    #[error(
        "HF_HUB_OFFLINE is set and the cache at {} has no {} of {repo} (revision {revision}). \
         Run once without HF_HUB_OFFLINE where the hub (or an HF_ENDPOINT mirror) is reachable, \
         or pass --weights DIR with the files",
        cache_dir.display(),
        missing.join(", ")
    )]
    NotCached {
        repo: String,
        revision: String,
        cache_dir: PathBuf,
        missing: Vec<String>,
    },
    #[error(
        "{endpoint} has no {file} in {repo} at revision {revision} (HTTP 404); \
         if the repository changed, pass --weights DIR with the files"
    )]
    NotFound {
        endpoint: String,
        repo: String,
        revision: String,
        file: String,
    },
    #[error(
        "{endpoint} refused {file} of {repo} (HTTP {status}): the repository is gated or \
         private, or the token is wrong; accept its terms on the hub and set HF_TOKEN"
    )]
    Denied {
        endpoint: String,
        repo: String,
        file: String,
        status: u16,
    },
    #[error("cannot download {file} of {repo} from {endpoint}: {detail}")]
    Hub {
        endpoint: String,
        repo: String,
        file: String,
        detail: String,
    },
}

/// The model's config, weights and tokenizer, from the cache when they are
/// there and from the hub otherwise (never the hub when `options.offline`).
pub fn fetch(spec: &ModelSpec, options: &HubOptions) -> Result<ModelFiles, DownloadError> {
    let Some(text) = &spec.multilingual else {
        let hub = &spec.hub;
        let mut paths = fetch_clip(spec, &[hub.config, hub.weights, hub.tokenizer], options)?;
        let tokenizer = paths.pop().expect("one path per file");
        let weights = paths.pop().expect("one path per file");
        let config = paths.pop().expect("one path per file");
        return Ok(ModelFiles {
            layout: spec.layout,
            config,
            weights,
            tokenizer,
            multilingual: None,
        });
    };
    // M-CLIP: the multilingual tower's three files, and the image tower's
    // CLIP without its (unused) tokenizer.
    let [text_config, text_weights, tokenizer] = fetch_files(&text.hub, options)?;
    let mut image = fetch_clip(spec, &[spec.hub.config, spec.hub.weights], options)?;
    let weights = image.pop().expect("one path per file");
    let config = image.pop().expect("one path per file");
    Ok(ModelFiles {
        layout: spec.layout,
        config,
        weights,
        tokenizer,
        multilingual: Some(MultilingualFiles {
            config: text_config,
            weights: text_weights,
        }),
    })
}

/// `files` of the CLIP's repository; when its safetensors weights are not
/// there, its PyTorch checkpoint in their place (some hub repositories
/// publish only `pytorch_model.bin`; clip-export reads both). When that is
/// missing too, the error is the first attempt's.
fn fetch_clip(
    spec: &ModelSpec,
    files: &[&'static str],
    options: &HubOptions,
) -> Result<Vec<PathBuf>, DownloadError> {
    let weights = spec.hub.weights;
    match fetch_named(&spec.hub, files, options) {
        Err(error) if lacks(&error, weights) => {
            let pickled = spec.layout.pickled_weights_file();
            let instead: Vec<&'static str> = files
                .iter()
                .map(|&f| if f == weights { pickled } else { f })
                .collect();
            fetch_named(&spec.hub, &instead, options).map_err(|_| error)
        }
        fetched => fetched,
    }
}

/// Whether `error` says `file` is not on the hub, or not in the cache offline.
fn lacks(error: &DownloadError, file: &str) -> bool {
    match error {
        DownloadError::NotFound { file: missing, .. } => missing == file,
        DownloadError::NotCached { missing, .. } => missing.iter().any(|m| m == file),
        _ => false,
    }
}

/// The three files of `hub` (config, weights, tokenizer), in that order.
pub fn fetch_files(hub: &HubFiles, options: &HubOptions) -> Result<[PathBuf; 3], DownloadError> {
    let mut paths = fetch_named(hub, &hub.files(), options)?.into_iter();
    Ok(std::array::from_fn(|_| {
        paths.next().expect("one path per file")
    }))
}

/// Only the tokenizer of `hub`: for `--onnx-dir DIR --model NAME`, whose
/// encoders are the user's files.
pub fn fetch_tokenizer(hub: &HubFiles, options: &HubOptions) -> Result<PathBuf, DownloadError> {
    let mut paths = fetch_named(hub, &[hub.tokenizer], options)?;
    Ok(paths.pop().expect("one path per file"))
}

/// `files` of `hub`'s repository, in their order: from the cache when they
/// are there, from the hub otherwise (never when `options.offline`).
fn fetch_named(
    hub: &HubFiles,
    files: &[&'static str],
    options: &HubOptions,
) -> Result<Vec<PathBuf>, DownloadError> {
    let repo = Repo::with_revision(
        hub.repo.to_owned(),
        RepoType::Model,
        hub.revision.to_owned(),
    );
    let cache = Cache::new(options.cache_dir.clone());

    if options.offline {
        let cached = cache.repo(repo);
        let found: Vec<Option<PathBuf>> = files.iter().map(|f| cached.get(f)).collect();
        let missing: Vec<String> = files
            .iter()
            .zip(&found)
            .filter(|(_, path)| path.is_none())
            .map(|(file, _)| (*file).to_owned())
            .collect();
        if !missing.is_empty() {
            return Err(DownloadError::NotCached {
                repo: hub.repo.to_owned(),
                revision: hub.revision.to_owned(),
                cache_dir: options.cache_dir.clone(),
                missing,
            });
        }
        return Ok(found.into_iter().flatten().collect());
    }

    let mut builder = ApiBuilder::from_cache(cache)
        .with_endpoint(options.endpoint.clone())
        .with_progress(options.progress)
        .with_retries(3)
        .with_user_agent("repo-gen", env!("CARGO_PKG_VERSION"));
    if let Some(token) = &options.token {
        builder = builder.with_token(Some(token.clone()));
    }
    let api = builder.build().map_err(|e| DownloadError::Hub {
        endpoint: options.endpoint.clone(),
        repo: hub.repo.to_owned(),
        file: files.first().copied().unwrap_or_default().to_owned(),
        detail: format!("cannot set up the HTTP client: {e}"),
    })?;
    let api_repo = api.repo(repo);
    files
        .iter()
        .map(|file| {
            api_repo
                .get(file)
                .map_err(|e| classify(e, hub, file, options))
        })
        .collect()
}

/// Turns hf-hub's error into one that says what to do.
fn classify(error: ApiError, hub: &HubFiles, file: &str, options: &HubOptions) -> DownloadError {
    let endpoint = options.endpoint.clone();
    let repo = hub.repo.to_owned();
    let file = file.to_owned();
    let request = match &error {
        ApiError::RequestError(request) => Some(request.as_ref()),
        ApiError::TooManyRetries(inner) => match inner.as_ref() {
            ApiError::RequestError(request) => Some(request.as_ref()),
            _ => None,
        },
        _ => None,
    };
    match request {
        Some(ureq2::Error::Transport(transport)) => DownloadError::Unreachable {
            endpoint,
            repo,
            file,
            cache_dir: options.cache_dir.clone(),
            detail: transport.to_string(),
        },
        Some(ureq2::Error::Status(404, _)) => DownloadError::NotFound {
            endpoint,
            repo,
            revision: hub.revision.to_owned(),
            file,
        },
        Some(ureq2::Error::Status(status @ (401 | 403), _)) => DownloadError::Denied {
            endpoint,
            repo,
            file,
            status: *status,
        },
        Some(ureq2::Error::Status(status, _)) => DownloadError::Hub {
            endpoint,
            repo,
            file,
            detail: format!("the server answered HTTP {status}"),
        },
        None => {
            let detail = match &error {
                ApiError::MissingHeader(header) => format!(
                    "the answer has no {header} header; is this a Hugging Face hub \
                     (or a mirror of one)?"
                ),
                other => other.to_string(),
            };
            DownloadError::Hub {
                endpoint,
                repo,
                file,
                detail,
            }
        }
    }
}

/// What is wrong with a `--weights DIR` folder, item by item.
#[derive(Debug, thiserror::Error)]
#[error(
    "--weights {} cannot be used for {layout} weights: {}",
    dir.display(),
    problems.join("; ")
)]
pub struct WeightsDirError {
    pub dir: PathBuf,
    pub layout: WeightsLayout,
    /// One sentence per missing or doubtful item.
    pub problems: Vec<String>,
}

/// Checks that `dir` holds a model of `layout` (its config file, one
/// safetensors weights file of that layout, and tokenizer.json) and returns
/// the paths, or every problem found at once.
pub fn check_weights_dir(dir: &Path, layout: WeightsLayout) -> Result<ModelFiles, WeightsDirError> {
    let fail = |problems: Vec<String>| WeightsDirError {
        dir: dir.to_path_buf(),
        layout,
        problems,
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(fail(vec!["the folder does not exist".to_owned()]))
        }
        Err(e) => return Err(fail(vec![format!("cannot read the folder: {e}")])),
    };
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|entry| entry.path().is_file())
        .filter_map(|entry| entry.file_name().into_string().ok())
        .collect();
    names.sort();
    let has = |name: &str| names.iter().any(|n| n == name);

    let mut problems = Vec::new();
    let other = match layout {
        WeightsLayout::Transformers => WeightsLayout::OpenClip,
        WeightsLayout::OpenClip => WeightsLayout::Transformers,
    };

    let config = layout.config_file();
    if !has(config) {
        let mut problem = format!("missing {config}");
        if has(other.config_file()) {
            problem.push_str(&format!(
                " (it has {}, the config of {other} weights)",
                other.config_file()
            ));
        }
        problems.push(problem);
    }

    let is_open_clip = |name: &str| name.starts_with("open_clip");
    let safetensors: Vec<&String> = names
        .iter()
        .filter(|n| n.ends_with(".safetensors"))
        .collect();
    let ours: Vec<&String> = safetensors
        .iter()
        .copied()
        .filter(|n| is_open_clip(n) == (layout == WeightsLayout::OpenClip))
        .collect();
    let weights = if has(layout.weights_file()) {
        Some(layout.weights_file().to_owned())
    } else if ours.is_empty() && has(layout.pickled_weights_file()) {
        Some(layout.pickled_weights_file().to_owned())
    } else {
        match ours.as_slice() {
            [one] => Some((*one).clone()),
            [] => {
                let mut problem = format!(
                    "missing the weights: no {} nor another {layout} *.safetensors file",
                    layout.weights_file()
                );
                let theirs: Vec<&str> = safetensors
                    .iter()
                    .filter(|n| !ours.contains(n))
                    .map(|n| n.as_str())
                    .collect();
                let pickled: Vec<&str> = names
                    .iter()
                    .filter(|n| n.ends_with(".bin") || n.ends_with(".pt") || n.ends_with(".pth"))
                    .map(String::as_str)
                    .collect();
                if !theirs.is_empty() {
                    problem.push_str(&format!(
                        " (it has {}, which is {other} weights)",
                        theirs.join(", ")
                    ));
                } else if !pickled.is_empty() {
                    problem.push_str(&format!(
                        " (it has {}: a PyTorch checkpoint is read when it is named {})",
                        pickled.join(", "),
                        layout.pickled_weights_file()
                    ));
                }
                problems.push(problem);
                None
            }
            many => {
                problems.push(format!(
                    "several weights files and none named {}: {}; keep one",
                    layout.weights_file(),
                    many.iter()
                        .map(|n| n.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
                None
            }
        }
    };

    let tokenizer = clip_contract::defaults::TOKENIZER_FILE;
    if !has(tokenizer) {
        problems.push(format!(
            "missing {tokenizer} (the Hugging Face fast-tokenizer file)"
        ));
    }

    match weights {
        Some(weights) if problems.is_empty() => Ok(ModelFiles {
            layout,
            config: dir.join(config),
            weights: dir.join(weights),
            tokenizer: dir.join(tokenizer),
            multilingual: None,
        }),
        _ => Err(fail(problems)),
    }
}

/// An M-CLIP `--weights` folder: M-CLIP's `config.json`, its weights
/// (`model.safetensors` or `pytorch_model.bin`) and `tokenizer.json`, beside
/// the open_clip files of the image tower it pairs with
/// (`open_clip_config.json`, `open_clip_model.safetensors`): the two hub
/// repositories' files in one folder, which do not collide.
pub fn check_multilingual_dir(dir: &Path) -> Result<ModelFiles, WeightsDirError> {
    let image = check_weights_dir(dir, WeightsLayout::OpenClip);
    // M-CLIP's repositories name their files as transformers' do.
    let text = WeightsLayout::Transformers;
    let text_weights = [text.weights_file(), text.pickled_weights_file()]
        .into_iter()
        .map(|name| dir.join(name))
        .find(|path| path.is_file());
    match (image, text_weights) {
        (Ok(files), Some(weights)) => Ok(ModelFiles {
            multilingual: Some(MultilingualFiles {
                config: dir.join(text.config_file()),
                weights,
            }),
            ..files
        }),
        (image, weights) => {
            let mut problems = image.err().map(|e| e.problems).unwrap_or_default();
            if weights.is_none() {
                problems.push(format!(
                    "missing the M-CLIP text tower's weights: {} or {}",
                    text.weights_file(),
                    text.pickled_weights_file()
                ));
            }
            Err(WeightsDirError {
                dir: dir.to_path_buf(),
                layout: WeightsLayout::OpenClip,
                problems,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| (*value).to_owned())
        }
    }

    #[test]
    fn defaults_without_variables() {
        let options = HubOptions::from_vars(vars(&[("HOME", "/home/u")]));
        assert_eq!(options.endpoint, DEFAULT_ENDPOINT);
        assert_eq!(
            options.cache_dir,
            PathBuf::from("/home/u/.cache/huggingface/hub")
        );
        assert!(!options.offline);
        assert_eq!(options.token, None);
        assert!(options.progress);
    }

    #[test]
    fn variables_are_honored_in_huggingface_hub_order() {
        let options = HubOptions::from_vars(vars(&[
            ("HOME", "/home/u"),
            ("XDG_CACHE_HOME", "/xdg"),
            ("HF_HOME", "/hf"),
            ("HF_ENDPOINT", "http://mirror.local:8080/"),
            ("HF_HUB_OFFLINE", "1"),
            ("HF_TOKEN", "hf_abc"),
        ]));
        assert_eq!(options.endpoint, "http://mirror.local:8080");
        assert_eq!(options.cache_dir, PathBuf::from("/hf/hub"));
        assert!(options.offline);
        assert_eq!(options.token.as_deref(), Some("hf_abc"));

        let options =
            HubOptions::from_vars(vars(&[("HF_HOME", "/hf"), ("HF_HUB_CACHE", "/cache")]));
        assert_eq!(options.cache_dir, PathBuf::from("/cache"));
        let options = HubOptions::from_vars(vars(&[("XDG_CACHE_HOME", "/xdg")]));
        assert_eq!(options.cache_dir, PathBuf::from("/xdg/huggingface/hub"));
    }

    #[test]
    fn offline_values() {
        for value in ["1", "true", "TRUE", "yes", "On", " 1 "] {
            let options = HubOptions::from_vars(vars(&[("HF_HUB_OFFLINE", value)]));
            assert!(options.offline, "{value:?}");
        }
        for value in ["0", "false", "no", "", "off"] {
            let options = HubOptions::from_vars(vars(&[("HF_HUB_OFFLINE", value)]));
            assert!(!options.offline, "{value:?}");
        }
    }
}
