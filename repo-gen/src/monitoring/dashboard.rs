//! `grafana-dashboard.json`: a Grafana dashboard (JSON model, schema 39)
//! over the Prometheus that scrapes Triton. Import it in Grafana and pick
//! the Prometheus data source in its `datasource` variable.

use clip_contract::metric::{self, label};
use serde::Serialize;

use super::exprs::{self, Scope};
use super::promql::{max_by, selector, sum_by, triton, Matcher};
use super::MonitoringOptions;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Dashboard {
    pub uid: String,
    pub title: String,
    pub description: String,
    pub tags: Vec<String>,
    pub timezone: String,
    pub schema_version: u32,
    pub version: u32,
    pub editable: bool,
    pub refresh: String,
    pub time: TimeRange,
    pub templating: Templating,
    pub panels: Vec<Panel>,
}

#[derive(Debug, Serialize)]
pub struct TimeRange {
    pub from: String,
    pub to: String,
}

#[derive(Debug, Serialize)]
pub struct Templating {
    pub list: Vec<Variable>,
}

/// A dashboard variable: the data source, or a query over label values.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Variable {
    pub name: String,
    pub label: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// For `datasource`: the plugin id; for `query`: the PromQL label query.
    pub query: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub datasource: Option<DataSourceRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh: Option<u32>,
    pub multi: bool,
    pub include_all: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub all_value: Option<String>,
    pub hide: u32,
}

#[derive(Clone, Debug, Serialize)]
pub struct DataSourceRef {
    #[serde(rename = "type")]
    pub kind: String,
    pub uid: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GridPos {
    pub h: u32,
    pub w: u32,
    pub x: u32,
    pub y: u32,
}

/// A panel: a `row` heading, or a `timeseries` graph.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Panel {
    pub id: u32,
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub grid_pos: GridPos,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub datasource: Option<DataSourceRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field_config: Option<FieldConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub options: Option<PanelOptions>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<Target>,
    /// Rows only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub collapsed: Option<bool>,
}

#[derive(Debug, Serialize)]
pub struct FieldConfig {
    pub defaults: FieldDefaults,
    pub overrides: Vec<serde_json::Value>,
}

