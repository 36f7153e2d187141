//! Encoder throughput in ONNX Runtime (the library clip-export verifies
//! with, 2 intra-op threads), and how close each model's embeddings come to
//! the first one's. Used by scripts/bench/int8.sh; prints Markdown tables.
//!
//! ```sh
//! cargo run --release -p clip-export --example throughput -- \
//!     text 1,8,32 3 fp32=repo/clip_text_encoder/1/model.onnx int8=int8/model.onnx
//! ```
//!
//! Arguments: `text` or `image`, the batch sizes, the seconds each
//! measurement runs at least, then `LABEL=MODEL.onnx` pairs (the first is
//! the reference for the cosines). Text rows are random ids of varied
//! lengths ending in the end-of-text token; images are smooth random
//! patterns in the normalised range.

use std::time::{Duration, Instant};

use clip_export::{Embeddings, LoadedModel, OnnxModel, OrtRuntime, CLIP_EOT_ID};

const CONTEXT: usize = 77;
const IMAGE_SIZE: usize = 224;

#[derive(Clone, Copy, PartialEq)]
enum Tower {
    Text,
    Image,
}

/// Deterministic inputs for `batch` items.
fn inputs(tower: Tower, batch: usize) -> (Vec<i64>, Vec<f32>) {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    match tower {
        Tower::Text => {
            let mut ids = Vec::with_capacity(batch * CONTEXT);
            for row in 0..batch {
                let words = 3 + (row * 7) % 40;
                ids.push(CLIP_EOT_ID - 1);
                ids.extend((0..words).map(|_| (next() % 49_000) as i64));
                ids.push(CLIP_EOT_ID);
                ids.resize((row + 1) * CONTEXT, 0);
            }
            (ids, Vec::new())
        }
        Tower::Image => {
            let plane = IMAGE_SIZE * IMAGE_SIZE;
            let mut pixels = Vec::with_capacity(batch * 3 * plane);
            for _ in 0..batch * 3 {
                let (fx, fy, phase) = (
                    (next() % 100) as f32 / 500.0,
                    (next() % 100) as f32 / 500.0,
                    (next() % 628) as f32 / 100.0,
                );
                pixels.extend((0..plane).map(|i| {
                    let (x, y) = ((i % IMAGE_SIZE) as f32, (i / IMAGE_SIZE) as f32);
                    1.8 * (fx * x + fy * y + phase).sin()
                }));
            }
            (Vec::new(), pixels)
        }
    }
}

fn run(
    model: &mut LoadedModel,
    tower: Tower,
    batch: usize,
    data: &(Vec<i64>, Vec<f32>),
) -> Embeddings {
    match tower {
        Tower::Text => model.embed_text(&data.0, batch),
        Tower::Image => model.embed_images(&data.1, batch, IMAGE_SIZE),
    }
    .expect("the model runs")
}

/// Items per second at `batch`, over at least `seconds` and 3 runs after one warm-up run.
fn throughput(model: &mut LoadedModel, tower: Tower, batch: usize, seconds: f64) -> f64 {
    let data = inputs(tower, batch);
    run(model, tower, batch, &data);
    let (start, mut runs) = (Instant::now(), 0usize);
    while runs < 3 || start.elapsed() < Duration::from_secs_f64(seconds) {
        run(model, tower, batch, &data);
        runs += 1;
    }
    (runs * batch) as f64 / start.elapsed().as_secs_f64()
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let norm = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (norm(a) * norm(b))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [tower, batches, seconds, models @ ..] = &args[..] else {
        return Err("usage: throughput text|image BATCHES SECONDS LABEL=MODEL.onnx...".into());
    };
    let tower = match tower.as_str() {
        "text" => Tower::Text,
        "image" => Tower::Image,
        other => return Err(format!("tower {other}: text or image").into()),
    };
    let batches: Vec<usize> = batches
        .split(',')
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let seconds: f64 = seconds.parse()?;
    let runtime = OrtRuntime::load(None, "ORT_DYLIB_PATH")?;
    let mut loaded = Vec::new();
    for pair in models {
        let (label, path) = pair
            .split_once('=')
            .ok_or(format!("{pair}: write LABEL=PATH"))?;
        let model = OnnxModel {
            model: std::fs::read(path).map_err(|e| format!("{path}: {e}"))?,
            external_data: None,
        };
        loaded.push((label.to_string(), runtime.session(&model)?));
    }
    if loaded.is_empty() {
        return Err("no models".into());
    }

    let name = if tower == Tower::Text {
        "text"
    } else {
        "image"
    };
    println!("\n{name} encoder, items/s (2 intra-op threads)\n");
    println!(
        "| batch | {} |",
        loaded
            .iter()
            .map(|(l, _)| l.as_str())
            .collect::<Vec<_>>()
            .join(" | ")
    );
    println!("|---|{}", "---|".repeat(loaded.len()));
    for &batch in &batches {
        let rates: Vec<String> = loaded
            .iter_mut()
            .map(|(_, model)| format!("{:.1}", throughput(model, tower, batch, seconds)))
            .collect();
        println!("| {batch} | {} |", rates.join(" | "));
    }

    let rows = *batches.iter().max().expect("one batch size");
    let data = inputs(tower, rows);
    let reference = run(&mut loaded[0].1, tower, rows, &data);
    let dim = reference.shape[1] as usize;
    println!(
        "\n{name} embeddings against {} over {rows} rows\n",
        loaded[0].0
    );
    println!("| model | min cosine | mean cosine |\n|---|---|---|");
    for (label, model) in loaded.iter_mut().skip(1) {
        let out = run(model, tower, rows, &data);
        let cosines: Vec<f64> = out
            .data
            .chunks(dim)
            .zip(reference.data.chunks(dim))
            .map(|(a, b)| cosine(a, b))
            .collect();
        let min = cosines.iter().copied().fold(f64::INFINITY, f64::min);
        let mean = cosines.iter().sum::<f64>() / cosines.len() as f64;
        println!("| {label} | {min:.5} | {mean:.5} |");
    }
    Ok(())
}
