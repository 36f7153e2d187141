//! The six models of a repository (seven with the pixel path), assembled
//! from the prepared encoders:
//! their interfaces read from the ONNX files and checked against what the
//! preprocessing feeds them, the facts every model carries, the instance
//! placement, and, for TensorRT, the trtexec script.

use clip_contract::{file, model, param, tensor, DataType, TensorSpec};
use clip_export::WeightDtype;

use crate::encoder::{EncoderModel, EnsembleModel, EnsembleStep, Facts, Runtime, Tower};
use crate::error::GenerateError;
use crate::model_dir::ModelDir;
use crate::onnx_io::{self, ModelIo};
use crate::options::{Options, Source};
use crate::placement::{self, GpuInfo, InstanceGroup, InstanceKind};
use crate::preprocess::{ImagePreprocessModel, TextPreprocessModel};
use crate::render::{check_name, RenderError};
use crate::sources::{Prepared, RANDOM_INIT_WARNING};
use crate::tensorrt::{self, TrtexecCommand};

/// The model names of a repository, prefix applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ModelNames {
    text_preprocess: String,
    image_preprocess: String,
    text_encoder: String,
    image_encoder: String,
    text_ensemble: String,
    image_ensemble: String,
    image_pixels: String,
    decoded_preprocess: String,
    decoded_ensemble: String,
}

impl ModelNames {
    /// Refuses a prefix that makes any name something other than a plain folder name.
    pub(crate) fn new(prefix: &str) -> Result<Self, GenerateError> {
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
            image_pixels: name(model::IMAGE_PIXELS)?,
            decoded_preprocess: name(model::DECODED_PREPROCESS)?,
            decoded_ensemble: name(model::DECODED_ENSEMBLE)?,
        })
    }
}

/// What goes into the repository folder.
pub(crate) struct Assembled {
    pub(crate) models: Vec<ModelDir>,
    /// `(file name, contents)` of the trtexec script at the root, for TensorRT.
    pub(crate) script: Option<(String, String)>,
    /// Things the user should know (fallbacks, what is left to do), for stderr.
    pub(crate) notes: Vec<String>,
}

