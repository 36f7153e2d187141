//! The report's index section, from `index.txt` (scripts/bench/index.sh:
//! clip-index's bench example beside faiss's HNSW on the same vectors).
//! The lines are read by their words ("appended ... in X s", "recall@10 R,
//! p50 P ms"), so that reworded or added lines do not break the report; a
//! figure not found is shown as n/a and its target as missed, and the raw
//! output follows the table.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;

use crate::report::judge;

const TARGET_APPENDS: f64 = 3000.0;
const TARGET_BUILD_RATIO: f64 = 1.5;
const TARGET_RECALL: f64 = 0.95;
const TARGET_P50_MS: f64 = 2.0;

/// The number right after `key` in `line`, if any.
fn number_after(line: &str, key: &str) -> Option<f64> {
    let rest = line[line.find(key)? + key.len()..].trim_start();
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// The number right before `key` in `line`, if any.
fn number_before(line: &str, key: &str) -> Option<f64> {
    line[..line.find(key)?]
        .split_whitespace()
        .last()?
        .parse()
        .ok()
}

/// One search setting: recall@10 and p50 latency (ms).
#[derive(Debug, PartialEq, Clone, Copy)]
struct Search {
    ef: f64,
    recall: f64,
    p50_ms: f64,
}

#[derive(Debug, Default, PartialEq)]
struct Index {
    faiss_build_s: Option<f64>,
    ours_build_s: Option<f64>,
    appends_per_second: Option<f64>,
    ours: Vec<Search>,
    faiss: Vec<Search>,
}

fn parse(text: &str) -> Index {
    let mut index = Index::default();
    for line in text.lines() {
        if line.contains("faiss") && line.contains(" built ") {
            index.faiss_build_s = number_after(line, " in ");
        } else if line.trim_start().starts_with("appended") {
            index.ours_build_s = number_after(line, " in ");
            index.appends_per_second = number_before(line, " appends/s");
        }
        let search = |ef_key: &str| {
            Some(Search {
                ef: number_after(line, ef_key)?,
                recall: number_after(line, "recall@10")?,
                p50_ms: number_after(line, "p50")?,
            })
        };
        if let Some(s) = search("ef_search") {
            index.ours.push(s);
        } else if let Some(s) = search("efSearch") {
            index.faiss.push(s);
        }
    }
    index
}

/// The best recall within the latency target.
fn best_within(searches: &[Search]) -> Option<Search> {
    searches
        .iter()
        .copied()
        .filter(|s| s.p50_ms <= TARGET_P50_MS)
        .max_by(|a, b| a.recall.total_cmp(&b.recall))
}

/// Writes the section, saying so when the run did not measure the index.
pub fn section(
    w: &mut String,
    results: &Path,
    smoke: bool,
    missed: &mut Vec<String>,
) -> Result<()> {
    let Some(text) = crate::report::section_input(
        w,
        "Index: clip-index against faiss HNSW",
        results,
        "index.txt",
    )?
    else {
        return Ok(());
    };
    let items = std::fs::read_to_string(results.join("index_items")).unwrap_or_default();
    let index = parse(&text);
    writeln!(
        w,
        "{} clustered 512-d unit vectors, appended in batches of 1000 to clip-index and added to \
         faiss-cpu's `IndexHNSWFlat` (M 16, efConstruction 40, inner product, 2 threads); search \
         with one thread, recall@10 against faiss's exact `IndexFlatIP` (`scripts/bench/index.sh`, \
         `crates/clip-index/examples/bench.rs`, `scripts/bench/index_faiss.py`).\n",
        items.trim()
    )?;
    let build_ratio = match (index.ours_build_s, index.faiss_build_s) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    };
    let best = best_within(&index.ours);
    let appends = index.appends_per_second;
    let v_appends = judge(
        smoke,
        appends.map(|a| a >= TARGET_APPENDS),
        || {
            format!(
                "index: {:.0} appends/s (target {TARGET_APPENDS})",
                appends.unwrap_or(0.0)
            )
        },
        missed,
    );
    let v_build = judge(
        smoke,
        build_ratio.map(|r| r <= TARGET_BUILD_RATIO),
        || {
            format!(
                "index build {:.2}x faiss's time (target ≤ {TARGET_BUILD_RATIO}x)",
                build_ratio.unwrap_or(0.0)
            )
        },
        missed,
    );
    let v_recall = judge(
        smoke,
        best.map(|s| s.recall >= TARGET_RECALL),
        || {
            format!(
                "index recall@10 {:.3} at p50 ≤ {TARGET_P50_MS} ms (target {TARGET_RECALL})",
                best.map_or(0.0, |s| s.recall)
            )
        },
        missed,
    );
    let opt = |v: Option<f64>, unit: &str| v.map_or("n/a".into(), |v| format!("{v:.1}{unit}"));
    writeln!(
        w,
        "| measure | clip-index | faiss HNSW | target | |\n| --- | --- | --- | --- | --- |"
    )?;
    writeln!(
        w,
        "| appends/s | {} | | ≥ {TARGET_APPENDS} | {v_appends} |",
        opt(appends, "")
    )?;
    writeln!(
        w,
        "| build time | {} | {} | ≤ {TARGET_BUILD_RATIO}x faiss ({}) | {v_build} |",
        opt(index.ours_build_s, " s"),
        opt(index.faiss_build_s, " s"),
        build_ratio.map_or("n/a".into(), |r| format!("**{r:.2}x**")),
    )?;
    let at = |s: Option<Search>| {
        s.map_or("n/a".into(), |s| {
            format!("{:.3} (ef {}, p50 {:.3} ms)", s.recall, s.ef, s.p50_ms)
        })
    };
    writeln!(
        w,
        "| best recall@10 at p50 ≤ {TARGET_P50_MS} ms | {} | {} | ≥ {TARGET_RECALL} | {v_recall} |\n",
        at(best),
        at(best_within(&index.faiss)),
    )?;
    writeln!(
        w,
        "<details><summary>index.sh's output</summary>\n\n```\n{}\n```\n</details>\n",
        text.trim()
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUTPUT: &str = "wrote 2000 vectors
faiss 1.15.1 IndexHNSWFlat(M=16, efConstruction=40), 2 threads: built 2000 items in 0.4 s (0.8 CPU-s): 5000 adds/s, 2500 per CPU-second
search, one thread, 100 queries, limit 10:
  efSearch  16: recall@10 0.900, p50 0.050 ms, p99 0.100 ms
  efSearch  64: recall@10 0.990, p50 0.120 ms, p99 0.300 ms
appending 2000 items in batches of 1000 (over each window):
appended 2000 items in 0.5 s (0.9 CPU-s): 4000 appends/s, 2222 per CPU-second
  ef_search  16: recall@10 0.910, p50 0.040 ms, p99 0.090 ms
  ef_search 512: recall@10 0.999, p50 2.500 ms, p99 3.000 ms
  ef_search  64: recall@10 0.980, p50 0.110 ms, p99 0.200 ms
";

    #[test]
    fn figures_are_found_by_their_words() {
        let index = parse(OUTPUT);
        assert_eq!(index.faiss_build_s, Some(0.4));
        assert_eq!(index.ours_build_s, Some(0.5));
        assert_eq!(index.appends_per_second, Some(4000.0));
        assert_eq!(index.ours.len(), 3);
        assert_eq!(index.faiss.len(), 2);
        // ef 512 is the most recall but over the latency target.
        assert_eq!(best_within(&index.ours).map(|s| s.ef), Some(64.0));
    }

    #[test]
    fn missing_figures_are_missed_targets_not_errors() {
        let (w, missed) =
            crate::render_tests::render_alone(section, "index.txt", "something else entirely\n");
        assert_eq!(missed.len(), 3, "{missed:?}");
        assert!(w.contains("n/a"));
    }
}
