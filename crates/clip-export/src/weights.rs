//! CLIP weights from a safetensors file or a torch.save zip checkpoint
//! ([`crate::torch_zip`]), in transformers' or open_clip's key layout, mapped
//! onto one internal description and checked against a [`ClipArchitecture`].
//!
//! Every matrix is kept the way `torch.nn.Linear` stores it, `[out, in]`;
//! open_clip's projection parameters (used as `x @ proj`, `[in, out]`) are
//! transposed on load and its fused `in_proj` is split into q, k and v. All
//! values are widened to f32.

use std::collections::BTreeSet;
use std::fs::File;
use std::path::Path;

use crate::arch::{ClipArchitecture, VisionKind};
use crate::error::{ExportError, Result};
use crate::resnet_weights::{read_open_clip_resnet, ResNetWeights};
use crate::tensor_store::TensorStore;

/// A dense row-major f32 tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl Tensor {
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Self {
        assert_eq!(
            shape.iter().product::<usize>(),
            data.len(),
            "tensor data does not fill shape {shape:?}"
        );
        Tensor { shape, data }
    }

    /// The transpose of a matrix.
    pub fn transposed(&self) -> Tensor {
        assert_eq!(self.shape.len(), 2, "transpose of a non-matrix");
        let (rows, cols) = (self.shape[0], self.shape[1]);
        let mut data = vec![0.0; self.data.len()];
        for r in 0..rows {
            for c in 0..cols {
                data[c * rows + r] = self.data[r * cols + c];
            }
        }
        Tensor::new(vec![cols, rows], data)
    }
}

/// `y = x W^T + b`, with `weight` as `[out, in]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Linear {
    pub weight: Tensor,
    pub bias: Tensor,
}

#[derive(Clone, Debug, PartialEq)]
pub struct LayerNorm {
    pub weight: Tensor,
    pub bias: Tensor,
}

/// One pre-LayerNorm transformer block.
#[derive(Clone, Debug, PartialEq)]
pub struct Block {
    pub ln_1: LayerNorm,
    pub q: Linear,
    pub k: Linear,
    pub v: Linear,
    pub out: Linear,
    pub ln_2: LayerNorm,
    pub fc_1: Linear,
    pub fc_2: Linear,
}

#[derive(Clone, Debug, PartialEq)]
pub struct TextWeights {
    /// `[vocab, width]`
    pub token_embedding: Tensor,
    /// `[context, width]`
    pub position_embedding: Tensor,
    pub blocks: Vec<Block>,
    pub ln_final: LayerNorm,
    /// `[embed_dim, width]`
    pub projection: Tensor,
}

/// The image tower's weights, of either kind.
// One per model, mostly heap data: the variants' inline sizes do not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum VisualWeights {
    Transformer(VisionWeights),
    ResNet(ResNetWeights),
}

/// A ViT image tower.
#[derive(Clone, Debug, PartialEq)]
pub struct VisionWeights {
    /// `[width, 3, patch, patch]`, no bias.
    pub patch_embedding: Tensor,
    /// `[width]`
    pub class_embedding: Tensor,
    /// `[patches + 1, width]`
    pub position_embedding: Tensor,
    pub ln_pre: LayerNorm,
    pub blocks: Vec<Block>,
    pub ln_post: LayerNorm,
    /// `[embed_dim, width]`
    pub projection: Tensor,
}

/// Which naming scheme a checkpoint uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightLayout {
    /// transformers `CLIPModel`: `text_model.*`, `vision_model.*`,
    /// `text_projection.weight`, `visual_projection.weight`.
    Transformers,
    /// open_clip `CLIP`: text tower at the top level (`transformer.resblocks.*`,
    /// `token_embedding.weight`, ...) or under `text.` (`CustomTextCLIP`),
    /// vision tower under `visual.`.
    OpenClip,
}

impl WeightLayout {
    pub fn name(self) -> &'static str {
        match self {
            WeightLayout::Transformers => "transformers",
            WeightLayout::OpenClip => "open_clip",
        }
    }
}

/// A CLIP's weights, checked against its architecture.
#[derive(Clone, Debug, PartialEq)]
pub struct ClipWeights {
    pub arch: ClipArchitecture,
    pub layout: WeightLayout,
    pub text: TextWeights,
    pub vision: VisualWeights,
    /// The log of the similarity temperature, when the file has it.
    pub logit_scale: Option<f32>,
}

