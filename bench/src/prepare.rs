//! The benchmark's model variants and perf_analyzer input files.
//!
//! Variants (in the repository repo-gen wrote, beside its six models):
//! - `bench_clip_{image,text}_i{1,2}`: the `clip` backend's preprocessing,
//!   rendered by repo-gen's own model types with 1 or 2 instances;
//! - `bench_python_{image,text}_i{1,2}`: the same config (inputs, outputs,
//!   batching, instances) served by Triton's Python backend with
//!   `scripts/bench/python/{image,text}_model.py`, which read the model's
//!   facts from a `bench.json` written beside them;
//! - `bench_python_draft_image_i{1,2}`: the Python image model with PIL's
//!   `draft()`, so that libjpeg decodes large JPEGs at a reduced DCT scale.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use base64::Engine as _;
use clip_contract::{defaults, model, param, tensor, BACKEND_NAME};
use repo_gen::{
    Batching, DynamicBatching, FileSource, ImagePreprocessModel, ModelDir, TextPreprocessModel,
    VersionFile,
};
use serde_json::{json, Value};

/// Name of the Python backend in Triton.
const PYTHON_BACKEND: &str = "python";
/// The implementation name of the Python image model with PIL's draft().
const PYTHON_DRAFT: &str = "python_draft";

#[derive(clap::Args)]
pub struct Args {
    /// The repository repo-gen wrote (variants are added to it).
    #[arg(long)]
    repo: PathBuf,
    /// Folder of photos.py's output (manifest.json and one folder per size).
    #[arg(long)]
    photos: PathBuf,
    /// Folder with the Python models (image_model.py, text_model.py).
    #[arg(long)]
    python_models: PathBuf,
    /// site-packages of the Python environment the Python models import from.
    #[arg(long)]
    site_packages: PathBuf,
    /// Where the perf_analyzer input files go.
    #[arg(long)]
    data: PathBuf,
    /// How many sentences the text input file holds.
    #[arg(long, default_value_t = 1000)]
    sentences: usize,
    /// Largest batch of every variant.
    #[arg(long, default_value_t = 32)]
    max_batch_size: u32,
    /// Dynamic batcher delay of every variant.
    #[arg(long, default_value_t = 1000)]
    max_queue_delay_us: u64,
}

/// A variant's model name.
pub fn variant(implementation: &str, what: &str, instances: u32) -> String {
    format!("bench_{implementation}_{what}_i{instances}")
}

