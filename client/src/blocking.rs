//! The same client for code without an async runtime: each call runs on a
//! small runtime the wrapper owns.

use crate::client::{ClientOptions, Health};
use crate::encode::{EncodeOptions, Encoded, Summary};
use crate::input::{Input, Modality};
use crate::models::ModelInfo;
use crate::profile::Profile;
use crate::rank::Ranked;
use std::path::Path;

use crate::index::IndexSummary;
use crate::{Error, Hit, ItemError};

/// A blocking [`crate::Client`].
#[derive(Debug)]
pub struct Client {
    runtime: tokio::runtime::Runtime,
    inner: crate::Client,
}

impl Client {
    pub fn connect(url: &str) -> Result<Client, Error> {
        Client::connect_with(url, ClientOptions::default())
    }

    pub fn connect_with(url: &str, options: ClientOptions) -> Result<Client, Error> {
        // Two workers keep the HTTP/2 connection serviced between calls and
        // let image reads overlap with requests.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            // Image reads run on blocking threads; a small pool keeps memory
            // flat (each new thread can bring its own malloc arena).
            .max_blocking_threads(8)
            .enable_all()
            .build()
            .map_err(|source| Error::Io {
                context: "cannot start the client's async runtime".into(),
                source,
            })?;
        let inner = runtime.block_on(crate::Client::connect_with(url, options))?;
        Ok(Client { runtime, inner })
    }

    /// The async client underneath.
    pub fn inner(&self) -> &crate::Client {
        &self.inner
    }

    pub fn model(&self, modality: Modality) -> Result<ModelInfo, Error> {
        self.runtime.block_on(self.inner.model(modality)).cloned()
    }

    pub fn health(&self) -> Result<Health, Error> {
        self.runtime.block_on(self.inner.health())
    }

    /// See [`crate::Client::encode`].
    pub fn encode<I>(&self, inputs: I, options: &EncodeOptions) -> Result<Vec<Encoded>, Error>
    where
        I: IntoIterator,
        I::Item: Into<Input>,
    {
        self.runtime.block_on(self.inner.encode(inputs, options))
    }

    /// See [`crate::Client::encode_each`].
    pub fn encode_each<I, F>(
        &self,
        inputs: I,
        options: &EncodeOptions,
        on_item: F,
    ) -> Result<Summary, Error>
    where
        I: IntoIterator,
        I::Item: Into<Input>,
        F: FnMut(Encoded) -> Result<(), Error>,
    {
        self.runtime
            .block_on(self.inner.encode_each(inputs, options, on_item))
    }

    /// See [`crate::Client::encode_with_callbacks`].
    pub fn encode_with_callbacks<I, D, E>(
        &self,
        inputs: I,
        options: &EncodeOptions,
        on_done: D,
        on_error: E,
    ) -> Result<Summary, Error>
    where
        I: IntoIterator,
        I::Item: Into<Input>,
        D: FnMut(&[Encoded]),
        E: FnMut(&ItemError),
    {
        self.runtime.block_on(
            self.inner
                .encode_with_callbacks(inputs, options, on_done, on_error),
        )
    }

    /// See [`crate::Client::rank`].
    pub fn rank<Q, I>(
        &self,
        query: Q,
        candidates: I,
        options: &EncodeOptions,
    ) -> Result<Vec<Ranked>, Error>
    where
        Q: Into<Input>,
        I: IntoIterator,
        I::Item: Into<Input>,
    {
        self.runtime
            .block_on(self.inner.rank(query, candidates, options))
    }

    /// See [`crate::Client::rank_with_progress`].
    pub fn rank_with_progress<Q, I, P>(
        &self,
        query: Q,
        candidates: I,
        options: &EncodeOptions,
        on_encoded: P,
    ) -> Result<Vec<Ranked>, Error>
    where
        Q: Into<Input>,
        I: IntoIterator,
        I::Item: Into<Input>,
        P: FnMut(&Encoded),
    {
        self.runtime.block_on(
            self.inner
                .rank_with_progress(query, candidates, options, on_encoded),
        )
    }

    /// See [`crate::Client::profile`].
    pub fn profile(&self, input: impl Into<Input>, requests: u64) -> Result<Profile, Error> {
        self.runtime.block_on(self.inner.profile(input, requests))
    }

    /// See [`crate::Client::index`].
    pub fn index<I, W, E>(
        &self,
        path: &Path,
        inputs: I,
        options: &EncodeOptions,
        on_written: W,
        on_error: E,
    ) -> Result<IndexSummary, Error>
    where
        I: IntoIterator,
        I::Item: Into<Input>,
        W: FnMut(u64),
        E: FnMut(&ItemError),
    {
        self.runtime.block_on(
            self.inner
                .index(path, inputs, options, on_written, on_error),
        )
    }

    /// See [`crate::Client::search`].
    pub fn search(
        &self,
        path: &Path,
        query: impl Into<Input>,
        limit: usize,
    ) -> Result<Vec<Hit>, Error> {
        self.runtime.block_on(self.inner.search(path, query, limit))
    }
}
