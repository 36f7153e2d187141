//! The `text_preprocess` kind: sentences (`TEXT`, BYTES) to token ids
//! (`INPUT_IDS`, `[context_length]`), open_clip's tokenizer exactly (or,
//! with `tokenizer_family` `hf`, a Hugging Face tokenizer.json whole), and
//! for encoders that take one, the `ATTENTION_MASK` beside them; both of
//! the integer type the encoder takes (INT64 or INT32).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clip_contract::{param, tensor, DataType};
use clip_text::{TextError, TextOptions, TextTokenizer};

use super::shared::{request_elements, Preprocess, Shared};
use crate::batch::{BatchOutput, HostTensor, NamedTensor, Request, RequestError, Rows};
use crate::config::TextSpec;
use crate::kind::{Instance, Kind, Runner};
use crate::metrics::{Metrics, Reason};

pub struct TextPreprocess {
    tokenizer: TextTokenizer,
    max_text_bytes: usize,
    ids_type: DataType,
    attention_mask: bool,
    metrics: Metrics,
}

impl TextPreprocess {
    pub fn load(spec: TextSpec, version_dir: &Path, metrics: Metrics) -> Result<Self, String> {
        let path = inside_model_folder(version_dir, &spec.tokenizer_file)?;
        let options = TextOptions {
            context_length: spec.context_length,
            pad_id: spec.pad_id,
        };
        let tokenizer =
            TextTokenizer::from_file(&path, spec.family, options).map_err(|e| match e {
                // The library names its own option; a Triton user sets a config parameter.
                TextError::NoPadId { .. }
                | TextError::HfNoPadId { .. }
                | TextError::PadTokenNotInVocab { .. } => {
                    format!(
                        "{e} (in config.pbtxt: the '{}' parameter)",
                        param::PAD_TOKEN_ID
                    )
                }
                e => e.to_string(),
            })?;
        Ok(TextPreprocess {
            tokenizer,
            max_text_bytes: spec.max_text_bytes,
            ids_type: spec.ids_type,
            attention_mask: spec.attention_mask,
            metrics,
        })
    }

    /// Tokenizes one request's sentences into its rows of the batch buffer,
    /// up to the first that fails, and each row's count of real tokens.
    fn tokenize(
        &self,
        texts: &[&[u8]],
        rows: &mut [i64],
        tokens: &mut [usize],
    ) -> Result<(), RequestError> {
        let width = self.tokenizer.context_length();
        let rows = rows.chunks_exact_mut(width).zip(tokens);
        for (index, (text, (row, tokens))) in texts.iter().zip(rows).enumerate() {
            let text = std::str::from_utf8(text).map_err(|e| {
                self.metrics.rejected(Reason::InvalidUtf8);
                RequestError::invalid(format!(
                    "{} element {index} is not valid UTF-8: {e}",
                    tensor::TEXT
                ))
            })?;
            let encoded = self.tokenizer.encode_reporting(text, row).map_err(|e| {
                self.metrics.rejected(Reason::TokenizerError);
                RequestError::invalid(format!("{} element {index}: {e}", tensor::TEXT))
            })?;
            self.metrics.text_tokenized(encoded.truncated);
            *tokens = encoded.tokens;
        }
        Ok(())
    }

    /// `values` as the batch buffer of the encoder's integer type.
    fn integers(&self, values: Vec<i64>) -> HostTensor {
        let row = vec![self.tokenizer.context_length() as i64];
        match self.ids_type {
            // Ids are below the vocabulary size, far under 2^31.
            DataType::Int32 => {
                HostTensor::from_vec(row, values.iter().map(|&v| v as i32).collect())
            }
            _ => HostTensor::from_vec(row, values),
        }
    }
}

impl Kind for TextPreprocess {
    fn input_names(&self) -> Vec<&str> {
        vec![tensor::TEXT]
    }

    fn runner(self: Arc<Self>, _instance: &Instance) -> Result<Box<dyn Runner>, String> {
        Ok(Box::new(Shared(self)))
    }
}