pub fn run(args: &Args) -> Result<()> {
    let image_config = read_config(&args.repo, model::IMAGE_PREPROCESS)?;
    let image_size: u32 = parameter(&image_config, param::IMAGE_SIZE)?.parse()?;
    let mean = triple(&parameter(&image_config, param::IMAGE_MEAN)?)?;
    let std = triple(&parameter(&image_config, param::IMAGE_STD)?)?;
    let tokenizer_dir = args
        .repo
        .join(model::TEXT_PREPROCESS)
        .join(repo_gen::VERSION);
    let text_config = read_config(&args.repo, model::TEXT_PREPROCESS)?;
    let pad = parameter(&text_config, param::PAD_TOKEN_ID)
        .ok()
        .map(|p| p.parse::<u32>())
        .transpose()?;
    let batching = Batching {
        max_batch_size: args.max_batch_size,
        dynamic: Some(DynamicBatching {
            preferred_batch_sizes: Vec::new(),
            max_queue_delay_us: Some(args.max_queue_delay_us),
        }),
    };
    let site_packages = args
        .site_packages
        .canonicalize()
        .with_context(|| format!("{}", args.site_packages.display()))?;

    for instances in [1, 2] {
        let mut image =
            ImagePreprocessModel::new(variant("clip", "image", instances), batching.clone());
        image.instances = instances;
        image.image_size = image_size;
        image.mean = mean;
        image.std = std;
        image.write_into(&args.repo)?;
        let mut text =
            TextPreprocessModel::new(variant("clip", "text", instances), batching.clone());
        text.instances = instances;
        text.pad_token_id = pad;
        text.write_into(&args.repo, Some(&tokenizer_dir))?;

        // The Python twins: the same configs on the Python backend.
        // Plain PIL, then PIL with draft() (a reduced-scale JPEG decode).
        for (implementation, draft) in [(PYTHON_BACKEND, false), (PYTHON_DRAFT, true)] {
            image.name = variant(implementation, "image", instances);
            let settings = json!({
                "site_packages": site_packages,
                "image_size": image_size,
                "mean": mean,
                "std": std,
                "draft": draft,
            });
            python_model(
                &args.repo,
                image.model_dir()?,
                &args.python_models.join("image_model.py"),
                &settings,
            )?;
        }
        text.name = variant(PYTHON_BACKEND, "text", instances);
        let settings = json!({
            "site_packages": site_packages,
            "context_length": defaults::CONTEXT_LENGTH,
            "tokenizer": defaults::TOKENIZER_FILE,
        });
        python_model(
            &args.repo,
            text.model_dir(Some(&tokenizer_dir.join(defaults::TOKENIZER_FILE)))?,
            &args.python_models.join("text_model.py"),
            &settings,
        )?;
    }

    fs::create_dir_all(&args.data)?;
    let manifest: Value = serde_json::from_str(
        &fs::read_to_string(args.photos.join("manifest.json")).context("photos manifest.json")?,
    )?;
    for size in manifest["sizes"].as_array().context("manifest sizes")? {
        let name = size["name"].as_str().context("size name")?;
        let mut rows = Vec::new();
        for file in size["files"].as_array().context("size files")? {
            let bytes = fs::read(args.photos.join(file["file"].as_str().context("file")?))?;
            rows.push(bytes_row(tensor::IMAGE, &bytes));
        }
        write_data(&args.data.join(format!("image_{name}.json")), rows)?;
    }
    // The pixel path's input (repo-gen --pixel-path): the encoder's cost does
    // not depend on the pixels' values, so two synthetic images serve.
    write_data(
        &args.data.join("pixels.json"),
        (0..2).map(|seed| pixels_row(image_size, seed)).collect(),
    )?;
    // The names scripts/bench.sh needs, so that it spells none itself.
    let env = format!(
        "TEXT_ENSEMBLE={}\nIMAGE_ENSEMBLE={}\nTEXT_PREPROCESS={}\nIMAGE_PREPROCESS={}\n\
         TEXT_ENCODER={}\nIMAGE_ENCODER={}\n\
         IMAGE_PIXELS={}\n\
         TEXT_INPUT={}\nIMAGE_INPUT={}\nEMBEDDING_OUTPUT={}\n\
         bench_variant() {{ echo \"bench_$1_$2_i$3\"; }}\n",
        model::TEXT_ENSEMBLE,
        model::IMAGE_ENSEMBLE,
        model::TEXT_PREPROCESS,
        model::IMAGE_PREPROCESS,
        model::TEXT_ENCODER,
        model::IMAGE_ENCODER,
        model::IMAGE_PIXELS,
        tensor::TEXT,
        tensor::IMAGE,
        tensor::EMBEDDING,
    );
    fs::write(args.data.join("models.env"), env)?;
    let rows = sentences(args.sentences)
        .iter()
        .map(|s| bytes_row(tensor::TEXT, s.as_bytes()))
        .collect();
    write_data(&args.data.join("text.json"), rows)?;
    eprintln!(
        "clip-bench: variants and inputs written (image size {image_size}, {} sentences)",
        args.sentences
    );
    Ok(())
}

fn read_config(repo: &Path, name: &str) -> Result<String> {
    let path = repo.join(name).join("config.pbtxt");
    fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
}

/// A string parameter's value in a config.pbtxt that repo-gen rendered.
pub fn parameter(config: &str, key: &str) -> Result<String> {
    let needle = format!("key: \"{key}\"");
    let at = config
        .find(&needle)
        .with_context(|| format!("no parameter {key}"))?;
    let rest = &config[at..];
    let start = rest.find("string_value: \"").context("no string_value")? + 15;
    let end = rest[start..].find('"').context("unterminated value")?;
    Ok(rest[start..start + end].to_owned())
}

fn triple(text: &str) -> Result<[f32; 3]> {
    let values: Vec<f32> = text
        .split(',')
        .map(|v| v.trim().parse())
        .collect::<Result<_, _>>()?;
    match values[..] {
        [a, b, c] => Ok([a, b, c]),
        _ => bail!("expected three values, got {text:?}"),
    }
}

/// The Python twin of a `clip` model: the same config, files and warmup
/// samples on the Python backend, with its model.py and settings.
fn python_model(repo: &Path, mut dir: ModelDir, script: &Path, settings: &Value) -> Result<()> {
    let ours = format!("backend: \"{BACKEND_NAME}\"");
    if !dir.config.contains(&ours) {
        bail!("rendered config of {} has no {ours}", dir.name);
    }
    dir.config = dir
        .config
        .replace(&ours, &format!("backend: \"{PYTHON_BACKEND}\""));
    dir.files.push(VersionFile::new(
        "model.py",
        FileSource::Copy(script.to_path_buf()),
    ));
    let model = dir.write_into(repo)?;
    fs::write(
        model.join(repo_gen::VERSION).join("bench.json"),
        serde_json::to_string_pretty(settings)?,
    )?;
    Ok(())
}

