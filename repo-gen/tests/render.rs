//! Rendered configs compared byte for byte with the committed golden files,
//! plus escaping, validation and the files written into a repository.
//!
//! `REPO_GEN_BLESS=1 cargo test -p repo-gen` rewrites the golden files; review the diff.

mod common;

use std::path::{Path, PathBuf};

use clip_contract::{defaults, model, param};
use clip_text::TokenizerFamily;
use common::golden;
use repo_gen::{
    pbtxt_string, Batching, DynamicBatching, ImagePreprocessModel, RenderError, TextPreprocessModel,
};

fn dynamic(max_batch_size: u32, preferred: &[u32], delay_us: Option<u64>) -> Batching {
    Batching {
        max_batch_size,
        dynamic: Some(DynamicBatching {
            preferred_batch_sizes: preferred.to_vec(),
            max_queue_delay_us: delay_us,
        }),
    }
}

fn text() -> TextPreprocessModel {
    TextPreprocessModel::new(model::TEXT_PREPROCESS, dynamic(64, &[16, 32], Some(1_000)))
}

fn image() -> ImagePreprocessModel {
    ImagePreprocessModel::new(model::IMAGE_PREPROCESS, dynamic(32, &[], Some(500)))
}

#[test]
fn golden_text_defaults() {
    golden("text_preprocess.pbtxt", &text().render().unwrap());
}

#[test]
fn golden_text_pad0_without_dynamic_batching() {
    let model = TextPreprocessModel {
        name: "clip_text_preprocess_pad0".into(),
        batching: Batching {
            max_batch_size: 8,
            dynamic: None,
        },
        instances: 4,
        pad_token_id: Some(0),
        ..text()
    };
    golden("text_preprocess_pad0.pbtxt", &model.render().unwrap());
}

/// An XLM-R / LaBSE text tower: the hf family, INT64 ids and the mask.
#[test]
fn golden_text_hf_family_with_attention_mask() {
    let model = TextPreprocessModel {
        name: "xlmr_text_preprocess".into(),
        tokenizer_family: TokenizerFamily::Hf,
        attention_mask: true,
        ..text()
    };
    let rendered = model.render().unwrap();
    assert!(!text().render().unwrap().contains(param::TOKENIZER_FAMILY));
    golden("text_preprocess_hf.pbtxt", &rendered);
}

#[test]
fn golden_image_defaults() {
    golden("image_preprocess.pbtxt", &image().render().unwrap());
}

#[test]
fn golden_image_fp16_336() {
    let model = ImagePreprocessModel {
        name: "clip_image_preprocess_fp16".into(),
        batching: dynamic(16, &[4, 8, 16], None),
        instances: 2,
        image_size: 336,
        mean: [0.5; 3],
        std: [0.5; 3],
        max_pixels: 1_000_000,
        reduced_scale_decode: false,
        center_crop: clip_image::CenterCrop::Torchvision,
        half_precision: true,
        decoded_input: false,
        // The one golden config without a warmup sample.
        warmup: false,
        extra_parameters: Vec::new(),
    };
    golden("image_preprocess_fp16_336.pbtxt", &model.render().unwrap());
}

#[test]
fn extra_parameters_replace_in_place_and_append() {
    let model = TextPreprocessModel {
        extra_parameters: vec![
            (param::KIND.into(), "resize".into()),
            ("note".into(), "kept".into()),
        ],
        ..text()
    };
    let config = model.render().unwrap();
    assert!(config.contains("key: \"kind\"\n  value: { string_value: \"resize\" }"));
    assert!(!config.contains("text_preprocess\" }"), "{config}");
    assert_eq!(config.matches("key: \"kind\"").count(), 1, "{config}");
    let kind_at = config.find("key: \"kind\"").unwrap();
    let note_at = config.find("key: \"note\"").unwrap();
    let context_at = config.find("key: \"context_length\"").unwrap();
    assert!(kind_at < context_at && context_at < note_at, "{config}");
}

