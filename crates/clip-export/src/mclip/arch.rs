//! The exporter's description of an M-CLIP text tower (`MultilingualCLIP`):
//! a BERT-family encoder (XLM-R or LaBSE), attention-mask mean pooling and a
//! linear map to the CLIP embedding, read from an M-CLIP `config.json`.
//!
//! M-CLIP's hub configs name their base (`modelBase`) but do not hold its
//! sizes; those of the two published bases are carried here
//! ([`BertEncoder::xlm_roberta_large`], [`BertEncoder::labse`]). A config may
//! instead carry its base's transformers config under `baseConfig` (the
//! test fixtures' tiny bases do, having no hub name).

use serde_json::Value;

use crate::arch::MAX_SIZE;
use crate::error::{ExportError, Result};
use crate::json_section::Section;

/// How the encoder numbers positions, which follows from its family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncoderFamily {
    /// RoBERTa / XLM-R: positions count the non-padding tokens from
    /// `pad + 1`, `cumsum(ids != pad) * (ids != pad) + pad`, so every pad id
    /// (trailing padding and a literal `<pad>` in a text alike) sits at `pad`.
    Roberta,
    /// BERT / LaBSE: positions are 0, 1, 2, ... whatever the ids.
    Bert,
}

impl EncoderFamily {
    pub fn name(self) -> &'static str {
        match self {
            EncoderFamily::Roberta => "xlm-roberta",
            EncoderFamily::Bert => "bert",
        }
    }
}

/// A post-LayerNorm BERT-style encoder with exact (erf) GELU and absolute
/// position embeddings; token type ids are all 0.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BertEncoder {
    pub family: EncoderFamily,
    pub width: usize,
    pub layers: usize,
    pub heads: usize,
    /// The intermediate (MLP hidden) width.
    pub mlp_width: usize,
    pub vocab_size: usize,
    /// Rows of the position table.
    pub max_positions: usize,
    /// Rows of the token type table (only row 0 is used).
    pub type_vocab_size: usize,
    pub pad_token_id: i64,
    pub layer_norm_eps: f32,
}

impl BertEncoder {
    /// `xlm-roberta-large`, the base of M-CLIP's three XLM-R towers.
    pub const fn xlm_roberta_large() -> Self {
        BertEncoder {
            family: EncoderFamily::Roberta,
            width: 1024,
            layers: 24,
            heads: 16,
            mlp_width: 4096,
            vocab_size: 250_002,
            max_positions: 514,
            type_vocab_size: 1,
            pad_token_id: 1,
            layer_norm_eps: 1e-5,
        }
    }

    /// LaBSE (a BERT-base with a 501k vocabulary), the base of `LABSE-Vit-L-14`.
    pub const fn labse() -> Self {
        BertEncoder {
            family: EncoderFamily::Bert,
            width: 768,
            layers: 12,
            heads: 12,
            mlp_width: 3072,
            vocab_size: 501_153,
            max_positions: 512,
            type_vocab_size: 2,
            pad_token_id: 0,
            layer_norm_eps: 1e-12,
        }
    }

    /// The published base `model_base` names, or `None`.
    pub fn known(model_base: &str) -> Option<Self> {
        // A hub id's last segment: "xlm-roberta-large", "FacebookAI/xlm-roberta-large",
        // "sentence-transformers/LaBSE", "setu4993/LaBSE".
        let name = model_base.rsplit('/').next().unwrap_or(model_base);
        if name.eq_ignore_ascii_case("xlm-roberta-large") {
            Some(Self::xlm_roberta_large())
        } else if name.eq_ignore_ascii_case("labse") {
            Some(Self::labse())
        } else {
            None
        }
    }

