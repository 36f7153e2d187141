//! The whole job of `repo-gen`: from a model name, a folder of weights or a
//! folder of ONNX files to a Triton model repository.
//!
//! 1. Names and the output folder are checked before anything slow.
//! 2. The weights are resolved ([`registry`] + [`download`], or a `--weights`
//!    folder) and the architecture read from `config.json` or
//!    `open_clip_config.json`.
//! 3. Both towers are exported with clip-export and run once in ONNX Runtime
//!    (a probe batch) before anything is written.
//! 4. The repository is written into a temporary folder beside the output
//!    folder and renamed into place at the end, so a failure leaves no
//!    half-written repository behind.

use std::fs;
use std::path::{Path, PathBuf};

use clip_contract::{defaults, file, model, tensor};
use clip_export::{
    ClipArchitecture, ClipWeights, ExportError, ExportOptions, OnnxModel, OrtRuntime, WeightDtype,
};

use crate::download::{self, DownloadError, HubOptions, ModelFiles, WeightsDirError};
use crate::encoder::{
    DataType, EncoderModel, EnsembleModel, EnsembleStep, Facts, Runtime, TensorSpec, Tower,
};
use crate::onnx_io::{self, ModelIo, OnnxIoError};
use crate::placement::{self, GpuChoice, GpuInfo, InstanceGroup, InstanceKind};
use crate::registry::{self, LookupError, ModelSpec, WeightsLayout};
use crate::tensorrt::{self, TrtexecCommand};
use crate::{
    check_name, write_model, Batching, ImagePreprocessModel, RenderError, TextPreprocessModel,
    TOKENIZER_CONFIG_FILE,
};

/// Where the model comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// `--model ARCH::PRETRAINED`: the registry and the Hugging Face hub.
    Model(String),
    /// `--weights DIR`: config, safetensors and tokenizer.json in a folder.
    Weights(PathBuf),
    /// `--onnx-dir DIR`: textual.onnx and visual.onnx, used as they are.
    OnnxDir {
        dir: PathBuf,
        tokenizer: Option<PathBuf>,
    },
    /// `--random-init --model ARCH::PRETRAINED`: the registry's architecture
    /// with seeded random weights, nothing downloaded. For benchmarks: the
    /// compute is the real model's, the embeddings mean nothing.
    RandomInit {
        model: String,
        seed: u64,
        /// The CLIP tokenizer.json for the text preprocessing model.
        tokenizer: PathBuf,
    },
}

/// What `--random-init` prints (and notes) so nobody mistakes its embeddings for real ones.
pub const RANDOM_INIT_WARNING: &str =
    "--random-init: the encoders have RANDOM weights; their embeddings are meaningless \
     (for benchmarks only: the architecture and compute are the real model's)";

/// Everything `repo-gen` was asked for.
#[derive(Clone, Debug)]
pub struct Options {
    pub source: Source,
    pub out: PathBuf,
    pub runtime: Runtime,
    pub dtype: WeightDtype,
    pub name_prefix: String,
    /// For every model; ensembles take only `max_batch_size`.
    pub batching: Batching,
    pub instances: Option<u32>,
    pub gpus: GpuChoice,
    pub trt_accelerator: bool,
    /// ONNX Runtime for the verification run, and `ort_library` of `ort` encoders.
    pub ort_library: Option<PathBuf>,
    /// Write into a non-empty `out`, replacing models of the same names.
    pub force: bool,
    pub hub: HubOptions,
}

