//! [`Client`]: the CLIP-level handle. It finds the ensembles repo-gen
//! wrote on the server and learns their facts once, on first use.

use std::sync::Arc;

use clip_contract::model;
use tokio::sync::OnceCell;

use crate::input::{ImageReader, Modality};
use crate::models::{ModelInfo, PixelModel};
use crate::servers::Servers;
use crate::triton::{ConnectOptions, Triton};
use crate::Error;

/// How to reach the server and which models to use.
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    pub connect: ConnectOptions,
    /// The `--name-prefix` the repository was generated with, if any.
    pub name_prefix: String,
}

/// A connection to a CLIP deployment on Triton: one server or several.
/// Cheap to clone; clones share the connections and what was learnt about
/// the models.
#[derive(Debug, Clone)]
pub struct Client {
    pub(crate) servers: Servers,
    prefix: String,
    text: Arc<OnceCell<ModelInfo>>,
    image: Arc<OnceCell<ModelInfo>>,
    pixels: Arc<OnceCell<PixelModel>>,
    pub(crate) reader: ImageReader,
}

/// The server and each CLIP ensemble, as `health` found them. With several
/// servers, `live` and `ready` hold for every one of them, `url` and
/// `server_version` are the first's, and `others` says how the rest are.
#[derive(Debug, Clone)]
pub struct Health {
    pub url: String,
    pub server_version: String,
    pub live: bool,
    pub ready: bool,
    /// Every other server: its address and "live, ready", or its problem.
    pub others: Vec<(String, Result<(), String>)>,
    /// One entry per ensemble: its facts, or why it cannot be used.
    pub models: Vec<(String, Result<ModelInfo, String>)>,
}

impl Health {
    /// Live, ready, and both ensembles usable.
    pub fn ok(&self) -> bool {
        self.live && self.ready && self.models.iter().all(|(_, m)| m.is_ok())
    }
}

impl std::fmt::Display for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let yes_no = |b: bool| if b { "yes" } else { "no" };
        writeln!(
            f,
            "server       {} (Triton {})",
            self.url, self.server_version
        )?;
        writeln!(f, "live         {}", yes_no(self.live))?;
        writeln!(f, "ready        {}", yes_no(self.ready))?;
        for (url, state) in &self.others {
            match state {
                Ok(()) => writeln!(f, "server       {url}: live, ready")?,
                Err(problem) => writeln!(f, "server       {url}: NOT USABLE: {problem}")?,
            }
        }
        for (name, model) in &self.models {
            match model {
                Ok(info) => writeln!(
                    f,
                    "{name:<12} ready: {} {}-d, max batch {}",
                    info.clip_model, info.embedding_dim, info.max_batch_size
                )?,
                Err(reason) => writeln!(f, "{name:<12} NOT USABLE: {reason}")?,
            }
        }
        Ok(())
    }
}

impl Client {
    /// Connects to `grpc://host:port` or `grpcs://host:port` with default
    /// options and the model names repo-gen writes by default. Several
    /// servers are separated by commas; see [`Servers::connect`].
    pub async fn connect(url: &str) -> Result<Client, Error> {
        Client::connect_with(url, ClientOptions::default()).await
    }

    pub async fn connect_with(url: &str, options: ClientOptions) -> Result<Client, Error> {
        let servers = Servers::connect(url, options.connect).await?;
        Ok(Client {
            servers,
            prefix: options.name_prefix,
            text: Arc::default(),
            image: Arc::default(),
            pixels: Arc::default(),
            reader: ImageReader::new(),
        })
    }

    /// The first server's transport, for Triton calls the CLIP API does not make.
    pub fn triton(&self) -> &Triton {
        self.servers.each().next().expect("at least one server")
    }

    /// Every server, with failover: [`Servers::call`].
    pub fn servers(&self) -> &Servers {
        &self.servers
    }

    /// The Triton name of the ensemble for `modality`.
    pub fn ensemble_name(&self, modality: Modality) -> String {
        let base = match modality {
            Modality::Text => model::TEXT_ENSEMBLE,
            Modality::Image => model::IMAGE_ENSEMBLE,
        };
        format!("{}{base}", self.prefix)
    }

    /// The facts of the ensemble for `modality`, asked of the server once.
    pub async fn model(&self, modality: Modality) -> Result<&ModelInfo, Error> {
        let cell = match modality {
            Modality::Text => &self.text,
            Modality::Image => &self.image,
        };
        let name = self.ensemble_name(modality);
        cell.get_or_try_init(|| async {
            let config = self.ready_config(&name).await?;
            ModelInfo::from_config(modality, &config)
        })
        .await
    }

