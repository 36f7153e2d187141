//! Our image preprocessing and its decode-only floor, in process, on one
//! thread and on all cores, over the bench photos.
//!
//! - `clip`: `ImagePreprocessor::preprocess_into` with the options of the
//!   `bench_clip_image_i1` model, what the `clip` backend runs per image;
//! - `floor`: libjpeg-turbo decoding the same photo to RGB at the DCT scale
//!   `clip-image` picked for it (asked through `preprocess_reporting`, so the
//!   rule stays the crate's), and nothing else: no resize, crop or normalize.
//!
//! Both are measured the same way, so clip / floor is like for like. Each
//! writes `<OUT>/<implementation>.json` (the schema `crate::peers` reads),
//! and `<OUT>/options.json` holds the options, for scripts/bench/dali.py.

use std::path::{Path, PathBuf};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clip_contract::param;
use clip_image::{ImageOptions, ImagePreprocessor};
use serde_json::{json, Value};

use crate::prepare::{parameter, variant};

#[derive(clap::Args)]
pub struct Args {
    /// The repository `clip-bench prepare` filled (the options of bench_clip_image_i1).
    #[arg(long)]
    repo: PathBuf,
    /// Folder of photos.py's output (manifest.json and one folder per size).
    #[arg(long)]
    photos: PathBuf,
    /// Measuring time per size and thread count, after one warm-up pass.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Folder of the JSON results (clip.json, floor.json).
    #[arg(long)]
    out: PathBuf,
}

pub fn run(args: &Args) -> Result<()> {
    let options = options(&args.repo)?;
    let preprocessor = &ImagePreprocessor::new(options)?;
    let manifest: Value = serde_json::from_str(
        &std::fs::read_to_string(args.photos.join("manifest.json")).context("manifest.json")?,
    )?;
    let all = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut clip = Vec::new();
    let mut floor = Vec::new();
    for size in manifest["sizes"].as_array().context("manifest sizes")? {
        let name = size["name"].as_str().context("size name")?;
        let mut photos = Vec::new();
        for file in size["files"].as_array().context("size files")? {
            let bytes = std::fs::read(args.photos.join(file["file"].as_str().context("file")?))?;
            let mut out = vec![0f32; preprocessor.pixels_per_image()];
            let decode = preprocessor.preprocess_reporting(&bytes, &mut out)?;
            photos.push((bytes, decode.scale_denominator));
        }
        let scales: Vec<u32> = photos.iter().map(|p| p.1).collect();
        for threads in dedup([1, all]) {
            let pixels = preprocessor.pixels_per_image();
            let ours = measure(&photos, threads, args.seconds, || {
                let mut out = vec![0f32; pixels];
                move |(bytes, _): &(Vec<u8>, u32)| {
                    preprocessor
                        .preprocess_into(bytes, &mut out)
                        .map_err(Into::into)
                }
            })?;
            let decode = measure(&photos, threads, args.seconds, || {
                let mut out = Vec::new();
                move |(bytes, denom): &(Vec<u8>, u32)| decode_at(bytes, *denom, &mut out)
            })?;
            for (results, m, what) in [(&mut clip, ours, "clip"), (&mut floor, decode, "floor")] {
                eprintln!(
                    "clip-bench inprocess: {what} {name} {threads} thread(s): {:.1} images/s",
                    m.images as f64 / m.wall_s
                );
                results.push(m.json(name, threads, &scales));
            }
        }
    }
    std::fs::create_dir_all(&args.out)?;
    let options = json!({ "size": options.size, "mean": options.mean, "std": options.std });
    std::fs::write(args.out.join("options.json"), options.to_string())?;
    for (name, results) in [("clip", clip), ("floor", floor)] {
        let doc = json!({ "implementation": name, "cores": all, "results": results });
        std::fs::write(
            args.out.join(format!("{name}.json")),
            serde_json::to_vec_pretty(&doc)?,
        )?;
    }
    Ok(())
}