/// What went wrong, with what to change.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error("{0}")]
    Invalid(String),
    #[error(
        "--name-prefix {prefix:?} would make the model name {name:?}, which is not a plain \
         folder name ({reason}); use letters, digits, '-' and '_'"
    )]
    BadPrefix {
        prefix: String,
        name: String,
        reason: String,
    },
    #[error(
        "--out {} is not empty; pass --force to write into it (models of the same names are \
         replaced, others kept), or choose an empty or new folder",
        .0.display()
    )]
    NotEmpty(PathBuf),
    #[error(transparent)]
    Lookup(#[from] LookupError),
    #[error(transparent)]
    Download(#[from] DownloadError),
    #[error(transparent)]
    WeightsDir(#[from] WeightsDirError),
    #[error("{context}: {source}")]
    Export {
        context: String,
        #[source]
        source: ExportError,
    },
    #[error(
        "the files of {model} disagree with repo-gen's registry: {}; the hub repository may \
         have changed; pass --weights DIR to use these files anyway",
        differences.join("; ")
    )]
    RegistryMismatch {
        model: String,
        differences: Vec<String>,
    },
    #[error(transparent)]
    OnnxIo(#[from] OnnxIoError),
    #[error(transparent)]
    Render(#[from] RenderError),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> GenerateError + '_ {
    move |source| GenerateError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The six model names of a repository, prefix applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelNames {
    pub text_preprocess: String,
    pub image_preprocess: String,
    pub text_encoder: String,
    pub image_encoder: String,
    pub text_ensemble: String,
    pub image_ensemble: String,
}

impl ModelNames {
    /// Refuses a prefix that makes any name something other than a plain folder name.
    pub fn new(prefix: &str) -> Result<Self, GenerateError> {
        let name = |base: &str| -> Result<String, GenerateError> {
            let name = format!("{prefix}{base}");
            match check_name(&name) {
                Ok(()) => Ok(name),
                Err(RenderError::InvalidName { reason, .. }) => Err(GenerateError::BadPrefix {
                    prefix: prefix.to_owned(),
                    name,
                    reason: reason.to_owned(),
                }),
                Err(other) => Err(other.into()),
            }
        };
        if prefix.contains(['/', '\\']) || prefix.starts_with('.') {
            return Err(GenerateError::BadPrefix {
                prefix: prefix.to_owned(),
                name: format!("{prefix}{}", model::TEXT_ENSEMBLE),
                reason: "a prefix may not hold a path separator or start with '.'".to_owned(),
            });
        }
        Ok(ModelNames {
            text_preprocess: name(model::TEXT_PREPROCESS)?,
            image_preprocess: name(model::IMAGE_PREPROCESS)?,
            text_encoder: name(model::TEXT_ENCODER)?,
            image_encoder: name(model::IMAGE_ENCODER)?,
            text_ensemble: name(model::TEXT_ENSEMBLE)?,
            image_ensemble: name(model::IMAGE_ENSEMBLE)?,
        })
    }

    pub fn all(&self) -> [&str; 6] {
        [
            &self.text_preprocess,
            &self.image_preprocess,
            &self.text_encoder,
            &self.image_encoder,
            &self.text_ensemble,
            &self.image_ensemble,
        ]
    }
}

/// What was written.
#[derive(Clone, Debug)]
pub struct Generated {
    pub out: PathBuf,
    pub models: Vec<String>,
    /// Things the user should know (fallbacks, what is left to do), for stderr.
    pub notes: Vec<String>,
}

/// The two encoders in memory, with what the repository needs besides them.
struct Prepared {
    textual: EncoderFile,
    visual: EncoderFile,
    tokenizer: PathBuf,
    /// How the weights' own tokenizer pads, for tokenizer files that do not say.
    padding: Padding,
    model_name: String,
    logit_scale: Option<f32>,
    mean: [f32; 3],
    std: [f32; 3],
}

/// Padding conventions of the CLIP families. Embeddings do not depend on it
/// (the text tower is causal and pools at the end token), but the backend
/// needs a definite pad id.
#[derive(Clone, Copy, Debug)]
enum Padding {
    /// Hugging Face's CLIP tokenizer pads with the end token.
    EndToken,
    /// open_clip's tokenizer, and CLIP-as-service's with it, pads with 0.
    Zero,
}

/// The pad id to write into the text preprocessing config: none when the
/// tokenizer files name a pad token (the backend reads them), else the
/// weights' convention. Loading the tokenizer here also proves, before
/// anything is written, that the backend will load it.
fn pad_token_id(
    tokenizer: &Path,
    context_length: usize,
    padding: Padding,
) -> Result<Option<u32>, GenerateError> {
    let options = clip_text::TextOptions {
        context_length,
        pad_id: None,
    };
    match clip_text::Tokenizer::from_file(tokenizer, options) {
        Ok(_) => Ok(None),
        Err(clip_text::TextError::NoPadId { end_id, .. }) => Ok(Some(match padding {
            Padding::EndToken => end_id,
            Padding::Zero => 0,
        })),
        Err(e) => Err(GenerateError::Invalid(format!(
            "the tokenizer {} cannot serve: {e}",
            tokenizer.display()
        ))),
    }
}

/// An encoder to copy into the repository: exported in memory, or an ONNX file on disk.
enum EncoderFile {
    Exported(OnnxModel),
    OnDisk(PathBuf),
}

impl EncoderFile {
    fn io(&self, what: &str) -> Result<ModelIo, OnnxIoError> {
        match self {
            EncoderFile::Exported(model) => onnx_io::read_model(model, Path::new(what)),
            EncoderFile::OnDisk(path) => onnx_io::read_file(path),
        }
    }

    fn bytes(&self) -> u64 {
        match self {
            EncoderFile::Exported(model) => {
                (model.model.len() + model.external_data.as_ref().map_or(0, |d| d.bytes.len()))
                    as u64
            }
            EncoderFile::OnDisk(path) => fs::metadata(path).map(|m| m.len()).unwrap_or(0),
        }
    }

    fn write(&self, dir: &Path) -> Result<(), GenerateError> {
        match self {
            EncoderFile::Exported(model) => {
                model
                    .write(dir, file::ONNX_MODEL)
                    .map_err(|source| GenerateError::Export {
                        context: format!("writing {}", dir.display()),
                        source,
                    })?;
            }
            EncoderFile::OnDisk(path) => {
                let target = dir.join(file::ONNX_MODEL);
                fs::copy(path, &target).map_err(io(path))?;
            }
        }
        Ok(())
    }
}

/// Runs the whole job. `log` receives progress lines (for stderr).
pub fn generate(options: &Options, log: &mut dyn FnMut(&str)) -> Result<Generated, GenerateError> {
    let names = ModelNames::new(&options.name_prefix)?;
    check_settings(options)?;
    check_out(&options.out, options.force)?;

    let prepared = match &options.source {
        Source::Model(name) => {
            let spec = registry::lookup(name)?;
            log(&format!(
                "fetching {} from {} (cache {})",
                spec.name,
                spec.hub.repo,
                options.hub.cache_dir.display()
            ));
            let files = download::fetch(spec, &options.hub)?;
            export(options, &files, Some(spec), spec.name.to_owned(), log)?
        }
        Source::Weights(dir) => {
            let layout = detect_layout(dir);
            let files = download::check_weights_dir(dir, layout)?;
            let name = dir
                .canonicalize()
                .ok()
                .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
                .unwrap_or_else(|| dir.display().to_string());
            export(options, &files, None, name, log)?
        }
        Source::OnnxDir { dir, tokenizer } => onnx_dir(dir, tokenizer.as_deref())?,
        Source::RandomInit {
            model,
            seed,
            tokenizer,
        } => random_init(options, model, *seed, tokenizer, log)?,
    };

    let text_io = prepared.textual.io(file::TEXTUAL_ONNX)?;
    let image_io = prepared.visual.io(file::VISUAL_ONNX)?;
    let text = TowerIo::text(&text_io, file::TEXTUAL_ONNX)?;
    let image = TowerIo::image(&image_io, file::VISUAL_ONNX)?;
    if text.embedding_dim != image.embedding_dim {
        return Err(GenerateError::Invalid(format!(
            "the text encoder embeds into {} dimensions and the image encoder into {}; \
             they are not one CLIP model",
            text.embedding_dim, image.embedding_dim
        )));
    }
    let facts = Facts {
        model_name: prepared.model_name.clone(),
        embedding_dim: text.embedding_dim as usize,
        image_size: image.size as usize,
        context_length: text.size as usize,
        logit_scale: prepared.logit_scale,
    };

    let mut notes = Vec::new();
    if let Source::RandomInit { .. } = options.source {
        notes.push(RANDOM_INIT_WARNING.to_owned());
    }
    if facts.logit_scale.is_none() {
        notes.push(format!(
            "the model files do not give logit_scale; the configs carry no {} parameter",
            clip_contract::param::LOGIT_SCALE
        ));
    }
    let weights_bytes = prepared.textual.bytes() + prepared.visual.bytes();
    let groups = instance_groups(options, weights_bytes, &mut notes)?;

    let repo = Repository {
        options,
        names: &names,
        facts: &facts,
        groups: &groups,
        mean: prepared.mean,
        std: prepared.std,
        pad_token_id: pad_token_id(&prepared.tokenizer, text.size as usize, prepared.padding)?,
    };
    let configs = repo.configs(&text, &image)?;
    let commands = if options.runtime == Runtime::TensorRt {
        let commands = repo.trtexec_commands(&text, &image)?;
        notes.push(format!(
            "TensorRT plans are built on the serving GPU: run scripts/build-tensorrt-plans.sh {} \
             (NGC container) or sh {}/{}{} where trtexec is installed",
            options.out.display(),
            options.out.display(),
            options.name_prefix,
            file::TRTEXEC_SCRIPT
        ));
        Some(commands)
    } else {
        None
    };

    log(&format!("writing {}", options.out.display()));
    let staging = staging_dir(&options.out)?;
    let root = staging.path();
    for (name, config) in &configs {
        let files: Vec<(&str, PathBuf)> = if name == &names.text_preprocess {
            let mut files = vec![(defaults::TOKENIZER_FILE, prepared.tokenizer.clone())];
            if let Some(config) = prepared
                .tokenizer
                .parent()
                .map(|d| d.join(TOKENIZER_CONFIG_FILE))
                .filter(|p| p.is_file())
            {
                files.push((TOKENIZER_CONFIG_FILE, config));
            }
            files
        } else {
            Vec::new()
        };
        let model_dir = write_model(root, name, config, &files)?;
        let version = model_dir.join(crate::VERSION);
        if name == &names.text_encoder {
            prepared.textual.write(&version)?;
        } else if name == &names.image_encoder {
            prepared.visual.write(&version)?;
        }
    }
    if let Some(commands) = &commands {
        let path = root.join(format!("{}{}", options.name_prefix, file::TRTEXEC_SCRIPT));
        fs::write(&path, tensorrt::script(commands)).map_err(io(&path))?;
        make_executable(&path)?;
    }
    commit(staging, &options.out)?;
    Ok(Generated {
        out: options.out.clone(),
        models: names.all().iter().map(|s| (*s).to_owned()).collect(),
        notes,
    })
}

fn check_settings(options: &Options) -> Result<(), GenerateError> {
    if options.trt_accelerator && options.runtime != Runtime::OnnxRuntime {
        return Err(GenerateError::Invalid(format!(
            "--trt-accelerator is an option of --runtime onnxruntime (ONNX Runtime's TensorRT \
             execution provider), not of --runtime {}",
            options.runtime
        )));
    }
    let max = options.batching.max_batch_size;
    if max == 0 {
        return Err(GenerateError::Invalid(
            "--max-batch-size must be at least 1: every model of the repository is batched"
                .to_owned(),
        ));
    }
    if let Some(dynamic) = &options.batching.dynamic {
        if let Some(bad) = dynamic
            .preferred_batch_sizes
            .iter()
            .find(|&&s| s == 0 || s > max)
        {
            return Err(GenerateError::Invalid(format!(
                "--preferred-batch-size {bad} is outside 1..={max} (--max-batch-size)"
            )));
        }
    }
    if options.instances == Some(0) {
        return Err(GenerateError::Invalid(
            "--instances must be at least 1".to_owned(),
        ));
    }
    if let Source::OnnxDir { .. } = options.source {
        if options.dtype != WeightDtype::F32 {
            return Err(GenerateError::Invalid(
                "--dtype applies to exported models; --onnx-dir files are used as they are"
                    .to_owned(),
            ));
        }
    }
    Ok(())
}

/// Refuses a file, and a non-empty folder without `force`.
fn check_out(out: &Path, force: bool) -> Result<(), GenerateError> {
    match fs::metadata(out) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io(out)(e)),
        Ok(meta) if !meta.is_dir() => Err(GenerateError::Invalid(format!(
            "--out {} exists and is not a folder",
            out.display()
        ))),
        Ok(_) => {
            let mut entries = fs::read_dir(out).map_err(io(out))?;
            if entries.next().is_some() && !force {
                Err(GenerateError::NotEmpty(out.to_path_buf()))
            } else {
                Ok(())
            }
        }
    }
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

fn export(
    options: &Options,
    files: &ModelFiles,
    spec: Option<&ModelSpec>,
    model_name: String,
    log: &mut dyn FnMut(&str),
) -> Result<Prepared, GenerateError> {
    let config = fs::read_to_string(&files.config).map_err(io(&files.config))?;
    let context = |what: &str| {
        let what = what.to_owned();
        move |source| GenerateError::Export {
            context: what,
            source,
        }
    };
    let mut arch = ClipArchitecture::from_config_json(&config)
        .map_err(context(&format!("reading {}", files.config.display())))?;
    if let Some(spec) = spec {
        check_against_registry(spec, &mut arch, log)?;
    }
    log(&format!(
        "loading {} ({} layout)",
        files.weights.display(),
        files.layout
    ));
    let weights = ClipWeights::load(&files.weights, &arch)
        .map_err(context(&format!("reading {}", files.weights.display())))?;
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
        &weights,
        files.tokenizer.clone(),
        padding,
        model_name,
        (mean, std),
        log,
    )
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
            "--tokenizer {} is not a file; --random-init needs a CLIP tokenizer.json \
             (this repository has one at tests/fixtures/text/tokenizer.json)",
            tokenizer.display()
        )));
    }
    log(RANDOM_INIT_WARNING);
    log(&format!(
        "random weights of {} ({}), seed {seed}",
        spec.name, spec.arch
    ));
    let arch = architecture(spec);
    let weights = ClipWeights::random(&arch, seed).map_err(|source| GenerateError::Export {
        context: format!("random weights for {}", spec.name),
        source,
    })?;
    export_weights(
        options,
        &weights,
        tokenizer.to_path_buf(),
        Padding::EndToken,
        format!("{} (random-init, seed {seed})", spec.name),
        (spec.mean, spec.std),
        log,
    )
}

