//! An on-disk vector index of CLIP embeddings, each stored with its source (the
//! sentence, or the image's path or URI) and its kind, searchable by cosine
//! similarity.
//!
//! # Storage
//!
//! The index is a directory holding one [LMDB] environment (`data.mdb`,
//! `lock.mdb`). It has three databases:
//! - `vectors`: the embeddings and an HNSW graph over them, kept by
//!   [`hannoy`] with its cosine distance;
//! - `items`: each item's kind and source, keyed by its id;
//! - `meta`: the format version, distance, embedding dimension and model name.
//!
//! The engine is `hannoy` because it is Meilisearch's maintained successor to
//! `arroy` (their vector store since 2025): an HNSW graph stored in LMDB that
//! inserts new items into the existing graph instead of rebuilding it, so
//! appending stays fast at millions of items, and whose writes ride on our own
//! LMDB write transaction.
//!
//! # Durability
//!
//! [`Index::append`] writes the vectors, the sources and the graph update in
//! one LMDB write transaction and commits it, which fsyncs, before it returns.
//! When it returns `Ok`, the batch survives a crash or power loss; when the
//! process dies before that, LMDB rolls back to the previous commit and the
//! batch is absent as a whole. There is never a vector without its source, nor
//! a source without its vector.
//!
//! # Map size
//!
//! LMDB maps the file into memory and needs a maximum size up front. The index
//! reserves [`MAP_SIZE`] (1 TiB) of *address space*; on Linux without
//! `MDB_WRITEMAP` the file only grows as data is written, so a small index
//! takes little disk. Each item costs about `4 × dim` bytes of vector, a few
//! hundred bytes of graph links, and its source: 1 TiB holds several hundred
//! million 512-dimensional embeddings. An index that reaches it fails its
//! append with [`Error::Full`] and keeps everything committed before.
//!
//! # Concurrency
//!
//! [`Index::search`] takes `&self` and can run from many threads at once.
//! LMDB lets one writer and any number of readers share an index, across
//! processes too. One process may open a given index only once at a time.
//!
//! Keep the index on a local filesystem: LMDB's locking does not work over
//! network filesystems.
//!
//! [LMDB]: http://www.lmdb.tech/doc/

mod error;
mod index;
mod item;
mod layout;
mod search;
mod spec;
mod vector;
mod write;

pub use error::{Error, Result};
pub use index::Index;
pub use item::{Entry, Hit, Item, ItemId, ItemKind};
pub use layout::MAP_SIZE;
pub use spec::IndexSpec;
pub use vector::VectorError;
