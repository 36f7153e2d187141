//! What an index holds (its embeddings' dimension and model), how that is read
//! back from the `meta` database and checked against what a caller asks for, so
//! an index is never mixed with embeddings of another size or model.

use heed::types::Str;
use heed::{AnyTls, RoTxn};

use crate::error::{Error, Result};
use crate::layout::{DISTANCE, FORMAT, META_DIM, META_DISTANCE, META_FORMAT, META_MODEL};

/// What the embeddings of an index are: their dimension and the model that made them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexSpec {
    /// The embedding dimension, e.g. 512 for ViT-B-32.
    pub dim: usize,
    /// The model the embeddings came from, e.g. `ViT-B-32::openai`. Embeddings of
    /// different models are not comparable, so an index holds one model's.
    pub model: String,
}

pub(crate) fn read_spec(
    meta: heed::Database<'_, Str, Str>,
    rtxn: &RoTxn<'_, AnyTls>,
) -> Result<Option<IndexSpec>> {
    let Some(format) = meta.get(rtxn, META_FORMAT)? else {
        return Ok(None);
    };
    if format != FORMAT {
        return Err(Error::UnsupportedFormat {
            found: format.to_owned(),
        });
    }
    let field = |key: &str| -> Result<&str> {
        meta.get(rtxn, key)?
            .ok_or_else(|| Error::Corrupt(format!("the metadata lacks {key:?}")))
    };
    let distance = field(META_DISTANCE)?;
    if distance != DISTANCE {
        return Err(Error::Corrupt(format!("unknown distance {distance:?}")));
    }
    let dim = field(META_DIM)?;
    let dim = dim
        .parse()
        .map_err(|_| Error::Corrupt(format!("the dimension {dim:?} is not a number")))?;
    Ok(Some(IndexSpec {
        dim,
        model: field(META_MODEL)?.to_owned(),
    }))
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
