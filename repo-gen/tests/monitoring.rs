//! `repo-gen deploy monitoring`: golden files for the defaults and for a fleet with
//! a model-name prefix, the options that reach the files, and the refusals.
//! The files against a real Prometheus scraping a real tritonserver are
//! tests/monitoring.rs of the clip-tests crate.

mod common;

use std::path::Path;
use std::process::Command;

use repo_gen::monitoring::{DASHBOARD_FILE, FILES, PROMETHEUS_FILE, RULES_FILE};
use serde_json::Value;

const FLEET_ARGS: &[&str] = &[
    "--target",
    "triton-0.clip:8002,triton-1.clip:8002",
    "--job",
    "clip-fleet",
    "--name-prefix",
    "vitl14_",
    "--alertmanager",
    "alertmanager:9093",
    "--scrape-interval",
    "10s",
    "--queue-alert-ms",
    "250",
];

fn monitoring(args: &[&str]) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("monitoring");
    let output = run(&out, args);
    assert!(
        output.status.success(),
        "repo-gen deploy monitoring {args:?} failed:\n{}",
        common::stderr(&output)
    );
    (dir, out)
}

fn run(out: &Path, args: &[&str]) -> std::process::Output {
    let mut all = vec!["deploy", "monitoring", "--out", out.to_str().unwrap()];
    all.extend_from_slice(args);
    common::repo_gen(&all)
}

fn golden_case(case: &str, args: &[&str]) {
    let (_dir, out) = monitoring(args);
    assert_eq!(common::tree(&out), {
        let mut files: Vec<String> = FILES.iter().map(|f| f.to_string()).collect();
        files.sort();
        files
    });
    for file in FILES {
        let text = std::fs::read_to_string(out.join(file)).unwrap();
        common::golden(&format!("monitoring/{case}/{file}"), &text);
    }
}

#[test]
fn default_files_match_golden_files() {
    golden_case("default", &[]);
}

#[test]
fn fleet_files_match_golden_files() {
    golden_case("fleet", FLEET_ARGS);
}

#[test]
fn options_reach_the_files() {
    let (_dir, out) = monitoring(FLEET_ARGS);
    let config = std::fs::read_to_string(out.join(PROMETHEUS_FILE)).unwrap();
    for expected in [
        "job_name: clip-fleet",
        "- triton-0.clip:8002",
        "- triton-1.clip:8002",
        "- alertmanager:9093",
        "scrape_interval: 10s",
        "- alerts.yml",
    ] {
        assert!(config.contains(expected), "{expected} not in:\n{config}");
    }
    let rules = std::fs::read_to_string(out.join(RULES_FILE)).unwrap();
    assert!(rules.contains("> 250000"), "250 ms as µs:\n{rules}");
    assert!(!rules.contains("job=\"triton\""), "{rules}");

    // Every model matcher names prefixed models only, and every expression the job.
    let board: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join(DASHBOARD_FILE)).unwrap()).unwrap();
    let exprs: Vec<&str> = board["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().into_iter().flatten())
        .map(|t| t["expr"].as_str().unwrap())
        .collect();
    assert!(exprs.len() >= 15);
    for expr in exprs
        .iter()
        .copied()
        .chain(rules.lines().filter(|l| l.contains("expr:")))
    {
        assert!(expr.contains("job=\"clip-fleet\""), "{expr}");
        let mut rest = expr;
        while let Some(start) = rest.find("model=~\"") {
            rest = &rest[start + "model=~\"".len()..];
            let end = rest.find('"').unwrap();
            for name in rest[..end].split('|') {
                assert!(name.starts_with("vitl14_clip_"), "{name} in {expr}");
            }
            rest = &rest[end..];
        }
    }
}

#[test]
fn short_alert_for_replaces_every_rule_s_own() {
    let (_dir, out) = monitoring(&["--alert-for", "0s"]);
    let rules = std::fs::read_to_string(out.join(RULES_FILE)).unwrap();
    let fors: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("for: "))
        .collect();
    assert_eq!(fors, ["0s"; 4]);
}

