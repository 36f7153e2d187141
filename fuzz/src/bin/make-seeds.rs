//! Writes the fuzz targets' seed inputs, made from the repository's fixtures
//! (`tests/fixtures/`), into `OUT/<target>/` (default
//! `fuzz/target/seeds`): small crops of every fixture image in its own format
//! and variant (lossless JPEG crops keep the colour space, subsampling and
//! markers; PNG crops keep colour type, bit depth, palette and
//! transparency), the fixture sentences, the tiny CLIP's configs, small
//! safetensors and ONNX files of a tiny CLIP, and hand-written Triton
//! configs and BYTES tensors. `scripts/fuzz.sh seeds` runs this, then
//! minimises each folder into `fuzz/corpus/<target>/` with afl-cmin.
//!
//! Usage: make-seeds [OUT]

use std::collections::BTreeSet;
use std::fs;
use std::io::Cursor;
use std::path::{Path, PathBuf};

use clip_export::{
    export_textual, export_visual, ClipWeights, ExportOptions, WeightDtype, WeightLayout,
};
use clip_fuzz::{fixture, fuzz_dir, tiny_arch, tiny_safetensors, TINY_CONFIG};
use image::{ExtendedColorType, GenericImageView, ImageEncoder};
use safetensors::Dtype;
use turbojpeg::{Transform, TransformCrop, TransformOp};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn main() -> Result<()> {
    let out = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| fuzz_dir().join("target/seeds"));
    let seeds = Seeds { out };
    images(&seeds)?;
    texts(&seeds)?;
    triton_configs(&seeds)?;
    bytes_elements(&seeds)?;
    weights(&seeds)?;
    onnx(&seeds)?;
    model_configs(&seeds)?;
    println!("seeds written under {}", seeds.out.display());
    Ok(())
}

struct Seeds {
    out: PathBuf,
}

impl Seeds {
    fn write(&self, target: &str, name: &str, bytes: &[u8]) -> Result<()> {
        assert!(
            clip_fuzz::target(target).is_some(),
            "unknown target {target}"
        );
        let dir = self.out.join(target);
        fs::create_dir_all(&dir)?;
        fs::write(dir.join(name), bytes)?;
        Ok(())
    }
}

fn read_image(name: &str) -> Result<Vec<u8>> {
    Ok(fs::read(fixture(&format!("images/inputs/{name}")))?)
}