/// The exporter's architecture of a registry model.
pub fn architecture(spec: &ModelSpec) -> ClipArchitecture {
    ClipArchitecture {
        text: clip_export::TextTower {
            width: spec.text.width as usize,
            layers: spec.text.layers as usize,
            heads: spec.text.heads as usize,
            mlp_width: spec.text.mlp_width as usize,
            context_length: spec.text.context_length as usize,
            vocab_size: spec.text.vocab_size as usize,
            pooling: clip_export::default_text_pooling(),
        },
        vision: clip_export::VisionTower {
            width: spec.vision.width as usize,
            layers: spec.vision.layers as usize,
            heads: spec.vision.heads as usize,
            mlp_width: spec.vision.mlp_width as usize,
            patch_size: spec.vision.patch_size as usize,
            image_size: spec.vision.image_size as usize,
        },
        embed_dim: spec.embed_dim as usize,
        activation: match spec.activation {
            registry::Activation::QuickGelu => clip_export::Activation::QuickGelu,
            registry::Activation::Gelu => clip_export::Activation::Gelu,
        },
        layer_norm_eps: 1e-5,
    }
}

/// Exports both towers of `weights` and runs each once in ONNX Runtime.
fn export_weights(
    options: &Options,
    weights: &ClipWeights,
    tokenizer: PathBuf,
    padding: Padding,
    model_name: String,
    (mean, std): ([f32; 3], [f32; 3]),
    log: &mut dyn FnMut(&str),
) -> Result<Prepared, GenerateError> {
    let arch = &weights.arch;
    let context = |what: &str| {
        let what = what.to_owned();
        move |source| GenerateError::Export {
            context: what,
            source,
        }
    };
    let export_options = ExportOptions {
        dtype: options.dtype,
        ..ExportOptions::default()
    };
    log(&format!(
        "exporting both towers to ONNX ({})",
        options.dtype.name()
    ));
    let textual = clip_export::export_textual(weights, &export_options)
        .map_err(context("exporting the text encoder"))?;
    let visual = clip_export::export_visual(weights, &export_options)
        .map_err(context("exporting the image encoder"))?;

    let runtime = OrtRuntime::load(options.ort_library.as_deref()).map_err(context(
        "verifying the exported models needs ONNX Runtime (--ort-library PATH or ORT_DYLIB_PATH)",
    ))?;
    log(&format!(
        "verifying both encoders with ONNX Runtime ({})",
        runtime.library().display()
    ));
    clip_export::verify_textual(&runtime, &textual, arch)
        .map_err(context("checking the text encoder"))?;
    clip_export::verify_visual(&runtime, &visual, arch)
        .map_err(context("checking the image encoder"))?;

    Ok(Prepared {
        textual: EncoderFile::Exported(textual),
        visual: EncoderFile::Exported(visual),
        tokenizer,
        padding,
        model_name,
        logit_scale: weights.logit_scale,
        mean,
        std,
    })
}

