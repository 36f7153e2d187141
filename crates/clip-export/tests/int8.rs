//! The int8 export of the tiny CLIP fixtures (tests/fixtures/tiny-clip)
//! against the float32 export, both run in ONNX Runtime: every embedding
//! row close in direction, the same zero-shot choice for every image the
//! float32 model itself does not nearly tie.

use clip_export::{
    export_textual, export_visual, export_visual_pixels, proto::tensor_proto::DataType,
    ClipArchitecture, ClipWeights, ExportOptions, OnnxModel, OrtRuntime, WeightDtype,
};
use clip_test_support::{ort_library, tiny_clip};

/// The bar for int8 embeddings against float32, per row.
const MIN_COSINE: f32 = 0.99;

/// Distinct captions among the fixture's token rows (rows 3-5 repeat 0-2
/// with other padding and embed identically, which would make ties).
const DISTINCT_TEXT_ROWS: [usize; 4] = [0, 1, 2, 6];

const VARIANTS: [&str; 2] = ["quick_gelu", "gelu"];

fn runtime() -> OrtRuntime {
    OrtRuntime::load(Some(ort_library()), "the test's library").expect("load ONNX Runtime")
}

fn load(variant: &str) -> ClipWeights {
    let dir = tiny_clip::dir().join(variant);
    let config = std::fs::read_to_string(dir.join("config.json")).unwrap();
    let arch = ClipArchitecture::from_config_json(&config).unwrap();
    ClipWeights::load(dir.join("model.safetensors"), &arch).unwrap()
}

fn int8() -> ExportOptions {
    ExportOptions {
        dtype: WeightDtype::Int8,
        ..Default::default()
    }
}

/// Row-major `[rows, dim]` embeddings.
struct Rows {
    data: Vec<f32>,
    dim: usize,
}

impl Rows {
    fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }

    fn len(&self) -> usize {
        self.data.len() / self.dim
    }
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (norm(a) * norm(b))
}

fn embed_text(model: &OnnxModel) -> Rows {
    let ids = tiny_clip::input("input_ids");
    let out = runtime()
        .session(model)
        .unwrap()
        .embed_text(&ids.i64s(), ids.shape[0])
        .unwrap();
    Rows {
        dim: out.shape[1] as usize,
        data: out.data,
    }
}

fn embed_images(model: &OnnxModel) -> Rows {
    let pixels = tiny_clip::input("pixel_values");
    let out = runtime()
        .session(model)
        .unwrap()
        .embed_images(&pixels.f32s(), pixels.shape[0], pixels.shape[2])
        .unwrap();
    Rows {
        dim: out.shape[1] as usize,
        data: out.data,
    }
}

fn assert_rows_close(label: &str, int8: &Rows, fp32: &Rows) {
    assert_eq!(int8.len(), fp32.len(), "{label}: row count");
    for i in 0..fp32.len() {
        let similarity = cosine(int8.row(i), fp32.row(i));
        eprintln!("{label} row {i}: cosine {similarity:.6}");
        assert!(
            similarity >= MIN_COSINE,
            "{label} row {i}: cosine {similarity} < {MIN_COSINE}"
        );
    }
}

/// A zero-shot choice whose runner-up is closer than this (in cosine) is a
/// near-tie of the float32 model itself, which the int8 rounding may tip
/// either way (the gelu fixture's astronaut image: 0.011 apart).
const DECIDED_MARGIN: f32 = 0.02;

/// For each image: the distinct caption it is most similar to, and by how
/// much more than the runner-up.
fn zero_shot(text: &Rows, images: &Rows) -> Vec<(usize, f32)> {
    (0..images.len())
        .map(|i| {
            let mut scored: Vec<(usize, f32)> = DISTINCT_TEXT_ROWS
                .into_iter()
                .map(|t| (t, cosine(images.row(i), text.row(t))))
                .collect();
            scored.sort_by(|a, b| b.1.total_cmp(&a.1));
            (scored[0].0, scored[0].1 - scored[1].1)
        })
        .collect()
}

