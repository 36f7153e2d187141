//! CLIP text tokenization with exact parity to open_clip's `SimpleTokenizer` (OpenAI's original).
//!
//! The pipeline, per text:
//! 1. [`clean_text`]: ftfy's `fix_text` (without mojibake repair), `html.unescape` twice, whitespace
//!    collapse, lowercase: the steps a Hugging Face fast tokenizer skips.
//! 2. open_clip's pre-tokenizer regex, reproduced with its quirks: `'s` also matches `'ſ`
//!    (case-insensitive), U+0345 is matched by nothing and dropped, and the literal words
//!    `<start_of_text>` / `<end_of_text>` become the start / end ids, as in open_clip 3.3.
//! 3. byte-level BPE from the `tokenizer.json`'s model (via the `tokenizers` crate). Only the model is
//!    used: the tokenizer.json's added-token matching is bypassed, so text typed by a user such as
//!    `<|endoftext|>` is split and BPE-encoded like any other text (as open_clip does) instead of
//!    becoming the special id (as Hugging Face's tokenizer does).
//! 4. start id, ids, end id, padding; over-long text is truncated so the end id stays last.
//!
//! The `hf` family ([`HfTokenizer`]) instead runs a tokenizer.json whole, as transformers does, for
//! text towers that are not CLIP's (XLM-R, LaBSE); [`TextTokenizer`] holds either family.

mod clean;
mod family;
mod hf;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use regex::Regex;
use tokenizers::models::ModelWrapper;
use tokenizers::Model;

pub use clean::{clean_text, fix_text, html_unescape};
pub use family::{TextTokenizer, TokenizerFamily};
pub use hf::HfTokenizer;

/// The start token's name in a CLIP tokenizer.json (id 49406 in OpenAI's vocabulary).
pub const START_TOKEN: &str = "<|startoftext|>";
/// The end token's name in a CLIP tokenizer.json (id 49407 in OpenAI's vocabulary).
pub const END_TOKEN: &str = "<|endoftext|>";

/// How to tokenize.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextOptions {
    /// Ids written per text (77 for all OpenAI / open_clip CLIP models).
    pub context_length: usize,
    /// Overrides the pad id found next to the tokenizer.json. open_clip pads with 0; Hugging Face's
    /// CLIP tokenizers pad with the end token (49407). With the usual argmax pooling on the end token
    /// both give the same embedding.
    pub pad_id: Option<u32>,
}

impl Default for TextOptions {
    fn default() -> Self {
        Self {
            context_length: 77,
            pad_id: None,
        }
    }
}

/// Errors, each saying what is wrong and how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum TextError {
    #[error("cannot read tokenizer file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a valid Hugging Face tokenizer.json: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path} is not a CLIP tokenizer: {message}")]
    NotClip { path: PathBuf, message: String },
    #[error("{path}: the token {token:?} is not in the vocabulary; a CLIP tokenizer.json needs both {START_TOKEN:?} and {END_TOKEN:?}")]
    MissingToken { path: PathBuf, token: String },
    #[error("cannot read {path}: {message}")]
    Config { path: PathBuf, message: String },
    #[error("{path} names pad token {token:?}, which is not in the vocabulary of the tokenizer.json; fix pad_token there or set TextOptions::pad_id")]
    PadTokenNotInVocab { path: PathBuf, token: String },
    #[error("no pad id for {path}: its tokenizer.json has no \"padding\", and no tokenizer_config.json or special_tokens_map.json with a \"pad_token\" lies next to it; set TextOptions::pad_id (0 as open_clip pads, or the end token id {end_id} as Hugging Face pads) or add a pad_token")]
    NoPadId { path: PathBuf, end_id: u32 },
    #[error("context_length must be at least 2 (the start and end tokens), got {0}")]
    ContextLength(usize),
    #[error("output buffer has {got} slots but the context length is {expected}; pass a slice of exactly context_length ids")]
    OutLength { expected: usize, got: usize },
    #[error("BPE failed on {piece:?}: {message}")]
    Bpe { piece: String, message: String },
    #[error("{path}: context_length {got} cannot hold the {special} special tokens the tokenizer adds around every text; use at least {}", special + 1)]
    HfContextLength {
        path: PathBuf,
        special: usize,
        got: usize,
    },
    #[error("no pad id for {path}: its tokenizer.json has no \"padding\" and no special token named \"<pad>\" or \"[PAD]\", and no tokenizer_config.json or special_tokens_map.json with a \"pad_token\" lies next to it; add a pad_token or set TextOptions::pad_id")]
    HfNoPadId { path: PathBuf },
    #[error("{path}: cannot set truncation to the context length: {message}")]
    HfTruncation { path: PathBuf, message: String },
    #[error("the Hugging Face tokenizer failed on the text: {0}")]
    HfEncode(String),
}

