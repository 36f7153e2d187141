//! The report's pixel-path section, from `pixel_path.tsv`
//! (scripts/bench/pixel-path.sh --tsv): per photo, the bytes path
//! (`clip_image`, JPEG in) against the pixel path (`clip_image_pixels`,
//! `clip-client encode --preprocess local`).

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::report::{judge, label};

/// Server CPU per image, bytes path over pixel path, at 2 MP.
const TARGET_AT_2MP: f64 = 20.0;

/// One photo, one path: what a `clip-client encode` run of N copies cost.
#[derive(Debug, PartialEq)]
struct Row {
    photo: String,
    /// `server` (bytes path) or `local` (pixel path).
    path: String,
    images: f64,
    server_cpu_s: f64,
    client_cpu_s: f64,
    wall_s: f64,
    wire_bytes: f64,
}

impl Row {
    fn per_image_ms(&self, seconds: f64) -> f64 {
        seconds * 1e3 / self.images
    }
}

fn parse(text: &str) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    for (n, line) in text.lines().enumerate().skip(1) {
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() != 7 {
            bail!(
                "pixel_path.tsv line {}: {} fields, expected 7",
                n + 1,
                f.len()
            );
        }
        let num = |i: usize| {
            f[i].trim().parse::<f64>().with_context(|| {
                format!("pixel_path.tsv line {}: field {} {:?}", n + 1, i + 1, f[i])
            })
        };
        let row = Row {
            photo: f[0].into(),
            path: f[1].into(),
            images: num(2)?,
            server_cpu_s: num(3)?,
            client_cpu_s: num(4)?,
            wall_s: num(5)?,
            wire_bytes: num(6)?,
        };
        if row.images <= 0.0 || row.wall_s <= 0.0 {
            bail!("pixel_path.tsv line {}: no images or no time", n + 1);
        }
        rows.push(row);
    }
    Ok(rows)
}

/// Writes the section, saying so when the run did not measure the pixel path.
pub fn section(
    w: &mut String,
    results: &Path,
    smoke: bool,
    missed: &mut Vec<String>,
) -> Result<()> {
    let Some(text) = crate::report::section_input(
        w,
        "Pixel path against bytes path",
        results,
        "pixel_path.tsv",
    )?
    else {
        return Ok(());
    };
    let rows = parse(&text)?;
    let images = rows.first().map_or(0.0, |r| r.images);
    writeln!(
        w,
        "`clip-client encode` of {images} copies of one photo of each size, to a server of its own \
         written with `repo-gen --pixel-path` (`scripts/bench/pixel-path.sh`). **bytes**: the JPEG \
         goes to `clip_image`, which decodes and preprocesses it in the server. **pixels**: \
         `--preprocess local`, the client decodes and resizes and sends `[S,S,3]` UINT8 to \
         `clip_image_pixels`. Model: **the tiny CLIP fixture**, whose encoder costs next to \
         nothing, so that the server's CPU is its preprocessing and request handling, as on a GPU \
         server. Server CPU: the tritonserver process's own user + system time (`/proc/PID/stat`) \
         around each run; client CPU: the client process's. Client and server share this \
         machine's cores, so images/s is end to end on one machine.\n"
    )?;
    writeln!(
        w,
        "| photos | path | server CPU per image | client CPU per image | wire per image | images/s | server CPU, bytes / pixels | target |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- |"
    )?;
    for bytes in rows.iter().filter(|r| r.path == "server") {
        let pixels = rows
            .iter()
            .find(|r| r.path == "local" && r.photo == bytes.photo);
        let ratio = pixels
            .filter(|p| p.server_cpu_s > 0.0)
            .map(|p| (bytes.server_cpu_s / bytes.images) / (p.server_cpu_s / p.images));
        let judged = bytes.photo == "2mp";
        let verdict = judge(
            smoke || !judged,
            ratio.map(|r| r >= TARGET_AT_2MP),
            || {
                format!(
                    "pixel path: {} less server CPU per 2 MP image (target {TARGET_AT_2MP}x)",
                    ratio.map_or("n/a".into(), |r| format!("{r:.1}x"))
                )
            },
            missed,
        );
        for (row, name) in [(Some(bytes), "bytes"), (pixels, "pixels")] {
            let Some(row) = row else { continue };
            let first = name == "bytes";
            writeln!(
                w,
                "| {} | {name} | {:.2} ms | {:.2} ms | {:.1} KB | {:.1} | {} | {} |",
                if first {
                    label(&row.photo)
                } else {
                    String::new()
                },
                row.per_image_ms(row.server_cpu_s),
                row.per_image_ms(row.client_cpu_s),
                row.wire_bytes / 1e3,
                row.images / row.wall_s,
                match (first, ratio) {
                    (true, Some(r)) => format!("**{r:.1}x**"),
                    (true, None) => "n/a (no server CPU on the pixel path)".into(),
                    _ => String::new(),
                },
                if first && judged {
                    format!("≥ {TARGET_AT_2MP}x {verdict}")
                } else {
                    String::new()
                },
            )?;
        }
    }
    writeln!(
        w,
        "\nServer CPU is read in clock ticks (10 ms); with few images per run a cell is coarse.\n"
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TSV: &str = "photo\tpath\timages\tserver_cpu_s\tclient_cpu_s\twall_s\twire_bytes\n\
        2mp\tserver\t64\t1.28\t0.2\t2.0\t800000\n\
        2mp\tlocal\t64\t0.04\t1.0\t1.5\t150528\n";

    #[test]
    fn rows_are_read_with_their_units() {
        let rows = parse(TSV).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].photo, "2mp");
        assert_eq!(rows[1].path, "local");
        assert!((rows[0].per_image_ms(rows[0].server_cpu_s) - 20.0).abs() < 1e-9);
    }

    #[test]
    fn a_short_line_is_an_error_naming_it() {
        let err = parse("header\n2mp\tserver\t64\n").unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn the_2mp_ratio_is_judged_in_full_runs() {
        let (w, missed) = crate::render_tests::render_alone(section, "pixel_path.tsv", TSV);
        assert!(w.contains("**32.0x**"), "{w}");
        assert!(w.contains("met"), "{w}");
        assert!(missed.is_empty());
    }
}
