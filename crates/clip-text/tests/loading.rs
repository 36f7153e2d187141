//! Loading: pad-id resolution, start/end tokens, unreadable and corrupt files, output length.
//! Uses a tiny CLIP-shaped tokenizer.json built here (byte-level alphabet, no merges).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use clip_text::{TextError, TextOptions, Tokenizer};
use serde_json::{json, Value};

/// The 256 byte-level symbols, computed the way GPT-2/CLIP do.
fn byte_symbols() -> Vec<char> {
    let mut printable: Vec<u32> = (0x21..=0x7e)
        .chain(0xa1..=0xac)
        .chain(0xae..=0xff)
        .collect();
    let mut chars: Vec<u32> = printable.clone();
    let mut n = 0;
    for b in 0..256 {
        if !printable.contains(&b) {
            printable.push(b);
            chars.push(256 + n);
            n += 1;
        }
    }
    let mut pairs: Vec<(u32, u32)> = printable.into_iter().zip(chars).collect();
    pairs.sort();
    pairs
        .into_iter()
        .map(|(_, c)| char::from_u32(c).unwrap())
        .collect()
}

/// A scratch folder under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let p = std::env::temp_dir().join(format!("clip-text-test-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Tiny {
    json: Value,
    vocab: HashMap<String, u32>,
}

fn tiny(with_start: bool, with_end: bool) -> Tiny {
    let mut vocab = HashMap::new();
    for c in byte_symbols() {
        let n = vocab.len() as u32;
        vocab.insert(c.to_string(), n);
    }
    for c in byte_symbols() {
        let n = vocab.len() as u32;
        vocab.insert(format!("{c}</w>"), n);
    }
    let mut added = vec![];
    for (ok, tok) in [(with_start, "<|startoftext|>"), (with_end, "<|endoftext|>")] {
        if ok {
            let id = vocab.len() as u32;
            vocab.insert(tok.to_string(), id);
            added.push(
                json!({"id": id, "content": tok, "single_word": false, "lstrip": false,
                              "rstrip": false, "normalized": true, "special": true}),
            );
        }
    }
    let json = json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": added,
        "normalizer": null, "pre_tokenizer": null, "post_processor": null, "decoder": null,
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": "",
                  "end_of_word_suffix": "</w>", "fuse_unk": false, "byte_fallback": false,
                  "ignore_merges": false, "vocab": vocab, "merges": []}
    });
    Tiny { json, vocab }
}

fn write(dir: &Path, name: &str, value: &Value) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, serde_json::to_vec(value).unwrap()).unwrap();
    p
}

fn opts(pad_id: Option<u32>) -> TextOptions {
    TextOptions {
        context_length: 8,
        pad_id,
    }
}

#[test]
fn layout_start_bpe_end_pad() {
    let dir = TempDir::new();
    let t = tiny(true, true);
    let path = write(dir.path(), "tokenizer.json", &t.json);
    let tok = Tokenizer::from_file(&path, opts(Some(3))).unwrap();
    assert_eq!(tok.context_length(), 8);
    assert_eq!(tok.pad_id(), 3);
    let (s, e) = (
        t.vocab["<|startoftext|>"] as i64,
        t.vocab["<|endoftext|>"] as i64,
    );
    assert_eq!(tok.start_id() as i64, s);
    assert_eq!(tok.end_id() as i64, e);
    let id = |k: &str| t.vocab[k] as i64;
    let mut out = [0i64; 8];
    // "AB c" -> cleaned "ab c" -> words "ab", "c" -> a, b</w>, c</w>
    tok.encode_into("AB c", &mut out).unwrap();
    assert_eq!(out, [s, id("a"), id("b</w>"), id("c</w>"), e, 3, 3, 3]);
    // Too long: 6 content slots, end token last.
    tok.encode_into("abcdefghij", &mut out).unwrap();
    assert_eq!(
        out,
        [s, id("a"), id("b"), id("c"), id("d"), id("e"), id("f"), e]
    );
    // Empty text.
    tok.encode_into("", &mut out).unwrap();
    assert_eq!(out, [s, e, 3, 3, 3, 3, 3, 3]);
    // A user's "<|endoftext|>" is text, never the special id.
    tok.encode_into("<|endoftext|>", &mut out).unwrap();
    assert_eq!(out[1], id("<"));
    assert_eq!(out[1..7].iter().filter(|&&i| i == e).count(), 0);
}

