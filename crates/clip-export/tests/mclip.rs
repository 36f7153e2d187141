//! M-CLIP text towers: export -> ONNX Runtime -> compare with transformers'
//! model + M-CLIP's mean pooling and projection (tests/fixtures/mclip, made
//! by scripts/fixtures/mclip.py), for an XLM-R and a BERT (LaBSE) base, on
//! rows padded to the longest (as CLIP-as-service feeds) and to 77 (as our
//! serving feeds).

use std::path::PathBuf;
use std::sync::OnceLock;

use clip_contract::tensor;
use clip_export::mclip::{EncoderFamily, MCLIP_LAYOUT};
use clip_export::{
    export_mclip_textual, verify_mclip_textual, ExportError, ExportOptions, ExternalDataPolicy,
    MclipTextArchitecture, MclipTextWeights, OnnxModel, OrtRuntime, WeightDtype,
};
use clip_test_support::{fixture, ort_library, tiny_clip::Tensor};
use serde_json::Value;

const TOLERANCE: f32 = 1e-4;
const BASES: [&str; 2] = ["xlmr", "bert"];
const PADDINGS: [&str; 2] = ["longest", "max_length"];

fn dir() -> PathBuf {
    fixture("mclip")
}

fn manifest() -> &'static Value {
    static MANIFEST: OnceLock<Value> = OnceLock::new();
    MANIFEST.get_or_init(|| {
        let text = std::fs::read_to_string(dir().join("manifest.json")).expect("manifest.json");
        serde_json::from_str(&text).expect("manifest.json is JSON")
    })
}

fn runtime() -> OrtRuntime {
    OrtRuntime::load(Some(ort_library()), "the test's library").expect("load ONNX Runtime")
}

fn config(base: &str) -> String {
    std::fs::read_to_string(dir().join(base).join("config.json")).unwrap()
}

fn weights_path(base: &str) -> PathBuf {
    dir().join(base).join("model.safetensors")
}

fn load(base: &str) -> MclipTextWeights {
    let arch = MclipTextArchitecture::from_config_json(&config(base)).unwrap();
    MclipTextWeights::load(weights_path(base), &arch).unwrap()
}

/// Token ids, mask and transformers' embeddings for one padding.
struct Batch {
    ids: Vec<i64>,
    mask: Vec<i64>,
    rows: usize,
    columns: usize,
    expected: Vec<f32>,
    dim: usize,
}

fn batch(base: &str, padding: &str) -> Batch {
    let entry = &manifest()["bases"][base][padding];
    let read = |name: &str| Tensor::read_in(&dir(), &entry[name]);
    let ids = read("input_ids");
    let expected = read("embedding");
    Batch {
        rows: ids.shape[0],
        columns: ids.shape[1],
        ids: ids.i64s(),
        mask: read("attention_mask").i64s(),
        dim: expected.shape[1],
        expected: expected.f32s(),
    }
}

fn run(model: &OnnxModel, b: &Batch) -> Vec<f32> {
    let out = runtime()
        .session(model)
        .unwrap()
        .embed_tokens(&b.ids, Some(&b.mask), b.rows)
        .unwrap();
    assert_eq!(out.shape, vec![b.rows as i64, b.dim as i64]);
    out.data
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()))
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (norm(a) * norm(b))
}

fn assert_parity(model: &OnnxModel, base: &str, label: &str) {
    for padding in PADDINGS {
        let b = batch(base, padding);
        let got = run(model, &b);
        let diff = max_abs_diff(&got, &b.expected);
        eprintln!(
            "{base} {label} {padding} [{}, {}]: max abs diff {diff:.3e}",
            b.rows, b.columns
        );
        assert!(
            diff <= TOLERANCE,
            "{base} {label} {padding}: max abs diff {diff} > {TOLERANCE}"
        );
    }
}