/// The registry is the authority on a named model; the downloaded config must agree.
fn check_against_registry(
    spec: &ModelSpec,
    arch: &mut ClipArchitecture,
    log: &mut dyn FnMut(&str),
) -> Result<(), GenerateError> {
    let mut differences = Vec::new();
    let mut compare = |what: &str, registry: usize, files: usize| {
        if registry != files {
            differences.push(format!("{what} is {files}, the registry says {registry}"));
        }
    };
    compare("embed_dim", spec.embed_dim as usize, arch.embed_dim);
    compare("text width", spec.text.width as usize, arch.text.width);
    compare("text layers", spec.text.layers as usize, arch.text.layers);
    compare("text heads", spec.text.heads as usize, arch.text.heads);
    compare(
        "context length",
        spec.text.context_length as usize,
        arch.text.context_length,
    );
    compare(
        "vocabulary size",
        spec.text.vocab_size as usize,
        arch.text.vocab_size,
    );
    compare(
        "vision width",
        spec.vision.width as usize,
        arch.vision.width,
    );
    compare(
        "vision layers",
        spec.vision.layers as usize,
        arch.vision.layers,
    );
    compare(
        "patch size",
        spec.vision.patch_size as usize,
        arch.vision.patch_size,
    );
    compare(
        "image size",
        spec.vision.image_size as usize,
        arch.vision.image_size,
    );
    if !differences.is_empty() {
        return Err(GenerateError::RegistryMismatch {
            model: spec.name.to_owned(),
            differences,
        });
    }
    // open_clip configs of QuickGELU weights do not always say so; the registry does.
    let wanted = match spec.activation {
        registry::Activation::QuickGelu => clip_export::Activation::QuickGelu,
        registry::Activation::Gelu => clip_export::Activation::Gelu,
    };
    if arch.activation != wanted {
        log(&format!(
            "the config says {}, the registry {}: using {}",
            arch.activation.name(),
            spec.activation,
            spec.activation
        ));
        arch.activation = wanted;
    }
    Ok(())
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

fn onnx_dir(dir: &Path, tokenizer: Option<&Path>) -> Result<Prepared, GenerateError> {
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
    let tokenizer = match tokenizer {
        Some(path) if path.is_file() => path.to_path_buf(),
        Some(path) => {
            return Err(GenerateError::Invalid(format!(
                "--tokenizer {} is not a file",
                path.display()
            )))
        }
        None => {
            let beside = dir.join(defaults::TOKENIZER_FILE);
            if !beside.is_file() {
                missing.push(defaults::TOKENIZER_FILE);
            }
            beside
        }
    };
    if !missing.is_empty() {
        return Err(GenerateError::Invalid(format!(
            "--onnx-dir {} lacks {}: it needs {} and {} (CLIP-as-service's layout), and a \
             Hugging Face tokenizer.json in it or given with --tokenizer FILE",
            dir.display(),
            missing.join(", "),
            file::TEXTUAL_ONNX,
            file::VISUAL_ONNX
        )));
    }
    let textual = EncoderFile::OnDisk(dir.join(file::TEXTUAL_ONNX));
    let visual = EncoderFile::OnDisk(dir.join(file::VISUAL_ONNX));
    let logit_scale = textual
        .io(file::TEXTUAL_ONNX)?
        .metadata("clip.logit_scale")
        .and_then(|v| v.parse().ok());
    let model_name = dir
        .canonicalize()
        .ok()
        .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| dir.display().to_string());
    Ok(Prepared {
        textual,
        visual,
        tokenizer,
        padding: Padding::Zero,
        model_name,
        logit_scale,
        mean: defaults::IMAGE_MEAN,
        std: defaults::IMAGE_STD,
    })
}

