//! The report's client section, from `client/runs.json` that
//! scripts/bench/client.sh writes: clip-client against Python's
//! tritonclient on the same requests, and clip-client's peak memory over
//! directories of growing size.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Deserialize;

/// clip-client's items/s over Python tritonclient's, for sentences.
const SENTENCE_RATIO: f64 = 2.0;
/// Peak RSS of the largest directory over the smallest's: "flat".
const FLAT_MEMORY: f64 = 1.25;

const CLIP_CLIENT: &str = "clip-client";
const TRITONCLIENT: &str = "tritonclient";

#[derive(Deserialize)]
struct Runs {
    date: String,
    batch_size: u32,
    concurrency: u32,
    directory_sizes: Vec<u64>,
    runs: Vec<Run>,
}

#[derive(Deserialize, Clone)]
struct Run {
    client: String,
    workload: String,
    tag: String,
    items: u64,
    wall_s: f64,
    /// The job alone, without the interpreter's start (Python client only).
    job_s: Option<f64>,
    cpu_s: f64,
    max_rss_kib: u64,
}

impl Run {
    fn per_second(&self) -> f64 {
        self.items as f64 / self.job_s.unwrap_or(self.wall_s)
    }
    fn cpu_us_per_item(&self) -> f64 {
        self.cpu_s * 1e6 / self.items as f64
    }
}

impl Runs {
    /// The fastest of a client's rounds on a workload.
    fn best(&self, client: &str, workload: &str) -> Option<&Run> {
        self.runs
            .iter()
            .filter(|r| r.client == client && r.workload == workload)
            .max_by(|a, b| a.per_second().total_cmp(&b.per_second()))
    }
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// Writes the section; targets missed go to `missed` (not judged when `smoke`).
pub fn section(
    w: &mut String,
    results: &Path,
    smoke: bool,
    missed: &mut Vec<String>,
) -> Result<()> {
    const RUNS: &str = "client/runs.json";
    let Some(text) = crate::report::section_input(w, "Client", results, RUNS)? else {
        return Ok(());
    };
    let runs: Runs = serde_json::from_str(&text).context(RUNS)?;
    let run_date = std::fs::read_to_string(results.join("date")).unwrap_or_default();
    if run_date.trim() != runs.date {
        writeln!(
            w,
            "This section was measured on its own after the rest of the run \
             (`scripts/bench/client.sh` into the same results folder, then `clip-bench report`).\n"
        )?;
    }
    writeln!(
        w,
        "`clip-client encode` against NVIDIA's Python client (`tritonclient[grpc]` 2.51.0, \
         `scripts/bench/python/tritonclient_encode.py`) sending the same requests: the same input list, \
         batches of {}, {} requests in flight, image files read by the client (`scripts/bench/client.sh`). \
         The server is the tiny CLIP fixture on the same machine, so that the server is not the only \
         limit: with ViT-B-32 on two CPU cores both clients would wait on the encoder alike. Both share \
         the CPU with the server, so a client's own CPU time is the clearest measure of its cost. \
         Items/s count clip-client's whole process (start and connection included) and the Python \
         client's job without its interpreter's start; CPU time and peak RSS are the whole process's. \
         Best of two rounds each. Measured {}.\n",
        runs.batch_size, runs.concurrency, runs.date
    )?;
    writeln!(
        w,
        "| workload | clip-client items/s | tritonclient items/s | ratio | clip-client CPU per item | \
         tritonclient CPU per item | clip-client peak RSS | tritonclient peak RSS |"
    )?;
    writeln!(w, "| --- | --- | --- | --- | --- | --- | --- | --- |")?;
    for workload in ["sentences", "photos"] {
        let (Some(ours), Some(theirs)) = (
            runs.best(CLIP_CLIENT, workload),
            runs.best(TRITONCLIENT, workload),
        ) else {
            continue;
        };
        let ratio = ours.per_second() / theirs.per_second();
        writeln!(
            w,
            "| {} {workload} | {:.0} | {:.0} | **{ratio:.2}x** | {:.0} µs | {:.0} µs | {} | {} |",
            ours.items,
            ours.per_second(),
            theirs.per_second(),
            ours.cpu_us_per_item(),
            theirs.cpu_us_per_item(),
            mib(ours.max_rss_kib),
            mib(theirs.max_rss_kib),
        )?;
        if workload == "sentences" && !smoke && ratio < SENTENCE_RATIO {
            missed.push(format!(
                "client sentences: {ratio:.2}x Python tritonclient's items/s (target {SENTENCE_RATIO}x); \
                 CPU per item {:.0} µs against {:.0} µs",
                ours.cpu_us_per_item(),
                theirs.cpu_us_per_item()
            ));
        }
    }
    writeln!(w)?;

    writeln!(
        w,
        "Peak RSS of `clip-client encode DIRECTORY -o out.npy` (photos read lazily, at most \
         batch × in-flight files in memory):\n"
    )?;
    writeln!(w, "| photos in the directory | peak RSS | wall time |")?;
    writeln!(w, "| --- | --- | --- |")?;
    let directory: Vec<&Run> = runs
        .directory_sizes
        .iter()
        .filter_map(|size| {
            runs.runs
                .iter()
                .find(|r| r.workload == "directory" && r.tag == size.to_string())
        })
        .collect();
    for run in &directory {
        writeln!(
            w,
            "| {} | {} | {:.1} s |",
            run.items,
            mib(run.max_rss_kib),
            run.wall_s
        )?;
    }
    if let (Some(first), Some(last)) = (directory.first(), directory.last()) {
        let growth = last.max_rss_kib as f64 / first.max_rss_kib.max(1) as f64;
        writeln!(
            w,
            "\n{}x the photos, {growth:.2}x the peak memory.\n",
            last.items / first.items.max(1)
        )?;
        if !smoke && growth > FLAT_MEMORY {
            missed.push(format!(
                "client memory grew {growth:.2}x from {} to {} photos (target: flat, at most {FLAT_MEMORY}x)",
                first.items, last.items
            ));
        }
    }
    Ok(())
}