impl Preprocess for TextPreprocess {
    fn execute(&self, batch: &[Result<Request<'_>, RequestError>]) -> BatchOutput {
        let width = self.tokenizer.context_length();
        let mut rows = Rows::default();
        let parsed: Vec<_> = batch
            .iter()
            .map(|request| {
                let limit = (self.max_text_bytes, param::MAX_TEXT_BYTES);
                let texts = request_elements(tensor::TEXT, request, limit, &self.metrics)?;
                Ok((rows.take(texts.len()), texts))
            })
            .collect();
        let mut ids = vec![0i64; rows.total() * width];
        let mut tokens = vec![0usize; rows.total()];
        let requests = parsed
            .into_iter()
            .map(|parsed: Result<_, RequestError>| {
                let (range, texts) = parsed?;
                let rows = &mut ids[range.start * width..range.end * width];
                self.tokenize(&texts, rows, &mut tokens[range.clone()])?;
                Ok(range)
            })
            .collect();
        let mut tensors = vec![NamedTensor {
            name: tensor::INPUT_IDS.into(),
            tensor: self.integers(ids),
        }];
        if self.attention_mask {
            let mask = tokens
                .iter()
                .flat_map(|&real| (0..width).map(move |i| i64::from(i < real)))
                .collect();
            tensors.push(NamedTensor {
                name: tensor::ATTENTION_MASK.into(),
                tensor: self.integers(mask),
            });
        }
        BatchOutput { tensors, requests }
    }
}

/// `file` (already a plain relative path, see config) resolved through any
/// symlinks, refused unless it stays inside the model's folder (the version
/// folder's parent). Links within the folder, as a Kubernetes ConfigMap
/// mount makes, are fine; a link out of it is not read.
fn inside_model_folder(version_dir: &Path, file: &Path) -> Result<PathBuf, String> {
    let path = version_dir.join(file);
    let model_dir = version_dir.parent().unwrap_or(version_dir);
    let (Ok(resolved), Ok(folder)) = (path.canonicalize(), model_dir.canonicalize()) else {
        // Missing: the tokenizer's own error names the file.
        return Ok(path);
    };
    if resolved.starts_with(&folder) {
        Ok(resolved)
    } else {
        Err(format!(
            "parameter '{}': {} resolves to {}, outside the model folder {}",
            param::TOKENIZER_FILE,
            path.display(),
            resolved.display(),
            folder.display()
        ))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use clip_contract::defaults;
    use clip_text::TokenizerFamily;

    use clip_test_support::fixture;

    use super::*;
    use crate::batch::{bytes_request, Element, ErrorKind};
    use crate::config::KindSpec;
    use crate::kind::{cpu_instance, Device};
    use crate::metrics::tests::{expect, tally, Tally};

    pub(crate) fn text_spec(pad_id: Option<u32>) -> TextSpec {
        TextSpec {
            tokenizer_file: defaults::TOKENIZER_FILE.into(),
            context_length: defaults::CONTEXT_LENGTH,
            pad_id,
            family: TokenizerFamily::ClipBpe,
            max_text_bytes: defaults::MAX_TEXT_BYTES,
            ids_type: DataType::Int64,
            attention_mask: false,
        }
    }

    /// The kind and what it counts.
    fn counted(spec: TextSpec) -> (Result<TextPreprocess, String>, Arc<Tally>) {
        let (metrics, tally) = tally(&KindSpec::TextPreprocess(text_spec(None)));
        (TextPreprocess::load(spec, &fixture("text"), metrics), tally)
    }

    fn load(spec: TextSpec, version_dir: &Path) -> Result<TextPreprocess, String> {
        let (metrics, _) = tally(&KindSpec::TextPreprocess(text_spec(None)));
        TextPreprocess::load(spec, version_dir, metrics)
    }

    pub(crate) fn text_kind(pad_id: Option<u32>) -> Arc<dyn Kind> {
        let spec = text_spec(pad_id);
        Arc::new(load(spec, &fixture("text")).unwrap_or_else(|e| panic!("{e}")))
    }

    /// An element over max_text_bytes fails its request, naming it, before
    /// anything of the request is tokenized; the rest of the batch runs.
    #[test]
    fn an_oversized_text_fails_its_request_alone() {
        let spec = TextSpec {
            max_text_bytes: 8,
            ..text_spec(Some(0))
        };
        let mut kind = Arc::new(load(spec, &fixture("text")).unwrap())
            .runner(&cpu_instance())
            .unwrap();
        let results = kind.execute(&[
            bytes_request(&[b"a cat", b"nine byte"]),
            bytes_request(&[b"a dog", b"8 bytes!"]),
            bytes_request(&[b"much too long", b"\xff"]),
        ]);
        let over = results.response(0).unwrap_err();
        assert_eq!(over.kind, ErrorKind::InvalidArg);
        assert_eq!(
            over.message,
            "TEXT element 1 is 9 bytes, over this model's limit of 8 (parameter 'max_text_bytes')"
        );
        assert_eq!(results.shape(1), [2, 77], "8 bytes is within the limit");
        // The size check comes first: element 1's bad UTF-8 is never looked at.
        assert!(
            results
                .response(2)
                .unwrap_err()
                .message
                .starts_with("TEXT element 0 is 13 bytes"),
            "{:?}",
            results.response(2)
        );
    }

    #[test]
    fn text_batch_fails_per_request() {
        let kind = text_kind(Some(0));
        assert_eq!(kind.input_names(), [tensor::TEXT]);
        let mut kind = kind.runner(&cpu_instance()).unwrap();
        assert_eq!(kind.device(), Device::Cpu);
        let batch = vec![
            bytes_request(&[b"a photo of a cat", b""]),
            Err(RequestError::invalid("input 'TEXT' is missing")),
            bytes_request(&[b"ok", b"\xc3\x28"]),
            bytes_request(&[b"a dog"]),
        ];
        let results = kind.execute(&batch);
        assert_eq!(results.requests.len(), 4);
        assert_eq!(results.names(), [tensor::INPUT_IDS]);

        assert_eq!(results.shape(0), [2, 77]);
        let ids = results.values::<i64>(0).unwrap();
        assert_eq!(&ids[..8], &[49406, 320, 1125, 539, 320, 2368, 49407, 0]);
        assert_eq!(
            &ids[77..80],
            &[49406, 49407, 0],
            "an empty text is start, end, padding"
        );

        assert_eq!(
            results.response(1).unwrap_err().message,
            "input 'TEXT' is missing"
        );
        let utf8 = results.response(2).unwrap_err();
        assert_eq!(utf8.kind, ErrorKind::InvalidArg);
        assert!(
            utf8.message
                .starts_with("TEXT element 1 is not valid UTF-8"),
            "{utf8}"
        );
        assert!(results.response(3).is_ok());
    }

    /// A two-input encoder's preprocessing: INT32 ids and a mask that is 1
    /// on exactly the real tokens (start, text, end), each request reading
    /// its own rows of both; a bad element, in any position, fails its
    /// request alone.
    #[test]
    fn int32_ids_and_attention_mask_share_the_rows() {
        let spec = TextSpec {
            ids_type: DataType::Int32,
            attention_mask: true,
            ..text_spec(Some(0))
        };
        let kind = Arc::new(load(spec, &fixture("text")).unwrap());
        let TextTokenizer::ClipBpe(tokenizer) = &kind.tokenizer else {
            panic!("the default family is clip_bpe")
        };
        let alone = |text: &[u8]| {
            let ids = tokenizer
                .encode(std::str::from_utf8(text).unwrap())
                .unwrap();
            let real = ids.iter().position(|&id| id == 49407).unwrap() + 1;
            let mask: Vec<i32> = (0..77).map(|i| i32::from(i < real)).collect();
            (ids.iter().map(|&id| id as i32).collect::<Vec<_>>(), mask)
        };
        let runner = Arc::clone(&kind).runner(&cpu_instance()).unwrap();
        let good: [&[u8]; 3] = [b"a photo of a cat", b"", b"two dogs on a long, long walk"];
        let expected: Vec<_> = good.iter().map(|text| alone(text)).collect();
        assert_rows_per_request_around_a_bad_element(runner, &good, &expected);
    }

    /// Runs [texts], [texts with element i invalid UTF-8], [texts[1..]] for
    /// every i: the middle request fails naming element i, the others get
    /// `expected` (ids, mask) per text in their own rows of both outputs.
    fn assert_rows_per_request_around_a_bad_element<T: Element + PartialEq + std::fmt::Debug>(
        mut runner: Box<dyn Runner>,
        texts: &[&[u8]],
        expected: &[(Vec<T>, Vec<T>)],
    ) {
        for bad_at in 0..texts.len() {
            let mut bad = texts.to_vec();
            bad[bad_at] = b"ok \xff";
            let results = runner.execute(&[
                bytes_request(texts),
                bytes_request(&bad),
                bytes_request(&texts[1..]),
            ]);
            assert_eq!(results.names(), [tensor::INPUT_IDS, tensor::ATTENTION_MASK]);
            let error = results.response(1).unwrap_err().message;
            assert!(
                error.starts_with(&format!("TEXT element {bad_at} is not valid UTF-8")),
                "{error}"
            );
            for (request, wanted) in [(0, expected), (2, &expected[1..])] {
                let ids = results.values_of::<T>(tensor::INPUT_IDS, request).unwrap();
                let mask = results
                    .values_of::<T>(tensor::ATTENTION_MASK, request)
                    .unwrap();
                assert_eq!(
                    (ids.len(), mask.len()),
                    (77 * wanted.len(), 77 * wanted.len())
                );
                for (row, (want_ids, want_mask)) in wanted.iter().enumerate() {
                    assert_eq!(
                        ids[row * 77..][..77],
                        want_ids[..],
                        "request {request} row {row}"
                    );
                    assert_eq!(
                        mask[row * 77..][..77],
                        want_mask[..],
                        "request {request} row {row}"
                    );
                }
            }
        }
    }

    /// The `hf` family (a tiny XLM-R tokenizer): every request gets the ids
    /// and mask transformers gives (tests/fixtures/text/hf/tokens.jsonl) in
    /// its own rows; a bad element, in any position, fails its request alone.
    #[test]
    fn hf_family_ids_and_mask_equal_transformers_per_request() {
        #[derive(serde::Deserialize)]
        struct Reference {
            tokenizer: String,
            context_length: usize,
            text: String,
            ids: Vec<i64>,
            attention_mask: Vec<i64>,
        }
        let references: Vec<Reference> = std::fs::read_to_string(fixture("text/hf/tokens.jsonl"))
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .filter(|r: &Reference| r.tokenizer == "xlmr" && r.context_length == 77)
            .collect();
        let spec = TextSpec {
            tokenizer_file: "hf/xlmr/tokenizer.json".into(),
            family: TokenizerFamily::Hf,
            attention_mask: true,
            ..text_spec(None)
        };
        let runner = Arc::new(load(spec, &fixture("text")).unwrap())
            .runner(&cpu_instance())
            .unwrap();
        // Chinese, empty, over-long (truncated), emoji.
        let good: Vec<&Reference> = [1, 10, 12, 5].iter().map(|&i| &references[i]).collect();
        assert!(good[2].attention_mask.iter().all(|&m| m == 1));
        let texts: Vec<&[u8]> = good.iter().map(|r| r.text.as_bytes()).collect();
        let expected: Vec<_> = good
            .iter()
            .map(|r| (r.ids.clone(), r.attention_mask.clone()))
            .collect();
        assert_rows_per_request_around_a_bad_element(runner, &texts, &expected);
    }

    #[test]
    fn every_request_reads_its_own_rows_whatever_fails_around_it() {
        let mut kind = text_kind(Some(0)).runner(&cpu_instance()).unwrap();
        let alone = |kind: &mut Box<dyn Runner>, text: &[u8]| {
            kind.execute(&[bytes_request(&[text])])
                .values::<i64>(0)
                .unwrap()
        };
        let (cat, dog) = (alone(&mut kind, b"a cat"), alone(&mut kind, b"a dog"));
        let bad: &[u8] = b"\xff";
        let batch = vec![
            bytes_request(&[bad, b"a cat"]),
            bytes_request(&[b"a dog", b"a cat"]),
            bytes_request(&[bad]),
            bytes_request(&[b"a cat", bad, bad]),
            bytes_request(&[b"a dog"]),
        ];
        let results = kind.execute(&batch);
        assert!(results
            .response(0)
            .unwrap_err()
            .message
            .contains("element 0"));
        assert_eq!(
            results.values::<i64>(1).unwrap(),
            [dog.clone(), cat].concat()
        );
        assert!(results
            .response(2)
            .unwrap_err()
            .message
            .contains("element 0"));
        assert!(results
            .response(3)
            .unwrap_err()
            .message
            .contains("element 1"));
        assert_eq!(results.values::<i64>(4).unwrap(), dog);
    }

    #[test]
    fn text_pads_as_the_tokenizer_files_say_unless_overridden() {
        let run = |kind: Arc<dyn Kind>| {
            kind.runner(&cpu_instance())
                .unwrap()
                .execute(&[bytes_request(&[b"cat"])])
                .values::<i64>(0)
                .unwrap()[3..5]
                .to_vec()
        };
        assert_eq!(
            run(text_kind(None)),
            [49407, 49407],
            "tokenizer_config.json names <|endoftext|>"
        );
        assert_eq!(run(text_kind(Some(0))), [0, 0]);
    }

    #[test]
    fn missing_tokenizer_names_the_file() {
        let spec = TextSpec {
            tokenizer_file: "absent.json".into(),
            ..text_spec(None)
        };
        let message = load(spec, &fixture("text")).err().expect("load fails");
        assert!(message.contains("absent.json"), "{message}");
    }

    /// A tokenizer file that is a symlink out of the model folder is refused
    /// (so is a link to a folder outside); one to a file inside it is read.
    #[test]
    fn a_tokenizer_link_out_of_the_model_folder_is_refused() {
        let outside = tempfile::tempdir().unwrap();
        let secret = outside.path().join("secret.json");
        std::fs::copy(fixture("text/tokenizer.json"), &secret).unwrap();
        let model = tempfile::tempdir().unwrap();
        let version = model.path().join("1");
        std::fs::create_dir_all(version.join("shared")).unwrap();
        std::fs::copy(
            fixture("text/tokenizer.json"),
            model.path().join("kept.json"),
        )
        .unwrap();
        let link = |target: &Path, name: &str| {
            std::os::unix::fs::symlink(target, version.join(name)).unwrap()
        };
        link(&secret, "out.json");
        link(outside.path(), "out_dir");
        link(&model.path().join("kept.json"), "in.json");
        link(Path::new("../kept.json"), "relative_in.json");
        let load = |file: &str| {
            let spec = TextSpec {
                tokenizer_file: file.into(),
                ..text_spec(Some(0))
            };
            load(spec, &version).map(|_| ())
        };
        for refused in ["out.json", "out_dir/secret.json"] {
            let message = load(refused).expect_err(refused);
            assert!(
                message.contains("outside the model folder") && message.contains(refused),
                "{message}"
            );
        }
        for read in ["in.json", "relative_in.json"] {
            load(read).unwrap_or_else(|e| panic!("{read}: {e}"));
        }
    }

    /// Each text tokenized counts once, truncated ones twice; a request
    /// stops at its first bad text, which counts by reason; a request refused
    /// before tokenizing counts once.
    #[test]
    fn counts_texts_tokenized_truncated_and_refused() {
        let spec = TextSpec {
            max_text_bytes: 1000,
            ..text_spec(Some(0))
        };
        let (kind, tally) = counted(spec);
        let long = "a cat ".repeat(100);
        let results = kind.unwrap().execute(&[
            bytes_request(&[b"a cat", long.as_bytes()]),
            bytes_request(&[b"a dog", b"\xff", b"never tokenized"]),
            bytes_request(&[b"a dog", &[b'x'; 1001]]),
            Err(RequestError::invalid("input 'TEXT' is missing")),
        ]);
        assert!(results.response(0).is_ok());
        assert_eq!(
            tally.counts(),
            expect(&[
                ("clip_texts_tokenized_total", 3.0),
                ("clip_texts_truncated_total", 1.0),
                ("clip_rejected_total{reason=\"invalid_utf8\"}", 1.0),
                ("clip_rejected_total{reason=\"too_large\"}", 1.0),
                ("clip_rejected_total{reason=\"invalid_request\"}", 1.0),
            ])
        );
    }
}
