//! `repo-gen`: the command line of the repo_gen library.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};
use clip_export::WeightDtype;
use repo_gen::download::HubOptions;
use repo_gen::{
    generate, registry, Batching, DynamicBatching, GpuChoice, Options, PreprocessInstances,
    Runtime, Source,
};

#[derive(Parser)]
#[command(
    name = "repo-gen",
    version,
    about = "Builds Triton model repositories that serve CLIP embeddings, no Python in the serving path",
    long_about = "Builds NVIDIA Triton model repositories that serve CLIP embeddings with no \
                  Python in the serving path.\n\n\
                  The repository holds six models: the `clip` backend's text and image \
                  preprocessing (tokenizer; image decode, resize, normalize), the text and image \
                  encoders, and the ensembles clip_text (TEXT -> EMBEDDING) and clip_image \
                  (IMAGE -> EMBEDDING). Every model carries the model's facts as parameters \
                  (model_name, embedding_dim, image_size, context_length, logit_scale).\n\n\
                  The encoders are exported to ONNX in Rust and run once in ONNX Runtime before \
                  anything is written. The repository is written into a temporary folder and \
                  moved into place at the end, so a failure leaves nothing half-written.\n\n\
                  Models are named as in CLIP-as-service, ARCH::PRETRAINED (for example \
                  ViT-B-32::openai); `repo-gen models` lists them.",
    after_help = "Examples:\n  \
                  repo-gen --model ViT-B-32::openai --out model_repository\n  \
                  repo-gen --weights ./my-clip --runtime onnxruntime --trt-accelerator --dtype fp16\n  \
                  repo-gen --model ViT-L-14::openai --runtime tensorrt --gpus 0,1 --instances 4 \
                  --preferred-batch-size 8 16\n  \
                  repo-gen --onnx-dir ~/.cache/clip/ViT-B-32 --model ViT-B-32::openai\n  \
                  repo-gen --model ViT-B-32::openai --random-init --seed 0 \
                  --tokenizer tests/fixtures/text/tokenizer.json   (benchmarks: random weights)\n  \
                  repo-gen models",
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    export: ExportArgs,
}

#[derive(Subcommand)]
enum Command {
    /// List the CLIP models repo-gen knows: name, embedding size, image size,
    /// activation, weights layout and Hugging Face repository.
    Models,
    /// Write deployment manifests for Triton serving a repository (`repo-gen deploy k8s`).
    #[command(subcommand)]
    Deploy(repo_gen::deploy::DeployCommand),
}

#[derive(Clone, Copy, ValueEnum)]
enum RuntimeArg {
    /// The project's `clip` backend running model.onnx through ONNX Runtime (`ort`).
    Ort,
    /// Triton's ONNX Runtime backend (platform onnxruntime_onnx).
    Onnxruntime,
    /// Triton's TensorRT backend (platform tensorrt_plan); plans built by trtexec on the GPU.
    Tensorrt,
}

#[derive(Clone, Copy, ValueEnum)]
enum DtypeArg {
    Fp32,
    Fp16,
    /// Weight matrices int8 per output channel, activations quantized per run:
    /// for CPU serving through ONNX Runtime.
    Int8,
}

