//! The HNSW graph (Malkov & Yashunin, 2016) over the embeddings in memory:
//! inserting a batch of new items, two threads at a time, and searching.
//!
//! Each node's links on each of its layers sit behind their own lock, so
//! parallel inserts only wait on each other when they touch the same node.
//! The graph is a cache of the log: it can always be rebuilt from the items.

use std::cell::RefCell;
use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::sync::atomic::AtomicU32;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Mutex, MutexGuard, PoisonError};

use rayon::prelude::*;

use crate::embeddings::Embeddings;
use crate::item::ItemId;

/// Links a new node chooses on every layer, and the most a node keeps on the
/// upper layers; on layer 0 it keeps up to twice as many (hnswlib's scheme).
/// Twice faiss's default of 16: on the bench's clustered 512-d vectors, whose
/// neighbourhoods are nearly as high-dimensional as the space, M = 16 left
/// recall@10 at 300k items 0.93 at ef_search 256 (faiss's own M = 16 graph
/// at 1M: 0.84), M = 32 reached 0.96 for about 5% more time an insert (the
/// lists are pruned half as often).
pub(crate) const M: usize = 32;
pub(crate) const M0: usize = 2 * M;
/// Candidate list size while inserting: faiss's default. Search time was
/// nearly all of an insert's.
pub(crate) const EF_CONSTRUCTION: usize = 40;
/// Candidate list size on the layers above a node's own while inserting it,
/// and above layer 0 while searching, where HNSW walks greedily (a list of
/// 1). On clustered data those layers hold a node or fewer a cluster, all
/// nearly equidistant from anything outside their cluster, so a greedy walk
/// often stops in the wrong cluster; an insert that starts its layer-0
/// search there links the new node into that cluster, where searches from
/// its own never find it. That, not pruning, stalled recall@10 however long
/// the search's list: at 200k items 0.98, at 1M 0.89. A list of 6 here gave
/// 0.995 at 200k and 0.971 at 1M (ef_search 512), for about 20% more build
/// CPU at 1M (321 CPU-s against 265, in different load); 4 gave 0.99 at
/// 200k, 8 0.996 for 10% more CPU than 4 (bench.rs).
pub(crate) const EF_UPPER_LAYERS: usize = 6;
/// No node goes higher than this (with M = 32, level 6 takes about 32^6 items).
pub(crate) const MAX_LEVEL: usize = 15;

/// A node and its distance to whatever is being searched for, ordered by distance.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scored {
    pub(crate) distance: f32,
    pub(crate) id: ItemId,
}

impl PartialEq for Scored {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Scored {}
impl PartialOrd for Scored {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scored {
    fn cmp(&self, other: &Self) -> Ordering {
        self.distance
            .total_cmp(&other.distance)
            .then(self.id.cmp(&other.id))
    }
}

/// Where every search starts: a node on the top layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EntryPoint {
    pub(crate) id: ItemId,
    pub(crate) level: usize,
}

/// Slots a node takes in the layer-0 array: its link count, then its links.
const LAYER0_STRIDE: usize = 1 + M0;

/// The graph. Layer 0, which every node is on and every search spends most
/// of its time in, is one flat array read without locks (an insert may see a
/// list half-updated by another one; every id in it is still a node, so that
/// only changes which neighbours it tries); writers of a node's list take its
/// lock. The upper layers hold one node in 16 and stay behind locks.
#[derive(Default)]
pub(crate) struct Graph {
    layer0: Vec<AtomicU32>,
    layer0_locks: Vec<Mutex<()>>,
    /// `upper[id][layer - 1]`: the links of `id` on layers 1 to its level.
    upper: Vec<Box<[Mutex<Vec<ItemId>>]>>,
    entry: Option<EntryPoint>,
}

impl Graph {
    /// A graph from its parts, as a snapshot stored them (checked by the caller):
    /// `nodes[id][layer]` are the links of `id` on `layer`.
    pub(crate) fn from_parts(nodes: Vec<Vec<Vec<ItemId>>>, entry: Option<EntryPoint>) -> Graph {
        let mut graph = Graph {
            entry,
            ..Graph::default()
        };
        for layers in nodes {
            let id = graph.push_node(layers.len() - 1);
            for (layer, links) in layers.iter().enumerate() {
                graph.set_links(id, layer, links);
            }
        }
        graph
    }