    /// A transformers `XLMRobertaConfig`/`RobertaConfig`/`BertConfig` as a
    /// JSON object; every size is required.
    fn from_transformers(section: &Section) -> Result<Self> {
        let name = &section.name;
        let family = match section.string("model_type")?.as_str() {
            "xlm-roberta" | "roberta" => EncoderFamily::Roberta,
            "bert" => EncoderFamily::Bert,
            other => {
                return Err(ExportError::Config(format!(
                "{name}.model_type {other:?} is not a supported base (xlm-roberta, roberta, bert)"
            )))
            }
        };
        let act = section.string("hidden_act")?;
        if act != "gelu" {
            return Err(ExportError::Config(format!(
                "{name}.hidden_act {act:?} is not supported (gelu)"
            )));
        }
        let positions = section.str_or("position_embedding_type", "absolute")?;
        if positions != "absolute" {
            return Err(ExportError::Config(format!(
                "{name}.position_embedding_type {positions:?} is not supported (absolute)"
            )));
        }
        Ok(BertEncoder {
            family,
            width: section.usize("hidden_size")?,
            layers: section.usize("num_hidden_layers")?,
            heads: section.usize("num_attention_heads")?,
            mlp_width: section.usize("intermediate_size")?,
            vocab_size: section.usize("vocab_size")?,
            max_positions: section.usize("max_position_embeddings")?,
            type_vocab_size: section.usize("type_vocab_size")?,
            pad_token_id: section.i64("pad_token_id")?,
            layer_norm_eps: section.f64("layer_norm_eps")? as f32,
        })
    }

    /// The longest row of ids the position table covers (512 for both bases).
    pub fn max_sequence(&self) -> usize {
        match self.family {
            // Positions run from pad + 1 to pad + length.
            EncoderFamily::Roberta => self
                .max_positions
                .saturating_sub(self.pad_token_id.max(0) as usize + 1),
            EncoderFamily::Bert => self.max_positions,
        }
    }
}

/// Everything the exporter needs to know about an M-CLIP text tower besides
/// its weights.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MclipTextArchitecture {
    pub encoder: BertEncoder,
    /// `numDims`: the CLIP embedding width the tower maps to.
    pub embed_dim: usize,
}

impl MclipTextArchitecture {
    /// An XLM-R-Large tower: `embed_dim` 512 (ViT-B-32), 640 (ViT-B-16Plus)
    /// or 768 (ViT-L-14).
    pub const fn xlm_roberta_large(embed_dim: usize) -> Self {
        MclipTextArchitecture {
            encoder: BertEncoder::xlm_roberta_large(),
            embed_dim,
        }
    }

    /// The LaBSE tower (`embed_dim` 768 for ViT-L-14).
    pub const fn labse(embed_dim: usize) -> Self {
        MclipTextArchitecture {
            encoder: BertEncoder::labse(),
            embed_dim,
        }
    }

    /// An M-CLIP `config.json`: `modelBase`, `transformerDimensions`,
    /// `numDims`, and optionally `baseConfig` (the base's transformers
    /// config, which then supplies the sizes whatever `modelBase` says).
    pub fn from_config_json(json: &str) -> Result<Self> {
        let root: Value = serde_json::from_str(json)
            .map_err(|e| ExportError::Config(format!("not valid JSON: {e}")))?;
        let top = Section::top(&root);
        let kind = top.str_or("model_type", "M-CLIP")?;
        if kind != "M-CLIP" {
            return Err(ExportError::Config(format!(
                "model_type is {kind:?}; an M-CLIP text tower's is \"M-CLIP\""
            )));
        }
        let model_base = top.string("modelBase")?;
        let transformer_dims = top.usize("transformerDimensions")?;
        let embed_dim = top.usize("numDims")?;
        let encoder = match top.present("baseConfig") {
            Some(_) => BertEncoder::from_transformers(&Section::new(&root, "baseConfig")?)?,
            None => BertEncoder::known(&model_base).ok_or_else(|| {
                ExportError::Config(format!(
                    "modelBase {model_base:?} is not a base this exporter knows the sizes of \
                     (xlm-roberta-large, LaBSE) and the config has no baseConfig"
                ))
            })?,
        };
        if transformer_dims != encoder.width {
            return Err(ExportError::Config(format!(
                "transformerDimensions {transformer_dims} differs from the hidden size {} of the base {model_base:?}",
                encoder.width
            )));
        }
        let arch = MclipTextArchitecture { encoder, embed_dim };
        arch.validate()?;
        Ok(arch)
    }

