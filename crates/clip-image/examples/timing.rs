//! Rough per-image timing: `cargo run --release -p clip-image --example timing [iterations]`.
//! Times single-image `preprocess_into` on one thread for a 0.27 MP, 2 MP and 12 MP JPEG, full-scale and
//! reduced-scale decode, then a batch of 16 through `preprocess_batch` (rayon).

use std::path::Path;
use std::time::Instant;

use clip_image::{ImageOptions, ImagePreprocessor};

fn main() {
    let iters: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/images/inputs");
    for reduced in [false, true] {
        let p = ImagePreprocessor::new(ImageOptions {
            reduced_scale_decode: reduced,
            ..ImageOptions::default()
        })
        .unwrap();
        let mut out = vec![0f32; p.pixels_per_image()];
        println!("reduced_scale_decode = {reduced}");
        for name in [
            "rocket.jpg",
            "large_2mp.jpg",
            "large_12mp.jpg",
            "astronaut.png",
        ] {
            let data = std::fs::read(dir.join(name)).unwrap();
            p.preprocess_into(&data, &mut out).unwrap(); // warm-up (scratch buffers, libjpeg handle)
            let t = Instant::now();
            for _ in 0..iters {
                p.preprocess_into(&data, &mut out).unwrap();
            }
            let ms = t.elapsed().as_secs_f64() * 1e3 / iters as f64;
            println!(
                "  {name:16} {:>9} bytes  {ms:8.2} ms/image (1 thread)",
                data.len()
            );
        }
        let data = std::fs::read(dir.join("large_2mp.jpg")).unwrap();
        let batch: Vec<&[u8]> = vec![&data; 16];
        let mut bout = vec![0f32; 16 * p.pixels_per_image()];
        p.preprocess_batch(&batch, &mut bout);
        let t = Instant::now();
        for _ in 0..iters.div_ceil(4) {
            assert!(p
                .preprocess_batch(&batch, &mut bout)
                .iter()
                .all(|r| r.is_ok()));
        }
        let ms = t.elapsed().as_secs_f64() * 1e3 / (iters.div_ceil(4) * 16) as f64;
        println!(
            "  batch of 16 x 2 MP ({} threads): {ms:.2} ms/image",
            rayon::current_num_threads()
        );
    }
}