#[test]
fn pbtxt_strings_escape_quotes_backslashes_and_control_characters() {
    let cases = [
        ("plain", r#""plain""#),
        (r#"say "hi""#, r#""say \"hi\"""#),
        (r"C:\models", r#""C:\\models""#),
        ("two\nlines\r\tend", r#""two\nlines\r\tend""#),
        ("bell\u{7}nul\0del\u{7f}", r#""bell\007nul\000del\177""#),
        ("it's ünïcødé", r#""it's ünïcødé""#),
        ("", r#""""#),
    ];
    for (raw, quoted) in cases {
        assert_eq!(pbtxt_string(raw), quoted, "{raw:?}");
        assert_eq!(unquote(quoted), raw, "{quoted}");
    }
}

/// Protobuf text-format string parsing, enough for what `pbtxt_string` writes.
fn unquote(quoted: &str) -> String {
    let inner = quoted
        .strip_prefix('"')
        .and_then(|q| q.strip_suffix('"'))
        .unwrap();
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '"' || c == '\n' {
            panic!("unescaped {c:?} in {quoted}");
        }
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next().unwrap() {
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            't' => out.push('\t'),
            d @ '0'..='7' => {
                let digits: String = [d, chars.next().unwrap(), chars.next().unwrap()]
                    .iter()
                    .collect();
                out.push(char::from(u8::from_str_radix(&digits, 8).unwrap()));
            }
            other => out.push(other),
        }
    }
    out
}

#[test]
fn parameter_values_with_quotes_and_newlines_stay_one_pbtxt_string() {
    let model = ImagePreprocessModel {
        extra_parameters: vec![("comment".into(), "a \"quoted\"\nsecond line".into())],
        ..image()
    };
    let config = model.render().unwrap();
    assert!(
        config.contains(r#"value: { string_value: "a \"quoted\"\nsecond line" }"#),
        "{config}"
    );
    // Every line of the config is balanced: no string leaked across lines.
    for line in config.lines() {
        let unescaped_quotes = line.replace("\\\\", "").replace("\\\"", "");
        assert_eq!(unescaped_quotes.matches('"').count() % 2, 0, "{line}");
    }
}

#[test]
fn names_that_are_not_plain_folder_names_are_refused() {
    let repository = tempfile::tempdir().unwrap();
    for bad in [
        "",
        ".",
        "..",
        "a/b",
        "../escape",
        "/abs",
        "a\\b",
        "tab\there",
    ] {
        let model = TextPreprocessModel {
            name: bad.into(),
            ..text()
        };
        let error = model.render().unwrap_err();
        assert!(
            matches!(error, RenderError::InvalidName { .. }),
            "{bad:?}: {error}"
        );
        assert!(
            error.to_string().contains("not a plain folder name"),
            "{error}"
        );
        let image = ImagePreprocessModel {
            name: bad.into(),
            ..image()
        };
        assert!(matches!(
            image.write_into(repository.path()),
            Err(RenderError::InvalidName { .. })
        ));
    }
    assert_eq!(std::fs::read_dir(repository.path()).unwrap().count(), 0);
    for good in ["clip_text_preprocess", "my-model.v2", "..hidden", "ünï"] {
        let model = TextPreprocessModel {
            name: good.into(),
            ..text()
        };
        model.render().unwrap_or_else(|e| panic!("{good:?}: {e}"));
    }
}

#[test]
fn invalid_values_are_refused_with_the_reason() {
    let messages = [
        TextPreprocessModel {
            batching: dynamic(0, &[], None),
            ..text()
        }
        .render(),
        TextPreprocessModel {
            batching: dynamic(8, &[4, 16], None),
            ..text()
        }
        .render(),
        TextPreprocessModel {
            instances: 0,
            ..text()
        }
        .render(),
        TextPreprocessModel {
            context_length: 0,
            ..text()
        }
        .render(),
        TextPreprocessModel {
            extra_parameters: vec![(String::new(), "x".into())],
            ..text()
        }
        .render(),
        ImagePreprocessModel {
            std: [0.2, 0.0, 0.2],
            ..image()
        }
        .render(),
        ImagePreprocessModel {
            mean: [f32::NAN, 0.0, 0.0],
            ..image()
        }
        .render(),
        ImagePreprocessModel {
            image_size: 0,
            ..image()
        }
        .render(),
    ]
    .map(|result| result.unwrap_err().to_string());
    let expected = [
        "max_batch_size must be at least 1",
        "preferred batch size 16 is outside 1..=8",
        "instance count must be at least 1",
        "context_length must be at least 1",
        "empty key",
        "std must be positive",
        "mean must be finite",
        "image_size must be at least 1",
    ];
    for (message, says) in messages.iter().zip(expected) {
        assert!(message.contains(says), "{message:?} lacks {says:?}");
    }
    assert!(messages[0].starts_with("model 'clip_text_preprocess'"));
}

fn tokenizer_folder(with_config: bool) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(defaults::TOKENIZER_FILE),
        "{\"tokenizer\": 1}",
    )
    .unwrap();
    if with_config {
        std::fs::write(dir.path().join("tokenizer_config.json"), "{}").unwrap();
    }
    dir
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.push(path.clone());
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files.sort();
    files
}

#[test]
fn write_into_lays_out_config_version_folder_and_tokenizer_files() {
    let repository = tempfile::tempdir().unwrap();
    let root = repository.path();
    let tokenizer = tokenizer_folder(true);
    let text_model = text();
    let text_dir = text_model.write_into(root, Some(tokenizer.path())).unwrap();
    assert_eq!(text_dir, root.join(model::TEXT_PREPROCESS));
    assert_eq!(
        std::fs::read_to_string(text_dir.join("config.pbtxt")).unwrap(),
        text_model.render().unwrap()
    );
    assert_eq!(
        std::fs::read_to_string(text_dir.join("1").join(defaults::TOKENIZER_FILE)).unwrap(),
        "{\"tokenizer\": 1}"
    );

    let without_config = tokenizer_folder(false);
    let pad0 = TextPreprocessModel {
        name: "pad0".into(),
        ..text()
    };
    pad0.write_into(root, Some(without_config.path())).unwrap();
    let no_tokenizer = TextPreprocessModel {
        name: "bare".into(),
        ..text()
    };
    no_tokenizer.write_into(root, None).unwrap();
    image().write_into(root).unwrap();

    let relative: Vec<String> = files_under(root)
        .iter()
        .map(|p| p.strip_prefix(root).unwrap().display().to_string())
        .collect();
    assert_eq!(
        relative,
        [
            "bare",
            "bare/1",
            "bare/config.pbtxt",
            "bare/warmup",
            "bare/warmup/sentence",
            "clip_image_preprocess",
            "clip_image_preprocess/1",
            "clip_image_preprocess/config.pbtxt",
            "clip_image_preprocess/warmup",
            "clip_image_preprocess/warmup/photo",
            "clip_text_preprocess",
            "clip_text_preprocess/1",
            "clip_text_preprocess/1/tokenizer.json",
            "clip_text_preprocess/1/tokenizer_config.json",
            "clip_text_preprocess/config.pbtxt",
            "clip_text_preprocess/warmup",
            "clip_text_preprocess/warmup/sentence",
            "pad0",
            "pad0/1",
            "pad0/1/tokenizer.json",
            "pad0/config.pbtxt",
            "pad0/warmup",
            "pad0/warmup/sentence",
        ]
    );
    // Triton reads a TYPE_STRING warmup file as length-prefixed elements.
    let photo = std::fs::read(root.join("clip_image_preprocess/warmup/photo")).unwrap();
    let length = u32::from_le_bytes(photo[..4].try_into().unwrap()) as usize;
    assert_eq!(length, photo.len() - 4);
    assert_eq!(&photo[4..7], &[0xFF, 0xD8, 0xFF], "a JPEG");
}

#[test]
fn a_tokenizer_folder_without_tokenizer_json_is_refused() {
    let repository = tempfile::tempdir().unwrap();
    let empty = tempfile::tempdir().unwrap();
    let error = text()
        .write_into(repository.path(), Some(empty.path()))
        .unwrap_err();
    assert!(
        matches!(error, RenderError::MissingTokenizer { .. }),
        "{error}"
    );
    assert!(
        error.to_string().contains("has no tokenizer.json"),
        "{error}"
    );
    assert_eq!(std::fs::read_dir(repository.path()).unwrap().count(), 0);
}

#[test]
fn mean_and_std_parse_back_to_the_same_floats() {
    let config = image().render().unwrap();
    for (key, expected) in [
        (param::IMAGE_MEAN, defaults::IMAGE_MEAN),
        (param::IMAGE_STD, defaults::IMAGE_STD),
    ] {
        let line = config
            .lines()
            .skip_while(|line| !line.contains(&format!("key: \"{key}\"")))
            .nth(1)
            .unwrap();
        let value = line.split('"').nth(1).unwrap();
        let parsed: Vec<f32> = value.split(',').map(|v| v.parse().unwrap()).collect();
        assert_eq!(parsed, expected, "{key}: {value}");
    }
}
