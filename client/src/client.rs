//! [`Client`]: the CLIP-level handle. It finds the ensembles repo-gen
//! wrote on the server and learns their facts once, on first use.

use std::sync::Arc;

use clip_contract::model;
use tokio::sync::OnceCell;

use crate::input::{ImageReader, Modality};
use crate::models::ModelInfo;
use crate::triton::{ConnectOptions, Triton};
use crate::Error;

/// How to reach the server and which models to use.
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    pub connect: ConnectOptions,
    /// The `--name-prefix` the repository was generated with, if any.
    pub name_prefix: String,
}

/// A connection to a CLIP deployment on Triton. Cheap to clone; clones
/// share the connection and what was learnt about the models.
#[derive(Debug, Clone)]
pub struct Client {
    pub(crate) triton: Triton,
    prefix: String,
    text: Arc<OnceCell<ModelInfo>>,
    image: Arc<OnceCell<ModelInfo>>,
    pub(crate) reader: ImageReader,
}

/// The server and each CLIP ensemble, as `health` found them.
#[derive(Debug, Clone)]
pub struct Health {
    pub url: String,
    pub server_version: String,
    pub live: bool,
    pub ready: bool,
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
    /// options and the model names repo-gen writes by default.
    pub async fn connect(url: &str) -> Result<Client, Error> {
        Client::connect_with(url, ClientOptions::default()).await
    }

    pub async fn connect_with(url: &str, options: ClientOptions) -> Result<Client, Error> {
        let triton = Triton::connect_with(url, options.connect).await?;
        Ok(Client {
            triton,
            prefix: options.name_prefix,
            text: Arc::default(),
            image: Arc::default(),
            reader: ImageReader::new(),
        })
    }

    /// The transport underneath, for Triton calls the CLIP API does not make.
    pub fn triton(&self) -> &Triton {
        &self.triton
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
        cell.get_or_try_init(|| self.discover(modality)).await
    }

    async fn discover(&self, modality: Modality) -> Result<ModelInfo, Error> {
        let name = self.ensemble_name(modality);
        let unusable = |reason: String| Error::Model {
            model: name.clone(),
            reason,
        };
        if !self.triton.model_ready(&name).await? {
            let state = self
                .triton
                .repository_index()
                .await?
                .into_iter()
                .find(|m| m.name == name);
            return Err(unusable(match state {
                Some(m) if m.reason.is_empty() => format!("it is {} on the server", m.state),
                Some(m) => format!("it is {} on the server: {}", m.state, m.reason),
                None => format!(
                    "the server at {} has no such model (is the repository from repo-gen \
                     loaded{}?)",
                    self.triton.url(),
                    if self.prefix.is_empty() {
                        ", or was it generated with --name-prefix"
                    } else {
                        " with this name prefix"
                    }
                ),
            }));
        }
        let config = self.triton.model_config(&name).await?;
        ModelInfo::from_config(modality, &config)
    }

    /// Server liveness and readiness, and whether each ensemble can be used.
    pub async fn health(&self) -> Result<Health, Error> {
        let live = self.triton.server_live().await?;
        let ready = self.triton.server_ready().await?;
        let server_version = self.triton.server_metadata().await?.version;
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
            url: self.triton.url().to_owned(),
            server_version,
            live,
            ready,
            models,
        })
    }
}
