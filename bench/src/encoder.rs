//! An ONNX encoder alone, in-process through `ort`: the most a server can
//! get out of it on this machine, with the threads Triton's `onnx_encoder`
//! kind gives one instance (all cores, one inter-op thread).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clip_contract::{file, model, param, tensor};
use ort::session::Session;
use ort::value::Tensor;
use serde_json::json;

#[derive(Clone, Copy, clap::ValueEnum)]
enum Kind {
    Text,
    Image,
}

#[derive(clap::Args)]
pub struct Args {
    /// The repository repo-gen wrote; the encoder is its clip_{text,image}_encoder model.onnx.
    #[arg(long)]
    repo: PathBuf,
    #[arg(long, value_enum)]
    kind: Kind,
    /// libonnxruntime.so (scripts/install-onnxruntime.sh prints one).
    #[arg(long)]
    ort_library: PathBuf,
    #[arg(long, value_delimiter = ',', default_value = "1,4,8,16,32")]
    batches: Vec<usize>,
    /// Measuring time per batch size, after one warm-up run.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// ONNX Runtime intra-op threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// The JSON result file.
    #[arg(long)]
    out: PathBuf,
}

pub fn run(args: &Args) -> Result<()> {
    let (model_name, preprocess) = match args.kind {
        Kind::Text => (model::TEXT_ENCODER, model::TEXT_PREPROCESS),
        Kind::Image => (model::IMAGE_ENCODER, model::IMAGE_PREPROCESS),
    };
    let model_path = args
        .repo
        .join(model_name)
        .join(repo_gen::VERSION)
        .join(file::ONNX_MODEL);
    let config = std::fs::read_to_string(args.repo.join(preprocess).join("config.pbtxt"))
        .context("reading the preprocessing config")?;
    let image_size: usize = match args.kind {
        Kind::Image => crate::prepare::parameter(&config, param::IMAGE_SIZE)?.parse()?,
        Kind::Text => 0,
    };
    let context_length: usize = match args.kind {
        Kind::Text => crate::prepare::parameter(&config, param::CONTEXT_LENGTH)?.parse()?,
        Kind::Image => 0,
    };
    let ort_err = |e: &dyn std::fmt::Display| anyhow::anyhow!("ONNX Runtime: {e}");
    let env = ort::init_from(&args.ort_library)
        .map_err(|e| ort_err(&e))
        .with_context(|| format!("loading {}", args.ort_library.display()))?
        .with_name("clip-bench")
        .build()
        .map_err(|e| ort_err(&e))?;
    let threads = args.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let mut session = Session::builder(&env)
        .map_err(|e| ort_err(&e))?
        .with_intra_threads(threads)
        .map_err(|e| ort_err(&e))?
        .with_inter_threads(1)
        .map_err(|e| ort_err(&e))?
        .commit_from_file(&model_path)
        .map_err(|e| ort_err(&e))
        .with_context(|| format!("loading {}", model_path.display()))?;
    let mut results = Vec::new();
    for &batch in &args.batches {
        let mut step = || -> Result<()> {
            match args.kind {
                Kind::Image => {
                    let s = image_size;
                    let pixels: Vec<f32> = (0..batch * 3 * s * s)
                        .map(|i| ((i % 251) as f32 / 125.0) - 1.0)
                        .collect();
                    let input =
                        Tensor::from_array((vec![batch as i64, 3, s as i64, s as i64], pixels))
                            .map_err(|e| ort_err(&e))?;
                    session
                        .run(ort::inputs![tensor::PIXEL_VALUES => input])
                        .map_err(|e| ort_err(&e))?;
                }
                Kind::Text => {
                    let c = context_length;
                    // Start token, a dozen word ids, end token, padding: a typical caption.
                    let mut ids = vec![49407i64; batch * c];
                    for row in 0..batch {
                        let r = &mut ids[row * c..(row + 1) * c];
                        r[0] = 49406;
                        for (j, id) in r.iter_mut().enumerate().take(13).skip(1) {
                            *id = (320 + 97 * (row + j) as i64) % 49000;
                        }
                    }
                    let input = Tensor::from_array((vec![batch as i64, c as i64], ids))
                        .map_err(|e| ort_err(&e))?;
                    session
                        .run(ort::inputs![tensor::INPUT_IDS => input])
                        .map_err(|e| ort_err(&e))?;
                }
            }
            Ok(())
        };
        step()?; // warm-up
        let start = Instant::now();
        let mut runs = 0usize;
        while start.elapsed() < Duration::from_secs_f64(args.seconds) || runs < 2 {
            step()?;
            runs += 1;
        }
        let elapsed = start.elapsed().as_secs_f64();
        let per_second = (runs * batch) as f64 / elapsed;
        eprintln!("clip-bench encoder: batch {batch}: {per_second:.1} items/s ({runs} runs)");
        results.push(json!({ "batch": batch, "items_per_second": per_second, "runs": runs }));
    }
    let kind = match args.kind {
        Kind::Text => "text",
        Kind::Image => "image",
    };
    std::fs::write(
        &args.out,
        serde_json::to_vec_pretty(&json!({
            "kind": kind,
            "model": model_path,
            "intra_op_threads": threads,
            "results": results,
        }))?,
    )?;
    Ok(())
}