/// One tower's interface, checked against what the preprocessing feeds it.
struct TowerIo {
    input: TensorSpec,
    output: TensorSpec,
    /// Context length (text) or image side (image).
    size: i64,
    embedding_dim: i64,
}

impl TowerIo {
    fn single(io: &ModelIo, what: &str) -> Result<(TensorSpec, TensorSpec), GenerateError> {
        let bad = |message: String| GenerateError::Invalid(format!("{what}: {message}"));
        let [input] = io.inputs.as_slice() else {
            let names: Vec<&str> = io.inputs.iter().map(|t| t.name.as_str()).collect();
            return Err(bad(format!(
                "the encoder must take exactly one input (the preprocessing model feeds one), \
                 it takes {names:?}"
            )));
        };
        let output = match io.outputs.as_slice() {
            [one] => one,
            many => many
                .iter()
                .find(|t| t.name == tensor::EMBEDDING)
                .ok_or_else(|| {
                    let names: Vec<&str> = many.iter().map(|t| t.name.as_str()).collect();
                    bad(format!(
                        "several outputs {names:?} and none named {}",
                        tensor::EMBEDDING
                    ))
                })?,
        };
        let embedding_ok = matches!(output.data_type, DataType::Fp32 | DataType::Fp16)
            && output.dims.len() == 1
            && output.dims[0] > 0;
        if !embedding_ok {
            return Err(bad(format!(
                "output '{}' must be float [batch, D] with a fixed D, it is {} {:?}",
                output.name,
                output.data_type.as_str(),
                output.dims
            )));
        }
        Ok((input.clone(), output.clone()))
    }

