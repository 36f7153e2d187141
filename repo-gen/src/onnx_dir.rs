//! `--onnx-dir DIR [--model NAME]`: encoders used as they are, such as
//! CLIP-as-service's `textual.onnx` and `visual.onnx`, probed in ONNX
//! Runtime before anything is written.

use std::path::Path;

use clip_contract::{defaults, file};
use clip_export::OrtRuntime;
use clip_text::TokenizerFamily;

use crate::download;
use crate::error::GenerateError;
use crate::model_dir::FileSource;
use crate::onnx_io;
use crate::options::Options;
use crate::probes::{self, Preparation, ProbeEmbeddings};
use crate::registry::{self, ModelSpec};
use crate::sources::{export_error, folder_name, KnownSizes, Padding, Prepared};

/// `--onnx-dir DIR [--model NAME]`: the files as they are. With a name,
/// the registry gives what the files do not (sizes they leave dynamic,
/// normalisation, vocabulary, the tokenizer when none is at hand) and the
/// files' fixed sizes must agree with it.
pub(crate) fn prepare(
    options: &Options,
    dir: &Path,
    tokenizer: Option<&Path>,
    spec: Option<&ModelSpec>,
    log: &mut dyn FnMut(&str),
) -> Result<Prepared, GenerateError> {
    if !dir.is_dir() {
        return Err(GenerateError::Invalid(format!(
            "--onnx-dir {} is not a folder",
            dir.display()
        )));
    }
    let mut missing: Vec<&str> = [file::TEXTUAL_ONNX, file::VISUAL_ONNX]
        .into_iter()
        .filter(|f| !dir.join(f).is_file())
        .collect();
    let beside = dir.join(defaults::TOKENIZER_FILE);
    let tokenizer = match (tokenizer, spec) {
        (Some(path), _) if path.is_file() => path.to_path_buf(),
        (Some(path), _) => {
            return Err(GenerateError::Invalid(format!(
                "--tokenizer {} is not a file",
                path.display()
            )))
        }
        (None, _) if beside.is_file() => beside,
        (None, Some(spec)) if missing.is_empty() => {
            log(&format!(
                "fetching {}'s tokenizer from {} (cache {})",
                spec.name,
                spec.hub.repo,
                options.hub.cache_dir.display()
            ));
            download::fetch_tokenizer(&spec.hub, &options.hub)?
        }
        (None, _) => {
            missing.push(defaults::TOKENIZER_FILE);
            beside
        }
    };
    if !missing.is_empty() {
        return Err(GenerateError::Invalid(format!(
            "--onnx-dir {} lacks {}: it needs {} and {} (CLIP-as-service's layout), and a \
             Hugging Face tokenizer.json in it, given with --tokenizer FILE or, with \
             --model NAME, fetched from the hub",
            dir.display(),
            missing.join(", "),
            file::TEXTUAL_ONNX,
            file::VISUAL_ONNX
        )));
    }
    let text_io = onnx_io::read_file(&dir.join(file::TEXTUAL_ONNX))?;
    let visual_io = onnx_io::read_file(&dir.join(file::VISUAL_ONNX))?;
    // CLIP-as-service's larger files keep their weights beside them.
    let textual = FileSource::OnnxFile {
        path: dir.join(file::TEXTUAL_ONNX),
        external: text_io.external_files.clone(),
    };
    let visual = FileSource::OnnxFile {
        path: dir.join(file::VISUAL_ONNX),
        external: visual_io.external_files.clone(),
    };
    let logit_scale = text_io
        .metadata("clip.logit_scale")
        .and_then(|v| v.parse().ok());
    let known_sizes = spec.map_or_else(KnownSizes::default, |s| KnownSizes::of(&s.architecture));
    let sizes = declared_sizes(dir, &text_io, &visual_io, known_sizes)?;
    if let Some(spec) = spec {
        same_embedding(
            dir,
            spec,
            &[
                (file::TEXTUAL_ONNX, &text_io),
                (file::VISUAL_ONNX, &visual_io),
            ],
        )?;
    }
    let (mean, std) = spec.map_or((defaults::IMAGE_MEAN, defaults::IMAGE_STD), |s| {
        (s.mean, s.std)
    });
    let tokenizer_family = match spec.and_then(|s| s.multilingual.as_ref()) {
        Some(_) => TokenizerFamily::Hf,
        None => TokenizerFamily::ClipBpe,
    };
    let probes = probe_files(
        options,
        dir,
        (&tokenizer, tokenizer_family),
        sizes,
        (mean, std),
        log,
    )?;
    Ok(Prepared {
        textual,
        visual,
        visual_pixels: None,
        tokenizer,
        tokenizer_family,
        padding: Padding::Zero,
        model_name: spec.map_or_else(|| folder_name(dir), |s| s.name.to_owned()),
        logit_scale,
        mean,
        std,
        // Files that name no model: every CLIP they can be shares the registry's vocabulary.
        vocab_size: spec.map_or(registry::VOCAB_SIZE, |s| match &s.multilingual {
            Some(text) => text.architecture.encoder.vocab_size,
            None => s.architecture.text.vocab_size,
        }),
        known_sizes,
        probes: Some(probes),
    })
}

