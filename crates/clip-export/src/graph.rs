//! The textual and visual CLIP encoders as ONNX graphs (opset 17).
//!
//! Both follow transformers' `CLIPModel.get_text_features` and
//! `get_image_features` operation for operation: pre-LayerNorm blocks,
//! multi-head attention with the 1/sqrt(head_dim) scale folded into the
//! query projection (exact for the power-of-two head sizes of published
//! CLIPs), GELU from Erf or quick-GELU from Sigmoid.

use clip_contract::tensor;

use crate::arch::{Activation, ClipArchitecture, TextPooling};
pub(crate) use crate::image_input::{image_input, FirstLayer, ImageInput, VisualInput};
use crate::onnx::{attr_float, attr_int, attr_ints, value_info, Dim, GraphBuilder, WeightDtype};
use crate::proto::{tensor_proto::DataType, GraphProto};
use crate::weights::{Block, ClipWeights, LayerNorm, Linear, Tensor, VisionWeights};

/// The dynamic batch axis of every input and output.
pub const BATCH_DIM: &str = "batch";

/// `INPUT_IDS` int64 `[batch, context]` -> `EMBEDDING` float `[batch, embed_dim]`.
pub(crate) fn textual(weights: &ClipWeights, dtype: WeightDtype) -> GraphProto {
    let arch = &weights.arch;
    let t = &arch.text;
    let w = &weights.text;
    let mut g = GraphBuilder::new(dtype);
    g.reserve(tensor::INPUT_IDS);

    let table = g.weight(
        "text.token_embedding",
        &w.token_embedding.shape,
        &w.token_embedding.data,
    );
    let tokens = g.op(
        "Gather",
        &[&table, tensor::INPUT_IDS],
        vec![attr_int("axis", 0)],
        "text.tokens",
    );
    let positions = g.weight(
        "text.position_embedding",
        &w.position_embedding.shape,
        &w.position_embedding.data,
    );
    let mut x = g.op("Add", &[&tokens, &positions], vec![], "text.embeddings");

    // Causal mask: position i attends to 0..=i.
    let n = t.context_length;
    let mask_data: Vec<f32> = (0..n * n)
        .map(|k| {
            if k % n > k / n {
                f32::NEG_INFINITY
            } else {
                0.0
            }
        })
        .collect();
    let mask = g.weight("text.causal_mask", &[n, n], &mask_data);

    for (i, block) in w.blocks.iter().enumerate() {
        x = encoder_block(
            &mut g,
            arch,
            &format!("text.layers.{i}"),
            &x,
            block,
            t.heads,
            Some(&mask),
        );
    }

    // ArgMax runs on float32, which every execution provider has a kernel for.
    // Pool first, then the final LayerNorm: it acts on each token alone, so
    // this equals transformers' LN-then-pool on one row instead of all.
    let index = match t.pooling {
        TextPooling::FirstEos(eos) => {
            let eos = g.int64("text.eos_id", &[], &[eos]);
            let is_eos = g.op("Equal", &[tensor::INPUT_IDS, &eos], vec![], "text.is_eos");
            let flags = g.op(
                "Cast",
                &[&is_eos],
                vec![attr_int("to", DataType::Float as i64)],
                "text.eos_flags",
            );
            // ArgMax returns the first maximum: the first end-of-text token.
            g.op(
                "ArgMax",
                &[&flags],
                vec![attr_int("axis", 1), attr_int("keepdims", 1)],
                "text.pool_index",
            )
        }
        TextPooling::ArgMax => {
            // Ids are below 2^24, so float32 holds them exactly.
            let ids = g.op(
                "Cast",
                &[tensor::INPUT_IDS],
                vec![attr_int("to", DataType::Float as i64)],
                "text.ids_f32",
            );
            g.op(
                "ArgMax",
                &[&ids],
                vec![attr_int("axis", 1), attr_int("keepdims", 1)],
                "text.pool_index",
            )
        }
    };
    let pooled = g.op(
        "GatherND",
        &[&x, &index],
        vec![attr_int("batch_dims", 1)],
        "text.pooled",
    );
    let pooled = layer_norm(
        &mut g,
        arch.layer_norm_eps,
        "text.ln_final",
        &pooled,
        &w.ln_final,
    );
    let projection = matmul_weight(&mut g, "text.projection", &w.projection);
    let out = g.op("MatMul", &[&pooled, &projection], vec![], "text.projected");
    output(&mut g, &out);

    g.finish(
        "clip_textual",
        vec![value_info(
            tensor::INPUT_IDS,
            DataType::Int64,
            &[Dim::Named(BATCH_DIM), Dim::Fixed(t.context_length)],
        )],
        vec![embedding_info(arch)],
    )
}