/// Truncation is reported exactly when a token is dropped: 6 content slots hold "abcdef", not "abcdefg".
#[test]
fn encode_reporting_says_when_a_text_was_truncated() {
    let dir = TempDir::new();
    let path = write(dir.path(), "tokenizer.json", &tiny(true, true).json);
    let tok = Tokenizer::from_file(&path, opts(Some(0))).unwrap();
    let mut out = [0i64; 8];
    for (text, truncated) in [
        ("", false),
        ("abcdef", false),
        ("abcdefg", true),
        ("a b c d e f g h", true),
    ] {
        let encoded = tok.encode_reporting(text, &mut out).unwrap();
        assert_eq!(encoded.truncated, truncated, "{text:?}");
        let mut plain = [0i64; 8];
        tok.encode_into(text, &mut plain).unwrap();
        assert_eq!(out, plain, "{text:?}");
    }
}

#[test]
fn wrong_out_length_is_an_error() {
    let dir = TempDir::new();
    let path = write(dir.path(), "tokenizer.json", &tiny(true, true).json);
    let tok = Tokenizer::from_file(&path, opts(Some(0))).unwrap();
    for len in [0, 7, 9, 77] {
        let mut out = vec![0i64; len];
        let err = tok.encode_into("a", &mut out).unwrap_err();
        assert!(
            matches!(err, TextError::OutLength { expected: 8, got } if got == len),
            "{err}"
        );
        assert!(err.to_string().contains("context_length"), "{err}");
    }
}

#[test]
fn pad_from_tokenizer_json_padding() {
    let dir = TempDir::new();
    let mut t = tiny(true, true);
    t.json["padding"] = json!({"strategy": "BatchLongest", "direction": "Right", "pad_to_multiple_of": null,
                               "pad_id": 17, "pad_type_id": 0, "pad_token": "x"});
    let path = write(dir.path(), "tokenizer.json", &t.json);
    // A config next to it loses to the tokenizer.json's own padding.
    write(
        dir.path(),
        "tokenizer_config.json",
        &json!({"pad_token": "<|endoftext|>"}),
    );
    assert_eq!(
        Tokenizer::from_file(&path, opts(None)).unwrap().pad_id(),
        17
    );
    // The override wins over both.
    assert_eq!(
        Tokenizer::from_file(&path, opts(Some(5))).unwrap().pad_id(),
        5
    );
}

#[test]
fn pad_from_tokenizer_config_string_or_object() {
    let dir = TempDir::new();
    let t = tiny(true, true);
    let path = write(dir.path(), "tokenizer.json", &t.json);
    write(
        dir.path(),
        "tokenizer_config.json",
        &json!({"pad_token": "<|endoftext|>"}),
    );
    assert_eq!(
        Tokenizer::from_file(&path, opts(None)).unwrap().pad_id(),
        t.vocab["<|endoftext|>"]
    );
    write(
        dir.path(),
        "tokenizer_config.json",
        &json!({"pad_token": {"content": "!", "lstrip": false}}),
    );
    assert_eq!(
        Tokenizer::from_file(&path, opts(None)).unwrap().pad_id(),
        t.vocab["!"]
    );
    assert_eq!(
        Tokenizer::from_file(&path, opts(Some(0))).unwrap().pad_id(),
        0
    );
}

#[test]
fn pad_from_special_tokens_map_when_config_has_none() {
    let dir = TempDir::new();
    let t = tiny(true, true);
    let path = write(dir.path(), "tokenizer.json", &t.json);
    write(
        dir.path(),
        "tokenizer_config.json",
        &json!({"pad_token": null, "model_max_length": 77}),
    );
    write(
        dir.path(),
        "special_tokens_map.json",
        &json!({"pad_token": {"content": "<|startoftext|>"}}),
    );
    assert_eq!(
        Tokenizer::from_file(&path, opts(None)).unwrap().pad_id(),
        t.vocab["<|startoftext|>"]
    );
}

