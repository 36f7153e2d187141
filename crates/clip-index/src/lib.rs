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

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use hannoy::distances::Cosine;
use heed::types::{Bytes, Str, U32};
use heed::{AnyTls, CommitOrAbort, Env, EnvOpenOptions, RoTxn, RwTxn, WithoutTls};
use rand::rngs::StdRng;
use rand::SeedableRng;

type BigEndian = heed::byteorder::BigEndian;
type VectorDb = hannoy::Database<'static, Cosine>;
type ItemsDb = heed::Database<'static, U32<BigEndian>, Bytes>;

/// The identifier of an item: ids are given in order, from 0, by [`Index::append`].
pub type ItemId = u32;

/// The LMDB map size: the most the index file may grow to (1 TiB of address space,
/// not of disk; see the crate docs).
#[cfg(target_pointer_width = "64")]
pub const MAP_SIZE: usize = 1 << 40;
/// The LMDB map size: the most the index file may grow to (1 GiB on 32-bit targets,
/// whose address space is small).
#[cfg(not(target_pointer_width = "64"))]
pub const MAP_SIZE: usize = 1 << 30;

/// The on-disk format this crate writes; another value in `meta` is refused.
const FORMAT: &str = "clip-index/1";
/// The distance the vectors database uses.
const DISTANCE: &str = "cosine";
/// The hannoy index inside the `vectors` database (one LMDB database can hold several).
const HNSW_INDEX: u16 = 0;
/// HNSW links per node on the upper layers and on layer 0 (hannoy's suggested 16/32).
const M: usize = 16;
const M0: usize = 32;
/// Candidate list size while inserting into the graph (hannoy's default).
const EF_CONSTRUCTION: usize = 100;
/// Candidate list size while searching: at least this, and at least `limit`. On 10k
/// uniform random 512-d vectors (no structure: the hardest case) recall@10 was 0.57
/// at 128 and 0.93 at 400, for 2 → 4 ms a query; clustered data reached 0.998 either way.
const EF_SEARCH: usize = 400;
/// The smallest L2 norm accepted for an embedding or a query (CLIP's are about 1
/// when normalised, about 10 raw).
const MIN_NORM: f64 = 1e-3;

const META_FORMAT: &str = "format";
const META_DISTANCE: &str = "distance";
const META_DIM: &str = "dim";
const META_MODEL: &str = "model";

/// What the embeddings of an index are: their dimension and the model that made them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexSpec {
    /// The embedding dimension, e.g. 512 for ViT-B-32.
    pub dim: usize,
    /// The model the embeddings came from, e.g. `ViT-B-32::openai`. Embeddings of
    /// different models are not comparable, so an index holds one model's.
    pub model: String,
}

/// Whether an item's source is a sentence or an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ItemKind {
    /// The source is the sentence itself.
    Text,
    /// The source is the image's path or URI.
    Image,
}

impl ItemKind {
    fn tag(self) -> u8 {
        match self {
            ItemKind::Text => b't',
            ItemKind::Image => b'i',
        }
    }

    fn from_tag(tag: u8) -> Option<ItemKind> {
        match tag {
            b't' => Some(ItemKind::Text),
            b'i' => Some(ItemKind::Image),
            _ => None,
        }
    }

    /// `"text"` or `"image"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ItemKind::Text => "text",
            ItemKind::Image => "image",
        }
    }
}

impl fmt::Display for ItemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ItemKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(ItemKind::Text),
            "image" => Ok(ItemKind::Image),
            other => Err(format!(
                "unknown item kind {other:?}: expected text or image"
            )),
        }
    }
}

/// One item to append: an embedding and where it came from.
#[derive(Debug, Clone, Copy)]
pub struct Item<'a> {
    /// The sentence, or the image's path or URI.
    pub source: &'a str,
    /// Whether `source` is a sentence or an image.
    pub kind: ItemKind,
    /// The embedding, `spec().dim` finite values, not all zero. It need not be
    /// normalised: the index compares directions only.
    pub embedding: &'a [f32],
}

/// A stored item, as [`Index::get`] returns it.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The item's id.
    pub id: ItemId,
    /// The sentence, or the image's path or URI.
    pub source: String,
    /// Whether `source` is a sentence or an image.
    pub kind: ItemKind,
    /// The embedding as it was appended.
    pub embedding: Vec<f32>,
}