/// `PIXEL_VALUES` float `[batch, 3, S, S]` (or `PIXELS`, see [`VisualInput`])
/// -> `EMBEDDING` float `[batch, embed_dim]`, through a ViT.
pub(crate) fn visual(
    weights: &ClipWeights,
    w: &VisionWeights,
    dtype: WeightDtype,
    input: VisualInput,
) -> GraphProto {
    let arch = &weights.arch;
    let v = &arch.vision;
    let mut g = GraphBuilder::new(dtype);
    let ImageInput {
        pixels,
        fold,
        info: input_info,
        name: input_name,
    } = image_input(&mut g, v.image_size, input, FirstLayer::Unpadded);
    let shape = &w.patch_embedding.shape;
    let mut conv_inputs = vec![pixels];
    match fold {
        Some(affine) => {
            let (kernel, bias) = affine.fold_into_conv(&w.patch_embedding.data, shape);
            conv_inputs.push(g.weight("vision.patch_embedding_levels", shape, &kernel));
            conv_inputs.push(g.weight("vision.patch_bias_levels", &[shape[0]], &bias));
        }
        None => {
            conv_inputs.push(g.weight("vision.patch_embedding", shape, &w.patch_embedding.data))
        }
    }
    let conv_inputs: Vec<&str> = conv_inputs.iter().map(String::as_str).collect();
    let p = v.patch_size as i64;
    let patches = g.op(
        "Conv",
        &conv_inputs,
        vec![
            attr_ints("kernel_shape", &[p, p]),
            attr_ints("strides", &[p, p]),
        ],
        "vision.patches",
    );
    let patches_shape = g.int64(
        "vision.patches_shape",
        &[3],
        &[0, v.width as i64, (v.grid() * v.grid()) as i64],
    );
    let patches = g.op(
        "Reshape",
        &[&patches, &patches_shape],
        vec![],
        "vision.patches_flat",
    );
    let patches = g.op(
        "Transpose",
        &[&patches],
        vec![attr_ints("perm", &[0, 2, 1])],
        "vision.patch_tokens",
    );

    // Position embeddings: row 0 goes with the class token, the rest with the
    // patches. class + pos[0] is one f32 addition either way.
    let width = v.width;
    let pos = &w.position_embedding.data;
    let class_row: Vec<f32> = (0..width)
        .map(|c| w.class_embedding.data[c] + pos[c])
        .collect();
    let patch_pos = g.weight(
        "vision.position_embedding.patches",
        &[v.tokens() - 1, width],
        &pos[width..],
    );
    let patches = g.op(
        "Add",
        &[&patches, &patch_pos],
        vec![],
        "vision.patch_embeddings",
    );
    let class_token = g.weight("vision.class_token", &[1, 1, width], &class_row);
    let batch = g.op(
        "Shape",
        &[input_name],
        vec![attr_int("start", 0), attr_int("end", 1)],
        "vision.batch",
    );
    let row_shape = g.int64("vision.class_row_shape", &[2], &[1, width as i64]);
    let class_shape = g.op(
        "Concat",
        &[&batch, &row_shape],
        vec![attr_int("axis", 0)],
        "vision.class_shape",
    );
    let classes = g.op(
        "Expand",
        &[&class_token, &class_shape],
        vec![],
        "vision.class_tokens",
    );
    let x = g.op(
        "Concat",
        &[&classes, &patches],
        vec![attr_int("axis", 1)],
        "vision.embeddings",
    );

    let mut x = layer_norm(&mut g, arch.layer_norm_eps, "vision.ln_pre", &x, &w.ln_pre);
    for (i, block) in w.blocks.iter().enumerate() {
        x = encoder_block(
            &mut g,
            arch,
            &format!("vision.layers.{i}"),
            &x,
            block,
            v.heads,
            None,
        );
    }
    let zero = g.int64("vision.class_index", &[], &[0]);
    let pooled = g.op(
        "Gather",
        &[&x, &zero],
        vec![attr_int("axis", 1)],
        "vision.pooled",
    );
    let pooled = layer_norm(
        &mut g,
        arch.layer_norm_eps,
        "vision.ln_post",
        &pooled,
        &w.ln_post,
    );
    let projection = matmul_weight(&mut g, "vision.projection", &w.projection);
    let out = g.op(
        "MatMul",
        &[&pooled, &projection],
        vec![],
        "vision.projected",
    );
    output(&mut g, &out);

    g.finish("clip_visual", vec![input_info], vec![embedding_info(arch)])
}

pub(crate) fn embedding_info(arch: &ClipArchitecture) -> crate::proto::ValueInfoProto {
    value_info(
        tensor::EMBEDDING,
        DataType::Float,
        &[Dim::Named(BATCH_DIM), Dim::Fixed(arch.embed_dim)],
    )
}

