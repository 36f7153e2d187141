//! Dynamic int8 quantization of the encoders' weight matrices, as a pass
//! over a built float32 graph.
//!
//! Every `MatMul` whose right operand is a 2-D float32 initializer (the
//! fused q|k|v, attention output, both MLP layers and the projections; not
//! the attention products, LayerNorms, position embeddings or the patch
//! convolution)
//! becomes the dynamic-quantization pattern ONNX Runtime's CPU provider
//! fuses into one `DynamicQuantizeMatMul` kernel:
//!
//! ```text
//! x_q, x_scale, x_zero = DynamicQuantizeLinear(x)        uint8, per tensor, per run
//! y_int = MatMulInteger(x_q, W_q, x_zero, W_zero)         W_q int8 [in, out]
//! y = Cast(y_int, float) * (x_scale * W_scale)            W_scale float [out]
//! ```
//!
//! The weights are symmetric per output channel: `W_q = round(W / s)` with
//! `s = max|W[:, c]| / 127` for each column `c`, zero point 0.
//!
//! Every `Gather` from a 2-D float32 initializer along its rows (the token
//! embedding, the largest single weight of a text tower: 49408 x 512 for
//! ViT-B-32, 250002 x 768 for XLM-R) keeps its table as int8 with one scale
//! per row, and dequantizes only the rows it gathers:
//!
//! ```text
//! rows = Cast(Gather(T_q, ids), float) * Unsqueeze(Gather(T_scale, ids), -1)
//! ```

use std::collections::HashMap;

use crate::onnx::{attr_int, raw_tensor};
use crate::proto::{tensor_proto::DataType, GraphProto, NodeProto, TensorProto};

/// Largest quantized magnitude: symmetric, so -128 is never used.
const QMAX: f32 = 127.0;

/// A `[rows, cols]` matrix as int8 with one scale per column.
#[derive(Clone, Debug, PartialEq)]
pub struct ColumnQuantized {
    /// Row-major, as the float matrix was.
    pub values: Vec<i8>,
    /// `value * scales[col]` approximates the float; 1 for an all-zero column.
    pub scales: Vec<f32>,
}

/// Quantizes a row-major `[rows, cols]` matrix per column, symmetrically.
/// Each value comes back within half its column's scale.
pub fn quantize_columns(data: &[f32], rows: usize, cols: usize) -> ColumnQuantized {
    assert_eq!(
        data.len(),
        rows * cols,
        "data does not fill [{rows}, {cols}]"
    );
    let mut max_abs = vec![0.0f32; cols];
    for row in data.chunks_exact(cols) {
        for (m, v) in max_abs.iter_mut().zip(row) {
            *m = m.max(v.abs());
        }
    }
    // An all-zero column quantizes to zeros whatever its scale; 1 keeps the
    // division finite.
    let scales: Vec<f32> = max_abs
        .iter()
        .map(|&m| if m > 0.0 { m / QMAX } else { 1.0 })
        .collect();
    let values = data
        .chunks_exact(cols)
        .flat_map(|row| {
            row.iter()
                .zip(&scales)
                .map(|(v, s)| (v / s).round().clamp(-QMAX, QMAX) as i8)
        })
        .collect();
    ColumnQuantized { values, scales }
}

/// Quantizes a row-major `[rows, cols]` matrix per row, symmetrically: the
/// transpose's columns.
pub fn quantize_rows(data: &[f32], rows: usize, cols: usize) -> ColumnQuantized {
    let transposed: Vec<f32> = (0..cols * rows)
        .map(|k| data[(k % rows) * cols + k / rows])
        .collect();
    let by_column = quantize_columns(&transposed, cols, rows);
    let values = (0..rows * cols)
        .map(|k| by_column.values[(k % cols) * rows + k / cols])
        .collect();
    ColumnQuantized {
        values,
        scales: by_column.scales,
    }
}

