//! What an index holds (its embeddings' dimension and model), checked against
//! what a caller asks for, so an index is never mixed with embeddings of
//! another size or model.

use crate::error::{Error, Result};

/// What the embeddings of an index are: their dimension and the model that made them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexSpec {
    /// The embedding dimension, e.g. 512 for ViT-B-32.
    pub dim: usize,
    /// The model the embeddings came from, e.g. `ViT-B-32::openai`. Embeddings of
    /// different models are not comparable, so an index holds one model's.
    pub model: String,
}

pub(crate) fn check_spec(stored: &IndexSpec, requested: &IndexSpec) -> Result<()> {
    if stored.dim != requested.dim {
        return Err(Error::DimensionMismatch {
            stored: stored.dim,
            requested: requested.dim,
        });
    }
    if stored.model != requested.model {
        return Err(Error::ModelMismatch {
            stored: stored.model.clone(),
            requested: requested.model.clone(),
        });
    }
    Ok(())
}
