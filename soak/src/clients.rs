//! The clients: Rust ones sending raw gRPC requests (one connection each),
//! Rust ones going through the clip_client library's `encode`, and Python
//! processes with NVIDIA's tritonclient, all drawing from the same inputs.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use clip_client::{
    bytes_request, Client, ClientOptions, ConnectOptions, EncodeOptions, Input, ItemFailure,
    Modality, Triton,
};
use serde_json::json;

use crate::check::{self, Tally};
use crate::inputs::{BadKind, Element, Inputs, Mix};
use crate::rng::Rng;

/// One ensemble's names and embedding size.
#[derive(Clone, Debug)]
pub struct Model {
    pub name: String,
    pub input: String,
    pub output: String,
    pub dim: usize,
}

/// What every client shares.
pub struct Ctx {
    pub url: String,
    pub inputs: Inputs,
    pub text: Model,
    pub image: Model,
    pub mix: Mix,
    pub tolerance: f64,
    pub seed: u64,
    /// The load's start: latencies are timed from here.
    pub start: Instant,
    pub start_epoch: f64,
    pub deadline: Instant,
}

impl Ctx {
    pub fn model(&self, modality: Modality) -> &Model {
        match modality {
            Modality::Text => &self.text,
            Modality::Image => &self.image,
        }
    }

    pub fn now(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }
}

pub fn epoch_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

/// No retries: a soak must see every failure, not its third try.
pub fn connect_options() -> ConnectOptions {
    ConnectOptions {
        retries: 0,
        call_timeout: Duration::from_secs(120),
        ..ConnectOptions::default()
    }
}

/// A Rust client sending random requests of the mix over its own
/// connection until the deadline, each with its own request id.
pub async fn raw_client(ctx: Arc<Ctx>, id: usize) -> Tally {
    let mut tally = Tally::default();
    let triton = match Triton::connect_with(&ctx.url, connect_options()).await {
        Ok(triton) => triton,
        Err(e) => {
            tally.wrong(ctx.now(), "connect failed".into(), e.to_string());
            return tally;
        }
    };
    let mut rng = Rng::new(ctx.seed.wrapping_add(1000 + id as u64));
    let mut sequence = 0u64;
    while Instant::now() < ctx.deadline {
        let plan = ctx.inputs.plan(&mut rng, &ctx.mix);
        let model = ctx.model(plan.modality);
        let payloads: Vec<&[u8]> = plan.elements.iter().map(|e| ctx.inputs.bytes(*e)).collect();
        let mut request = bytes_request(&model.name, &model.input, &model.output, &payloads);
        let request_id = format!("rust{id}-{sequence}");
        sequence += 1;
        request.id = request_id.clone();
        tally.requests += 1;
        tally.sent(&ctx.inputs, &plan.elements);
        let t = ctx.now();
        let started = Instant::now();
        let outcome = triton.infer(request).await;
        tally.latency(t, started.elapsed().as_secs_f64() * 1e3, plan.modality);
        check::check_request(&ctx, &plan, &request_id, outcome, t, &mut tally);
    }
    tally
}