/// The context length and image side the files take: their fixed sizes,
/// or the model's where they leave them dynamic. (Checked again, with
/// reasons, when the configs are written.)
fn declared_sizes(
    dir: &Path,
    text_io: &onnx_io::ModelIo,
    visual_io: &onnx_io::ModelIo,
    known: KnownSizes,
) -> Result<(i64, i64), GenerateError> {
    let fixed = |dim: Option<&i64>, known: Option<i64>| match (dim.copied(), known) {
        (Some(d @ 1..), Some(k)) if d != k => Err((d, k)),
        (Some(d @ 1..), _) => Ok(Some(d)),
        (_, known) => Ok(known),
    };
    let text_dims = text_io.inputs.first().map(|t| &t.dims);
    let image_dims = visual_io.inputs.first().map(|t| &t.dims);
    let context_length = fixed(text_dims.and_then(|d| d.first()), known.context_length);
    let image_size = fixed(image_dims.and_then(|d| d.get(1)), known.image_size);
    match (context_length, image_size) {
        (Ok(Some(context_length)), Ok(Some(image_size))) => Ok((context_length, image_size)),
        (Err((file, model)), _) => Err(GenerateError::Invalid(format!(
            "--onnx-dir {}: {} takes {file} tokens, the model named has a context of {model}; \
             are these its files?",
            dir.display(),
            file::TEXTUAL_ONNX
        ))),
        (_, Err((file, model))) => Err(GenerateError::Invalid(format!(
            "--onnx-dir {}: {} takes {file}-pixel images, the model named takes {model}; \
             are these its files?",
            dir.display(),
            file::VISUAL_ONNX
        ))),
        _ => Err(GenerateError::Invalid(format!(
            "--onnx-dir {}: the files declare no fixed context length or image size \
             (text input {text_dims:?}, image input {image_dims:?}); name the model with \
             --model NAME",
            dir.display(),
        ))),
    }
}

/// Files named as a registry model embed into its dimensions: a wrong name
/// (ViT-B-16's files called ViT-L-14) would otherwise pass the size checks.
fn same_embedding(
    dir: &Path,
    spec: &ModelSpec,
    files: &[(&str, &onnx_io::ModelIo)],
) -> Result<(), GenerateError> {
    let want = spec.architecture.embed_dim as i64;
    for (name, io) in files {
        let dims = io.outputs.first().map(|t| t.dims.as_slice());
        if let Some(&[found]) = dims {
            if found > 0 && found != want {
                return Err(GenerateError::Invalid(format!(
                    "--onnx-dir {}: {name} embeds into {found} dimensions, {} into {want}; \
                     are these its files?",
                    dir.display(),
                    spec.name
                )));
            }
        }
    }
    Ok(())
}

/// Loads both files in ONNX Runtime and runs the conformance probes through
/// them, as the generated preprocessing will prepare them, before anything
/// is written: a file ONNX Runtime cannot load or run fails here.
fn probe_files(
    options: &Options,
    dir: &Path,
    (tokenizer, family): (&Path, TokenizerFamily),
    (context_length, image_size): (i64, i64),
    (mean, std): ([f32; 3], [f32; 3]),
    log: &mut dyn FnMut(&str),
) -> Result<ProbeEmbeddings, GenerateError> {
    let runtime = OrtRuntime::load(options.ort_library.as_deref(), "--ort-library")
        .map_err(export_error(
        "probing the --onnx-dir files needs ONNX Runtime (--ort-library PATH or ORT_DYLIB_PATH)",
    ))?;
    log(&format!(
        "probing {} and {} with ONNX Runtime ({})",
        file::TEXTUAL_ONNX,
        file::VISUAL_ONNX,
        runtime.library().display()
    ));
    let preparation = Preparation {
        tokenizer,
        family,
        text: clip_text::TextOptions {
            context_length: context_length as usize,
            // CLIP-as-service pads CLIP's BPE with 0; a Hugging Face
            // tokenizer.json names its own pad token.
            pad_id: (family == TokenizerFamily::ClipBpe).then_some(0),
        },
        image: clip_image::ImageOptions {
            size: image_size as u32,
            mean,
            std,
            reduced_scale_decode: true,
            center_crop: options.center_crop,
            ..clip_image::ImageOptions::default()
        },
    };
    let session = |name: &str| {
        runtime
            .session_from_file(&dir.join(name))
            .map_err(export_error(format!("loading {name}")))
    };
    probes::embed(
        &mut session(file::TEXTUAL_ONNX)?,
        &mut session(file::VISUAL_ONNX)?,
        &preparation,
    )
}