    pub(crate) fn len(&self) -> usize {
        self.upper.len()
    }

    pub(crate) fn entry(&self) -> Option<EntryPoint> {
        self.entry
    }

    pub(crate) fn level_of(&self, id: ItemId) -> usize {
        self.upper[id as usize].len()
    }

    /// The links of `id` on `layer`, into `out`.
    pub(crate) fn read_links(&self, id: ItemId, layer: usize, out: &mut Vec<ItemId>) {
        out.clear();
        if layer == 0 {
            let slots = &self.layer0[id as usize * LAYER0_STRIDE..][..LAYER0_STRIDE];
            let count = (slots[0].load(Relaxed) as usize).min(M0);
            out.extend(slots[1..=count].iter().map(|link| link.load(Relaxed)));
        } else {
            out.extend_from_slice(&lock(&self.upper[id as usize][layer - 1]));
        }
    }

    /// Replaces the links of `id` on `layer`; the caller holds the node's lock
    /// for that layer (or the graph exclusively).
    fn set_links(&self, id: ItemId, layer: usize, links: &[ItemId]) {
        if layer == 0 {
            let slots = &self.layer0[id as usize * LAYER0_STRIDE..][..LAYER0_STRIDE];
            for (slot, &link) in slots[1..].iter().zip(links) {
                slot.store(link, Relaxed);
            }
            slots[0].store(links.len() as u32, Relaxed);
        } else {
            *lock(&self.upper[id as usize][layer - 1]) = links.to_vec();
        }
    }

    fn push_node(&mut self, level: usize) -> ItemId {
        let id = self.upper.len() as ItemId;
        self.layer0
            .extend(std::iter::repeat_with(AtomicU32::default).take(LAYER0_STRIDE));
        self.layer0_locks.push(Mutex::default());
        self.upper
            .push((0..level).map(|_| Mutex::default()).collect());
        id
    }

    /// How many nodes no search can reach: those not linked, on layer 0, from
    /// the entry point by any path. A search finds its results among the nodes
    /// reachable on layer 0 from where the upper layers lead it, so these are
    /// never returned (pruning a node's last incoming link strands it).
    pub(crate) fn unreachable(&self) -> usize {
        let Some(entry) = self.entry else {
            return 0;
        };
        let mut seen = vec![false; self.len()];
        seen[entry.id as usize] = true;
        let (mut stack, mut links) = (vec![entry.id], Vec::with_capacity(M0));
        let mut reached = 1;
        while let Some(id) = stack.pop() {
            self.read_links(id, 0, &mut links);
            for &link in &links {
                if !std::mem::replace(&mut seen[link as usize], true) {
                    reached += 1;
                    stack.push(link);
                }
            }
        }
        self.len() - reached
    }

    /// Links every embedding past the graph's end into it.
    pub(crate) fn insert_new(&mut self, embeddings: &Embeddings) {
        let start = self.len() as ItemId;
        let end = embeddings.len() as ItemId;
        for id in start..end {
            self.push_node(random_level(id));
        }
        // An item above the top layer moves the entry point, which every parallel
        // insert reads, so those few go first, one at a time.
        let mut others = Vec::with_capacity((end - start) as usize);
        for id in start..end {
            let level = self.level_of(id);
            match self.entry {
                None => self.entry = Some(EntryPoint { id, level }),
                Some(entry) if level > entry.level => {
                    self.insert(id, entry, embeddings);
                    self.entry = Some(EntryPoint { id, level });
                }
                Some(_) => others.push(id),
            }
        }
        if let Some(entry) = self.entry {
            others
                .par_iter()
                .for_each(|&id| self.insert(id, entry, embeddings));
        }
    }

    fn insert(&self, id: ItemId, entry: EntryPoint, embeddings: &Embeddings) {
        let distance = |other| embeddings.distance(id, other);
        let level = self.level_of(id);
        let mut nearest = self.descend(embeddings, &distance, entry, level + 1);
        for layer in (0..=level.min(entry.level)).rev() {
            let candidates =
                self.search_layer(embeddings, &distance, nearest, layer, EF_CONSTRUCTION);
            let chosen = select_neighbours(&candidates, M, embeddings);
            let ids: Vec<ItemId> = chosen.iter().map(|s| s.id).collect();
            {
                let _guard = (layer == 0).then(|| lock(&self.layer0_locks[id as usize]));
                self.set_links(id, layer, &ids);
            }
            for neighbour in chosen {
                self.link_back(neighbour.id, id, neighbour.distance, layer, embeddings);
            }
            nearest = candidates[0];
        }
    }

