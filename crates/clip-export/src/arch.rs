//! The exporter's own description of a CLIP: tower sizes, activation,
//! pooling, read from a transformers `config.json` or an open_clip
//! `open_clip_config.json`.

use std::fmt;

use serde_json::Value;

use crate::error::{ExportError, Result};
use crate::json_section::Section;

/// Hidden-layer activation of both towers' MLPs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// `x * sigmoid(1.702 x)`: OpenAI's CLIPs (transformers `quick_gelu`).
    QuickGelu,
    /// Exact GELU, `0.5 x (1 + erf(x / sqrt 2))`: LAION/open_clip CLIPs (transformers `gelu`).
    Gelu,
}

impl Activation {
    pub fn name(self) -> &'static str {
        match self {
            Activation::QuickGelu => "quick_gelu",
            Activation::Gelu => "gelu",
        }
    }
}

impl fmt::Display for Activation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which token's final hidden state becomes the text embedding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TextPooling {
    /// The first position holding this id. transformers does this whenever a
    /// config's `eos_token_id` is not 2; it handles both pad conventions
    /// (pad = end-of-text, as Hugging Face's tokenizer does, or pad = 0, as
    /// open_clip's does).
    FirstEos(i64),
    /// The first position of the row's largest id. open_clip's `argmax` pool,
    /// and transformers' rule for legacy configs with `eos_token_id` 2. For
    /// CLIP's vocabulary the end-of-text id is the largest, so this picks the
    /// same token as `FirstEos(49407)` on any tokenized row.
    ArgMax,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TextTower {
    pub width: usize,
    pub layers: usize,
    pub heads: usize,
    /// MLP hidden width (4 x width in every published CLIP).
    pub mlp_width: usize,
    pub context_length: usize,
    pub vocab_size: usize,
    pub pooling: TextPooling,
}

/// How the image tower is built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VisionKind {
    /// A ViT: patch embedding, class token, pre-LayerNorm transformer.
    Transformer,
    /// open_clip's `ModifiedResNet`: a 3-convolution stem, four stages of
    /// bottlenecks (`stages[i]` blocks each) and an attention pool. The
    /// tower's `width` is the stem's, its features are `32 x width` wide,
    /// `heads` are the attention pool's and `patch_size` is the total
    /// downsampling (32); `layers` counts the bottlenecks and `mlp_width`
    /// is 0 (there is no MLP).
    ResNet { stages: [usize; 4] },
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct VisionTower {
    pub width: usize,
    pub layers: usize,
    pub heads: usize,
    pub mlp_width: usize,
    pub patch_size: usize,
    pub image_size: usize,
    pub kind: VisionKind,
}

/// A `ModifiedResNet` halves the image five times (stem conv, stem pool,
/// stages 2 to 4): its attention pool sees `image_size / 32` squared cells.
pub const RESNET_DOWNSAMPLING: usize = 32;

impl VisionTower {
    /// The width of the tokens the final attention or pool works on:
    /// `width` for a ViT, the last stage's `32 x width` channels for a ResNet.
    pub fn feature_width(&self) -> usize {
        match self.kind {
            VisionKind::Transformer => self.width,
            VisionKind::ResNet { .. } => self.width * RESNET_DOWNSAMPLING,
        }
    }

    /// Patches along one side.
    pub fn grid(&self) -> usize {
        self.image_size / self.patch_size
    }

    /// Tokens in the encoder: one per patch plus the class token.
    pub fn tokens(&self) -> usize {
        self.grid() * self.grid() + 1
    }
}

/// Everything the exporter needs to know about a CLIP besides its weights.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ClipArchitecture {
    pub text: TextTower,
    pub vision: VisionTower,
    /// Width of the shared embedding space (projection output).
    pub embed_dim: usize,
    pub activation: Activation,
    pub layer_norm_eps: f32,
}

/// Largest size [`ClipArchitecture::validate`] accepts for any dimension.
pub(crate) const MAX_SIZE: usize = 1 << 24;

/// The end-of-text id of the CLIP BPE vocabulary (`<|endoftext|>`).
pub const CLIP_EOT_ID: i64 = 49407;