/// The six models of `prepared` as `options` asks for them.
pub(crate) fn assemble(
    options: &Options,
    names: &ModelNames,
    prepared: Prepared,
) -> Result<Assembled, GenerateError> {
    let text = TowerIo::text(
        &onnx_io::read_source(&prepared.textual, file::TEXTUAL_ONNX)?,
        file::TEXTUAL_ONNX,
        prepared.known_sizes.context_length,
    )?;
    let image = TowerIo::image(
        &onnx_io::read_source(&prepared.visual, file::VISUAL_ONNX)?,
        file::VISUAL_ONNX,
        prepared.known_sizes.image_size,
    )?;
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
            param::LOGIT_SCALE
        ));
    }
    let pixels = match &prepared.visual_pixels {
        Some(source) => {
            let what = model::IMAGE_PIXELS;
            let io = TowerIo::pixels(&onnx_io::read_source(source, what)?, what, Some(image.size))?;
            if io.size != image.size || io.embedding_dim != image.embedding_dim {
                return Err(GenerateError::Invalid(format!(
                    "{what} takes {}-pixel images into {} dimensions, the image encoder {} into {}",
                    io.size, io.embedding_dim, image.size, image.embedding_dim
                )));
            }
            Some(io)
        }
        None => None,
    };
    let weights_bytes = prepared.textual.bytes()
        + prepared.visual.bytes()
        + prepared.visual_pixels.as_ref().map_or(0, |p| p.bytes());
    let groups = instance_groups(options, weights_bytes, &mut notes)?;
    let script = if options.runtime == Runtime::TensorRt {
        notes.push(format!(
            "TensorRT plans are built on the serving GPU: run scripts/build-tensorrt-plans.sh {} \
             (NGC container) or sh {}/{}{} where trtexec is installed",
            options.out.display(),
            options.out.display(),
            options.name_prefix,
            file::TRTEXEC_SCRIPT
        ));
        let commands = trtexec_commands(options, names, &text, &image, pixels.as_ref())?;
        Some((
            format!("{}{}", options.name_prefix, file::TRTEXEC_SCRIPT),
            tensorrt::script(&commands),
        ))
    } else {
        None
    };

    let cores = std::thread::available_parallelism().ok().map(usize::from);
    let (preprocess_instances, note) = options.preprocess_instances.resolve(cores);
    notes.push(note);

    let batching = &options.batching;
    let parameters = facts.parameters();
    let mut text_pre = TextPreprocessModel::new(&names.text_preprocess, batching.clone());
    text_pre.instances = preprocess_instances;
    text_pre.context_length = text.size as usize;
    text_pre.pad_token_id = prepared.pad_token_id(text.size as usize)?;
    text_pre.ids_type = text.input.data_type;
    text_pre.attention_mask = text.mask.is_some();
    text_pre.tokenizer_family = prepared.tokenizer_family;
    text_pre.extra_parameters = parameters.clone();
    text_pre.warmup = options.warmup;

    let mut image_pre = ImagePreprocessModel::new(&names.image_preprocess, batching.clone());
    image_pre.instances = preprocess_instances;
    image_pre.image_size = image.size as u32;
    image_pre.half_precision = image.input.data_type == DataType::Fp16;
    image_pre.extra_parameters = parameters;
    image_pre.mean = prepared.mean;
    image_pre.std = prepared.std;
    image_pre.center_crop = options.center_crop;
    image_pre.warmup = options.warmup;

    let encoder = |name: &str, tower: Tower, io: &TowerIo| EncoderModel {
        name: name.to_owned(),
        tower,
        runtime: options.runtime,
        batching: batching.clone(),
        instance_groups: groups.clone(),
        inputs: io.inputs(),
        outputs: vec![io.output.clone()],
        facts: facts.clone(),
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
        vocab_size: match tower {
            Tower::Text => Some(prepared.vocab_size),
            Tower::Image => None,
        },
        warmup: options.warmup,
        response_cache: options.response_cache,
        extra_parameters: Vec::new(),
    };
    let probes = prepared.probes.as_ref();
    // `input`: what the preprocessing step takes (the ensemble takes it too).
    let ensemble = |name: &str,
                    tower: Tower,
                    (preprocess, input): (&str, TensorSpec),
                    encoder: &str,
                    io: &TowerIo| {
        // (preprocessing output, encoder input) pairs.
        let between: Vec<(&str, &str)> = match tower {
            Tower::Text => std::iter::once((tensor::INPUT_IDS, io.input.name.as_str()))
                .chain(
                    io.mask
                        .as_ref()
                        .map(|m| (tensor::ATTENTION_MASK, m.name.as_str())),
                )
                .collect(),
            Tower::Image => vec![(tensor::PIXEL_VALUES, io.input.name.as_str())],
        };
        EnsembleModel {
            name: name.to_owned(),
            tower,
            max_batch_size: batching.max_batch_size,
            input: input.clone(),
            output: TensorSpec::new(
                tensor::EMBEDDING,
                io.output.data_type,
                io.output.dims.clone(),
            ),
            steps: vec![
                EnsembleStep {
                    model_name: preprocess.to_owned(),
                    input_map: vec![(input.name.clone(), input.name.clone())],
                    output_map: between
                        .iter()
                        .map(|(tensor, _)| (tensor.to_string(), tensor.to_string()))
                        .collect(),
                },
                EnsembleStep {
                    model_name: encoder.to_owned(),
                    input_map: between
                        .iter()
                        .map(|(tensor, input)| (input.to_string(), tensor.to_string()))
                        .collect(),
                    output_map: vec![(io.output.name.clone(), tensor::EMBEDDING.to_owned())],
                },
            ],
            facts: facts.clone(),
            response_cache: options.response_cache,
            extra_parameters: probes.map(|p| p.parameters(tower)).unwrap_or_default(),
        }
    };

    let mut models = vec![
        text_pre.model_dir(Some(&prepared.tokenizer))?,
        image_pre.model_dir()?,
        encoder(&names.text_encoder, Tower::Text, &text).model_dir(prepared.textual)?,
        encoder(&names.image_encoder, Tower::Image, &image).model_dir(prepared.visual)?,
        ensemble(
            &names.text_ensemble,
            Tower::Text,
            (&names.text_preprocess, text_pre.input()),
            &names.text_encoder,
            &text,
        )
        .model_dir()?,
        ensemble(
            &names.image_ensemble,
            Tower::Image,
            (&names.image_preprocess, image_pre.input()),
            &names.image_encoder,
            &image,
        )
        .model_dir()?,
    ];
    if let (Some(io), Some(source)) = (&pixels, prepared.visual_pixels) {
        let mut pixel_model = encoder(&names.image_pixels, Tower::Image, io);
        // A client crops exactly as the image preprocessing model would.
        pixel_model.extra_parameters = vec![
            (
                param::MAX_PIXELS.to_owned(),
                image_pre.max_pixels.to_string(),
            ),
            (
                param::REDUCED_SCALE_DECODE.to_owned(),
                image_pre.reduced_scale_decode.to_string(),
            ),
            (
                param::CENTER_CROP.to_owned(),
                image_pre.center_crop.name().to_owned(),
            ),
        ];
        models.push(pixel_model.model_dir(source)?);

        // Decoded images of any size, resized on the server.
        let mut decoded_pre = image_pre.clone();
        decoded_pre.name.clone_from(&names.decoded_preprocess);
        decoded_pre.decoded_input = true;
        models.push(decoded_pre.model_dir()?);
        let mut decoded = ensemble(
            &names.decoded_ensemble,
            Tower::Image,
            (&names.decoded_preprocess, decoded_pre.input()),
            &names.image_encoder,
            &image,
        );
        // The probes are encoded files: they check the bytes path only.
        decoded.extra_parameters.clear();
        models.push(decoded.model_dir()?);
    }
    Ok(Assembled {
        models,
        script,
        notes,
    })
}

