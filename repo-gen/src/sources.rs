//! Where the encoders come from: a registry model fetched from the Hugging
//! Face hub, a `--weights` folder, seeded random weights (all exported with
//! clip-export and run once in ONNX Runtime), or `--onnx-dir` files used as
//! they are.

use std::fs;
use std::path::{Path, PathBuf};

use clip_contract::defaults;
use clip_export::{
    ClipArchitecture, ClipWeights, ExportError, ExportOptions, MclipTextArchitecture,
    MclipTextWeights, OnnxModel, OrtRuntime,
};
use clip_text::TokenizerFamily;

use crate::download::{self, ModelFiles};
use crate::error::{io, GenerateError};
use crate::model_dir::FileSource;
use crate::onnx_dir;
use crate::options::{Options, Source};
use crate::probes::{self, Preparation, ProbeEmbeddings};
use crate::registry::{self, ModelSpec, WeightsLayout};

/// What `--random-init` prints (and notes) so nobody mistakes its embeddings for real ones.
pub const RANDOM_INIT_WARNING: &str =
    "--random-init: the encoders have RANDOM weights; their embeddings are meaningless \
     (for benchmarks only: the architecture and compute are the real model's)";

/// The two encoders, with what the repository needs besides them.
pub(crate) struct Prepared {
    pub(crate) textual: FileSource,
    pub(crate) visual: FileSource,
    /// The pixel path's image encoder (`--pixel-path`).
    pub(crate) visual_pixels: Option<FileSource>,
    pub(crate) tokenizer: PathBuf,
    pub(crate) tokenizer_family: TokenizerFamily,
    /// How the weights' own tokenizer pads, for tokenizer files that do not say.
    pub(crate) padding: Padding,
    pub(crate) model_name: String,
    pub(crate) logit_scale: Option<f32>,
    pub(crate) mean: [f32; 3],
    pub(crate) std: [f32; 3],
    /// Rows of the text encoder's token embedding.
    pub(crate) vocab_size: usize,
    /// The model's own sizes, where known, for encoder files that leave them dynamic.
    pub(crate) known_sizes: KnownSizes,
    /// The conformance probes through the exported encoders; none for
    /// `--onnx-dir` files, which repo-gen does not run.
    pub(crate) probes: Option<ProbeEmbeddings>,
}

/// A model's context length and image side, as the encoders' dims write them.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct KnownSizes {
    pub(crate) context_length: Option<i64>,
    pub(crate) image_size: Option<i64>,
}

impl KnownSizes {
    pub(crate) fn of(arch: &ClipArchitecture) -> Self {
        KnownSizes {
            context_length: Some(arch.text.context_length as i64),
            image_size: Some(arch.vision.image_size as i64),
        }
    }
}

/// Padding conventions of the CLIP families. Embeddings do not depend on it
/// (the text tower is causal and pools at the end token), but the backend
/// needs a definite pad id.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Padding {
    /// Hugging Face's CLIP tokenizer pads with the end token.
    EndToken,
    /// open_clip's tokenizer, and CLIP-as-service's with it, pads with 0.
    Zero,
}

impl Prepared {
    /// The pad id to write into the text preprocessing config: none when the
    /// tokenizer files name a pad token (the backend reads them), else the
    /// weights' convention. Loading the tokenizer here also proves, before
    /// anything is written, that the backend will load it.
    pub(crate) fn pad_token_id(&self, context_length: usize) -> Result<Option<u32>, GenerateError> {
        let options = clip_text::TextOptions {
            context_length,
            pad_id: None,
        };
        let loaded =
            clip_text::TextTokenizer::from_file(&self.tokenizer, self.tokenizer_family, options);
        match loaded {
            Ok(_) => Ok(None),
            Err(clip_text::TextError::NoPadId { end_id, .. }) => Ok(Some(match self.padding {
                Padding::EndToken => end_id,
                Padding::Zero => 0,
            })),
            Err(e) => Err(GenerateError::Invalid(format!(
                "the tokenizer {} cannot serve: {e}",
                self.tokenizer.display()
            ))),
        }
    }
}

/// Resolves `options.source` into the two encoders. `log` receives progress lines.
pub(crate) fn prepare(
    options: &Options,
    log: &mut dyn FnMut(&str),
) -> Result<Prepared, GenerateError> {
    match &options.source {
        Source::Model(name) => {
            let spec = registry::lookup(name)?;
            log(&format!(
                "fetching {} from {} (cache {})",
                spec.name,
                spec.hub.repo,
                options.hub.cache_dir.display()
            ));
            let files = download::fetch(spec, &options.hub)?;
            export(options, &files, Some(spec), spec.name.to_owned(), log)
        }
        Source::Weights(dir) => {
            let files = if is_multilingual(dir) {
                download::check_multilingual_dir(dir)?
            } else {
                download::check_weights_dir(dir, detect_layout(dir))?
            };
            export(options, &files, None, folder_name(dir), log)
        }
        Source::OnnxDir {
            dir,
            tokenizer,
            model,
        } => {
            let spec = model.as_deref().map(registry::lookup).transpose()?;
            onnx_dir::prepare(options, dir, tokenizer.as_deref(), spec, log)
        }
        Source::RandomInit {
            model,
            seed,
            tokenizer,
        } => random_init(options, model, *seed, tokenizer, log),
    }
}

