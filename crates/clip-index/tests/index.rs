//! The index on real files in temporary directories: round trips, appends
//! across reopening, search against brute force, refusals, and a writer killed
//! with SIGKILL in the middle of its appends.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use clip_index::{Error, Index, IndexSpec, Item, ItemKind, VectorError};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

const MODEL: &str = "ViT-B-32::openai";

fn spec(dim: usize) -> IndexSpec {
    IndexSpec {
        dim,
        model: MODEL.into(),
    }
}

fn random_vectors(n: usize, dim: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|_| (0..dim).map(|_| rng.random_range(-1.0f32..1.0)).collect())
        .collect()
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f64 = a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum();
    let na: f64 = a.iter().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt();
    (dot / (na * nb)) as f32
}

/// The ids of the `k` vectors nearest to `query` by cosine, best first, with their scores.
fn brute_force(vectors: &[Vec<f32>], query: &[f32], k: usize) -> Vec<(u32, f32)> {
    let mut scored: Vec<(u32, f32)> = vectors
        .iter()
        .enumerate()
        .map(|(i, v)| (i as u32, cosine(v, query)))
        .collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1));
    scored.truncate(k);
    scored
}

fn text_items<'a>(sources: &'a [String], vectors: &'a [Vec<f32>]) -> Vec<Item<'a>> {
    sources
        .iter()
        .zip(vectors)
        .map(|(source, embedding)| Item {
            source,
            kind: ItemKind::Text,
            embedding,
        })
        .collect()
}

fn append_all(index: &mut Index, vectors: &[Vec<f32>], batch: usize) {
    let sources: Vec<String> = (0..vectors.len()).map(|i| format!("item {i}")).collect();
    for (sources, vectors) in sources.chunks(batch).zip(vectors.chunks(batch)) {
        index.append(&text_items(sources, vectors)).unwrap();
    }
}

#[test]
fn round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index");
    let mut index = Index::create_or_open(&path, spec(8)).unwrap();
    assert_eq!(index.spec(), &spec(8));
    assert_eq!(index.len().unwrap(), 0);
    assert!(
        index.search(&[1.0; 8], 5).unwrap().is_empty(),
        "an empty index finds nothing"
    );

    let vectors = random_vectors(3, 8, 1);
    let items = [
        Item {
            source: "a photo of a cat",
            kind: ItemKind::Text,
            embedding: &vectors[0],
        },
        Item {
            source: "/photos/dog.jpg",
            kind: ItemKind::Image,
            embedding: &vectors[1],
        },
        Item {
            source: "https://example.com/ü.png",
            kind: ItemKind::Image,
            embedding: &vectors[2],
        },
    ];
    assert_eq!(index.append(&items).unwrap(), 0..3);
    assert_eq!(index.len().unwrap(), 3);

    for (id, item) in items.iter().enumerate() {
        let entry = index.get(id as u32).unwrap().unwrap();
        assert_eq!(entry.id, id as u32);
        assert_eq!(entry.source, item.source);
        assert_eq!(entry.kind, item.kind);
        assert_eq!(
            entry.embedding, item.embedding,
            "the embedding is stored as given"
        );

        let hits = index.search(item.embedding, 3).unwrap();
        assert_eq!(hits.len(), 3);
        assert_eq!(
            hits[0].id, id as u32,
            "an item is its own nearest neighbour"
        );
        assert_eq!(hits[0].source, item.source);
        assert_eq!(hits[0].kind, item.kind);
        assert!(
            (hits[0].score - 1.0).abs() < 1e-6,
            "score {}",
            hits[0].score
        );
        for hit in &hits {
            let expected = cosine(&vectors[hit.id as usize], item.embedding);
            assert!(
                (hit.score - expected).abs() < 1e-5,
                "{} vs {expected}",
                hit.score
            );
        }
    }
    assert!(index.get(3).unwrap().is_none());
    assert!(index.search(&vectors[0], 0).unwrap().is_empty());

    // Scaling an embedding changes nothing: only directions count.
    let scaled: Vec<f32> = vectors[1].iter().map(|v| v * 40.0).collect();
    let hits = index.search(&scaled, 1).unwrap();
    assert_eq!(hits[0].id, 1);
    assert!((hits[0].score - 1.0).abs() < 1e-6);
}

