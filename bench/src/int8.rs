//! The report's int8 section, from `int8.md` (scripts/bench/int8.sh, whose
//! tables clip-export's `throughput` example prints): fp32 and int8 encoders
//! as repo-gen writes them, and ONNX Runtime's quantize_dynamic as the peer.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::report::judge;

const TARGET_SPEEDUP: f64 = 1.8;
const TARGET_COSINE: f64 = 0.99;
/// The peer's label in int8.sh.
const PEER: &str = "ort-quantize_dynamic";

/// One tower's measurements.
#[derive(Debug, Default, PartialEq)]
struct Tower {
    /// Model label → (batch, items/s).
    rates: BTreeMap<String, Vec<(u32, f64)>>,
    /// Model label → (min, mean) cosine to fp32's embeddings.
    cosines: BTreeMap<String, (f64, f64)>,
}

impl Tower {
    /// The best items/s of a model and the batch it came at.
    fn best(&self, model: &str) -> Option<(u32, f64)> {
        self.rates
            .get(model)?
            .iter()
            .copied()
            .max_by(|a, b| a.1.total_cmp(&b.1))
    }
}

fn cells(line: &str) -> Vec<&str> {
    line.trim()
        .trim_matches('|')
        .split('|')
        .map(str::trim)
        .collect()
}

/// The towers ("text", "image") of int8.sh's output.
fn parse(text: &str) -> Result<BTreeMap<String, Tower>> {
    let mut towers: BTreeMap<String, Tower> = BTreeMap::new();
    let (mut tower, mut header): (Option<String>, Vec<String>) = (None, Vec::new());
    for (n, line) in text.lines().enumerate() {
        let context = || format!("int8.md line {}: {line:?}", n + 1);
        let line = line.trim();
        if let Some((name, _)) = line
            .split_once(" encoder, items/s")
            .or_else(|| line.split_once(" embeddings against"))
        {
            tower = Some(name.to_owned());
            continue;
        }
        if !line.starts_with('|') || line.starts_with("|---") || line.starts_with("| ---") {
            continue;
        }
        let Some(name) = &tower else {
            bail!("{}: a table before its heading", context());
        };
        let c = cells(line);
        if c[0] == "batch" || c[0] == "model" {
            header = c.iter().skip(1).map(|s| (*s).to_owned()).collect();
            continue;
        }
        let entry = towers.entry(name.clone()).or_default();
        if header.first().is_some_and(|h| h == "min cosine") {
            let [label, min, mean] = c[..] else {
                bail!("{}: expected model, min, mean", context());
            };
            let parse = |v: &str| v.parse::<f64>().with_context(context);
            entry
                .cosines
                .insert(label.to_owned(), (parse(min)?, parse(mean)?));
        } else {
            if c.len() != header.len() + 1 {
                bail!(
                    "{}: {} cells under {} columns",
                    context(),
                    c.len(),
                    header.len() + 1
                );
            }
            let batch: u32 = c[0].parse().with_context(context)?;
            for (model, value) in header.iter().zip(&c[1..]) {
                let rate: f64 = value.parse().with_context(context)?;
                entry
                    .rates
                    .entry(model.clone())
                    .or_default()
                    .push((batch, rate));
            }
        }
    }
    Ok(towers)
}

