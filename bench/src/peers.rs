//! The report's peers section: our image preprocessing against the best
//! ways users have to do the same work, and the chart's ratios.
//!
//! Read from the results folder: perf_analyzer's runs of `python_draft`
//! (through [`Run`]), `inprocess/{clip,floor}.json` (`clip-bench
//! inprocess`), `inprocess/dali.json` and `inprocess/pil_draft.json`
//! (scripts/bench/dali.py; no dali.json when DALI was skipped).

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;
use serde::Deserialize;

use crate::chart::Group;
use crate::report::{best_preprocess, label, Run};

/// The chart's series, in the order of [`Group::ratios`].
pub const SERIES: [&str; 3] = [
    "best Python-backend model, in Triton",
    "DALI CPU pipeline, in process, all cores",
    "libjpeg-turbo decode alone (floor), in process, all cores",
];

#[derive(Deserialize)]
struct InProcess {
    version: Option<String>,
    cores: usize,
    results: Vec<Point>,
}

#[derive(Deserialize)]
struct Point {
    size: String,
    threads: usize,
    images: u64,
    cpu_s: f64,
    images_per_second: f64,
    #[serde(default)]
    scale_denominators: Vec<u32>,
}

#[derive(Deserialize)]
struct PilDraft {
    draft: [u32; 2],
    scales: std::collections::BTreeMap<String, Vec<u32>>,
}

impl InProcess {
    fn read(results: &Path, name: &str) -> Option<Self> {
        let text = std::fs::read_to_string(results.join("inprocess").join(name)).ok()?;
        serde_json::from_str(&text).ok()
    }
    /// One thread, or the most threads measured (all cores).
    fn at(&self, size: &str, all_cores: bool) -> Option<&Point> {
        let points = self.results.iter().filter(|p| p.size == size);
        if all_cores {
            points.max_by_key(|p| p.threads)
        } else {
            points.min_by_key(|p| p.threads).filter(|p| p.threads == 1)
        }
    }
    fn per_second(&self, size: &str, all_cores: bool) -> Option<f64> {
        self.at(size, all_cores).map(|p| p.images_per_second)
    }
}

/// Our in-process preprocessing's CPU seconds per image on all cores, for a photo size.
pub(crate) fn cpu_per_image(results: &Path, size: &str) -> Option<f64> {
    InProcess::read(results, "clip.json")?
        .at(size, true)
        .filter(|p| p.images > 0)
        .map(|p| p.cpu_s / p.images as f64)
}

/// `a / b` when both were measured and `b` is above zero.
pub(crate) fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

fn times(r: Option<f64>) -> String {
    r.map_or("n/a".into(), |r| format!("**{r:.2}x**"))
}

fn rate(v: Option<f64>) -> String {
    v.map_or("n/a".into(), |v| format!("{v:.1}"))
}

