//! CLIP weights (safetensors, or torch.save checkpoints) to ONNX, in Rust.
//!
//! ```no_run
//! use clip_export::{ClipArchitecture, ClipWeights, ExportOptions, OrtRuntime};
//! # fn main() -> Result<(), clip_export::ExportError> {
//! let config = std::fs::read_to_string("config.json").unwrap();
//! let arch = ClipArchitecture::from_config_json(&config)?;
//! let weights = ClipWeights::load("model.safetensors", &arch)?;
//! let options = ExportOptions::default();
//! let textual = clip_export::export_textual(&weights, &options)?;
//! let visual = clip_export::export_visual(&weights, &options)?;
//!
//! // Probe both with ONNX Runtime before writing anything.
//! let runtime = OrtRuntime::load(None, "--ort-library")?; // None: ORT_DYLIB_PATH
//! clip_export::verify_textual(&runtime, &textual, &arch)?;
//! clip_export::verify_visual(&runtime, &visual, &arch)?;
//! textual.write("repo/clip_text_encoder/1".as_ref(), "model.onnx")?;
//! visual.write("repo/clip_image_encoder/1".as_ref(), "model.onnx")?;
//! # Ok(())
//! # }
//! ```
//!
//! - [`ClipArchitecture`] comes from a transformers `config.json` or an
//!   open_clip `open_clip_config.json`.
//! - [`ClipWeights`] reads either key layout (detected from the names) and
//!   checks every tensor's shape, from a safetensors file or a PyTorch
//!   checkpoint in torch.save's zip format (torch >= 1.6: `pytorch_model.bin`,
//!   `open_clip_pytorch_model.bin`, `.pt`), told apart by the first bytes.
//!   The checkpoint is read without Python ([`torch_zip`]): its pickle by a
//!   reader that calls nothing and refuses every global but OrderedDict,
//!   torch's tensor rebuilders and typed storages; its tensors as strided
//!   views of the memory-mapped storage records (f32, f16, bf16), each record
//!   CRC-checked. The state dict is the top-level dict or the one under
//!   `state_dict` (a `module.` prefix dropped, as open_clip does) or `model`.
//!   Refused, each with its own [`TorchError`]: the legacy format (before
//!   torch 1.6), TorchScript archives (openai's `.pt` files), big-endian
//!   checkpoints, compressed, truncated or corrupt archives, storages shorter
//!   than their views.
//! - The textual model maps `INPUT_IDS` int64 `[batch, context]` to
//!   `EMBEDDING` float `[batch, embed_dim]`; the visual model maps
//!   `PIXEL_VALUES` float `[batch, 3, S, S]` to `EMBEDDING`. Opset 17, weights
//!   as initializers, dynamic batch. The embeddings are the unnormalised
//!   projections, as `get_text_features`/`get_image_features` return them.
//! - `WeightDtype::Int8` keeps the float32 graph but stores every weight
//!   matrix as int8 per output channel, for ONNX Runtime's dynamic
//!   quantization kernels on the CPU ([`quantize`]).
//! - M-CLIP's multilingual text towers ([`mclip`]): [`MclipTextArchitecture`]
//!   from an M-CLIP `config.json`, [`MclipTextWeights`] from its
//!   safetensors, [`export_mclip_textual`] to a model taking `INPUT_IDS` and
//!   `ATTENTION_MASK` int64 `[batch, sequence]`, [`verify_mclip_textual`].
//! - [`OrtRuntime`] loads libonnxruntime at run time through clip-ort (a
//!   path given, else `ORT_DYLIB_PATH`; `scripts/install-onnxruntime.sh`
//!   installs 1.31.1).

pub mod arch;
pub mod error;
mod graph;
mod image_input;
mod json_section;
pub mod mclip;
pub mod onnx;
mod pickle;
pub mod quantize;
pub mod random;
mod resnet;
pub mod resnet_weights;
mod tensor_store;
pub mod torch_zip;
pub mod verify;
pub mod weights;
mod zip_archive;

/// The ONNX protobuf types (this crate's subset of onnx.proto).
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/onnx.rs"));
}

