//! The write path: checking a batch, giving it ids, writing it to the log
//! durably, and only then adding it to the embeddings and the graph in memory.

use std::ops::Range;

use crate::error::{Error, Result};
use crate::index::{Index, Record};
use crate::item::{Item, ItemId};
use crate::log::{encode_frame, write_durably, LogEnd, LOG_FILE};
use crate::vector::check_vector;

impl Index {
    /// Appends `items` and returns the ids they got, in order. When this returns
    /// `Ok`, the batch is in the log and the log is fsynced: it survives a crash
    /// or power loss. A crash before that leaves the batch absent as a whole.
    ///
    /// Every embedding is checked first: a wrong dimension, a NaN or infinity,
    /// or an all-zero vector fails the call with [`Error::InvalidItem`] and
    /// writes nothing. Any other failure also leaves the index as it was.
    ///
    /// Each call pays one fsync (a few milliseconds on an SSD), so batches of a
    /// few hundred items or more append fastest; the graph insert itself costs
    /// the same per item at any batch size.
    pub fn append(&mut self, items: &[Item<'_>]) -> Result<Range<ItemId>> {
        for (index, item) in items.iter().enumerate() {
            check_vector(item.embedding, self.spec.dim).map_err(|error| Error::InvalidItem {
                index,
                source_text: item.source.to_owned(),
                error,
            })?;
        }
        self.locked(|index| index.append_locked(items))
    }

    fn append_locked(&mut self, items: &[Item<'_>]) -> Result<Range<ItemId>> {
        // Other handles may have appended: ids follow what the log holds now.
        self.catch_up(false)?;
        let len = self.records.len() as u64;
        let start = ItemId::try_from(len).map_err(|_| too_many(len, items.len()))?;
        let end =
            ItemId::try_from(len + items.len() as u64).map_err(|_| too_many(len, items.len()))?;
        if items.is_empty() {
            return Ok(start..end);
        }
        let frame = encode_frame(start, items);
        // A write that fails part-way leaves bytes past the log's end, which the
        // next catch-up, under the lock, cuts off as a torn frame.
        write_durably(
            &self.log,
            self.log_end.valid_len,
            &frame,
            &self.path.join(LOG_FILE),
        )?;
        self.log_end = LogEnd {
            items: u64::from(end),
            valid_len: self.log_end.valid_len + frame.len() as u64,
        };
        for item in items {
            self.embeddings.push(item.embedding);
            self.records.push(Record {
                kind: item.kind,
                source: item.source.into(),
            });
        }
        self.graph.insert_new(&self.embeddings);
        self.save_graph_if_due();
        Ok(start..end)
    }
}

fn too_many(len: u64, adding: usize) -> Error {
    Error::TooManyItems { len, adding }
}