#[test]
fn append_continues_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index");
    let vectors = random_vectors(300, 16, 2);
    let sources: Vec<String> = (0..300).map(|i| format!("item {i}")).collect();

    {
        let mut index = Index::create_or_open(&path, spec(16)).unwrap();
        assert_eq!(
            index
                .append(&text_items(&sources[..100], &vectors[..100]))
                .unwrap(),
            0..100
        );
        assert_eq!(
            index
                .append(&text_items(&sources[100..150], &vectors[100..150]))
                .unwrap(),
            100..150
        );
        assert_eq!(index.append(&[]).unwrap(), 150..150);
    }
    {
        let mut index = Index::create_or_open(&path, spec(16)).unwrap();
        assert_eq!(index.len().unwrap(), 150);
        assert_eq!(
            index
                .append(&text_items(&sources[150..250], &vectors[150..250]))
                .unwrap(),
            150..250
        );
    }
    {
        // `open` reads the spec from the index and can append too.
        let mut index = Index::open(&path).unwrap();
        assert_eq!(index.spec(), &spec(16));
        assert_eq!(
            index
                .append(&text_items(&sources[250..], &vectors[250..]))
                .unwrap(),
            250..300
        );
    }

    let index = Index::open(&path).unwrap();
    assert_eq!(index.len().unwrap(), 300);
    for id in [0u32, 99, 100, 149, 150, 249, 250, 299] {
        let entry = index.get(id).unwrap().unwrap();
        assert_eq!(entry.source, sources[id as usize]);
        assert_eq!(entry.embedding, vectors[id as usize]);
        // Items of every batch are reachable through the graph.
        let hits = index.search(&vectors[id as usize], 1).unwrap();
        assert_eq!(hits[0].id, id);
    }
}

#[test]
fn small_index_search_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    let vectors = random_vectors(200, 32, 3);
    let mut index = Index::create_or_open(dir.path(), spec(32)).unwrap();
    append_all(&mut index, &vectors, 64);

    for query in random_vectors(20, 32, 4) {
        let expected = brute_force(&vectors, &query, 10);
        let hits = index.search(&query, 10).unwrap();
        let ids: Vec<u32> = hits.iter().map(|h| h.id).collect();
        let expected_ids: Vec<u32> = expected.iter().map(|e| e.0).collect();
        assert_eq!(ids, expected_ids);
        for (hit, (_, score)) in hits.iter().zip(&expected) {
            assert!((hit.score - score).abs() < 1e-5, "{} vs {score}", hit.score);
            assert_eq!(hit.source, format!("item {}", hit.id));
        }
    }
}

#[test]
fn search_recall_against_brute_force() {
    let dir = tempfile::tempdir().unwrap();
    let (n, dim, k) = (4000, 64, 10);
    let vectors = random_vectors(n, dim, 5);
    let mut index = Index::create_or_open(dir.path(), spec(dim)).unwrap();
    append_all(&mut index, &vectors, 500);
    assert_eq!(index.len().unwrap(), n as u64);

    let queries = random_vectors(100, dim, 6);
    let mut found = 0;
    for query in &queries {
        let expected: Vec<u32> = brute_force(&vectors, query, k)
            .iter()
            .map(|e| e.0)
            .collect();
        let hits = index.search(query, k).unwrap();
        assert_eq!(hits.len(), k);
        assert!(
            hits.windows(2).all(|w| w[0].score >= w[1].score),
            "best first"
        );
        for hit in &hits {
            let exact = cosine(&vectors[hit.id as usize], query);
            assert!(
                (hit.score - exact).abs() < 1e-5,
                "score {} vs cosine {exact}",
                hit.score
            );
        }
        found += hits.iter().filter(|h| expected.contains(&h.id)).count();
    }
    let recall = found as f64 / (queries.len() * k) as f64;
    eprintln!("recall@{k} on {n} random {dim}-d vectors: {recall:.3}");
    assert!(recall >= 0.9, "recall@{k} = {recall}");
}

