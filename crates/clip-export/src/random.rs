//! Seeded random weights for a [`ClipArchitecture`] or an M-CLIP text tower
//! ([`MclipTextArchitecture`]): the real model's
//! shapes and compute with meaningless values, so full-size models can be
//! exported and benchmarked without downloading a checkpoint.
//!
//! The values follow the usual transformer initialisation: every matrix and
//! embedding is drawn from N(0, 0.02²), biases are zero, LayerNorms are the
//! identity (weight 1, bias 0). The generator is SplitMix64, so the same
//! seed gives the same weights on every platform.

use crate::arch::{ClipArchitecture, TextPooling, VisionKind};
use crate::error::Result;
use crate::mclip::{BertLayer, MclipTextArchitecture, MclipTextWeights};
use crate::resnet_weights::{
    block_shapes, stem_shapes, AttentionPool, Bottleneck, Conv, ResNetWeights,
};
use crate::weights::{
    Block, ClipWeights, LayerNorm, Linear, Tensor, TextWeights, VisionWeights, VisualWeights,
    WeightLayout,
};

/// Standard deviation of every random matrix and embedding.
pub const RANDOM_INIT_STD: f32 = 0.02;

/// CLIP's initial similarity temperature, ln(1 / 0.07).
const INITIAL_LOGIT_SCALE: f32 = 2.659_26;

/// SplitMix64 (Steele, Lea, Flood 2014): small, fast, and fully determined by its seed.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1], never 0 (the Box-Muller logarithm needs that).
    fn unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }

    /// Two independent standard normal samples (Box-Muller).
    fn normal_pair(&mut self) -> (f64, f64) {
        let radius = (-2.0 * self.unit().ln()).sqrt();
        let angle = std::f64::consts::TAU * self.unit();
        (radius * angle.cos(), radius * angle.sin())
    }
}

struct Init {
    rng: SplitMix64,
}

impl Init {
    fn normal(&mut self, shape: Vec<usize>) -> Tensor {
        let len: usize = shape.iter().product();
        let mut data = Vec::with_capacity(len + 1);
        while data.len() < len {
            let (a, b) = self.rng.normal_pair();
            data.push(a as f32 * RANDOM_INIT_STD);
            data.push(b as f32 * RANDOM_INIT_STD);
        }
        data.truncate(len);
        Tensor::new(shape, data)
    }

    fn linear(&mut self, out: usize, inp: usize) -> Linear {
        Linear {
            weight: self.normal(vec![out, inp]),
            bias: Tensor::new(vec![out], vec![0.0; out]),
        }
    }

    fn block(&mut self, width: usize, mlp: usize) -> Block {
        Block {
            ln_1: layer_norm(width),
            q: self.linear(width, width),
            k: self.linear(width, width),
            v: self.linear(width, width),
            out: self.linear(width, width),
            ln_2: layer_norm(width),
            fc_1: self.linear(mlp, width),
            fc_2: self.linear(width, mlp),
        }
    }
}

impl Init {
    /// A convolution (batch norm folded: a bias) drawn with He's scale,
    /// sqrt(2 / fan_in), so activations keep their size through the ReLUs.
    fn conv(&mut self, inp: usize, out: usize, kernel: usize) -> Conv {
        let fan_in = (inp * kernel * kernel) as f32;
        self.conv_with_std(inp, out, kernel, (2.0 / fan_in).sqrt())
    }

    /// A residual branch's last convolution: small, as open_clip starts
    /// those batch norms at zero, so 64 blocks of residual sums stay
    /// within float16's range.
    fn residual_conv(&mut self, inp: usize, out: usize) -> Conv {
        self.conv_with_std(inp, out, 1, RANDOM_INIT_STD)
    }

    fn conv_with_std(&mut self, inp: usize, out: usize, kernel: usize, std: f32) -> Conv {
        let mut weight = self.normal(vec![out, inp, kernel, kernel]);
        let gain = std / RANDOM_INIT_STD;
        weight.data.iter_mut().for_each(|w| *w *= gain);
        Conv {
            weight,
            bias: Tensor::new(vec![out], vec![0.0; out]),
        }
    }

    fn resnet(&mut self, arch: &ClipArchitecture, stages: [usize; 4]) -> ResNetWeights {
        let v = &arch.vision;
        let stem = stem_shapes(v.width).map(|(inp, out, _)| self.conv(inp, out, 3));
        let stages = block_shapes(v.width, stages)
            .iter()
            .map(|blocks| {
                blocks
                    .iter()
                    .map(|s| Bottleneck {
                        conv1: self.conv(s.inplanes, s.planes, 1),
                        conv2: self.conv(s.planes, s.planes, 3),
                        conv3: self.residual_conv(s.planes, s.outplanes()),
                        downsample: s
                            .has_downsample()
                            .then(|| self.conv(s.inplanes, s.outplanes(), 1)),
                        stride: s.stride,
                    })
                    .collect()
            })
            .collect();
        let features = v.feature_width();
        let pool = AttentionPool {
            position_embedding: self.normal(vec![v.tokens(), features]),
            q: self.linear(features, features),
            k: self.linear(features, features),
            v: self.linear(features, features),
            out: self.linear(arch.embed_dim, features),
        };
        ResNetWeights { stem, stages, pool }
    }
}

fn layer_norm(width: usize) -> LayerNorm {
    LayerNorm {
        weight: Tensor::new(vec![width], vec![1.0; width]),
        bias: Tensor::new(vec![width], vec![0.0; width]),
    }
}