/// The name a folder goes by in `model_name`: its own, not the path given.
pub(crate) fn folder_name(dir: &Path) -> String {
    dir.canonicalize()
        .ok()
        .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| dir.display().to_string())
}

/// Whether a `--weights` folder's config.json is an M-CLIP text tower's.
fn is_multilingual(dir: &Path) -> bool {
    let Ok(text) = fs::read_to_string(dir.join("config.json")) else {
        return false;
    };
    serde_json::from_str::<serde_json::Value>(&text)
        .is_ok_and(|config| config["model_type"] == "M-CLIP")
}

/// A `--weights` folder's layout: transformers when it has config.json,
/// open_clip when it has only open_clip_config.json.
fn detect_layout(dir: &Path) -> WeightsLayout {
    let transformers = dir
        .join(WeightsLayout::Transformers.config_file())
        .is_file();
    let open_clip = dir.join(WeightsLayout::OpenClip.config_file()).is_file();
    if open_clip && !transformers {
        WeightsLayout::OpenClip
    } else {
        WeightsLayout::Transformers
    }
}

pub(crate) fn export_error(
    context: impl Into<String>,
) -> impl FnOnce(ExportError) -> GenerateError {
    let context = context.into();
    move |source| GenerateError::Export { context, source }
}

fn export(
    options: &Options,
    files: &ModelFiles,
    spec: Option<&ModelSpec>,
    model_name: String,
    log: &mut dyn FnMut(&str),
) -> Result<Prepared, GenerateError> {
    let config = fs::read_to_string(&files.config).map_err(io(&files.config))?;
    let mut arch = ClipArchitecture::from_config_json(&config)
        .map_err(export_error(format!("reading {}", files.config.display())))?;
    if let Some(spec) = spec {
        check_against_registry(spec, &mut arch, log)?;
    }
    log(&format!(
        "loading {} ({} layout)",
        files.weights.display(),
        files.layout
    ));
    let weights = ClipWeights::load(&files.weights, &arch)
        .map_err(export_error(format!("reading {}", files.weights.display())))?;
    let text = match &files.multilingual {
        None => TextWeights::Clip,
        Some(text) => {
            let config = fs::read_to_string(&text.config).map_err(io(&text.config))?;
            let arch = MclipTextArchitecture::from_config_json(&config)
                .map_err(export_error(format!("reading {}", text.config.display())))?;
            if let Some(expected) = spec.and_then(|s| s.multilingual.as_ref()) {
                if arch != expected.architecture {
                    return Err(GenerateError::RegistryMismatch {
                        model: spec.map_or("", |s| s.name).to_owned(),
                        differences: vec![format!(
                            "the text tower is {arch:?}, the registry says {:?}",
                            expected.architecture
                        )],
                    });
                }
            }
            log(&format!(
                "loading {} (M-CLIP text tower)",
                text.weights.display()
            ));
            let weights = MclipTextWeights::load(&text.weights, &arch)
                .map_err(export_error(format!("reading {}", text.weights.display())))?;
            TextWeights::Multilingual(Box::new(weights))
        }
    };
    let (mean, std) = match spec {
        Some(spec) => (spec.mean, spec.std),
        None => normalisation(files),
    };
    let padding = match files.layout {
        WeightsLayout::Transformers => Padding::EndToken,
        WeightsLayout::OpenClip => Padding::Zero,
    };
    export_weights(
        options,
        (&weights, &text),
        files.tokenizer.clone(),
        padding,
        model_name,
        (mean, std),
        log,
    )
}

/// The text tower to export: the CLIP's own, or M-CLIP's multilingual one.
enum TextWeights {
    Clip,
    Multilingual(Box<MclipTextWeights>),
}