/// What encoding one text did, for callers that count it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Encoded {
    /// The text had more tokens than the context holds and lost the rest (the end token is kept).
    pub truncated: bool,
    /// Real tokens written, start and end included; the rest of the row is padding
    /// (an attention mask is 1 on exactly these).
    pub tokens: usize,
}

/// A CLIP text tokenizer. `Send + Sync`: share one across threads.
pub struct Tokenizer {
    model: ModelWrapper,
    context_length: usize,
    pad_id: u32,
    start_id: u32,
    end_id: u32,
    byte_chars: [char; 256],
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("context_length", &self.context_length)
            .field("pad_id", &self.pad_id)
            .field("start_id", &self.start_id)
            .field("end_id", &self.end_id)
            .finish_non_exhaustive()
    }
}

impl Tokenizer {
    /// Loads a Hugging Face tokenizer.json. The pad id: `options.pad_id` if Some; else the
    /// tokenizer.json's own `padding.pad_id`; else `pad_token` from a `tokenizer_config.json` (string or
    /// `{"content": ..}`) or `special_tokens_map.json` in the same folder, looked up in the vocab; else an
    /// error that says how to fix it.
    pub fn from_file(path: &Path, options: TextOptions) -> Result<Self, TextError> {
        if options.context_length < 2 {
            return Err(TextError::ContextLength(options.context_length));
        }
        let bytes = std::fs::read(path).map_err(|source| TextError::Read {
            path: path.to_owned(),
            source,
        })?;
        let hf = tokenizers::Tokenizer::from_bytes(&bytes).map_err(|e| TextError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        match hf.get_model() {
            ModelWrapper::BPE(bpe) if bpe.end_of_word_suffix.as_deref() == Some("</w>") => {}
            ModelWrapper::BPE(_) => {
                return Err(TextError::NotClip {
                    path: path.to_owned(),
                    message: "its BPE model has no \"</w>\" end-of-word suffix".into(),
                })
            }
            _ => {
                return Err(TextError::NotClip {
                    path: path.to_owned(),
                    message: "its model is not BPE".into(),
                })
            }
        }
        let lookup = |token: &str| {
            hf.token_to_id(token)
                .ok_or_else(|| TextError::MissingToken {
                    path: path.to_owned(),
                    token: token.to_owned(),
                })
        };
        let start_id = lookup(START_TOKEN)?;
        let end_id = lookup(END_TOKEN)?;
        let byte_chars = bytes_to_unicode();
        // Every byte must be a single-symbol word of the vocabulary, else BPE would emit unknowns.
        for c in byte_chars {
            for token in [c.to_string(), format!("{c}</w>")] {
                if hf.get_model().token_to_id(&token).is_none() {
                    return Err(TextError::NotClip {
                        path: path.to_owned(),
                        message: format!("its vocabulary lacks the byte-level token {token:?}"),
                    });
                }
            }
        }
        let pad_id = match options.pad_id {
            Some(id) => id,
            None => resolve_pad_id(path, &hf, end_id)?,
        };
        Ok(Self {
            model: hf.get_model().clone(),
            context_length: options.context_length,
            pad_id,
            start_id,
            end_id,
            byte_chars,
        })
    }

    /// Ids written per text.
    pub fn context_length(&self) -> usize {
        self.context_length
    }

    /// The id that fills the slots after the end token.
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// The start token's id (`<|startoftext|>`).
    pub fn start_id(&self) -> u32 {
        self.start_id
    }

    /// The end token's id (`<|endoftext|>`).
    pub fn end_id(&self) -> u32 {
        self.end_id
    }

    /// Writes exactly context_length ids into `out` (len must equal context_length, else error):
    /// start token, BPE ids of the cleaned text, end token, pad. Over-long text is truncated so the end
    /// token stays last.
    pub fn encode_into(&self, text: &str, out: &mut [i64]) -> Result<(), TextError> {
        self.encode_reporting(text, out).map(|_| ())
    }

    /// [`encode_into`](Self::encode_into), also saying whether the text was truncated.
    pub fn encode_reporting(&self, text: &str, out: &mut [i64]) -> Result<Encoded, TextError> {
        if out.len() != self.context_length {
            return Err(TextError::OutLength {
                expected: self.context_length,
                got: out.len(),
            });
        }
        let max_content = self.context_length - 2;
        let cleaned = clean_text(text);
        let mut ids: Vec<u32> = Vec::with_capacity(self.context_length);
        let mut mapped = String::new();
        for piece in pretokenizer().find_iter(&cleaned) {
            if ids.len() > max_content {
                break; // truncated anyway
            }
            match piece.as_str() {
                "<start_of_text>" => ids.push(self.start_id),
                "<end_of_text>" => ids.push(self.end_id),
                p => {
                    mapped.clear();
                    mapped.extend(p.bytes().map(|b| self.byte_chars[b as usize]));
                    let tokens = self.model.tokenize(&mapped).map_err(|e| TextError::Bpe {
                        piece: p.to_owned(),
                        message: e.to_string(),
                    })?;
                    ids.extend(tokens.iter().map(|t| t.id));
                }
            }
        }
        let truncated = ids.len() > max_content;
        ids.truncate(max_content);
        out[0] = self.start_id as i64;
        for (slot, id) in out[1..].iter_mut().zip(&ids) {
            *slot = *id as i64;
        }
        out[ids.len() + 1] = self.end_id as i64;
        for slot in &mut out[ids.len() + 2..] {
            *slot = self.pad_id as i64;
        }
        Ok(Encoded {
            truncated,
            tokens: ids.len() + 2,
        })
    }

    /// [`encode_into`](Self::encode_into) into a new vector.
    pub fn encode(&self, text: &str) -> Result<Vec<i64>, TextError> {
        let mut out = vec![0; self.context_length];
        self.encode_into(text, &mut out)?;
        Ok(out)
    }
}

/// open_clip's `<start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+`
/// with `re.IGNORECASE`, applied to lowercased text. Case-insensitivity matters only where the Python
/// `regex` module folds: `s` also matches `ſ` (U+017F), and U+0345 (which folds to a letter) is
/// excluded from the punctuation class yet not a letter, so nothing matches it.
fn pretokenizer() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(
            r"<[sſ]tart_of_text>|<end_of_text>|'[sſ]|'t|'re|'ve|'m|'ll|'d|\p{L}+|\p{N}|[^\s\p{L}\p{N}\x{345}]+",
        )
        .expect("valid regex")
    })
}

