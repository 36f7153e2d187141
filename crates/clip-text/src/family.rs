//! One handle over both tokenizer families, so a caller picks the family once at load.

use std::path::Path;

use crate::{Encoded, HfTokenizer, TextError, TextOptions, Tokenizer};

/// Which tokenizer a text model uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TokenizerFamily {
    /// open_clip's exact cleaning and byte-level BPE ([`Tokenizer`]).
    #[default]
    ClipBpe,
    /// The tokenizer.json as its model card defines it ([`HfTokenizer`]): XLM-R, LaBSE, ...
    Hf,
}

/// A loaded tokenizer of either family.
#[derive(Debug)]
pub enum TextTokenizer {
    ClipBpe(Tokenizer),
    Hf(HfTokenizer),
}

impl TextTokenizer {
    pub fn from_file(
        path: &Path,
        family: TokenizerFamily,
        options: TextOptions,
    ) -> Result<Self, TextError> {
        Ok(match family {
            TokenizerFamily::ClipBpe => Self::ClipBpe(Tokenizer::from_file(path, options)?),
            TokenizerFamily::Hf => Self::Hf(HfTokenizer::from_file(path, options)?),
        })
    }

    /// Ids written per text.
    pub fn context_length(&self) -> usize {
        match self {
            Self::ClipBpe(t) => t.context_length(),
            Self::Hf(t) => t.context_length(),
        }
    }

    /// Writes exactly context_length ids into `out` and says how many are real tokens.
    pub fn encode_reporting(&self, text: &str, out: &mut [i64]) -> Result<Encoded, TextError> {
        match self {
            Self::ClipBpe(t) => t.encode_reporting(text, out),
            Self::Hf(t) => t.encode_reporting(text, out),
        }
    }
}