#[derive(Debug, Serialize)]
pub struct FieldDefaults {
    pub unit: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct PanelOptions {
    pub legend: Legend,
    pub tooltip: Tooltip,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Legend {
    pub display_mode: String,
    pub placement: String,
    pub show_legend: bool,
}

#[derive(Debug, Serialize)]
pub struct Tooltip {
    pub mode: String,
    pub sort: String,
}

/// One PromQL query of a panel.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    pub ref_id: String,
    pub datasource: DataSourceRef,
    pub expr: String,
    pub legend_format: String,
    pub range: bool,
}

/// Grafana's units.
mod unit {
    pub const PER_SECOND: &str = "reqps";
    pub const OPS: &str = "ops";
    pub const MICROSECONDS: &str = "µs";
    pub const SECONDS: &str = "s";
    pub const RATIO: &str = "percentunit";
    pub const BYTES: &str = "bytes";
    pub const NONE: &str = "short";
}

/// The Grafana variables the expressions use.
pub const DATASOURCE_VARIABLE: &str = "datasource";
pub const INSTANCE_VARIABLE: &str = "instance";
/// The instance label Prometheus gives every scraped series.
const INSTANCE: &str = "instance";
/// Grafana's own: a rate window at least four scrape intervals long.
pub const RATE_INTERVAL: &str = "$__rate_interval";

const WIDTH: u32 = 24;
const HEIGHT: u32 = 8;

/// Lays panels out left to right, two per line, rows across the width.
struct Builder {
    datasource: DataSourceRef,
    panels: Vec<Panel>,
    x: u32,
    y: u32,
}

/// A query: expression and legend.
struct Query(String, &'static str);

impl Builder {
    fn row(&mut self, title: &str) {
        if self.x > 0 {
            self.x = 0;
            self.y += HEIGHT;
        }
        self.panels.push(Panel {
            id: self.panels.len() as u32 + 1,
            kind: "row".into(),
            title: title.into(),
            description: None,
            grid_pos: GridPos {
                h: 1,
                w: WIDTH,
                x: 0,
                y: self.y,
            },
            datasource: None,
            field_config: None,
            options: None,
            targets: Vec::new(),
            collapsed: Some(false),
        });
        self.y += 1;
    }

    fn graph(&mut self, title: &str, description: &str, unit: &str, queries: Vec<Query>) {
        let width = WIDTH / 2;
        let targets = queries
            .into_iter()
            .enumerate()
            .map(|(i, Query(expr, legend))| Target {
                ref_id: char::from(b'A' + i as u8).to_string(),
                datasource: self.datasource.clone(),
                expr,
                legend_format: legend.into(),
                range: true,
            })
            .collect();
        self.panels.push(Panel {
            id: self.panels.len() as u32 + 1,
            kind: "timeseries".into(),
            title: title.into(),
            description: Some(description.into()),
            grid_pos: GridPos {
                h: HEIGHT,
                w: width,
                x: self.x,
                y: self.y,
            },
            datasource: Some(self.datasource.clone()),
            field_config: Some(FieldConfig {
                defaults: FieldDefaults {
                    unit: unit.into(),
                    min: Some(0.0),
                    max: (unit == unit::RATIO).then_some(1.0),
                },
                overrides: Vec::new(),
            }),
            options: Some(PanelOptions {
                legend: Legend {
                    display_mode: "list".into(),
                    placement: "bottom".into(),
                    show_legend: true,
                },
                tooltip: Tooltip {
                    mode: "multi".into(),
                    sort: "desc".into(),
                },
            }),
            targets,
            collapsed: None,
        });
        self.x += width;
        if self.x >= WIDTH {
            self.x = 0;
            self.y += HEIGHT;
        }
    }
}

pub fn dashboard(options: &MonitoringOptions) -> Dashboard {
    let models = options.models();
    let datasource = DataSourceRef {
        kind: "prometheus".into(),
        uid: format!("${{{DATASOURCE_VARIABLE}}}"),
    };
    let job = Matcher::Eq("job", options.job.clone());
    let matchers = vec![
        job.clone(),
        Matcher::Regex(INSTANCE, format!("${INSTANCE_VARIABLE}")),
    ];
    let scope = Scope {
        matchers: matchers.clone(),
        window: RATE_INTERVAL.into(),
    };
    let ensembles = models.ensembles();
    let steps = models.steps();
    let model = [label::MODEL];
    let mut b = Builder {
        datasource: datasource.clone(),
        panels: Vec::new(),
        x: 0,
        y: 0,
    };

    b.row("Ensembles: text and image embedding");
    b.graph(
        "Throughput per ensemble",
        "Requests per second per ensemble, successful and failed. Failures are counted at the \
         ensemble's steps: Triton 2.51 counts a failed request more than once in the ensemble's \
         own nv_inference_request_failure.",
        unit::PER_SECOND,
        vec![
            Query(
                scope.rate(triton::REQUEST_SUCCESS, &ensembles, &model),
                "{{model}} ok",
            ),
            Query(
                exprs::ensemble_failures(&scope, &models.pipelines()),
                "{{model}} failed",
            ),
        ],
    );
    b.graph(
        "Embeddings per second per ensemble",
        "Elements (texts or images) per second: a batch of n counts n.",
        unit::OPS,
        vec![Query(
            scope.rate(triton::INFERENCE_COUNT, &ensembles, &model),
            "{{model}}",
        )],
    );
    let quantile = |q: &str| {
        let mut m = scope.models(&ensembles);
        m.push(Matcher::Eq("quantile", q.to_owned()));
        max_by(&model, &selector(triton::REQUEST_SUMMARY_US, &m))
    };
    b.graph(
        "Request latency p50 / p99 (Triton summaries)",
        "From Triton's summary nv_inference_request_summary_us, which tritonserver exports only \
         with --metrics-config summary_latencies=true (and not for models whose response cache \
         is on). Quantiles over Triton's sliding window, per server: quantiles of several servers \
         cannot be combined, so this shows the worst server's.",
        unit::MICROSECONDS,
        vec![
            Query(quantile("0.5"), "{{model}} p50"),
            Query(quantile("0.99"), "{{model}} p99"),
        ],
    );
    b.graph(
        "Mean request latency (Triton counters)",
        "Mean end-to-end time per successful request, from the cumulative counter \
         nv_inference_request_duration_us: always exported, a mean and not a percentile.",
        unit::MICROSECONDS,
        vec![Query(
            exprs::mean_per_request(&scope, triton::REQUEST_DURATION_US, &ensembles, &model),
            "{{model}}",
        )],
    );
    b.graph(
        "Failure ratio per ensemble",
        "Failed over all requests, failures counted at the steps; requests refused for bad \
         inputs count as failures. What the ClipFailureRatioHigh alert watches.",
        unit::RATIO,
        vec![Query(
            exprs::failure_ratio(&scope, &models.pipelines()),
            "{{model}}",
        )],
    );
    b.graph(
        "Pending requests per model",
        "Requests waiting for execution, per model (a gauge).",
        unit::NONE,
        vec![Query(
            sum_by(
                &model,
                &selector(triton::PENDING_REQUESTS, &scope.models(&models.all())),
            ),
            "{{model}}",
        )],
    );

    b.row("Steps: queue vs compute");
    b.graph(
        "Queue time per request, per step",
        "Mean time a request waits in the step model's scheduler queue \
         (nv_inference_queue_duration_us over successful requests).",
        unit::MICROSECONDS,
        vec![Query(
            exprs::mean_per_request(&scope, triton::QUEUE_DURATION_US, &steps, &model),
            "{{model}} queue",
        )],
    );
    b.graph(
        "Compute time per request, per step",
        "Mean compute input + infer + output time per successful request of each step model. \
         A request in a batch of n is charged the whole batch's time.",
        unit::MICROSECONDS,
        vec![Query(
            exprs::mean_compute_per_request(&scope, &steps, &model),
            "{{model}} compute",
        )],
    );
    b.graph(
        "Batch size per step",
        "Elements per execution (nv_inference_count / nv_inference_exec_count): how well the \
         dynamic batcher fills batches.",
        unit::NONE,
        vec![Query(
            super::promql::ratio(
                &scope.rate(triton::INFERENCE_COUNT, &steps, &model),
                &scope.rate(triton::EXEC_COUNT, &steps, &model),
            ),
            "{{model}}",
        )],
    );
    b.graph(
        "Encoder session time per run",
        "Mean seconds per ONNX Runtime session run in the clip backend's encoders \
         (clip_encoder_session_seconds_total / clip_encoder_session_runs_total).",
        unit::SECONDS,
        vec![Query(
            super::promql::ratio(
                &scope.rate(metric::ENCODER_SESSION_SECONDS, &models.encoders(), &model),
                &scope.rate(metric::ENCODER_SESSION_RUNS, &models.encoders(), &model),
            ),
            "{{model}}",
        )],
    );

    b.row("clip backend: decode, tokenize, rejections");
    b.graph(
        "Images decoded per second, by format",
        "clip_images_decoded_total: images the preprocessing decoded, by format.",
        unit::OPS,
        vec![Query(
            scope.rate_all(metric::IMAGES_DECODED, &[label::FORMAT]),
            "{{format}}",
        )],
    );
    b.graph(
        "Image preprocess time per image",
        "Mean seconds in decode, resize and normalize per image, failed ones included.",
        unit::SECONDS,
        vec![Query(
            super::promql::ratio(
                &scope.rate_all(metric::IMAGE_PREPROCESS_SECONDS, &model),
                &scope.rate_all(metric::IMAGE_PREPROCESS, &model),
            ),
            "{{model}}",
        )],
    );
    b.graph(
        "Reduced-scale JPEG decodes, and texts",
        "JPEGs decoded at a reduced DCT scale (by scale); texts tokenized, and those cut to the \
         context length.",
        unit::OPS,
        vec![
            Query(
                scope.rate_all(metric::IMAGE_REDUCED_SCALE_DECODES, &[label::SCALE]),
                "JPEG at {{scale}}",
            ),
            Query(
                scope.rate_all(metric::TEXTS_TOKENIZED, &model),
                "texts tokenized",
            ),
            Query(
                scope.rate_all(metric::TEXTS_TRUNCATED, &model),
                "texts truncated",
            ),
        ],
    );
    b.graph(
        "Inputs refused per second, by reason",
        "clip_rejected_total: one per refused element, or one per request refused before its \
         elements could be read.",
        unit::OPS,
        vec![Query(
            scope.rate_all(metric::REJECTED, &[label::MODEL, label::REASON]),
            "{{model}}: {{reason}}",
        )],
    );
    b.graph(
        "Rejection ratio per model",
        "Refused over refused + accepted inputs (images decoded, texts tokenized, rows \
         encoded): what the ClipRejectionRatioHigh alert watches.",
        unit::RATIO,
        vec![Query(exprs::rejection_ratio(&scope, &model), "{{model}}")],
    );

    b.row("Hardware");
    let gpu = [INSTANCE, "gpu_uuid"];
    b.graph(
        "GPU utilisation",
        "nv_gpu_utilization per GPU (0-1), exported only where tritonserver finds GPUs.",
        unit::RATIO,
        vec![Query(
            max_by(&gpu, &selector(triton::GPU_UTILIZATION, &matchers)),
            "{{instance}} {{gpu_uuid}}",
        )],
    );
    b.graph(
        "GPU memory",
        "nv_gpu_memory_used_bytes and nv_gpu_memory_total_bytes per GPU, exported only where \
         tritonserver finds GPUs.",
        unit::BYTES,
        vec![
            Query(
                max_by(&gpu, &selector(triton::GPU_MEMORY_USED_BYTES, &matchers)),
                "{{instance}} {{gpu_uuid}} used",
            ),
            Query(
                max_by(&gpu, &selector(triton::GPU_MEMORY_TOTAL_BYTES, &matchers)),
                "{{instance}} {{gpu_uuid}} total",
            ),
        ],
    );
    b.graph(
        "CPU utilisation",
        "nv_cpu_utilization: the whole machine's CPU use (0-1) as tritonserver reads /proc/stat.",
        unit::RATIO,
        vec![Query(
            max_by(&[INSTANCE], &selector(triton::CPU_UTILIZATION, &matchers)),
            "{{instance}}",
        )],
    );
    b.graph(
        "CPU memory",
        "nv_cpu_memory_used_bytes and nv_cpu_memory_total_bytes: the machine's RAM.",
        unit::BYTES,
        vec![
            Query(
                max_by(
                    &[INSTANCE],
                    &selector(triton::CPU_MEMORY_USED_BYTES, &matchers),
                ),
                "{{instance}} used",
            ),
            Query(
                max_by(
                    &[INSTANCE],
                    &selector(triton::CPU_MEMORY_TOTAL_BYTES, &matchers),
                ),
                "{{instance}} total",
            ),
        ],
    );

    Dashboard {
        uid: format!("clip-triton-{}", options.job),
        title: format!("CLIP on Triton ({})", options.job),
        description: "Written by `repo-gen deploy monitoring`: Triton's metrics and the clip \
                      backend's, for the clip_text and clip_image ensembles."
            .into(),
        tags: vec!["triton".into(), "clip".into()],
        timezone: "browser".into(),
        schema_version: 39,
        version: 1,
        editable: true,
        refresh: "30s".into(),
        time: TimeRange {
            from: "now-1h".into(),
            to: "now".into(),
        },
        templating: Templating {
            list: vec![
                Variable {
                    name: DATASOURCE_VARIABLE.into(),
                    label: "Prometheus".into(),
                    kind: "datasource".into(),
                    query: "prometheus".into(),
                    datasource: None,
                    refresh: None,
                    multi: false,
                    include_all: false,
                    all_value: None,
                    hide: 0,
                },
                Variable {
                    name: INSTANCE_VARIABLE.into(),
                    label: "Triton".into(),
                    kind: "query".into(),
                    query: format!(
                        "label_values({}, instance)",
                        selector(triton::REQUEST_SUCCESS, &[job])
                    ),
                    datasource: Some(datasource),
                    // On time range change: servers come and go.
                    refresh: Some(2),
                    multi: true,
                    include_all: true,
                    all_value: Some(".*".into()),
                    hide: 0,
                },
            ],
        },
        panels: b.panels,
    }
}
