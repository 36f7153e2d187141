//! The graph's quality on clustered vectors, the kind of data where HNSW's
//! recall falls first (neighbourhoods nearly as high-dimensional as the
//! space): recall@10 against brute force at a short candidate list, and no
//! item stranded out of every search's reach.

use clip_index::{Index, IndexSpec, Item, ItemKind};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

const DIM: usize = 128;
const CLUSTERS: usize = 20;
const ITEMS: usize = 20_000;
const QUERIES: usize = 100;
const K: usize = 10;

/// Unit vectors, each a random centre (of `CLUSTERS`) plus Gaussian noise,
/// seeded: 1000 items a cluster, as the bench's 1M items over 1000 centres.
fn clustered(n: usize, rng: &mut StdRng, centres: &[Vec<f32>]) -> Vec<Vec<f32>> {
    (0..n)
        .map(|_| {
            let centre = &centres[rng.random_range(0..centres.len())];
            let noisy: Vec<f32> = centre.iter().map(|x| x + 0.15 * gaussian(rng)).collect();
            normalised(noisy)
        })
        .collect()
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

#[test]
fn clustered_recall_at_a_short_candidate_list() {
    let mut rng = StdRng::seed_from_u64(11);
    let centres: Vec<Vec<f32>> = (0..CLUSTERS)
        .map(|_| normalised((0..DIM).map(|_| gaussian(&mut rng)).collect()))
        .collect();
    let vectors = clustered(ITEMS, &mut rng, &centres);
    let queries = clustered(QUERIES, &mut rng, &centres);

    let dir = tempfile::tempdir().unwrap();
    let spec = IndexSpec {
        dim: DIM,
        model: "clustered".into(),
    };
    let mut index = Index::create_or_open(dir.path(), spec).unwrap();
    let sources: Vec<String> = (0..ITEMS).map(|i| format!("item {i}")).collect();
    for start in (0..ITEMS).step_by(1000) {
        let batch: Vec<Item> = (start..start + 1000)
            .map(|i| Item {
                source: &sources[i],
                kind: ItemKind::Image,
                embedding: &vectors[i],
            })
            .collect();
        index.append(&batch).unwrap();
    }

    // Pruning may strand the odd item; more than 1 in 1000 loses recall for good.
    let unreachable = index.unreachable_items();
    assert!(
        unreachable <= ITEMS as u64 / 1000,
        "{unreachable} unreachable items"
    );

    let mut found = [0usize; 2];
    for query in &queries {
        let truth = exact_top(&vectors, query);
        for (ef, found) in [10, 40].into_iter().zip(&mut found) {
            let hits = index.search_with_ef(query, K, ef).unwrap();
            *found += hits.iter().filter(|h| truth.contains(&h.id)).count();
        }
    }
    let [short, long] = found.map(|f| f as f64 / (QUERIES * K) as f64);
    eprintln!("recall@{K} on {ITEMS} clustered {DIM}-d vectors: ef 10 {short:.3}, ef 40 {long:.3}");
    // Measured 0.674 and 0.944 (M = 32); the graph of M = 16 reached 0.568 and
    // 0.878. The margins cover the run-to-run spread of parallel inserts.
    assert!(short >= 0.62, "recall@{K} at ef 10: {short}");
    assert!(long >= 0.91, "recall@{K} at ef 40: {long}");
}