    /// Adds `new` to the links of `node`, pruning them when they are full.
    fn link_back(
        &self,
        node: ItemId,
        new: ItemId,
        distance: f32,
        layer: usize,
        embeddings: &Embeddings,
    ) {
        let most = links_on(layer);
        let _guard = (layer == 0).then(|| lock(&self.layer0_locks[node as usize]));
        let mut links = Vec::with_capacity(most + 1);
        self.read_links(node, layer, &mut links);
        if links.len() < most {
            links.push(new);
            self.set_links(node, layer, &links);
            return;
        }
        let mut candidates: Vec<Scored> = links
            .iter()
            .map(|&id| Scored {
                distance: embeddings.distance(node, id),
                id,
            })
            .chain([Scored { distance, id: new }])
            .collect();
        candidates.sort_unstable();
        let kept: Vec<ItemId> = select_neighbours(&candidates, most, embeddings)
            .iter()
            .map(|s| s.id)
            .collect();
        self.set_links(node, layer, &kept);
    }

    /// The `k` nearest items to the unit-length `query`, nearest first, from a
    /// candidate list of `ef`.
    pub(crate) fn search(
        &self,
        embeddings: &Embeddings,
        query: &[f32],
        k: usize,
        ef: usize,
    ) -> Vec<Scored> {
        let Some(entry) = self.entry else {
            return Vec::new();
        };
        let distance = |id| embeddings.distance_to(query, id);
        let nearest = self.descend(embeddings, &distance, entry, 1);
        let mut found = self.search_layer(embeddings, &distance, nearest, 0, ef.max(k));
        found.truncate(k);
        found
    }

    /// The nearest node found from `entry` down to layer `lowest`, searching
    /// each layer with a short candidate list from the last one's nearest.
    fn descend(
        &self,
        embeddings: &Embeddings,
        distance: &impl Fn(ItemId) -> f32,
        entry: EntryPoint,
        lowest: usize,
    ) -> Scored {
        let mut nearest = Scored {
            distance: distance(entry.id),
            id: entry.id,
        };
        for layer in (lowest..=entry.level).rev() {
            nearest = self.search_layer(embeddings, distance, nearest, layer, EF_UPPER_LAYERS)[0];
        }
        nearest
    }

