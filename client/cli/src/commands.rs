//! One function per subcommand. Each prints its result and returns the
//! exit status; an `Err` is a failure of the whole command.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context};
use clip_client::Client;

use crate::inputs::{input_of, Inputs};
use crate::output::Sink;
use crate::{progress, Batching};

/// Exit status when the job ran but some inputs failed.
const SOME_INPUTS_FAILED: u8 = 3;

fn exit_status(failed: impl Into<u64>) -> ExitCode {
    if failed.into() > 0 {
        ExitCode::from(SOME_INPUTS_FAILED)
    } else {
        ExitCode::SUCCESS
    }
}

pub async fn encode(
    client: &Client,
    inputs: Inputs,
    out: Option<&Path>,
    normalize: bool,
    batching: &Batching,
) -> anyhow::Result<ExitCode> {
    let options = batching.options(normalize)?;
    let mut inputs = inputs.read()?;
    let mut sink = Sink::create(out)?;
    let bar = progress::bar(batching.progress, inputs.known_len());
    let start = Instant::now();
    // The inputs handed to the library and not yet reported, oldest first:
    // if the job stops (server gone), they and the rest of the list still
    // get their rows, so row i stays input i.
    let unreported = RefCell::new(VecDeque::new());
    let (mut encoded, mut failed, mut write_failed) = (0, 0, false);
    let listed = inputs.by_ref().inspect(|input| {
        unreported.borrow_mut().push_back(input.clone());
    });
    let job = client
        .encode_each(listed, &options, |item| {
            unreported.borrow_mut().pop_front();
            bar.inc(1);
            match &item.result {
                Ok(_) => encoded += 1,
                Err(error) => {
                    failed += 1;
                    progress::report(&bar, format_args!("error: {error}"));
                }
            }
            sink.write(&item).map_err(|source| {
                write_failed = true;
                clip_client::Error::Io {
                    context: "cannot write the output".into(),
                    source,
                }
            })
        })
        .await;
    bar.finish_and_clear();
    let stopped = match job {
        Ok(_) => None,
        Err(error) if write_failed => return Err(error.into()),
        Err(error) => {
            let first = encoded + failed;
            let reason = format!("not encoded: the job stopped before this input: {error}");
            let rest = unreported.into_inner().into_iter().chain(inputs.by_ref());
            let mut count = 0;
            for (index, input) in (first..).zip(rest) {
                sink.write_unfinished(index, &input, &reason)
                    .context("cannot write the output")?;
                count += 1;
            }
            Some((error, first, count))
        }
    };
    sink.finish()?;
    let seconds = start.elapsed().as_secs_f64();
    let done = encoded + failed;
    let rate = done as f64 / seconds.max(1e-9);
    let Some((error, first, count)) = stopped else {
        eprintln!(
            "encoded {encoded} of {done} inputs ({failed} failed) in {seconds:.2} s: {rate:.1} inputs/s"
        );
        inputs.finish()?;
        return Ok(exit_status(failed as u64));
    };
    eprintln!(
        "encoded {encoded} of {} inputs ({failed} failed) in {seconds:.2} s: {rate:.1} inputs/s; \
         the job stopped at input #{first}: the {count} inputs from there on were not encoded, \
         and their rows say so",
        done + count
    );
    // The list's own errors, if any, are printed before the job's.
    let _ = inputs.finish();
    Err(error.into())
}

pub async fn rank(
    client: &Client,
    query: String,
    candidates: Inputs,
    top: Option<usize>,
    batching: &Batching,
) -> anyhow::Result<ExitCode> {
    let options = batching.options(false)?;
    let mut listed = candidates.read()?;
    let candidates: Vec<_> = listed.by_ref().collect();
    // Ranking against part of the candidates would be a different answer.
    listed.finish()?;
    if candidates.is_empty() {
        bail!("rank needs at least one candidate");
    }
    let bar = progress::bar(batching.progress, Some(candidates.len() as u64 + 1));
    let ranked = client
        .rank_with_progress(input_of(query, false), candidates, &options, |_| bar.inc(1))
        .await?;
    bar.finish_and_clear();
    println!(
        "{:>4}  {:>10}  {:>7}  candidate",
        "rank", "clip_score", "cosine"
    );
    for (i, r) in ranked.iter().take(top.unwrap_or(usize::MAX)).enumerate() {
        println!(
            "{:>4}  {:>10.4}  {:>7.4}  {}",
            i + 1,
            r.clip_score,
            r.cosine,
            r.input.source()
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn index(
    client: &Client,
    index: &Path,
    inputs: Inputs,
    batching: &Batching,
) -> anyhow::Result<ExitCode> {
    let options = batching.options(false)?;
    let mut inputs = inputs.read()?;
    let bar = progress::bar(batching.progress, inputs.known_len());
    let start = Instant::now();
    let (mut added, mut failed) = (0, 0);
    let job = client
        .index(
            index,
            inputs.by_ref(),
            &options,
            |written| {
                added += written;
                bar.inc(written);
            },
            |error| {
                failed += 1;
                bar.inc(1);
                progress::report(&bar, format_args!("error: {error}"));
            },
        )
        .await;
    bar.finish_and_clear();
    let summary = match job {
        Ok(summary) => summary,
        Err(error) => {
            // Each reported append is durable: say how much of the job is kept.
            eprintln!(
                "added {added} items ({failed} failed) to {} before the job stopped; \
                 they stay in the index",
                index.display()
            );
            return Err(error.into());
        }
    };
    println!(
        "added {} items ({} failed) in {:.2} s; {} now holds {} items",
        summary.added,
        summary.failed,
        start.elapsed().as_secs_f64(),
        index.display(),
        summary.total
    );
    inputs.finish()?;
    Ok(exit_status(summary.failed))
}

pub async fn search(
    client: &Client,
    index: &Path,
    query: String,
    limit: usize,
    text: bool,
) -> anyhow::Result<ExitCode> {
    let hits = client.search(index, input_of(query, text), limit).await?;
    println!("{:>4}  {:>7}  {:<5}  source", "rank", "cosine", "kind");
    for (i, hit) in hits.iter().enumerate() {
        println!(
            "{:>4}  {:>7.4}  {:<5}  {}",
            i + 1,
            hit.score,
            hit.kind,
            hit.source
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn profile(
    client: &Client,
    input: String,
    requests: u64,
    text: bool,
) -> anyhow::Result<ExitCode> {
    let profile = client.profile(input_of(input, text), requests).await?;
    print!("{profile}");
    Ok(ExitCode::SUCCESS)
}

pub async fn health(client: &Client) -> anyhow::Result<ExitCode> {
    let health = client.health().await?;
    print!("{health}");
    Ok(if health.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

pub async fn models(client: &Client) -> anyhow::Result<ExitCode> {
    let models = client.triton().repository_index().await?;
    println!("{:<28} {:<8} {:<12} details", "model", "version", "state");
    for m in &models {
        println!(
            "{:<28} {:<8} {:<12} {}",
            m.name, m.version, m.state, m.reason
        );
    }
    let health = client.health().await?;
    println!();
    for (name, info) in &health.models {
        match info {
            Ok(info) => println!(
                "{name}: {} ({}-d embeddings, max batch {}, logit scale {:.2}) via {}",
                info.clip_model,
                info.embedding_dim,
                info.max_batch_size,
                info.logit_scale(),
                info.steps.join(" -> ")
            ),
            Err(reason) => println!("{name}: not usable: {reason}"),
        }
    }
    Ok(ExitCode::SUCCESS)
}