#[test]
fn a_non_empty_folder_needs_force() {
    let (_dir, out) = monitoring(&[]);
    std::fs::write(out.join("keep.txt"), "mine").unwrap();
    let refused = run(&out, &[]);
    assert!(!refused.status.success());
    assert!(
        common::stderr(&refused).contains("--force"),
        "{}",
        common::stderr(&refused)
    );
    let forced = run(&out, &["--force", "--job", "other"]);
    assert!(forced.status.success(), "{}", common::stderr(&forced));
    assert!(out.join("keep.txt").is_file());
    let config = std::fs::read_to_string(out.join(PROMETHEUS_FILE)).unwrap();
    assert!(config.contains("job_name: other"), "{config}");
}

#[test]
fn bad_options_are_refused_before_anything_is_written() {
    for (args, message) in [
        (&["--target", "http://triton:8002"][..], "host:port"),
        (&["--target", "triton"][..], "host:port"),
        (&["--job", "a b"][..], "--job"),
        (&["--rate-window", "five minutes"][..], "--rate-window"),
        (&["--alert-for", "1.5m"][..], "--alert-for"),
        (&["--failure-ratio", "2"][..], "--failure-ratio"),
        (&["--rejection-ratio", "1.0"][..], "--rejection-ratio"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("monitoring");
        let output = run(&out, args);
        assert!(!output.status.success(), "{args:?} was accepted");
        let stderr = common::stderr(&output);
        assert!(stderr.contains(message), "{args:?}: {stderr}");
        assert!(!out.exists(), "{args:?} wrote {}", out.display());
    }
}

/// `name` on PATH, or a failure saying how to install it: never a skip.
fn which(name: &str) -> std::path::PathBuf {
    std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join(name))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| {
            panic!(
                "{name} is not installed: `apt-get install -y prometheus` (Debian's package \
                 brings prometheus and promtool; .ci/run installs it)"
            )
        })
}

