//! Our output vs PIL reference PNGs for any folder laid out like `tests/fixtures/images` (`inputs/<stem>.<ext>`,
//! `reference/<stem>.png`, as written by `scripts/fixtures/image.py` or `scripts/fixtures/parity_refs.py`), on
//! both decode paths:
//!
//! `cargo run --release -p clip-image --example parity [DIR]` (default: the committed fixtures).
//!
//! Per image: max and mean |difference| in uint8 levels, and how many samples differ by 1, 2 and more levels.

use std::path::{Path, PathBuf};

use clip_image::{ImageOptions, ImagePreprocessor};

fn main() {
    let dir = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/images")
        });
    let mut inputs: Vec<PathBuf> = std::fs::read_dir(dir.join("inputs"))
        .expect("DIR/inputs")
        .map(|e| e.unwrap().path())
        .collect();
    inputs.sort();
    for reduced in [false, true] {
        let opts = ImageOptions {
            reduced_scale_decode: reduced,
            ..ImageOptions::default()
        };
        let pre = ImagePreprocessor::new(opts).unwrap();
        let size = opts.size as usize;
        let mut out = vec![0f32; pre.pixels_per_image()];
        println!(
            "{} path: image, max levels, mean levels, samples off by 1 / 2 / >2",
            if reduced {
                "reduced-scale"
            } else {
                "full-scale"
            }
        );
        for input in &inputs {
            let stem = input.file_stem().unwrap().to_string_lossy();
            let reference = image::open(dir.join("reference").join(format!("{stem}.png")))
                .expect("reference png")
                .to_rgb8();
            assert_eq!(reference.dimensions(), (size as u32, size as u32));
            let bytes = std::fs::read(input).unwrap();
            if let Err(e) = pre.preprocess_into(&bytes, &mut out) {
                println!("  {stem:40} error: {e}");
                continue;
            }
            let (mut max, mut sum, mut hist) = (0u32, 0u64, [0usize; 3]);
            for (i, px) in reference.pixels().enumerate() {
                for c in 0..3 {
                    let o = out[c * size * size + i];
                    let level = ((o * opts.std[c] + opts.mean[c]) * 255.0).round() as i32;
                    let d = (level - px[c] as i32).unsigned_abs();
                    max = max.max(d);
                    sum += d as u64;
                    if d > 0 {
                        hist[(d as usize - 1).min(2)] += 1;
                    }
                }
            }
            let mean = sum as f64 / (3 * size * size) as f64;
            println!(
                "  {stem:40} max {max:3}  mean {mean:.4}  off by 1: {:6}  2: {:5}  >2: {:5}",
                hist[0], hist[1], hist[2]
            );
        }
    }
}
