//! The run as a Markdown section: what was sent, what came back, latency
//! per time window, and the server's memory, threads and descriptors.

use std::fmt::Write as _;

use crate::check::Tally;
use crate::inputs::{BadKind, Inputs, Mix};
use crate::monitor::{rss_slope_mib_per_hour, Sample};

/// RSS growth after warm-up is flagged above this many MiB per hour and
/// this fraction of the mean RSS per hour, both.
const FLAG_MIB_PER_HOUR: f64 = 8.0;
const FLAG_FRACTION_PER_HOUR: f64 = 0.05;
/// A slope over less than this much load after warm-up is not judged.
const MIN_JUDGED_SECONDS: f64 = 300.0;

pub struct Run<'a> {
    pub command: String,
    pub note: Option<String>,
    pub revision: Option<String>,
    pub start_epoch: f64,
    pub machine: String,
    pub loadavg_start: String,
    pub loadavg_end: String,
    pub server: String,
    pub model: String,
    pub clients: String,
    /// The load as planned (`--minutes`), and as it ran (to the last answer).
    pub planned_seconds: f64,
    pub load_seconds: f64,
    pub window_seconds: f64,
    pub warmup_seconds: f64,
    pub sample_seconds: f64,
    pub inputs: &'a Inputs,
    pub mix: &'a Mix,
    pub skipped: Vec<BadKind>,
    pub skip_reason: Option<String>,
    pub tolerance: f64,
    pub expected_seconds: f64,
    /// Closest pair of different good inputs, per modality.
    pub separation: Vec<(String, f64)>,
    /// (client group, what it saw).
    pub tallies: Vec<(String, Tally)>,
    pub samples: Vec<Sample>,
    pub idle_after: Option<Sample>,
    pub server_alive: bool,
    pub log: LogSummary,
}

#[derive(Default)]
pub struct LogSummary {
    pub lines: usize,
    pub errors: usize,
    pub warnings: usize,
    pub examples: Vec<String>,
    /// Error lines logged before the load started (start-up), of `errors`.
    pub errors_before_load: usize,
}

impl LogSummary {
    /// Triton's log lines start with a severity letter and the date: E1201, W1201.
    /// `load_offset`: the log's length in bytes when the load started.
    pub fn read(text: &str, load_offset: usize) -> LogSummary {
        let mut summary = LogSummary::default();
        let mut offset = 0;
        let severity = |line: &str, letter: char| {
            line.starts_with(letter) && line[1..].chars().take(4).all(|c| c.is_ascii_digit())
        };
        for line in text.lines() {
            summary.lines += 1;
            let before_load = offset < load_offset;
            offset += line.len() + 1;
            if severity(line, 'E') || line.contains("panicked") {
                summary.errors += 1;
                summary.errors_before_load += usize::from(before_load);
                let message = line.split_once("] ").map_or(line, |(_, m)| m);
                let message: String = message.chars().take(160).collect();
                if summary.examples.len() < 5 && !summary.examples.contains(&message) {
                    summary.examples.push(message);
                }
            } else if severity(line, 'W') {
                summary.warnings += 1;
            }
        }
        summary
    }
}

/// `YYYY-MM-DD HH:MM UTC` of a Unix time.
pub fn utc(epoch: f64) -> String {
    let secs = epoch as i64;
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        rest / 3600,
        rest % 3600 / 60
    )
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn sorted(values: impl Iterator<Item = f64>) -> Vec<f64> {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    v
}

fn ms(v: f64) -> String {
    if v.is_nan() {
        "-".into()
    } else if v < 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    }
}

fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

fn clock(t: f64) -> String {
    let t = t.max(0.0) as u64;
    format!("{}:{:02}", t / 60, t % 60)
}