#[test]
fn spec_mismatches_and_bad_paths_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index");
    drop(Index::create_or_open(&path, spec(8)).unwrap());

    match Index::create_or_open(&path, spec(16)) {
        Err(Error::DimensionMismatch {
            stored: 8,
            requested: 16,
        }) => {}
        other => panic!("{other:?}"),
    }
    let other_model = IndexSpec {
        dim: 8,
        model: "ViT-L-14::openai".into(),
    };
    let err = Index::create_or_open(&path, other_model).unwrap_err();
    assert!(matches!(&err, Error::ModelMismatch { stored, requested }
        if stored == MODEL && requested == "ViT-L-14::openai"));
    assert!(err.to_string().contains("ViT-B-32::openai"), "{err}");
    // The refused opens changed nothing.
    assert_eq!(Index::open(&path).unwrap().spec(), &spec(8));

    let missing = dir.path().join("missing");
    assert!(matches!(Index::open(&missing), Err(Error::NotFound(p)) if p == missing));
    assert!(!missing.exists(), "open creates nothing");

    let folder = dir.path().join("photos");
    std::fs::create_dir(&folder).unwrap();
    std::fs::write(folder.join("cat.jpg"), b"not an index").unwrap();
    assert!(matches!(
        Index::create_or_open(&folder, spec(8)),
        Err(Error::NotAnIndex { .. })
    ));
    assert!(
        !folder.join("items.log").exists(),
        "nothing written into an unrelated folder"
    );

    assert!(matches!(
        Index::create_or_open(dir.path().join("a"), spec(0)),
        Err(Error::InvalidSpec(_))
    ));
    let unnamed = IndexSpec {
        dim: 8,
        model: String::new(),
    };
    assert!(matches!(
        Index::create_or_open(dir.path().join("b"), unnamed),
        Err(Error::InvalidSpec(_))
    ));
}

/// Issue 14 (faults): damage to the log is refused with `Error::Corrupt` and
/// the files are left as they are; only a torn last frame, what a writer
/// killed mid-append leaves, is dropped, since its batch was never reported.
#[test]
fn a_damaged_log_is_refused_and_a_torn_tail_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let sound = dir.path().join("sound");
    let vectors = random_vectors(300, 8, 7);
    append_all(
        &mut Index::create_or_open(&sound, spec(8)).unwrap(),
        &vectors,
        50,
    );
    let log = std::fs::read(sound.join("items.log")).unwrap();
    let frames = frame_starts(&log);
    assert_eq!(frames.len(), 6, "one frame an append");
    let last_frame = frames[5];
    let copy = |name: &str, bytes: &[u8], with_graph: bool| {
        let path = dir.path().join(name);
        std::fs::create_dir(&path).unwrap();
        std::fs::write(path.join("items.log"), bytes).unwrap();
        if with_graph {
            std::fs::copy(sound.join("graph.hnsw"), path.join("graph.hnsw")).unwrap();
        }
        path
    };

    let mut flipped = log.clone();
    flipped[frames[1] + 100] ^= 1;
    let torn_len = last_frame + (log.len() - last_frame) / 2;
    for (case, bytes, with_graph) in [
        ("empty", &log[..0], false),
        ("cut in its header", &log[..10], false),
        ("a byte flipped in the second batch", &flipped[..], false),
        ("cut short of what the graph covers", &log[..torn_len], true),
    ] {
        let path = copy(&case.replace(' ', "-"), bytes, with_graph);
        let opened = Index::open(&path).map(|_| ()).unwrap_err();
        let created = Index::create_or_open(&path, spec(8))
            .map(|_| ())
            .unwrap_err();
        for error in [&opened, &created] {
            assert!(matches!(error, Error::Corrupt(_)), "{case}: {error:?}");
        }
        assert_eq!(
            std::fs::read(path.join("items.log")).unwrap(),
            bytes,
            "{case}: the log is left as it was"
        );
    }

    // A writer killed in the middle of its sixth batch, before any snapshot.
    let torn = copy("torn", &log[..torn_len], false);
    let mut index = Index::open(&torn).unwrap();
    assert_eq!(index.len().unwrap(), 250, "the five whole batches are kept");
    assert_eq!(
        std::fs::read(torn.join("items.log")).unwrap(),
        &log[..last_frame],
        "the torn frame is cut off"
    );
    append_all(&mut index, &vectors[250..], 50);
    drop(index);
    let index = Index::open(&torn).unwrap();
    assert_eq!(index.len().unwrap(), 300);
    assert_eq!(index.get(299).unwrap().unwrap().embedding, vectors[299]);
    assert_eq!(index.search(&vectors[260], 1).unwrap()[0].id, 260);

    let index = Index::open(&sound).unwrap();
    assert_eq!(index.len().unwrap(), 300);
    assert_eq!(index.search(&vectors[42], 1).unwrap()[0].id, 42);
}

