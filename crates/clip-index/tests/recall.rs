//! The graph's quality on clustered vectors, the kind of data where HNSW's
//! recall falls first (neighbourhoods nearly as high-dimensional as the
//! space): recall@10 against brute force at a short candidate list, and no
//! item stranded out of every search's reach.

use clip_index::{Index, IndexSpec, Item, ItemKind};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

const K: usize = 10;
const QUERIES: usize = 100;

/// Seeded unit vectors, each one of `clusters` random centres plus Gaussian
/// noise of `noise` a coordinate.
struct Clusters {
    rng: StdRng,
    centres: Vec<Vec<f32>>,
    noise: f32,
}

impl Clusters {
    fn new(seed: u64, clusters: usize, dim: usize, noise: f32) -> Clusters {
        let mut rng = StdRng::seed_from_u64(seed);
        let centres = (0..clusters)
            .map(|_| normalised((0..dim).map(|_| gaussian(&mut rng)).collect()))
            .collect();
        Clusters {
            rng,
            centres,
            noise,
        }
    }

    fn draw(&mut self, n: usize) -> Vec<Vec<f32>> {
        (0..n)
            .map(|_| {
                let centre = &self.centres[self.rng.random_range(0..self.centres.len())];
                let noisy: Vec<f32> = centre
                    .iter()
                    .map(|x| x + self.noise * gaussian(&mut self.rng))
                    .collect();
                normalised(noisy)
            })
            .collect()
    }
}

fn gaussian(rng: &mut StdRng) -> f32 {
    let u: f64 = 1.0 - rng.random::<f64>();
    let v: f64 = rng.random();
    ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
}

fn normalised(v: Vec<f32>) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.into_iter().map(|x| x / norm).collect()
}

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum()
}

fn exact_top(vectors: &[Vec<f32>], query: &[f32]) -> Vec<u32> {
    let mut scored: Vec<(u32, f64)> = (0..vectors.len() as u32)
        .map(|id| (id, dot(&vectors[id as usize], query)))
        .collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1));
    scored.iter().take(K).map(|&(id, _)| id).collect()
}

/// An index in a temporary directory holding `vectors`, appended in batches of 1000.
fn indexed(vectors: &[Vec<f32>]) -> (tempfile::TempDir, Index) {
    let dir = tempfile::tempdir().unwrap();
    let spec = IndexSpec {
        dim: vectors[0].len(),
        model: "clustered".into(),
    };
    let mut index = Index::create_or_open(dir.path(), spec).unwrap();
    let sources: Vec<String> = (0..vectors.len()).map(|i| format!("item {i}")).collect();
    for start in (0..vectors.len()).step_by(1000) {
        let batch: Vec<Item> = (start..(start + 1000).min(vectors.len()))
            .map(|i| Item {
                source: &sources[i],
                kind: ItemKind::Image,
                embedding: &vectors[i],
            })
            .collect();
        index.append(&batch).unwrap();
    }
    (dir, index)
}

/// Recall@K of `index` over `queries` at each of `efs`.
fn recall<const N: usize>(
    index: &Index,
    vectors: &[Vec<f32>],
    queries: &[Vec<f32>],
    efs: [usize; N],
) -> [f64; N] {
    let mut found = [0usize; N];
    for query in queries {
        let truth = exact_top(vectors, query);
        for (ef, found) in efs.into_iter().zip(&mut found) {
            let hits = index.search_with_ef(query, K, ef).unwrap();
            *found += hits.iter().filter(|h| truth.contains(&h.id)).count();
        }
    }
    found.map(|f| f as f64 / (queries.len() * K) as f64)
}

#[test]
fn clustered_recall_at_a_short_candidate_list() {
    // 1000 items a cluster, as the bench's 1M items over 1000 centres.
    let (items, dim) = (20_000, 128);
    let mut clusters = Clusters::new(11, 20, dim, 0.15);
    let vectors = clusters.draw(items);
    let queries = clusters.draw(QUERIES);
    let (_dir, index) = indexed(&vectors);

    // Pruning may strand the odd item; more than 1 in 1000 loses recall for good.
    let unreachable = index.unreachable_items();
    assert!(
        unreachable <= items as u64 / 1000,
        "{unreachable} unreachable items"
    );

    let [short, long] = recall(&index, &vectors, &queries, [10, 40]);
    eprintln!("recall@{K} on {items} clustered {dim}-d vectors: ef 10 {short:.3}, ef 40 {long:.3}");
    // Measured 0.708-0.709 and 0.955-0.956; the graph whose upper layers were
    // walked greedily reached 0.673-0.674 and 0.935-0.944, that of M = 16
    // 0.568 and 0.878. Parallel inserts vary by about 0.01 from run to run.
    assert!(short >= 0.69, "recall@{K} at ef 10: {short}");
    assert!(long >= 0.945, "recall@{K} at ef 40: {long}");
}
