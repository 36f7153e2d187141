//! The on-disk layout: the format version, the keys of the `meta` database, the
//! map size and the types of the LMDB databases. It lives apart so the error
//! messages, the metadata checks and the read and write paths share one
//! definition of what is on disk, without depending on each other.

use hannoy::distances::Cosine;
use heed::types::{Bytes, U32};

pub(crate) type BigEndian = heed::byteorder::BigEndian;
pub(crate) type VectorDb = hannoy::Database<'static, Cosine>;
pub(crate) type ItemsDb = heed::Database<'static, U32<BigEndian>, Bytes>;

/// The LMDB map size: the most the index file may grow to (1 TiB of address space,
/// not of disk; see the crate docs).
#[cfg(target_pointer_width = "64")]
pub const MAP_SIZE: usize = 1 << 40;
/// The LMDB map size: the most the index file may grow to (1 GiB on 32-bit targets,
/// whose address space is small).
#[cfg(not(target_pointer_width = "64"))]
pub const MAP_SIZE: usize = 1 << 30;

/// The on-disk format this crate writes; another value in `meta` is refused.
pub(crate) const FORMAT: &str = "clip-index/1";
/// The distance the vectors database uses.
pub(crate) const DISTANCE: &str = "cosine";
/// The hannoy index inside the `vectors` database (one LMDB database can hold several).
pub(crate) const HNSW_INDEX: u16 = 0;

pub(crate) const META_FORMAT: &str = "format";
pub(crate) const META_DISTANCE: &str = "distance";
pub(crate) const META_DIM: &str = "dim";
pub(crate) const META_MODEL: &str = "model";
