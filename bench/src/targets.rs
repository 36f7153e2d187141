//! The targets for image preprocessing against its best peers,
//! judged per photo size: in Triton against Python + draft(), in process
//! against the decode-only floor and DALI, and in Triton against our own
//! in-process rate per CPU-second (perf_analyzer shares the cores with the
//! server, so the server's own CPU time is the fair measure there).

use std::fmt::Write as _;

use anyhow::Result;

use crate::peers::ratio;
use crate::report::label;

const OVER_PYTHON_DRAFT: f64 = 1.5;
const OF_FLOOR: f64 = 0.90;
const OVER_DALI: f64 = 2.5;
const TRITON_OF_IN_PROCESS_PER_CPU: f64 = 0.85;

/// In-process images/s: photo size, all cores, peer (None: ours; "dali"; "floor").
type InProcessRate<'a> = &'a dyn Fn(&str, bool, Option<&str>) -> Option<f64>;

/// Where the judged figures come from (images per second or per CPU-second).
pub struct Rates<'a> {
    /// Best perf_analyzer images/s of an implementation for a photo size.
    pub triton: &'a dyn Fn(&str, &str) -> Option<f64>,
    pub in_process: InProcessRate<'a>,
    /// Ours in process, images per CPU-second (all cores).
    pub in_process_per_cpu_second: &'a dyn Fn(&str) -> Option<f64>,
    /// The clip model's best perf_analyzer run, images per server CPU-second.
    pub triton_per_cpu_second: &'a dyn Fn(&str) -> Option<f64>,
}

/// Writes the table of the targets against the best peers.
pub fn in_triton(
    w: &mut String,
    images: &[&String],
    rates: &Rates,
    smoke: bool,
    missed: &mut Vec<String>,
) -> Result<()> {
    writeln!(
        w,
        "Targets against the best peers, per photo size. Per CPU-second: in Triton, the clip model's \
         images over the tritonserver process's own CPU seconds (`/proc/PID/stat`) during its \
         best-throughput perf_analyzer run; in process, images over the process's CPU seconds on \
         all cores.\n"
    )?;
    writeln!(
        w,
        "| photos | target | measured | |\n| --- | --- | --- | --- |"
    )?;
    for input in images {
        let ours = |all: bool| (rates.in_process)(input, all, None);
        let checks = [
            (
                format!("clip in Triton ≥ {OVER_PYTHON_DRAFT}x python + draft"),
                ratio(
                    (rates.triton)(input, "clip"),
                    (rates.triton)(input, "python_draft"),
                ),
                OVER_PYTHON_DRAFT,
            ),
            (
                format!(
                    "in process ≥ {:.0}% of the floor, one thread",
                    OF_FLOOR * 100.0
                ),
                ratio(ours(false), (rates.in_process)(input, false, Some("floor"))),
                OF_FLOOR,
            ),
            (
                format!(
                    "in process ≥ {:.0}% of the floor, all cores",
                    OF_FLOOR * 100.0
                ),
                ratio(ours(true), (rates.in_process)(input, true, Some("floor"))),
                OF_FLOOR,
            ),
            (
                format!("in process ≥ {OVER_DALI}x DALI, one thread"),
                ratio(ours(false), (rates.in_process)(input, false, Some("dali"))),
                OVER_DALI,
            ),
            (
                format!("in process ≥ {OVER_DALI}x DALI, all cores"),
                ratio(ours(true), (rates.in_process)(input, true, Some("dali"))),
                OVER_DALI,
            ),
            (
                format!(
                    "in Triton ≥ {:.0}% of in process, images per CPU-second",
                    TRITON_OF_IN_PROCESS_PER_CPU * 100.0
                ),
                ratio(
                    (rates.triton_per_cpu_second)(input),
                    (rates.in_process_per_cpu_second)(input),
                ),
                TRITON_OF_IN_PROCESS_PER_CPU,
            ),
        ];
        for (i, (target, measured, bound)) in checks.iter().enumerate() {
            let verdict = match measured {
                _ if smoke => "",
                Some(m) if *m >= *bound => "met",
                Some(m) => {
                    missed.push(format!("{}: {target} ({m:.2}x)", label(input)));
                    "**missed**"
                }
                // DALI is left out of some runs (see above): nothing to judge.
                None => "not measured",
            };
            writeln!(
                w,
                "| {} | {target} | {} | {verdict} |",
                if i == 0 { label(input) } else { String::new() },
                measured.map_or("n/a".into(), |m| format!("**{m:.2}x**")),
            )?;
        }
    }
    writeln!(w)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_target_is_judged_and_a_miss_is_listed() {
        let size = "2mp".to_owned();
        let rates = Rates {
            triton: &|_, implementation| {
                Some(if implementation == "clip" {
                    120.0
                } else {
                    60.0
                })
            },
            in_process: &|_, _, peer| match peer {
                None => Some(100.0),
                Some("dali") => Some(50.0),
                Some(_) => Some(105.0),
            },
            in_process_per_cpu_second: &|_| Some(110.0),
            triton_per_cpu_second: &|_| Some(99.0),
        };
        let (mut w, mut missed) = (String::new(), Vec::new());
        in_triton(&mut w, &[&size], &rates, false, &mut missed).unwrap();
        assert!(w.contains("**2.00x** | met"), "{w}");
        assert!(w.contains("**0.95x** | met"), "{w}");
        assert!(w.contains("**0.90x** | met"), "{w}");
        // DALI at 2x misses 2.5x, on one thread and on all cores.
        assert_eq!(missed.len(), 2, "{missed:?}");
        assert!(missed[0].contains("DALI"));
    }
}
