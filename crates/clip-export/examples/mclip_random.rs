//! Exports a random full-size M-CLIP text tower (the real shapes, seeded
//! random values), probes it with ONNX Runtime and writes it: the time and
//! memory of an export without downloading a checkpoint.
//!
//! ```sh
//! export ORT_DYLIB_PATH=$(bash scripts/install-onnxruntime.sh)
//! cargo build --release -p clip-export --example mclip_random
//! /usr/bin/time -v target/release/examples/mclip_random xlm-roberta-large 640 /tmp/mclip [fp32|fp16|int8]
//! ```

use std::path::PathBuf;
use std::time::Instant;

use clip_export::{
    export_mclip_textual, verify_mclip_textual, ExportOptions, MclipTextArchitecture,
    MclipTextWeights, OrtRuntime, WeightDtype,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [base, dims, out, rest @ ..] = &args[..] else {
        eprintln!("usage: mclip_random xlm-roberta-large|labse NUM_DIMS OUT_DIR [fp32|fp16|int8]");
        std::process::exit(2);
    };
    let embed_dim: usize = dims.parse()?;
    let arch = match base.as_str() {
        "xlm-roberta-large" => MclipTextArchitecture::xlm_roberta_large(embed_dim),
        "labse" => MclipTextArchitecture::labse(embed_dim),
        other => return Err(format!("unknown base {other}").into()),
    };
    let dtype = match rest.first().map(String::as_str) {
        None | Some("fp32") => WeightDtype::F32,
        Some("fp16") => WeightDtype::F16,
        Some("int8") => WeightDtype::Int8,
        Some(other) => return Err(format!("unknown dtype {other}").into()),
    };

    let start = Instant::now();
    let weights = MclipTextWeights::random(&arch, 1)?;
    eprintln!("random weights in {:?}", start.elapsed());

    let start = Instant::now();
    let options = ExportOptions {
        dtype,
        ..Default::default()
    };
    let model = export_mclip_textual(&weights, &options)?;
    drop(weights);
    eprintln!(
        "exported in {:?}: model {} bytes, external data {} bytes",
        start.elapsed(),
        model.model.len(),
        model.external_data.as_ref().map_or(0, |e| e.bytes.len())
    );

    // As an exporter would: probe first (a model with external data is
    // written to a temporary folder for the runtime), then write.
    let start = Instant::now();
    let runtime = OrtRuntime::load(None, "a path")?;
    let report = verify_mclip_textual(&runtime, &model, &arch)?;
    eprintln!("probed in {:?}: {report:?}", start.elapsed());

    let start = Instant::now();
    let written = model.write(&PathBuf::from(out), "model.onnx")?;
    eprintln!("written in {:?}: {written:?}", start.elapsed());
    Ok(())
}
