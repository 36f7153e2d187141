//! `clip-client`: the command line over the `clip_client` library.

mod commands;
mod inputs;
mod npy;
mod output;
mod progress;
mod verify;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand, ValueEnum};
use clip_client::{Client, ClientOptions, ConnectOptions, EncodeOptions, Preprocess, TlsOptions};

use inputs::Inputs;

#[derive(Parser)]
#[command(
    name = "clip-client",
    version,
    about = "Encode, rank, index and search with CLIP served on Triton.",
    long_about = "Encode, rank, index and search with CLIP served on Triton.\n\n\
        Inputs are sentences or images, told apart automatically: a path with an image \
        extension (.jpg, .png, .webp, ...), an existing file path with a '/', a file://, \
        http(s):// or data: URI is an image; anything else is a sentence. A directory \
        stands for every image file under it. Images are read by this client; the server \
        only receives their bytes."
)]
struct Cli {
    #[command(flatten)]
    connection: Connection,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct Connection {
    /// Triton's gRPC address: grpc://host:port, or grpcs://host:port for TLS.
    /// Several servers of one deployment, comma-separated (or a name that
    /// resolves to several addresses, as a Kubernetes headless service does),
    /// share the work; one that fails leaves the rotation and is tried again later.
    #[arg(
        long,
        short = 's',
        env = "CLIP_SERVER",
        default_value = "grpc://localhost:8001",
        global = true
    )]
    server: String,
    /// The --name-prefix the repository was generated with.
    #[arg(long, default_value = "", global = true)]
    name_prefix: String,
    /// PEM file of the CA that signed the server's certificate (grpcs://).
    #[arg(long, global = true, value_name = "PEM")]
    ca: Option<PathBuf>,
    /// PEM client certificate for mutual TLS (with --key).
    #[arg(long, global = true, value_name = "PEM", requires = "key")]
    cert: Option<PathBuf>,
    /// PEM private key of --cert.
    #[arg(long, global = true, value_name = "PEM", requires = "cert")]
    key: Option<PathBuf>,
    /// Name to check the server's certificate against, if not the host.
    #[arg(long, global = true, value_name = "NAME")]
    tls_domain: Option<String>,
    /// Request metadata for every call, "Name: value" (repeatable), e.g.
    /// "Authorization: Bearer TOKEN" for a proxy in front of Triton.
    #[arg(
        long = "header",
        short = 'H',
        global = true,
        value_name = "NAME: VALUE"
    )]
    headers: Vec<String>,
    /// Seconds each call may take.
    #[arg(long, default_value_t = 120, global = true, value_name = "SECONDS")]
    timeout: u64,
    /// Retries of a call that failed transiently (server restarting,
    /// connection lost), with doubling waits from 200 ms.
    #[arg(long, default_value_t = 3, global = true)]
    retries: u32,
}

#[derive(Args, Clone)]
struct Batching {
    /// Inputs per request.
    #[arg(long, short = 'b', default_value_t = 32)]
    batch_size: usize,
    /// Requests in flight at once.
    #[arg(long, short = 'c', default_value_t = 4)]
    concurrency: usize,
    /// Show a progress bar on stderr.
    #[arg(long)]
    progress: bool,
    /// Where images are decoded, resized and cropped: by the server (the files are sent),
    /// or here, with the server's own code and settings, sending only the crop's pixels to
    /// the pixel path's model (a repository written with repo-gen --pixel-path).
    #[arg(long, value_enum, default_value_t = PreprocessArg::Server)]
    preprocess: PreprocessArg,
}

#[derive(Clone, Copy, ValueEnum)]
enum PreprocessArg {
    Server,
    Local,
}