/// One search result.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    /// The item's id.
    pub id: ItemId,
    /// The sentence, or the image's path or URI.
    pub source: String,
    /// Whether `source` is a sentence or an image.
    pub kind: ItemKind,
    /// The cosine similarity between the query and the item's embedding, in [-1, 1].
    pub score: f32,
}

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

/// Everything that can go wrong with an index.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The index directory could not be created or read.
    #[error("{path}: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// [`Index::open`] was given a path with no index in it.
    #[error("no index at {0} (no data.mdb there); create one first")]
    NotFound(PathBuf),
    /// The path holds something other than an index of this crate.
    #[error("{path} is not a clip-index index: {reason}")]
    NotAnIndex {
        /// The path.
        path: PathBuf,
        /// What was found instead.
        reason: String,
    },
    /// The index was written by another format version of this crate.
    #[error("index format {found:?} is not supported (this build reads {FORMAT:?})")]
    UnsupportedFormat {
        /// The format recorded in the index.
        found: String,
    },
    /// The index holds embeddings of another dimension than requested.
    #[error("the index holds {stored}-dimensional embeddings, not {requested}-dimensional ones")]
    DimensionMismatch {
        /// The dimension recorded in the index.
        stored: usize,
        /// The dimension asked for.
        requested: usize,
    },
    /// The index holds embeddings of another model than requested.
    #[error("the index holds embeddings of model {stored:?}, not {requested:?}; embeddings of different models are not comparable")]
    ModelMismatch {
        /// The model recorded in the index.
        stored: String,
        /// The model asked for.
        requested: String,
    },
    /// The spec given to [`Index::create_or_open`] is unusable.
    #[error("invalid index spec: {0}")]
    InvalidSpec(String),
    /// An item of a batch has an unusable embedding; nothing of the batch was written.
    #[error("item {index} of the batch ({source_text:?}): its embedding is refused: {error}; nothing was written")]
    InvalidItem {
        /// The item's position in the batch.
        index: usize,
        /// The item's source, to find it by.
        source_text: String,
        /// What is wrong with its embedding.
        error: VectorError,
    },
    /// The query vector is unusable.
    #[error("the query vector is refused: {0}")]
    InvalidQuery(VectorError),
    /// Ids are 32-bit; the batch would pass the last one.
    #[error("the index holds {len} items and cannot take {adding} more (ids are 32-bit)")]
    TooManyItems {
        /// Items in the index.
        len: u64,
        /// Items in the batch.
        adding: usize,
    },
    /// The index reached LMDB's map size; nothing of the failed batch was written.
    #[error("the index is full: it reached its {} GiB map size; nothing of this batch was written", MAP_SIZE >> 30)]
    Full,
    /// Another handle in this process already has the index open.
    #[error("the index at {0} is already open in this process")]
    AlreadyOpen(PathBuf),
    /// The stored data does not decode.
    #[error("the index is corrupt: {0}")]
    Corrupt(String),
    /// An LMDB error.
    #[error("LMDB: {0}")]
    Lmdb(heed::Error),
    /// An error of the HNSW graph.
    #[error("HNSW index: {0}")]
    Hnsw(hannoy::Error),
}

impl From<heed::Error> for Error {
    fn from(e: heed::Error) -> Self {
        match e {
            heed::Error::Mdb(heed::MdbError::MapFull) => Error::Full,
            e => Error::Lmdb(e),
        }
    }
}

impl From<hannoy::Error> for Error {
    fn from(e: hannoy::Error) -> Self {
        match e {
            hannoy::Error::Heed(e) => e.into(),
            e => Error::Hnsw(e),
        }
    }
}

/// A `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An open index. See the crate docs for its storage and guarantees.
pub struct Index {
    env: Env<WithoutTls>,
    vectors: VectorDb,
    items: ItemsDb,
    spec: IndexSpec,
    path: PathBuf,
}

impl fmt::Debug for Index {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Index")
            .field("path", &self.path)
            .field("spec", &self.spec)
            .finish_non_exhaustive()
    }
}

