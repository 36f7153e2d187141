//! The `hf` family: a Hugging Face tokenizer.json used as its model card defines it (normaliser,
//! pre-tokeniser, model, post-processor with the model's own special tokens), as transformers'
//! `tokenizer(text, padding="max_length", truncation=True, max_length=context_length)` does.

use std::path::Path;

use tokenizers::{TruncationParams, TruncationStrategy};

use crate::{Encoded, TextError, TextOptions};

/// Pad token names of the common families (XLM-R / RoBERTa, BERT / LaBSE), looked up among the
/// tokenizer.json's special added tokens when nothing else names the pad token.
const PAD_TOKEN_NAMES: [&str; 2] = ["<pad>", "[PAD]"];

/// A Hugging Face tokenizer with the context length's truncation. `Send + Sync`.
pub struct HfTokenizer {
    inner: tokenizers::Tokenizer,
    context_length: usize,
    pad_id: u32,
}

impl std::fmt::Debug for HfTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HfTokenizer")
            .field("context_length", &self.context_length)
            .field("pad_id", &self.pad_id)
            .finish_non_exhaustive()
    }
}

impl HfTokenizer {
    /// Loads a tokenizer.json. The pad id: `options.pad_id` if Some; else the tokenizer.json's
    /// `padding.pad_id`; else `pad_token` from a `tokenizer_config.json` / `special_tokens_map.json`
    /// next to it; else a special added token named `<pad>` or `[PAD]`; else an error.
    pub fn from_file(path: &Path, options: TextOptions) -> Result<Self, TextError> {
        let bytes = std::fs::read(path).map_err(|source| TextError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut inner =
            tokenizers::Tokenizer::from_bytes(&bytes).map_err(|e| TextError::Parse {
                path: path.to_owned(),
                message: e.to_string(),
            })?;
        let special = inner
            .get_post_processor()
            .map_or(0, |p| tokenizers::PostProcessor::added_tokens(p, false));
        if options.context_length <= special {
            return Err(TextError::HfContextLength {
                path: path.to_owned(),
                special,
                got: options.context_length,
            });
        }
        let pad_id = match options.pad_id {
            Some(id) => id,
            None => match crate::configured_pad_id(path, &inner)? {
                Some(id) => id,
                None => special_pad_id(&inner).ok_or_else(|| TextError::HfNoPadId {
                    path: path.to_owned(),
                })?,
            },
        };
        // Padding is ours (a fixed row); truncation is the library's, so the special tokens stay.
        inner.with_padding(None);
        inner
            .with_truncation(Some(TruncationParams {
                max_length: options.context_length,
                strategy: TruncationStrategy::LongestFirst,
                ..TruncationParams::default()
            }))
            .map_err(|e| TextError::HfTruncation {
                path: path.to_owned(),
                message: e.to_string(),
            })?;
        Ok(Self {
            inner,
            context_length: options.context_length,
            pad_id,
        })
    }

    /// Ids written per text.
    pub fn context_length(&self) -> usize {
        self.context_length
    }

    /// The id that fills the slots after the real tokens.
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// Writes exactly context_length ids into `out`: the tokenizer's ids with its special tokens,
    /// truncated to the context length (the closing special token kept), then pad ids.
    pub fn encode_reporting(&self, text: &str, out: &mut [i64]) -> Result<Encoded, TextError> {
        if out.len() != self.context_length {
            return Err(TextError::OutLength {
                expected: self.context_length,
                got: out.len(),
            });
        }
        let encoding = self
            .inner
            .encode_fast(text, true)
            .map_err(|e| TextError::HfEncode(e.to_string()))?;
        let ids = encoding.get_ids();
        // Truncation to max_length guarantees the fit; checked so a library change cannot overrun.
        if ids.len() > self.context_length {
            return Err(TextError::HfEncode(format!(
                "{} ids for a context of {}",
                ids.len(),
                self.context_length
            )));
        }
        let (real, padding) = out.split_at_mut(ids.len());
        for (slot, id) in real.iter_mut().zip(ids) {
            *slot = i64::from(*id);
        }
        padding.fill(i64::from(self.pad_id));
        Ok(Encoded {
            truncated: !encoding.get_overflowing().is_empty(),
            tokens: ids.len(),
        })
    }
}

fn special_pad_id(inner: &tokenizers::Tokenizer) -> Option<u32> {
    inner
        .get_added_tokens_decoder()
        .into_iter()
        .filter(|(_, token)| token.special && PAD_TOKEN_NAMES.contains(&token.content.as_str()))
        .map(|(id, _)| id)
        .min()
}