    /// Checks the sizes fit together.
    pub fn validate(&self) -> Result<()> {
        let e = &self.encoder;
        let mut problems = Vec::new();
        for (name, value) in [
            ("width", e.width),
            ("layers", e.layers),
            ("heads", e.heads),
            ("intermediate size", e.mlp_width),
            ("vocab size", e.vocab_size),
            ("max positions", e.max_positions),
            ("type vocab size", e.type_vocab_size),
            ("embed dim", self.embed_dim),
        ] {
            if value == 0 {
                problems.push(format!("{name} is 0"));
            }
            if value > MAX_SIZE {
                problems.push(format!("{name} {value} is above 2^24"));
            }
        }
        if problems.is_empty() && !e.width.is_multiple_of(e.heads) {
            problems.push(format!(
                "width {} is not a multiple of its {} heads",
                e.width, e.heads
            ));
        }
        if e.pad_token_id < 0 || e.pad_token_id as usize >= e.vocab_size {
            problems.push(format!(
                "pad token id {} is outside the vocabulary of {}",
                e.pad_token_id, e.vocab_size
            ));
        } else if e.max_sequence() == 0 {
            problems.push(format!(
                "{} positions leave no room for a token after the pad id {}",
                e.max_positions, e.pad_token_id
            ));
        }
        if !(e.layer_norm_eps > 0.0 && e.layer_norm_eps.is_finite()) {
            problems.push(format!(
                "layer norm epsilon {} is not positive",
                e.layer_norm_eps
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ExportError::Config(format!(
                "M-CLIP text tower: {}",
                problems.join("; ")
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_configs_map_to_the_carried_bases() {
        // The fields of M-CLIP/XLM-Roberta-Large-Vit-B-16Plus's config.json that matter.
        let json = r#"{"model_type": "M-CLIP", "architectures": ["MultilingualCLIP"],
            "modelBase": "xlm-roberta-large", "transformerDimensions": 1024, "numDims": 640}"#;
        let arch = MclipTextArchitecture::from_config_json(json).unwrap();
        assert_eq!(arch, MclipTextArchitecture::xlm_roberta_large(640));
        assert_eq!(arch.encoder.max_sequence(), 512);

        let json = r#"{"model_type": "M-CLIP", "modelBase": "sentence-transformers/LaBSE",
            "transformerDimensions": 768, "numDims": 768}"#;
        let arch = MclipTextArchitecture::from_config_json(json).unwrap();
        assert_eq!(arch, MclipTextArchitecture::labse(768));
        assert_eq!(arch.encoder.family, EncoderFamily::Bert);
        assert_eq!(arch.encoder.max_sequence(), 512);
    }

    #[test]
    fn mismatched_or_unknown_configs_are_refused_by_name() {
        let err = MclipTextArchitecture::from_config_json(
            r#"{"modelBase": "xlm-roberta-large", "transformerDimensions": 768, "numDims": 512}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("transformerDimensions 768") && err.contains("1024"),
            "{err}"
        );

        let err = MclipTextArchitecture::from_config_json(
            r#"{"modelBase": "bert-base-multilingual-cased", "transformerDimensions": 768, "numDims": 512}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("bert-base-multilingual-cased"), "{err}");

        let err = MclipTextArchitecture::from_config_json(
            r#"{"modelBase": "xlm-roberta-large", "numDims": 512}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("config.transformerDimensions is missing"),
            "{err}"
        );

        let err = MclipTextArchitecture::from_config_json(
            r#"{"model_type": "clip", "modelBase": "xlm-roberta-large", "transformerDimensions": 1024, "numDims": 512}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("\"clip\""), "{err}");

        let base = |extra: &str| {
            format!(
                r#"{{"modelBase": "tiny", "transformerDimensions": 30, "numDims": 8, "baseConfig": {{
                "model_type": "bert", "vocab_size": 100, "hidden_size": 30, "num_hidden_layers": 1,
                "num_attention_heads": 4, "intermediate_size": 64, "max_position_embeddings": 40,
                "type_vocab_size": 2, "layer_norm_eps": 1e-12, "pad_token_id": 0 {extra}}}}}"#
            )
        };
        let err = MclipTextArchitecture::from_config_json(&base(r#", "hidden_act": "relu""#))
            .unwrap_err()
            .to_string();
        assert!(err.contains("baseConfig.hidden_act \"relu\""), "{err}");
        let err = MclipTextArchitecture::from_config_json(&base(r#", "hidden_act": "gelu""#))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("width 30 is not a multiple of its 4 heads"),
            "{err}"
        );
    }
}