fn images(seeds: &Seeds) -> Result<()> {
    // JPEG: lossless crops (libjpeg-turbo's transform) at MCU boundaries.
    // (fixture, side, progressive, arithmetic); 32 px takes the 1/2 DCT scale
    // in the fuzz target's reduced-scale preprocessor, 64 px 1/4, 128 px 1/8.
    let jpegs: &[(&str, usize, bool, bool)] = &[
        ("coffee_q90.jpg", 32, false, false),
        ("motorcycle_progressive.jpg", 32, true, false),
        ("camera_grey.jpg", 24, false, false),
        ("chelsea_444_q95.jpg", 16, false, false),
        ("chelsea_exif_rot.jpg", 32, false, false),
        ("coffee_cmyk.jpg", 32, false, false),
        ("retina.jpg", 64, false, true),
        ("tall.jpg", 128, false, false),
    ];
    for &(name, side, progressive, arithmetic) in jpegs {
        let src = read_image(name)?;
        let header = turbojpeg::read_header(&src)?;
        let centre = |full: usize| ((full.saturating_sub(side)) / 2) / 16 * 16;
        let mut transform = Transform::op(TransformOp::None);
        transform.crop = Some(TransformCrop {
            x: centre(header.width),
            y: centre(header.height),
            width: Some(side.min(header.width)),
            height: Some(side.min(header.height)),
        });
        transform.progressive = progressive;
        transform.arithmetic = arithmetic;
        let cropped = turbojpeg::transform(&transform, &src)?;
        let stem = name.trim_end_matches(".jpg");
        seeds.write("image", &format!("{stem}_{side}.jpg"), &cropped)?;
    }

    // PNG: raw rows (no expansion), cropped, written with the same header.
    for (name, side) in [
        ("astronaut.png", 16),
        ("astronaut_rgb16.png", 12),
        ("camera.png", 40),
        ("coins_grey16.png", 16),
        ("coins_la.png", 16),
        ("logo.png", 16),
        ("logo_palette_trns.png", 16),
    ] {
        let cropped = png_crop(&read_image(name)?, side)?;
        let stem = name.trim_end_matches(".png");
        seeds.write("image", &format!("{stem}_{side}.png"), &cropped)?;
    }

    // GIF (one frame and two), WebP lossless (RGB and RGBA), BMP (RGB, grey
    // palette, RGBA): crops through the image crate's encoders. The lossy
    // WebP is the fixture itself (no lossy encoder here; 17 KB).
    let chelsea_gif = image::load_from_memory(&read_image("chelsea.gif")?)?;
    let frame = |x: u32| image::Frame::new(chelsea_gif.crop_imm(x, 100, 16, 12).to_rgba8());
    for (name, frames) in [
        ("chelsea_16.gif", vec![frame(200)]),
        ("chelsea_2frames.gif", vec![frame(200), frame(240)]),
    ] {
        let mut out = Vec::new();
        image::codecs::gif::GifEncoder::new(&mut out).encode_frames(frames)?;
        seeds.write("image", name, &out)?;
    }
    // The GIF fixtures of clip-image's first-frame compositing (offset and
    // oversized frames, local and short palettes, transparency), whole.
    for entry in fs::read_dir(fixture("images/inputs"))? {
        let path = entry?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if name.starts_with("gif_") && name.ends_with(".gif") {
            seeds.write("image", name, &fs::read(&path)?)?;
        }
    }
    let webp = image::load_from_memory(&read_image("chelsea_lossless.webp")?)?;
    let logo = image::load_from_memory(&read_image("logo.png")?)?;
    let rgb = webp.crop_imm(200, 100, 16, 16).to_rgb8();
    let rgba = logo.crop_imm(100, 100, 16, 16).to_rgba8();
    let mut out = Vec::new();
    image::codecs::webp::WebPEncoder::new_lossless(&mut out).write_image(
        &rgb,
        16,
        16,
        ExtendedColorType::Rgb8,
    )?;
    seeds.write("image", "chelsea_lossless_16.webp", &out)?;
    let mut out = Vec::new();
    image::codecs::webp::WebPEncoder::new_lossless(&mut out).write_image(
        &rgba,
        16,
        16,
        ExtendedColorType::Rgba8,
    )?;
    seeds.write("image", "logo_rgba_16.webp", &out)?;
    seeds.write(
        "image",
        "chelsea_lossy.webp",
        &read_image("chelsea_lossy.webp")?,
    )?;
    let coffee = image::load_from_memory(&read_image("coffee.bmp")?)?;
    let (w, h) = coffee.dimensions();
    let crop = coffee.crop_imm(w / 2, h / 2, 16, 12);
    for (name, bytes, color) in [
        (
            "coffee_16.bmp",
            crop.to_rgb8().into_raw(),
            ExtendedColorType::Rgb8,
        ),
        (
            "coffee_grey_16.bmp",
            crop.to_luma8().into_raw(),
            ExtendedColorType::L8,
        ),
        (
            "coffee_rgba_16.bmp",
            crop.to_rgba8().into_raw(),
            ExtendedColorType::Rgba8,
        ),
    ] {
        let mut out = Vec::new();
        image::codecs::bmp::BmpEncoder::new(&mut out).write_image(&bytes, 16, 12, color)?;
        seeds.write("image", name, &out)?;
    }
    Ok(())
}

