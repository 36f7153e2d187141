//! The index handle: creating or opening the index directory, reading the log
//! and the graph snapshot into memory, and what a handle can tell about
//! itself. The write and search paths add their methods to [`Index`] in their
//! own modules.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::embeddings::Embeddings;
use crate::error::{io_error, Error, Result};
use crate::hnsw::Graph;
use crate::item::ItemKind;
use crate::log::{encode_header, read_frames, read_header, LogEnd, LOG_FILE};
use crate::snapshot::{self, sync_dir, SNAPSHOT_FILE, SNAPSHOT_TEMP};
use crate::spec::{check_spec, IndexSpec};

/// The log's name while a new index's header is being written.
const LOG_TEMP: &str = "items.log.tmp";
/// What the LMDB indexes of format 1 kept their data in.
const FORMAT_1_FILE: &str = "data.mdb";

/// An item's kind and source, in memory.
pub(crate) struct Record {
    pub(crate) kind: ItemKind,
    pub(crate) source: Box<str>,
}

/// An open index. See the crate docs for its storage and guarantees.
pub struct Index {
    pub(crate) path: PathBuf,
    pub(crate) spec: IndexSpec,
    /// The log, open for reading and appending.
    pub(crate) log: File,
    /// How far this handle has read the log (other handles may append).
    pub(crate) log_end: LogEnd,
    pub(crate) records: Vec<Record>,
    pub(crate) embeddings: Embeddings,
    pub(crate) graph: Graph,
    /// How many items the snapshot on disk covers.
    pub(crate) saved: usize,
}

impl fmt::Debug for Index {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Index")
            .field("path", &self.path)
            .field("spec", &self.spec)
            .field("len", &self.records.len())
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
        if spec.dim == 0 || spec.dim > u32::MAX as usize {
            return Err(Error::InvalidSpec(format!(
                "the dimension {} is not between 1 and 2^32 - 1",
                spec.dim
            )));
        }
        if spec.model.is_empty() {
            return Err(Error::InvalidSpec("the model name is empty".into()));
        }
        if !path.join(LOG_FILE).exists() {
            check_empty_dir(path)?;
            create(path, &spec)?;
        }
        let index = Index::open(path)?;
        check_spec(&index.spec, &spec)?;
        Ok(index)
    }

    /// Opens an existing index, reading its spec from it.
    pub fn open(path: impl AsRef<Path>) -> Result<Index> {
        let path = path.as_ref();
        let log_path = path.join(LOG_FILE);
        if !log_path.is_file() {
            if path.join(FORMAT_1_FILE).exists() {
                return Err(format_1());
            }
            return Err(Error::NotFound(path.to_owned()));
        }
        let io = |source| io_error(&log_path, source);
        let mut log = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&log_path)
            .map_err(io)?;
        let spec = read_header(&mut log, &log_path)?;
        let mut index = Index {
            path: path.to_owned(),
            log_end: LogEnd::empty(&spec),
            embeddings: Embeddings::new(spec.dim),
            spec,
            log,
            records: Vec::new(),
            graph: Graph::default(),
            saved: 0,
        };
        index.locked(|index| {
            index.catch_up(true)?;
            index.save_graph_if_due();
            Ok(())
        })?;
        Ok(index)
    }

    /// Runs `f` holding the exclusive lock on the log (flock), which every
    /// reading of new frames, append and snapshot holds, so handles in any
    /// process take turns; it waits while another handle appends. The kernel
    /// drops the lock of a process that dies.
    pub(crate) fn locked<T>(&mut self, f: impl FnOnce(&mut Index) -> Result<T>) -> Result<T> {
        let path = self.path.join(LOG_FILE);
        self.log.lock().map_err(|source| io_error(&path, source))?;
        let result = f(self);
        let unlocked = self.log.unlock().map_err(|source| io_error(&path, source));
        let value = result?;
        unlocked?;
        Ok(value)
    }

    /// Reads the frames other handles appended since this one last read the
    /// log, and inserts their items; drops a torn last frame (its writer was
    /// killed before reporting it). On the first reading (`opening`), the graph
    /// starts from the snapshot. The caller holds the log's lock.
    pub(crate) fn catch_up(&mut self, opening: bool) -> Result<()> {
        let log_path = self.path.join(LOG_FILE);
        let io = |source| io_error(&log_path, source);
        let (embeddings, records) = (&mut self.embeddings, &mut self.records);
        let end = read_frames(
            &self.log,
            &log_path,
            &self.spec,
            self.log_end,
            |kind, source, embedding| {
                embeddings.push(embedding);
                records.push(Record {
                    kind,
                    source: source.into(),
                });
            },
        )?;
        if opening {
            // Before anything is changed: a log shorter than its snapshot is refused.
            if let Some(graph) = snapshot::load(&self.path, end.items)? {
                self.saved = graph.len();
                self.graph = graph;
            }
        }
        if self.log.metadata().map_err(io)?.len() > end.valid_len {
            self.log
                .set_len(end.valid_len)
                .and_then(|()| self.log.sync_all())
                .map_err(io)?;
        }
        self.log_end = end;
        self.graph.insert_new(&self.embeddings);
        Ok(())
    }

    /// The dimension and model of the embeddings this index holds.
    pub fn spec(&self) -> &IndexSpec {
        &self.spec
    }

    /// The index directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The number of items: those in the index when it was opened or when this
    /// handle last appended, and those it appended.
    pub fn len(&self) -> Result<u64> {
        Ok(self.records.len() as u64)
    }

    /// Whether the index holds no item.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.records.is_empty())
    }

    /// Saves the graph when enough items were added since the last snapshot
    /// (a quarter of the index, and at least [`SNAPSHOT_MIN_NEW`]), so a crash
    /// costs a bounded rebuild on the next opening.
    pub(crate) fn save_graph_if_due(&mut self) {
        let new = self.graph.len() - self.saved;
        if new >= SNAPSHOT_MIN_NEW.max(self.saved / 4) {
            self.save_graph();
        }
    }

    /// Writes the snapshot; the caller holds the log's lock, which also keeps
    /// two handles from writing the snapshot's temporary file at once.
    fn save_graph(&mut self) {
        // The snapshot is a cache of the log, which holds every item: when it
        // cannot be written, the next opening inserts the missing items again.
        if snapshot::save(&self.graph, &self.path).is_ok() {
            self.saved = self.graph.len();
        }
    }
}

