//! The M-CLIP text tower as an ONNX graph (opset 17), operation for
//! operation as transformers' `XLMRobertaModel`/`BertModel` (eager
//! attention) followed by M-CLIP's mean pooling and `LinearTransformation`.

use clip_contract::tensor;

use super::arch::EncoderFamily;
use super::weights::{BertLayer, MclipTextWeights};
use crate::arch::Activation;
use crate::graph::{activation, layer_norm, linear, output, self_attention, BATCH_DIM};
use crate::onnx::{attr_int, value_info, Dim, GraphBuilder, WeightDtype};
use crate::proto::{tensor_proto::DataType, GraphProto};

/// The dynamic sequence axis of both inputs.
pub const SEQUENCE_DIM: &str = "sequence";

/// `INPUT_IDS`, `ATTENTION_MASK` int64 `[batch, sequence]` -> `EMBEDDING`
/// float `[batch, embed_dim]`.
pub(crate) fn text(weights: &MclipTextWeights, dtype: WeightDtype) -> GraphProto {
    let arch = &weights.arch;
    let e = &arch.encoder;
    let mut g = GraphBuilder::new(dtype);
    g.reserve(tensor::INPUT_IDS);
    g.reserve(tensor::ATTENTION_MASK);

    // Embeddings, added in transformers' order: words + token type, + positions.
    let words = &weights.word_embeddings;
    let table = g.weight("mclip.word_embeddings", &words.shape, &words.data);
    let x = g.op(
        "Gather",
        &[&table, tensor::INPUT_IDS],
        vec![attr_int("axis", 0)],
        "mclip.words",
    );
    let token_type = &weights.token_type_embedding;
    let token_type = g.weight("mclip.token_type_0", &token_type.shape, &token_type.data);
    let x = g.op("Add", &[&x, &token_type], vec![], "mclip.words_and_type");
    let positions = position_ids(&mut g, e.family, e.pad_token_id);
    let pos = &weights.position_embeddings;
    let pos_table = g.weight("mclip.position_embeddings", &pos.shape, &pos.data);
    // Gather refuses an id past the table, so rows longer than it fail loudly.
    let pos = g.op(
        "Gather",
        &[&pos_table, &positions],
        vec![attr_int("axis", 0)],
        "mclip.positions",
    );
    let x = g.op("Add", &[&x, &pos], vec![], "mclip.embeddings_sum");
    let mut x = layer_norm(
        &mut g,
        e.layer_norm_eps,
        "mclip.embeddings",
        &x,
        &weights.embeddings_norm,
    );

    let mask = g.op(
        "Cast",
        &[tensor::ATTENTION_MASK],
        vec![attr_int("to", dtype.onnx() as i64)],
        "mclip.mask",
    );
    let bias = attention_bias(&mut g, &mask);
    for (i, layer) in weights.layers.iter().enumerate() {
        x = encoder_layer(
            &mut g,
            e.layer_norm_eps,
            &format!("mclip.layers.{i}"),
            &x,
            layer,
            e.heads,
            &bias,
        );
    }

    let pooled = mean_pool(&mut g, &x, &mask);
    let out = linear(&mut g, "mclip.projection", &pooled, &weights.projection);
    output(&mut g, &out);

    let input = |name| {
        value_info(
            name,
            DataType::Int64,
            &[Dim::Named(BATCH_DIM), Dim::Named(SEQUENCE_DIM)],
        )
    };
    g.finish(
        "mclip_textual",
        vec![input(tensor::INPUT_IDS), input(tensor::ATTENTION_MASK)],
        vec![value_info(
            tensor::EMBEDDING,
            DataType::Float,
            &[Dim::Named(BATCH_DIM), Dim::Fixed(arch.embed_dim)],
        )],
    )
}