/// The bench_clip_image_i1 model's options, read from its config as the backend reads them.
fn options(repo: &Path) -> Result<ImageOptions> {
    let path = repo.join(variant("clip", "image", 1)).join("config.pbtxt");
    let config =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let triple = |key: &str| -> Result<[f32; 3]> {
        let values: Vec<f32> = parameter(&config, key)?
            .split(',')
            .map(|v| v.trim().parse())
            .collect::<Result<_, _>>()?;
        values
            .try_into()
            .map_err(|v| anyhow::anyhow!("{key}: expected three values, got {v:?}"))
    };
    Ok(ImageOptions {
        size: parameter(&config, param::IMAGE_SIZE)?.parse()?,
        mean: triple(param::IMAGE_MEAN)?,
        std: triple(param::IMAGE_STD)?,
        max_pixels: parameter(&config, param::MAX_PIXELS)?.parse()?,
        reduced_scale_decode: parameter(&config, param::REDUCED_SCALE_DECODE)?.parse()?,
        center_crop: clip_image::CenterCrop::from_name(&parameter(&config, param::CENTER_CROP)?)
            .ok_or_else(|| anyhow::anyhow!("{}: unknown", param::CENTER_CROP))?,
    })
}

/// RGB decode at 1/`denom`. A fresh handle per image, as clip-image makes one.
fn decode_at(bytes: &[u8], denom: u32, out: &mut Vec<u8>) -> Result<()> {
    let mut tj = turbojpeg::Decompressor::new()?;
    let header = tj.read_header(bytes)?;
    let factor = turbojpeg::ScalingFactor::new(1, denom as usize);
    tj.set_scaling_factor(factor)?;
    let (width, height) = (factor.scale(header.width), factor.scale(header.height));
    out.resize(width * height * 3, 0);
    let image = turbojpeg::Image {
        pixels: &mut out[..],
        width,
        pitch: width * 3,
        height,
        format: turbojpeg::PixelFormat::RGB,
    };
    tj.decompress(bytes, image)?;
    Ok(())
}

struct Measured {
    images: u64,
    wall_s: f64,
    cpu_s: f64,
}

impl Measured {
    fn json(&self, size: &str, threads: usize, scales: &[u32]) -> Value {
        json!({
            "size": size,
            "threads": threads,
            "images": self.images,
            "wall_s": self.wall_s,
            "cpu_s": self.cpu_s,
            "images_per_second": self.images as f64 / self.wall_s,
            "scale_denominators": scales,
        })
    }
}

/// `threads` threads, each with its own state from `make`, going round the
/// photos (each from its own start) for `seconds` after one warm-up pass.
fn measure<T, M, F>(photos: &[T], threads: usize, seconds: f64, make: M) -> Result<Measured>
where
    T: Sync,
    M: Fn() -> F + Sync,
    F: FnMut(&T) -> Result<()>,
{
    let start_line = Barrier::new(threads + 1);
    let window = Duration::from_secs_f64(seconds);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let (make, start_line) = (&make, &start_line);
                scope.spawn(move || -> Result<u64> {
                    let mut step = make();
                    let warm = photos.iter().try_for_each(&mut step);
                    start_line.wait();
                    warm?;
                    let start = Instant::now();
                    let mut done = 0u64;
                    for photo in photos.iter().cycle().skip(t) {
                        if start.elapsed() >= window {
                            break;
                        }
                        step(photo)?;
                        done += 1;
                    }
                    Ok(done)
                })
            })
            .collect();
        start_line.wait();
        let (cpu0, start) = (cpu_seconds(), Instant::now());
        let mut images = 0;
        for worker in workers {
            match worker.join() {
                Ok(done) => images += done?,
                Err(_) => bail!("a measuring thread panicked"),
            }
        }
        Ok(Measured {
            images,
            wall_s: start.elapsed().as_secs_f64(),
            cpu_s: cpu_seconds() - cpu0,
        })
    })
}

/// This process's user + system CPU time: all threads, so a peer that keeps
/// helper threads busy shows it.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

fn dedup(counts: [usize; 2]) -> Vec<usize> {
    let mut counts = counts.to_vec();
    counts.dedup();
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_floor_decodes_at_the_scale_clip_image_reports() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/images/inputs/large_2mp.jpg"
        );
        let bytes = std::fs::read(path).unwrap();
        let preprocessor = ImagePreprocessor::new(ImageOptions {
            reduced_scale_decode: true,
            ..ImageOptions::default()
        })
        .unwrap();
        let mut pixels = vec![0f32; preprocessor.pixels_per_image()];
        let decode = preprocessor
            .preprocess_reporting(&bytes, &mut pixels)
            .unwrap();
        // 1920x1080 for size 224: 1/2 keeps the shortest side >= 448, 1/4 does not.
        assert_eq!(decode.scale_denominator, 2);
        let mut rgb = Vec::new();
        decode_at(&bytes, decode.scale_denominator, &mut rgb).unwrap();
        assert_eq!(rgb.len(), 960 * 540 * 3);
    }
}
