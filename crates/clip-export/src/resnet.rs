//! The image encoder of a ResNet CLIP (open_clip's `ModifiedResNet`) as an
//! ONNX graph: the 3-convolution stem and average pool, four stages of
//! anti-aliased bottlenecks (an average pool before the strided step, in
//! both branches), then the attention pool. Batch norms arrive folded into
//! the convolutions (see `resnet_weights`).
//!
//! The attention pool keeps only the mean token's output, so only its query
//! is computed: attention of one query over all `cells + 1` tokens, as
//! open_clip's `x[0]` of the full attention.

use crate::graph::{
    attend, embedding_info, image_input, linear, output, split_heads, FirstLayer, ImageInput,
    VisualInput,
};
use crate::onnx::{attr_int, attr_ints, GraphBuilder, WeightDtype};
use crate::proto::GraphProto;
use crate::resnet_weights::{AttentionPool, Bottleneck, Conv, ResNetWeights};
use crate::weights::{ClipWeights, Linear, Tensor};

/// `PIXEL_VALUES` (or `PIXELS`) -> `EMBEDDING` through a `ModifiedResNet`.
pub(crate) fn visual(
    weights: &ClipWeights,
    w: &ResNetWeights,
    dtype: WeightDtype,
    input: VisualInput,
) -> GraphProto {
    let arch = &weights.arch;
    let v = &arch.vision;
    let mut g = GraphBuilder::new(dtype);
    let ImageInput { pixels, info, .. } =
        image_input(&mut g, v.image_size, input, FirstLayer::Padded);

    let mut x = pixels;
    for (i, (conv, stride)) in w.stem.iter().zip([2, 1, 1]).enumerate() {
        let name = format!("vision.stem.conv{}", i + 1);
        let y = conv2d(&mut g, &name, &x, conv, stride);
        x = g.op("Relu", &[&y], vec![], &format!("{name}.relu"));
    }
    x = avg_pool(&mut g, "vision.stem.pool", &x, 2);
    for (i, stage) in w.stages.iter().enumerate() {
        for (b, block) in stage.iter().enumerate() {
            x = bottleneck(&mut g, &format!("vision.layer{}.{b}", i + 1), &x, block);
        }
    }
    let out = attention_pool(&mut g, &x, &w.pool, v.heads, v.grid() * v.grid());
    output(&mut g, &out);
    g.finish("clip_visual_resnet", vec![info], vec![embedding_info(arch)])
}

fn conv2d(g: &mut GraphBuilder, name: &str, x: &str, conv: &Conv, stride: i64) -> String {
    let k = conv.kernel() as i64;
    let pad = k / 2;
    let weight = g.weight(
        &format!("{name}.weight"),
        &conv.weight.shape,
        &conv.weight.data,
    );
    let bias = g.weight(&format!("{name}.bias"), &conv.bias.shape, &conv.bias.data);
    g.op(
        "Conv",
        &[x, &weight, &bias],
        vec![
            attr_ints("kernel_shape", &[k, k]),
            attr_ints("strides", &[stride, stride]),
            attr_ints("pads", &[pad, pad, pad, pad]),
        ],
        name,
    )
}

/// torch's `AvgPool2d(n)`: an `n x n` window at stride `n`, no padding.
fn avg_pool(g: &mut GraphBuilder, name: &str, x: &str, n: i64) -> String {
    g.op(
        "AveragePool",
        &[x],
        vec![
            attr_ints("kernel_shape", &[n, n]),
            attr_ints("strides", &[n, n]),
        ],
        name,
    )
}

fn bottleneck(g: &mut GraphBuilder, name: &str, x: &str, block: &Bottleneck) -> String {
    let stride = block.stride as i64;
    let h = conv2d(g, &format!("{name}.conv1"), x, &block.conv1, 1);
    let h = g.op("Relu", &[&h], vec![], &format!("{name}.relu1"));
    let h = conv2d(g, &format!("{name}.conv2"), &h, &block.conv2, 1);
    let mut h = g.op("Relu", &[&h], vec![], &format!("{name}.relu2"));
    if stride > 1 {
        h = avg_pool(g, &format!("{name}.pool"), &h, stride);
    }
    let h = conv2d(g, &format!("{name}.conv3"), &h, &block.conv3, 1);
    let identity = match &block.downsample {
        None => x.to_string(),
        Some(conv) => {
            let pooled = if stride > 1 {
                avg_pool(g, &format!("{name}.downsample.pool"), x, stride)
            } else {
                x.to_string()
            };
            conv2d(g, &format!("{name}.downsample"), &pooled, conv, 1)
        }
    };
    let sum = g.op("Add", &[&h, &identity], vec![], &format!("{name}.residual"));
    g.op("Relu", &[&sum], vec![], &format!("{name}.out"))
}