/// Where each frame of a log starts: at its tag (which random floats do not
/// happen to spell in these seeded tests).
fn frame_starts(log: &[u8]) -> Vec<usize> {
    (0..log.len() - 4)
        .filter(|&i| &log[i..i + 4] == b"BTCH")
        .collect()
}

#[test]
fn an_lmdb_index_of_format_1_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("data.mdb"), b"LMDB").unwrap();
    for error in [
        Index::open(dir.path()).unwrap_err(),
        Index::create_or_open(dir.path(), spec(8)).unwrap_err(),
    ] {
        assert!(
            matches!(&error, Error::UnsupportedFormat { .. }),
            "{error:?}"
        );
        assert!(error.to_string().contains("again"), "{error}");
    }
}

/// Two handles on one index, as two `clip-client index` jobs at once: each
/// append first reads what the other appended, so ids stay dense and every
/// item of both lands once.
#[test]
fn handles_sharing_an_index_append_in_turn() {
    let dir = tempfile::tempdir().unwrap();
    let vectors = random_vectors(400, 8, 8);
    let sources: Vec<String> = (0..400).map(|i| format!("item {i}")).collect();
    let mut a = Index::create_or_open(dir.path(), spec(8)).unwrap();
    let mut b = Index::open(dir.path()).unwrap();
    assert_eq!(
        a.append(&text_items(&sources[..10], &vectors[..10]))
            .unwrap(),
        0..10
    );
    assert_eq!(
        b.append(&text_items(&sources[10..20], &vectors[10..20]))
            .unwrap(),
        10..20
    );
    assert_eq!(
        b.search(&vectors[3], 1).unwrap()[0].id,
        3,
        "b read a's items"
    );
    assert_eq!(
        a.append(&text_items(&sources[20..30], &vectors[20..30]))
            .unwrap(),
        20..30
    );

    // And from two threads at once, 10 items an append.
    let batches = |index: Index, range: std::ops::Range<usize>| {
        let (sources, vectors) = (&sources, &vectors);
        move || {
            let mut index = index;
            let mut ids = Vec::new();
            for start in range.step_by(10) {
                let items = text_items(&sources[start..start + 10], &vectors[start..start + 10]);
                ids.push((start, index.append(&items).unwrap()));
            }
            ids
        }
    };
    let (from_a, from_b) = std::thread::scope(|scope| {
        let a = scope.spawn(batches(a, 30..200));
        let b = scope.spawn(batches(b, 200..400));
        (a.join().unwrap(), b.join().unwrap())
    });
    let index = Index::open(dir.path()).unwrap();
    assert_eq!(index.len().unwrap(), 400);
    for (start, ids) in from_a.into_iter().chain(from_b) {
        assert_eq!(ids.len(), 10);
        for (offset, id) in ids.enumerate() {
            let entry = index.get(id).unwrap().unwrap();
            assert_eq!(entry.source, sources[start + offset]);
            assert_eq!(entry.embedding, vectors[start + offset]);
        }
    }
    assert_eq!(
        index.search(&vectors[333], 1).unwrap()[0].source,
        "item 333"
    );
}