/// `--random-init`: the registry model's architecture, seeded random weights.
fn random_init(
    options: &Options,
    name: &str,
    seed: u64,
    tokenizer: &Path,
    log: &mut dyn FnMut(&str),
) -> Result<Prepared, GenerateError> {
    let spec = registry::lookup(name)?;
    if !tokenizer.is_file() {
        return Err(GenerateError::Invalid(format!(
            "--tokenizer {} is not a file; --random-init needs the model's tokenizer.json \
             (this repository has CLIP's at tests/fixtures/text/tokenizer.json, and \
             XLM-R- and LaBSE-style ones under tests/fixtures/text/hf for M-CLIP)",
            tokenizer.display()
        )));
    }
    log(RANDOM_INIT_WARNING);
    log(&format!(
        "random weights of {} ({}), seed {seed}",
        spec.name, spec.arch
    ));
    let weights = ClipWeights::random(&spec.architecture, seed)
        .map_err(export_error(format!("random weights for {}", spec.name)))?;
    let text = match &spec.multilingual {
        None => TextWeights::Clip,
        Some(text) => TextWeights::Multilingual(Box::new(
            MclipTextWeights::random(&text.architecture, seed).map_err(export_error(format!(
                "random text weights for {}",
                spec.name
            )))?,
        )),
    };
    export_weights(
        options,
        (&weights, &text),
        tokenizer.to_path_buf(),
        Padding::EndToken,
        format!("{} (random-init, seed {seed})", spec.name),
        (spec.mean, spec.std),
        log,
    )
}

/// Exports both towers of `weights` and runs each once in ONNX Runtime.
fn export_weights(
    options: &Options,
    (weights, text): (&ClipWeights, &TextWeights),
    tokenizer: PathBuf,
    padding: Padding,
    model_name: String,
    (mean, std): ([f32; 3], [f32; 3]),
    log: &mut dyn FnMut(&str),
) -> Result<Prepared, GenerateError> {
    let arch = &weights.arch;
    let export_options = ExportOptions {
        dtype: options.dtype,
        ..ExportOptions::default()
    };
    log(&format!(
        "exporting both towers to ONNX ({})",
        options.dtype.name()
    ));
    let textual = match text {
        TextWeights::Clip => clip_export::export_textual(weights, &export_options),
        TextWeights::Multilingual(text) => clip_export::export_mclip_textual(text, &export_options),
    }
    .map_err(export_error("exporting the text encoder"))?;
    let visual = clip_export::export_visual(weights, &export_options)
        .map_err(export_error("exporting the image encoder"))?;
    let visual_pixels = if options.pixel_path {
        log("exporting the pixel path's image encoder (uint8 pixels, normalised in the graph)");
        let model = clip_export::export_visual_pixels(weights, &export_options, mean, std)
            .map_err(export_error("exporting the pixel path's image encoder"))?;
        Some(model)
    } else {
        None
    };

    let runtime = OrtRuntime::load(options.ort_library.as_deref(), "--ort-library")
        .map_err(export_error(
        "verifying the exported models needs ONNX Runtime (--ort-library PATH or ORT_DYLIB_PATH)",
    ))?;
    log(&format!(
        "verifying both encoders with ONNX Runtime ({})",
        runtime.library().display()
    ));
    verify_text(&runtime, &textual, (weights, text))?;
    clip_export::verify_visual(&runtime, &visual, arch)
        .map_err(export_error("checking the image encoder"))?;
    if let Some(pixels) = &visual_pixels {
        clip_export::verify_visual_pixels(&runtime, pixels, arch)
            .map_err(export_error("checking the pixel path's image encoder"))?;
    }

    let (tokenizer_family, vocab_size) = match text {
        TextWeights::Clip => (TokenizerFamily::ClipBpe, arch.text.vocab_size),
        TextWeights::Multilingual(text) => (TokenizerFamily::Hf, text.arch.encoder.vocab_size),
    };
    let mut prepared = Prepared {
        textual: FileSource::Onnx(textual),
        visual: FileSource::Onnx(visual),
        visual_pixels: visual_pixels.map(FileSource::Onnx),
        tokenizer,
        tokenizer_family,
        padding,
        model_name,
        logit_scale: weights.logit_scale,
        mean,
        std,
        vocab_size,
        known_sizes: KnownSizes::of(arch),
        probes: None,
    };
    log("embedding the conformance probes");
    let context_length = arch.text.context_length;
    let preparation = Preparation {
        tokenizer: &prepared.tokenizer,
        family: prepared.tokenizer_family,
        text: clip_text::TextOptions {
            context_length,
            pad_id: prepared.pad_token_id(context_length)?,
        },
        // As the generated image_preprocess config has it (backend defaults).
        image: clip_image::ImageOptions {
            size: arch.vision.image_size as u32,
            mean,
            std,
            reduced_scale_decode: true,
            center_crop: options.center_crop,
            ..clip_image::ImageOptions::default()
        },
    };
    if let (FileSource::Onnx(textual), FileSource::Onnx(visual)) =
        (&prepared.textual, &prepared.visual)
    {
        let session = |model| {
            runtime
                .session(model)
                .map_err(export_error("loading an encoder for the probes"))
        };
        let embedded = probes::embed(&mut session(textual)?, &mut session(visual)?, &preparation)?;
        prepared.probes = Some(embedded);
    }
    Ok(prepared)
}

