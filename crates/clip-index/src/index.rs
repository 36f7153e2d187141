//! The index handle: creating or opening the LMDB environment and its
//! databases, and what a handle can tell about itself. The write and search
//! paths add their methods to [`Index`] in their own modules.

use std::fmt;
use std::path::{Path, PathBuf};

use hannoy::distances::Cosine;
use heed::types::{Bytes, Str, U32};
use heed::{CommitOrAbort, Env, EnvOpenOptions, WithoutTls};

use crate::error::{io_error, Error, Result};
use crate::layout::{
    BigEndian, ItemsDb, VectorDb, DISTANCE, FORMAT, MAP_SIZE, META_DIM, META_DISTANCE, META_FORMAT,
    META_MODEL,
};
use crate::spec::{check_spec, read_spec, IndexSpec};

/// An open index. See the crate docs for its storage and guarantees.
pub struct Index {
    pub(crate) env: Env<WithoutTls>,
    pub(crate) vectors: VectorDb,
    pub(crate) items: ItemsDb,
    pub(crate) spec: IndexSpec,
    pub(crate) path: PathBuf,
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
}

fn open_env(path: &Path) -> Result<Env<WithoutTls>> {
    // LMDB takes an empty data.mdb for a new one and writes fresh metadata into
    // it; an index's file always holds its meta pages, so an empty one lost its
    // data (truncated): say so, and leave it as it is.
    let data = path.join("data.mdb");
    if std::fs::metadata(&data).is_ok_and(|meta| meta.len() == 0) {
        return Err(Error::Corrupt(format!(
            "{} is empty: the file was truncated and its items are lost",
            data.display()
        )));
    }
    let mut options = EnvOpenOptions::new().read_txn_without_tls();
    options.map_size(MAP_SIZE).max_dbs(4);
    // SAFETY: LMDB's memory map is only unsound if the file is modified other than
    // through LMDB; this crate only touches it through LMDB, and heed refuses to open
    // the same environment twice in one process.
    let env = unsafe { options.open(path) }.map_err(|e| match e {
        heed::Error::EnvAlreadyOpened => Error::AlreadyOpen(path.to_owned()),
        e => e.into(),
    })?;
    check_not_truncated(&env, &data)?;
    // A reader killed mid-transaction leaves its slot taken, which stops LMDB from
    // reusing the pages it could see; free such slots.
    env.clear_stale_readers()?;
    Ok(env)
}

/// Refuses a data.mdb shorter than its last committed page: LMDB maps the file
/// and would die of SIGBUS on the first read of a page past its end. The file
/// only grows, and a commit writes its pages before its meta page, so the size
/// read after the meta page is never too small for a sound index.
fn check_not_truncated(env: &Env<WithoutTls>, data: &Path) -> Result<()> {
    let last_page = env.info().last_page_number as u64;
    let page_size = u64::from(env.unnamed_database_stat().page_size);
    let needed = (last_page + 1) * page_size;
    let size = env.real_disk_size()?;
    if size < needed {
        return Err(Error::Corrupt(format!(
            "{} is truncated: it holds {size} bytes, but its last committed page ends at byte \
             {needed}; the items on the missing pages are lost",
            data.display()
        )));
    }
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
}