#[test]
fn fixture_configs_read_their_base_config() {
    let xlmr = MclipTextArchitecture::from_config_json(&config("xlmr")).unwrap();
    assert_eq!(xlmr.encoder.family, EncoderFamily::Roberta);
    assert_eq!(
        (xlmr.encoder.pad_token_id, xlmr.encoder.max_positions),
        (1, 514)
    );
    assert_eq!((xlmr.encoder.width, xlmr.embed_dim), (32, 24));
    let bert = MclipTextArchitecture::from_config_json(&config("bert")).unwrap();
    assert_eq!(bert.encoder.family, EncoderFamily::Bert);
    assert_eq!(bert.encoder.layer_norm_eps, 1e-12);
    assert_eq!(bert.encoder.type_vocab_size, 2);
    assert_eq!(bert.embed_dim, 20);
}

#[test]
fn both_bases_match_transformers_at_both_paddings() {
    for base in BASES {
        let model = export_mclip_textual(&load(base), &ExportOptions::default()).unwrap();
        assert_parity(&model, base, "fp32");
    }
}

/// The fixture rows exercise what they claim to: a literal pad id with
/// mask 1 inside a text, trailing padding, and a row cut at 77.
#[test]
fn the_fixture_rows_hold_a_literal_pad_token_and_padding() {
    for base in BASES {
        let pad = manifest()["bases"][base]["pad_token_id"].as_i64().unwrap();
        let b = batch(base, "max_length");
        let literal_pads = (0..b.rows * b.columns)
            .filter(|&i| b.ids[i] == pad && b.mask[i] == 1)
            .count();
        assert!(literal_pads >= 1, "{base}: no literal pad token");
        let padded = b.mask.iter().filter(|&&m| m == 0).count();
        assert!(padded > b.columns, "{base}: little padding");
        let last_row = &b.mask[(b.rows - 1) * b.columns..];
        assert!(last_row.iter().all(|&m| m == 1), "{base}: no full row");
        let longest = batch(base, "longest");
        assert!(
            longest.columns < 77,
            "{base}: longest is {}",
            longest.columns
        );
    }
}

/// A row embeds the same whatever it is padded to, and alone or in a batch.
#[test]
fn padding_length_and_batch_do_not_change_a_row() {
    for base in BASES {
        let model = export_mclip_textual(&load(base), &ExportOptions::default()).unwrap();
        let mut session = runtime().session(&model).unwrap();
        let longest = batch(base, "longest");
        let fixed = batch(base, "max_length");
        let dim = fixed.dim;
        let embed = |session: &mut clip_export::LoadedModel, b: &Batch, row: usize| {
            let cols = row * b.columns..(row + 1) * b.columns;
            session
                .embed_tokens(&b.ids[cols.clone()], Some(&b.mask[cols]), 1)
                .unwrap()
                .data
        };
        for row in 0..longest.rows {
            let short = embed(&mut session, &longest, row);
            let long = embed(&mut session, &fixed, row);
            let diff = max_abs_diff(&short, &long);
            assert!(diff <= TOLERANCE, "{base} row {row}: {diff}");
            let expected = &fixed.expected[row * dim..(row + 1) * dim];
            assert!(
                max_abs_diff(&long, expected) <= TOLERANCE,
                "{base} row {row}"
            );
        }
    }
}

#[test]
fn int8_stays_close_in_direction() {
    for base in BASES {
        let options = ExportOptions {
            dtype: WeightDtype::Int8,
            ..Default::default()
        };
        let model = export_mclip_textual(&load(base), &options).unwrap();
        let graph = model.decode().unwrap().graph.unwrap();
        let integer_matmuls = graph
            .node
            .iter()
            .filter(|n| n.op_type() == "MatMulInteger")
            .count();
        // q|k|v, attention output, intermediate, output per layer; the projection.
        assert_eq!(integer_matmuls, 2 * 4 + 1, "{base}");
        for padding in PADDINGS {
            let b = batch(base, padding);
            let got = run(&model, &b);
            for row in 0..b.rows {
                let range = row * b.dim..(row + 1) * b.dim;
                let c = cosine(&got[range.clone()], &b.expected[range]);
                assert!(c >= 0.99, "{base} {padding} row {row}: cosine {c}");
            }
        }
    }
}