impl Index {
    /// Opens the index at `path` when there is one, after checking that it holds
    /// embeddings of `spec`'s dimension and model; otherwise creates an empty one
    /// there (and the directory, when missing).
    ///
    /// A directory that holds other files and no index is refused, so an index
    /// is never mixed into an unrelated folder.
    pub fn create_or_open(path: impl AsRef<Path>, spec: IndexSpec) -> Result<Index> {
        let path = path.as_ref();
        if spec.dim == 0 {
            return Err(Error::InvalidSpec("the dimension is 0".into()));
        }
        if spec.model.is_empty() {
            return Err(Error::InvalidSpec("the model name is empty".into()));
        }
        if !path.join("data.mdb").exists() {
            match std::fs::read_dir(path) {
                Ok(mut entries) => {
                    if let Some(entry) = entries.next() {
                        let entry = entry.map_err(|source| io_error(path, source))?;
                        return Err(Error::NotAnIndex {
                            path: path.to_owned(),
                            reason: format!(
                                "the directory holds {:?} and no data.mdb",
                                entry.file_name()
                            ),
                        });
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    std::fs::create_dir_all(path).map_err(|source| io_error(path, source))?;
                }
                Err(source) => return Err(io_error(path, source)),
            }
        }

        let env = open_env(path)?;
        let wtxn = env.write_txn()?;
        let (vectors, items) = env
            .create_databases_and_commit(wtxn, |opener, wtxn| -> Result<_> {
                let vectors: hannoy::Database<Cosine> =
                    opener.create_database(wtxn, Some("vectors"))?;
                let items = opener.create_database::<U32<BigEndian>, Bytes>(wtxn, Some("items"))?;
                let meta = opener.create_database::<Str, Str>(wtxn, Some("meta"))?;
                match read_spec(meta, wtxn)? {
                    Some(stored) => check_spec(&stored, &spec)?,
                    None => {
                        if !items.is_empty(wtxn)? || !vectors.is_empty(wtxn)? {
                            return Err(Error::Corrupt(
                                "items are stored but the metadata is missing".into(),
                            ));
                        }
                        meta.put(wtxn, META_FORMAT, FORMAT)?;
                        meta.put(wtxn, META_DISTANCE, DISTANCE)?;
                        meta.put(wtxn, META_DIM, &spec.dim.to_string())?;
                        meta.put(wtxn, META_MODEL, &spec.model)?;
                    }
                }
                Ok(CommitOrAbort::<_, ()>::Commit((vectors, items)))
            })?
            .unwrap_commit();
        Ok(Index {
            env,
            vectors,
            items,
            spec,
            path: path.to_owned(),
        })
    }

    /// Opens an existing index, reading its spec from it.
    pub fn open(path: impl AsRef<Path>) -> Result<Index> {
        let path = path.as_ref();
        if !path.join("data.mdb").is_file() {
            return Err(Error::NotFound(path.to_owned()));
        }
        let env = open_env(path)?;
        let not_an_index = |reason: &str| Error::NotAnIndex {
            path: path.to_owned(),
            reason: reason.into(),
        };
        let rtxn = env.read_txn()?;
        let (vectors, items, meta) = env
            .open_databases_and_commit(rtxn, |opener, rtxn| -> Result<_> {
                let vectors: Option<hannoy::Database<Cosine>> =
                    opener.open_database(rtxn, Some("vectors"))?;
                let items = opener.open_database::<U32<BigEndian>, Bytes>(rtxn, Some("items"))?;
                let meta = opener.open_database::<Str, Str>(rtxn, Some("meta"))?;
                Ok(CommitOrAbort::<_, ()>::Commit((vectors, items, meta)))
            })?
            .unwrap_commit();
        let (Some(vectors), Some(items), Some(meta)) = (vectors, items, meta) else {
            return Err(not_an_index("its databases are missing"));
        };
        let rtxn = env.read_txn()?;
        let spec =
            read_spec(meta, &rtxn)?.ok_or_else(|| not_an_index("its metadata is missing"))?;
        drop(rtxn);
        Ok(Index {
            env,
            vectors,
            items,
            spec,
            path: path.to_owned(),
        })
    }

    /// The dimension and model of the embeddings this index holds.
    pub fn spec(&self) -> &IndexSpec {
        &self.spec
    }

    /// The index directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The number of items committed, including by other processes sharing the index.
    pub fn len(&self) -> Result<u64> {
        let rtxn = self.env.read_txn()?;
        Ok(self.items.len(&rtxn)?)
    }

    /// Whether the index holds no item.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

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

    /// The `limit` items nearest to `query` by cosine similarity, best first.
    ///
    /// The search is approximate (HNSW): on large indexes a true neighbour is
    /// occasionally missed, but every returned score is the exact cosine
    /// similarity between `query` and that item's embedding.
    pub fn search(&self, query: &[f32], limit: usize) -> Result<Vec<Hit>> {
        check_vector(query, self.spec.dim).map_err(Error::InvalidQuery)?;
        let rtxn = self.env.read_txn()?;
        if limit == 0 || self.items.is_empty(&rtxn)? {
            return Ok(Vec::new());
        }
        let reader = hannoy::Reader::open(&rtxn, HNSW_INDEX, self.vectors)?;
        let nns = reader
            .nns(limit)
            .ef_search(EF_SEARCH.max(limit))
            .by_vector(&rtxn, query)?;
        let mut hits = Vec::with_capacity(limit);
        for (id, distance) in nns.into_nns() {
            let (kind, source) = self
                .record(&rtxn, id)?
                .ok_or_else(|| Error::Corrupt(format!("item {id} has a vector but no source")))?;
            // hannoy's cosine distance is (1 - cos) / 2.
            hits.push(Hit {
                id,
                source,
                kind,
                score: 1.0 - 2.0 * distance,
            });
        }
        Ok(hits)
    }

    /// The item with this id, or `None` when there is none.
    pub fn get(&self, id: ItemId) -> Result<Option<Entry>> {
        let rtxn = self.env.read_txn()?;
        let Some((kind, source)) = self.record(&rtxn, id)? else {
            return Ok(None);
        };
        let reader = hannoy::Reader::open(&rtxn, HNSW_INDEX, self.vectors)?;
        let embedding = reader
            .item_vector(&rtxn, id)?
            .ok_or_else(|| Error::Corrupt(format!("item {id} has a source but no vector")))?;
        Ok(Some(Entry {
            id,
            source,
            kind,
            embedding,
        }))
    }

    fn record(
        &self,
        rtxn: &RoTxn<'_, WithoutTls>,
        id: ItemId,
    ) -> Result<Option<(ItemKind, String)>> {
        let Some(bytes) = self.items.get(rtxn, &id)? else {
            return Ok(None);
        };
        let corrupt = || Error::Corrupt(format!("the record of item {id} does not decode"));
        let (&tag, source) = bytes.split_first().ok_or_else(corrupt)?;
        let kind = ItemKind::from_tag(tag).ok_or_else(corrupt)?;
        let source = std::str::from_utf8(source).map_err(|_| corrupt())?;
        Ok(Some((kind, source.to_owned())))
    }
}

fn io_error(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.to_owned(),
        source,
    }
}

