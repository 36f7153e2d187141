//! `repo-gen deploy monitoring` against the real thing: a real Prometheus (the
//! Debian package's `prometheus` and `promtool`, which CI installs) scrapes
//! the real tritonserver while it serves a small known load.
//!
//! - `promtool check config` passes on prometheus.yml (which loads alerts.yml)
//!   and `promtool check rules` on alerts.yml; Prometheus loads the four rules
//!   and every one evaluates without error.
//! - PromQL over Prometheus's HTTP API returns the series the load made,
//!   with the counts it made (ensemble successes and failures, the
//!   backend's refusals by reason), and Triton's latency summaries.
//! - Every metric name in every dashboard expression and alerting rule is in
//!   a live scrape of the server; the GPU ones, absent on this CPU-only
//!   machine, must be in Triton 2.51's documented list of GPU metrics. Every
//!   non-GPU dashboard expression returns data.
//! - The alerts fire where the load says they must (image failures and
//!   refusals over the thresholds, text none), and TritonDown fires once the
//!   server is killed.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use clip_contract::{metric, model, tensor};
use harness::fixture;
use harness::http::{self, Tensor};
use harness::server::{repo_gen, tiny_clip_repository, Server};
use repo_gen::monitoring::{dashboard, promql::triton, rules, DASHBOARD_FILE, PROMETHEUS_FILE};
use serde_json::Value;

const JOB: &str = "triton";
const TEXT_REQUESTS: usize = 6;
const GOOD_IMAGE_REQUESTS: usize = 3;
const BAD_IMAGE_REQUESTS: usize = 3;

/// `name` from PATH, or a failure saying how to install it: never a skip.
fn tool(name: &str) -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join(name))
                .find(|candidate| candidate.is_file())
        })
        .unwrap_or_else(|| {
            panic!(
                "`{name}` is not installed: these tests need a real Prometheus. Install it with \
                 `apt-get install -y prometheus` (Debian's package brings /usr/bin/prometheus and \
                 /usr/bin/promtool; .ci/run installs it)"
            )
        })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a free port")
        .port()
}

fn agent() -> &'static ureq::Agent {
    static AGENT: OnceLock<ureq::Agent> = OnceLock::new();
    AGENT.get_or_init(|| {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into()
    })
}

