//! Exports a CLIP checkpoint to `textual.onnx` and `visual.onnx`, after the
//! ONNX Runtime probe run.
//!
//! ```sh
//! export ORT_DYLIB_PATH=$(bash scripts/install-onnxruntime.sh)
//! cargo run --release -p clip-export --example export -- \
//!     tests/fixtures/tiny-clip/gelu/config.json tests/fixtures/tiny-clip/gelu/model.safetensors /tmp/out [fp16|int8]
//! ```

use std::path::PathBuf;
use std::time::Instant;

use clip_export::{ClipArchitecture, ClipWeights, ExportOptions, OrtRuntime, WeightDtype};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [config, weights, out, rest @ ..] = &args[..] else {
        eprintln!("usage: export CONFIG.json WEIGHTS(.safetensors|.bin) OUT_DIR [fp16|int8]");
        std::process::exit(2);
    };
    let dtype = match rest.first().map(String::as_str) {
        None | Some("fp32") => WeightDtype::F32,
        Some("fp16") => WeightDtype::F16,
        Some("int8") => WeightDtype::Int8,
        Some(other) => return Err(format!("unknown dtype {other}").into()),
    };

    let start = Instant::now();
    let arch = ClipArchitecture::from_config_json(&std::fs::read_to_string(config)?)?;
    let weights = ClipWeights::load(weights, &arch)?;
    eprintln!(
        "loaded {} layout in {:?}",
        weights.layout.name(),
        start.elapsed()
    );

    let options = ExportOptions {
        dtype,
        ..Default::default()
    };
    let start = Instant::now();
    let textual = clip_export::export_textual(&weights, &options)?;
    let visual = clip_export::export_visual(&weights, &options)?;
    eprintln!("exported in {:?}", start.elapsed());

    let runtime = OrtRuntime::load(None, "a path")?;
    let report = clip_export::verify_textual(&runtime, &textual, &arch)?;
    eprintln!("textual probe: {report:?}");
    let report = clip_export::verify_visual(&runtime, &visual, &arch)?;
    eprintln!("visual probe: {report:?}");

    let out = PathBuf::from(out);
    for path in textual.write(&out, "textual.onnx")? {
        println!("{}", path.display());
    }
    for path in visual.write(&out, "visual.onnx")? {
        println!("{}", path.display());
    }
    Ok(())
}
