//! The graph's snapshot, `graph.hnsw`: the HNSW links of the first items of
//! the log, so opening a large index does not rebuild its graph. It is a
//! cache: written whole to a temporary file, fsynced and renamed over the old
//! one; on opening, a snapshot that does not verify is ignored and the graph
//! rebuilt from the log, and the items the log holds past it are inserted.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use crate::error::{io_error, Error, Result};
use crate::hnsw::{EntryPoint, Graph, M, M0, MAX_LEVEL};
use crate::item::ItemId;

/// The snapshot's name in the index directory, and its name while being written.
pub(crate) const SNAPSHOT_FILE: &str = "graph.hnsw";
pub(crate) const SNAPSHOT_TEMP: &str = "graph.hnsw.tmp";
const MAGIC: &[u8; 8] = b"cliphnsw";
const VERSION: u32 = 1;

/// Writes `graph` as the directory's snapshot.
pub(crate) fn save(graph: &Graph, dir: &Path) -> Result<()> {
    let temp = dir.join(SNAPSHOT_TEMP);
    let io = |source| io_error(&temp, source);
    let file = File::create(&temp).map_err(io)?;
    let mut out = Checksummed {
        out: BufWriter::with_capacity(1 << 20, file),
        hasher: crc32fast::Hasher::new(),
    };
    out.write(MAGIC).map_err(io)?;
    for value in [VERSION, M as u32, M0 as u32, graph.len() as u32] {
        out.write(&value.to_le_bytes()).map_err(io)?;
    }
    let entry = graph
        .entry()
        .map_or([u32::MAX, 0], |e| [e.id, e.level as u32]);
    for value in entry {
        out.write(&value.to_le_bytes()).map_err(io)?;
    }
    let (mut bytes, mut links) = (Vec::with_capacity(1 + 4 * M0), Vec::with_capacity(M0));
    for id in 0..graph.len() as ItemId {
        let level = graph.level_of(id);
        out.write(&[level as u8]).map_err(io)?;
        for layer in 0..=level {
            graph.read_links(id, layer, &mut links);
            bytes.clear();
            bytes.push(links.len() as u8);
            for link in &links {
                bytes.extend_from_slice(&link.to_le_bytes());
            }
            out.write(&bytes).map_err(io)?;
        }
    }
    let crc = out.hasher.finalize().to_le_bytes();
    let mut file = out.out.into_inner().map_err(|e| io(e.into_error()))?;
    file.write_all(&crc)
        .and_then(|()| file.sync_all())
        .map_err(io)?;
    let target = dir.join(SNAPSHOT_FILE);
    std::fs::rename(&temp, &target).map_err(io)?;
    sync_dir(dir)
}

/// The snapshot in `dir`, when there is one that verifies and matches this
/// build's graph parameters. `items` is how many items the log holds: a
/// snapshot of more means the log lost items it had reported written.
pub(crate) fn load(dir: &Path, items: u64) -> Result<Option<Graph>> {
    let path = dir.join(SNAPSHOT_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(io_error(&path, source)),
    };
    let Some((body, crc)) = bytes.split_last_chunk::<4>() else {
        return Ok(None);
    };
    if crc32fast::hash(body) != u32::from_le_bytes(*crc) {
        return Ok(None);
    }
    let Some(graph) = decode(body) else {
        return Ok(None);
    };
    if graph.len() as u64 > items {
        return Err(Error::Corrupt(format!(
            "the graph covers {} items but items.log only holds {items}: the log lost items",
            graph.len()
        )));
    }
    Ok(Some(graph))
}

fn decode(body: &[u8]) -> Option<Graph> {
    let mut input = Input(body);
    if input.take(8)? != MAGIC {
        return None;
    }
    let [version, m, m0, len, entry_id, entry_level] = std::array::from_fn(|_| input.u32());
    if (version?, m?, m0?) != (VERSION, M as u32, M0 as u32) {
        return None;
    }
    let len = len? as usize;
    let mut nodes = Vec::with_capacity(len);
    for _ in 0..len {
        let level = usize::from(input.take(1)?[0]);
        if level > MAX_LEVEL {
            return None;
        }
        let mut layers = Vec::with_capacity(level + 1);
        for layer in 0..=level {
            let count = usize::from(input.take(1)?[0]);
            if count > if layer == 0 { M0 } else { M } {
                return None;
            }
            let links: Vec<ItemId> = input
                .take(4 * count)?
                .as_chunks::<4>()
                .0
                .iter()
                .map(|b| u32::from_le_bytes(*b))
                .collect();
            if links.iter().any(|&link| link as usize >= len) {
                return None;
            }
            layers.push(links);
        }
        nodes.push(layers);
    }
    let entry = match (entry_id?, entry_level? as usize) {
        (u32::MAX, _) if len == 0 => None,
        (id, level) if (id as usize) < len && nodes[id as usize].len() == level + 1 => {
            Some(EntryPoint { id, level })
        }
        _ => return None,
    };
    // Every link must point to a node that is on that layer.
    let on_layers = nodes.iter().all(|layers| {
        layers
            .iter()
            .enumerate()
            .all(|(layer, links)| links.iter().all(|&link| nodes[link as usize].len() > layer))
    });
    (input.0.is_empty() && on_layers).then(|| Graph::from_parts(nodes, entry))
}

struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (taken, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(taken)
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
}

struct Checksummed<W> {
    out: W,
    hasher: crc32fast::Hasher,
}

impl<W: Write> Checksummed<W> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.hasher.update(bytes);
        self.out.write_all(bytes)
    }
}

/// Makes a rename or a new file in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| io_error(dir, source))
}