#[test]
fn fp16_stays_close_in_direction() {
    for base in BASES {
        let options = ExportOptions {
            dtype: WeightDtype::F16,
            ..Default::default()
        };
        let model = export_mclip_textual(&load(base), &options).unwrap();
        let b = batch(base, "max_length");
        let got = run(&model, &b);
        for row in 0..b.rows {
            let range = row * b.dim..(row + 1) * b.dim;
            let c = cosine(&got[range.clone()], &b.expected[range]);
            assert!(c >= 0.999, "{base} row {row}: cosine {c}");
        }
    }
}

#[test]
fn external_data_models_run_the_same() {
    let options = ExportOptions {
        external_data: ExternalDataPolicy {
            threshold: 16 * 1024,
            file_name: "model.onnx.data".into(),
        },
        ..Default::default()
    };
    for base in BASES {
        let model = export_mclip_textual(&load(base), &options).unwrap();
        let external = model.external_data.as_ref().expect("external data");
        assert!(external.bytes.len() > 50_000, "{base}");
        assert!(
            model.model.len() < 16 * 1024,
            "{base}: weights left the model"
        );
        assert_parity(&model, base, "external data");
    }
}

#[test]
fn probe_verification_and_the_contract() {
    let runtime = runtime();
    for base in BASES {
        let weights = load(base);
        let model = export_mclip_textual(&weights, &ExportOptions::default()).unwrap();
        let report = verify_mclip_textual(&runtime, &model, &weights.arch).unwrap();
        assert_eq!(report.output_shape, vec![3, weights.arch.embed_dim as i64]);
        assert!(report.max_abs > 0.0);

        let proto = model.decode().unwrap();
        assert_eq!(proto.opset_import[0].version, Some(17));
        let graph = proto.graph.unwrap();
        let names = |v: &[clip_export::proto::ValueInfoProto]| {
            v.iter().map(|i| i.name().to_string()).collect::<Vec<_>>()
        };
        assert_eq!(
            names(&graph.input),
            [tensor::INPUT_IDS, tensor::ATTENTION_MASK]
        );
        assert_eq!(names(&graph.output), [tensor::EMBEDDING]);
        let layout = proto
            .metadata_props
            .iter()
            .find(|e| e.key() == "clip.weight_layout")
            .map(|e| e.value().to_string());
        assert_eq!(layout.as_deref(), Some(MCLIP_LAYOUT));
    }
}

/// Rows past the position table are refused by the runtime, not wrapped.
#[test]
fn rows_longer_than_the_position_table_fail() {
    for base in BASES {
        let weights = load(base);
        let longest = weights.arch.encoder.max_sequence();
        let model = export_mclip_textual(&weights, &ExportOptions::default()).unwrap();
        let mut session = runtime().session(&model).unwrap();
        for (columns, fits) in [(longest, true), (longest + 1, false)] {
            let ids = vec![5i64; columns];
            let mask = vec![1i64; columns];
            let result = session.embed_tokens(&ids, Some(&mask), 1);
            assert_eq!(result.is_ok(), fits, "{base} with {columns} tokens");
        }
    }
}

#[test]
fn random_towers_export_and_verify() {
    let runtime = runtime();
    for base in BASES {
        let arch = load(base).arch;
        let weights = MclipTextWeights::random(&arch, 7).unwrap();
        assert_eq!(weights, MclipTextWeights::random(&arch, 7).unwrap());
        let model = export_mclip_textual(&weights, &ExportOptions::default()).unwrap();
        verify_mclip_textual(&runtime, &model, &arch).unwrap();
    }
}

// ---- refusals ----

/// A fixture's tensors, re-serialised after `edit`.
fn edited_file(
    base: &str,
    edit: impl FnOnce(&mut Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)>),
) -> Vec<u8> {
    let bytes = std::fs::read(weights_path(base)).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Vec<_> = file
        .tensors()
        .into_iter()
        .map(|(name, v)| (name, v.dtype(), v.shape().to_vec(), v.data().to_vec()))
        .collect();
    edit(&mut tensors);
    let views: Vec<_> = tensors
        .iter()
        .map(|(name, dtype, shape, data)| {
            let view = safetensors::tensor::TensorView::new(*dtype, shape.clone(), data).unwrap();
            (name.clone(), view)
        })
        .collect();
    safetensors::serialize(views, None).unwrap()
}

