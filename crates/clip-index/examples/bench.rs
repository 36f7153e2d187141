//! Appends random embeddings in batches and reports how append time evolves as
//! the index grows, then search latency and recall@10 against brute force.
//!
//! ```sh
//! cargo run --release -p clip-index --example bench -- [ITEMS] [DIM] [BATCH] [DATA]   # 100000 512 1000 uniform
//! ```
//!
//! DATA is `uniform` (independent uniform coordinates: no structure at all, the
//! hardest case for any approximate index) or `clustered` (points scattered around
//! 1000 random centres, closer to real embeddings, which gather by topic).
//!
//! The index goes to a temporary directory (`TMPDIR` chooses where), deleted at the end.
//!
//! Measured with the defaults on a shared 2-core VM (other builds running; the
//! process got 0.5 to 1 core), 100,000 items of 512 dimensions in batches of 1000:
//!
//! | data      | append        | per batch at 100k | CPU per item | search (limit 10) | recall@10 | disk    |
//! |-----------|---------------|-------------------|--------------|-------------------|-----------|---------|
//! | clustered | 467 s (214/s) | 3.4 s             | 2.2 ms       | 5.4 ms            | 1.000     | 433 MiB |
//! | uniform   | 887 s (113/s) | 10 s              | 8.7 ms       | 13.8 ms           | 0.315     | 444 MiB |
//!
//! Per-batch time levels off as the index grows (uniform: about 10 s from 40k
//! items on). Uniform random vectors have no neighbourhoods (every cosine is
//! near 0), the worst case for any graph index; real embeddings cluster.

use std::time::{Duration, Instant};

use clip_index::{Index, IndexSpec, Item, ItemKind};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let clustered = match args.get(3).map(String::as_str) {
        None | Some("uniform") => false,
        Some("clustered") => true,
        Some(other) => panic!("DATA is uniform or clustered, not {other}"),
    };
    args.truncate(3);
    let args: Vec<usize> = args
        .iter()
        .map(|a| a.parse().expect("ITEMS DIM BATCH are numbers"))
        .collect();
    let items = args.first().copied().unwrap_or(100_000);
    let dim = args.get(1).copied().unwrap_or(512);
    let batch = args.get(2).copied().unwrap_or(1000);

    let dir = tempfile::tempdir().unwrap();
    let spec = IndexSpec {
        dim,
        model: "random".into(),
    };
    let mut index = Index::create_or_open(dir.path(), spec).unwrap();
    let mut rng = StdRng::seed_from_u64(7);
    let centres: Vec<Vec<f32>> = (0..1000)
        .map(|_| (0..dim).map(|_| rng.random_range(-1.0f32..1.0)).collect())
        .collect();
    let mut random = |n: usize| -> Vec<Vec<f32>> {
        (0..n)
            .map(|_| {
                if clustered {
                    let centre = &centres[rng.random_range(0..centres.len())];
                    centre
                        .iter()
                        .map(|c| c + rng.random_range(-0.5f32..0.5))
                        .collect()
                } else {
                    (0..dim).map(|_| rng.random_range(-1.0f32..1.0)).collect()
                }
            })
            .collect()
    };

    let data = if clustered { "clustered" } else { "uniform" };
    println!("appending {items} random {dim}-d embeddings ({data}) in batches of {batch}");
    let mut all = Vec::with_capacity(items);
    let report_every = (items / batch / 10).max(1);
    let (mut window, mut total, mut done) = (Duration::ZERO, Duration::ZERO, 0);
    for (n, start) in (0..items).step_by(batch).enumerate() {
        let vectors = random(batch.min(items - start));
        let sources: Vec<String> = (start..start + vectors.len())
            .map(|i| format!("item {i}"))
            .collect();
        let batch_items: Vec<Item> = sources
            .iter()
            .zip(&vectors)
            .map(|(source, embedding)| Item {
                source,
                kind: ItemKind::Text,
                embedding,
            })
            .collect();
        let t = Instant::now();
        index.append(&batch_items).unwrap();
        let elapsed = t.elapsed();
        window += elapsed;
        total += elapsed;
        done += vectors.len();
        all.extend(vectors);
        if (n + 1) % report_every == 0 {
            println!(
                "  {done:>9} items: {:>7.1} ms per batch over the last {report_every} batches",
                window.as_secs_f64() * 1e3 / report_every as f64
            );
            window = Duration::ZERO;
        }
    }
    println!(
        "appended {done} items in {:.1} s: {:.0} items/s",
        total.as_secs_f64(),
        done as f64 / total.as_secs_f64()
    );
    let disk: u64 = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    println!(
        "on disk: {:.1} MiB ({:.0} bytes per item)",
        disk as f64 / (1 << 20) as f64,
        disk as f64 / done as f64
    );

    let queries = random(200);
    let t = Instant::now();
    for query in &queries {
        index.search(query, 10).unwrap();
    }
    println!(
        "search, limit 10: {:.2} ms per query (mean of {})",
        t.elapsed().as_secs_f64() * 1e3 / 200.0,
        queries.len()
    );

    let normalized: Vec<Vec<f32>> = all.iter().map(|v| normalize(v)).collect();
    let mut found = 0;
    for query in &queries[..100] {
        let q = normalize(query);
        let mut scored: Vec<(u32, f32)> = normalized
            .iter()
            .enumerate()
            .map(|(i, v)| (i as u32, dot(v, &q)))
            .collect();
        scored.select_nth_unstable_by(9, |a, b| b.1.total_cmp(&a.1));
        let truth: Vec<u32> = scored[..10].iter().map(|s| s.0).collect();
        found += index
            .search(query, 10)
            .unwrap()
            .iter()
            .filter(|h| truth.contains(&h.id))
            .count();
    }
    println!(
        "recall@10 against brute force: {:.3} (100 queries)",
        found as f64 / 1000.0
    );
}

fn normalize(v: &[f32]) -> Vec<f32> {
    let norm = dot(v, v).sqrt();
    v.iter().map(|x| x / norm).collect()
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