impl ClipWeights {
    /// Random weights of `arch`'s shapes, the same for the same `seed`.
    ///
    /// The result is laid out as transformers' `CLIPModel` would be; the
    /// embeddings it produces mean nothing.
    pub fn random(arch: &ClipArchitecture, seed: u64) -> Result<Self> {
        arch.validate()?;
        let mut init = Init {
            rng: SplitMix64(seed),
        };
        let t = &arch.text;
        let v = &arch.vision;
        let text = TextWeights {
            token_embedding: init.normal(vec![t.vocab_size, t.width]),
            position_embedding: init.normal(vec![t.context_length, t.width]),
            blocks: (0..t.layers)
                .map(|_| init.block(t.width, t.mlp_width))
                .collect(),
            ln_final: layer_norm(t.width),
            projection: init.normal(vec![arch.embed_dim, t.width]),
        };
        let vision = match v.kind {
            VisionKind::ResNet { stages } => VisualWeights::ResNet(init.resnet(arch, stages)),
            VisionKind::Transformer => VisualWeights::Transformer(VisionWeights {
                patch_embedding: init.normal(vec![v.width, 3, v.patch_size, v.patch_size]),
                class_embedding: init.normal(vec![v.width]),
                position_embedding: init.normal(vec![v.tokens(), v.width]),
                ln_pre: layer_norm(v.width),
                blocks: (0..v.layers)
                    .map(|_| init.block(v.width, v.mlp_width))
                    .collect(),
                ln_post: layer_norm(v.width),
                projection: init.normal(vec![arch.embed_dim, v.width]),
            }),
        };
        Ok(ClipWeights {
            arch: *arch,
            layout: WeightLayout::Transformers,
            text,
            vision,
            logit_scale: Some(INITIAL_LOGIT_SCALE),
        })
    }
}

impl MclipTextWeights {
    /// Random weights of an M-CLIP text tower's shapes, the same for the
    /// same `seed`; the embeddings they produce mean nothing.
    pub fn random(arch: &MclipTextArchitecture, seed: u64) -> Result<Self> {
        arch.validate()?;
        let mut init = Init {
            rng: SplitMix64(seed),
        };
        let e = &arch.encoder;
        let width = e.width;
        Ok(MclipTextWeights {
            arch: *arch,
            word_embeddings: init.normal(vec![e.vocab_size, width]),
            position_embeddings: init.normal(vec![e.max_positions, width]),
            token_type_embedding: init.normal(vec![width]),
            embeddings_norm: layer_norm(width),
            layers: (0..e.layers)
                .map(|_| BertLayer {
                    q: init.linear(width, width),
                    k: init.linear(width, width),
                    v: init.linear(width, width),
                    attention_out: init.linear(width, width),
                    attention_norm: layer_norm(width),
                    intermediate: init.linear(e.mlp_width, width),
                    output: init.linear(width, e.mlp_width),
                    output_norm: layer_norm(width),
                })
                .collect(),
            projection: init.linear(arch.embed_dim, width),
        })
    }
}

/// transformers' pooling for CLIP's vocabulary, for architectures built in code.
pub const fn default_text_pooling() -> TextPooling {
    TextPooling::FirstEos(crate::arch::CLIP_EOT_ID)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::{Activation, TextTower, VisionTower};

    fn small() -> ClipArchitecture {
        ClipArchitecture {
            text: TextTower {
                width: 16,
                layers: 2,
                heads: 2,
                mlp_width: 64,
                context_length: 77,
                vocab_size: 49408,
                pooling: default_text_pooling(),
            },
            vision: VisionTower {
                width: 24,
                layers: 2,
                heads: 2,
                mlp_width: 96,
                patch_size: 8,
                image_size: 32,
                kind: VisionKind::Transformer,
            },
            embed_dim: 12,
            activation: Activation::QuickGelu,
            layer_norm_eps: 1e-5,
        }
    }

    fn vit(w: &ClipWeights) -> &VisionWeights {
        match &w.vision {
            VisualWeights::Transformer(v) => v,
            VisualWeights::ResNet(_) => panic!("a ViT was asked for"),
        }
    }

    #[test]
    fn same_seed_same_weights_other_seed_other_weights() {
        let arch = small();
        let a = ClipWeights::random(&arch, 7).unwrap();
        let b = ClipWeights::random(&arch, 7).unwrap();
        let c = ClipWeights::random(&arch, 8).unwrap();
        assert_eq!(a, b);
        assert_ne!(a.text.token_embedding, c.text.token_embedding);
        assert_ne!(vit(&a).blocks[1].fc_2, vit(&c).blocks[1].fc_2);
    }

    #[test]
    fn shapes_and_statistics() {
        let arch = small();
        let w = ClipWeights::random(&arch, 1).unwrap();
        assert_eq!(w.text.token_embedding.shape, [49408, 16]);
        assert_eq!(vit(&w).patch_embedding.shape, [24, 3, 8, 8]);
        assert_eq!(vit(&w).position_embedding.shape, [17, 24]);
        assert_eq!(w.text.blocks.len(), 2);
        assert_eq!(vit(&w).blocks[0].fc_1.weight.shape, [96, 24]);
        assert_eq!(w.text.projection.shape, [12, 16]);
        let data = &w.text.token_embedding.data;
        let n = data.len() as f64;
        let mean = data.iter().map(|&x| x as f64).sum::<f64>() / n;
        let std = (data.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n).sqrt();
        assert!(mean.abs() < 1e-3, "mean {mean}");
        assert!(
            (std - RANDOM_INIT_STD as f64).abs() < 1e-3,
            "std {std} (want {RANDOM_INIT_STD})"
        );
        assert!(data.iter().all(|x| x.is_finite()));
    }
}