/// A Rust client calling `Client::encode` on 2 to 8 mixed sentences and
/// photos, good and bad, with random batch sizes: the library sends them
/// in per-modality requests and splits refused ones until each bad item is
/// alone, so every item is checked on its own.
pub async fn library_client(ctx: Arc<Ctx>, id: usize) -> Tally {
    let mut tally = Tally::default();
    let options = ClientOptions {
        connect: connect_options(),
        ..ClientOptions::default()
    };
    let client = match Client::connect_with(&ctx.url, options).await {
        Ok(client) => client,
        Err(e) => {
            tally.wrong(ctx.now(), "connect failed".into(), e.to_string());
            return tally;
        }
    };
    let mut rng = Rng::new(ctx.seed.wrapping_add(2000 + id as u64));
    let inputs = &ctx.inputs;
    let mut call = 0u64;
    while Instant::now() < ctx.deadline {
        let count = 2 + rng.below(7);
        let mut heavy_used = false;
        let elements: Vec<(Modality, Element)> = (0..count)
            .map(|_| {
                let modality = if rng.chance(ctx.mix.text_share) {
                    Modality::Text
                } else {
                    Modality::Image
                };
                let bad = match modality {
                    Modality::Text => ctx.mix.text_bad,
                    Modality::Image => ctx.mix.image_bad,
                };
                // Sentences are Strings here: no invalid UTF-8 through the library.
                let kinds: Vec<_> = inputs
                    .kinds_of(modality)
                    .into_iter()
                    .filter(|(kind, _)| *kind != BadKind::InvalidUtf8)
                    .collect();
                if !kinds.is_empty() && rng.chance(bad) {
                    let (_, ids) = rng.pick(&kinds);
                    return (modality, Element::Bad(*rng.pick(ids)));
                }
                (
                    modality,
                    Element::Good(inputs.random_good(modality, &mut rng, &mut heavy_used)),
                )
            })
            .collect();
        let items: Vec<Input> = elements
            .iter()
            .map(|(modality, element)| {
                let bytes = inputs.bytes(*element);
                match modality {
                    Modality::Text => Input::text(String::from_utf8_lossy(bytes).into_owned()),
                    Modality::Image => Input::image_bytes(bytes.to_vec()),
                }
            })
            .collect();
        let options = EncodeOptions {
            batch_size: 1 + rng.below(4),
            concurrency: 2,
            normalize: false,
            ..Default::default()
        };
        let plain: Vec<Element> = elements.iter().map(|(_, e)| *e).collect();
        tally.requests += 1;
        tally.sent(inputs, &plain);
        let what = format!("library{id}-{call}");
        call += 1;
        let t = ctx.now();
        let started = Instant::now();
        let outcome = client.encode(items, &options).await;
        let ms = started.elapsed().as_secs_f64() * 1e3;
        // Mostly images when any image is there: record under the heavier one.
        let modality = if elements.iter().any(|(m, _)| *m == Modality::Image) {
            Modality::Image
        } else {
            Modality::Text
        };
        tally.latency(t, ms, modality);
        let encoded = match outcome {
            Ok(encoded) => encoded,
            Err(e) => {
                check::unexpected(&mut tally, t, &what, &e);
                continue;
            }
        };
        if encoded.len() != elements.len() {
            tally.wrong(
                t,
                "library: an item missing from encode's results".into(),
                format!(
                    "{what}: {} results for {} items",
                    encoded.len(),
                    elements.len()
                ),
            );
            continue;
        }
        for (position, (item, (modality, element))) in encoded.iter().zip(&elements).enumerate() {
            if item.index != position {
                tally.wrong(
                    t,
                    "library: results out of input order".into(),
                    format!("{what}: result {position} is item {}", item.index),
                );
                continue;
            }
            let tensor = &ctx.model(*modality).input;
            match (element, &item.result) {
                (Element::Good(g), Ok(embedding)) => {
                    if check::check_row(inputs, &mut tally, t, *g, embedding, ctx.tolerance) {
                        tally.succeeded += 1;
                    }
                }
                (Element::Good(g), Err(error)) => tally.wrong(
                    t,
                    format!(
                        "a good {} refused (library): {}",
                        inputs.goods[*g].class,
                        check::named(&error.failure.to_string(), tensor).1
                    ),
                    format!("{what}: {error}"),
                ),
                (Element::Bad(b), Err(error)) => {
                    let bad = &inputs.bads[*b];
                    let expected = format!("{tensor} element 0{}", bad.fragment);
                    match &error.failure {
                        ItemFailure::Rejected(message) if message.contains(&expected) => {
                            tally.refused_as_expected += 1;
                            *tally
                                .refused_naming
                                .entry(bad.kind.name().into())
                                .or_default() += 1;
                        }
                        failure => tally.wrong(
                            t,
                            format!(
                                "{} refused with another reason (library): {}",
                                bad.kind.name(),
                                check::named(&failure.to_string(), tensor).1
                            ),
                            format!("{what}: expected {expected:?}, got: {error}"),
                        ),
                    }
                }
                (Element::Bad(b), Ok(_)) => tally.wrong(
                    t,
                    format!(
                        "a bad element accepted (library): {}",
                        inputs.bads[*b].kind.name()
                    ),
                    format!("{what}: item {position} got an embedding"),
                ),
            }
        }
    }
    tally
}