impl ClipWeights {
    /// Memory-maps a safetensors file or a torch.save zip checkpoint
    /// (`.bin`, `.pt`; told apart by content) and reads it.
    pub fn load(path: impl AsRef<Path>, arch: &ClipArchitecture) -> Result<Self> {
        read_mapped(path.as_ref(), |bytes| Self::from_bytes(bytes, arch))
    }

    /// Reads safetensors or torch checkpoint bytes; the layout is detected
    /// from the key names.
    pub fn from_bytes(bytes: &[u8], arch: &ClipArchitecture) -> Result<Self> {
        arch.validate()?;
        let tensors = TensorStore::parse(bytes)?;
        let names = tensors.names();
        let layout = detect_layout(&names)?;
        let mut source = Source::new(&tensors, layout.name());
        let weights = match layout {
            WeightLayout::Transformers => read_transformers(&mut source, arch)?,
            WeightLayout::OpenClip => read_open_clip(&mut source, arch)?,
        };
        source.finish()?;
        Ok(weights)
    }
}

/// Memory-maps a weights file and hands its bytes to `read`; the file's
/// path goes into the safetensors and torch readers' own errors.
pub(crate) fn read_mapped<T>(path: &Path, read: impl FnOnce(&[u8]) -> Result<T>) -> Result<T> {
    let file = File::open(path).map_err(|e| ExportError::io(path, e))?;
    // SAFETY: the map is only read, and only while this call runs; the
    // weights are copied out before it is dropped. A file truncated by
    // someone else meanwhile is the usual caveat of memory-mapped reads.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| ExportError::io(path, e))?;
    read(&map).map_err(|e| match e {
        ExportError::Safetensors(msg) => {
            ExportError::Safetensors(format!("{}: {msg}", path.display()))
        }
        ExportError::TorchCheckpoint { source, .. } => ExportError::TorchCheckpoint {
            path: Some(path.to_path_buf()),
            source,
        },
        other => other,
    })
}

fn detect_layout(names: &[String]) -> Result<WeightLayout> {
    let has = |prefixes: &[&str]| {
        names
            .iter()
            .any(|n| prefixes.iter().any(|p| n.starts_with(p)))
    };
    let hf = has(&["text_model.", "vision_model."]);
    let oc = has(&["visual.", "transformer.resblocks.", "text.transformer."]);
    match (hf, oc) {
        (true, false) => Ok(WeightLayout::Transformers),
        (false, true) => Ok(WeightLayout::OpenClip),
        _ => {
            let mut sorted: Vec<&str> = names.iter().map(String::as_str).collect();
            sorted.sort_unstable();
            let mut first_keys = sorted
                .iter()
                .take(6)
                .copied()
                .collect::<Vec<_>>()
                .join(", ");
            if sorted.is_empty() {
                first_keys = "(the file has no tensors)".into();
            } else if hf && oc {
                first_keys = format!("keys of both layouts are present; {first_keys}");
            }
            Err(ExportError::UnknownLayout { first_keys })
        }
    }
}

/// Keys a checkpoint may carry that hold no weights: transformers' position
/// id buffers (persistent in older versions), batch norms' update counters.
fn ignorable(name: &str) -> bool {
    name.ends_with("embeddings.position_ids") || name.ends_with(".num_batches_tracked")
}

pub(crate) struct Source<'a, 'data> {
    tensors: &'a TensorStore<'data>,
    names: BTreeSet<String>,
    used: BTreeSet<String>,
    /// The key layout's name, for errors.
    layout: &'static str,
}

impl<'a, 'data> Source<'a, 'data> {
    pub(crate) fn new(tensors: &'a TensorStore<'data>, layout: &'static str) -> Self {
        Source {
            tensors,
            names: tensors.names().into_iter().collect(),
            used: BTreeSet::new(),
            layout,
        }
    }

    pub(crate) fn take(&mut self, key: &str, expected: &[usize]) -> Result<Tensor> {
        let missing = || ExportError::MissingKey {
            key: key.to_string(),
            layout: self.layout,
        };
        let found = self.tensors.shape(key).ok_or_else(missing)?;
        if found != expected {
            return Err(ExportError::ShapeMismatch {
                key: key.to_string(),
                expected: expected.to_vec(),
                found,
            });
        }
        let data = self.tensors.read_f32(key).ok_or_else(missing)??;
        if data.iter().any(|v| !v.is_finite()) {
            return Err(ExportError::NonFinite {
                key: key.to_string(),
            });
        }
        self.used.insert(key.to_string());
        Ok(Tensor::new(found, data))
    }