/// The centre `side x side` of a PNG of bit depth 8 or 16, same colour type,
/// bit depth, palette and tRNS.
fn png_crop(src: &[u8], side: u32) -> Result<Vec<u8>> {
    let mut decoder = png::Decoder::new(Cursor::new(src));
    decoder.set_transformations(png::Transformations::IDENTITY);
    let mut reader = decoder.read_info()?;
    let mut buf = vec![0; reader.output_buffer_size().ok_or("PNG too large")?];
    let frame = reader.next_frame(&mut buf)?;
    let info = reader.info();
    let depth = info.bit_depth as usize;
    assert!(depth >= 8, "sub-byte PNG depths are not cropped here");
    let bpp = info.color_type.samples() * depth / 8;
    let (w, h) = (side.min(info.width), side.min(info.height));
    let (x0, y0) = ((info.width - w) / 2, (info.height - h) / 2);
    let mut rows = Vec::new();
    for y in y0..y0 + h {
        let start = y as usize * frame.line_size + x0 as usize * bpp;
        rows.extend_from_slice(&buf[start..start + w as usize * bpp]);
    }
    let mut out = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut out, w, h);
        encoder.set_color(info.color_type);
        encoder.set_depth(info.bit_depth);
        if let Some(palette) = &info.palette {
            encoder.set_palette(palette.to_vec());
        }
        if let Some(trns) = &info.trns {
            encoder.set_trns(trns.to_vec());
        }
        let mut writer = encoder.write_header()?;
        writer.write_image_data(&rows)?;
    }
    Ok(out)
}

/// Every distinct sentence of the text fixtures (cleaning steps and
/// tokenizer parity), one file each.
fn texts(seeds: &Seeds) -> Result<()> {
    let mut texts = BTreeSet::new();
    for file in ["text/clean.jsonl", "text/tokens.jsonl"] {
        for line in fs::read_to_string(fixture(file))?.lines() {
            let value: serde_json::Value = serde_json::from_str(line)?;
            if let Some(text) = value["text"].as_str() {
                texts.insert(text.to_owned());
            }
        }
    }
    for (i, text) in texts.iter().enumerate() {
        seeds.write("text", &format!("fixture_{i:03}.txt"), text.as_bytes())?;
    }
    Ok(())
}

