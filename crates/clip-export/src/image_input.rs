//! The image encoders' input: normalised float pixels, or the pixel path's
//! uint8 HWC crops, normalised in the graph.
//!
//! On the pixel path the normalisation is the only arithmetic the server
//! does per pixel before the encoder's first layer. Where that layer is a
//! convolution without padding (a ViT's patch embedding) the per-channel
//! affine folds exactly into its weights and a bias, so the full-size image
//! passes through one transpose (of bytes) and one cast, and nothing else.

use clip_contract::tensor;

use crate::graph::BATCH_DIM;
use crate::onnx::{attr_int, attr_ints, value_info, Dim, GraphBuilder, WeightDtype};
use crate::proto::{tensor_proto::DataType, ValueInfoProto};

/// What the image encoder takes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum VisualInput {
    /// `PIXEL_VALUES` float `[batch, 3, S, S]`, normalised by the preprocessing model.
    Normalised,
    /// `PIXELS` uint8 `[batch, S, S, 3]`, resized and cropped but not
    /// normalised: the graph transposes to CHW and normalises with these
    /// per-channel constants (`(x / 255 - mean) / std`).
    Pixels { mean: [f32; 3], std: [f32; 3] },
}

/// How the encoder's first layer takes its pixels.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum FirstLayer {
    /// A convolution that reads no padding: the normalisation can fold into it.
    Unpadded,
    /// A convolution whose zero padding would see raw levels if folded.
    Padded,
}

/// The image encoder's input: the value's name, the graph input's
/// description and its name.
pub(crate) struct ImageInput {
    /// CHW pixels in the graph's dtype: normalised, or, when `fold` is
    /// set, the levels 0..=255 that the first layer must normalise.
    pub pixels: String,
    pub fold: Option<ChannelAffine>,
    pub info: ValueInfoProto,
    pub name: &'static str,
}

/// Per channel `level * scale + offset`: the normalisation of 0..=255 levels.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct ChannelAffine {
    scale: [f64; 3],
    offset: [f64; 3],
}

impl ChannelAffine {
    fn new(mean: [f32; 3], std: [f32; 3]) -> Self {
        let per_channel = |f: &dyn Fn(usize) -> f64| [f(0), f(1), f(2)];
        ChannelAffine {
            scale: per_channel(&|c| 1.0 / (255.0 * f64::from(std[c]))),
            offset: per_channel(&|c| -f64::from(mean[c]) / f64::from(std[c])),
        }
    }

    /// The weights and bias of a convolution over levels that equals
    /// `kernel` (`[out, 3, kh, kw]`, no padding, no bias) over normalised
    /// pixels: each input channel's weights scale, and what the offsets
    /// contribute under each output's kernel becomes its bias.
    pub fn fold_into_conv(&self, kernel: &[f32], shape: &[usize]) -> (Vec<f32>, Vec<f32>) {
        debug_assert_eq!(shape.get(1), Some(&3), "a kernel over RGB");
        let window: usize = shape[2..].iter().product();
        let outputs = shape[0];
        let mut folded = Vec::with_capacity(kernel.len());
        let mut folded_bias = Vec::with_capacity(outputs);
        for weights in kernel.chunks_exact(3 * window) {
            let mut sum = 0.0;
            for (c, channel) in weights.chunks_exact(window).enumerate() {
                let total: f64 = channel.iter().map(|w| f64::from(*w)).sum();
                sum += total * self.offset[c];
                folded.extend(
                    channel
                        .iter()
                        .map(|w| (f64::from(*w) * self.scale[c]) as f32),
                );
            }
            folded_bias.push(sum as f32);
        }
        (folded, folded_bias)
    }
}