/// Items added since the last snapshot before the next one is written.
const SNAPSHOT_MIN_NEW: usize = 50_000;

impl Drop for Index {
    fn drop(&mut self) {
        if self.graph.len() > self.saved {
            // A snapshot not written is only a cache not updated.
            let _ = self.locked(|index| {
                index.save_graph();
                Ok(())
            });
        }
    }
}

fn format_1() -> Error {
    Error::UnsupportedFormat {
        found: "clip-index/1 (LMDB data.mdb); index the corpus again into a new directory".into(),
    }
}

/// Refuses a directory holding anything but a half-created index; creates a missing one.
fn check_empty_dir(path: &Path) -> Result<()> {
    let entries = match std::fs::read_dir(path) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return std::fs::create_dir_all(path).map_err(|source| io_error(path, source));
        }
        Err(source) => return Err(io_error(path, source)),
    };
    for entry in entries {
        let name = entry.map_err(|source| io_error(path, source))?.file_name();
        if name == FORMAT_1_FILE {
            return Err(format_1());
        }
        if name != LOG_TEMP && name != SNAPSHOT_TEMP && name != SNAPSHOT_FILE {
            return Err(Error::NotAnIndex {
                path: path.to_owned(),
                reason: format!("the directory holds {name:?} and no {LOG_FILE}"),
            });
        }
    }
    Ok(())
}

/// Writes a new index's log: its header goes to a temporary file that is
/// renamed into place once on disk, so `items.log` never exists half-written.
fn create(path: &Path, spec: &IndexSpec) -> Result<()> {
    // A snapshot without its log belongs to no index any more.
    match std::fs::remove_file(path.join(SNAPSHOT_FILE)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(io_error(&path.join(SNAPSHOT_FILE), e));
        }
        _ => {}
    }
    let temp = path.join(LOG_TEMP);
    let io = |source| io_error(&temp, source);
    let mut file = File::create(&temp).map_err(io)?;
    file.write_all(&encode_header(spec))
        .and_then(|()| file.sync_all())
        .map_err(io)?;
    std::fs::rename(&temp, path.join(LOG_FILE)).map_err(io)?;
    sync_dir(path)
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