/// One tower's interface, checked against what the preprocessing feeds it.
struct TowerIo {
    input: TensorSpec,
    /// A two-input text tower's attention mask (CLIP-as-service's files).
    mask: Option<TensorSpec>,
    output: TensorSpec,
    /// Context length (text) or image side (image).
    size: i64,
    embedding_dim: i64,
}

impl TowerIo {
    /// The encoder's embedding output, checked.
    fn embedding(io: &ModelIo, what: &str) -> Result<TensorSpec, GenerateError> {
        let bad = |message: String| GenerateError::Invalid(format!("{what}: {message}"));
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
                output.name, output.data_type, output.dims
            )));
        }
        Ok(output.clone())
    }

    /// The one input of an image encoder.
    fn single(io: &ModelIo, what: &str) -> Result<(TensorSpec, TensorSpec), GenerateError> {
        let [input] = io.inputs.as_slice() else {
            let names: Vec<&str> = io.inputs.iter().map(|t| t.name.as_str()).collect();
            return Err(GenerateError::Invalid(format!(
                "{what}: an image encoder must take exactly one input (the preprocessing model \
                 feeds one), it takes {names:?}"
            )));
        };
        Ok((input.clone(), Self::embedding(io, what)?))
    }

    /// Token ids, and optionally an attention mask of the same type and
    /// dims: INT64 or INT32 `[batch, context_length]` each. A dynamic
    /// context is pinned to `known` (the model's), which a fixed one must equal.
    fn text(io: &ModelIo, what: &str, known: Option<i64>) -> Result<Self, GenerateError> {
        let bad = |message: String| GenerateError::Invalid(format!("{what}: {message}"));
        let plays = |spec: &TensorSpec, contract: &str| tensor::plays(&spec.name, contract);
        let (input, mask) = match io.inputs.as_slice() {
            [ids] => (ids, None),
            [ids, mask] | [mask, ids]
                if plays(ids, tensor::INPUT_IDS) && plays(mask, tensor::ATTENTION_MASK) =>
            {
                (ids, Some(mask))
            }
            inputs => {
                let names: Vec<&str> = inputs.iter().map(|t| t.name.as_str()).collect();
                return Err(bad(format!(
                    "a text encoder takes token ids, or '{}' and '{}' (in any case), it takes \
                     {names:?}",
                    tensor::INPUT_IDS,
                    tensor::ATTENTION_MASK
                )));
            }
        };
        if let Some(mask) = mask {
            if (mask.data_type, &mask.dims) != (input.data_type, &input.dims) {
                return Err(bad(format!(
                    "input '{}' must have the type and dims of '{}' ({} {:?}), it is {} {:?}",
                    mask.name, input.name, input.data_type, input.dims, mask.data_type, mask.dims
                )));
            }
        }
        let size = match (input.data_type, input.dims.as_slice()) {
            (DataType::Int64 | DataType::Int32, &[n]) => pinned(n, known).map_err(|why| {
                bad(format!(
                    "input '{}' [batch, context_length]: {why} (the text preprocessing pads \
                     every text to one length)",
                    input.name
                ))
            })?,
            _ => {
                return Err(bad(format!(
                    "input '{}' must be int64 or int32 [batch, context_length], it is {} {:?}",
                    input.name, input.data_type, input.dims
                )))
            }
        };
        let pin = |spec: &TensorSpec| TensorSpec {
            dims: vec![size],
            ..spec.clone()
        };
        let output = Self::embedding(io, what)?;
        Ok(TowerIo {
            embedding_dim: output.dims[0],
            input: pin(input),
            mask: mask.map(pin),
            output,
            size,
        })
    }

    /// Every input, the mask last.
    fn inputs(&self) -> Vec<TensorSpec> {
        std::iter::once(self.input.clone())
            .chain(self.mask.clone())
            .collect()
    }

    /// The pixel path's encoder: uint8 `[batch, S, S, 3]` in.
    fn pixels(io: &ModelIo, what: &str, known: Option<i64>) -> Result<Self, GenerateError> {
        Self::square(io, what, "uint8 [batch, S, S, 3]", known, |input| {
            match (input.data_type, input.dims.as_slice()) {
                (DataType::Uint8, &[h, w, 3]) => Some(([h, w], |s| vec![s, s, 3])),
                _ => None,
            }
        })
    }

    /// A dynamic side is pinned to `known` (the model's), which a fixed one must equal.
    fn image(io: &ModelIo, what: &str, known: Option<i64>) -> Result<Self, GenerateError> {
        Self::square(io, what, "float [batch, 3, S, S]", known, |input| {
            match (input.data_type, input.dims.as_slice()) {
                (DataType::Fp32 | DataType::Fp16, &[3, h, w]) => Some(([h, w], |s| vec![3, s, s])),
                _ => None,
            }
        })
    }

    /// An image encoder: `sides` finds the two sides of its square input
    /// (and how to write the dims for a side), or the input is refused as
    /// not `expected`.
    fn square(
        io: &ModelIo,
        what: &str,
        expected: &str,
        known: Option<i64>,
        sides: impl Fn(&TensorSpec) -> Option<([i64; 2], fn(i64) -> Vec<i64>)>,
    ) -> Result<Self, GenerateError> {
        let (input, output) = Self::single(io, what)?;
        let refuse = |why: String| {
            GenerateError::Invalid(format!(
                "{what}: input '{}' must be {expected}{why}, it is {} {:?}",
                input.name, input.data_type, input.dims
            ))
        };
        let ([h, w], dims) = sides(&input).ok_or_else(|| refuse(String::new()))?;
        let size = pinned(h, known)
            .and_then(|h| pinned(w, Some(h)))
            .map_err(|why| refuse(format!(" with a square S ({why})")))?;
        Ok(TowerIo {
            embedding_dim: output.dims[0],
            input: TensorSpec {
                dims: dims(size),
                ..input
            },
            mask: None,
            output,
            size,
        })
    }
}