/// Declares the graph input `input` asks for and converts it to CHW pixels
/// in the graph's dtype: normalised, or levels with the affine to fold when
/// the first layer allows it and the dtype is float32 (float16 keeps the
/// normalisation in float32, where small folded weights keep their bits).
pub(crate) fn image_input(
    g: &mut GraphBuilder,
    image_size: usize,
    input: VisualInput,
    first_layer: FirstLayer,
) -> ImageInput {
    let s = image_size;
    let (mean, std) = match input {
        VisualInput::Normalised => {
            g.reserve(tensor::PIXEL_VALUES);
            let info = value_info(
                tensor::PIXEL_VALUES,
                DataType::Float,
                &[
                    Dim::Named(BATCH_DIM),
                    Dim::Fixed(3),
                    Dim::Fixed(s),
                    Dim::Fixed(s),
                ],
            );
            let pixels = in_graph_dtype(g, tensor::PIXEL_VALUES.to_string());
            return ImageInput {
                pixels,
                fold: None,
                info,
                name: tensor::PIXEL_VALUES,
            };
        }
        VisualInput::Pixels { mean, std } => (mean, std),
    };
    g.reserve(tensor::PIXELS);
    let info = value_info(
        tensor::PIXELS,
        DataType::Uint8,
        &[
            Dim::Named(BATCH_DIM),
            Dim::Fixed(s),
            Dim::Fixed(s),
            Dim::Fixed(3),
        ],
    );
    // Bytes transpose four times cheaper than floats, and cast exactly.
    let chw = g.op(
        "Transpose",
        &[tensor::PIXELS],
        vec![attr_ints("perm", &[0, 3, 1, 2])],
        "vision.levels_chw",
    );
    let levels = g.op(
        "Cast",
        &[&chw],
        vec![attr_int("to", DataType::Float as i64)],
        "vision.levels",
    );
    let foldable = first_layer == FirstLayer::Unpadded && g.dtype != WeightDtype::F16;
    let (pixels, fold) = if foldable {
        (levels, Some(ChannelAffine::new(mean, std)))
    } else {
        (normalise(g, &levels, mean, std), None)
    };
    ImageInput {
        pixels: in_graph_dtype(g, pixels),
        fold,
        info,
        name: tensor::PIXELS,
    }
}

/// Float32 levels -> normalised pixels, in the reference's order (`x / 255`,
/// `- mean`, `/ std`, in float32), as the preprocessing model computes them.
fn normalise(g: &mut GraphBuilder, levels: &str, mean: [f32; 3], std: [f32; 3]) -> String {
    let rescale = g.float32("vision.rescale", &[], &[(1.0f64 / 255.0) as f32]);
    let mean = g.float32("vision.mean", &[1, 3, 1, 1], &mean);
    let std = g.float32("vision.std", &[1, 3, 1, 1], &std);
    let x = g.op("Mul", &[levels, &rescale], vec![], "vision.rescaled");
    let x = g.op("Sub", &[&x, &mean], vec![], "vision.centred");
    g.op("Div", &[&x, &std], vec![], "vision.normalised")
}

/// A float32 value in the graph's dtype.
fn in_graph_dtype(g: &mut GraphBuilder, value: String) -> String {
    match g.dtype {
        WeightDtype::F32 | WeightDtype::Int8 => value,
        WeightDtype::F16 => g.op(
            "Cast",
            &[&value],
            vec![attr_int("to", DataType::Float16 as i64)],
            "vision.pixels_f16",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 2-output, 3-channel, 2x2 kernel folded gives, on any levels, what
    /// the kernel gives on the normalised levels.
    #[test]
    fn a_folded_convolution_equals_the_normalised_one() {
        let (mean, std) = ([0.48, 0.46, 0.41], [0.27, 0.26, 0.28]);
        let affine = ChannelAffine::new(mean, std);
        let kernel: Vec<f32> = (0..24).map(|i| (i as f32 - 11.5) / 37.0).collect();
        let (folded, folded_bias) = affine.fold_into_conv(&kernel, &[2, 3, 2, 2]);
        assert_eq!((folded.len(), folded_bias.len()), (24, 2));
        // One 2x2 patch of levels per channel, CHW.
        let levels: Vec<f32> = [0u8, 255, 17, 128, 3, 99, 200, 64, 250, 1, 77, 180]
            .iter()
            .map(|l| f32::from(*l))
            .collect();
        for o in 0..2 {
            let mut normalised = 0.0;
            let mut on_levels = f64::from(folded_bias[o]);
            for i in 0..12 {
                let c = i / 4;
                let x = (f64::from(levels[i]) / 255.0 - f64::from(mean[c])) / f64::from(std[c]);
                normalised += f64::from(kernel[o * 12 + i]) * x;
                on_levels += f64::from(folded[o * 12 + i]) * f64::from(levels[i]);
            }
            assert!(
                (normalised - on_levels).abs() < 1e-5,
                "{normalised} {on_levels}"
            );
        }
    }
}