/// Rewrites the constant float32 matrices of `graph` into int8: every
/// `MatMul` by one, into the dynamic int8 pattern, and every row `Gather`
/// from one. Returns how many of each were rewritten.
pub(crate) fn quantize_weights(graph: &mut GraphProto) -> (usize, usize) {
    let mut uses: HashMap<String, usize> = HashMap::new();
    for node in &graph.node {
        for input in &node.input {
            *uses.entry(input.clone()).or_default() += 1;
        }
    }
    let index: HashMap<String, usize> = graph
        .initializer
        .iter()
        .enumerate()
        .map(|(i, t)| (t.name().to_string(), i))
        .collect();
    // A matrix only this node reads, at input `at`.
    let sole_matrix = |node: &NodeProto, at: usize, graph: &GraphProto| {
        node.input
            .get(at)
            .filter(|name| uses.get(*name) == Some(&1))
            .and_then(|name| index.get(name).copied())
            .filter(|&i| is_float_matrix(&graph.initializer[i]))
    };

    let mut nodes = Vec::with_capacity(graph.node.len());
    let (mut matmuls, mut gathers) = (0, 0);
    for node in std::mem::take(&mut graph.node) {
        let rows_gathered = node.op_type() == "Gather"
            && node.input.len() == 2
            && node
                .attribute
                .iter()
                .find(|a| a.name() == "axis")
                .is_none_or(|a| a.i() == 0);
        if rows_gathered {
            if let Some(i) = sole_matrix(&node, 0, graph) {
                nodes.extend(quantize_gather(graph, i, &node.input[1], &node.output[0]));
                gathers += 1;
                continue;
            }
        }
        let weight = (node.op_type() == "MatMul" && node.input.len() == 2)
            .then(|| sole_matrix(&node, 1, graph))
            .flatten();
        let Some(i) = weight else {
            nodes.push(node);
            continue;
        };
        nodes.extend(quantize_matmul(graph, i, &node.input[0], &node.output[0]));
        matmuls += 1;
    }
    graph.node = nodes;
    (matmuls, gathers)
}

/// A float matrix initializer's name, rows, columns and values.
fn float_matrix(float: &TensorProto) -> (String, usize, usize, Vec<f32>) {
    let data = float
        .raw_data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let (rows, cols) = (float.dims[0] as usize, float.dims[1] as usize);
    (float.name().to_string(), rows, cols, data)
}

/// Puts `quantized`'s int8 values (`shape`) in initializer `i`'s place and
/// adds its scales.
fn store(
    graph: &mut GraphProto,
    i: usize,
    names: &WeightNames,
    shape: [usize; 2],
    quantized: &ColumnQuantized,
) {
    graph.initializer[i] = raw_tensor(
        &names.values,
        &shape,
        DataType::Int8,
        quantized.values.iter().map(|&v| v as u8).collect(),
    );
    graph.initializer.push(raw_tensor(
        &names.scales,
        &[quantized.scales.len()],
        DataType::Float,
        quantized
            .scales
            .iter()
            .flat_map(|s| s.to_le_bytes())
            .collect(),
    ));
}

/// Replaces weight initializer `i` with int8 columns, their scales and zero
/// points, and returns the nodes that give `output = MatMul(x, weight)`.
fn quantize_matmul(graph: &mut GraphProto, i: usize, x: &str, output: &str) -> Vec<NodeProto> {
    let (name, rows, cols, data) = float_matrix(&graph.initializer[i]);
    let names = WeightNames::for_weight(&name);
    store(
        graph,
        i,
        &names,
        [rows, cols],
        &quantize_columns(&data, rows, cols),
    );
    graph.initializer.push(raw_tensor(
        &names.zero_points,
        &[cols],
        DataType::Int8,
        vec![0; cols],
    ));
    dynamic_matmul(x, &names, output)
}

/// Replaces table initializer `i` with int8 rows and their scales, and
/// returns the nodes that give `output = Gather(table, ids)` from them.
fn quantize_gather(graph: &mut GraphProto, i: usize, ids: &str, output: &str) -> Vec<NodeProto> {
    let (name, rows, cols, data) = float_matrix(&graph.initializer[i]);
    let names = WeightNames::for_weight(&name);
    store(
        graph,
        i,
        &names,
        [rows, cols],
        &quantize_rows(&data, rows, cols),
    );
    let last_axis = format!("{name}/last_axis");
    graph.initializer.push(raw_tensor(
        &last_axis,
        &[1],
        DataType::Int64,
        (-1i64).to_le_bytes().to_vec(),
    ));
    let value = |suffix: &str| format!("{output}/{suffix}");
    let (picked, picked_f32, scales, scales_col) = (
        value("int8_rows"),
        value("float_rows"),
        value("row_scales"),
        value("row_scales_column"),
    );
    vec![
        node("Gather", &[&names.values, ids], &[&picked], vec![]),
        node(
            "Cast",
            &[&picked],
            &[&picked_f32],
            vec![attr_int("to", DataType::Float as i64)],
        ),
        node("Gather", &[&names.scales, ids], &[&scales], vec![]),
        node("Unsqueeze", &[&scales, &last_axis], &[&scales_col], vec![]),
        node("Mul", &[&picked_f32, &scales_col], &[output], vec![]),
    ]
}

