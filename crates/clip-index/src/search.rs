//! The read path: nearest-neighbour search and lookup by id, on the
//! embeddings and graph in memory.

use crate::distance::dot;
use crate::error::{Error, Result};
use crate::hnsw::Scored;
use crate::index::Index;
use crate::item::{Entry, Hit, ItemId};
use crate::vector::check_vector;

/// Candidate list size while searching, when the caller does not choose: at
/// least this, and at least `limit`. On the bench example's clustered 512-d
/// vectors (Gaussian noise around 1000 centres, harder than real embeddings:
/// see the bench example for all figures), 1M items, recall@10 at ef 256 /
/// 512 / 1024 was 0.948 / 0.971 / 0.976 for a median of 0.79 / 1.0 / 1.7 ms
/// a query on one core; at 200k, 0.995 from ef 256.
pub const DEFAULT_EF_SEARCH: usize = 512;

impl Index {
    /// The `limit` items nearest to `query` by cosine similarity, best first.
    ///
    /// The search is approximate (HNSW) once the index holds more items than
    /// the candidate list: a true neighbour is then occasionally missed, but
    /// every returned score is the cosine similarity between `query` and that
    /// item's embedding. Smaller indexes are scanned whole, exactly.
    pub fn search(&self, query: &[f32], limit: usize) -> Result<Vec<Hit>> {
        self.search_with_ef(query, limit, DEFAULT_EF_SEARCH)
    }

    /// [`Index::search`] with a candidate list of `ef_search` (at least `limit`):
    /// a longer list finds more of the true neighbours, and takes longer.
    pub fn search_with_ef(
        &self,
        query: &[f32],
        limit: usize,
        ef_search: usize,
    ) -> Result<Vec<Hit>> {
        check_vector(query, self.spec.dim).map_err(Error::InvalidQuery)?;
        let norm = dot(query, query).sqrt();
        let unit: Vec<f32> = query.iter().map(|v| v / norm).collect();
        let ef = ef_search.max(limit);
        let found = if self.embeddings.len() <= ef {
            // A candidate list as long as the index would visit every item
            // anyway: scanning them all costs the same and is exact, also
            // where the graph's pruning left an item without incoming links.
            let mut all: Vec<Scored> = (0..self.embeddings.len() as ItemId)
                .map(|id| Scored {
                    distance: self.embeddings.distance_to(&unit, id),
                    id,
                })
                .collect();
            all.sort_unstable();
            all.truncate(limit);
            all
        } else {
            self.graph.search(&self.embeddings, &unit, limit, ef)
        };
        Ok(found
            .into_iter()
            .map(|scored| {
                let record = &self.records[scored.id as usize];
                Hit {
                    id: scored.id,
                    source: record.source.to_string(),
                    kind: record.kind,
                    score: 1.0 - scored.distance,
                }
            })
            .collect())
    }

    /// How many items no graph search can reach (a diagnostic of the graph's
    /// health; 0 when every item can be found). Small indexes, which
    /// [`Index::search`] scans whole, still count here.
    pub fn unreachable_items(&self) -> u64 {
        self.graph.unreachable() as u64
    }

    /// The item with this id, or `None` when there is none.
    pub fn get(&self, id: ItemId) -> Result<Option<Entry>> {
        Ok(self.records.get(id as usize).map(|record| Entry {
            id,
            source: record.source.to_string(),
            kind: record.kind,
            embedding: self.embeddings.get(id).to_vec(),
        }))
    }
}