    fn text(io: &ModelIo, what: &str) -> Result<Self, GenerateError> {
        let (input, output) = Self::single(io, what)?;
        let size = match (input.data_type, input.dims.as_slice()) {
            (DataType::Int64, [n]) if *n > 0 => *n,
            _ => {
                return Err(GenerateError::Invalid(format!(
                    "{what}: input '{}' must be int64 [batch, context_length] with a fixed \
                     context length (the text preprocessing emits int64 token ids), it is {} {:?}",
                    input.name,
                    input.data_type.as_str(),
                    input.dims
                )))
            }
        };
        Ok(TowerIo {
            embedding_dim: output.dims[0],
            input,
            output,
            size,
        })
    }

    fn image(io: &ModelIo, what: &str) -> Result<Self, GenerateError> {
        let (input, output) = Self::single(io, what)?;
        let size = match (input.data_type, input.dims.as_slice()) {
            (DataType::Fp32 | DataType::Fp16, [3, h, w]) if h == w && *h > 0 => *h,
            _ => {
                return Err(GenerateError::Invalid(format!(
                "{what}: input '{}' must be float [batch, 3, S, S] with a fixed S, it is {} {:?}",
                input.name,
                input.data_type.as_str(),
                input.dims
            )))
            }
        };
        Ok(TowerIo {
            embedding_dim: output.dims[0],
            input,
            output,
            size,
        })
    }
}