/// A non-empty 2-D float32 initializer with its values inline.
fn is_float_matrix(t: &TensorProto) -> bool {
    let [rows, cols] = t.dims[..] else {
        return false;
    };
    t.data_type == Some(DataType::Float as i32)
        && rows > 0
        && cols > 0
        && t.raw_data
            .as_ref()
            .is_some_and(|raw| raw.len() == 4 * (rows * cols) as usize)
}

/// The initializers a quantized weight becomes. Value names from the graph
/// builder never hold '/', so these cannot collide with them.
struct WeightNames {
    values: String,
    scales: String,
    zero_points: String,
}

impl WeightNames {
    fn for_weight(weight: &str) -> Self {
        WeightNames {
            values: format!("{weight}/quantized"),
            scales: format!("{weight}/scale"),
            zero_points: format!("{weight}/zero_point"),
        }
    }
}

/// The five nodes that replace `output = MatMul(x, weight)`.
fn dynamic_matmul(x: &str, weight: &WeightNames, output: &str) -> Vec<NodeProto> {
    let value = |suffix: &str| format!("{output}/{suffix}");
    let (x_q, x_scale, x_zero) = (
        value("x_quantized"),
        value("x_scale"),
        value("x_zero_point"),
    );
    let (scale, product, product_f32) = (value("scale"), value("int32"), value("float"));
    vec![
        node(
            "DynamicQuantizeLinear",
            &[x],
            &[&x_q, &x_scale, &x_zero],
            vec![],
        ),
        node("Mul", &[&x_scale, &weight.scales], &[&scale], vec![]),
        node(
            "MatMulInteger",
            &[&x_q, &weight.values, &x_zero, &weight.zero_points],
            &[&product],
            vec![],
        ),
        node(
            "Cast",
            &[&product],
            &[&product_f32],
            vec![attr_int("to", DataType::Float as i64)],
        ),
        node("Mul", &[&product_f32, &scale], &[output], vec![]),
    ]
}