/// promtool, the Prometheus package's checker, accepts the default files.
/// Required, as in tests/monitoring.rs (clip-tests), which runs it on files
/// pointed at a live server: missing, the test fails saying how to install it.
#[test]
fn promtool_accepts_the_default_files_when_installed() {
    let promtool = which("promtool");
    let (_dir, out) = monitoring(&[]);
    for (what, file) in [("config", PROMETHEUS_FILE), ("rules", RULES_FILE)] {
        let output = Command::new(&promtool)
            .args(["check", what])
            .arg(out.join(file))
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "promtool check {what} {file}:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// The default thresholds and `for:` durations, on synthetic series through
/// `promtool test rules`: each alert fires on a sick series once its `for:`
/// has passed, and not on a healthy one. The annotations are left out of
/// the compared alerts (promtool compares them whole; `check rules` above
/// checks their templates).
#[test]
fn default_rules_fire_on_synthetic_series() {
    let promtool = which("promtool");
    let (_dir, out) = monitoring(&[]);
    let mut rules: serde_norway::Value =
        serde_norway::from_str(&std::fs::read_to_string(out.join(RULES_FILE)).unwrap()).unwrap();
    for group in rules["groups"].as_sequence_mut().unwrap() {
        for rule in group["rules"].as_sequence_mut().unwrap() {
            rule.as_mapping_mut().unwrap().remove("annotations");
        }
    }
    std::fs::write(
        out.join("rules.yml"),
        serde_norway::to_string(&rules).unwrap(),
    )
    .unwrap();

    // One sample a minute; `a+bxN` is a counter growing by b a minute.
    let at = "instance=\"a:8002\", job=\"triton\"";
    let series = |name: &str, labels: &str, values: &str| serde_json::json!({"series": format!("{name}{{{at}, {labels}}}"), "values": values});
    let input_series = vec![
        // Down from minute 2.
        serde_json::json!({"series": format!("up{{{at}}}"), "values": "1 1 0x20"}),
        // clip_image: 10 failed (at its preprocessing) for 100 good a minute, 9 %;
        // clip_text: 2 for 100, 2 %. The ensemble's own counter double counts.
        series(
            "nv_inference_request_success",
            "model=\"clip_image\"",
            "0+100x30",
        ),
        series(
            "nv_inference_request_failure",
            "model=\"clip_image_preprocess\", reason=\"BACKEND\"",
            "0+10x30",
        ),
        series(
            "nv_inference_request_failure",
            "model=\"clip_image\", reason=\"OTHER\"",
            "0+20x30",
        ),
        series(
            "nv_inference_request_success",
            "model=\"clip_text\"",
            "0+100x30",
        ),
        series(
            "nv_inference_request_failure",
            "model=\"clip_text_encoder\", reason=\"BACKEND\"",
            "0+2x30",
        ),
        // Mean queue time: 200 ms a request at the image encoder, 10 ms at the text one.
        series(
            "nv_inference_request_success",
            "model=\"clip_image_encoder\"",
            "0+100x30",
        ),
        series(
            "nv_inference_queue_duration_us",
            "model=\"clip_image_encoder\"",
            "0+20000000x30",
        ),
        series(
            "nv_inference_request_success",
            "model=\"clip_text_encoder\"",
            "0+100x30",
        ),
        series(
            "nv_inference_queue_duration_us",
            "model=\"clip_text_encoder\"",
            "0+1000000x30",
        ),
        // Refused: 10 corrupt images for 90 decoded (10 %); 1 text for 99 tokenized (1 %).
        series(
            "clip_rejected_total",
            "model=\"clip_image_preprocess\", reason=\"corrupt\"",
            "0+10x30",
        ),
        series(
            "clip_images_decoded_total",
            "model=\"clip_image_preprocess\", format=\"jpeg\"",
            "0+90x30",
        ),
        series(
            "clip_rejected_total",
            "model=\"clip_text_preprocess\", reason=\"too_large\"",
            "0+1x30",
        ),
        series(
            "clip_texts_tokenized_total",
            "model=\"clip_text_preprocess\"",
            "0+99x30",
        ),
    ];
    let alert = |time: &str, name: &str, expected: Vec<serde_json::Value>| {
        let exp: Vec<serde_json::Value> = expected
            .into_iter()
            .map(|labels| serde_json::json!({"exp_labels": labels}))
            .collect();
        serde_json::json!({"eval_time": time, "alertname": name, "exp_alerts": exp})
    };
    let none = Vec::new;
    let tests = serde_json::json!({
        "rule_files": ["rules.yml"],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": input_series,
            "alert_rule_test": [
                // Down at 2m, pending for its 1m, firing from 3m.
                alert("2m", "TritonDown", none()),
                alert("3m", "TritonDown", vec![serde_json::json!(
                    {"severity": "critical", "job": "triton", "instance": "a:8002"})]),
                // 5m of `for:` after the first rate (1m): not at 5m, at 6m.
                alert("5m", "ClipFailureRatioHigh", none()),
                alert("6m", "ClipFailureRatioHigh", vec![serde_json::json!(
                    {"severity": "critical", "model": "clip_image"})]),
                alert("5m", "TritonQueueTimeHigh", none()),
                alert("6m", "TritonQueueTimeHigh", vec![serde_json::json!(
                    {"severity": "warning", "model": "clip_image_encoder", "instance": "a:8002"})]),
                // 10m of `for:`.
                alert("10m", "ClipRejectionRatioHigh", none()),
                alert("11m", "ClipRejectionRatioHigh", vec![serde_json::json!(
                    {"severity": "warning", "model": "clip_image_preprocess"})]),
            ],
        }],
    });
    // JSON is YAML: promtool reads it as its test file.
    let test_file = out.join("rules_test.yml");
    std::fs::write(&test_file, serde_json::to_string_pretty(&tests).unwrap()).unwrap();
    let output = Command::new(promtool)
        .current_dir(&out)
        .args(["test", "rules", "rules_test.yml"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "promtool test rules:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