/// Names the last value `EMBEDDING`, as float32.
pub(crate) fn output(g: &mut GraphBuilder, value: &str) {
    match g.dtype {
        WeightDtype::F32 | WeightDtype::Int8 => {
            g.op_named("Identity", &[value], vec![], tensor::EMBEDDING)
        }
        WeightDtype::F16 => g.op_named(
            "Cast",
            &[value],
            vec![attr_int("to", DataType::Float as i64)],
            tensor::EMBEDDING,
        ),
    }
}

/// A `[out, in]` matrix stored as `[in, out]` for `MatMul(x, W)`.
fn matmul_weight(g: &mut GraphBuilder, name: &str, weight: &Tensor) -> String {
    let t = weight.transposed();
    g.weight(name, &t.shape, &t.data)
}

pub(crate) fn linear(g: &mut GraphBuilder, name: &str, x: &str, layer: &Linear) -> String {
    let w = matmul_weight(g, &format!("{name}.weight"), &layer.weight);
    let b = g.weight(&format!("{name}.bias"), &layer.bias.shape, &layer.bias.data);
    let y = g.op("MatMul", &[x, &w], vec![], &format!("{name}.matmul"));
    g.op("Add", &[&y, &b], vec![], name)
}

pub(crate) fn layer_norm(
    g: &mut GraphBuilder,
    epsilon: f32,
    name: &str,
    x: &str,
    ln: &LayerNorm,
) -> String {
    let scale = g.weight(&format!("{name}.weight"), &ln.weight.shape, &ln.weight.data);
    let bias = g.weight(&format!("{name}.bias"), &ln.bias.shape, &ln.bias.data);
    g.op(
        "LayerNormalization",
        &[x, &scale, &bias],
        vec![attr_int("axis", -1), attr_float("epsilon", epsilon)],
        name,
    )
}

/// `x + attn(ln_1(x))`, then `x + mlp(ln_2(x))`.
fn encoder_block(
    g: &mut GraphBuilder,
    arch: &ClipArchitecture,
    name: &str,
    x: &str,
    block: &Block,
    heads: usize,
    mask: Option<&str>,
) -> String {
    let h = layer_norm(
        g,
        arch.layer_norm_eps,
        &format!("{name}.ln_1"),
        x,
        &block.ln_1,
    );
    let attn = self_attention(
        g,
        &format!("{name}.attn"),
        &h,
        [&block.q, &block.k, &block.v, &block.out],
        heads,
        mask,
    );
    let x = g.op("Add", &[x, &attn], vec![], &format!("{name}.attn_residual"));

    let h = layer_norm(
        g,
        arch.layer_norm_eps,
        &format!("{name}.ln_2"),
        &x,
        &block.ln_2,
    );
    let h = linear(g, &format!("{name}.mlp.fc_1"), &h, &block.fc_1);
    let h = activation(g, arch.activation, &format!("{name}.mlp.act"), &h);
    let h = linear(g, &format!("{name}.mlp.fc_2"), &h, &block.fc_2);
    g.op("Add", &[&x, &h], vec![], &format!("{name}.mlp_residual"))
}

/// Multi-head self-attention of `x` `[B, L, width]` with the q, k, v and
/// output projections, plus `mask` on the scores; the output projection's
/// result, before any residual.
pub(crate) fn self_attention(
    g: &mut GraphBuilder,
    name: &str,
    x: &str,
    [q, k, v, out]: [&Linear; 4],
    heads: usize,
    mask: Option<&str>,
) -> String {
    let width = q.weight.shape[0];
    let head_dim = width / heads;
    let scale = (head_dim as f32).powf(-0.5);

    // One [width, 3 * width] projection for q|k|v; the attention scale goes
    // into q's weights and bias.
    let mut fused_w = vec![0.0f32; width * 3 * width];
    let mut fused_b = vec![0.0f32; 3 * width];
    for (part, (layer, factor)) in [(q, scale), (k, 1.0), (v, 1.0)].into_iter().enumerate() {
        // layer.weight is [out, in]; fused is [in, 3 * out].
        for o in 0..width {
            for i in 0..width {
                fused_w[i * 3 * width + part * width + o] =
                    layer.weight.data[o * width + i] * factor;
            }
            fused_b[part * width + o] = layer.bias.data[o] * factor;
        }
    }

    let qkv_w = g.weight(&format!("{name}.qkv.weight"), &[width, 3 * width], &fused_w);
    let qkv_b = g.weight(&format!("{name}.qkv.bias"), &[3 * width], &fused_b);
    let qkv = g.op(
        "MatMul",
        &[x, &qkv_w],
        vec![],
        &format!("{name}.qkv.matmul"),
    );
    let qkv = g.op("Add", &[&qkv, &qkv_b], vec![], &format!("{name}.qkv"));
    let parts = split_heads(g, name, &qkv, &["q", "k", "v"], heads, head_dim);
    let ctx = attend(
        g,
        name,
        [&parts[0], &parts[1], &parts[2]],
        mask,
        &[0, 0, width as i64],
    );
    linear(g, &format!("{name}.out"), &ctx, out)
}

