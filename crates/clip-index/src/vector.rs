//! The check every embedding and query passes before it reaches the index:
//! the right dimension, finite values and a direction to compare. It is shared
//! by the write and the search paths, and its error is part of [`Error`].
//!
//! [`Error`]: crate::Error

/// The smallest L2 norm accepted for an embedding or a query (CLIP's are about 1
/// when normalised, about 10 raw).
const MIN_NORM: f64 = 1e-3;

/// Why a vector was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum VectorError {
    /// The vector's length is not the index's dimension.
    #[error("it has {got} dimensions, the index has {expected}")]
    Dimension {
        /// The index's dimension.
        expected: usize,
        /// The vector's length.
        got: usize,
    },
    /// The vector holds a NaN or an infinity.
    #[error("value {position} is {value}, not a finite number")]
    NonFinite {
        /// Where the first such value is.
        position: usize,
        /// The value.
        value: f32,
    },
    /// The vector is all zeros, or so close to zero that its direction, which is
    /// all cosine similarity compares, is lost to rounding.
    #[error("its norm is {norm}, too close to zero to have a direction to compare by cosine")]
    NoDirection {
        /// The vector's L2 norm.
        norm: f32,
    },
}

pub(crate) fn check_vector(vector: &[f32], dim: usize) -> Result<(), VectorError> {
    if vector.len() != dim {
        return Err(VectorError::Dimension {
            expected: dim,
            got: vector.len(),
        });
    }
    if let Some(position) = vector.iter().position(|v| !v.is_finite()) {
        return Err(VectorError::NonFinite {
            position,
            value: vector[position],
        });
    }
    // The index keeps 1 / norm per item (embeddings.rs): a norm near zero would make
    // it overflow to infinity and every cosine with the item meaningless.
    let norm = vector
        .iter()
        .map(|&v| v as f64 * v as f64)
        .sum::<f64>()
        .sqrt();
    if norm < MIN_NORM {
        return Err(VectorError::NoDirection { norm: norm as f32 });
    }
    Ok(())
}