#[test]
fn no_pad_id_anywhere_says_how_to_fix() {
    let dir = TempDir::new();
    let path = write(dir.path(), "tokenizer.json", &tiny(true, true).json);
    let err = Tokenizer::from_file(&path, opts(None)).unwrap_err();
    assert!(matches!(err, TextError::NoPadId { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("pad_id") && msg.contains("pad_token"), "{msg}");
}

#[test]
fn pad_token_not_in_vocab() {
    let dir = TempDir::new();
    let path = write(dir.path(), "tokenizer.json", &tiny(true, true).json);
    write(
        dir.path(),
        "tokenizer_config.json",
        &json!({"pad_token": "<pad>"}),
    );
    let err = Tokenizer::from_file(&path, opts(None)).unwrap_err();
    assert!(
        matches!(&err, TextError::PadTokenNotInVocab { token, .. } if token == "<pad>"),
        "{err:?}"
    );
    assert!(err.to_string().contains("<pad>"));
}

#[test]
fn corrupt_tokenizer_config() {
    let dir = TempDir::new();
    let path = write(dir.path(), "tokenizer.json", &tiny(true, true).json);
    std::fs::write(dir.path().join("tokenizer_config.json"), b"{ not json").unwrap();
    let err = Tokenizer::from_file(&path, opts(None)).unwrap_err();
    assert!(matches!(err, TextError::Config { .. }), "{err:?}");
    assert!(err.to_string().contains("tokenizer_config.json"), "{err}");
    // With an override the config is never read.
    assert!(Tokenizer::from_file(&path, opts(Some(0))).is_ok());
    write(
        dir.path(),
        "tokenizer_config.json",
        &json!({"pad_token": 5}),
    );
    let err = Tokenizer::from_file(&path, opts(None)).unwrap_err();
    assert!(matches!(err, TextError::Config { .. }), "{err:?}");
}

#[test]
fn missing_start_or_end_token() {
    for (start, end, missing) in [
        (false, true, "<|startoftext|>"),
        (true, false, "<|endoftext|>"),
    ] {
        let dir = TempDir::new();
        let path = write(dir.path(), "tokenizer.json", &tiny(start, end).json);
        let err = Tokenizer::from_file(&path, opts(Some(0))).unwrap_err();
        assert!(
            matches!(&err, TextError::MissingToken { token, .. } if token == missing),
            "{err:?}"
        );
        assert!(err.to_string().contains(missing));
    }
}

#[test]
fn unreadable_and_corrupt_tokenizer_json() {
    let dir = TempDir::new();
    let missing = dir.path().join("nope.json");
    let err = Tokenizer::from_file(&missing, opts(Some(0))).unwrap_err();
    assert!(matches!(err, TextError::Read { .. }), "{err:?}");
    assert!(err.to_string().contains("nope.json"), "{err}");

    let err = Tokenizer::from_file(dir.path(), opts(Some(0))).unwrap_err();
    assert!(matches!(err, TextError::Read { .. }), "directory: {err:?}");

    for bad in [
        &b"{ this is not json"[..],
        b"",
        b"{\"model\": 3}",
        b"[1, 2]",
    ] {
        let p = dir.path().join("bad.json");
        std::fs::write(&p, bad).unwrap();
        let err = Tokenizer::from_file(&p, opts(Some(0))).unwrap_err();
        assert!(matches!(err, TextError::Parse { .. }), "{bad:?}: {err:?}");
        assert!(err.to_string().contains("bad.json"), "{err}");
    }
}

#[test]
fn not_a_clip_bpe() {
    let dir = TempDir::new();
    let mut t = tiny(true, true);
    t.json["model"]["end_of_word_suffix"] = Value::Null;
    let path = write(dir.path(), "tokenizer.json", &t.json);
    let err = Tokenizer::from_file(&path, opts(Some(0))).unwrap_err();
    assert!(matches!(err, TextError::NotClip { .. }), "{err:?}");

    let wp = json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
        "normalizer": null, "pre_tokenizer": null, "post_processor": null, "decoder": null,
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                  "max_input_chars_per_word": 100, "vocab": {"[UNK]": 0, "<|startoftext|>": 1, "<|endoftext|>": 2}}
    });
    let path = write(dir.path(), "wp.json", &wp);
    let err = Tokenizer::from_file(&path, opts(Some(0))).unwrap_err();
    assert!(matches!(err, TextError::NotClip { .. }), "{err:?}");
}

#[test]
fn context_length_below_two() {
    let dir = TempDir::new();
    let path = write(dir.path(), "tokenizer.json", &tiny(true, true).json);
    for n in [0, 1] {
        let err = Tokenizer::from_file(
            &path,
            TextOptions {
                context_length: n,
                pad_id: Some(0),
            },
        )
        .unwrap_err();
        assert!(matches!(err, TextError::ContextLength(_)), "{err:?}");
    }
    let tok = Tokenizer::from_file(
        &path,
        TextOptions {
            context_length: 2,
            pad_id: Some(0),
        },
    )
    .unwrap();
    assert_eq!(
        tok.encode("hello").unwrap(),
        vec![tok.start_id() as i64, tok.end_id() as i64]
    );
}

#[test]
fn shared_across_threads() {
    let dir = TempDir::new();
    let path = write(dir.path(), "tokenizer.json", &tiny(true, true).json);
    let tok = std::sync::Arc::new(Tokenizer::from_file(&path, opts(Some(0))).unwrap());
    let want = tok.encode("a b c").unwrap();
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let tok = tok.clone();
            std::thread::spawn(move || {
                (0..50)
                    .map(|_| tok.encode("a b c").unwrap())
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for h in handles {
        assert!(h.join().unwrap().iter().all(|v| *v == want));
    }
}
