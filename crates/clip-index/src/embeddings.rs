//! The embeddings in memory, in id order in one flat array, with the inverse
//! of each one's norm so a cosine distance is one dot product and a multiply:
//! the stored values stay exactly as appended, as [`Index::get`] returns them.
//!
//! [`Index::get`]: crate::Index::get

use crate::distance::dot;
use crate::item::ItemId;

/// f32 values in a 64-byte cache line.
#[cfg(target_arch = "x86_64")]
const CACHE_LINE_FLOATS: usize = 16;
/// Lines prefetched: the start of the vector; the hardware prefetcher follows
/// the rest once the loop streams through it, and more prefetches only fill
/// the CPU's few line-fill buffers.
#[cfg(target_arch = "x86_64")]
const PREFETCH_LINES: usize = 4;

pub(crate) struct Embeddings {
    dim: usize,
    values: Vec<f32>,
    inverse_norms: Vec<f32>,
}

impl Embeddings {
    pub(crate) fn new(dim: usize) -> Embeddings {
        Embeddings {
            dim,
            values: Vec::new(),
            inverse_norms: Vec::new(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.inverse_norms.len()
    }

    /// Adds one embedding, already checked to have `dim` finite values and a direction.
    pub(crate) fn push(&mut self, embedding: &[f32]) {
        debug_assert_eq!(embedding.len(), self.dim);
        self.values.extend_from_slice(embedding);
        self.inverse_norms
            .push(1.0 / dot(embedding, embedding).sqrt());
    }

    pub(crate) fn get(&self, id: ItemId) -> &[f32] {
        let start = id as usize * self.dim;
        &self.values[start..start + self.dim]
    }

    /// Asks the CPU to start loading an embedding into cache: a graph search
    /// reads embeddings in no order a hardware prefetcher can guess.
    pub(crate) fn prefetch(&self, id: ItemId) {
        #[cfg(target_arch = "x86_64")]
        for line in self.get(id).chunks(CACHE_LINE_FLOATS).take(PREFETCH_LINES) {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            // SAFETY: a prefetch is only a hint; it reads nothing the program sees
            // (and the address is inside `values`).
            unsafe { _mm_prefetch::<_MM_HINT_T0>(line.as_ptr().cast()) };
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = id;
    }

    /// The cosine distance (1 - cosine similarity) between two stored embeddings.
    pub(crate) fn distance(&self, a: ItemId, b: ItemId) -> f32 {
        let cosine = dot(self.get(a), self.get(b))
            * self.inverse_norms[a as usize]
            * self.inverse_norms[b as usize];
        1.0 - cosine
    }

    /// The cosine distance between a unit-length `query` and a stored embedding.
    pub(crate) fn distance_to(&self, query: &[f32], id: ItemId) -> f32 {
        1.0 - dot(query, self.get(id)) * self.inverse_norms[id as usize]
    }
}