impl ClipArchitecture {
    /// Reads either kind of config file, telling them apart by their keys:
    /// transformers' has `text_config`/`vision_config`, open_clip's has
    /// `model_cfg` (hub file) or `text_cfg`/`vision_cfg` (bare model config).
    pub fn from_config_json(json: &str) -> Result<Self> {
        let value: Value = serde_json::from_str(json)
            .map_err(|e| ExportError::Config(format!("not valid JSON: {e}")))?;
        if value.get("text_config").is_some() || value.get("vision_config").is_some() {
            Self::from_transformers_value(&value)
        } else if value.get("model_cfg").is_some() || value.get("text_cfg").is_some() {
            Self::from_open_clip_value(&value)
        } else {
            Err(ExportError::Config(
                "neither a transformers CLIP config (text_config, vision_config) nor an open_clip one \
                 (model_cfg or text_cfg, vision_cfg)"
                    .into(),
            ))
        }
    }

    /// A transformers `CLIPConfig` (`config.json` of a `CLIPModel`).
    pub fn from_transformers_config(json: &str) -> Result<Self> {
        let value: Value = serde_json::from_str(json)
            .map_err(|e| ExportError::Config(format!("not valid JSON: {e}")))?;
        Self::from_transformers_value(&value)
    }

    /// open_clip's `open_clip_config.json` (with `model_cfg`) or a bare model
    /// config as in open_clip's `model_configs/*.json`.
    pub fn from_open_clip_config(json: &str) -> Result<Self> {
        let value: Value = serde_json::from_str(json)
            .map_err(|e| ExportError::Config(format!("not valid JSON: {e}")))?;
        Self::from_open_clip_value(&value)
    }

    fn from_transformers_value(root: &Value) -> Result<Self> {
        if let Some(kind) = root.get("model_type").and_then(Value::as_str) {
            if kind != "clip" {
                return Err(ExportError::Config(format!(
                    "model_type is {kind:?}; only \"clip\" (CLIPModel) is supported"
                )));
            }
        }
        let text = Section::new(root, "text_config")?;
        let vision = Section::new(root, "vision_config")?;

        let text_act = text.str_or("hidden_act", "quick_gelu")?;
        let vision_act = vision.str_or("hidden_act", "quick_gelu")?;
        if text_act != vision_act {
            return Err(ExportError::Config(format!(
                "text_config.hidden_act {text_act:?} differs from vision_config.hidden_act {vision_act:?}"
            )));
        }
        let activation = match text_act.as_str() {
            "quick_gelu" => Activation::QuickGelu,
            "gelu" => Activation::Gelu,
            other => {
                return Err(ExportError::Config(format!(
                    "hidden_act {other:?} is not supported (quick_gelu or gelu)"
                )))
            }
        };
        let text_eps = text.f64_or("layer_norm_eps", 1e-5)?;
        let vision_eps = vision.f64_or("layer_norm_eps", 1e-5)?;
        if text_eps != vision_eps {
            return Err(ExportError::Config(format!(
                "text_config.layer_norm_eps {text_eps} differs from vision_config.layer_norm_eps {vision_eps}"
            )));
        }
        // transformers 4.57 CLIPTextTransformer: eos_token_id == 2 (configs
        // written before PR #24773) pools at argmax(input_ids), anything else
        // at the first eos_token_id. CLIPTextConfig's default is 49407.
        let eos = text.i64_or("eos_token_id", CLIP_EOT_ID)?;
        let pooling = if eos == 2 {
            TextPooling::ArgMax
        } else {
            TextPooling::FirstEos(eos)
        };

        let text_width = text.usize_or("hidden_size", 512)?;
        let vision_width = vision.usize_or("hidden_size", 768)?;
        let arch = ClipArchitecture {
            text: TextTower {
                width: text_width,
                layers: text.usize_or("num_hidden_layers", 12)?,
                heads: text.usize_or("num_attention_heads", 8)?,
                mlp_width: text.usize_or("intermediate_size", 2048)?,
                context_length: text.usize_or("max_position_embeddings", 77)?,
                vocab_size: text.usize_or("vocab_size", 49408)?,
                pooling,
            },
            vision: VisionTower {
                width: vision_width,
                layers: vision.usize_or("num_hidden_layers", 12)?,
                heads: vision.usize_or("num_attention_heads", 12)?,
                mlp_width: vision.usize_or("intermediate_size", 3072)?,
                patch_size: vision.usize_or("patch_size", 32)?,
                image_size: vision.usize_or("image_size", 224)?,
                kind: VisionKind::Transformer,
            },
            embed_dim: Section::top(root).usize_or("projection_dim", 512)?,
            activation,
            layer_norm_eps: text_eps as f32,
        };
        if let Some(channels) = vision.get("num_channels") {
            if channels.as_u64() != Some(3) {
                return Err(ExportError::Config(format!(
                    "vision_config.num_channels is {channels}; only 3 (RGB) is supported"
                )));
            }
        }
        arch.validate()?;
        Ok(arch)
    }