#[derive(Args)]
#[command(group(
    ArgGroup::new("source")
        .required(true)
        .multiple(true)
        .args(["weights", "model", "onnx_dir"])
))]
struct ExportArgs {
    /// A folder with config.json + model.safetensors (transformers) or
    /// open_clip_config.json + open_clip_model.safetensors (open_clip), and tokenizer.json.
    #[arg(
        long,
        value_name = "DIR",
        conflicts_with_all = ["model", "onnx_dir"],
        help_heading = "Model (one of)"
    )]
    weights: Option<PathBuf>,
    /// A known model, ARCH::PRETRAINED; fetched from the Hugging Face hub
    /// through its cache (HF_ENDPOINT, HF_HUB_OFFLINE, HF_HUB_CACHE, HF_TOKEN apply).
    #[arg(long, value_name = "NAME", help_heading = "Model (one of)")]
    model: Option<String>,
    /// A folder with textual.onnx and visual.onnx (CLIP-as-service's layout), used as they
    /// are. With --model NAME, the files are that model's: the registry decides the image
    /// size, normalisation and tokenizer (fetched from the hub when the folder has none).
    #[arg(long, value_name = "DIR", help_heading = "Model (one of)")]
    onnx_dir: Option<PathBuf>,
    /// tokenizer.json for --onnx-dir (default: tokenizer.json in that folder) or
    /// --random-init (required there: a CLIP tokenizer.json such as this repository's
    /// tests/fixtures/text/tokenizer.json).
    #[arg(long, value_name = "FILE", help_heading = "Model (one of)")]
    tokenizer: Option<PathBuf>,
    /// With --model: the model's real architecture with seeded RANDOM weights, nothing
    /// downloaded. For benchmarks only: the embeddings are meaningless.
    #[arg(
        long,
        requires = "model",
        requires = "tokenizer",
        conflicts_with = "onnx_dir",
        help_heading = "Model (one of)"
    )]
    random_init: bool,
    /// Seed of --random-init's weights; the same seed gives the same weights.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 0,
        requires = "random_init",
        help_heading = "Model (one of)"
    )]
    seed: u64,

    /// The repository folder to write; must be new or empty unless --force.
    #[arg(long, value_name = "DIR", default_value = "model_repository")]
    out: PathBuf,
    /// Write into a non-empty --out, replacing models of the same names and keeping the others.
    #[arg(long)]
    force: bool,
    /// What serves the encoders.
    #[arg(long, value_enum, default_value = "ort")]
    runtime: RuntimeArg,
    /// Weights (and computation) of the exported encoders; inputs and outputs stay FP32.
    /// fp16 also builds TensorRT plans and the TensorRT accelerator in FP16. int8 (dynamic
    /// quantization of the weight matrices) is for ONNX Runtime on the CPU, not TensorRT.
    #[arg(long, value_enum, default_value = "fp32")]
    dtype: DtypeArg,
    /// Put before every model name, so several CLIP models can share one repository.
    #[arg(long, value_name = "P", default_value = "")]
    name_prefix: String,
    /// With --runtime onnxruntime: ONNX Runtime's TensorRT execution accelerator on the GPU.
    #[arg(long)]
    trt_accelerator: bool,
    /// libonnxruntime.so (1.31) for the verification run, written as `ort_library` for
    /// --runtime ort; else ORT_DYLIB_PATH. `scripts/install-onnxruntime.sh` installs one and
    /// prints its path.
    #[arg(long, value_name = "PATH")]
    ort_library: Option<PathBuf>,

    /// Largest batch every model takes.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 32,
        help_heading = "Batching and scaling"
    )]
    max_batch_size: u32,
    /// Batch sizes the dynamic batcher aims for (each 1..=--max-batch-size); the largest
    /// is also the TensorRT profile's optimum.
    #[arg(long, value_name = "N", num_args = 1.., value_delimiter = ',',
          help_heading = "Batching and scaling")]
    preferred_batch_size: Vec<u32>,
    /// How long a request may wait for others to join its batch.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 1000,
        help_heading = "Batching and scaling"
    )]
    max_queue_delay_us: u64,
    /// Instances of each encoder, dealt round-robin over --gpus (5 on 0,1,2 -> 2,2,1).
    /// Default: 1 per listed GPU; with --gpus auto, as many as fit in free memory; 1 on the CPU.
    #[arg(long, value_name = "N", help_heading = "Batching and scaling")]
    instances: Option<u32>,
    /// auto (NVML: the GPUs and their free memory; CPU when there is none), none (CPU),
    /// or GPU indices such as 0,1. Preprocessing always runs on the CPU.
    #[arg(long, value_name = "auto|none|0,1,...", default_value = "auto",
          value_parser = parse_gpus, help_heading = "Batching and scaling")]
    gpus: GpuChoice,
    /// CPU instances of each preprocessing model (text and image). auto: one per core of
    /// the machine repo-gen runs on, at most 4, so concurrent requests overlap; give N when
    /// the server has other cores.
    #[arg(long, value_name = "N|auto", default_value = "auto",
          value_parser = parse_preprocess_instances, help_heading = "Batching and scaling")]
    preprocess_instances: PreprocessInstances,
    /// Leave out the model_warmup samples (by default every instance runs one at its
    /// largest batch as it loads, so the first request pays no start-up cost).
    #[arg(long, help_heading = "Batching and scaling")]
    no_warmup: bool,
    /// Let Triton answer repeated requests from its response cache: enabled in the
    /// ensembles and the encoders. The server needs a cache too, e.g.
    /// `tritonserver --cache-config local,size=268435456`.
    #[arg(long, help_heading = "Batching and scaling")]
    response_cache: bool,
    /// Also write clip_image_pixels: the image encoder taking decoded, resized and cropped
    /// UINT8 [S, S, 3] pixels, normalised inside its graph, for clients that decode images
    /// themselves (clip-client --preprocess local). Its own copy of the image encoder's
    /// weights; needs weights to export (not --onnx-dir).
    #[arg(long, help_heading = "Batching and scaling")]
    pixel_path: bool,
    /// Whose center crop the image preprocessing takes; they differ by one pixel when the
    /// resized margin is odd. torchvision: as open_clip and CLIP-as-service crop, for
    /// embeddings that match an index they built.
    #[arg(long, value_enum, default_value = "transformers")]
    center_crop: CenterCropArg,
}