/// Writes every payload to a file and the manifest the Python clients read.
pub fn write_manifest(ctx: &Ctx, work: &Path, python_seed: u64) -> Result<PathBuf> {
    let payloads = work.join("payloads");
    std::fs::create_dir_all(&payloads)?;
    let write = |name: String, bytes: &[u8]| -> Result<String> {
        let path = payloads.join(name);
        std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
        Ok(path.display().to_string())
    };
    let modality = |m: Modality| m.to_string();
    let inputs = &ctx.inputs;
    let goods = inputs
        .goods
        .iter()
        .enumerate()
        .map(|(i, g)| {
            Ok(json!({
                "modality": modality(g.modality),
                "class": g.class,
                "label": g.label,
                "file": write(format!("good-{i:04}"), &g.bytes)?,
                "expected": g.expected,
            }))
        })
        .collect::<Result<Vec<_>>>()?;
    let bads = inputs
        .bads
        .iter()
        .enumerate()
        .map(|(i, b)| {
            Ok(json!({
                "kind": b.kind.name(),
                "modality": modality(b.kind.modality()),
                "size_check": b.kind.size_check(),
                "file": write(format!("bad-{i:04}"), &b.bytes)?,
                "fragment": b.fragment,
            }))
        })
        .collect::<Result<Vec<_>>>()?;
    let kinds = |m: Modality| {
        inputs
            .kinds_of(m)
            .into_iter()
            .map(|(kind, ids)| json!([kind.name(), ids]))
            .collect::<Vec<_>>()
    };
    let model =
        |m: &Model| json!({"name": m.name, "input": m.input, "output": m.output, "dim": m.dim});
    let deadline_epoch = ctx.start_epoch
        + ctx
            .deadline
            .saturating_duration_since(ctx.start)
            .as_secs_f64();
    let manifest = json!({
        "url": ctx.url.trim_start_matches("grpc://").trim_start_matches("http://"),
        "start_epoch": ctx.start_epoch,
        "deadline_epoch": deadline_epoch,
        "seed": python_seed,
        "tolerance": ctx.tolerance,
        "models": {"text": model(&ctx.text), "image": model(&ctx.image)},
        "mix": ctx.mix,
        "goods": goods,
        "bads": bads,
        "text_goods": inputs.text_goods,
        "image_classes": inputs.image_classes,
        "bad_kinds": {"text": kinds(Modality::Text), "image": kinds(Modality::Image)},
    });
    let path = work.join("manifest.json");
    std::fs::write(&path, serde_json::to_vec(&manifest)?)?;
    Ok(path)
}

/// A Python tritonclient process, its result file and its log.
pub struct PythonClient {
    pub child: Child,
    pub out: PathBuf,
    pub log: PathBuf,
}

pub fn spawn_python(
    python: &Path,
    script: &Path,
    manifest: &Path,
    work: &Path,
    worker: usize,
) -> Result<PythonClient> {
    let out = work.join(format!("python-{worker}.json"));
    let log = work.join(format!("python-{worker}.log"));
    let _ = std::fs::remove_file(&out);
    let file = std::fs::File::create(&log)?;
    let child = Command::new(python)
        .arg(script)
        .arg("--manifest")
        .arg(manifest)
        .args(["--worker", &worker.to_string()])
        .arg("--out")
        .arg(&out)
        .stdout(file.try_clone()?)
        .stderr(file)
        .spawn()
        .with_context(|| format!("starting {} {}", python.display(), script.display()))?;
    Ok(PythonClient { child, out, log })
}

/// Waits for a Python client until `limit`, then reads its tally; a
/// client that failed is a wrong result, with its log's last lines.
pub fn finish_python(mut client: PythonClient, limit: Instant, t: f64) -> Tally {
    let status = loop {
        match client.child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < limit => std::thread::sleep(Duration::from_millis(200)),
            _ => {
                let _ = client.child.kill();
                let _ = client.child.wait();
                break None;
            }
        }
    };
    let log_tail = || {
        let text = std::fs::read_to_string(&client.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(5)..].join(" | ")
    };
    let mut failed = Tally::default();
    match status {
        Some(status) if status.success() => {}
        Some(status) => {
            failed.wrong(
                t,
                "a Python client failed".into(),
                format!("{status}: {}", log_tail()),
            );
            return failed;
        }
        None => {
            failed.wrong(
                t,
                "a Python client did not finish".into(),
                format!("killed: {}", log_tail()),
            );
            return failed;
        }
    }
    match std::fs::read(&client.out)
        .map_err(anyhow::Error::from)
        .and_then(|bytes| serde_json::from_slice::<Tally>(&bytes).map_err(Into::into))
    {
        Ok(tally) => tally,
        Err(e) => {
            failed.wrong(
                t,
                "a Python client wrote no result".into(),
                format!("{}: {e}", client.out.display()),
            );
            failed
        }
    }
}
