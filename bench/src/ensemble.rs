//! The report's end-to-end section: the ensembles through Triton against
//! the encoder alone in process (`encoder_{image,text}.json`), and against
//! the limit an ensemble can reach when its preprocessing shares the CPU
//! with the encoder: with the encoder alone at R items/s on all N cores and
//! preprocessing costing p CPU-seconds per item, one item costs 1/R + p/N
//! seconds of the whole machine, so the combined limit is 1 / (1/R + p/N).
//! Also the pixel path's ensemble (`clip_image_pixels`: pixels in, no
//! preprocessing step) against the encoder alone.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use anyhow::{Context, Result};
use clip_contract::model;
use serde_json::Value;

use crate::report::Run;

const TARGET_FRACTION: f64 = 0.90;
const TARGET_PREPROCESS_SHARE: f64 = 0.05;

/// What one Triton model spent during an ensemble's run (Triton's statistics).
struct Spent {
    compute_ns: f64,
    elements: f64,
}

fn spent(results: &Path, ensemble: &str, model: &str) -> Option<Spent> {
    let read = |when: &str| -> Option<(f64, f64)> {
        let text =
            fs::read_to_string(results.join(format!("stats/{ensemble}_{when}_{model}.json")))
                .ok()?;
        let v: Value = serde_json::from_str(&text).ok()?;
        let stats = &v["model_stats"][0];
        let number = |v: &Value| {
            v.as_str()
                .and_then(|n| n.parse::<f64>().ok())
                .or_else(|| v.as_f64())
        };
        let compute = ["compute_input", "compute_infer", "compute_output"]
            .iter()
            .map(|k| number(&stats["inference_stats"][k]["ns"]).unwrap_or(0.0))
            .sum();
        Some((compute, number(&stats["inference_count"]).unwrap_or(0.0)))
    };
    let (after, before) = (read("after")?, read("before")?);
    Some(Spent {
        compute_ns: after.0 - before.0,
        elements: after.1 - before.1,
    })
}

/// 1 / (1/R + p/N): see the module's comment.
pub(crate) fn combined_limit(encoder_per_second: f64, preprocess_cpu_s: f64, cores: usize) -> f64 {
    1.0 / (1.0 / encoder_per_second + preprocess_cpu_s / cores as f64)
}

/// The encoder alone: (batch, items/s) per batch size measured.
fn encoder_points(results: &Path, tower: &str) -> Result<Option<Vec<(u64, f64)>>> {
    let Ok(text) = fs::read_to_string(results.join(format!("encoder_{tower}.json"))) else {
        return Ok(None);
    };
    let encoder: Value = serde_json::from_str(&text)?;
    Ok(Some(
        encoder["results"]
            .as_array()
            .context("encoder results")?
            .iter()
            .map(|p| {
                (
                    p["batch"].as_u64().unwrap_or(0),
                    p["items_per_second"].as_f64().unwrap_or(0.0),
                )
            })
            .collect(),
    ))
}

fn best_run<'a>(runs: &'a [Run], implementation: &str) -> Option<(f64, &'a Run)> {
    runs.iter()
        .filter(|r| r.group == "ensemble" && r.implementation == implementation)
        .filter_map(|r| r.per_second.map(|v| (v, r)))
        .max_by(|a, b| a.0.total_cmp(&b.0))
}

fn percent(f: Option<f64>) -> String {
    f.map_or("n/a".into(), |f| format!("**{:.1}%**", f * 100.0))
}