/// Writes the section, saying so when the run did not measure int8.
pub fn section(
    w: &mut String,
    results: &Path,
    smoke: bool,
    missed: &mut Vec<String>,
) -> Result<()> {
    let Some(text) =
        crate::report::section_input(w, "int8 against fp32 encoders", results, "int8.md")?
    else {
        return Ok(());
    };
    let towers = parse(&text)?;
    let title = text.lines().next().unwrap_or("").trim_start_matches("# ");
    writeln!(
        w,
        "{title}. The encoders as `repo-gen --dtype fp32` and `--dtype int8` write them, and as peer \
         ONNX Runtime's own `quantize_dynamic` (per channel, QInt8 weights) applied to the same fp32 \
         file; each in ONNX Runtime 1.31 with 2 intra-op threads, in process, on the same synthetic \
         inputs (`scripts/bench/int8.sh`, clip-export's `throughput` example). Items/s at each \
         model's best batch; cosine: the lowest over the rows of each model's embeddings against \
         fp32's.\n"
    )?;
    writeln!(
        w,
        "| tower | fp32 items/s | int8 items/s | int8 / fp32 | target | {PEER} items/s | int8 / peer | \
         int8 min cosine | target | peer min cosine |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    )?;
    let best =
        |v: Option<(u32, f64)>| v.map_or("n/a".into(), |(b, r)| format!("{r:.1} (batch {b})"));
    let ratio = |a: Option<(u32, f64)>, b: Option<(u32, f64)>| match (a, b) {
        (Some(a), Some(b)) if b.1 > 0.0 => Some(a.1 / b.1),
        _ => None,
    };
    for (name, tower) in &towers {
        let (fp32, int8, peer) = (tower.best("fp32"), tower.best("int8"), tower.best(PEER));
        let speedup = ratio(int8, fp32);
        let cosine = tower.cosines.get("int8").map(|c| c.0);
        let speed_verdict = judge(
            smoke,
            speedup.map(|s| s >= TARGET_SPEEDUP),
            || {
                format!(
                    "int8 {name} encoder {:.2}x fp32 (target {TARGET_SPEEDUP}x)",
                    speedup.unwrap_or(0.0)
                )
            },
            missed,
        );
        let cosine_verdict = judge(
            smoke,
            cosine.map(|c| c >= TARGET_COSINE),
            || {
                format!(
                    "int8 {name} embeddings' cosine to fp32 {:.4} (target {TARGET_COSINE})",
                    cosine.unwrap_or(0.0)
                )
            },
            missed,
        );
        let times = |r: Option<f64>| r.map_or("n/a".into(), |r| format!("**{r:.2}x**"));
        let cos = |c: Option<f64>| c.map_or("n/a".into(), |c| format!("{c:.4}"));
        writeln!(
            w,
            "| {name} | {} | {} | {} | ≥ {TARGET_SPEEDUP}x {speed_verdict} | {} | {} | {} | ≥ {TARGET_COSINE} {cosine_verdict} | {} |",
            best(fp32),
            best(int8),
            times(speedup),
            best(peer),
            times(ratio(int8, peer)),
            cos(cosine),
            cos(tower.cosines.get(PEER).map(|c| c.0)),
        )?;
    }
    writeln!(w)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUTPUT: &str = "# int8 vs fp32 encoders, ViT-B-32::openai, 2 cores

text encoder, items/s (2 intra-op threads)

| batch | fp32 | int8 | ort-quantize_dynamic |
|---|---|---|---|
| 1 | 10.0 | 15.0 | 12.0 |
| 8 | 20.0 | 40.0 | 30.0 |

text embeddings against fp32 over 8 rows

| model | min cosine | mean cosine |
|---|---|---|
| int8 | 0.99500 | 0.99700 |
| ort-quantize_dynamic | 0.98000 | 0.99000 |
";

    #[test]
    fn tables_are_read_per_tower() {
        let towers = parse(OUTPUT).unwrap();
        let text = &towers["text"];
        assert_eq!(text.best("int8"), Some((8, 40.0)));
        assert_eq!(text.best(PEER), Some((8, 30.0)));
        assert_eq!(text.cosines["int8"], (0.995, 0.997));
        assert!(!towers.contains_key("image"));
    }

    #[test]
    fn a_ragged_row_is_an_error() {
        let bad = OUTPUT.replace("| 8 | 20.0 | 40.0 | 30.0 |", "| 8 | 20.0 |");
        assert!(parse(&bad).unwrap_err().to_string().contains("cells"));
    }

    #[test]
    fn targets_are_judged() {
        let (w, missed) = crate::render_tests::render_alone(section, "int8.md", OUTPUT);
        assert!(w.contains("**2.00x**"), "{w}");
        assert!(missed.is_empty(), "{missed:?}");
    }
}
