//! `index` and `search`: a corpus embedded through the server and kept,
//! with each item's source, in a [`clip_index`] index on local disk.
//!
//! Each request's embeddings are appended in one durable transaction as
//! soon as they arrive, so a crash mid-job loses at most the requests that
//! had not been reported yet; running `index` again appends.

use std::path::Path;

use clip_index::{Hit, Index, IndexSpec, Item, ItemKind};
use futures_util::StreamExt;

use crate::client::Client;
use crate::encode::EncodeOptions;
use crate::input::{Input, Modality};
use crate::{Error, ItemError};

/// Counts of a finished `index` job.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IndexSummary {
    /// Items appended by this job.
    pub added: u64,
    /// Inputs that failed (reported to `on_error`, not stored).
    pub failed: u64,
    /// Items in the index afterwards.
    pub total: u64,
}

fn kind_of(modality: Modality) -> ItemKind {
    match modality {
        Modality::Text => ItemKind::Text,
        Modality::Image => ItemKind::Image,
    }
}

impl Client {
    /// Encodes `inputs` and appends them to the index at `path`, creating
    /// it for the served model if needed. `on_written` hears of each durable
    /// append (the number of items), `on_error` of each failed input.
    pub async fn index<I, W, E>(
        &self,
        path: &Path,
        inputs: I,
        options: &EncodeOptions,
        mut on_written: W,
        mut on_error: E,
    ) -> Result<IndexSummary, Error>
    where
        I: IntoIterator,
        I::Item: Into<Input>,
        W: FnMut(u64),
        E: FnMut(&ItemError),
    {
        let inputs = inputs.into_iter().map(Into::into);
        let mut index: Option<Index> = None;
        let mut summary = IndexSummary::default();
        let mut batches = std::pin::pin!(self.encode_batches(inputs, options));
        while let Some(batch) = batches.next().await {
            let batch = batch?;
            let mut items = Vec::with_capacity(batch.len());
            let mut sources = Vec::with_capacity(batch.len());
            for encoded in &batch {
                match (&encoded.result, encoded.input.modality()) {
                    (Ok(embedding), Some(modality)) => {
                        sources.push(encoded.input.source());
                        items.push((modality, embedding.as_slice()));
                    }
                    (Err(error), _) => {
                        summary.failed += 1;
                        on_error(error);
                    }
                    (Ok(_), None) => unreachable!("an invalid input is never encoded"),
                }
            }
            let Some(&(modality, _)) = items.first() else {
                continue;
            };
            let index = match &mut index {
                Some(index) => index,
                None => {
                    let info = self.model(modality).await?;
                    let spec = IndexSpec {
                        dim: info.embedding_dim,
                        model: info.clip_model.clone(),
                    };
                    index.insert(Index::create_or_open(path, spec)?)
                }
            };
            let items: Vec<Item<'_>> = items
                .iter()
                .zip(&sources)
                .map(|((modality, embedding), source)| Item {
                    source,
                    kind: kind_of(*modality),
                    embedding,
                })
                .collect();
            let ids = index.append(&items)?;
            summary.added += u64::from(ids.end - ids.start);
            on_written(u64::from(ids.end - ids.start));
        }
        summary.total = match &index {
            Some(index) => index.len()?,
            None if path.exists() => Index::open(path)?.len()?,
            None => 0,
        };
        Ok(summary)
    }

    /// The `limit` indexed items nearest to `query` (a sentence or an
    /// image), best first, with their cosine similarity.
    pub async fn search(
        &self,
        path: &Path,
        query: impl Into<Input>,
        limit: usize,
    ) -> Result<Vec<Hit>, Error> {
        let index = Index::open(path)?;
        let query = query.into();
        let info = self.model(query.modality_or_error(0)?).await?;
        if info.clip_model != index.spec().model {
            return Err(Error::Model {
                model: info.name.clone(),
                reason: format!(
                    "it serves {:?} but the index at {} holds embeddings of {:?}",
                    info.clip_model,
                    path.display(),
                    index.spec().model
                ),
            });
        }
        let mut encoded = self.encode([query], &EncodeOptions::default()).await?;
        let embedding = encoded.remove(0).result?;
        Ok(index.search(&embedding, limit)?)
    }
}