/// Runs the text encoder once in ONNX Runtime, as its tower takes input.
fn verify_text(
    runtime: &OrtRuntime,
    textual: &OnnxModel,
    (weights, text): (&ClipWeights, &TextWeights),
) -> Result<(), GenerateError> {
    match text {
        TextWeights::Clip => clip_export::verify_textual(runtime, textual, &weights.arch).map(drop),
        TextWeights::Multilingual(text) => {
            clip_export::verify_mclip_textual(runtime, textual, &text.arch).map(drop)
        }
    }
    .map_err(export_error("checking the text encoder"))
}

/// The registry is the authority on a named model: the downloaded config
/// must describe its architecture. The activation is the registry's to say
/// (open_clip configs of QuickGELU weights do not always say so), the text
/// pooling the config's (it follows the config's own end-of-text id).
fn check_against_registry(
    spec: &ModelSpec,
    arch: &mut ClipArchitecture,
    log: &mut dyn FnMut(&str),
) -> Result<(), GenerateError> {
    let mut expected = spec.architecture;
    expected.text.pooling = arch.text.pooling;
    if arch.activation != expected.activation {
        log(&format!(
            "the config says {}, the registry {}: using {}",
            arch.activation, expected.activation, expected.activation
        ));
        arch.activation = expected.activation;
    }
    if *arch == expected {
        return Ok(());
    }
    let parts = |a: &ClipArchitecture| {
        [
            ("text tower", format!("{:?}", a.text)),
            ("vision tower", format!("{:?}", a.vision)),
            ("embed_dim", a.embed_dim.to_string()),
            ("layer_norm_eps", a.layer_norm_eps.to_string()),
        ]
    };
    let differences = parts(arch)
        .into_iter()
        .zip(parts(&expected))
        .filter(|((_, files), (_, registry))| files != registry)
        .map(|((what, files), (_, registry))| {
            format!("the {what} is {files}, the registry says {registry}")
        })
        .collect();
    Err(GenerateError::RegistryMismatch {
        model: spec.name.to_owned(),
        differences,
    })
}

/// Image mean and std from the folder's files (open_clip's `preprocess_cfg`,
/// transformers' `preprocessor_config.json`), else OpenAI's.
fn normalisation(files: &ModelFiles) -> ([f32; 3], [f32; 3]) {
    let read = |path: &Path, mean_key: &[&str], std_key: &[&str]| -> Option<([f32; 3], [f32; 3])> {
        let value: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(path).ok()?).ok()?;
        let triple = |keys: &[&str]| -> Option<[f32; 3]> {
            let mut node = &value;
            for key in keys {
                node = node.get(key)?;
            }
            let list = node.as_array()?;
            if list.len() != 3 {
                return None;
            }
            let mut out = [0f32; 3];
            for (slot, v) in out.iter_mut().zip(list) {
                *slot = v.as_f64()? as f32;
            }
            Some(out)
        };
        Some((triple(mean_key)?, triple(std_key)?))
    };
    let found = match files.layout {
        WeightsLayout::OpenClip => read(
            &files.config,
            &["preprocess_cfg", "mean"],
            &["preprocess_cfg", "std"],
        ),
        WeightsLayout::Transformers => files.config.parent().and_then(|dir| {
            read(
                &dir.join("preprocessor_config.json"),
                &["image_mean"],
                &["image_std"],
            )
        }),
    };
    found.unwrap_or((defaults::IMAGE_MEAN, defaults::IMAGE_STD))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_that_is_not_the_registry_model_is_refused_with_what_differs() {
        let spec = registry::lookup("ViT-B-32::openai").unwrap();
        let mut arch = spec.architecture;
        arch.text.layers = 6;
        arch.embed_dim = 256;
        let error = check_against_registry(spec, &mut arch, &mut |_| {})
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("the text tower is TextTower { width: 512, layers: 6"),
            "{error}"
        );
        assert!(
            error.contains("the embed_dim is 256, the registry says 512"),
            "{error}"
        );
        assert!(!error.contains("vision tower"), "{error}");
        assert!(error.contains("--weights DIR"), "{error}");
    }

    #[test]
    fn the_registry_decides_the_activation_and_the_config_the_pooling() {
        let spec = registry::lookup("ViT-B-32::openai").unwrap();
        let mut arch = spec.architecture;
        arch.activation = clip_export::Activation::Gelu;
        arch.text.pooling = clip_export::TextPooling::ArgMax;
        let mut said = Vec::new();
        check_against_registry(spec, &mut arch, &mut |line| said.push(line.to_owned())).unwrap();
        assert_eq!(arch.activation, clip_export::Activation::QuickGelu);
        assert_eq!(arch.text.pooling, clip_export::TextPooling::ArgMax);
        assert_eq!(
            said,
            ["the config says gelu, the registry quick_gelu: using quick_gelu"]
        );
    }
}