    /// The pixel path's model (`repo-gen --pixel-path`), asked of the server once.
    pub async fn pixel_model(&self) -> Result<&PixelModel, Error> {
        let name = format!("{}{}", self.prefix, model::IMAGE_PIXELS);
        self.pixels
            .get_or_try_init(|| async {
                let config = self.ready_config(&name).await.map_err(|e| match e {
                    Error::Model { model, reason } => Error::Model {
                        model,
                        reason: format!(
                            "{reason} (--preprocess local needs a repository written with \
                             repo-gen --pixel-path)"
                        ),
                    },
                    other => other,
                })?;
                PixelModel::from_config(&config)
            })
            .await
    }

    /// The config of model `name`, once it is ready; why not, when it is not.
    async fn ready_config(&self, name: &str) -> Result<crate::proto::ModelConfig, Error> {
        let name = name.to_owned();
        let unusable = |reason: String| Error::Model {
            model: name.clone(),
            reason,
        };
        // A model being reloaded can be not ready when asked and READY by the
        // time the index is read: ask again rather than report "it is READY".
        for attempt in 1.. {
            if self
                .servers
                .call(|t| {
                    let name = &name;
                    async move { t.model_ready(name).await }
                })
                .await?
            {
                break;
            }
            let state = self
                .servers
                .call(|t| async move { t.repository_index().await })
                .await?
                .into_iter()
                .find(|m| m.name == name);
            if attempt < READY_ASKS && state.as_ref().is_some_and(|m| m.state == "READY") {
                continue;
            }
            return Err(unusable(match state {
                Some(m) if m.state == "READY" => format!(
                    "it was not ready when asked {READY_ASKS} times, though the server lists it \
                     as READY between the asks (is it being unloaded and loaded again?)"
                ),
                Some(m) => not_ready(&m.state, &m.reason),
                None => format!(
                    "the server at {} has no such model (is the repository from repo-gen \
                     loaded{}?)",
                    self.servers.urls().join(","),
                    if self.prefix.is_empty() {
                        ", or was it generated with --name-prefix"
                    } else {
                        " with this name prefix"
                    }
                ),
            }));
        }
        let config = self
            .servers
            .call(|t| {
                let name = &name;
                async move { t.model_config(name).await }
            })
            .await?;
        Ok(config)
    }

    /// Server liveness and readiness, and whether each ensemble can be used.
    pub async fn health(&self) -> Result<Health, Error> {
        let first = self.triton();
        let mut live = first.server_live().await?;
        let mut ready = first.server_ready().await?;
        let server_version = first.server_metadata().await?.version;
        let mut others = Vec::new();
        for triton in self.servers.each().skip(1) {
            let state = match (triton.server_live().await, triton.server_ready().await) {
                (Ok(true), Ok(true)) => Ok(()),
                (Ok(is_live), Ok(_)) => Err(if is_live { "not ready" } else { "not live" }.into()),
                (Err(e), _) | (_, Err(e)) => Err(e.to_string()),
            };
            live &= state.is_ok() || matches!(&state, Err(p) if p == "not ready");
            ready &= state.is_ok();
            others.push((triton.url().to_owned(), state));
        }
        let mut models = Vec::new();
        for modality in [Modality::Text, Modality::Image] {
            let info = match self.model(modality).await {
                Ok(info) => Ok(info.clone()),
                Err(Error::Model { reason, .. }) => Err(reason),
                Err(other) => return Err(other),
            };
            models.push((self.ensemble_name(modality), info));
        }
        Ok(Health {
            url: first.url().to_owned(),
            server_version,
            live,
            ready,
            others,
            models,
        })
    }
}

/// How often a model's readiness is asked while the repository index says
/// READY between the asks (a reload in progress).
const READY_ASKS: u32 = 3;

/// Why a listed model that is not ready cannot be used, from its entry in
/// the repository index. Triton lists an ensemble whose composing model
/// failed to load with neither a state nor a reason.
fn not_ready(state: &str, reason: &str) -> String {
    match (state, reason) {
        ("", "") => {
            "the server lists it but has not loaded it (did a model it needs fail to load?)"
                .to_owned()
        }
        ("", reason) => format!("the server has not loaded it: {reason}"),
        (state, "") => format!("it is {state} on the server"),
        (state, reason) => format!("it is {state} on the server: {reason}"),
    }
}

#[cfg(test)]
mod tests {
    use super::not_ready;

    /// Issue 14 (faults): an ensemble left unloaded by a failed encoder
    /// read "it is  on the server".
    #[test]
    fn a_model_listed_without_a_state_is_said_to_be_not_loaded() {
        assert_eq!(
            not_ready("", ""),
            "the server lists it but has not loaded it (did a model it needs fail to load?)"
        );
        assert_eq!(
            not_ready("UNAVAILABLE", "unloaded"),
            "it is UNAVAILABLE on the server: unloaded"
        );
        assert_eq!(not_ready("LOADING", ""), "it is LOADING on the server");
    }
}
