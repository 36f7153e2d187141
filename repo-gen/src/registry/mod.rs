//! The CLIP models repo-gen knows, under the names CLIP-as-service made
//! familiar: `ARCH::PRETRAINED`, for example `ViT-B-32::openai`.
//!
//! Each entry says where the weights live on the Hugging Face hub, how they
//! are laid out, and the architecture in clip-export's own terms
//! ([`ClipArchitecture`]). The numbers are those of the weights' own configs
//! (`config.json` for transformers repos, `open_clip_config.json` and
//! open_clip's `pretrained.py` for the others).
//!
//! [`lookup`] is forgiving: case does not matter, and `-` and `_` are the
//! same character, as long as that leaves one model. An unknown name gets an
//! error that lists the closest known names.

use std::fmt;

pub use crate::lookup::{lookup_in, LookupError};
use clip_export::{ClipArchitecture, MclipTextArchitecture};

/// How a repository stores the weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightsLayout {
    /// Hugging Face transformers `CLIPModel`: `config.json` and `model.safetensors`.
    Transformers,
    /// open_clip's state dict: `open_clip_config.json` and `open_clip_model.safetensors`.
    OpenClip,
}

impl WeightsLayout {
    /// Short name, as the `models` table prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            WeightsLayout::Transformers => "transformers",
            WeightsLayout::OpenClip => "open_clip",
        }
    }

    /// The config file a repository or local folder of this layout has.
    pub fn config_file(self) -> &'static str {
        match self {
            WeightsLayout::Transformers => "config.json",
            WeightsLayout::OpenClip => "open_clip_config.json",
        }
    }

    /// The PyTorch checkpoint of this layout, read when the safetensors
    /// file is not there.
    pub fn pickled_weights_file(self) -> &'static str {
        match self {
            WeightsLayout::Transformers => "pytorch_model.bin",
            WeightsLayout::OpenClip => "open_clip_pytorch_model.bin",
        }
    }

    /// The weights file a repository or local folder of this layout has.
    pub fn weights_file(self) -> &'static str {
        match self {
            WeightsLayout::Transformers => "model.safetensors",
            WeightsLayout::OpenClip => "open_clip_model.safetensors",
        }
    }
}

impl fmt::Display for WeightsLayout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where the files of a model are on the Hugging Face hub.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HubFiles {
    /// `owner/name`.
    pub repo: &'static str,
    /// Branch, tag or commit.
    pub revision: &'static str,
    pub config: &'static str,
    pub weights: &'static str,
    pub tokenizer: &'static str,
}

impl HubFiles {
    /// The three files, in the order they are fetched.
    pub fn files(&self) -> [&'static str; 3] {
        [self.config, self.weights, self.tokenizer]
    }
}

/// One published CLIP checkpoint.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ModelSpec {
    /// `ARCH::PRETRAINED`.
    pub name: &'static str,
    /// open_clip's architecture name, e.g. `ViT-B-32`.
    pub arch: &'static str,
    /// open_clip's pretrained tag as CLIP-as-service spells it, e.g. `laion2b-s34b-b79k`.
    pub pretrained: &'static str,
    pub hub: HubFiles,
    pub layout: WeightsLayout,
    /// What `--random-init` builds, and what a downloaded config must agree with.
    pub architecture: ClipArchitecture,
    /// Per-channel (RGB) normalisation of the image preprocessing.
    pub mean: [f32; 3],
    pub std: [f32; 3],
    /// M-CLIP: the text tower is this multilingual encoder, not the CLIP's
    /// own; `hub`, `layout` and `architecture` then describe the CLIP whose
    /// image tower it was trained against (and only that tower is used).
    pub multilingual: Option<MultilingualText>,
}

/// An M-CLIP text tower: its hub repository (`config.json`,
/// `pytorch_model.bin`, `tokenizer.json`) and its architecture.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MultilingualText {
    pub hub: HubFiles,
    pub architecture: MclipTextArchitecture,
}

impl ModelSpec {
    /// The width both towers embed into.
    pub fn embed_dim(&self) -> usize {
        self.architecture.embed_dim
    }

    /// What the text tower is, for the `models` table.
    pub fn text_tower(&self) -> &'static str {
        match &self.multilingual {
            None => "clip",
            Some(m) => m.architecture.encoder.family.name(),
        }
    }
}

/// CLIP's BPE vocabulary, the text tower of every model here. Also taken for
/// `--onnx-dir` files, which name no model (CLIP-as-service exported these
/// same models).
pub const VOCAB_SIZE: usize = 49408;

mod models;

pub use models::MODELS;

/// Every model repo-gen knows.
pub fn all() -> &'static [ModelSpec] {
    MODELS
}

/// `models` as an aligned text table: name, embedding size, image size,
/// text tower, activation, weights layout and hub repositories, one model a
/// line.
pub fn table(models: &[ModelSpec]) -> String {
    let header = [
        "MODEL",
        "DIM",
        "IMAGE",
        "TEXT",
        "ACTIVATION",
        "WEIGHTS",
        "HUB REPO",
    ];
    let rows: Vec<[String; 7]> = models
        .iter()
        .map(|m| {
            let (layout, repo) = match &m.multilingual {
                None => (m.layout.to_string(), m.hub.repo.to_owned()),
                Some(text) => (
                    format!("M-CLIP+{}", m.layout),
                    format!("{}+{}", text.hub.repo, m.hub.repo),
                ),
            };
            [
                m.name.to_owned(),
                m.embed_dim().to_string(),
                m.architecture.vision.image_size.to_string(),
                m.text_tower().to_owned(),
                m.architecture.activation.to_string(),
                layout,
                repo,
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let mut out = String::new();
    let mut line = |cells: [&str; 7]| {
        let mut text = String::new();
        for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
            if i > 0 {
                text.push_str("  ");
            }
            // Numbers right-aligned, text left-aligned.
            if i == 1 || i == 2 {
                text.push_str(&format!("{cell:>width$}"));
            } else {
                text.push_str(&format!("{cell:<width$}"));
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(header);
    for row in &rows {
        line(row.each_ref().map(String::as_str));
    }
    out
}

/// OpenAI's own names for its CLIPs (`clip.available_models()`), which
/// CLIP-as-service also accepts, and the entries they are.
pub const OPENAI_NAMES: [(&str, &str); 9] = [
    ("RN50", "RN50::openai"),
    ("RN101", "RN101::openai"),
    ("RN50x4", "RN50x4::openai"),
    ("RN50x16", "RN50x16::openai"),
    ("RN50x64", "RN50x64::openai"),
    ("ViT-B/32", "ViT-B-32::openai"),
    ("ViT-B/16", "ViT-B-16::openai"),
    ("ViT-L/14", "ViT-L-14::openai"),
    ("ViT-L/14@336px", "ViT-L-14-336::openai"),
];

/// The model called `name` (`ARCH::PRETRAINED`, or one of OpenAI's names),
/// matched without regard to case or to `-` versus `_`.
pub fn lookup(name: &str) -> Result<&'static ModelSpec, LookupError> {
    let name = OPENAI_NAMES
        .iter()
        .find(|(openai, _)| *openai == name.trim())
        .map_or(name, |(_, ours)| ours);
    lookup_in(MODELS, name)
}