#[test]
fn int8_embeddings_point_where_fp32_ones_do_and_rank_alike() {
    let mut decided = 0;
    for variant in VARIANTS {
        let weights = load(variant);
        let fp32 = ExportOptions::default();
        let text_fp32 = embed_text(&export_textual(&weights, &fp32).unwrap());
        let text_int8 = embed_text(&export_textual(&weights, &int8()).unwrap());
        let images_fp32 = embed_images(&export_visual(&weights, &fp32).unwrap());
        let images_int8 = embed_images(&export_visual(&weights, &int8()).unwrap());
        assert_rows_close(&format!("{variant} text"), &text_int8, &text_fp32);
        assert_rows_close(&format!("{variant} images"), &images_int8, &images_fp32);
        // The quantized model really differs: a cosine of 1 everywhere would
        // mean the weights were not quantized at all.
        assert_ne!(text_int8.data, text_fp32.data, "{variant}: text unchanged");
        assert_ne!(
            images_int8.data, images_fp32.data,
            "{variant}: images unchanged"
        );

        let expected = zero_shot(&text_fp32, &images_fp32);
        let got = zero_shot(&text_int8, &images_int8);
        eprintln!("{variant}: zero-shot (caption, margin) fp32 {expected:?}, int8 {got:?}");
        for (image, (&(want, margin), &(pick, _))) in expected.iter().zip(&got).enumerate() {
            if margin >= DECIDED_MARGIN {
                decided += 1;
                assert_eq!(
                    pick, want,
                    "{variant} image {image}: int8 picks caption {pick}, fp32 {want} by {margin}"
                );
            }
        }
    }
    // Nearly all choices are clear ones, so the check above means something.
    assert!(
        decided >= 8,
        "only {decided} of 10 zero-shot choices are clear"
    );
}

/// Op counts of a model's graph.
fn count(model: &OnnxModel, op: &str) -> usize {
    let graph = model.decode().unwrap().graph.unwrap();
    graph
        .node
        .iter()
        .filter(|n| n.op_type.as_deref() == Some(op))
        .count()
}

#[test]
fn every_weight_matrix_and_the_token_table_and_nothing_else_is_int8() {
    let weights = load("gelu");
    let arch = &weights.arch;
    // Each model with its layers and its gathered tables (the token embedding).
    let models = [
        (
            export_textual(&weights, &int8()).unwrap(),
            arch.text.layers,
            1,
        ),
        (
            export_visual(&weights, &int8()).unwrap(),
            arch.vision.layers,
            0,
        ),
        (
            export_visual_pixels(&weights, &int8(), [0.5; 3], [0.25; 3]).unwrap(),
            arch.vision.layers,
            0,
        ),
    ];
    for (model, layers, tables) in &models {
        // Only the token ids' rows of an int8 table are read and dequantized.
        let graph = model.decode().unwrap().graph.unwrap();
        let int8_gathers = graph
            .node
            .iter()
            .filter(|n| n.op_type.as_deref() == Some("Gather"))
            .filter(|n| n.input[0].ends_with("/quantized"))
            .count();
        assert_eq!(int8_gathers, *tables);
        // q|k|v, attention output, two MLP layers per block, and the projection.
        assert_eq!(count(model, "MatMulInteger"), 4 * layers + 1);
        assert_eq!(count(model, "DynamicQuantizeLinear"), 4 * layers + 1);
        // The two attention products stay float MatMuls.
        assert_eq!(count(model, "MatMul"), 2 * layers);
        let decoded = model.decode().unwrap();
        let dtype = decoded
            .metadata_props
            .iter()
            .find(|p| p.key.as_deref() == Some("clip.dtype"))
            .and_then(|p| p.value.clone());
        assert_eq!(dtype.as_deref(), Some("int8"));
        let graph = decoded.graph.unwrap();
        let int8_weights = graph
            .initializer
            .iter()
            .filter(|t| t.data_type == Some(DataType::Int8 as i32) && t.dims.len() == 2)
            .count();
        assert_eq!(int8_weights, 4 * layers + 1 + tables);
        // Inputs and the embedding stay as in float32.
        let io = |v: &clip_export::proto::ValueInfoProto| v.name.clone().unwrap();
        assert_eq!(
            graph.output.iter().map(io).collect::<Vec<_>>(),
            ["EMBEDDING"]
        );
    }
    let fp32 = export_visual(&weights, &ExportOptions::default()).unwrap();
    assert!(
        models[1].0.model.len() < fp32.model.len(),
        "int8 weights shrink the file"
    );
    let fp32 = export_textual(&weights, &ExportOptions::default()).unwrap();
    assert!(
        models[0].0.model.len() < fp32.model.len(),
        "int8 weights and table shrink the file"
    );
}