    /// A scalar that may be stored with shape `[]` or `[1]`; absent is `None`.
    fn scalar(&mut self, key: &str) -> Result<Option<f32>> {
        let Some(shape) = self.tensors.shape(key) else {
            return Ok(None);
        };
        let expected: &[usize] = if shape.is_empty() { &[] } else { &[1] };
        Ok(Some(self.take(key, expected)?.data[0]))
    }

    pub(crate) fn linear(&mut self, prefix: &str, out: usize, inp: usize) -> Result<Linear> {
        Ok(Linear {
            weight: self.take(&format!("{prefix}.weight"), &[out, inp])?,
            bias: self.take(&format!("{prefix}.bias"), &[out])?,
        })
    }

    pub(crate) fn layer_norm(&mut self, prefix: &str, width: usize) -> Result<LayerNorm> {
        Ok(LayerNorm {
            weight: self.take(&format!("{prefix}.weight"), &[width])?,
            bias: self.take(&format!("{prefix}.bias"), &[width])?,
        })
    }

    pub(crate) fn finish(self) -> Result<()> {
        let extra: Vec<&String> = self
            .names
            .iter()
            .filter(|n| !self.used.contains(*n) && !ignorable(n))
            .collect();
        if extra.is_empty() {
            return Ok(());
        }
        let mut keys = extra
            .iter()
            .take(8)
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        if extra.len() > 8 {
            keys.push_str(", ...");
        }
        Err(ExportError::UnexpectedKeys {
            count: extra.len(),
            keys,
            layout: self.layout,
        })
    }
}

fn read_transformers(src: &mut Source, arch: &ClipArchitecture) -> Result<ClipWeights> {
    let t = &arch.text;
    let v = &arch.vision;
    if v.kind != VisionKind::Transformer {
        return Err(ExportError::Config(
            "a ResNet image tower comes in open_clip's layout only (transformers has no ResNet CLIP)"
                .into(),
        ));
    }

    let hf_blocks = |src: &mut Source, prefix: &str, layers, width, mlp| -> Result<Vec<Block>> {
        (0..layers)
            .map(|i| {
                let p = format!("{prefix}.encoder.layers.{i}");
                Ok(Block {
                    ln_1: src.layer_norm(&format!("{p}.layer_norm1"), width)?,
                    q: src.linear(&format!("{p}.self_attn.q_proj"), width, width)?,
                    k: src.linear(&format!("{p}.self_attn.k_proj"), width, width)?,
                    v: src.linear(&format!("{p}.self_attn.v_proj"), width, width)?,
                    out: src.linear(&format!("{p}.self_attn.out_proj"), width, width)?,
                    ln_2: src.layer_norm(&format!("{p}.layer_norm2"), width)?,
                    fc_1: src.linear(&format!("{p}.mlp.fc1"), mlp, width)?,
                    fc_2: src.linear(&format!("{p}.mlp.fc2"), width, mlp)?,
                })
            })
            .collect()
    };

    let text = TextWeights {
        token_embedding: src.take(
            "text_model.embeddings.token_embedding.weight",
            &[t.vocab_size, t.width],
        )?,
        position_embedding: src.take(
            "text_model.embeddings.position_embedding.weight",
            &[t.context_length, t.width],
        )?,
        blocks: hf_blocks(src, "text_model", t.layers, t.width, t.mlp_width)?,
        ln_final: src.layer_norm("text_model.final_layer_norm", t.width)?,
        projection: src.take("text_projection.weight", &[arch.embed_dim, t.width])?,
    };
    let vision = VisualWeights::Transformer(VisionWeights {
        patch_embedding: src.take(
            "vision_model.embeddings.patch_embedding.weight",
            &[v.width, 3, v.patch_size, v.patch_size],
        )?,
        class_embedding: src.take("vision_model.embeddings.class_embedding", &[v.width])?,
        position_embedding: src.take(
            "vision_model.embeddings.position_embedding.weight",
            &[v.tokens(), v.width],
        )?,
        // sic: transformers spells it "layrnorm"
        ln_pre: src.layer_norm("vision_model.pre_layrnorm", v.width)?,
        blocks: hf_blocks(src, "vision_model", v.layers, v.width, v.mlp_width)?,
        ln_post: src.layer_norm("vision_model.post_layernorm", v.width)?,
        projection: src.take("visual_projection.weight", &[arch.embed_dim, v.width])?,
    });
    let logit_scale = src.scalar("logit_scale")?;
    Ok(ClipWeights {
        arch: *arch,
        layout: WeightLayout::Transformers,
        text,
        vision,
        logit_scale,
    })
}