pub fn section(
    w: &mut String,
    results: &Path,
    runs: &[Run],
    cores: usize,
    smoke: bool,
    missed: &mut Vec<String>,
) -> Result<()> {
    writeln!(w, "## End to end against the encoder alone\n")?;
    writeln!(
        w,
        "**Limit**: the ONNX encoder alone, in-process through `ort` (ONNX Runtime 1.31, all cores as \
         intra-op threads, as the `onnx_encoder` kind gives one instance), on ready tensors \
         (`clip-bench encoder`). **Ensemble**: `clip_image` / `clip_text` through Triton (raw photo or \
         sentence in, embedding out), at the limit's best batch size. **Combined limit**: what the \
         ensemble can reach when its preprocessing shares the {cores} cores with the encoder, \
         1 / (1/R + p/N), with R the encoder alone's items/s at that batch, N the cores, and p the \
         preprocessing's CPU seconds per item: for photos, `clip-bench inprocess` on all cores for \
         the ensemble's photo size; for text, the preprocessing model's compute time per sentence \
         in Triton's statistics during the ensemble run (one thread per request). \
         **Preprocessing share**: the preprocessing model's compute time over the sum of both \
         steps' compute time during the ensemble run (Triton's statistics).\n"
    )?;
    writeln!(
        w,
        "| tower | encoder alone (batch → items/s) | best batch | ensemble items/s | of the limit | target | \
         preprocessing CPU per item | combined limit | of the combined limit | preprocessing share | target |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    )?;
    let ok = |met: bool| match (smoke, met) {
        (true, _) => "",
        (false, true) => "met",
        (false, false) => "**missed**",
    };
    for (tower, ensemble, pre, enc) in [
        (
            "image",
            model::IMAGE_ENSEMBLE,
            model::IMAGE_PREPROCESS,
            model::IMAGE_ENCODER,
        ),
        (
            "text",
            model::TEXT_ENSEMBLE,
            model::TEXT_PREPROCESS,
            model::TEXT_ENCODER,
        ),
    ] {
        let Some(points) = encoder_points(results, tower)? else {
            continue;
        };
        let Some(&(best_batch, best)) = points.iter().max_by(|a, b| a.1.total_cmp(&b.1)) else {
            continue;
        };
        let e2e = best_run(runs, ensemble);
        let at_batch = points
            .iter()
            .find(|p| Some(p.0 as u32) == e2e.map(|e| e.1.batch))
            .map(|p| p.1);
        let fraction = match (e2e, at_batch) {
            (Some((v, _)), Some(limit)) => Some(v / limit),
            _ => None,
        };
        let (pre_spent, enc_spent) = (spent(results, ensemble, pre), spent(results, ensemble, enc));
        let share = match (&pre_spent, &enc_spent) {
            (Some(p), Some(e)) if p.compute_ns + e.compute_ns > 0.0 => {
                Some(p.compute_ns / (p.compute_ns + e.compute_ns))
            }
            _ => None,
        };
        let preprocess_cpu_s = if tower == "image" {
            e2e.and_then(|(_, r)| {
                crate::peers::cpu_per_image(results, r.input.trim_start_matches("image_"))
            })
        } else {
            pre_spent
                .filter(|p| p.elements > 0.0)
                .map(|p| p.compute_ns / 1e9 / p.elements)
        };
        let combined = match (at_batch, preprocess_cpu_s) {
            (Some(r), Some(p)) if cores > 0 => Some(combined_limit(r, p, cores)),
            _ => None,
        };
        let of_combined = match (e2e, combined) {
            (Some((v, _)), Some(c)) => Some(v / c),
            _ => None,
        };
        if let Some(f) = fraction.filter(|_| !smoke) {
            if f < TARGET_FRACTION {
                missed.push(format!(
                    "{tower} ensemble at {:.1}% of the encoder alone (target 90%; {} of the combined limit)",
                    f * 100.0,
                    of_combined.map_or("n/a".into(), |c| format!("{:.1}%", c * 100.0))
                ));
            }
        }
        if let Some(s) = share.filter(|_| !smoke) {
            if s >= TARGET_PREPROCESS_SHARE {
                missed.push(format!(
                    "{tower} preprocessing {:.1}% of end-to-end compute (target under 5%)",
                    s * 100.0
                ));
            }
        }
        writeln!(
            w,
            "| {tower} | {} | {best_batch} ({best:.1}/s) | {} | {} | ≥ 90% {} | {} | {} | {} | {} | < 5% {} |",
            points.iter().map(|(b, v)| format!("{b} → {v:.1}")).collect::<Vec<_>>().join(", "),
            e2e.map_or("n/a".into(), |(v, r)| format!(
                "{v:.1} (batch {}, concurrency {}{})",
                r.batch,
                r.concurrency,
                if tower == "image" { format!(", {} photos", r.input.trim_start_matches("image_")) } else { String::new() }
            )),
            percent(fraction),
            fraction.map_or("", |f| ok(f >= TARGET_FRACTION)),
            preprocess_cpu_s.map_or("n/a".into(), |p| format!("{:.2} ms", p * 1e3)),
            combined.map_or("n/a".into(), |c| format!("{c:.1}/s")),
            percent(of_combined),
            share.map_or("n/a".into(), |s| format!("**{:.1}%**", s * 100.0)),
            share.map_or("", |s| ok(s < TARGET_PREPROCESS_SHARE)),
        )?;
    }
    writeln!(w)?;
    pixels(w, results, runs, smoke, missed)
}

/// `clip_image_pixels` against the image encoder alone at the same batch.
fn pixels(
    w: &mut String,
    results: &Path,
    runs: &[Run],
    smoke: bool,
    missed: &mut Vec<String>,
) -> Result<()> {
    let Some((rate, run)) = best_run(runs, model::IMAGE_PIXELS) else {
        return Ok(());
    };
    let limit = encoder_points(results, "image")?.and_then(|points| {
        points
            .iter()
            .find(|p| p.0 == u64::from(run.batch))
            .map(|p| p.1)
    });
    let fraction = limit.filter(|l| *l > 0.0).map(|l| rate / l);
    let verdict = crate::report::judge(
        smoke,
        fraction.map(|f| f >= TARGET_FRACTION),
        || {
            format!(
                "pixel-path ensemble at {} of the encoder alone (target 90%)",
                fraction.map_or("n/a".into(), |f| format!("{:.1}%", f * 100.0))
            )
        },
        missed,
    );
    writeln!(
        w,
        "The pixel path's ensemble, `{}` (UINT8 `[S,S,3]` pixels in, normalisation in the encoder's \
         graph, no preprocessing step), with the run's model, through Triton with perf_analyzer on \
         synthetic pixels (`clip-bench prepare`'s `pixels.json`) at the encoder's best batch:\n",
        model::IMAGE_PIXELS
    )?;
    writeln!(w, "| ensemble items/s | encoder alone at that batch | of the encoder alone | target |\n| --- | --- | --- | --- |")?;
    writeln!(
        w,
        "| {rate:.1} (batch {}, concurrency {}) | {} | {} | ≥ 90% {verdict} |\n",
        run.batch,
        run.concurrency,
        limit.map_or("n/a".into(), |l| format!("{l:.1}/s")),
        percent(fraction),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_combined_limit_adds_preprocessing_spread_over_the_cores() {
        // Encoder 28/s; preprocessing 8.9 ms per image on 2 cores.
        let limit = combined_limit(28.0, 0.0089, 2);
        assert!((limit - 1.0 / (1.0 / 28.0 + 0.00445)).abs() < 1e-9);
        assert!(limit < 28.0 && limit > 24.0);
        // Free preprocessing leaves the encoder's limit.
        assert_eq!(combined_limit(28.0, 0.0, 2), 28.0);
    }
}