#[derive(Clone, Copy, ValueEnum)]
enum CenterCropArg {
    /// transformers' CLIPImageProcessor: a half-pixel offset is floored.
    Transformers,
    /// torchvision's CenterCrop: a half-pixel offset is rounded half to even.
    Torchvision,
}

fn parse_gpus(text: &str) -> Result<GpuChoice, String> {
    text.parse()
}

fn parse_preprocess_instances(text: &str) -> Result<PreprocessInstances, String> {
    text.parse()
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Models) => print(&registry::table(registry::all())),
        Some(Command::Deploy(command)) => repo_gen::deploy::run(command),
        None => run(cli.export),
    }
}

fn print(text: &str) -> ExitCode {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => ExitCode::SUCCESS,
        // `repo-gen models | head` is not an error.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("repo-gen: cannot write to stdout: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: ExportArgs) -> ExitCode {
    if args.tokenizer.is_some() && args.onnx_dir.is_none() && !args.random_init {
        eprintln!(
            "repo-gen: error: --tokenizer goes with --onnx-dir or --random-init; --weights and \
             --model folders bring their own tokenizer.json"
        );
        return ExitCode::FAILURE;
    }
    let source = match (args.model, args.weights, args.onnx_dir) {
        (Some(model), _, _) if args.random_init => Source::RandomInit {
            model,
            seed: args.seed,
            tokenizer: args
                .tokenizer
                .expect("clap requires --tokenizer with --random-init"),
        },
        (model, _, Some(dir)) => Source::OnnxDir {
            dir,
            tokenizer: args.tokenizer,
            model,
        },
        (Some(name), _, _) => Source::Model(name),
        (_, Some(dir), _) => Source::Weights(dir),
        _ => unreachable!("clap requires one source"),
    };
    let options = Options {
        source,
        out: args.out,
        runtime: match args.runtime {
            RuntimeArg::Ort => Runtime::Ort,
            RuntimeArg::Onnxruntime => Runtime::OnnxRuntime,
            RuntimeArg::Tensorrt => Runtime::TensorRt,
        },
        dtype: match args.dtype {
            DtypeArg::Fp32 => WeightDtype::F32,
            DtypeArg::Fp16 => WeightDtype::F16,
            DtypeArg::Int8 => WeightDtype::Int8,
        },
        name_prefix: args.name_prefix,
        batching: Batching {
            max_batch_size: args.max_batch_size,
            dynamic: Some(DynamicBatching {
                preferred_batch_sizes: args.preferred_batch_size,
                max_queue_delay_us: Some(args.max_queue_delay_us),
            }),
        },
        instances: args.instances,
        preprocess_instances: args.preprocess_instances,
        warmup: !args.no_warmup,
        response_cache: args.response_cache,
        pixel_path: args.pixel_path,
        center_crop: match args.center_crop {
            CenterCropArg::Transformers => clip_image::CenterCrop::Transformers,
            CenterCropArg::Torchvision => clip_image::CenterCrop::Torchvision,
        },
        gpus: args.gpus,
        trt_accelerator: args.trt_accelerator,
        // Absolute: dlopen does not look in the working folder, and the backend
        // reads a relative ort_library inside the model's version folder.
        ort_library: args
            .ort_library
            .map(|p| std::path::absolute(&p).unwrap_or(p)),
        force: args.force,
        hub: HubOptions::from_env(),
    };
    let mut log = |line: &str| eprintln!("repo-gen: {line}");
    match generate(&options, &mut log) {
        Ok(generated) => {
            for note in &generated.notes {
                eprintln!("repo-gen: note: {note}");
            }
            eprintln!(
                "repo-gen: wrote {} models into {}: {}",
                generated.models.len(),
                generated.out.display(),
                generated.models.join(", ")
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("repo-gen: error: {e}");
            ExitCode::FAILURE
        }
    }
}