fn arch(base: &str) -> MclipTextArchitecture {
    MclipTextArchitecture::from_config_json(&config(base)).unwrap()
}

#[test]
fn a_missing_key_is_named() {
    let key = "transformer.encoder.layer.1.output.LayerNorm.bias";
    let bytes = edited_file("xlmr", |t| t.retain(|(name, ..)| name != key));
    let err = MclipTextWeights::from_bytes(&bytes, &arch("xlmr")).unwrap_err();
    assert!(
        matches!(&err, ExportError::MissingKey { key: k, .. } if k == key),
        "{err}"
    );
    assert!(err.to_string().contains("M-CLIP layout"), "{err}");
}

#[test]
fn a_wrong_shape_names_key_and_shapes() {
    // numDims in the config disagrees with the file's LinearTransformation.
    let mut wrong = arch("bert");
    wrong.embed_dim = 16;
    let err = MclipTextWeights::load(weights_path("bert"), &wrong).unwrap_err();
    match &err {
        ExportError::ShapeMismatch {
            key,
            expected,
            found,
        } => {
            assert_eq!(key, "LinearTransformation.weight");
            assert_eq!((expected, found), (&vec![16, 32], &vec![20, 32]));
        }
        other => panic!("expected a shape mismatch, got {other}"),
    }
    // A base config with a larger MLP than the file's.
    let mut wrong = arch("xlmr");
    wrong.encoder.mlp_width = 64;
    let err = MclipTextWeights::load(weights_path("xlmr"), &wrong).unwrap_err();
    assert!(
        matches!(&err, ExportError::ShapeMismatch { key, .. } if key == "transformer.encoder.layer.0.intermediate.dense.weight"),
        "{err}"
    );
}

#[test]
fn unknown_keys_are_refused_and_the_pooler_is_optional() {
    let bytes = edited_file("bert", |t| {
        t.push((
            "transformer.encoder.layer.2.output.dense.bias".into(),
            safetensors::Dtype::F32,
            vec![1],
            vec![0; 4],
        ));
    });
    let err = MclipTextWeights::from_bytes(&bytes, &arch("bert")).unwrap_err();
    match &err {
        ExportError::UnexpectedKeys { count, keys, .. } => {
            assert_eq!(*count, 1);
            assert_eq!(keys, "transformer.encoder.layer.2.output.dense.bias");
        }
        other => panic!("expected unexpected keys, got {other}"),
    }

    let without_pooler = edited_file("bert", |t| {
        t.retain(|(name, ..)| !name.starts_with("transformer.pooler."))
    });
    let stripped = MclipTextWeights::from_bytes(&without_pooler, &arch("bert")).unwrap();
    assert_eq!(stripped, load("bert"));

    // A pooler of the wrong width is still a shape error.
    let bad_pooler = edited_file("bert", |t| {
        let entry = t
            .iter_mut()
            .find(|(n, ..)| n == "transformer.pooler.dense.bias")
            .unwrap();
        entry.2 = vec![2, 16];
    });
    let err = MclipTextWeights::from_bytes(&bad_pooler, &arch("bert")).unwrap_err();
    assert!(
        matches!(&err, ExportError::ShapeMismatch { key, .. } if key == "transformer.pooler.dense.bias"),
        "{err}"
    );
}

#[test]
fn a_config_whose_dims_disagree_is_refused() {
    let mut config: Value = serde_json::from_str(&config("xlmr")).unwrap();
    config["transformerDimensions"] = 64.into();
    let err = MclipTextArchitecture::from_config_json(&config.to_string()).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("transformerDimensions 64") && text.contains("hidden size 32"),
        "{text}"
    );
}
