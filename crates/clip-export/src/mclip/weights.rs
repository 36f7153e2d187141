//! An M-CLIP text tower's weights from a safetensors file or torch
//! checkpoint with M-CLIP's
//! key names (`transformer.*` for the base encoder, `LinearTransformation.*`),
//! checked against a [`MclipTextArchitecture`].

use std::path::Path;

use super::arch::MclipTextArchitecture;
use crate::error::{ExportError, Result};
use crate::tensor_store::TensorStore;
use crate::weights::{read_mapped, LayerNorm, Linear, Source, Tensor};

/// The key layout's name in errors.
pub const MCLIP_LAYOUT: &str = "M-CLIP";

/// One post-LayerNorm encoder layer, matrices as `[out, in]`.
#[derive(Clone, Debug, PartialEq)]
pub struct BertLayer {
    pub q: Linear,
    pub k: Linear,
    pub v: Linear,
    /// `attention.output.dense`
    pub attention_out: Linear,
    /// `attention.output.LayerNorm`, after the attention residual.
    pub attention_norm: LayerNorm,
    /// `intermediate.dense`, `[mlp_width, width]`
    pub intermediate: Linear,
    /// `output.dense`, `[width, mlp_width]`
    pub output: Linear,
    /// `output.LayerNorm`, after the MLP residual.
    pub output_norm: LayerNorm,
}

#[derive(Clone, Debug, PartialEq)]
pub struct MclipTextWeights {
    pub arch: MclipTextArchitecture,
    /// `[vocab, width]`
    pub word_embeddings: Tensor,
    /// `[max_positions, width]`
    pub position_embeddings: Tensor,
    /// `[width]`: row 0 of the token type table, the row every token gets.
    pub token_type_embedding: Tensor,
    pub embeddings_norm: LayerNorm,
    pub layers: Vec<BertLayer>,
    /// `LinearTransformation`, `[embed_dim, width]`
    pub projection: Linear,
}

impl MclipTextWeights {
    /// Memory-maps a safetensors file or a torch.save zip checkpoint (the
    /// hub's M-CLIP repositories publish `pytorch_model.bin`) and reads it.
    pub fn load(path: impl AsRef<Path>, arch: &MclipTextArchitecture) -> Result<Self> {
        read_mapped(path.as_ref(), |bytes| Self::from_bytes(bytes, arch))
    }

    /// Reads safetensors or torch checkpoint bytes. The pooler (`transformer.pooler.dense.*`),
    /// which M-CLIP never uses, may be there; any other key the tower has no
    /// place for is refused.
    pub fn from_bytes(bytes: &[u8], arch: &MclipTextArchitecture) -> Result<Self> {
        arch.validate()?;
        let tensors = TensorStore::parse(bytes)?;
        let mut src = Source::new(&tensors, MCLIP_LAYOUT);
        let weights = read(&mut src, arch)?;
        src.finish()?;
        Ok(weights)
    }
}

fn read(src: &mut Source, arch: &MclipTextArchitecture) -> Result<MclipTextWeights> {
    let e = &arch.encoder;
    let width = e.width;
    let token_types = src.take(
        "transformer.embeddings.token_type_embeddings.weight",
        &[e.type_vocab_size, width],
    )?;
    let layers = (0..e.layers)
        .map(|i| {
            let p = format!("transformer.encoder.layer.{i}");
            Ok(BertLayer {
                q: src.linear(&format!("{p}.attention.self.query"), width, width)?,
                k: src.linear(&format!("{p}.attention.self.key"), width, width)?,
                v: src.linear(&format!("{p}.attention.self.value"), width, width)?,
                attention_out: src.linear(&format!("{p}.attention.output.dense"), width, width)?,
                attention_norm: src
                    .layer_norm(&format!("{p}.attention.output.LayerNorm"), width)?,
                intermediate: src.linear(&format!("{p}.intermediate.dense"), e.mlp_width, width)?,
                output: src.linear(&format!("{p}.output.dense"), width, e.mlp_width)?,
                output_norm: src.layer_norm(&format!("{p}.output.LayerNorm"), width)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let weights = MclipTextWeights {
        arch: *arch,
        word_embeddings: src.take(
            "transformer.embeddings.word_embeddings.weight",
            &[e.vocab_size, width],
        )?,
        position_embeddings: src.take(
            "transformer.embeddings.position_embeddings.weight",
            &[e.max_positions, width],
        )?,
        token_type_embedding: Tensor::new(vec![width], token_types.data[..width].to_vec()),
        embeddings_norm: src.layer_norm("transformer.embeddings.LayerNorm", width)?,
        layers,
        projection: src.linear("LinearTransformation", arch.embed_dim, width)?,
    };
    // The pooler is part of the checkpoint but not of M-CLIP's forward pass:
    // taken (shape-checked) when present, so `finish` does not refuse it.
    for (key, shape) in [
        ("transformer.pooler.dense.weight", &[width, width][..]),
        ("transformer.pooler.dense.bias", &[width][..]),
    ] {
        match src.take(key, shape) {
            Ok(_) | Err(ExportError::MissingKey { .. }) => {}
            Err(other) => return Err(other),
        }
    }
    Ok(weights)
}
