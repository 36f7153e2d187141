//! M-CLIP's multilingual text towers (`M-CLIP/XLM-Roberta-Large-Vit-B-32`,
//! `-Vit-B-16Plus`, `-Vit-L-14`, `M-CLIP/LABSE-Vit-L-14`): a BERT-family
//! encoder, the attention-mask mean of its last hidden state, and a linear
//! map into the paired CLIP's embedding space (unnormalised). The image
//! towers are ordinary open_clip ViTs, exported by the CLIP path.
//!
//! The textual model maps `INPUT_IDS` and `ATTENTION_MASK`, int64 `[batch,
//! sequence]` with the sequence dynamic (up to 512), to `EMBEDDING` float
//! `[batch, embed_dim]`. Rows padded to any length give the same
//! embedding: padding is masked out of attention and pooling.

pub mod arch;
mod graph;
pub mod weights;

use crate::error::Result;
use crate::onnx::{self, OnnxModel, WeightDtype};
use crate::{quantize, ExportOptions};

pub use arch::{BertEncoder, EncoderFamily, MclipTextArchitecture};
pub use graph::SEQUENCE_DIM;
pub use weights::{BertLayer, MclipTextWeights, MCLIP_LAYOUT};

/// The M-CLIP text encoder: `INPUT_IDS`, `ATTENTION_MASK` -> `EMBEDDING`.
pub fn export_mclip_textual(
    weights: &MclipTextWeights,
    options: &ExportOptions,
) -> Result<OnnxModel> {
    weights.arch.validate()?;
    let mut graph = graph::text(weights, options.dtype);
    if options.dtype == WeightDtype::Int8 {
        quantize::quantize_weights(&mut graph);
    }
    Ok(onnx::encode_model(
        graph,
        metadata(weights, options),
        "M-CLIP text encoder: token ids and attention mask to the projected, mask-mean-pooled text embedding.",
        &options.external_data,
    ))
}

fn metadata(weights: &MclipTextWeights, options: &ExportOptions) -> Vec<(String, String)> {
    let arch = &weights.arch;
    [
        ("clip.tower", "textual".to_string()),
        ("clip.embed_dim", arch.embed_dim.to_string()),
        ("clip.activation", "gelu".to_string()),
        ("clip.weight_layout", MCLIP_LAYOUT.to_string()),
        ("clip.dtype", options.dtype.name().to_string()),
        ("mclip.base_family", arch.encoder.family.name().to_string()),
        ("mclip.pad_token_id", arch.encoder.pad_token_id.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}