/// One perf_analyzer data entry for a TYPE_STRING input: `b64` holds the
/// tensor's wire form, a 4-byte little-endian length and the bytes.
fn bytes_row(input: &str, bytes: &[u8]) -> Value {
    let mut wire = Vec::with_capacity(bytes.len() + 4);
    wire.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    wire.extend_from_slice(bytes);
    let b64 = base64::engine::general_purpose::STANDARD.encode(wire);
    json!({ input: { "b64": b64 } })
}

/// One perf_analyzer data entry for the pixel path's UINT8 `[S, S, 3]`
/// input: a smooth colour pattern (HWC), as a decoded and cropped photo is laid out.
fn pixels_row(size: u32, seed: u32) -> Value {
    let size = size as usize;
    let content: Vec<u8> = (0..size * size * 3)
        .map(|i| {
            let (pixel, channel) = (i / 3, i % 3);
            let (x, y) = (pixel % size, pixel / size);
            ((x * (channel + 1) + y * 2 + seed as usize * 40) % 256) as u8
        })
        .collect();
    json!({ tensor::PIXELS: { "content": content, "shape": [size, size, 3] } })
}

fn write_data(path: &Path, rows: Vec<Value>) -> Result<()> {
    fs::write(path, serde_json::to_vec(&json!({ "data": rows }))?)
        .with_context(|| format!("writing {}", path.display()))
}

/// Caption-like English sentences of 4 to 20 words, the same on every run.
pub fn sentences(count: usize) -> Vec<String> {
    const START: &[&str] = &[
        "a photo of",
        "a close-up picture of",
        "an old photograph showing",
        "a blurry snapshot of",
        "a professional product shot of",
        "a painting of",
        "a drone view of",
        "an illustration of",
    ];
    const ADJ: &[&str] = &[
        "small", "red", "wooden", "crowded", "quiet", "shiny", "ancient", "colorful", "wet",
        "sleepy", "modern", "broken", "golden", "snowy",
    ];
    const NOUN: &[&str] = &[
        "cat",
        "bicycle",
        "kitchen",
        "lighthouse",
        "market",
        "dog",
        "train station",
        "mountain",
        "coffee cup",
        "skateboarder",
        "bridge",
        "garden",
        "laptop",
        "sailboat",
        "street food stall",
    ];
    const PLACE: &[&str] = &[
        "on a rainy evening in Tokyo",
        "next to a window",
        "at sunset",
        "in the middle of a busy street",
        "under a clear blue sky",
        "on a white background",
        "during a summer festival",
        "in a dimly lit room",
    ];
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut pick = |items: &[&'static str]| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        items[(state % items.len() as u64) as usize]
    };
    (0..count)
        .map(|i| {
            let mut s = format!("{} a {} {}", pick(START), pick(ADJ), pick(NOUN));
            if i % 2 == 0 {
                s.push_str(&format!(" and a {} {}", pick(ADJ), pick(NOUN)));
            }
            if i % 3 != 1 {
                s.push(' ');
                s.push_str(pick(PLACE));
            }
            s
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bytes_row_holds_the_length_prefix_then_the_bytes() {
        let row = bytes_row(tensor::TEXT, b"a cat");
        let b64 = row[tensor::TEXT]["b64"].as_str().unwrap();
        let wire = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        assert_eq!(wire, b"\x05\x00\x00\x00a cat");
    }

    #[test]
    fn a_pixels_row_is_hwc_with_its_shape() {
        let row = pixels_row(4, 0);
        assert_eq!(row[tensor::PIXELS]["shape"], json!([4, 4, 3]));
        let content = row[tensor::PIXELS]["content"].as_array().unwrap();
        assert_eq!(content.len(), 4 * 4 * 3);
        // Pixel (1, 0): the channels differ by their own step.
        assert_eq!(content[3..6], [json!(1), json!(2), json!(3)]);
        assert_ne!(pixels_row(4, 1), row);
    }

    #[test]
    fn parameters_are_read_back_from_a_rendered_config() {
        let batching = Batching {
            max_batch_size: 8,
            dynamic: None,
        };
        let mut image = ImagePreprocessModel::new("m", batching);
        image.image_size = 336;
        let config = image.render().unwrap();
        assert_eq!(parameter(&config, param::IMAGE_SIZE).unwrap(), "336");
        let mean = triple(&parameter(&config, param::IMAGE_MEAN).unwrap()).unwrap();
        assert_eq!(mean, defaults::IMAGE_MEAN);
        assert!(parameter(&config, param::PAD_TOKEN_ID).is_err());
    }

    #[test]
    fn sentences_are_the_same_on_every_run_and_look_like_captions() {
        let a = sentences(50);
        assert_eq!(a, sentences(50));
        assert!(a
            .iter()
            .all(|s| (4..=30).contains(&s.split_whitespace().count())));
        assert!(a.iter().collect::<std::collections::BTreeSet<_>>().len() > 40);
    }
}