#[derive(Subcommand)]
enum Command {
    /// Embed inputs; write JSON lines (default, to stdout) or a .npy matrix.
    ///
    /// Row i of the output is input i. An input that fails is reported on
    /// stderr and in its JSON line ("error"), or as a row of NaN in .npy;
    /// the exit status is then 3. If the job stops (no server answers), every
    /// input not yet encoded still gets its row, saying why, and the exit
    /// status is 1.
    Encode {
        #[command(flatten)]
        inputs: Inputs,
        /// Output file: *.npy for a float32 matrix, anything else for JSON lines.
        #[arg(long, short = 'o', value_name = "FILE")]
        out: Option<PathBuf>,
        /// Scale each embedding to unit length.
        #[arg(long)]
        normalize: bool,
        #[command(flatten)]
        batching: Batching,
    },
    /// Order candidates by their match with a query (an image against
    /// sentences, or a sentence against images), with CLIP's softmax score.
    Rank {
        /// The sentence or image to rank against.
        query: String,
        #[command(flatten)]
        candidates: Inputs,
        /// Show only the best N.
        #[arg(long)]
        top: Option<usize>,
        #[command(flatten)]
        batching: Batching,
    },
    /// Embed inputs and append them, with their source, to an on-disk index
    /// (created on first use). Each request's items are durable once reported.
    Index {
        /// Index directory.
        index: PathBuf,
        #[command(flatten)]
        inputs: Inputs,
        #[command(flatten)]
        batching: Batching,
    },
    /// The indexed items nearest to a sentence or an image, by cosine.
    Search {
        /// Index directory.
        index: PathBuf,
        /// The sentence or image to search for.
        query: String,
        /// How many results.
        #[arg(long, short = 'n', default_value_t = 10)]
        limit: usize,
        /// Treat the query as a sentence, even if it looks like a path.
        #[arg(long)]
        text: bool,
    },
    /// Where the time of one request goes: network, server, each model.
    Profile {
        /// The sentence or image to send.
        input: String,
        /// Requests to average over.
        #[arg(long, default_value_t = 10)]
        requests: u64,
        /// Treat the input as a sentence, even if it looks like a path.
        #[arg(long)]
        text: bool,
    },
    /// Whether the server is up and both CLIP ensembles can be used.
    Health,
    /// Every model on the server with its state, and the CLIP facts of the ensembles.
    Models,
    /// Compare every server's embeddings of the conformance probes (sentences
    /// and photos) with those repo-gen stored in the repository. Exit status 4
    /// when a probe's cosine is below the threshold or an ensemble cannot be
    /// checked: other weights, other normalisation, a lossy build.
    Verify {
        /// Lowest cosine similarity a probe may have.
        #[arg(long, default_value_t = clip_client::DEFAULT_MIN_COSINE)]
        min_cosine: f32,
    },
}

impl Batching {
    fn options(&self, normalize: bool) -> anyhow::Result<EncodeOptions> {
        if self.batch_size == 0 || self.concurrency == 0 {
            bail!("--batch-size and --concurrency must be at least 1");
        }
        Ok(EncodeOptions {
            batch_size: self.batch_size,
            concurrency: self.concurrency,
            normalize,
            preprocess: match self.preprocess {
                PreprocessArg::Server => Preprocess::Server,
                PreprocessArg::Local => Preprocess::Local,
            },
        })
    }
}

fn read_pem(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {what} {}", path.display()))
}

impl Connection {
    fn options(&self) -> anyhow::Result<ClientOptions> {
        let headers = self
            .headers
            .iter()
            .map(|h| {
                let (name, value) = h
                    .split_once(':')
                    .with_context(|| format!("--header {h:?} is not \"Name: value\""))?;
                Ok((name.trim().to_owned(), value.trim().to_owned()))
            })
            .collect::<anyhow::Result<_>>()?;
        let client_identity = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => Some((read_pem(cert, "--cert")?, read_pem(key, "--key")?)),
            _ => None,
        };
        Ok(ClientOptions {
            connect: ConnectOptions {
                tls: TlsOptions {
                    ca_pem: self
                        .ca
                        .as_deref()
                        .map(|p| read_pem(p, "--ca"))
                        .transpose()?,
                    client_identity,
                    domain: self.tls_domain.clone(),
                },
                headers,
                call_timeout: Duration::from_secs(self.timeout),
                retries: self.retries,
                ..ConnectOptions::default()
            },
            name_prefix: self.name_prefix.clone(),
        })
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let client = Client::connect_with(&cli.connection.server, cli.connection.options()?).await?;
    match cli.command {
        Command::Encode {
            inputs,
            out,
            normalize,
            batching,
        } => commands::encode(&client, inputs, out.as_deref(), normalize, &batching).await,
        Command::Rank {
            query,
            candidates,
            top,
            batching,
        } => commands::rank(&client, query, candidates, top, &batching).await,
        Command::Index {
            index,
            inputs,
            batching,
        } => commands::index(&client, &index, inputs, &batching).await,
        Command::Search {
            index,
            query,
            limit,
            text,
        } => commands::search(&client, &index, query, limit, text).await,
        Command::Profile {
            input,
            requests,
            text,
        } => commands::profile(&client, input, requests, text).await,
        Command::Health => commands::health(&client).await,
        Command::Models => commands::models(&client).await,
        Command::Verify { min_cosine } => verify::verify(&client, min_cosine).await,
    }
}

/// Caps glibc's malloc arenas at two. Each thread that allocates (async
/// workers, image-reading threads) may otherwise get an arena of its own,
/// and the batches' megabytes spread over them: peak memory then grows with
/// the length of the job instead of staying flat (measured: 84 -> 98 MB for
/// 1,000 -> 10,000 photos; with two arenas 60 -> 67 MB).
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; it is called before
    // any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

fn main() -> ExitCode {
    limit_malloc_arenas();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        // Image reads run on blocking threads; a small pool keeps memory flat
        // (each new thread can bring its own malloc arena).
        .max_blocking_threads(8)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