fn scales(denominators: &[u32]) -> String {
    let mut d = denominators.to_vec();
    d.sort_unstable();
    d.dedup();
    if d.is_empty() {
        return "n/a".into();
    }
    d.iter()
        .map(|d| {
            if *d == 1 {
                "1".into()
            } else {
                format!("1/{d}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Writes the section; returns the chart's groups (one per input, text too).
pub fn section(
    w: &mut String,
    results: &Path,
    runs: &[Run],
    inputs: &[String],
    smoke: bool,
    missed: &mut Vec<String>,
) -> Result<Vec<Group>> {
    let clip = InProcess::read(results, "clip.json");
    let floor = InProcess::read(results, "floor.json");
    let dali = InProcess::read(results, "dali.json");
    let draft: Option<PilDraft> = std::fs::read_to_string(results.join("inprocess/pil_draft.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());
    let cores = clip.as_ref().map_or(0, |c| c.cores);
    let triton = |input: &str, implementation: &str| {
        best_preprocess(runs, input, implementation).map(|(v, _)| v)
    };
    let images: Vec<&String> = inputs.iter().filter(|i| *i != "text").collect();

    writeln!(w, "## Against the best peers\n")?;
    writeln!(
        w,
        "The plain Python model above is the weakest way to preprocess images; here our image \
         preprocessing meets the better ones, on the same photos in the same run.\n\n\
         - **python + draft**: the same Python-backend model with one line more, PIL's \
         `draft(\"RGB\", ({0}, {0}))` before `convert`, so that libjpeg decodes a large JPEG at a \
         reduced DCT scale (the strongest of 1/2, 1/4, 1/8 keeping both sides at least {0}); \
         measured with perf_analyzer like the other models (batch, concurrency and instances \
         as above, best configuration).\n\
         - **DALI**: NVIDIA DALI{1}'s CPU pipeline in process (`nvidia-dali-cuda120` from PyPI, \
         `device_id=None`): `fn.decoders.image` on the CPU, `fn.resize` of the shorter side with \
         cubic interpolation and antialiasing, `fn.crop_mirror_normalize` with CLIP's mean and std \
         (x255), CHW, batches of 16 (`scripts/bench/dali.py`), with `num_threads=1` and with one \
         thread per core. DALI decodes at full scale.\n\
         - **floor**: libjpeg-turbo decoding each whole photo to RGB at the DCT scale our backend \
         picks for it, and nothing else, in process (`clip-bench inprocess`). Ours decodes only \
         the part the center crop's resize reads (libjpeg-turbo's partial decompression: the \
         columns or rows the crop discards skip the IDCT, upsampling and colour conversion, \
         entropy decoding still runs), so it can come close to the floor or pass it.\n\
         - **clip, in process**: `ImagePreprocessor::preprocess_into` with the `clip` model's \
         options, what the backend runs per image, measured exactly as the floor (one thread, \
         then one thread per core, each going round the photos).\n\n\
         In process, a run is one thread or all {cores} cores; CPU time is the whole process's \
         (a pipeline's helper threads included) over the images it produced. Ratios are ours over \
         the peer's images per second: above 1 ours is faster; against the floor, the share of \
         decode-only speed that the whole preprocessing keeps.\n",
        draft.as_ref().map_or(0, |d| d.draft[0]),
        dali.as_ref()
            .and_then(|d| d.version.as_ref())
            .map_or(String::new(), |v| format!(" {v}")),
    )?;
    if dali.is_none() {
        writeln!(
            w,
            "DALI was not measured in this run (smoke runs skip it: its wheel is over 400 MB).\n"
        )?;
    }

    let in_process = |p: &Option<InProcess>, size: &str| match p {
        Some(p) => format!(
            "{} / {}",
            rate(p.per_second(size, false)),
            rate(p.per_second(size, true))
        ),
        None => "n/a".into(),
    };
    writeln!(
        w,
        "Images per second. In Triton: best configuration. In process: one thread / all cores.\n"
    )?;
    writeln!(
        w,
        "| photos | clip, Triton | python, Triton | python + draft, Triton | clip, in process | \
         DALI, in process | floor, in process |\n| --- | --- | --- | --- | --- | --- | --- |"
    )?;
    for input in &images {
        writeln!(
            w,
            "| {} | {} | {} | {} | {} | {} | {} |",
            label(input),
            rate(triton(input, "clip")),
            rate(triton(input, "python")),
            rate(triton(input, "python_draft")),
            in_process(&clip, input),
            in_process(&dali, input),
            in_process(&floor, input),
        )?;
    }

    let ours = |all: bool, input: &str| clip.as_ref().and_then(|c| c.per_second(input, all));
    let peer = |p: &Option<InProcess>, all: bool, input: &str| {
        p.as_ref().and_then(|p| p.per_second(input, all))
    };
    writeln!(w, "\nRatios, ours over the peer's images per second.\n")?;
    writeln!(
        w,
        "| photos | clip / (python + draft), Triton | clip / DALI, one thread | clip / DALI, all cores \
         | clip / floor, one thread | clip / floor, all cores |\n| --- | --- | --- | --- | --- | --- |"
    )?;
    let mut groups = Vec::new();
    for input in &images {
        writeln!(
            w,
            "| {} | {} | {} | {} | {} | {} |",
            label(input),
            times(ratio(triton(input, "clip"), triton(input, "python_draft"))),
            times(ratio(ours(false, input), peer(&dali, false, input))),
            times(ratio(ours(true, input), peer(&dali, true, input))),
            times(ratio(ours(false, input), peer(&floor, false, input))),
            times(ratio(ours(true, input), peer(&floor, true, input))),
        )?;
        let best_python = [triton(input, "python"), triton(input, "python_draft")]
            .into_iter()
            .flatten()
            .reduce(f64::max);
        groups.push(Group {
            label: label(input),
            ratios: vec![
                ratio(triton(input, "clip"), best_python),
                ratio(ours(true, input), peer(&dali, true, input)),
                ratio(ours(true, input), peer(&floor, true, input)),
            ],
        });
    }
    if inputs.iter().any(|i| i == "text") {
        groups.push(Group {
            label: label("text"),
            ratios: vec![
                ratio(triton("text", "clip"), triton("text", "python")),
                None,
                None,
            ],
        });
    }

    let cpu_ms = |p: &Option<InProcess>, input: &str| {
        p.as_ref()
            .and_then(|p| p.at(input, true))
            .filter(|p| p.images > 0)
            .map_or("n/a".into(), |p| {
                format!("{:.1} ms", p.cpu_s * 1e3 / p.images as f64)
            })
    };
    writeln!(
        w,
        "\nDCT scale of the decode (per photo) and CPU time per image, all cores.\n"
    )?;
    writeln!(
        w,
        "| photos | scale, clip and floor | scale, python + draft | CPU per image, clip | DALI | floor |\n\
         | --- | --- | --- | --- | --- | --- |"
    )?;
    for input in &images {
        let ours_scales = clip
            .as_ref()
            .and_then(|c| c.at(input, true))
            .map_or(String::new(), |p| scales(&p.scale_denominators));
        let draft_scales = draft
            .as_ref()
            .and_then(|d| d.scales.get(input.as_str()))
            .map_or(String::new(), |s| scales(s));
        writeln!(
            w,
            "| {} | {ours_scales} | {draft_scales} | {} | {} | {} |",
            label(input),
            cpu_ms(&clip, input),
            cpu_ms(&dali, input),
            cpu_ms(&floor, input),
        )?;
    }
    writeln!(w)?;
    crate::targets::in_triton(
        w,
        &images,
        &crate::targets::Rates {
            triton: &triton,
            in_process: &|input, all, peer| {
                let source = match peer {
                    Some("dali") => &dali,
                    Some(_) => &floor,
                    None => &clip,
                };
                source.as_ref().and_then(|p| p.per_second(input, all))
            },
            in_process_per_cpu_second: &|input| cpu_per_image(results, input).map(|s| 1.0 / s),
            triton_per_cpu_second: &|input| {
                let (_, run) = best_preprocess(runs, input, "clip")?;
                Some(run.elements? as f64 / run.server_cpu_s.filter(|s| *s > 0.0)?)
            },
        },
        smoke,
        missed,
    )?;
    Ok(groups)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_thread_and_all_cores_are_told_apart() {
        let doc: InProcess = serde_json::from_str(
            r#"{"cores": 2, "results": [
                {"size": "2mp", "threads": 1, "images": 10, "cpu_s": 1.0, "images_per_second": 10.0},
                {"size": "2mp", "threads": 2, "images": 18, "cpu_s": 2.0, "images_per_second": 18.0},
                {"size": "12mp", "threads": 2, "images": 4, "cpu_s": 2.0, "images_per_second": 2.0}
            ]}"#,
        )
        .unwrap();
        assert_eq!(doc.per_second("2mp", false), Some(10.0));
        assert_eq!(doc.per_second("2mp", true), Some(18.0));
        assert_eq!(doc.per_second("12mp", false), None);
        assert_eq!(doc.per_second("0.3mp", true), None);
    }

    #[test]
    fn scales_are_listed_once_each() {
        assert_eq!(scales(&[2, 1, 2, 4]), "1, 1/2, 1/4");
        assert_eq!(scales(&[]), "n/a");
    }
}