    /// The beam search of HNSW on one layer: the `ef` nearest nodes found from
    /// `start`, nearest first.
    fn search_layer(
        &self,
        embeddings: &Embeddings,
        distance: &impl Fn(ItemId) -> f32,
        start: Scored,
        layer: usize,
        ef: usize,
    ) -> Vec<Scored> {
        VISITED.with_borrow_mut(|visited| {
            visited.clear(self.len());
            visited.insert(start.id);
            let mut candidates = BinaryHeap::from([Reverse(start)]);
            let mut results = BinaryHeap::from([start]);
            let mut neighbours = Vec::with_capacity(M0);
            while let Some(Reverse(candidate)) = candidates.pop() {
                let worst = results.peek().map_or(f32::INFINITY, |w| w.distance);
                if results.len() >= ef && candidate.distance > worst {
                    break;
                }
                self.read_links(candidate.id, layer, &mut neighbours);
                neighbours.retain(|&id| visited.insert(id));
                for (i, &id) in neighbours.iter().enumerate() {
                    // The next vector is most likely not in cache: start loading it
                    // while this one is compared.
                    if let Some(&next) = neighbours.get(i + 1) {
                        embeddings.prefetch(next);
                    }
                    let scored = Scored {
                        distance: distance(id),
                        id,
                    };
                    let worst = results.peek().map_or(f32::INFINITY, |w| w.distance);
                    if results.len() < ef || scored.distance < worst {
                        candidates.push(Reverse(scored));
                        results.push(scored);
                        if results.len() > ef {
                            results.pop();
                        }
                    }
                }
            }
            results.into_sorted_vec()
        })
    }
}

/// The most links a node keeps on `layer`.
fn links_on(layer: usize) -> usize {
    if layer == 0 {
        M0
    } else {
        M
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a lock leaves plain data, still a valid graph.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// HNSW's neighbour heuristic: from `candidates` (nearest first), keep a
/// candidate only when it is nearer to the new node than to every one kept
/// so far, up to `most`. It keeps links spread across directions, which is
/// what lets clustered data stay connected.
///
/// Within one of the bench's clusters all distances are alike, so it drops
/// about every other candidate and leaves many nodes with one or two
/// incoming links, which searches rarely reach: at 1M a quarter of the true
/// neighbours ef_search 1024 missed had one (2.6% of all nodes do), and
/// recall@10 stalled near 0.89 (most of that stall was items linked into
/// the wrong cluster: see [`EF_UPPER_LAYERS`]). Relaxing it as DiskANN does (drop only
/// candidates nearer, by a factor of 1.05, to a kept one) raised recall@10
/// at 1M to 0.916 / 0.926 at ef 512 / 1024, but lists then fill and every
/// back-link prunes: 1.7x the build CPU. Not worth it against the index's
/// targets; 1.15 made recall worse too, and 1.1 for the new node's own
/// links only changed nothing at 300k.
fn select_neighbours(candidates: &[Scored], most: usize, embeddings: &Embeddings) -> Vec<Scored> {
    let mut chosen: Vec<Scored> = Vec::with_capacity(most);
    for &candidate in candidates {
        if chosen.len() == most {
            break;
        }
        if chosen
            .iter()
            .all(|kept| embeddings.distance(candidate.id, kept.id) > candidate.distance)
        {
            chosen.push(candidate);
        }
    }
    chosen
}

/// An item's level, drawn from HNSW's exponential distribution (scale 1 / ln M)
/// by a hash of its id, so the same items always get the same levels.
fn random_level(id: ItemId) -> usize {
    // splitmix64: a well-mixed 64-bit hash of the id.
    let mut x = u64::from(id).wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    // Uniform in (0, 1]: never 0, whose logarithm is infinite.
    let uniform = ((x >> 11) + 1) as f64 / (1u64 << 53) as f64;
    let level = -uniform.ln() / (M as f64).ln();
    (level as usize).min(MAX_LEVEL)
}

/// The nodes one search has seen: a mark per node, cleared by moving to the next
/// mark instead of zeroing the array. A byte a node keeps the array in cache
/// (1 MB for a million nodes); it is zeroed once every 255 searches.
#[derive(Default)]
struct Visited {
    marks: Vec<u8>,
    mark: u8,
}

impl Visited {
    fn clear(&mut self, nodes: usize) {
        if self.marks.len() < nodes {
            self.marks.resize(nodes, 0);
        }
        self.mark = self.mark.wrapping_add(1);
        if self.mark == 0 {
            self.marks.fill(0);
            self.mark = 1;
        }
    }

    /// Marks `id`; false when it was already marked.
    fn insert(&mut self, id: ItemId) -> bool {
        let mark = &mut self.marks[id as usize];
        let new = *mark != self.mark;
        *mark = self.mark;
        new
    }
}

thread_local! {
    /// Each thread's marks, kept between searches so a search allocates nothing.
    static VISITED: RefCell<Visited> = RefCell::default();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_without_a_path_from_the_entry_point_count_as_unreachable() {
        // 0 -> 1 -> 2 and 3 -> 0: node 3 links out, but nothing links to it.
        let layer0 = |links: &[ItemId]| vec![links.to_vec()];
        let nodes = vec![layer0(&[1]), layer0(&[2]), layer0(&[0]), layer0(&[0])];
        let entry = Some(EntryPoint { id: 0, level: 0 });
        assert_eq!(Graph::from_parts(nodes.clone(), entry).unreachable(), 1);
        let mut linked = nodes;
        linked[2] = layer0(&[0, 3]);
        assert_eq!(Graph::from_parts(linked, entry).unreachable(), 0);
        assert_eq!(Graph::default().unreachable(), 0);
    }

    #[test]
    fn levels_follow_the_exponential_distribution() {
        let draws = 1_000_000;
        let levels: Vec<usize> = (0..draws).map(random_level).collect();
        // P(level >= l) = M^-l.
        for level in [1, 2] {
            let above = levels.iter().filter(|&&l| l >= level).count() as f64;
            let expected = draws as f64 / (M as f64).powi(level as i32);
            // Five standard deviations of a binomial count.
            let bound = 5.0 * expected.sqrt();
            assert!(
                (above - expected).abs() < bound,
                "level {level}: {above}, expected {expected}"
            );
        }
    }
}