/// `[B, C, H, W]` -> `[B, embed_dim]`: the mean of the cells joins them as
/// token 0, every token gets its positional embedding, and token 0's
/// attention output over all of them goes through `c_proj`.
fn attention_pool(
    g: &mut GraphBuilder,
    x: &str,
    pool: &AttentionPool,
    heads: usize,
    cells: usize,
) -> String {
    let width = pool.q.weight.shape[0];
    let head_dim = width / heads;
    let name = "vision.attnpool";

    let flat_shape = g.int64(
        &format!("{name}.flat_shape"),
        &[3],
        &[0, width as i64, cells as i64],
    );
    let flat = g.op(
        "Reshape",
        &[x, &flat_shape],
        vec![],
        &format!("{name}.flat"),
    );
    let cells_t = g.op(
        "Transpose",
        &[&flat],
        vec![attr_ints("perm", &[0, 2, 1])],
        &format!("{name}.cells"),
    );
    let mean = g.op(
        "ReduceMean",
        &[&cells_t],
        vec![attr_ints("axes", &[1]), attr_int("keepdims", 1)],
        &format!("{name}.mean"),
    );
    let tokens = g.op(
        "Concat",
        &[&mean, &cells_t],
        vec![attr_int("axis", 1)],
        &format!("{name}.tokens"),
    );
    let pos = &pool.position_embedding;
    let pos = g.weight(&format!("{name}.position_embedding"), &pos.shape, &pos.data);
    let tokens = g.op("Add", &[&tokens, &pos], vec![], &format!("{name}.embedded"));

    // The query: token 0 only, with 1/sqrt(head_dim) folded into its projection.
    let first = g.int64(&format!("{name}.first"), &[1], &[0]);
    let query_token = g.op(
        "Gather",
        &[&tokens, &first],
        vec![attr_int("axis", 1)],
        &format!("{name}.query_token"),
    );
    let scale = (head_dim as f32).powf(-0.5);
    let q = linear(
        g,
        &format!("{name}.q"),
        &query_token,
        &scaled(&pool.q, scale),
    );
    let q_shape = g.int64(
        &format!("{name}.q_shape"),
        &[4],
        &[0, 1, heads as i64, head_dim as i64],
    );
    let q = g.op(
        "Reshape",
        &[&q, &q_shape],
        vec![],
        &format!("{name}.q_heads"),
    );
    let q = g.op(
        "Transpose",
        &[&q],
        vec![attr_ints("perm", &[0, 2, 1, 3])],
        &format!("{name}.q_t"),
    );

    // Keys and values of every token in one [width, 2 width] projection.
    let kv = linear(
        g,
        &format!("{name}.kv"),
        &tokens,
        &stacked(&pool.k, &pool.v),
    );
    let parts = split_heads(g, name, &kv, &["k", "v"], heads, head_dim);
    // [B, H, 1, D] -> [B, width]
    let ctx = attend(
        g,
        name,
        [&q, &parts[0], &parts[1]],
        None,
        &[0, width as i64],
    );
    linear(g, &format!("{name}.c_proj"), &ctx, &pool.out)
}

/// `layer` with its output multiplied by `factor` (weights and bias).
fn scaled(layer: &Linear, factor: f32) -> Linear {
    let scale =
        |t: &Tensor| Tensor::new(t.shape.clone(), t.data.iter().map(|v| v * factor).collect());
    Linear {
        weight: scale(&layer.weight),
        bias: scale(&layer.bias),
    }
}

/// Two layers on the same input as one, outputs `a` then `b`.
fn stacked(a: &Linear, b: &Linear) -> Linear {
    let join = |x: &Tensor, y: &Tensor| {
        let mut shape = x.shape.clone();
        shape[0] += y.shape[0];
        Tensor::new(shape, [&x.data[..], &y.data[..]].concat())
    };
    Linear {
        weight: join(&a.weight, &b.weight),
        bias: join(&a.bias, &b.bias),
    }
}