#[test]
fn bad_vectors_are_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let mut index = Index::create_or_open(dir.path(), spec(4)).unwrap();
    let good = [0.5f32, -0.5, 0.25, 1.0];
    index
        .append(&[Item {
            source: "first",
            kind: ItemKind::Text,
            embedding: &good,
        }])
        .unwrap();

    let cases: [(&[f32], VectorError); 5] = [
        (
            &[1.0, 2.0, 3.0],
            VectorError::Dimension {
                expected: 4,
                got: 3,
            },
        ),
        (
            &[1.0, 2.0, 3.0, 4.0, 5.0],
            VectorError::Dimension {
                expected: 4,
                got: 5,
            },
        ),
        (
            &[1.0, f32::NAN, 0.0, 0.0],
            VectorError::NonFinite {
                position: 1,
                value: f32::NAN,
            },
        ),
        (
            &[1.0, 0.0, 0.0, f32::NEG_INFINITY],
            VectorError::NonFinite {
                position: 3,
                value: f32::NEG_INFINITY,
            },
        ),
        (&[0.0; 4], VectorError::NoDirection { norm: 0.0 }),
    ];
    for (bad, expected) in cases {
        let batch = [
            Item {
                source: "good",
                kind: ItemKind::Text,
                embedding: &good,
            },
            Item {
                source: "bad",
                kind: ItemKind::Image,
                embedding: bad,
            },
            Item {
                source: "good too",
                kind: ItemKind::Text,
                embedding: &good,
            },
        ];
        let err = index.append(&batch).unwrap_err();
        match &err {
            Error::InvalidItem {
                index: 1,
                source_text,
                error,
            } => {
                assert_eq!(source_text, "bad");
                // NaN != NaN, so compare the messages.
                assert_eq!(error.to_string(), expected.to_string());
            }
            other => panic!("{other:?}"),
        }
        assert!(err.to_string().contains("nothing was written"), "{err}");
        assert_eq!(index.len().unwrap(), 1, "nothing of the batch was written");
        match index.search(bad, 1) {
            Err(Error::InvalidQuery(error)) => assert_eq!(error.to_string(), expected.to_string()),
            other => panic!("{other:?}"),
        }
    }
    // The index is intact and the next id follows the last committed one.
    assert_eq!(
        index
            .append(&[Item {
                source: "second",
                kind: ItemKind::Text,
                embedding: &good
            }])
            .unwrap(),
        1..2
    );
}

/// Batches the crash child writes: `CRASH_BATCH` items of dimension `CRASH_DIM`, each
/// vector derived from its batch and position so the parent can check it.
const CRASH_BATCH: usize = 200;
const CRASH_DIM: usize = 32;
const CRASH_CHILD_ENV: &str = "CLIP_INDEX_CRASH_CHILD_DIR";

fn crash_batch(batch: usize) -> (Vec<String>, Vec<Vec<f32>>) {
    let sources = (0..CRASH_BATCH)
        .map(|i| format!("batch {batch} item {i}"))
        .collect();
    (
        sources,
        random_vectors(CRASH_BATCH, CRASH_DIM, 1000 + batch as u64),
    )
}

