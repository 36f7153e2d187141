//! `clip-soak`: the driver of `scripts/soak.sh`.
//!
//! - `limits`: sets low `max_image_bytes` / `max_text_bytes` in a
//!   repository repo-gen wrote.
//! - `run`: against a running tritonserver, learns every good input's
//!   embedding from a request of it alone, then runs Rust clients (raw gRPC,
//!   and the clip_client library) and Python tritonclient processes for the
//!   given minutes, checks every response element by element, samples the
//!   server's memory, threads and descriptors from /proc, and writes a
//!   Markdown report. Exits 1 on any wrong result.

mod check;
mod clients;
mod inputs;
mod limits;
mod monitor;
mod report;
mod rng;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use clip_client::{bytes_request, output_as_f32, Client, ClientOptions, Modality};

use crate::check::{deviation, Tally};
use crate::clients::{Ctx, Model};
use crate::inputs::{BadKind, Inputs, Limits, Mix};
use crate::monitor::Monitor;

#[derive(Parser)]
#[command(name = "clip-soak", about = "Soak and load driver of scripts/soak.sh")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Set low size limits in a generated repository.
    Limits(LimitsArgs),
    /// Run the load against a running server and write the report.
    Run(Box<RunArgs>),
}

#[derive(clap::Args)]
struct LimitsArgs {
    #[arg(long)]
    repo: PathBuf,
    /// The good photos: max_image_bytes becomes the next MiB above the largest.
    #[arg(long)]
    photos: PathBuf,
    #[arg(long, default_value_t = 1024)]
    max_text_bytes: usize,
    #[arg(long, default_value = "")]
    name_prefix: String,
}

#[derive(clap::Args)]
struct RunArgs {
    /// The server's gRPC address.
    #[arg(long)]
    server: String,
    /// The tritonserver process, for /proc.
    #[arg(long)]
    server_pid: u32,
    /// Its log, summarized in the report.
    #[arg(long)]
    server_log: Option<PathBuf>,
    /// Folder of good photos (*.jpg; the folder a photo is in is its size class).
    #[arg(long)]
    photos: PathBuf,
    /// Minutes of load.
    #[arg(long)]
    minutes: f64,
    #[arg(long)]
    report: PathBuf,
    /// Scratch folder: payload files and the manifest of the Python clients, their logs.
    #[arg(long)]
    work: PathBuf,
    /// Rust clients sending raw gRPC requests, each on its own connection.
    #[arg(long, default_value_t = 6)]
    rust_clients: usize,
    /// Rust clients calling clip_client's `encode`.
    #[arg(long, default_value_t = 2)]
    library_clients: usize,
    /// Python tritonclient processes.
    #[arg(long, default_value_t = 2)]
    python_clients: usize,
    /// The python of a venv holding tritonclient[grpc].
    #[arg(long)]
    python: Option<PathBuf>,
    /// scripts/soak/tritonclient_soak.py
    #[arg(long)]
    python_script: Option<PathBuf>,
    /// Latency window of the report, seconds.
    #[arg(long, default_value_t = 60.0)]
    window_seconds: f64,
    /// RSS growth is measured after this many seconds of load (default: a fifth of it, at most 5 minutes).
    #[arg(long)]
    warmup_seconds: Option<f64>,
    #[arg(long, default_value_t = 5.0)]
    sample_seconds: f64,
    /// A row passes within this max |a - b| / |expected|.
    #[arg(long, default_value_t = 1e-5)]
    tolerance: f64,
    #[arg(long, default_value_t = 200)]
    sentences: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Bad kinds to leave out, comma-separated (corrupt-marker, corrupt-sof, corrupt-dqt, truncated,
    /// unknown-format, url, oversize, overlong-text, invalid-utf8).
    #[arg(long, value_delimiter = ',')]
    skip_bad: Vec<String>,
    /// Why, for the report.
    #[arg(long)]
    skip_reason: Option<String>,
    /// The command line, for the report.
    #[arg(long, default_value = "clip-soak run")]
    command: String,
    /// A note on the machine, for the report.
    #[arg(long)]
    note: Option<String>,
    /// The source revision the server and clients were built from, for the report.
    #[arg(long)]
    revision: Option<String>,
    #[arg(long, default_value = "")]
    name_prefix: String,
}

fn main() {
    let outcome = match Cli::parse().command {
        Command::Limits(args) => limits(&args).map(|()| true),
        Command::Run(args) => run(&args),
    };
    match outcome {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("clip-soak: {e:#}");
            std::process::exit(2);
        }
    }
}

