//! `index` and `search`: a corpus embedded through the server and kept,
//! with each item's source, in a [`clip_index`] index on local disk.
//!
//! Embeddings are appended in groups: each append pays one fsync, which
//! costs more than inserting a request's few items, so the requests' items
//! are gathered up to 1024 items, or for at most a second, and appended
//! together. `on_written` hears of a group once it is durable, so a
//! crash mid-job loses at most the items not reported yet; running `index`
//! again appends.

use std::path::Path;
use std::time::{Duration, Instant};

use clip_index::{Hit, Index, IndexSpec, Item, ItemKind};
use futures_util::StreamExt;

use crate::client::Client;
use crate::encode::EncodeOptions;
use crate::input::{Input, Modality};
use crate::{Error, ItemError};

/// The most items gathered before they are appended.
const GROUP_ITEMS: usize = 1024;
/// The longest the first item of a group waits before the group is appended
/// (checked as each request's embeddings arrive).
const GROUP_WAIT: Duration = Duration::from_secs(1);

/// Encoded items waiting to be appended together.
#[derive(Default)]
struct Group {
    items: Vec<(ItemKind, String, Vec<f32>)>,
    since: Option<Instant>,
}

impl Group {
    fn push(&mut self, kind: ItemKind, source: String, embedding: Vec<f32>) {
        self.since.get_or_insert_with(Instant::now);
        self.items.push((kind, source, embedding));
    }

    fn is_due(&self) -> bool {
        self.items.len() >= GROUP_ITEMS || self.since.is_some_and(|t| t.elapsed() >= GROUP_WAIT)
    }

    /// Appends the group's items durably and empties it; returns how many.
    fn append_to(&mut self, index: &mut Index) -> Result<u64, Error> {
        let items: Vec<Item<'_>> = self
            .items
            .iter()
            .map(|(kind, source, embedding)| Item {
                source,
                kind: *kind,
                embedding,
            })
            .collect();
        let ids = index.append(&items)?;
        self.items.clear();
        self.since = None;
        Ok(u64::from(ids.end - ids.start))
    }
}

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
    /// append (the number of items; see the module docs for how requests are
    /// grouped into appends), `on_error` of each failed input.
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
        let mut group = Group::default();
        let mut batches = std::pin::pin!(self.encode_batches(inputs, options));
        let stopped = loop {
            let batch = match batches.next().await {
                None => break None,
                Some(Ok(batch)) => batch,
                Some(Err(error)) => break Some(error),
            };
            for encoded in batch {
                match (encoded.result, encoded.input.modality()) {
                    (Ok(embedding), Some(modality)) => {
                        if index.is_none() {
                            let info = self.model(modality).await?;
                            let spec = IndexSpec {
                                dim: info.embedding_dim,
                                model: info.clip_model.clone(),
                            };
                            index = Some(Index::create_or_open(path, spec)?);
                        }
                        group.push(kind_of(modality), encoded.input.source(), embedding);
                    }
                    (Err(error), _) => {
                        summary.failed += 1;
                        on_error(&error);
                    }
                    (Ok(_), None) => unreachable!("an invalid input is never encoded"),
                }
            }
            if let Some(index) = index.as_mut().filter(|_| group.is_due()) {
                let written = group.append_to(index)?;
                summary.added += written;
                on_written(written);
            }
        };
        // Whatever stopped the stream, the items encoded so far are kept.
        if let Some(index) = index.as_mut().filter(|_| !group.items.is_empty()) {
            let written = group.append_to(index)?;
            summary.added += written;
            on_written(written);
        }
        if let Some(error) = stopped {
            return Err(error);
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