fn instance_groups(
    options: &Options,
    weights_bytes: u64,
    notes: &mut Vec<String>,
) -> Result<Vec<InstanceGroup>, GenerateError> {
    let probe = || -> Result<Vec<GpuInfo>, String> { placement::nvml_gpus() };
    let placed = placement::place(&options.gpus, options.instances, weights_bytes, probe)
        .map_err(GenerateError::Invalid)?;
    notes.extend(placed.notes);
    let mut groups = placed.groups;
    if options.runtime.needs_gpu() && groups.iter().any(|g| g.kind == InstanceKind::Cpu) {
        notes.push(
            "TensorRT runs on the GPU only: the encoders get KIND_GPU instances on every GPU \
             Triton sees (pass --gpus 0,1,... to choose)"
                .to_owned(),
        );
        for group in &mut groups {
            group.kind = InstanceKind::Gpu;
            group.gpus.clear();
        }
    }
    Ok(groups)
}

/// Renders every model of one repository.
struct Repository<'a> {
    options: &'a Options,
    names: &'a ModelNames,
    facts: &'a Facts,
    groups: &'a [InstanceGroup],
    mean: [f32; 3],
    std: [f32; 3],
    pad_token_id: Option<u32>,
}

impl Repository<'_> {
    fn encoder(&self, name: &str, tower: Tower, io: &TowerIo) -> EncoderModel {
        let options = self.options;
        EncoderModel {
            name: name.to_owned(),
            tower,
            runtime: options.runtime,
            batching: options.batching.clone(),
            instance_groups: self.groups.to_vec(),
            inputs: vec![io.input.clone()],
            outputs: vec![io.output.clone()],
            facts: self.facts.clone(),
            half_precision: options.dtype == WeightDtype::F16,
            trt_accelerator: options.trt_accelerator,
            ort_library: match options.runtime {
                Runtime::Ort => options
                    .ort_library
                    .as_ref()
                    .map(|p| p.display().to_string()),
                _ => None,
            },
            intra_op_threads: None,
            inter_op_threads: None,
            extra_parameters: Vec::new(),
        }
    }

    /// (model name, config.pbtxt) for all six models.
    fn configs(
        &self,
        text: &TowerIo,
        image: &TowerIo,
    ) -> Result<Vec<(String, String)>, GenerateError> {
        let names = self.names;
        let batching = &self.options.batching;
        let facts = self.facts.parameters();

        let mut text_pre = TextPreprocessModel::new(&names.text_preprocess, batching.clone());
        text_pre.context_length = text.size as usize;
        text_pre.pad_token_id = self.pad_token_id;
        text_pre.extra_parameters = facts.clone();

        let mut image_pre = ImagePreprocessModel::new(&names.image_preprocess, batching.clone());
        image_pre.image_size = image.size as u32;
        image_pre.half_precision = image.input.data_type == DataType::Fp16;
        image_pre.extra_parameters = facts;
        image_pre.mean = self.mean;
        image_pre.std = self.std;

        let text_encoder = self.encoder(&names.text_encoder, Tower::Text, text);
        let image_encoder = self.encoder(&names.image_encoder, Tower::Image, image);

        let ensemble = |name: &str,
                        tower: Tower,
                        input: TensorSpec,
                        preprocess: &str,
                        between: &str,
                        encoder: &str,
                        io: &TowerIo| EnsembleModel {
            name: name.to_owned(),
            tower,
            max_batch_size: batching.max_batch_size,
            output: TensorSpec::new(
                tensor::EMBEDDING,
                io.output.data_type,
                io.output.dims.clone(),
            ),
            steps: vec![
                EnsembleStep {
                    model_name: preprocess.to_owned(),
                    input_map: vec![(input.name.clone(), input.name.clone())],
                    output_map: vec![(between.to_owned(), between.to_owned())],
                },
                EnsembleStep {
                    model_name: encoder.to_owned(),
                    input_map: vec![(io.input.name.clone(), between.to_owned())],
                    output_map: vec![(io.output.name.clone(), tensor::EMBEDDING.to_owned())],
                },
            ],
            input,
            facts: self.facts.clone(),
        };
        let text_ensemble = ensemble(
            &names.text_ensemble,
            Tower::Text,
            TensorSpec::new(tensor::TEXT, DataType::String, vec![1]),
            &names.text_preprocess,
            tensor::INPUT_IDS,
            &names.text_encoder,
            text,
        );
        let image_ensemble = ensemble(
            &names.image_ensemble,
            Tower::Image,
            TensorSpec::new(tensor::IMAGE, DataType::String, vec![1]),
            &names.image_preprocess,
            tensor::PIXEL_VALUES,
            &names.image_encoder,
            image,
        );
        Ok(vec![
            (names.text_preprocess.clone(), text_pre.render()?),
            (names.image_preprocess.clone(), image_pre.render()?),
            (names.text_encoder.clone(), text_encoder.render()?),
            (names.image_encoder.clone(), image_encoder.render()?),
            (names.text_ensemble.clone(), text_ensemble.render()?),
            (names.image_ensemble.clone(), image_ensemble.render()?),
        ])
    }

    fn trtexec_commands(
        &self,
        text: &TowerIo,
        image: &TowerIo,
    ) -> Result<Vec<TrtexecCommand>, GenerateError> {
        let fp16 = self.options.dtype == WeightDtype::F16;
        [
            (&self.names.text_encoder, text),
            (&self.names.image_encoder, image),
        ]
        .into_iter()
        .map(|(name, io)| {
            TrtexecCommand::new(
                name,
                std::slice::from_ref(&io.input),
                &self.options.batching,
                fp16,
            )
            .map_err(GenerateError::Invalid)
        })
        .collect()
    }
}