fn read_open_clip(src: &mut Source, arch: &ClipArchitecture) -> Result<ClipWeights> {
    let t = &arch.text;
    let v = &arch.vision;
    // open_clip's CLIP keeps the text tower at the top level; CustomTextCLIP
    // nests it under `text.`.
    let text_prefix = if src.names.iter().any(|n| n.starts_with("text.")) {
        "text."
    } else {
        ""
    };

    let oc_blocks = |src: &mut Source,
                     prefix: &str,
                     layers,
                     width: usize,
                     mlp|
     -> Result<Vec<Block>> {
        (0..layers)
            .map(|i| {
                let p = format!("{prefix}transformer.resblocks.{i}");
                let in_w = src.take(&format!("{p}.attn.in_proj_weight"), &[3 * width, width])?;
                let in_b = src.take(&format!("{p}.attn.in_proj_bias"), &[3 * width])?;
                let part = |n: usize| Linear {
                    weight: Tensor::new(
                        vec![width, width],
                        in_w.data[n * width * width..(n + 1) * width * width].to_vec(),
                    ),
                    bias: Tensor::new(vec![width], in_b.data[n * width..(n + 1) * width].to_vec()),
                };
                Ok(Block {
                    ln_1: src.layer_norm(&format!("{p}.ln_1"), width)?,
                    q: part(0),
                    k: part(1),
                    v: part(2),
                    out: src.linear(&format!("{p}.attn.out_proj"), width, width)?,
                    ln_2: src.layer_norm(&format!("{p}.ln_2"), width)?,
                    fc_1: src.linear(&format!("{p}.mlp.c_fc"), mlp, width)?,
                    fc_2: src.linear(&format!("{p}.mlp.c_proj"), width, mlp)?,
                })
            })
            .collect()
    };

    let text = TextWeights {
        token_embedding: src.take(
            &format!("{text_prefix}token_embedding.weight"),
            &[t.vocab_size, t.width],
        )?,
        position_embedding: src.take(
            &format!("{text_prefix}positional_embedding"),
            &[t.context_length, t.width],
        )?,
        blocks: oc_blocks(src, text_prefix, t.layers, t.width, t.mlp_width)?,
        ln_final: src.layer_norm(&format!("{text_prefix}ln_final"), t.width)?,
        projection: src
            .take(
                &format!("{text_prefix}text_projection"),
                &[t.width, arch.embed_dim],
            )?
            .transposed(),
    };
    let vision = match v.kind {
        VisionKind::ResNet { .. } => VisualWeights::ResNet(read_open_clip_resnet(src, arch)?),
        VisionKind::Transformer => VisualWeights::Transformer(VisionWeights {
            patch_embedding: src.take(
                "visual.conv1.weight",
                &[v.width, 3, v.patch_size, v.patch_size],
            )?,
            class_embedding: src.take("visual.class_embedding", &[v.width])?,
            position_embedding: src.take("visual.positional_embedding", &[v.tokens(), v.width])?,
            ln_pre: src.layer_norm("visual.ln_pre", v.width)?,
            blocks: oc_blocks(src, "visual.", v.layers, v.width, v.mlp_width)?,
            ln_post: src.layer_norm("visual.ln_post", v.width)?,
            projection: src
                .take("visual.proj", &[v.width, arch.embed_dim])?
                .transposed(),
        }),
    };
    let logit_scale = src.scalar("logit_scale")?;
    Ok(ClipWeights {
        arch: *arch,
        layout: WeightLayout::OpenClip,
        text,
        vision,
        logit_scale,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose_is_row_major() {
        let m = Tensor::new(vec![2, 3], vec![1., 2., 3., 4., 5., 6.]);
        let t = m.transposed();
        assert_eq!(t.shape, vec![3, 2]);
        assert_eq!(t.data, vec![1., 4., 2., 5., 3., 6.]);
    }

    #[test]
    fn layout_detection() {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            detect_layout(&names(&["text_model.x", "logit_scale"])).unwrap(),
            WeightLayout::Transformers
        );
        assert_eq!(
            detect_layout(&names(&[
                "visual.proj",
                "transformer.resblocks.0.ln_1.weight"
            ]))
            .unwrap(),
            WeightLayout::OpenClip
        );
        let err = detect_layout(&names(&["model.layers.0.weight"])).unwrap_err();
        assert!(err.to_string().contains("model.layers.0.weight"), "{err}");
        let err = detect_layout(&names(&["text_model.x", "visual.proj"])).unwrap_err();
        assert!(err.to_string().contains("both"), "{err}");
    }
}