/// GPT-2 / CLIP byte-level alphabet: printable Latin-1 bytes stand for themselves, the other bytes
/// for U+0100 onwards, in byte order.
fn bytes_to_unicode() -> [char; 256] {
    let printable = |b: u32| {
        (0x21..=0x7e).contains(&b) || (0xa1..=0xac).contains(&b) || (0xae..=0xff).contains(&b)
    };
    let mut table = ['\0'; 256];
    let mut next = 0x100;
    for b in 0..256u32 {
        table[b as usize] = if printable(b) {
            char::from_u32(b).expect("Latin-1")
        } else {
            next += 1;
            char::from_u32(next - 1).expect("BMP")
        };
    }
    table
}

fn resolve_pad_id(path: &Path, hf: &tokenizers::Tokenizer, end_id: u32) -> Result<u32, TextError> {
    configured_pad_id(path, hf)?.ok_or_else(|| TextError::NoPadId {
        path: path.to_owned(),
        end_id,
    })
}

/// The tokenizer.json's own `padding.pad_id`, else `pad_token` from a `tokenizer_config.json` or
/// `special_tokens_map.json` next to it, looked up in the vocabulary; None when none of them says.
fn configured_pad_id(path: &Path, hf: &tokenizers::Tokenizer) -> Result<Option<u32>, TextError> {
    if let Some(padding) = hf.get_padding() {
        return Ok(Some(padding.pad_id));
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    for name in ["tokenizer_config.json", "special_tokens_map.json"] {
        let config = dir.join(name);
        let text = match std::fs::read_to_string(&config) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                return Err(TextError::Config {
                    path: config,
                    message: e.to_string(),
                })
            }
        };
        let json: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| TextError::Config {
                path: config.clone(),
                message: format!("invalid JSON: {e}"),
            })?;
        let token = match json.get("pad_token") {
            None | Some(serde_json::Value::Null) => continue,
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(v) => match v.get("content").and_then(|c| c.as_str()) {
                Some(s) => s.to_owned(),
                None => {
                    return Err(TextError::Config {
                        path: config,
                        message: format!(
                            "\"pad_token\" must be a string or {{\"content\": string}}, found {v}"
                        ),
                    })
                }
            },
        };
        return match hf.token_to_id(&token) {
            Some(id) => Ok(Some(id)),
            None => Err(TextError::PadTokenNotInVocab {
                path: config,
                token,
            }),
        };
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizer_is_send_sync() {
        fn check<T: Send + Sync>() {}
        check::<Tokenizer>();
        check::<TextTokenizer>();
    }

    /// Per code point, the class open_clip's regex puts it in and Python's `str.lower()`, compared with
    /// ours. Python 3.11 has Unicode 14 (the `regex` module its own, newer tables); Rust's are newer:
    /// disagreements are allowed only at code points unassigned in Python's Unicode, and counted.
    #[test]
    fn unicode_tables_agree_with_python_on_assigned_code_points() {
        #[derive(serde::Deserialize)]
        struct Tables {
            classes: Vec<(u32, u32, String)>,
            lower: std::collections::HashMap<u32, String>,
        }
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/fixtures/text/unicode.json"
        );
        let t: Tables = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let (l, n) = (
            Regex::new(r"^\p{L}$").unwrap(),
            Regex::new(r"^\p{N}$").unwrap(),
        );
        let (mut checked, mut newer, mut bad) = (0, 0, Vec::new());
        for (start, end, cls) in &t.classes {
            let unassigned = cls.ends_with('?');
            let want = match cls.trim_end_matches('?') {
                "S" | "-" => '-',
                c => c.chars().next().unwrap(),
            };
            for cp in *start..=*end {
                let c = char::from_u32(cp).unwrap();
                let s = c.to_string();
                let got = match pretokenizer().find(&s) {
                    None => '-',
                    Some(_) if l.is_match(&s) => 'L',
                    Some(_) if n.is_match(&s) => 'N',
                    Some(_) => 'O',
                };
                let lower_want = t.lower.get(&cp).cloned().unwrap_or_else(|| s.clone());
                checked += 1;
                if got != want || s.to_lowercase() != lower_want {
                    if unassigned {
                        newer += 1;
                    } else {
                        bad.push(format!(
                            "U+{cp:04X}: class {got} vs {want}, lower {:?} vs {lower_want:?}",
                            s.to_lowercase()
                        ));
                    }
                }
            }
        }
        assert!(checked > 1_000_000);
        assert!(
            bad.is_empty(),
            "{} assigned code points differ:\n{}",
            bad.len(),
            bad.join("\n")
        );
        eprintln!(
            "{newer} code points unassigned in Python's Unicode differ (newer Unicode in Rust)"
        );
    }

    #[test]
    fn byte_alphabet_is_a_bijection_onto_512_chars() {
        let table = bytes_to_unicode();
        let mut seen = std::collections::HashSet::new();
        for (b, c) in table.iter().enumerate() {
            assert!(seen.insert(*c), "duplicate for byte {b}");
            assert!((*c as u32) < 0x100 + 68, "byte {b} -> {c:?}");
        }
        assert_eq!(table[b'a' as usize], 'a');
        assert_eq!(table[b' ' as usize], '\u{120}');
    }
}
