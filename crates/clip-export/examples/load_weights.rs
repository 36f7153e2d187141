//! How long `ClipWeights::load` takes on each weights file (safetensors or
//! torch.save checkpoint) and whether each reads exactly the first one's
//! weights. Prints one line per file, the second of two loads (page cache
//! warm).
//!
//! ```sh
//! cargo run --release -p clip-export --example load_weights -- \
//!     open_clip_config.json open_clip_model.safetensors open_clip_pytorch_model.bin
//! ```

use std::time::Instant;

use clip_export::{ClipArchitecture, ClipWeights};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [config, files @ ..] = &args[..] else {
        eprintln!("usage: load_weights CONFIG.json WEIGHTS...");
        std::process::exit(2);
    };
    let arch = ClipArchitecture::from_config_json(&std::fs::read_to_string(config)?)?;
    let mut first: Option<ClipWeights> = None;
    for file in files {
        ClipWeights::load(file, &arch)?;
        let start = Instant::now();
        let weights = ClipWeights::load(file, &arch)?;
        let elapsed = start.elapsed();
        let size = std::fs::metadata(file)?.len() as f64 / 1e6;
        let same = match &first {
            None => "the reference".to_string(),
            Some(reference) => format!("identical to the reference: {}", *reference == weights),
        };
        println!("{file}: {size:.1} MB loaded in {elapsed:.2?}; {same}");
        first.get_or_insert(weights);
    }
    Ok(())
}