/// Configs as the backend's tests write them, and one as Triton prints a
/// whole model config (int64 fields as strings, every section present).
fn triton_configs(seeds: &Seeds) -> Result<()> {
    let configs = [
        (
            "text_defaults.json",
            r#"{"name":"clip_text_preprocess","max_batch_size":8,"input":[{"name":"TEXT","data_type":"TYPE_STRING","dims":["1"]}],"output":[{"name":"INPUT_IDS","data_type":"TYPE_INT64","dims":["77"]}],"parameters":{"kind":{"string_value":"text_preprocess"}}}"#,
        ),
        (
            "text_parameters.json",
            r#"{"name":"clip_text_preprocess","max_batch_size":8,"input":[{"name":"TEXT","data_type":"TYPE_STRING","dims":[1]}],"output":[{"name":"INPUT_IDS","data_type":"TYPE_INT64","dims":[64]}],"parameters":{"kind":{"string_value":"text_preprocess"},"pad_token_id":{"string_value":"0"},"tokenizer_file":{"string_value":"tok/tokenizer.json"},"context_length":{"string_value":"64"},"max_text_bytes":{"string_value":"1000"}}}"#,
        ),
        (
            "image_fp16.json",
            r#"{"name":"clip_image_preprocess","max_batch_size":8,"input":[{"name":"IMAGE","data_type":"TYPE_STRING","dims":[1]}],"output":[{"name":"PIXEL_VALUES","data_type":"TYPE_FP16","dims":["3","336","336"]}],"parameters":{"kind":{"string_value":"image_preprocess"}}}"#,
        ),
        (
            "image_parameters.json",
            r#"{"name":"clip_image_preprocess","max_batch_size":8,"input":[{"name":"IMAGE","data_type":"TYPE_STRING","dims":[1]}],"output":[{"name":"PIXEL_VALUES","data_type":"TYPE_FP32","dims":[3,224,224]}],"parameters":{"kind":{"string_value":"image_preprocess"},"image_mean":{"string_value":"0.5, 0.5,0.5"},"image_std":{"string_value":"0.25,0.25,0.25"},"max_pixels":{"string_value":"1000"},"reduced_scale_decode":{"string_value":"false"},"max_image_bytes":{"string_value":"4096"},"image_size":{"string_value":"224"}}}"#,
        ),
        (
            "text_encoder.json",
            r#"{"name":"clip_text_encoder","max_batch_size":8,"input":[{"name":"INPUT_IDS","data_type":"TYPE_INT64","dims":["77"]}],"output":[{"name":"EMBEDDING","data_type":"TYPE_FP32","dims":["512"]}],"instance_group":[{"name":"g0","kind":"KIND_CPU","count":2,"gpus":[]}],"parameters":{"kind":{"string_value":"onnx_encoder"},"vocab_size":{"string_value":"49408"},"intra_op_threads":{"string_value":"2"},"ort_library":{"string_value":"/opt/ort/libonnxruntime.so"}}}"#,
        ),
        (
            "image_encoder.json",
            r#"{"name":"clip_image_encoder","max_batch_size":8,"input":[{"name":"PIXEL_VALUES","data_type":"TYPE_FP16","dims":[3,336,336]}],"output":[{"name":"EMBEDDING","data_type":"TYPE_FP16","dims":[768]}],"instance_group":[{"kind":"KIND_GPU","count":2,"gpus":[0,1]},{"kind":"KIND_CPU","count":"1"}],"parameters":{"kind":{"string_value":"onnx_encoder"},"inter_op_threads":{"string_value":"1"}}}"#,
        ),
        (
            "triton_full.json",
            r#"{"name":"clip_image","platform":"","backend":"clip","runtime":"","version_policy":{"latest":{"num_versions":1}},"max_batch_size":16,"input":[{"name":"IMAGE","data_type":"TYPE_STRING","format":"FORMAT_NONE","dims":["1"],"is_shape_tensor":false,"allow_ragged_batch":false,"optional":false}],"output":[{"name":"PIXEL_VALUES","data_type":"TYPE_FP32","dims":["3","224","224"],"label_filename":"","is_shape_tensor":false}],"batch_input":[],"batch_output":[],"optimization":{"priority":"PRIORITY_DEFAULT","input_pinned_memory":{"enable":true},"output_pinned_memory":{"enable":true},"gather_kernel_buffer_threshold":0,"eager_batching":false},"dynamic_batching":{"preferred_batch_size":[],"max_queue_delay_microseconds":"100","preserve_ordering":false,"priority_levels":"0","default_priority_level":"0","priority_queue_policy":{}},"instance_group":[{"name":"clip_image_0","kind":"KIND_CPU","count":2,"gpus":[],"secondary_devices":[],"profile":[],"passive":false,"host_policy":""}],"default_model_filename":"","cc_model_filenames":{},"metric_tags":{},"parameters":{"kind":{"string_value":"image_preprocess"},"max_pixels":{"string_value":"40000000"},"reduced_scale_decode":{"string_value":"true"}},"model_warmup":[]}"#,
        ),
    ];
    for (name, json) in configs {
        seeds.write("triton_config", name, json.as_bytes())?;
    }
    Ok(())
}