fn open_env(path: &Path) -> Result<Env<WithoutTls>> {
    let mut options = EnvOpenOptions::new().read_txn_without_tls();
    options.map_size(MAP_SIZE).max_dbs(4);
    // SAFETY: LMDB's memory map is only unsound if the file is modified other than
    // through LMDB; this crate only touches it through LMDB, and heed refuses to open
    // the same environment twice in one process.
    let env = unsafe { options.open(path) }.map_err(|e| match e {
        heed::Error::EnvAlreadyOpened => Error::AlreadyOpen(path.to_owned()),
        e => e.into(),
    })?;
    // A reader killed mid-transaction leaves its slot taken, which stops LMDB from
    // reusing the pages it could see; free such slots.
    env.clear_stale_readers()?;
    Ok(env)
}

fn read_spec(
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

fn check_spec(stored: &IndexSpec, requested: &IndexSpec) -> Result<()> {
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

fn check_vector(vector: &[f32], dim: usize) -> Result<(), VectorError> {
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
    // hannoy's cosine treats a product of norms below f32::EPSILON as "no direction"
    // (distance 0 to everything); two norms of at least MIN_NORM stay clear of it.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_can_be_shared_across_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Index>();
    }

    #[test]
    fn item_kind_names_round_trip() {
        for kind in [ItemKind::Text, ItemKind::Image] {
            assert_eq!(kind.to_string().parse::<ItemKind>(), Ok(kind));
            assert_eq!(ItemKind::from_tag(kind.tag()), Some(kind));
        }
        assert!("video".parse::<ItemKind>().is_err());
    }
}