pub use arch::{
    Activation, ClipArchitecture, TextPooling, TextTower, VisionKind, VisionTower, CLIP_EOT_ID,
    RESNET_DOWNSAMPLING,
};
pub use error::{ExportError, Result};
pub use graph::BATCH_DIM;
pub use image_input::VisualInput;
pub use mclip::{export_mclip_textual, MclipTextArchitecture, MclipTextWeights};
pub use onnx::{ExternalData, ExternalDataPolicy, OnnxModel, WeightDtype, OPSET};
pub use random::{default_text_pooling, RANDOM_INIT_STD};
pub use torch_zip::{StridedTensor, TorchCheckpoint, TorchError};
pub use verify::{
    verify_mclip_textual, verify_textual, verify_visual, verify_visual_pixels, Embeddings,
    LoadedModel, OrtRuntime, ProbeReport,
};
pub use weights::{ClipWeights, VisualWeights, WeightLayout};

/// How the models are written.
#[derive(Clone, Debug, Default)]
pub struct ExportOptions {
    pub dtype: WeightDtype,
    pub external_data: ExternalDataPolicy,
}

/// The text encoder: `INPUT_IDS` -> `EMBEDDING`.
pub fn export_textual(weights: &ClipWeights, options: &ExportOptions) -> Result<OnnxModel> {
    weights.arch.validate()?;
    let graph = graph::textual(weights, options.dtype);
    Ok(encode(
        graph,
        weights,
        options,
        "textual",
        "CLIP text encoder: token ids to the projected text embedding (get_text_features).",
    ))
}

/// The image encoder: `PIXEL_VALUES` -> `EMBEDDING`.
pub fn export_visual(weights: &ClipWeights, options: &ExportOptions) -> Result<OnnxModel> {
    weights.arch.validate()?;
    let graph = visual_graph(weights, options.dtype, VisualInput::Normalised);
    Ok(encode(
        graph,
        weights,
        options,
        "visual",
        "CLIP image encoder: normalised pixels to the projected image embedding (get_image_features).",
    ))
}

/// The pixel path's image encoder: `PIXELS` (uint8 HWC, resized and
/// cropped) -> `EMBEDDING`, normalising with `mean` and `std` in the graph.
pub fn export_visual_pixels(
    weights: &ClipWeights,
    options: &ExportOptions,
    mean: [f32; 3],
    std: [f32; 3],
) -> Result<OnnxModel> {
    weights.arch.validate()?;
    let graph = visual_graph(weights, options.dtype, VisualInput::Pixels { mean, std });
    Ok(encode(
        graph,
        weights,
        options,
        "visual_pixels",
        "CLIP image encoder for decoded pixels: uint8 HWC crops, normalised in the graph, to the projected image embedding.",
    ))
}

/// Encodes a built graph, first quantizing its weight matrices for int8.
fn encode(
    mut graph: proto::GraphProto,
    weights: &ClipWeights,
    options: &ExportOptions,
    tower: &str,
    doc: &str,
) -> OnnxModel {
    if options.dtype == WeightDtype::Int8 {
        quantize::quantize_weights(&mut graph);
    }
    onnx::encode_model(
        graph,
        metadata(weights, options, tower),
        doc,
        &options.external_data,
    )
}

/// The image tower's graph, ViT or ResNet.
fn visual_graph(
    weights: &ClipWeights,
    dtype: WeightDtype,
    input: VisualInput,
) -> proto::GraphProto {
    match &weights.vision {
        VisualWeights::Transformer(w) => graph::visual(weights, w, dtype, input),
        VisualWeights::ResNet(w) => resnet::visual(weights, w, dtype, input),
    }
}

fn metadata(weights: &ClipWeights, options: &ExportOptions, tower: &str) -> Vec<(String, String)> {
    let arch = &weights.arch;
    let mut entries = vec![
        ("clip.tower", tower.to_string()),
        ("clip.embed_dim", arch.embed_dim.to_string()),
        ("clip.activation", arch.activation.name().to_string()),
        ("clip.weight_layout", weights.layout.name().to_string()),
        ("clip.dtype", options.dtype.name().to_string()),
    ];
    if let Some(scale) = weights.logit_scale {
        entries.push(("clip.logit_scale", scale.to_string()));
    }
    entries
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
}
