//! An on-disk vector index of CLIP embeddings, each stored with its source (the
//! sentence, or the image's path or URI) and its kind, searchable by cosine
//! similarity.
//!
//! # Storage
//!
//! The index is a directory holding two files:
//! - `items.log`, the source of truth: a header (format version, embedding
//!   dimension, model name), then one frame per append holding its items'
//!   kinds, sources and embeddings, each frame checksummed (CRC-32);
//! - `graph.hnsw`, a snapshot of the HNSW graph over the first items of the
//!   log, checksummed, so opening a large index does not rebuild its graph. It
//!   is a cache: one that is missing or does not verify is ignored, and the
//!   items past it are inserted again when the index is opened.
//!
//! Opening reads the whole log into memory: the embeddings (4 × dim bytes an
//! item, 2 GiB for a million 512-d ones), the sources, and the graph (about
//! 300 bytes an item). Searches and inserts run on that copy.
//!
//! # Engine
//!
//! The graph is an HNSW ([Malkov & Yashunin]) of our own, M = 32 (64 links on
//! layer 0), ef_construction 40 (faiss's default), with the usual
//! neighbour-selection heuristic; unlike hnswlib's and faiss's greedy walk,
//! the layers above layer 0 are searched with a short candidate list, which
//! on clustered embeddings keeps inserts from linking an item into the
//! wrong cluster (see `hnsw.rs`). Each batch is inserted by all cores
//! (rayon); layer 0 is one flat array read without locks, and each node's
//! writers take its own lock. Format 1 kept [`hannoy`]'s graph in LMDB: its incremental build
//! reads and rewrites every link of the graph on each append, so an append
//! cost time in proportion to the whole index (214 items/s at 100k), not to
//! the batch. Keeping the graph in memory and logging only the items makes an
//! append cost its items' inserts and one fsync. Indexes of format 1 are
//! refused with [`Error::UnsupportedFormat`]; index the corpus again.
//!
//! [`hannoy`]: https://github.com/nnethercott/hannoy
//! [Malkov & Yashunin]: https://arxiv.org/abs/1603.09320
//!
//! # Durability
//!
//! [`Index::append`] writes its batch as one frame at the end of the log and
//! fsyncs it before it returns, and only then adds it to the graph in memory.
//! When it returns `Ok`, the batch survives a crash or power loss. A process
//! killed before that leaves at most a torn last frame, which the next opening
//! drops (its batch was never reported written) and truncates: a batch is
//! present whole or not at all, never a vector without its source. Damage
//! anywhere else in the log (a frame that does not verify and is followed by
//! more data) is refused with [`Error::Corrupt`], as is a log shorter than the
//! graph snapshot says it was.
//!
//! # Concurrency
//!
//! Any number of handles, in any processes, may have an index open and
//! append to it: each append takes an exclusive lock on `items.log` (flock;
//! the kernel drops it when its holder dies), first reads the frames other
//! handles appended since, and only then writes its own, so ids stay dense
//! and in log order. A handle's searches see the items of the index as of its
//! opening or its last append. [`Index::search`] takes `&self` and can run
//! from many threads at once.
//!
//! Keep the index on a local filesystem: the lock and the fsync ordering the
//! log relies on are not dependable on network filesystems.

mod distance;
mod embeddings;
mod error;
mod hnsw;
mod index;
mod item;
mod log;
mod search;
mod snapshot;
mod spec;
mod vector;
mod write;

pub use error::{Error, Result};
pub use index::Index;
pub use item::{Entry, Hit, Item, ItemId, ItemKind};
pub use search::DEFAULT_EF_SEARCH;
pub use spec::IndexSpec;
pub use vector::VectorError;
