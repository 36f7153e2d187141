//! The few PromQL shapes the rules and the dashboard use, so every
//! expression is put together the same way from metric names that come
//! from [`clip_contract::metric`] or from Triton's documentation.

/// Triton's own metric names (tritonserver 2.51, `docs/user_guide/metrics.md`).
pub mod triton {
    pub const REQUEST_SUCCESS: &str = "nv_inference_request_success";
    /// Has a `reason` label (BACKEND, OTHER, REJECTED, CANCELED).
    pub const REQUEST_FAILURE: &str = "nv_inference_request_failure";
    /// Elements (a batch of n counts n), not requests.
    pub const INFERENCE_COUNT: &str = "nv_inference_count";
    pub const EXEC_COUNT: &str = "nv_inference_exec_count";
    pub const PENDING_REQUESTS: &str = "nv_inference_pending_request_count";
    /// Cumulative microseconds over successful requests.
    pub const REQUEST_DURATION_US: &str = "nv_inference_request_duration_us";
    pub const QUEUE_DURATION_US: &str = "nv_inference_queue_duration_us";
    pub const COMPUTE_INPUT_DURATION_US: &str = "nv_inference_compute_input_duration_us";
    pub const COMPUTE_INFER_DURATION_US: &str = "nv_inference_compute_infer_duration_us";
    pub const COMPUTE_OUTPUT_DURATION_US: &str = "nv_inference_compute_output_duration_us";
    /// Summaries with `quantile` 0.5, 0.9, 0.95, 0.99, 0.999: only with
    /// `--metrics-config summary_latencies=true`, and not for models whose
    /// response cache is on.
    pub const REQUEST_SUMMARY_US: &str = "nv_inference_request_summary_us";
    pub const QUEUE_SUMMARY_US: &str = "nv_inference_queue_summary_us";
    pub const CPU_UTILIZATION: &str = "nv_cpu_utilization";
    pub const CPU_MEMORY_USED_BYTES: &str = "nv_cpu_memory_used_bytes";
    pub const CPU_MEMORY_TOTAL_BYTES: &str = "nv_cpu_memory_total_bytes";
    /// GPU metrics, one series per `gpu_uuid`: exported only where Triton
    /// finds GPUs (DCGM), so a CPU-only server has none of them.
    pub const GPU_UTILIZATION: &str = "nv_gpu_utilization";
    pub const GPU_MEMORY_USED_BYTES: &str = "nv_gpu_memory_used_bytes";
    pub const GPU_MEMORY_TOTAL_BYTES: &str = "nv_gpu_memory_total_bytes";
    pub const GPU_POWER_USAGE: &str = "nv_gpu_power_usage";
    /// Every GPU metric name Triton 2.51 documents.
    pub const GPU_METRICS: [&str; 6] = [
        GPU_UTILIZATION,
        GPU_MEMORY_USED_BYTES,
        GPU_MEMORY_TOTAL_BYTES,
        GPU_POWER_USAGE,
        "nv_gpu_power_limit",
        "nv_energy_consumption",
    ];
    /// Prometheus's own series for every target: 1 when the last scrape worked.
    pub const UP: &str = "up";
}

/// A label matcher.
#[derive(Clone, Debug)]
pub enum Matcher {
    Eq(&'static str, String),
    Regex(&'static str, String),
}

impl Matcher {
    fn render(&self) -> String {
        match self {
            Matcher::Eq(label, value) => format!("{label}={}", quote(value)),
            Matcher::Regex(label, value) => format!("{label}=~{}", quote(value)),
        }
    }
}

/// A PromQL string literal. Label values here are model names, job names and
/// Grafana variables; escaping covers the rest.
fn quote(value: &str) -> String {
    let escaped = value.replace('\\', "\\\\").replace('"', "\\\"");
    format!("\"{escaped}\"")
}

/// `metric{matchers}`.
pub fn selector(metric: &str, matchers: &[Matcher]) -> String {
    if matchers.is_empty() {
        return metric.to_owned();
    }
    let inner: Vec<String> = matchers.iter().map(Matcher::render).collect();
    format!("{metric}{{{}}}", inner.join(", "))
}

/// `rate(selector[window])`.
pub fn rate(selector: &str, window: &str) -> String {
    format!("rate({selector}[{window}])")
}

/// `sum by (labels) (expr)`; `sum (expr)` when `labels` is empty.
pub fn sum_by(labels: &[&str], expr: &str) -> String {
    if labels.is_empty() {
        format!("sum ({expr})")
    } else {
        format!("sum by ({}) ({expr})", labels.join(", "))
    }
}

/// `max by (labels) (expr)`.
pub fn max_by(labels: &[&str], expr: &str) -> String {
    format!("max by ({}) ({expr})", labels.join(", "))
}

/// `sum by (labels) (rate(metric{matchers}[window]))`.
pub fn summed_rate(metric: &str, matchers: &[Matcher], window: &str, labels: &[&str]) -> String {
    sum_by(labels, &rate(&selector(metric, matchers), window))
}

/// `(a) / (b)`.
pub fn ratio(numerator: &str, denominator: &str) -> String {
    format!("({numerator}) / ({denominator})")
}

/// A regular expression matching exactly `names` (model names hold no
/// regex metacharacters: repo-gen's `check_name` allows letters, digits, `_` and `-`).
pub fn any_of(names: &[String]) -> String {
    names.join("|")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_and_rates() {
        let sel = selector(
            "m",
            &[
                Matcher::Eq("job", "triton".into()),
                Matcher::Regex("model", "a|b".into()),
            ],
        );
        assert_eq!(sel, r#"m{job="triton", model=~"a|b"}"#);
        assert_eq!(
            rate(&sel, "5m"),
            r#"rate(m{job="triton", model=~"a|b"}[5m])"#
        );
        assert_eq!(sum_by(&["model"], "x"), "sum by (model) (x)");
        assert_eq!(sum_by(&[], "x"), "sum (x)");
        assert_eq!(selector("up", &[]), "up");
        assert_eq!(quote(r#"a"b\c"#), r#""a\"b\\c""#);
    }
}