/// A fresh folder beside `out` (same file system, so the final rename is atomic).
fn staging_dir(out: &Path) -> Result<tempfile::TempDir, GenerateError> {
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&parent).map_err(io(&parent))?;
    tempfile::Builder::new()
        .prefix(".repo-gen-")
        .tempdir_in(&parent)
        .map_err(io(&parent))
}

/// Moves the staged repository into place. A missing or empty `out` is
/// replaced whole; into a non-empty one (`--force`) each model folder is
/// moved, replacing one of the same name, and put back if a move fails.
fn commit(staging: tempfile::TempDir, out: &Path) -> Result<(), GenerateError> {
    let is_empty_dir = fs::read_dir(out).map(|mut e| e.next().is_none());
    match is_empty_dir {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            fs::rename(staging.path(), out).map_err(io(out))?;
            return Ok(());
        }
        Err(e) => return Err(io(out)(e)),
        Ok(true) => {
            fs::remove_dir(out).map_err(io(out))?;
            fs::rename(staging.path(), out).map_err(io(out))?;
            return Ok(());
        }
        Ok(false) => {}
    }
    let backup = staging_dir(out)?;
    let mut moved: Vec<(PathBuf, Option<PathBuf>)> = Vec::new();
    let entries: Vec<_> = fs::read_dir(staging.path())
        .map_err(io(staging.path()))?
        .filter_map(Result::ok)
        .collect();
    let result = (|| -> Result<(), GenerateError> {
        for entry in entries {
            let target = out.join(entry.file_name());
            let saved = if fs::symlink_metadata(&target).is_ok() {
                let saved = backup.path().join(entry.file_name());
                fs::rename(&target, &saved).map_err(io(&target))?;
                Some(saved)
            } else {
                None
            };
            moved.push((target.clone(), saved));
            fs::rename(entry.path(), &target).map_err(io(&target))?;
        }
        Ok(())
    })();
    if result.is_err() {
        for (target, saved) in moved.into_iter().rev() {
            let _ = remove_any(&target);
            if let Some(saved) = saved {
                let _ = fs::rename(saved, &target);
            }
        }
    }
    result
}

fn remove_any(path: &Path) -> std::io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) => Err(e),
    }
}

#[cfg(unix)]
fn make_executable(path: &Path) -> Result<(), GenerateError> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).map_err(io(path))
}

#[cfg(not(unix))]
fn make_executable(_: &Path) -> Result<(), GenerateError> {
    Ok(())
}

/// `text` as one POSIX shell word.
pub fn shell_quote(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,+@%".contains(c));
    if plain {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}
