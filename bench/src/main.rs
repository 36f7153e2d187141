//! `clip-bench`: the Rust half of `scripts/bench.sh`.
//!
//! - `prepare`: adds the benchmark's model variants to a repository that
//!   repo-gen wrote (the `clip` preprocessing models with 1 and 2 instances,
//!   and the Python-backend models they are compared with) and writes
//!   perf_analyzer's `--input-data` files for photos and sentences.
//! - `encoder`: runs an ONNX encoder alone, in-process through `ort`, over a
//!   range of batch sizes: the limit the ensembles are measured against.
//! - `inprocess`: our image preprocessing and the libjpeg-turbo decode at
//!   the same DCT scale (the floor), in process, one thread and all cores.
//! - `report`: turns a run's results into `docs/benchmarks.md` and its chart.
//!
//! Every model, tensor and parameter name comes from `clip_contract`.

mod chart;
mod client;
mod encoder;
mod ensemble;
mod index;
mod inprocess;
mod int8;
mod peers;
mod pixel_path;
mod prepare;
#[cfg(test)]
mod render_tests;
mod report;
mod targets;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "clip-bench", about = "Benchmark harness of scripts/bench.sh")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Add the benchmark's model variants to a repository and write perf_analyzer inputs.
    Prepare(prepare::Args),
    /// Run an ONNX encoder alone through ort at several batch sizes.
    Encoder(encoder::Args),
    /// Measure our image preprocessing and its decode-only floor in process.
    Inprocess(inprocess::Args),
    /// Write the Markdown report and the PNG chart from a run's results.
    Report(report::Args),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Prepare(args) => prepare::run(&args),
        Command::Encoder(args) => encoder::run(&args),
        Command::Inprocess(args) => inprocess::run(&args),
        Command::Report(args) => report::run(&args),
    }
}