    fn from_open_clip_value(root: &Value) -> Result<Self> {
        let model = root.get("model_cfg").unwrap_or(root);
        let top = Section::top(model);
        let text = Section::new(model, "text_cfg")?;
        let vision = Section::new(model, "vision_cfg")?;

        for (section, unsupported) in [
            (
                &vision,
                &[
                    "timm_model_name",
                    "attentional_pool",
                    "no_ln_pre",
                    "final_ln_after_pool",
                ][..],
            ),
            (
                &text,
                &[
                    "hf_model_name",
                    "embed_cls",
                    "no_causal_mask",
                    "final_ln_after_pool",
                    "proj_bias",
                ][..],
            ),
        ] {
            for key in unsupported {
                if let Some(v) = section.get(key) {
                    if !(v.is_null() || v == &Value::Bool(false)) {
                        return Err(ExportError::Config(format!(
                            "{}.{key} = {v} is an open_clip variant this exporter does not build",
                            section.name
                        )));
                    }
                }
            }
        }
        if let Some(pool) = text.get("pool_type").and_then(Value::as_str) {
            if pool != "argmax" {
                return Err(ExportError::Config(format!(
                    "text_cfg.pool_type {pool:?} is not supported (argmax)"
                )));
            }
        }
        if let Some(pool) = vision.get("pool_type").and_then(Value::as_str) {
            if pool != "tok" {
                return Err(ExportError::Config(format!(
                    "vision_cfg.pool_type {pool:?} is not supported (tok)"
                )));
            }
        }
        if let Some(act) = model.get("act_kwargs").or_else(|| text.get("act_kwargs")) {
            if !act.is_null() {
                return Err(ExportError::Config(format!(
                    "act_kwargs {act} is not supported"
                )));
            }
        }

        let text_width = text.usize_or("width", 512)?;
        let vision_width = vision.usize_or("width", 768)?;
        let head_width = vision.usize_or("head_width", 64)?;
        let text_ratio = text.f64_or("mlp_ratio", 4.0)?;
        let vision_ratio = vision.f64_or("mlp_ratio", 4.0)?;
        let quick_gelu = match top.get("quick_gelu") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                return Err(ExportError::Config(format!(
                    "quick_gelu should be true or false, found {other}"
                )))
            }
        };
        let resnet_stages = match vision.get("layers") {
            Some(Value::Array(stages)) => Some(resnet_stages(stages)?),
            _ => None,
        };
        let image_size = match vision.get("image_size") {
            Some(Value::Array(sides)) => {
                let sides: Vec<_> = sides.iter().filter_map(Value::as_u64).collect();
                match sides[..] {
                    [h, w] if h == w => h as usize,
                    _ => {
                        return Err(ExportError::Config(format!(
                            "vision_cfg.image_size {sides:?} is not square"
                        )))
                    }
                }
            }
            _ => vision.usize_or("image_size", 224)?,
        };
        let arch = ClipArchitecture {
            text: TextTower {
                width: text_width,
                layers: text.usize_or("layers", 12)?,
                heads: text.usize_or("heads", 8)?,
                mlp_width: (text_width as f64 * text_ratio) as usize,
                context_length: text.usize_or("context_length", 77)?,
                vocab_size: text.usize_or("vocab_size", 49408)?,
                pooling: TextPooling::ArgMax,
            },
            vision: match resnet_stages {
                // open_clip: heads = width * 32 // head_width for a ResNet.
                Some(stages) => VisionTower {
                    width: vision_width,
                    layers: stages.iter().sum(),
                    // Saturating: a width past 2^24 is refused by validate.
                    heads: (vision_width.saturating_mul(RESNET_DOWNSAMPLING))
                        .checked_div(head_width)
                        .unwrap_or(0),
                    mlp_width: 0,
                    patch_size: RESNET_DOWNSAMPLING,
                    image_size,
                    kind: VisionKind::ResNet { stages },
                },
                None => VisionTower {
                    width: vision_width,
                    layers: vision.usize_or("layers", 12)?,
                    heads: vision_width.checked_div(head_width).unwrap_or(0),
                    mlp_width: (vision_width as f64 * vision_ratio) as usize,
                    patch_size: vision.usize_or("patch_size", 16)?,
                    image_size,
                    kind: VisionKind::Transformer,
                },
            },
            embed_dim: top.usize_or("embed_dim", 512)?,
            activation: if quick_gelu {
                Activation::QuickGelu
            } else {
                Activation::Gelu
            },
            // open_clip's LayerNorm is torch's default.
            layer_norm_eps: 1e-5,
        };
        arch.validate()?;
        Ok(arch)
    }

    /// Checks the sizes fit together (heads divide widths, patches tile the image).
    pub fn validate(&self) -> Result<()> {
        let t = &self.text;
        let v = &self.vision;
        let mut problems = Vec::new();
        for (name, value) in [
            ("text width", t.width),
            ("text layers", t.layers),
            ("text heads", t.heads),
            ("text mlp width", t.mlp_width),
            ("context length", t.context_length),
            ("vocab size", t.vocab_size),
            ("vision width", v.width),
            ("vision layers", v.layers),
            ("vision heads", v.heads),
            (
                "vision mlp width",
                match v.kind {
                    VisionKind::Transformer => v.mlp_width,
                    // A ResNet has none; its last stage stands in for the bound.
                    VisionKind::ResNet { stages } => stages[3],
                },
            ),
            ("patch size", v.patch_size),
            ("image size", v.image_size),
            ("embed dim", self.embed_dim),
        ] {
            if value == 0 {
                problems.push(format!("{name} is 0"));
            }
            // Far above any CLIP, and keeps the shape arithmetic (patches
            // squared, 3 x width, width x mlp width) far from overflow.
            if value > MAX_SIZE && name != "vocab size" {
                problems.push(format!("{name} {value} is above 2^24"));
            }
        }
        if problems.is_empty() {
            if !t.width.is_multiple_of(t.heads) {
                problems.push(format!(
                    "text width {} is not a multiple of its {} heads",
                    t.width, t.heads
                ));
            }
            if !v.feature_width().is_multiple_of(v.heads) {
                problems.push(format!(
                    "vision feature width {} is not a multiple of its {} heads",
                    v.feature_width(),
                    v.heads
                ));
            }
            if let VisionKind::ResNet { stages } = v.kind {
                if stages.contains(&0) {
                    problems.push(format!("ResNet stages {stages:?} include an empty one"));
                }
                if v.patch_size != RESNET_DOWNSAMPLING || v.mlp_width != 0 {
                    problems.push(format!(
                        "a ResNet tower has patch size {RESNET_DOWNSAMPLING} and no MLP, found {} and {}",
                        v.patch_size, v.mlp_width
                    ));
                }
            }
            if !v.image_size.is_multiple_of(v.patch_size) {
                problems.push(format!(
                    "image size {} is not a multiple of patch size {}",
                    v.image_size, v.patch_size
                ));
            }
        }
        if t.vocab_size > 1 << 24 {
            // The textual graph compares ids as float32.
            problems.push(format!("vocab size {} is above 2^24", t.vocab_size));
        }
        if t.context_length < 2 {
            problems.push(format!(
                "context length {} leaves no room for start and end tokens",
                t.context_length
            ));
        }
        if let TextPooling::FirstEos(id) = t.pooling {
            if id < 0 || id as usize >= t.vocab_size {
                problems.push(format!(
                    "end-of-text id {id} is outside the vocabulary of {}",
                    t.vocab_size
                ));
            }
        }
        if !(self.layer_norm_eps > 0.0 && self.layer_norm_eps.is_finite()) {
            problems.push(format!(
                "layer norm epsilon {} is not positive",
                self.layer_norm_eps
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ExportError::Config(problems.join("; ")))
        }
    }
}