/// A dimension of the file (-1: dynamic) against the size the model is
/// known to have: a dynamic one takes it, a fixed one must equal it.
fn pinned(declared: i64, known: Option<i64>) -> Result<i64, String> {
    match (declared, known) {
        (d, Some(k)) if d > 0 && d != k => Err(format!("the file fixes {d}, the model has {k}")),
        (d, _) if d > 0 => Ok(d),
        (_, Some(k)) if k > 0 => Ok(k),
        _ => Err(
            "the file leaves it dynamic and nothing names the model's size; \
                  --onnx-dir DIR --model NAME does"
                .to_owned(),
        ),
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
    if options.dtype == WeightDtype::Int8 && groups.iter().any(|g| g.kind == InstanceKind::Gpu) {
        notes.push(
            "--dtype int8 targets CPU serving (ONNX Runtime's CPU kernels for dynamic \
             quantization); for GPU instances --dtype fp16 is the faster choice (--gpus none \
             keeps the encoders on the CPU)"
                .to_owned(),
        );
    }
    Ok(groups)
}

fn trtexec_commands(
    options: &Options,
    names: &ModelNames,
    text: &TowerIo,
    image: &TowerIo,
    pixels: Option<&TowerIo>,
) -> Result<Vec<TrtexecCommand>, GenerateError> {
    let fp16 = options.dtype == WeightDtype::F16;
    [(&names.text_encoder, text), (&names.image_encoder, image)]
        .into_iter()
        .chain(pixels.map(|io| (&names.image_pixels, io)))
        .map(|(name, io)| {
            TrtexecCommand::new(name, &io.inputs(), &options.batching, fp16)
                .map_err(GenerateError::Invalid)
        })
        .collect()
}
