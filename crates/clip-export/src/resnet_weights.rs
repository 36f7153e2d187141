//! The weights of open_clip's `ModifiedResNet` image tower, with every
//! batch norm folded into the convolution before it.
//!
//! In eval mode a batch norm is the affine map `(x - mean) / sqrt(var +
//! eps) * gamma + beta` per channel, so `bn(conv(x))` is one convolution
//! with weights scaled by `gamma / sqrt(var + eps)` per output channel and
//! the bias `beta - mean * gamma / sqrt(var + eps)`.

use crate::arch::{ClipArchitecture, VisionKind};
use crate::error::{ExportError, Result};
use crate::weights::{Linear, Source, Tensor};

/// torch's `BatchNorm2d` default, which open_clip keeps.
const BATCH_NORM_EPS: f64 = 1e-5;

/// Channels out of a bottleneck per channel of its middle convolution.
pub const BOTTLENECK_EXPANSION: usize = 4;

/// A convolution with its batch norm folded in: `weight` `[out, in, k, k]`, `bias` `[out]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Conv {
    pub weight: Tensor,
    pub bias: Tensor,
}

impl Conv {
    pub fn kernel(&self) -> usize {
        self.weight.shape[2]
    }
}

/// 1x1 reduce, 3x3, (average pool when strided), 1x1 expand, plus the
/// shortcut: (average pool,) 1x1 convolution when the shape changes.
#[derive(Clone, Debug, PartialEq)]
pub struct Bottleneck {
    pub conv1: Conv,
    pub conv2: Conv,
    pub conv3: Conv,
    pub downsample: Option<Conv>,
    pub stride: usize,
}

/// Multi-head attention of the mean token over itself and every cell,
/// each with its positional embedding, projected to the embedding space.
#[derive(Clone, Debug, PartialEq)]
pub struct AttentionPool {
    /// `[cells + 1, features]`, row 0 for the mean token.
    pub position_embedding: Tensor,
    pub q: Linear,
    pub k: Linear,
    pub v: Linear,
    /// `[embed_dim, features]`: the tower's output projection.
    pub out: Linear,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ResNetWeights {
    /// 3 -> width/2 (stride 2), width/2 -> width/2, width/2 -> width, all 3x3.
    pub stem: [Conv; 3],
    pub stages: Vec<Vec<Bottleneck>>,
    pub pool: AttentionPool,
}

/// The shape of one bottleneck.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockShape {
    pub inplanes: usize,
    pub planes: usize,
    pub stride: usize,
}

impl BlockShape {
    pub fn outplanes(&self) -> usize {
        self.planes * BOTTLENECK_EXPANSION
    }

    pub fn has_downsample(&self) -> bool {
        self.stride > 1 || self.inplanes != self.outplanes()
    }
}

/// Every bottleneck of a ResNet tower, stage by stage, as open_clip builds
/// them: stage `i` has `width * 2^i` planes, strides 1, 2, 2, 2 on its first block.
pub fn block_shapes(width: usize, stages: [usize; 4]) -> Vec<Vec<BlockShape>> {
    let mut inplanes = width;
    (0..4)
        .map(|i| {
            let planes = width << i;
            (0..stages[i])
                .map(|b| {
                    let shape = BlockShape {
                        inplanes,
                        planes,
                        stride: if b == 0 && i > 0 { 2 } else { 1 },
                    };
                    inplanes = shape.outplanes();
                    shape
                })
                .collect()
        })
        .collect()
}

/// The stem's three convolutions as `(in, out, stride)`.
pub fn stem_shapes(width: usize) -> [(usize, usize, usize); 3] {
    [
        (3, width / 2, 2),
        (width / 2, width / 2, 1),
        (width / 2, width, 1),
    ]
}

fn stages_of(arch: &ClipArchitecture) -> Result<[usize; 4]> {
    match arch.vision.kind {
        VisionKind::ResNet { stages } => Ok(stages),
        VisionKind::Transformer => Err(ExportError::Config(
            "expected a ResNet image tower, the architecture has a ViT".into(),
        )),
    }
}