/// Polls `check` every 500 ms until it returns Some, or panics with `what` after `limit`.
fn wait_for<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// A Prometheus child process on a temporary TSDB, killed when dropped.
struct Prometheus {
    child: Child,
    url: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(config: &Path) -> Prometheus {
        let dir = tempfile::tempdir().expect("prometheus folder");
        let log = dir.path().join("prometheus.log");
        let port = free_port();
        let log_file = std::fs::File::create(&log).expect("prometheus log");
        let child = Command::new(tool("prometheus"))
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("start prometheus");
        let mut prometheus = Prometheus {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log,
            _dir: dir,
        };
        let start = Instant::now();
        loop {
            if let Some(status) = prometheus.child.try_wait().expect("poll prometheus") {
                panic!("prometheus exited ({status}):\n{}", prometheus.log());
            }
            let ready = agent()
                .get(format!("{}/-/ready", prometheus.url))
                .call()
                .is_ok_and(|r| r.status() == 200);
            if ready {
                return prometheus;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "prometheus not ready after 60 s:\n{}",
                prometheus.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// GET an API path; panics unless Prometheus answers `"status": "success"`.
    fn api(&self, path: &str, query: Option<&str>) -> Value {
        let mut request = agent().get(format!("{}{path}", self.url));
        if let Some(query) = query {
            request = request.query("query", query);
        }
        let mut response = request.call().expect("prometheus API");
        let body: Value = response.body_mut().read_json().expect("JSON answer");
        assert_eq!(body["status"], "success", "{path} {query:?}: {body}");
        body["data"].clone()
    }

    /// An instant query's vector: (labels, value) per series.
    fn query(&self, expr: &str) -> Vec<(Value, f64)> {
        let data = self.api("/api/v1/query", Some(expr));
        assert_eq!(data["resultType"], "vector", "{expr}: {data}");
        data["result"]
            .as_array()
            .expect("result")
            .iter()
            .map(|series| {
                let value = series["value"][1].as_str().expect("value").parse().unwrap();
                (series["metric"].clone(), value)
            })
            .collect()
    }

    /// The value of the one series `expr` returns whose `label` is `value`.
    fn value_where(&self, expr: &str, label: &str, value: &str) -> Option<f64> {
        self.query(expr)
            .into_iter()
            .find(|(labels, _)| labels[label] == value)
            .map(|(_, v)| v)
    }

    /// Active alerts: (alert name, labels, state).
    fn alerts(&self) -> Vec<(String, Value, String)> {
        self.api("/api/v1/alerts", None)["alerts"]
            .as_array()
            .expect("alerts")
            .iter()
            .map(|a| {
                (
                    a["labels"]["alertname"].as_str().unwrap_or_default().into(),
                    a["labels"].clone(),
                    a["state"].as_str().unwrap_or_default().into(),
                )
            })
            .collect()
    }

    fn firing(&self, alert: &str, label: &str, value: &str) -> bool {
        self.alerts().iter().any(|(name, labels, state)| {
            name == alert && labels[label] == value && state == "firing"
        })
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn promtool(args: &[&str]) {
    let output = Command::new(tool("promtool"))
        .args(args)
        .output()
        .expect("run promtool");
    assert!(
        output.status.success(),
        "promtool {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The metric names in a live scrape of `server`'s /metrics.
fn scraped_names(server: &Server) -> BTreeSet<String> {
    let text = agent()
        .get(server.metrics_url())
        .call()
        .expect("GET /metrics")
        .body_mut()
        .read_to_string()
        .expect("metrics text");
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            line[..end].to_owned()
        })
        .collect()
}

/// The metric names a PromQL expression selects: identifiers that are not
/// functions, keywords, label names in `by (...)` and the like, nor inside
/// `{...}`, `[...]` or string literals.
fn metric_names(expr: &str) -> BTreeSet<String> {
    // Binary operators and modifiers, and the aggregation operators, which
    // may stand before `by (...)` rather than their parenthesis.
    const KEYWORDS: [&str; 22] = [
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "bool",
        "and",
        "or",
        "unless",
        "offset",
        "atan2",
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "quantile",
    ];
    // Strings, label matchers and ranges out.
    let mut plain = String::new();
    let mut depth_brace = 0;
    let mut depth_bracket = 0;
    let mut in_string = false;
    let mut escaped = false;
    for c in expr.chars() {
        if in_string {
            match (escaped, c) {
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => escaped = false,
            }
            continue;
        }
        match c {
            '"' => in_string = true,
            '{' => depth_brace += 1,
            '}' => depth_brace -= 1,
            '[' => depth_bracket += 1,
            ']' => depth_bracket -= 1,
            _ if depth_brace == 0 && depth_bracket == 0 => plain.push(c),
            _ => {}
        }
        if matches!(c, '{' | '}' | '[' | ']') {
            plain.push(' ');
        }
    }
    let chars: Vec<char> = plain.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    let mut skip_group = false;
    while i < chars.len() {
        let c = chars[i];
        if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || matches!(chars[i], '_' | ':'))
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let next = chars[i..].iter().find(|c| !c.is_whitespace());
            if matches!(
                word.as_str(),
                "by" | "without" | "on" | "ignoring" | "group_left" | "group_right"
            ) {
                skip_group = true;
            } else if !KEYWORDS.contains(&word.as_str()) && next != Some(&'(') {
                names.insert(word);
            }
        } else if c == '(' && skip_group {
            // The label list of by/without/on/ignoring/group_*.
            while i < chars.len() && chars[i] != ')' {
                i += 1;
            }
            skip_group = false;
            i += 1;
        } else {
            if c.is_ascii_digit() || c == '.' {
                // A number: skip it whole (1e3, 0.05).
                while i + 1 < chars.len()
                    && (chars[i + 1].is_ascii_alphanumeric() || chars[i + 1] == '.')
                {
                    i += 1;
                }
            }
            if !c.is_whitespace() {
                skip_group = false;
            }
            i += 1;
        }
    }
    names
}

#[test]
fn metric_names_of_expressions() {
    assert_eq!(
        metric_names(
            r#"(sum by (model) (rate(a_total{job="x", m=~"a|b"}[5m]))) / (sum by (model) (rate(b{q="{"}[$__rate_interval])) + (c or d)) > 0.05"#
        ),
        ["a_total", "b", "c", "d"].map(String::from).into()
    );
    assert_eq!(
        metric_names(r#"max by (instance, gpu_uuid) (nv_gpu_utilization{instance=~"$instance"})"#),
        ["nv_gpu_utilization"].map(String::from).into()
    );
    assert_eq!(
        metric_names("up{job=\"t\"} == 0"),
        ["up"].map(String::from).into()
    );
    assert_eq!(
        metric_names("a * on (x) group_left (y) b"),
        ["a", "b"].map(String::from).into()
    );
}

/// The Grafana variables of the dashboard's expressions, as Prometheus
/// needs them spelled: every instance, and a one-minute rate window.
fn as_prometheus_query(expr: &str) -> String {
    expr.replace(&format!("${}", dashboard::INSTANCE_VARIABLE), ".*")
        .replace(dashboard::RATE_INTERVAL, "1m")
}

fn infer_ok(server: &Server, ensemble: &str, input: &str, elements: &[&[u8]]) {
    http::infer(
        &server.http_url,
        ensemble,
        &[Tensor::bytes(input, elements)],
        &[tensor::EMBEDDING],
    )
    .unwrap_or_else(|f| panic!("{ensemble}: {} {}", f.status, f.message));
}

/// The known load: text requests, good images, and images that are no image.
fn load(server: &Server) {
    let jpeg = std::fs::read(fixture("images/inputs/coffee_q90.jpg")).expect("fixture");
    for i in 0..TEXT_REQUESTS {
        let text = format!("a photo of cat number {i}");
        infer_ok(
            server,
            model::TEXT_ENSEMBLE,
            tensor::TEXT,
            &[text.as_bytes(), b"a dog"],
        );
    }
    for _ in 0..GOOD_IMAGE_REQUESTS {
        infer_ok(server, model::IMAGE_ENSEMBLE, tensor::IMAGE, &[&jpeg]);
    }
    for _ in 0..BAD_IMAGE_REQUESTS {
        let refused = http::infer(
            &server.http_url,
            model::IMAGE_ENSEMBLE,
            &[Tensor::bytes(tensor::IMAGE, &[b"this is not an image"])],
            &[tensor::EMBEDDING],
        );
        assert!(refused.is_err(), "a non-image was embedded");
    }
}

#[test]
fn prometheus_scrapes_triton_and_the_alerts_fire() {
    // Both tools first: a missing install fails before any server starts.
    tool("prometheus");
    tool("promtool");

    let dir = tempfile::tempdir().unwrap();
    let repository = dir.path().join("repository");
    tiny_clip_repository(&repository, &[]);
    let mut server =
        Server::start_with(&repository, &["--metrics-config", "summary_latencies=true"]);
    let target = server
        .metrics_url()
        .trim_start_matches("http://")
        .trim_end_matches("/metrics")
        .to_owned();

    // Short intervals and `for:` so the test sees alerts within seconds; the
    // queue threshold at 0 so any queueing at all fires that rule.
    let monitoring = dir.path().join("monitoring");
    let status = Command::new(repo_gen())
        .args(["deploy", "monitoring", "--out"])
        .arg(&monitoring)
        .args(["--target", &target, "--job", JOB])
        .args(["--scrape-interval", "1s", "--evaluation-interval", "1s"])
        .args(["--alert-for", "2s", "--queue-alert-ms", "0"])
        .status()
        .expect("run repo-gen deploy monitoring");
    assert!(status.success(), "repo-gen deploy monitoring failed");
    let config = monitoring.join(PROMETHEUS_FILE);
    promtool(&["check", "config", config.to_str().unwrap()]);
    let rules_file = monitoring.join(repo_gen::monitoring::RULES_FILE);
    promtool(&["check", "rules", rules_file.to_str().unwrap()]);

    let prometheus = Prometheus::start(&config);
    let up = format!("up{{job=\"{JOB}\"}}");
    wait_for(
        "Prometheus scrapes Triton (up == 1)",
        Duration::from_secs(30),
        || (prometheus.value_where(&up, "instance", &target) == Some(1.0)).then_some(()),
    );

    load(&server);

    // The counts of the load, once a scrape after it is in.
    let ensembles = format!(
        "sum by (model) ({}{{job=\"{JOB}\", model=~\"{}|{}\"}})",
        triton::REQUEST_SUCCESS,
        model::TEXT_ENSEMBLE,
        model::IMAGE_ENSEMBLE
    );
    wait_for(
        "the load's successes in Prometheus",
        Duration::from_secs(30),
        || {
            let text = prometheus.value_where(&ensembles, "model", model::TEXT_ENSEMBLE);
            let image = prometheus.value_where(&ensembles, "model", model::IMAGE_ENSEMBLE);
            (text == Some(TEXT_REQUESTS as f64) && image == Some(GOOD_IMAGE_REQUESTS as f64))
                .then_some(())
        },
    );
    // Each bad request failed at one step, the image preprocessing...
    let failures = format!(
        "sum by (model) ({}{{job=\"{JOB}\"}})",
        triton::REQUEST_FAILURE
    );
    for (step, count) in [
        (model::IMAGE_PREPROCESS, BAD_IMAGE_REQUESTS),
        (model::IMAGE_ENCODER, 0),
        (model::TEXT_PREPROCESS, 0),
        (model::TEXT_ENCODER, 0),
        (model::TEXT_ENSEMBLE, 0),
    ] {
        assert_eq!(
            prometheus.value_where(&failures, "model", step),
            Some(count as f64),
            "{step}"
        );
    }
    // ... while Triton 2.51 counts it twice in the ensemble's own counter:
    // why the rules and the dashboard count ensemble failures at the steps.
    assert_eq!(
        prometheus.value_where(&failures, "model", model::IMAGE_ENSEMBLE),
        Some(2.0 * BAD_IMAGE_REQUESTS as f64),
        "tritonserver 2.51 counted a failed ensemble request other than twice"
    );
    let refused = format!(
        "{}{{job=\"{JOB}\", reason=\"{}\"}}",
        metric::REJECTED,
        metric::reason::UNSUPPORTED_FORMAT
    );
    assert_eq!(
        prometheus.value_where(&refused, "model", model::IMAGE_PREPROCESS),
        Some(BAD_IMAGE_REQUESTS as f64)
    );
    let jpegs = format!(
        "{}{{job=\"{JOB}\", format=\"jpeg\"}}",
        metric::IMAGES_DECODED
    );
    let decoded = prometheus.value_where(&jpegs, "model", model::IMAGE_PREPROCESS);
    assert!(
        decoded.is_some_and(|n| n >= GOOD_IMAGE_REQUESTS as f64),
        "{jpegs}: {decoded:?}"
    );
    let tokenized = format!("{}{{job=\"{JOB}\"}}", metric::TEXTS_TOKENIZED);
    let texts = prometheus.value_where(&tokenized, "model", model::TEXT_PREPROCESS);
    assert!(
        texts.is_some_and(|n| n >= 2.0 * TEXT_REQUESTS as f64),
        "{tokenized}: {texts:?}"
    );
    for quantile in ["0.5", "0.99"] {
        let summary = format!(
            "{}{{job=\"{JOB}\", model=\"{}\", quantile=\"{quantile}\"}}",
            triton::REQUEST_SUMMARY_US,
            model::TEXT_ENSEMBLE
        );
        let series = prometheus.query(&summary);
        assert_eq!(series.len(), 1, "{summary}: {series:?}");
        assert!(series[0].1 > 0.0, "{summary}: {series:?}");
    }

    // Every name an expression uses is on the live endpoint (GPU ones aside).
    let live = scraped_names(&server);
    let gpu_live = live.iter().any(|name| name.starts_with("nv_gpu_"));
    let check_names = |what: &str, expr: &str| {
        for name in metric_names(expr) {
            if live.contains(&name) || name == triton::UP {
                continue;
            }
            assert!(
                !gpu_live && triton::GPU_METRICS.contains(&name.as_str()),
                "{what}: `{name}` is in no live scrape of tritonserver{}: {expr}",
                if gpu_live {
                    ""
                } else {
                    " nor among Triton's GPU metrics"
                }
            );
        }
    };

    let text = std::fs::read_to_string(monitoring.join(DASHBOARD_FILE)).unwrap();
    let board: Value = serde_json::from_str(&text).expect("dashboard JSON");
    let mut exprs = Vec::new();
    for panel in board["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("expr").to_owned();
            exprs.push((panel["title"].as_str().unwrap_or_default().to_owned(), expr));
        }
    }
    assert!(exprs.len() >= 15, "{} expressions", exprs.len());
    for variable in board["templating"]["list"].as_array().expect("variables") {
        if variable["type"] == "query" {
            let query = variable["query"].as_str().unwrap();
            let inner = query
                .strip_prefix("label_values(")
                .and_then(|q| q.rsplit_once(','))
                .map(|(selector, _)| selector)
                .expect("label_values(selector, label)");
            check_names("dashboard variable", inner);
        }
    }
    // Rates need two scrapes after the load in their window.
    std::thread::sleep(Duration::from_secs(3));
    let mut gpu_exprs = 0;
    for (title, expr) in &exprs {
        check_names(title, expr);
        let gpu = metric_names(expr)
            .iter()
            .any(|name| triton::GPU_METRICS.contains(&name.as_str()));
        let series = prometheus.query(&as_prometheus_query(expr));
        if gpu && !gpu_live {
            // This machine has no GPU: tritonserver exports no GPU metric.
            gpu_exprs += 1;
            assert!(series.is_empty(), "{title}: {expr}: {series:?}");
        } else {
            assert!(!series.is_empty(), "{title}: no data for {expr}");
        }
    }
    if !gpu_live {
        assert_eq!(gpu_exprs, 3, "GPU utilisation, GPU memory used and total");
    }

    // The rules Prometheus loaded: ours, healthy, over live names.
    let groups = prometheus.api("/api/v1/rules", None)["groups"].clone();
    let loaded: Vec<&Value> = groups
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("rules"))
        .collect();
    let names: BTreeSet<&str> = loaded.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        BTreeSet::from([
            rules::SERVER_DOWN,
            rules::QUEUE_TIME_HIGH,
            rules::FAILURE_RATIO_HIGH,
            rules::REJECTION_RATIO_HIGH
        ])
    );
    for rule in &loaded {
        assert_eq!(rule["type"], "alerting", "{rule}");
        check_names(
            rule["name"].as_str().unwrap(),
            rule["query"].as_str().unwrap(),
        );
    }
    wait_for(
        "every rule evaluated without error",
        Duration::from_secs(30),
        || {
            let groups = prometheus.api("/api/v1/rules", None)["groups"].clone();
            let all_ok = groups
                .as_array()?
                .iter()
                .flat_map(|g| g["rules"].as_array().into_iter().flatten())
                .all(|r| r["health"] == "ok");
            all_ok.then_some(())
        },
    );

    // The load's alerts: image failures and refusals over 5 %, queueing over 0.
    wait_for(
        "ClipFailureRatioHigh (clip_image), ClipRejectionRatioHigh (clip_image_preprocess) \
         and TritonQueueTimeHigh firing",
        Duration::from_secs(60),
        || {
            let queue = prometheus
                .alerts()
                .iter()
                .any(|(name, _, state)| name == rules::QUEUE_TIME_HIGH && state == "firing");
            (prometheus.firing(rules::FAILURE_RATIO_HIGH, "model", model::IMAGE_ENSEMBLE)
                && prometheus.firing(
                    rules::REJECTION_RATIO_HIGH,
                    "model",
                    model::IMAGE_PREPROCESS,
                )
                && queue)
                .then_some(())
        },
    );
    let alerts = prometheus.alerts();
    for (name, labels, state) in &alerts {
        assert_ne!(
            name,
            rules::SERVER_DOWN,
            "the server is up: {labels} {state}"
        );
        assert!(
            (labels["model"] != model::TEXT_ENSEMBLE && labels["model"] != model::TEXT_PREPROCESS)
                || name == rules::QUEUE_TIME_HIGH,
            "texts all succeeded, yet {name} {labels} is {state}"
        );
    }

    // The server goes away: TritonDown fires.
    server.kill();
    wait_for(
        "TritonDown firing after the kill",
        Duration::from_secs(60),
        || {
            prometheus
                .firing(rules::SERVER_DOWN, "instance", &target)
                .then_some(())
        },
    );
}