/// `vision_cfg.layers` of a `ModifiedResNet`: four block counts.
fn resnet_stages(stages: &[Value]) -> Result<[usize; 4]> {
    let counts: Vec<usize> = stages
        .iter()
        .map(|v| v.as_u64().map(|n| n as usize))
        .collect::<Option<_>>()
        .ok_or_else(|| {
            ExportError::Config(format!(
                "vision_cfg.layers {stages:?} should be four block counts"
            ))
        })?;
    if let Some(count) = counts.iter().find(|&&n| n > MAX_SIZE) {
        return Err(ExportError::Config(format!(
            "vision_cfg.layers has a stage of {count} blocks, above 2^24"
        )));
    }
    counts.try_into().map_err(|counts: Vec<usize>| {
        ExportError::Config(format!(
            "vision_cfg.layers has {} stages; a ModifiedResNet has 4",
            counts.len()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_b32_hub_config() {
        // The fields of openai/clip-vit-base-patch32's config.json that matter.
        let json = r#"{
            "model_type": "clip", "projection_dim": 512,
            "text_config": {"hidden_size": 512, "intermediate_size": 2048, "num_attention_heads": 8,
                            "num_hidden_layers": 12, "max_position_embeddings": 77, "vocab_size": 49408,
                            "hidden_act": "quick_gelu", "layer_norm_eps": 1e-05, "eos_token_id": 2},
            "vision_config": {"hidden_size": 768, "intermediate_size": 3072, "num_attention_heads": 12,
                              "num_hidden_layers": 12, "patch_size": 32, "image_size": 224,
                              "hidden_act": "quick_gelu", "layer_norm_eps": 1e-05}
        }"#;
        let arch = ClipArchitecture::from_config_json(json).unwrap();
        assert_eq!(arch.activation, Activation::QuickGelu);
        assert_eq!(arch.text.pooling, TextPooling::ArgMax);
        assert_eq!(arch.vision.tokens(), 50);
        assert_eq!(arch.embed_dim, 512);
    }

    #[test]
    fn open_clip_hub_config() {
        let json = r#"{"model_cfg": {"embed_dim": 1024, "quick_gelu": true,
            "vision_cfg": {"image_size": 224, "layers": 24, "width": 1024, "patch_size": 14},
            "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 768, "heads": 12, "layers": 12}},
            "preprocess_cfg": {}}"#;
        let arch = ClipArchitecture::from_config_json(json).unwrap();
        assert_eq!(arch.activation, Activation::QuickGelu);
        assert_eq!(arch.vision.heads, 16);
        assert_eq!(arch.vision.mlp_width, 4096);
        assert_eq!(arch.text.mlp_width, 3072);
        assert_eq!(arch.vision.tokens(), 257);
    }

    #[test]
    fn bad_configs_name_the_problem() {
        let err = ClipArchitecture::from_config_json(r#"{"foo": 1}"#).unwrap_err();
        assert!(err.to_string().contains("neither"), "{err}");
        let err = ClipArchitecture::from_config_json(
            r#"{"text_config": {"hidden_act": "relu"}, "vision_config": {"hidden_act": "relu"}}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("relu"), "{err}");
        let err = ClipArchitecture::from_config_json(
            r#"{"text_config": {"hidden_size": 30, "num_attention_heads": 4}, "vision_config": {}}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("text width 30"), "{err}");
        let err = ClipArchitecture::from_config_json(
            r#"{"model_cfg": {"vision_cfg": {"timm_model_name": "convnext"}, "text_cfg": {}}}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("timm_model_name"), "{err}");
    }

    /// Caught by the model_config fuzz target's check of the derived sizes
    /// (fuzz/regressions/model_config; an input written by hand, AFL had not
    /// reached it): an image size of 2^37 pixels passed, and `tokens()` overflowed (a
    /// panic in debug builds, a wrapped shape in release ones) where the
    /// weights reader and the exporter compute the positional embedding's
    /// shape. Every size now has a bound, widths too.
    #[test]
    fn absurd_sizes_are_refused() {
        let json = r#"{"text_config": {}, "vision_config": {"image_size": 137438953472, "patch_size": 2}}"#;
        let err = ClipArchitecture::from_config_json(json).unwrap_err();
        assert!(
            err.to_string()
                .contains("image size 137438953472 is above 2^24"),
            "{err}"
        );
        let json = r#"{"text_cfg": {"width": 6148914691236517206, "heads": 1}, "vision_cfg": {}}"#;
        let err = ClipArchitecture::from_config_json(json).unwrap_err();
        assert!(
            err.to_string()
                .contains("text width 6148914691236517206 is above"),
            "{err}"
        );
    }
}