/// `visual.*` of an open_clip `ModifiedResNet` checkpoint.
pub(crate) fn read_open_clip_resnet(
    src: &mut Source,
    arch: &ClipArchitecture,
) -> Result<ResNetWeights> {
    let v = &arch.vision;
    let stages = stages_of(arch)?;
    let [s1, s2, s3] = stem_shapes(v.width);
    let stem = [
        conv_bn(src, "visual.conv1", "visual.bn1", s1.0, s1.1, 3)?,
        conv_bn(src, "visual.conv2", "visual.bn2", s2.0, s2.1, 3)?,
        conv_bn(src, "visual.conv3", "visual.bn3", s3.0, s3.1, 3)?,
    ];
    let stages = block_shapes(v.width, stages)
        .iter()
        .enumerate()
        .map(|(i, blocks)| {
            blocks
                .iter()
                .enumerate()
                .map(|(b, shape)| {
                    let p = format!("visual.layer{}.{b}", i + 1);
                    let planes = shape.planes;
                    Ok(Bottleneck {
                        conv1: conv_bn(
                            src,
                            &format!("{p}.conv1"),
                            &format!("{p}.bn1"),
                            shape.inplanes,
                            planes,
                            1,
                        )?,
                        conv2: conv_bn(
                            src,
                            &format!("{p}.conv2"),
                            &format!("{p}.bn2"),
                            planes,
                            planes,
                            3,
                        )?,
                        conv3: conv_bn(
                            src,
                            &format!("{p}.conv3"),
                            &format!("{p}.bn3"),
                            planes,
                            shape.outplanes(),
                            1,
                        )?,
                        downsample: if shape.has_downsample() {
                            Some(conv_bn(
                                src,
                                &format!("{p}.downsample.0"),
                                &format!("{p}.downsample.1"),
                                shape.inplanes,
                                shape.outplanes(),
                                1,
                            )?)
                        } else {
                            None
                        },
                        stride: shape.stride,
                    })
                })
                .collect::<Result<Vec<_>>>()
        })
        .collect::<Result<Vec<_>>>()?;
    let features = v.feature_width();
    let pool = AttentionPool {
        position_embedding: src.take(
            "visual.attnpool.positional_embedding",
            &[v.tokens(), features],
        )?,
        q: src.linear("visual.attnpool.q_proj", features, features)?,
        k: src.linear("visual.attnpool.k_proj", features, features)?,
        v: src.linear("visual.attnpool.v_proj", features, features)?,
        out: src.linear("visual.attnpool.c_proj", arch.embed_dim, features)?,
    };
    Ok(ResNetWeights { stem, stages, pool })
}

/// A bias-free convolution and the batch norm after it, folded.
fn conv_bn(
    src: &mut Source,
    conv: &str,
    bn: &str,
    inp: usize,
    out: usize,
    kernel: usize,
) -> Result<Conv> {
    let weight = src.take(&format!("{conv}.weight"), &[out, inp, kernel, kernel])?;
    let gamma = src.take(&format!("{bn}.weight"), &[out])?;
    let beta = src.take(&format!("{bn}.bias"), &[out])?;
    let mean = src.take(&format!("{bn}.running_mean"), &[out])?;
    let var = src.take(&format!("{bn}.running_var"), &[out])?;
    if let Some(i) = var.data.iter().position(|&v| v < 0.0) {
        return Err(ExportError::Config(format!(
            "{bn}.running_var[{i}] is negative ({})",
            var.data[i]
        )));
    }
    Ok(fold_batch_norm(
        weight,
        &gamma.data,
        &beta.data,
        &mean.data,
        &var.data,
    ))
}

/// `bn(conv(x))` as one convolution.
pub fn fold_batch_norm(
    mut weight: Tensor,
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    var: &[f32],
) -> Conv {
    let out = weight.shape[0];
    let per_channel = weight.data.len() / out;
    let mut bias = Vec::with_capacity(out);
    for (o, chunk) in weight.data.chunks_exact_mut(per_channel).enumerate() {
        let scale = gamma[o] as f64 / (var[o] as f64 + BATCH_NORM_EPS).sqrt();
        for w in chunk {
            *w = (*w as f64 * scale) as f32;
        }
        bias.push((beta[o] as f64 - mean[o] as f64 * scale) as f32);
    }
    Conv {
        weight,
        bias: Tensor::new(vec![out], bias),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rn50_block_shapes() {
        let shapes = block_shapes(64, [3, 4, 6, 3]);
        assert_eq!(
            shapes.iter().map(Vec::len).collect::<Vec<_>>(),
            [3, 4, 6, 3]
        );
        // layer1.0 widens 64 -> 256 at stride 1: a shortcut convolution, no pool.
        assert_eq!(
            shapes[0][0],
            BlockShape {
                inplanes: 64,
                planes: 64,
                stride: 1
            }
        );
        assert!(shapes[0][0].has_downsample());
        assert!(!shapes[0][1].has_downsample());
        assert_eq!(
            shapes[1][0],
            BlockShape {
                inplanes: 256,
                planes: 128,
                stride: 2
            }
        );
        assert_eq!(shapes[3][2].outplanes(), 2048);
        assert_eq!(stem_shapes(64), [(3, 32, 2), (32, 32, 1), (32, 64, 1)]);
    }

    #[test]
    fn folding_matches_the_batch_norm() {
        // One output channel, two weights: bn(w . x) for x = (1, 2).
        let weight = Tensor::new(vec![1, 2, 1, 1], vec![0.5, -1.0]);
        let conv = fold_batch_norm(weight, &[2.0], &[0.25], &[0.75], &[3.0]);
        let x = [1.0f64, 2.0];
        let raw = 0.5 * x[0] - 1.0 * x[1];
        let expected = (raw - 0.75) / (3.0 + BATCH_NORM_EPS).sqrt() * 2.0 + 0.25;
        let folded = conv.weight.data[0] as f64 * x[0]
            + conv.weight.data[1] as f64 * x[1]
            + conv.bias.data[0] as f64;
        assert!((folded - expected).abs() < 1e-6, "{folded} vs {expected}");
    }
}
