//! Parity of the `hf` family with transformers' fast tokenizer (scripts/fixtures/hf_tokenizers.py,
//! tests/fixtures/text/hf): a tiny XLM-R-style SentencePiece Unigram (Precompiled nmt_nfkc normaliser)
//! and a tiny LaBSE-style WordPiece, on multilingual, emoji and over-long text, contexts 77 and 16.

use std::path::{Path, PathBuf};

use clip_text::{HfTokenizer, TextError, TextOptions, TextTokenizer, TokenizerFamily};

#[derive(serde::Deserialize)]
struct Record {
    tokenizer: String,
    context_length: usize,
    text: String,
    ids: Vec<i64>,
    attention_mask: Vec<i64>,
}

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/text/hf")
}

fn records() -> Vec<Record> {
    std::fs::read_to_string(fixtures().join("tokens.jsonl"))
        .expect("tokens.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).expect("tokens.jsonl line"))
        .collect()
}

fn options(context_length: usize) -> TextOptions {
    TextOptions {
        context_length,
        pad_id: None,
    }
}

fn tokenizer_json(name: &str) -> PathBuf {
    fixtures().join(name).join("tokenizer.json")
}

#[test]
fn ids_and_masks_equal_transformers() {
    let records = records();
    let mut truncated = 0;
    for r in &records {
        let tokenizer = TextTokenizer::from_file(
            &tokenizer_json(&r.tokenizer),
            TokenizerFamily::Hf,
            options(r.context_length),
        )
        .expect("fixture tokenizer loads");
        let mut ids = vec![-1; r.context_length];
        let encoded = tokenizer.encode_reporting(&r.text, &mut ids).unwrap();
        let mask: Vec<i64> = (0..r.context_length)
            .map(|i| i64::from(i < encoded.tokens))
            .collect();
        let label = format!("{} context {} {:?}", r.tokenizer, r.context_length, r.text);
        assert_eq!(ids, r.ids, "ids of {label}");
        assert_eq!(mask, r.attention_mask, "mask of {label}");
        // Truncated exactly when the row is full and the text has more than it holds.
        if encoded.truncated {
            truncated += 1;
            assert_eq!(encoded.tokens, r.context_length, "{label}");
        }
    }
    // Both tokenizers, both contexts, 13 sentences each; the over-long one truncates at 77 and 16.
    assert_eq!(records.len(), 2 * 2 * 13);
    assert!(truncated >= 4, "only {truncated} truncated rows");
}

#[test]
fn pad_ids_come_from_the_special_tokens() {
    let xlmr = HfTokenizer::from_file(&tokenizer_json("xlmr"), options(77)).unwrap();
    let bert = HfTokenizer::from_file(&tokenizer_json("bert"), options(77)).unwrap();
    assert_eq!((xlmr.pad_id(), bert.pad_id()), (1, 0));
    let overridden = HfTokenizer::from_file(
        &tokenizer_json("bert"),
        TextOptions {
            context_length: 77,
            pad_id: Some(7),
        },
    )
    .unwrap();
    let mut ids = vec![0; 77];
    overridden.encode_reporting("abc", &mut ids).unwrap();
    assert_eq!(ids[76], 7);
}

#[test]
fn context_too_short_for_the_special_tokens_is_refused() {
    let err = HfTokenizer::from_file(&tokenizer_json("xlmr"), options(2)).unwrap_err();
    assert!(
        matches!(
            err,
            TextError::HfContextLength {
                special: 2,
                got: 2,
                ..
            }
        ),
        "{err}"
    );
    assert!(HfTokenizer::from_file(&tokenizer_json("xlmr"), options(3)).is_ok());
}

#[test]
fn wrong_output_length_is_refused() {
    let tokenizer = HfTokenizer::from_file(&tokenizer_json("bert"), options(16)).unwrap();
    let err = tokenizer.encode_reporting("abc", &mut [0; 15]).unwrap_err();
    assert!(
        matches!(
            err,
            TextError::OutLength {
                expected: 16,
                got: 15
            }
        ),
        "{err}"
    );
}

#[test]
fn a_tokenizer_without_a_pad_token_is_refused_naming_the_fix() {
    let dir = std::env::temp_dir().join(format!("clip-text-hf-nopad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tokenizer_json("bert")).unwrap()).unwrap();
    for token in json["added_tokens"].as_array_mut().unwrap() {
        if token["content"] == "[PAD]" {
            token["special"] = false.into();
        }
    }
    let path = dir.join("tokenizer.json");
    std::fs::write(&path, json.to_string()).unwrap();
    let err = HfTokenizer::from_file(&path, options(16)).unwrap_err();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(matches!(err, TextError::HfNoPadId { .. }), "{err}");
    assert!(err.to_string().contains("pad_token"), "{err}");
}

#[test]
fn a_missing_file_is_named() {
    let err =
        HfTokenizer::from_file(Path::new("/nonexistent/tokenizer.json"), options(16)).unwrap_err();
    assert!(
        err.to_string().contains("/nonexistent/tokenizer.json"),
        "{err}"
    );
}
