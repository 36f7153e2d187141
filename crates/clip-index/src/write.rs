//! The write path: checking a batch, giving it ids and committing its vectors,
//! sources and graph update in one durable LMDB transaction, with the HNSW
//! construction parameters that only writing uses.

use std::ops::Range;

use hannoy::distances::Cosine;
use heed::{AnyTls, RoTxn, RwTxn};
use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::error::{Error, Result};
use crate::index::Index;
use crate::item::{Item, ItemId};
use crate::layout::{ItemsDb, HNSW_INDEX};
use crate::vector::check_vector;

/// HNSW links per node on the upper layers and on layer 0 (hannoy's suggested 16/32).
const M: usize = 16;
const M0: usize = 32;
/// Candidate list size while inserting into the graph (hannoy's default).
const EF_CONSTRUCTION: usize = 100;

impl Index {
    /// Appends `items` in one durable transaction and returns the ids they got,
    /// in order. The vectors, the sources and the graph update are committed
    /// together, and the commit is on disk (fsynced) when this returns `Ok`.
    ///
    /// Every embedding is checked first: a wrong dimension, a NaN or infinity,
    /// or an all-zero vector fails the call with [`Error::InvalidItem`] and
    /// writes nothing. Any other failure also leaves the index as it was.
    ///
    /// Batches of a few hundred to a few thousand items are a good size: each
    /// call pays one fsync and one graph update.
    pub fn append(&mut self, items: &[Item<'_>]) -> Result<Range<ItemId>> {
        for (index, item) in items.iter().enumerate() {
            check_vector(item.embedding, self.spec.dim).map_err(|error| Error::InvalidItem {
                index,
                source_text: item.source.to_owned(),
                error,
            })?;
        }
        let mut wtxn = self.env.write_txn()?;
        let start = next_id(self.items, &wtxn)?;
        let end =
            u32::try_from(start as u64 + items.len() as u64).map_err(|_| Error::TooManyItems {
                len: start as u64,
                adding: items.len(),
            })?;
        if items.is_empty() {
            return Ok(start..start);
        }
        let writer = hannoy::Writer::new(self.vectors, HNSW_INDEX, self.spec.dim);
        let mut record = Vec::new();
        for (id, item) in (start..end).zip(items) {
            writer.add_item(&mut wtxn, id, item.embedding)?;
            record.clear();
            record.push(item.kind.tag());
            record.extend_from_slice(item.source.as_bytes());
            self.items.put(&mut wtxn, &id, &record)?;
        }
        build_graph(&writer, &mut wtxn, start)?;
        wtxn.commit()?;
        Ok(start..end)
    }
}

fn next_id(items: ItemsDb, rtxn: &RoTxn<'_, AnyTls>) -> Result<ItemId> {
    match items.last(rtxn)? {
        Some((last, _)) => last.checked_add(1).ok_or(Error::TooManyItems {
            len: u32::MAX as u64,
            adding: 1,
        }),
        None => Ok(0),
    }
}

fn build_graph(
    writer: &hannoy::Writer<'_, Cosine>,
    wtxn: &mut RwTxn<'_>,
    start: ItemId,
) -> Result<()> {
    // Seeded by the first id of the batch, so a given sequence of appends builds the
    // same graph every time.
    let mut rng = StdRng::seed_from_u64(u64::from(start));
    writer
        .builder(&mut rng)
        .ef_construction(EF_CONSTRUCTION)
        .build::<M, M0>(wtxn)?;
    Ok(())
}