/// Not a test on its own: the child process of `sigkill_mid_append_loses_nothing_reported`.
/// It appends batches forever and reports each one after `append` returns.
#[test]
#[ignore = "child process of sigkill_mid_append_loses_nothing_reported"]
fn crash_child() {
    let Some(dir) = std::env::var_os(CRASH_CHILD_ENV) else {
        return;
    };
    let mut index = Index::create_or_open(&dir, spec(CRASH_DIM)).unwrap();
    let first = index.len().unwrap() as usize / CRASH_BATCH;
    for batch in first.. {
        let (sources, vectors) = crash_batch(batch);
        let ids = index.append(&text_items(&sources, &vectors)).unwrap();
        println!("COMMITTED {batch} {} {}", ids.start, ids.end);
    }
}

/// Kills a writer with SIGKILL at random moments, five times, each time after
/// a random number of reported batches and a random delay (so mid-write,
/// mid-fsync or mid-graph-insert), then checks that every reported batch is
/// there, exact, and searchable, and that the index takes more. Between kills
/// the parent opens and closes the index, which writes a graph snapshot, so
/// later children start from a snapshot plus a log tail.
#[test]
fn sigkill_mid_append_loses_nothing_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index");
    let mut rng = StdRng::seed_from_u64(11);
    let mut reported = Vec::new();
    for round in 0..5 {
        let kill_after = rng.random_range(1..6);
        let delay = std::time::Duration::from_micros(rng.random_range(0..20_000));
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "crash_child",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CRASH_CHILD_ENV, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut seen = 0;
        for line in stdout.lines() {
            let line = line.unwrap();
            let Some(rest) = line.strip_prefix("COMMITTED ") else {
                continue;
            };
            let fields: Vec<usize> = rest.split(' ').map(|f| f.parse().unwrap()).collect();
            reported.push((fields[0], fields[1] as u32..fields[2] as u32));
            seen += 1;
            if seen == kill_after {
                std::thread::sleep(delay);
                child.kill().unwrap();
                break;
            }
        }
        child.wait().unwrap();
        assert_eq!(
            seen, kill_after,
            "round {round}: the child reported too few batches"
        );
        check_reported(&path, &reported);
    }

    let mut index = Index::open(&path).unwrap();
    let len = index.len().unwrap();
    let (sources, vectors) = crash_batch(999);
    let ids = index.append(&text_items(&sources, &vectors)).unwrap();
    assert_eq!(ids.start as u64, len);
    assert_eq!(index.search(&vectors[3], 1).unwrap()[0].id, ids.start + 3);
}

/// Opens the index and checks every reported batch is there, whole and exact.
fn check_reported(path: &std::path::Path, reported: &[(usize, std::ops::Range<u32>)]) {
    let index = Index::open(path).unwrap();
    let len = index.len().unwrap();
    let last = reported.last().unwrap().1.end as u64;
    assert!(
        len >= last,
        "{len} items, but batches up to id {last} were reported written"
    );
    assert_eq!(
        len % CRASH_BATCH as u64,
        0,
        "a batch is written whole or not at all"
    );
    for (batch, ids) in reported {
        assert_eq!(
            ids.start as usize,
            batch * CRASH_BATCH,
            "ids follow batches"
        );
        let (sources, vectors) = crash_batch(*batch);
        for (id, (source, vector)) in ids.clone().zip(sources.iter().zip(&vectors)) {
            let entry = index
                .get(id)
                .unwrap()
                .unwrap_or_else(|| panic!("item {id} lost"));
            assert_eq!(&entry.source, source);
            assert_eq!(&entry.embedding, vector);
        }
        let hits = index.search(&vectors[7], 1).unwrap();
        assert_eq!(hits[0].source, sources[7], "batch {batch} is searchable");
    }
    // Every stored item, including any written after the last report, is whole.
    for id in 0..len as u32 {
        assert!(index.get(id).unwrap().is_some(), "item {id}");
    }
}