/// Triton BYTES tensors after the 8-byte batch size the target reads first.
fn bytes_elements(seeds: &Seeds) -> Result<()> {
    let tensor = |n: i64, elements: &[&[u8]], extra: &[u8]| {
        let mut out = n.to_le_bytes().to_vec();
        for e in elements {
            out.extend_from_slice(&(e.len() as u32).to_le_bytes());
            out.extend_from_slice(e);
        }
        out.extend_from_slice(extra);
        out
    };
    let jpeg_start = [0xFF, 0xD8, 0xFF, 0xE0, 0, 16, b'J', b'F', b'I', b'F', 0];
    let long = [b'x'; 40];
    for (name, bytes) in [
        ("empty.bin", tensor(0, &[], &[])),
        ("three.bin", tensor(3, &[b"a photo", b"", b"of a cat"], &[])),
        ("one_binary.bin", tensor(1, &[&jpeg_start], &[])),
        ("over_limit.bin", tensor(2, &[b"short", &long], &[])),
        ("trailing.bin", tensor(1, &[b"x"], b"\x01\0")),
    ] {
        seeds.write("bytes_elements", name, &bytes)?;
    }
    Ok(())
}

fn weights(seeds: &Seeds) -> Result<()> {
    for (name, layout, dtype) in [
        (
            "transformers_f32.safetensors",
            WeightLayout::Transformers,
            Dtype::F32,
        ),
        (
            "transformers_bf16.safetensors",
            WeightLayout::Transformers,
            Dtype::BF16,
        ),
        (
            "open_clip_f16.safetensors",
            WeightLayout::OpenClip,
            Dtype::F16,
        ),
    ] {
        seeds.write("safetensors", name, &tiny_safetensors(layout, dtype))?;
    }
    // torch.save checkpoints go through the same loader: strided views under
    // both pickle protocols, and files it must refuse.
    for name in [
        "views.bin",
        "views_protocol4.bin",
        "short_storage.bin",
        "foreign_global.bin",
        "big_endian.bin",
        "legacy.bin",
        "torchscript.pt",
    ] {
        let bytes = fs::read(fixture(&format!("torch-checkpoint/{name}")))?;
        seeds.write("safetensors", name, &bytes)?;
    }
    Ok(())
}

/// The tiny CLIP exported by clip-export, as repo-gen reads it back.
fn onnx(seeds: &Seeds) -> Result<()> {
    let weights = ClipWeights::random(tiny_arch(), 0)?;
    let f16 = ExportOptions {
        dtype: WeightDtype::F16,
        ..ExportOptions::default()
    };
    let f32 = ExportOptions::default();
    for (name, model) in [
        ("textual_f32.onnx", export_textual(&weights, &f32)?),
        ("visual_f32.onnx", export_visual(&weights, &f32)?),
        ("textual_f16.onnx", export_textual(&weights, &f16)?),
    ] {
        assert!(model.external_data.is_none());
        seeds.write("onnx", name, &model.model)?;
    }
    Ok(())
}

fn model_configs(seeds: &Seeds) -> Result<()> {
    let copy = |from: &Path, name: &str| -> Result<()> {
        seeds.write("model_config", name, &fs::read(from)?)
    };
    copy(&fixture("tiny-clip/gelu/config.json"), "gelu_config.json")?;
    copy(
        &fixture("tiny-clip/quick_gelu/config.json"),
        "quick_gelu_config.json",
    )?;
    copy(
        &fixture("tiny-clip/gelu/open_clip_config.json"),
        "open_clip_config.json",
    )?;
    seeds.write("model_config", "tiny_config.json", TINY_CONFIG.as_bytes())?;
    // open_clip's bare model config (model_configs/*.json), square image_size
    // as a list, quick_gelu and the options the exporter refuses when set.
    let bare = r#"{"embed_dim":24,"quick_gelu":true,"vision_cfg":{"image_size":[224,224],"layers":2,"width":48,"head_width":24,"patch_size":32,"mlp_ratio":4.0,"attentional_pool":false,"pool_type":"tok"},"text_cfg":{"context_length":77,"vocab_size":49408,"width":32,"heads":2,"layers":2,"pool_type":"argmax","hf_model_name":null}}"#;
    seeds.write("model_config", "open_clip_bare.json", bare.as_bytes())?;
    Ok(())
}