/// `[B, L, n x H x D]` (n projections side by side) -> n tensors
/// `[B, H, L, D]`, named `{prefix}.{part}`.
pub(crate) fn split_heads(
    g: &mut GraphBuilder,
    prefix: &str,
    x: &str,
    parts: &[&str],
    heads: usize,
    head_dim: usize,
) -> Vec<String> {
    let split_shape = g.int64(
        &format!("{prefix}.split_shape"),
        &[5],
        &[0, 0, parts.len() as i64, heads as i64, head_dim as i64],
    );
    let x = g.op(
        "Reshape",
        &[x, &split_shape],
        vec![],
        &format!("{prefix}.heads"),
    );
    // [B, L, n, H, D] -> [n, B, H, L, D]
    let x = g.op(
        "Transpose",
        &[&x],
        vec![attr_ints("perm", &[2, 0, 3, 1, 4])],
        &format!("{prefix}.heads_t"),
    );
    parts
        .iter()
        .enumerate()
        .map(|(i, part)| {
            let index = g.int64(&format!("{prefix}.{part}_index"), &[], &[i as i64]);
            g.op(
                "Gather",
                &[&x, &index],
                vec![attr_int("axis", 0)],
                &format!("{prefix}.{part}"),
            )
        })
        .collect()
}

/// Scaled-dot-product attention of `[B, H, Lq, D]` queries over `[B, H, L,
/// D]` keys and values (the scale is already in the queries), plus `mask`
/// on the scores; the heads merged back by reshaping `[B, Lq, H, D]` to
/// `merged_shape`.
pub(crate) fn attend(
    g: &mut GraphBuilder,
    prefix: &str,
    [q, k, v]: [&str; 3],
    mask: Option<&str>,
    merged_shape: &[i64],
) -> String {
    let k_t = g.op(
        "Transpose",
        &[k],
        vec![attr_ints("perm", &[0, 1, 3, 2])],
        &format!("{prefix}.k_t"),
    );
    let mut scores = g.op("MatMul", &[q, &k_t], vec![], &format!("{prefix}.scores"));
    if let Some(mask) = mask {
        scores = g.op("Add", &[&scores, mask], vec![], &format!("{prefix}.masked"));
    }
    let probs = g.op(
        "Softmax",
        &[&scores],
        vec![attr_int("axis", -1)],
        &format!("{prefix}.probs"),
    );
    let ctx = g.op("MatMul", &[&probs, v], vec![], &format!("{prefix}.context"));
    let ctx = g.op(
        "Transpose",
        &[&ctx],
        vec![attr_ints("perm", &[0, 2, 1, 3])],
        &format!("{prefix}.context_t"),
    );
    let shape = g.int64(
        &format!("{prefix}.merge_shape"),
        &[merged_shape.len()],
        merged_shape,
    );
    g.op(
        "Reshape",
        &[&ctx, &shape],
        vec![],
        &format!("{prefix}.merged"),
    )
}

pub(crate) fn activation(g: &mut GraphBuilder, act: Activation, name: &str, x: &str) -> String {
    match act {
        Activation::QuickGelu => {
            let k = g.scalar(&format!("{name}.quick_gelu_k"), 1.702);
            let scaled = g.op("Mul", &[x, &k], vec![], &format!("{name}.scaled"));
            let gate = g.op("Sigmoid", &[&scaled], vec![], &format!("{name}.gate"));
            g.op("Mul", &[x, &gate], vec![], name)
        }
        Activation::Gelu => {
            let inv_sqrt2 = g.scalar(
                &format!("{name}.inv_sqrt2"),
                std::f32::consts::FRAC_1_SQRT_2,
            );
            let one = g.scalar(&format!("{name}.one"), 1.0);
            let half = g.scalar(&format!("{name}.half"), 0.5);
            let scaled = g.op("Mul", &[x, &inv_sqrt2], vec![], &format!("{name}.scaled"));
            let erf = g.op("Erf", &[&scaled], vec![], &format!("{name}.erf"));
            let cdf = g.op("Add", &[&erf, &one], vec![], &format!("{name}.cdf2"));
            let y = g.op("Mul", &[x, &cdf], vec![], &format!("{name}.x_cdf2"));
            g.op("Mul", &[&y, &half], vec![], name)
        }
    }
}