fn node(
    op_type: &str,
    inputs: &[&str],
    outputs: &[&str],
    attribute: Vec<crate::proto::AttributeProto>,
) -> NodeProto {
    NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        name: Some(format!("{}/{op_type}", outputs[0])),
        op_type: Some(op_type.to_string()),
        attribute,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each column's values come back within half that column's scale.
    fn assert_round_trip(data: &[f32], rows: usize, cols: usize) -> ColumnQuantized {
        let q = quantize_columns(data, rows, cols);
        for (k, (&v, &qv)) in data.iter().zip(&q.values).enumerate() {
            let scale = q.scales[k % cols];
            let err = (v - qv as f32 * scale).abs();
            assert!(
                err <= scale / 2.0 * (1.0 + 1e-6),
                "value {v} at {k}: error {err} > scale/2 = {}",
                scale / 2.0
            );
        }
        q
    }

    #[test]
    fn round_trip_error_is_at_most_half_a_step_per_column() {
        // Columns of very different magnitudes: each gets its own scale.
        let (rows, cols) = (7, 4);
        let data: Vec<f32> = (0..rows * cols)
            .map(|k| {
                let magnitude = [1e-3, 0.5, 3.0, 40.0][k % 4];
                magnitude * ((k as f32 * 0.77).sin())
            })
            .collect();
        let q = assert_round_trip(&data, rows, cols);
        assert!(q.scales[0] < 1e-4 && q.scales[3] > 0.1, "{:?}", q.scales);
        // The largest magnitude of each column maps to ±127.
        for c in 0..cols {
            let peak = (0..rows)
                .map(|r| q.values[r * cols + c].unsigned_abs())
                .max();
            assert_eq!(peak, Some(127), "column {c}");
        }
    }

    #[test]
    fn an_all_zero_column_quantizes_to_zeros_with_a_finite_scale() {
        let data = [0.0, 1.0, 0.0, -2.0, 0.0, 0.5];
        let q = assert_round_trip(&data, 3, 2);
        assert_eq!(q.scales[0], 1.0);
        assert!(q.scales.iter().all(|s| s.is_finite() && *s > 0.0));
        assert_eq!([q.values[0], q.values[2], q.values[4]], [0, 0, 0]);
        assert_eq!([q.values[1], q.values[3], q.values[5]], [64, -127, 32]);
    }

    #[test]
    fn one_huge_outlier_costs_only_its_own_column() {
        let (rows, cols) = (64, 3);
        let mut data: Vec<f32> = (0..rows * cols)
            .map(|k| 0.02 * (k as f32 * 1.3).cos())
            .collect();
        data[5 * cols + 1] = 1000.0;
        let q = assert_round_trip(&data, rows, cols);
        assert_eq!(q.values[5 * cols + 1], 127);
        // The outlier's column: everything else rounds to 0 (error < scale/2,
        // checked above); the other columns keep their fine scale.
        assert!((q.scales[1] - 1000.0 / 127.0).abs() < 1e-3);
        for c in [0, 2] {
            assert!(q.scales[c] <= 0.02 / 127.0 + 1e-9, "column {c}");
        }
    }

    #[test]
    fn rows_quantize_as_the_transpose_s_columns() {
        let (rows, cols) = (3, 4);
        let data: Vec<f32> = (0..rows * cols)
            .map(|k| [0.01, 2.0, 50.0][k / cols] * ((k as f32 * 0.9).sin()))
            .collect();
        let q = quantize_rows(&data, rows, cols);
        assert_eq!(q.scales.len(), rows);
        for (k, (&v, &qv)) in data.iter().zip(&q.values).enumerate() {
            let scale = q.scales[k / cols];
            assert!((v - qv as f32 * scale).abs() <= scale / 2.0 * (1.0 + 1e-6));
        }
        assert!(q.scales[0] < 1e-3 && q.scales[2] > 0.1, "{:?}", q.scales);
    }

    #[test]
    fn rewrites_constant_row_gathers_and_leaves_others() {
        let table = raw_tensor("table", &[4, 2], DataType::Float, vec![0; 32]);
        let gather = |data: &str, out: &str, axis: i64| {
            node(
                "Gather",
                &[data, "ids"],
                &[out],
                vec![attr_int("axis", axis)],
            )
        };
        let mut graph = GraphProto {
            node: vec![
                gather("table", "rows", 0),
                gather("rows", "picked", 0),
                gather("table_2", "columns", 1),
            ],
            initializer: vec![
                table.clone(),
                raw_tensor("table_2", &[4, 2], DataType::Float, vec![0; 32]),
            ],
            ..Default::default()
        };
        assert_eq!(quantize_weights(&mut graph), (0, 1));
        let ops: Vec<&str> = graph.node.iter().map(NodeProto::op_type).collect();
        assert_eq!(
            ops,
            [
                "Gather",
                "Cast",
                "Gather",
                "Unsqueeze",
                "Mul",
                "Gather",
                "Gather"
            ]
        );
        assert_eq!(graph.node[4].output, ["rows"]);
        let names: Vec<&str> = graph.initializer.iter().map(TensorProto::name).collect();
        assert_eq!(
            names,
            [
                "table/quantized",
                "table_2",
                "table/scale",
                "table/last_axis"
            ]
        );
    }

    #[test]
    fn rewrites_constant_matmuls_and_leaves_activation_products() {
        let matrix = |name: &str| raw_tensor(name, &[2, 3], DataType::Float, vec![0; 24]);
        let matmul = |a: &str, b: &str, out: &str| node("MatMul", &[a, b], &[out], vec![]);
        let mut graph = GraphProto {
            node: vec![matmul("x", "w", "y"), matmul("y", "k", "scores")],
            initializer: vec![matrix("w")],
            ..Default::default()
        };
        assert_eq!(quantize_weights(&mut graph), (1, 0));
        let ops: Vec<&str> = graph.node.iter().map(NodeProto::op_type).collect();
        assert_eq!(
            ops,
            [
                "DynamicQuantizeLinear",
                "Mul",
                "MatMulInteger",
                "Cast",
                "Mul",
                "MatMul"
            ]
        );
        assert_eq!(graph.node[4].output, ["y"]);
        let names: Vec<&str> = graph.initializer.iter().map(TensorProto::name).collect();
        assert_eq!(names, ["w/quantized", "w/scale", "w/zero_point"]);
        assert_eq!(graph.initializer[0].data_type, Some(DataType::Int8 as i32));
    }
}