fn log(message: impl AsRef<str>) {
    eprintln!("soak: {}", message.as_ref());
}

fn limits(args: &LimitsArgs) -> Result<()> {
    let largest = inputs::photos(&args.photos)?
        .iter()
        .map(|(_, p)| std::fs::metadata(p).map(|m| m.len() as usize))
        .collect::<std::io::Result<Vec<_>>>()?
        .into_iter()
        .max()
        .unwrap_or(0);
    let image = limits::image_limit(largest);
    limits::set(&args.repo, &args.name_prefix, image, args.max_text_bytes)?;
    println!(
        "max_image_bytes={image} max_text_bytes={}",
        args.max_text_bytes
    );
    Ok(())
}

fn first_line(path: &str, prefix: &str) -> Option<String> {
    std::fs::read_to_string(path).ok()?.lines().find_map(|l| {
        l.strip_prefix(prefix)
            .map(|v| v.trim().trim_start_matches(':').trim().to_owned())
    })
}

fn machine() -> String {
    let cpu = first_line("/proc/cpuinfo", "model name").unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory = first_line("/proc/meminfo", "MemTotal")
        .and_then(|v| {
            v.split_whitespace()
                .next()
                .and_then(|k| k.parse::<f64>().ok())
        })
        .map_or("?".into(), |kib| {
            format!("{:.0} GiB", kib / 1024.0 / 1024.0)
        });
    format!("{} {cpu}, {cores} cores, {memory}", std::env::consts::ARCH)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// The value of parameter `key` in the served config of `name`.
async fn served_parameter(client: &Client, name: &str, key: &str) -> Result<usize> {
    let config = client.triton().model_config(name).await?;
    let value = config.parameters.get(key).with_context(|| {
        format!("{name} has no {key} parameter; run clip-soak limits on the repository")
    })?;
    value
        .string_value
        .trim()
        .parse()
        .with_context(|| format!("{name}: {key} is {:?}", value.string_value))
}

/// Connects once the server is ready, or fails when it exits or takes too long.
async fn wait_ready(url: &str, pid: u32) -> Result<Client> {
    let started = Instant::now();
    loop {
        if monitor::sample(pid, 0.0).is_none() {
            bail!("the server (pid {pid}) exited before it was ready");
        }
        let options = ClientOptions {
            connect: clients::connect_options(),
            ..ClientOptions::default()
        };
        if let Ok(client) = Client::connect_with(url, options).await {
            if client.triton().server_ready().await.unwrap_or(false) {
                return Ok(client);
            }
        }
        if started.elapsed() > Duration::from_secs(300) {
            bail!("the server was not ready after 300 s");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Each good input's embedding, from a request of it alone.
async fn learn_expected(
    client: &Client,
    inputs: &mut Inputs,
    text: &Model,
    image: &Model,
) -> Result<()> {
    for good in &mut inputs.goods {
        let model = match good.modality {
            Modality::Text => text,
            Modality::Image => image,
        };
        let request = bytes_request(
            &model.name,
            &model.input,
            &model.output,
            &[good.bytes.as_slice()],
        );
        let response = client
            .triton()
            .infer(request)
            .await
            .with_context(|| format!("the expected embedding of {}", good.label))?;
        let values = output_as_f32(&response, &model.output)?;
        if values.len() != model.dim {
            bail!("{}: {} values, not {}", good.label, values.len(), model.dim);
        }
        good.expected = values;
    }
    Ok(())
}

/// The smallest deviation between the embeddings of two different good
/// inputs of `modality`; pairs closer than `min` are taken out of the mix
/// (the second of each), so a swap between them could not go unseen.
fn separate(inputs: &mut Inputs, modality: Modality, min: f64) -> f64 {
    let ids: Vec<usize> = (0..inputs.goods.len())
        .filter(|&g| inputs.goods[g].modality == modality)
        .collect();
    let mut closest = f64::INFINITY;
    let mut dropped = Vec::new();
    for (i, &a) in ids.iter().enumerate() {
        if dropped.contains(&a) {
            continue;
        }
        for &b in &ids[i + 1..] {
            let d = deviation(&inputs.goods[b].expected, &inputs.goods[a].expected).min(deviation(
                &inputs.goods[a].expected,
                &inputs.goods[b].expected,
            ));
            if d < min {
                log(format!(
                    "{} and {} embed within {d:.1e}: leaving the second out",
                    inputs.goods[a].label, inputs.goods[b].label
                ));
                dropped.push(b);
            } else {
                closest = closest.min(d);
            }
        }
    }
    inputs.text_goods.retain(|g| !dropped.contains(g));
    for class in &mut inputs.image_classes {
        class.goods.retain(|g| !dropped.contains(g));
    }
    closest
}

fn run(args: &RunArgs) -> Result<bool> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run_async(args))
}

async fn run_async(args: &RunArgs) -> Result<bool> {
    let pid = args.server_pid;
    let mut skipped = Vec::new();
    for name in &args.skip_bad {
        skipped.push(BadKind::from_name(name).with_context(|| format!("no bad kind {name:?}"))?);
    }
    let kinds: Vec<BadKind> = BadKind::ALL
        .into_iter()
        .filter(|k| !skipped.contains(k))
        .collect();
    if args.python_clients > 0 && (args.python.is_none() || args.python_script.is_none()) {
        bail!("--python and --python-script are needed for Python clients");
    }

    log(format!("waiting for the server at {}", args.server));
    let client = wait_ready(&args.server, pid).await?;
    // scripts/launch-triton.sh execs the server: by now the pid is tritonserver's.
    let command_name = monitor::command_name(pid).unwrap_or_default();
    if command_name != "tritonserver" {
        bail!("pid {pid} is {command_name:?}, not tritonserver");
    }
    let version = client.triton().server_metadata().await?.version;
    let text_info = client.model(Modality::Text).await?.clone();
    let image_info = client.model(Modality::Image).await?.clone();
    let model = |info: &clip_client::ModelInfo| Model {
        name: info.name.clone(),
        input: info.input.name.clone(),
        output: info.output.name.clone(),
        dim: info.embedding_dim,
    };
    let (text, image) = (model(&text_info), model(&image_info));
    let preprocess =
        |info: &clip_client::ModelInfo| info.steps.first().cloned().unwrap_or_default();
    let limits = Limits {
        max_image_bytes: served_parameter(
            &client,
            &preprocess(&image_info),
            clip_contract::param::MAX_IMAGE_BYTES,
        )
        .await?,
        max_text_bytes: served_parameter(
            &client,
            &preprocess(&text_info),
            clip_contract::param::MAX_TEXT_BYTES,
        )
        .await?,
    };

    let mut inputs = Inputs::new(
        inputs::sentences(args.sentences, limits.max_text_bytes),
        inputs::photos(&args.photos)?,
        &kinds,
        limits,
        args.seed,
    )?;
    log(format!(
        "learning the embeddings of {} good inputs, one request each",
        inputs.goods.len()
    ));
    let learn_started = Instant::now();
    learn_expected(&client, &mut inputs, &text, &image).await?;
    let expected_seconds = learn_started.elapsed().as_secs_f64();
    let min_separation = args.tolerance * 100.0;
    let separation = vec![
        (
            "text".to_owned(),
            separate(&mut inputs, Modality::Text, min_separation),
        ),
        (
            "image".to_owned(),
            separate(&mut inputs, Modality::Image, min_separation),
        ),
    ];

    std::fs::create_dir_all(&args.work)?;
    let load = Duration::from_secs_f64(args.minutes * 60.0);
    let loadavg_start = loadavg();
    let before = monitor::sample(pid, 0.0).context("reading the server's /proc")?;
    let log_offset = args
        .server_log
        .as_ref()
        .and_then(|p| std::fs::metadata(p).ok())
        .map_or(0, |m| m.len() as usize);
    let start = Instant::now();
    let ctx = Arc::new(Ctx {
        url: args.server.clone(),
        inputs,
        text,
        image,
        mix: Mix::default(),
        tolerance: args.tolerance,
        seed: args.seed,
        start,
        start_epoch: clients::epoch_seconds(),
        deadline: start + load,
    });
    let mut python = Vec::new();
    if args.python_clients > 0 {
        let manifest = clients::write_manifest(&ctx, &args.work, args.seed)?;
        for worker in 0..args.python_clients {
            python.push(clients::spawn_python(
                args.python.as_deref().unwrap_or(Path::new("python3")),
                args.python_script.as_deref().unwrap_or(Path::new("")),
                &manifest,
                &args.work,
                worker,
            )?);
        }
    }
    let monitor = Monitor::start(pid, start, Duration::from_secs_f64(args.sample_seconds));
    log(format!(
        "load for {:.1} min: {} raw gRPC, {} library and {} Python clients",
        args.minutes, args.rust_clients, args.library_clients, args.python_clients
    ));
    let raw: Vec<_> = (0..args.rust_clients)
        .map(|id| tokio::spawn(clients::raw_client(Arc::clone(&ctx), id)))
        .collect();
    let library: Vec<_> = (0..args.library_clients)
        .map(|id| tokio::spawn(clients::library_client(Arc::clone(&ctx), id)))
        .collect();
    let mut raw_tally = Tally::default();
    for handle in raw {
        raw_tally.merge(handle.await.context("a raw client panicked")?);
    }
    let mut library_tally = Tally::default();
    for handle in library {
        library_tally.merge(handle.await.context("a library client panicked")?);
    }
    let load_seconds = ctx.now();
    let mut python_tally = Tally::default();
    let limit = Instant::now() + Duration::from_secs(180);
    for client in python {
        python_tally.merge(clients::finish_python(client, limit, load_seconds));
    }
    let loadavg_end = loadavg();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let mut samples = vec![monitor::Sample { t: 0.0, ..before }];
    samples.extend(monitor.finish());
    let csv: String = std::iter::once("t_s,rss_kib,threads,fds\n".to_owned())
        .chain(
            samples
                .iter()
                .map(|s| format!("{:.1},{},{},{}\n", s.t, s.rss_kib, s.threads, s.fds)),
        )
        .collect();
    std::fs::write(args.work.join("server-samples.csv"), csv)?;
    let idle_after = monitor::sample(pid, ctx.now());
    let server_alive =
        idle_after.is_some() && client.triton().server_ready().await.unwrap_or(false);
    let log_text = args
        .server_log
        .as_ref()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .unwrap_or_default();

    let mut tallies = vec![(format!("Rust, raw gRPC ({})", args.rust_clients), raw_tally)];
    if args.library_clients > 0 {
        tallies.push((
            format!("Rust, clip_client `encode` ({})", args.library_clients),
            library_tally,
        ));
    }
    if args.python_clients > 0 {
        tallies.push((
            format!("Python tritonclient ({} processes)", args.python_clients),
            python_tally,
        ));
    }
    let warmup_seconds = args
        .warmup_seconds
        .unwrap_or_else(|| (load_seconds / 5.0).min(300.0));
    let run = report::Run {
        command: args.command.clone(),
        note: args.note.clone(),
        revision: args.revision.clone(),
        start_epoch: ctx.start_epoch,
        machine: machine(),
        loadavg_start,
        loadavg_end,
        server: format!("tritonserver {version} (local, CPU), pid {pid}"),
        model: format!(
            "{} ({}-d embeddings), ensembles {} and {}, largest batch {}",
            text_info.clip_model,
            text_info.embedding_dim,
            text_info.name,
            image_info.name,
            image_info.max_batch_size
        ),
        clients: format!(
            "{} Rust clients sending raw gRPC requests (one connection each, request ids checked); \
             {} Rust clients calling the clip_client library's `encode` (mixed sentences and photos, \
             batch sizes 1-4, 2 requests in flight each); {} Python processes with NVIDIA's tritonclient \
             2.51.0 (grpc); all at once, each sending its next request as soon as the last is answered",
            args.rust_clients, args.library_clients, args.python_clients
        ),
        planned_seconds: load.as_secs_f64(),
        load_seconds,
        window_seconds: args.window_seconds,
        warmup_seconds,
        sample_seconds: args.sample_seconds,
        inputs: &ctx.inputs,
        mix: &ctx.mix,
        skipped,
        skip_reason: args.skip_reason.clone(),
        tolerance: args.tolerance,
        expected_seconds,
        separation,
        tallies,
        samples,
        idle_after,
        server_alive,
        log: report::LogSummary::read(&log_text, log_offset),
    };
    if let Some(parent) = args.report.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&args.report, run.markdown())
        .with_context(|| format!("writing {}", args.report.display()))?;
    let total: u64 = run.tallies.iter().map(|(_, t)| t.requests).sum();
    log(format!(
        "{total} requests, {} wrong; server {}; report: {}",
        run.wrong(),
        if run.server_alive {
            "alive"
        } else {
            "NOT alive"
        },
        args.report.display()
    ));
    if let Some((slope, _, true)) = run.rss_growth() {
        log(format!(
            "flagged: server RSS grew {slope:+.1} MiB/h after warm-up"
        ));
    }
    Ok(run.passed())
}