impl Run<'_> {
    pub fn wrong(&self) -> u64 {
        self.tallies.iter().map(|(_, t)| t.wrong).sum()
    }

    pub fn passed(&self) -> bool {
        self.wrong() == 0 && self.server_alive
    }

    /// RSS slope after warm-up in MiB/h, the mean RSS then, and whether it is flagged.
    pub fn rss_growth(&self) -> Option<(f64, f64, bool)> {
        if self.load_seconds - self.warmup_seconds < MIN_JUDGED_SECONDS {
            return None;
        }
        let after: Vec<Sample> = self
            .samples
            .iter()
            .copied()
            .filter(|s| s.t >= self.warmup_seconds && s.t <= self.load_seconds + 1.0)
            .collect();
        let slope = rss_slope_mib_per_hour(&after)?;
        let mean =
            after.iter().map(|s| s.rss_kib as f64 / 1024.0).sum::<f64>() / after.len() as f64;
        let flagged = slope > FLAG_MIB_PER_HOUR && slope > FLAG_FRACTION_PER_HOUR * mean;
        Some((slope, mean, flagged))
    }

    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let minutes = self.planned_seconds / 60.0;
        let total = self.total();
        let _ = writeln!(
            out,
            "## Soak: {minutes:.0} minute{} of mixed load on the real tritonserver\n",
            if (minutes - 1.0).abs() < 0.05 {
                ""
            } else {
                "s"
            }
        );
        let _ = writeln!(
            out,
            "Generated by `scripts/soak.sh` (driver: the `clip-soak` crate, `soak/`; Python client: \
             `scripts/soak/tritonclient_soak.py`). Do not edit by hand; run it again.\n"
        );
        let _ = writeln!(out, "| | |\n| --- | --- |");
        let _ = writeln!(out, "| command | `{}` |", self.command);
        if let Some(revision) = &self.revision {
            let _ = writeln!(out, "| revision | {revision} |");
        }
        let _ = writeln!(
            out,
            "| date | {}, {:.1} minutes of load |",
            utc(self.start_epoch),
            self.load_seconds / 60.0
        );
        let mut machine = self.machine.clone();
        if let Some(note) = &self.note {
            let _ = write!(machine, "; {note}");
        }
        let _ = writeln!(
            out,
            "| machine | {machine}; load average (1, 5, 15 min) {} at the start, {} at the end |",
            self.loadavg_start, self.loadavg_end
        );
        let _ = writeln!(out, "| server | {} |", self.server);
        let _ = writeln!(out, "| model | {} |", self.model);
        let _ = writeln!(
            out,
            "| limits | `max_image_bytes` {}, `max_text_bytes` {} (set low in the generated configs, so oversized elements are cheap to send) |",
            self.inputs.limits.max_image_bytes, self.inputs.limits.max_text_bytes
        );
        let _ = writeln!(out, "| clients | {} |", self.clients);
        let verdict = if self.passed() {
            "**PASS**: 0 wrong results, no response missing".to_owned()
        } else if !self.server_alive {
            format!("**FAIL**: the server died; {} wrong results", self.wrong())
        } else {
            format!("**FAIL**: {} wrong results (see below)", self.wrong())
        };
        let _ = writeln!(out, "| result | {verdict} |");
        let growth = match self.rss_growth() {
            Some((slope, _, true)) => {
                format!("**flagged**: RSS grew {slope:+.1} MiB/h after warm-up")
            }
            Some((slope, _, false)) => {
                format!("none flagged (RSS slope after warm-up {slope:+.1} MiB/h)")
            }
            None => format!(
                "not judged: under {:.0} minutes of load after warm-up",
                MIN_JUDGED_SECONDS / 60.0
            ),
        };
        let _ = writeln!(out, "| memory growth | {growth} |\n");

        self.inputs_section(&mut out);
        self.results_section(&mut out, &total);
        self.wrong_section(&mut out, &total);
        self.windows_section(&mut out, &total);
        self.resources_section(&mut out);
        out
    }

    fn total(&self) -> Tally {
        let mut total = Tally::default();
        for (_, t) in &self.tallies {
            total.merge(t.clone());
        }
        total
    }

    fn inputs_section(&self, out: &mut String) {
        let inputs = self.inputs;
        let _ = writeln!(out, "### Inputs\n");
        let _ = writeln!(
            out,
            "- Good: {} distinct sentences (one exactly `max_text_bytes` long; a tenth not ASCII), and photos \
             (scripts/bench/photos.py: JPEG quality 90, camera-like bytes per pixel) of every size:",
            inputs.text_goods.len()
        );
        for class in &inputs.image_classes {
            let sizes: Vec<usize> = class
                .goods
                .iter()
                .map(|&g| inputs.goods[g].bytes.len())
                .collect();
            let mean = sizes.iter().sum::<usize>() as f64 / sizes.len().max(1) as f64;
            let _ = writeln!(
                out,
                "  {}: {} photos, {:.0} KB each on average, {:.0}% of good image elements{}.",
                class.name,
                class.goods.len(),
                mean / 1000.0,
                class.weight * 100.0,
                if class.heavy {
                    ", at most one per request"
                } else {
                    ""
                }
            );
        }
        let separation: Vec<String> = self
            .separation
            .iter()
            .map(|(m, d)| format!("{m} {d:.2}"))
            .collect();
        let _ = writeln!(
            out,
            "- Each good element's expected embedding came from one request of it alone, on the idle \
             server, before the load ({:.1} s). A row passes within {:.0e} of it (max |a - b| over the \
             expected vector's L2 norm); the closest two different inputs are {} apart, so a row of \
             another input cannot pass.",
            self.expected_seconds,
            self.tolerance,
            separation.join(", ")
        );
        let mix = self.mix;
        let _ = writeln!(
            out,
            "- Mix: {:.0}% of requests to the text ensemble with {:?} sentences (drawn uniformly), each bad \
             with chance {:.0}%; the rest to the image ensemble with {:?} photos, each bad with chance {:.0}%. \
             Bad elements of every kind land in random positions, alone and together.",
            mix.text_share * 100.0,
            mix.text_sizes,
            mix.text_bad * 100.0,
            mix.image_sizes,
            mix.image_bad * 100.0
        );
        if !self.skipped.is_empty() {
            let names: Vec<&str> = self.skipped.iter().map(|k| k.name()).collect();
            let reason = self
                .skip_reason
                .as_ref()
                .map_or(String::new(), |r| format!(": {r}"));
            let _ = writeln!(
                out,
                "- Left out of this run (`--skip-bad`): {}{reason}.",
                names.join(", ")
            );
        }
        let _ = writeln!(out);
    }

    fn results_section(&self, out: &mut String, total: &Tally) {
        let _ = writeln!(out, "### Results\n");
        let _ = writeln!(
            out,
            "A request holding a bad element must fail with `INVALID_ARG`, naming the first element over \
             a size limit (checked before anything is decoded), else its first bad element, with that \
             element's reason. Any other request must return one row per element, each its own element's \
             embedding, and its response id must be the request's. The library clients call \
             `Client::encode`, which splits refused requests until each bad item is alone: every item is \
             checked on its own. No retries anywhere; a missing response or any other error is wrong.\n"
        );
        let _ = writeln!(
            out,
            "| clients | requests | elements (good + bad) | answered as expected | wrong | p50 ms | p99 ms | requests/s |"
        );
        let _ = writeln!(
            out,
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
        );
        let row = |out: &mut String, name: &str, t: &Tally| {
            let lat = sorted(t.latencies.iter().map(|l| l.1));
            let _ = writeln!(
                out,
                "| {name} | {} | {} ({} + {}) | {} | {} | {} | {} | {:.1} |",
                t.requests,
                t.elements,
                t.good_elements,
                t.bad_elements,
                t.succeeded + t.refused_as_expected,
                t.wrong,
                ms(percentile(&lat, 0.5)),
                ms(percentile(&lat, 0.99)),
                t.requests as f64 / self.load_seconds.max(1e-9)
            );
        };
        for (name, tally) in &self.tallies {
            row(out, name, tally);
        }
        row(out, "**all**", total);
        let deviation = if total.max_deviation == 0.0 {
            "0: every passing row was bit-identical to its element's embedding from a request of it alone"
                .to_owned()
        } else {
            format!("{:.1e}", total.max_deviation)
        };
        let _ = writeln!(
            out,
            "\nLibrary rows count `encode` calls as requests and items as answers; their latency is the \
             whole call. Largest deviation of a passing row: {deviation}.\n"
        );
        let _ = writeln!(out, "Errors by kind (bad elements sent, and refusals that named an element of that kind with its reason):\n");
        let _ = writeln!(
            out,
            "| kind | element, and the refusal it must get | sent | refused as expected |"
        );
        let _ = writeln!(out, "| --- | --- | ---: | ---: |");
        for (kind, _) in &self.inputs.bad_kinds {
            let name = kind.name();
            let _ = writeln!(
                out,
                "| {name} | {} | {} | {} |",
                kind.describe(),
                total.bad_sent.get(name).copied().unwrap_or(0),
                total.refused_naming.get(name).copied().unwrap_or(0)
            );
        }
        let _ = writeln!(
            out,
            "\nA request's refusal names one element; its other bad elements count as sent, not as refused.\n"
        );
    }

    fn wrong_section(&self, out: &mut String, total: &Tally) {
        if total.wrong == 0 {
            return;
        }
        let _ = writeln!(out, "### Wrong results\n");
        let _ = writeln!(out, "| what | count | first at | first example |");
        let _ = writeln!(out, "| --- | ---: | ---: | --- |");
        let mut groups: Vec<_> = total.wrong_groups.iter().collect();
        groups.sort_by_key(|g| std::cmp::Reverse(g.1.count));
        for (what, group) in groups {
            let example: String = group.example.chars().take(300).collect();
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                what.replace('|', "\\|"),
                group.count,
                clock(group.first_t),
                example.replace('|', "\\|").replace('\n', " ")
            );
        }
        let _ = writeln!(out);
    }

    fn windows_section(&self, out: &mut String, total: &Tally) {
        let window = self.window_seconds;
        let count = (self.planned_seconds / window).ceil().max(1.0) as usize;
        let _ = writeln!(
            out,
            "### Latency per {}-second window\n\nEvery client's requests (library: calls) by the window they started in; \
             RSS and threads of the server at the window's last sample.\n",
            window
        );
        let _ = writeln!(
            out,
            "| window | requests | requests/s | p50 ms | p99 ms | max ms | text p50 / p99 | image p50 / p99 | RSS MiB | threads |"
        );
        let _ = writeln!(
            out,
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
        );
        for w in 0..count {
            let from = w as f64 * window;
            // The last window also holds requests sent just as the load ended.
            let to = if w + 1 == count {
                f64::INFINITY
            } else {
                (w + 1) as f64 * window
            };
            let in_window = || {
                total
                    .latencies
                    .iter()
                    .filter(move |l| l.0 >= from && l.0 < to)
            };
            let all = sorted(in_window().map(|l| l.1));
            let text = sorted(in_window().filter(|l| l.2 == 0).map(|l| l.1));
            let image = sorted(in_window().filter(|l| l.2 == 1).map(|l| l.1));
            let end = to.min(self.load_seconds);
            let span = (end - from).max(1e-9);
            let last = self
                .samples
                .iter()
                .rfind(|s| s.t >= from && s.t < to.min(self.load_seconds + 1.0));
            let _ = writeln!(
                out,
                "| {}-{} | {} | {:.1} | {} | {} | {} | {} / {} | {} / {} | {} | {} |",
                clock(from),
                clock(end),
                all.len(),
                all.len() as f64 / span,
                ms(percentile(&all, 0.5)),
                ms(percentile(&all, 0.99)),
                ms(all.last().copied().unwrap_or(f64::NAN)),
                ms(percentile(&text, 0.5)),
                ms(percentile(&text, 0.99)),
                ms(percentile(&image, 0.5)),
                ms(percentile(&image, 0.99)),
                last.map_or("-".into(), |s| mib(s.rss_kib)),
                last.map_or("-".into(), |s| s.threads.to_string()),
            );
        }
        let _ = writeln!(out);
    }

    fn resources_section(&self, out: &mut String) {
        let _ = writeln!(out, "### Server memory, threads and file descriptors\n");
        let Some(first) = self.samples.first() else {
            let _ = writeln!(
                out,
                "No samples: the server could not be read from /proc.\n"
            );
            return;
        };
        let during: Vec<&Sample> = self
            .samples
            .iter()
            .filter(|s| s.t <= self.load_seconds + 1.0)
            .collect();
        let last = during.last().copied().unwrap_or(first);
        let max = during.iter().map(|s| s.rss_kib).max().unwrap_or(0);
        let warm = self.samples.iter().find(|s| s.t >= self.warmup_seconds);
        let _ = writeln!(
            out,
            "Read from /proc/PID/status and /proc/PID/fd every {} s ({} samples).\n",
            self.sample_seconds,
            self.samples.len()
        );
        let _ = writeln!(
            out,
            "| | RSS MiB | threads | open fds |\n| --- | ---: | ---: | ---: |"
        );
        let row = |out: &mut String, what: String, s: &Sample| {
            let _ = writeln!(
                out,
                "| {what} | {} | {} | {} |",
                mib(s.rss_kib),
                s.threads,
                s.fds
            );
        };
        row(out, "before the load".into(), first);
        if let Some(warm) = warm {
            row(out, format!("after warm-up ({})", clock(warm.t)), warm);
        }
        row(out, format!("end of the load ({})", clock(last.t)), last);
        if let Some(idle) = &self.idle_after {
            row(out, "after 5 s idle".into(), idle);
        }
        let max_threads = during.iter().map(|s| s.threads).max().unwrap_or(0);
        let max_fds = during.iter().map(|s| s.fds).max().unwrap_or(0);
        let _ = writeln!(
            out,
            "| largest during the load | {} | {max_threads} | {max_fds} |\n",
            mib(max)
        );
        match self.rss_growth() {
            Some((slope, mean, flagged)) => {
                let _ = writeln!(
                    out,
                    "RSS slope after the {} warm-up (least squares over the samples to the end of the load): \
                     **{slope:+.1} MiB/h** against a mean of {mean:.1} MiB. {}\n",
                    clock(self.warmup_seconds),
                    if flagged {
                        format!(
                            "**Flagged as growth** (over {FLAG_MIB_PER_HOUR} MiB/h and over {:.0}% of the mean per hour).",
                            FLAG_FRACTION_PER_HOUR * 100.0
                        )
                    } else {
                        format!(
                            "Not flagged (the flag needs over {FLAG_MIB_PER_HOUR} MiB/h and over {:.0}% of the mean per hour).",
                            FLAG_FRACTION_PER_HOUR * 100.0
                        )
                    }
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "Growth is not judged on under {:.0} minutes of load after the {} warm-up.\n",
                    MIN_JUDGED_SECONDS / 60.0,
                    clock(self.warmup_seconds)
                );
            }
        }
        let log = &self.log;
        let _ = writeln!(
            out,
            "Server {} at the end. Its log: {} lines, {} errors ({} of them at start-up, before the load), {} warnings.",
            if self.server_alive {
                "alive and ready"
            } else {
                "**not alive**"
            },
            log.lines,
            log.errors,
            log.errors_before_load,
            log.warnings
        );
        for example in &log.examples {
            let _ = writeln!(out, "- `{}`", example.replace('`', "'"));
        }
        let _ = writeln!(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0.0), "1970-01-01 00:00 UTC");
        assert_eq!(utc(1_764_612_000.0), "2025-12-01 18:00 UTC");
        assert_eq!(utc(951_782_400.0), "2000-02-29 00:00 UTC");
    }

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), 50.0);
        assert_eq!(percentile(&v, 0.99), 99.0);
        assert_eq!(percentile(&[7.0], 0.99), 7.0);
    }

    #[test]
    fn triton_log_severities() {
        let log = "I1201 10:00:00.1 1 server.cc:1] started\nE1201 10:00:01.2 1 model.cc:2] boom\nW1201 x] careful\nEnd of story";
        let s = LogSummary::read(log, 0);
        assert_eq!((s.lines, s.errors, s.warnings), (4, 1, 1));
        assert_eq!(s.errors_before_load, 0);
        assert_eq!(LogSummary::read(log, log.len()).errors_before_load, 1);
        assert_eq!(s.examples, ["boom"]);
    }
}
