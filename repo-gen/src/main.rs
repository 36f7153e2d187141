//! `repo-gen`: the command line of the repo_gen library.

use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use repo_gen::registry;

#[derive(Parser)]
#[command(
    name = "repo-gen",
    version,
    about = "Builds Triton model repositories that serve CLIP embeddings, no Python in the serving path",
    long_about = "Builds NVIDIA Triton model repositories that serve CLIP embeddings with no \
                  Python in the serving path.\n\n\
                  A repository holds the `clip` backend's text and image preprocessing models \
                  (tokenizer, image decode/resize/normalize) and ONNX text and image encoders. \
                  Models are named as in CLIP-as-service, ARCH::PRETRAINED (for example \
                  ViT-B-32::openai).\n\n\
                  Available now: `models`, the list of known models. Exporting a model (fetching \
                  its weights from the Hugging Face hub and writing the repository) is not \
                  implemented yet."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List the CLIP models repo-gen knows: name, embedding size, image size,
    /// activation, weights layout and Hugging Face repository.
    Models,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let text = match cli.command {
        Command::Models => registry::table(registry::all()),
    };
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