/// int64 `[batch, sequence]` position ids, from the ids as the family does.
fn position_ids(g: &mut GraphBuilder, family: EncoderFamily, pad: i64) -> String {
    match family {
        EncoderFamily::Roberta => {
            let pad = g.int64("mclip.pad_id", &[], &[pad]);
            let is_pad = g.op("Equal", &[tensor::INPUT_IDS, &pad], vec![], "mclip.is_pad");
            let is_token = g.op("Not", &[&is_pad], vec![], "mclip.is_token");
            let is_token = g.op(
                "Cast",
                &[&is_token],
                vec![attr_int("to", DataType::Int64 as i64)],
                "mclip.token_flags",
            );
            let axis = g.int64("mclip.sequence_axis", &[], &[1]);
            let count = g.op("CumSum", &[&is_token, &axis], vec![], "mclip.token_count");
            let count = g.op("Mul", &[&count, &is_token], vec![], "mclip.token_index");
            g.op("Add", &[&count, &pad], vec![], "mclip.position_ids")
        }
        EncoderFamily::Bert => {
            let length = g.op(
                "Shape",
                &[tensor::INPUT_IDS],
                vec![attr_int("start", 1), attr_int("end", 2)],
                "mclip.sequence_length",
            );
            let zero_axis = g.int64("mclip.length_axis", &[1], &[0]);
            let length = g.op("Squeeze", &[&length, &zero_axis], vec![], "mclip.length");
            let start = g.int64("mclip.position_start", &[], &[0]);
            let step = g.int64("mclip.position_step", &[], &[1]);
            g.op(
                "Range",
                &[&start, &length, &step],
                vec![],
                "mclip.position_ids",
            )
        }
    }
}

/// `[batch, 1, 1, sequence]`: 0 where the mask is 1, the dtype's lowest
/// value where it is 0, as transformers builds the additive mask.
fn attention_bias(g: &mut GraphBuilder, mask: &str) -> String {
    let lowest = match g.dtype {
        WeightDtype::F32 | WeightDtype::Int8 => f32::MIN,
        WeightDtype::F16 => half::f16::MIN.to_f32(),
    };
    let one = g.scalar("mclip.one", 1.0);
    let lowest = g.scalar("mclip.lowest", lowest);
    let padding = g.op("Sub", &[&one, mask], vec![], "mclip.padding");
    let bias = g.op("Mul", &[&padding, &lowest], vec![], "mclip.mask_bias");
    let axes = g.int64("mclip.bias_axes", &[2], &[1, 2]);
    g.op("Unsqueeze", &[&bias, &axes], vec![], "mclip.attention_bias")
}

/// `LN(x + attn(x))`, then `LN(h + mlp(h))`.
fn encoder_layer(
    g: &mut GraphBuilder,
    epsilon: f32,
    name: &str,
    x: &str,
    layer: &BertLayer,
    heads: usize,
    bias: &str,
) -> String {
    let attn = self_attention(
        g,
        &format!("{name}.attn"),
        x,
        [&layer.q, &layer.k, &layer.v, &layer.attention_out],
        heads,
        Some(bias),
    );
    let h = g.op("Add", &[&attn, x], vec![], &format!("{name}.attn_residual"));
    let h = layer_norm(
        g,
        epsilon,
        &format!("{name}.attn_norm"),
        &h,
        &layer.attention_norm,
    );
    let m = linear(g, &format!("{name}.intermediate"), &h, &layer.intermediate);
    let m = activation(g, Activation::Gelu, &format!("{name}.act"), &m);
    let m = linear(g, &format!("{name}.output"), &m, &layer.output);
    let y = g.op("Add", &[&m, &h], vec![], &format!("{name}.mlp_residual"));
    layer_norm(
        g,
        epsilon,
        &format!("{name}.output_norm"),
        &y,
        &layer.output_norm,
    )
}

/// `sum(x * mask) / sum(mask)` over the sequence: `[batch, width]`.
fn mean_pool(g: &mut GraphBuilder, x: &str, mask: &str) -> String {
    let last = g.int64("mclip.feature_axis", &[1], &[2]);
    let weights = g.op("Unsqueeze", &[mask, &last], vec![], "mclip.pool_weights");
    let masked = g.op("Mul", &[x, &weights], vec![], "mclip.masked");
    let sequence = g.int64("mclip.pool_axis", &[1], &[1]);
    let sum = g.op(
        "ReduceSum",
        &[&masked, &sequence],
        vec![attr_int("keepdims", 0)],
        "mclip.pool_sum",
    );
    let count = g.op(
        "ReduceSum",
        &[mask, &sequence],
        vec![attr_int("keepdims", 1)],
        "mclip.pool_count",
    );
    g.op("Div", &[&sum, &count], vec![], "mclip.pooled")
}
