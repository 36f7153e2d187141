//! `clip-client`: the command line over the `clip_client` library.

mod npy;

use std::cell::RefCell;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use clip_client::{
    has_image_extension, Client, ClientOptions, ConnectOptions, EncodeOptions, Encoded, Input,
    TlsOptions,
};

use npy::NpyWriter;

/// Exit status when the job ran but some inputs failed.
const SOME_INPUTS_FAILED: u8 = 3;

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
}

#[derive(Args)]
struct Inputs {
    /// Sentences, image paths or URIs, or directories of images.
    inputs: Vec<String>,
    /// Also read inputs from this file, one per line ("-" for stdin).
    #[arg(long, short = 'f', value_name = "FILE")]
    from: Option<PathBuf>,
    /// Treat every input as a sentence, even if it looks like a path.
    #[arg(long)]
    text: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Embed inputs; write JSON lines (default, to stdout) or a .npy matrix.
    ///
    /// Row i of the output is input i. An input that fails is reported on
    /// stderr and in its JSON line ("error"), or as a row of NaN in .npy;
    /// the exit status is then 3.
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
            progress: self.progress,
        })
    }
}

/// Keeps the first error of a lazy input read, for after the job.
type ReadError = Rc<RefCell<Option<anyhow::Error>>>;

fn input_of(value: String, force_text: bool) -> Input {
    if force_text {
        Input::text(value)
    } else {
        Input::detect(value)
    }
}

/// Every image file under `dir`, in name order, found as the walk goes.
/// Symbolic links are followed (photo libraries often link), loops are
/// reported by walkdir as errors.
fn images_under(dir: PathBuf, errors: ReadError) -> impl Iterator<Item = Input> {
    walkdir::WalkDir::new(dir)
        .follow_links(true)
        .sort_by_file_name()
        .into_iter()
        .filter_map(move |entry| match entry {
            Ok(entry) => (entry.file_type().is_file() && has_image_extension(entry.path()))
                .then(|| Input::image_path(entry.into_path())),
            Err(error) => {
                errors.borrow_mut().get_or_insert(error.into());
                None
            }
        })
}

impl Inputs {
    /// The inputs, read lazily: arguments first, then `--from` lines;
    /// directories expand to their images.
    fn iter(self, errors: &ReadError) -> anyhow::Result<Box<dyn Iterator<Item = Input>>> {
        let lines: Box<dyn Iterator<Item = String>> = match &self.from {
            None => Box::new(std::iter::empty()),
            Some(path) => {
                let reader: Box<dyn BufRead> = if path == Path::new("-") {
                    Box::new(BufReader::new(std::io::stdin()))
                } else {
                    let file = File::open(path)
                        .with_context(|| format!("cannot open --from {}", path.display()))?;
                    Box::new(BufReader::new(file))
                };
                let errors = errors.clone();
                let path = path.clone();
                Box::new(reader.lines().map_while(move |line| match line {
                    Ok(line) => Some(line),
                    Err(error) => {
                        errors.borrow_mut().get_or_insert(
                            anyhow::Error::new(error)
                                .context(format!("reading {}", path.display())),
                        );
                        None
                    }
                }))
            }
        };
        let force_text = self.text;
        let errors = errors.clone();
        let values = self
            .inputs
            .into_iter()
            .chain(lines.filter(|l| !l.is_empty()));
        Ok(Box::new(values.flat_map(
            move |value| -> Box<dyn Iterator<Item = Input>> {
                if !force_text && Path::new(&value).is_dir() {
                    Box::new(images_under(PathBuf::from(value), errors.clone()))
                } else {
                    Box::new(std::iter::once(input_of(value, force_text)))
                }
            },
        )))
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

/// One JSON line per input: where it was, what it was, and its embedding
/// or error.
#[derive(serde::Serialize)]
struct JsonLine<'a> {
    index: usize,
    input: String,
    modality: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    embedding: Option<&'a [f32]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

impl<'a> JsonLine<'a> {
    fn of(item: &'a Encoded) -> Self {
        JsonLine {
            index: item.index,
            input: item.input.source(),
            modality: item.input.modality().to_string(),
            embedding: item.result.as_deref().ok(),
            error: item.result.as_ref().err().map(|e| e.failure.to_string()),
        }
    }
}

enum Sink {
    Npy(NpyWriter),
    Json(Box<dyn Write>),
}

async fn encode(
    client: &Client,
    inputs: Inputs,
    out: Option<PathBuf>,
    options: EncodeOptions,
) -> anyhow::Result<ExitCode> {
    let errors = ReadError::default();
    let inputs = inputs.iter(&errors)?;
    let mut sink = match &out {
        Some(path) if path.extension().is_some_and(|e| e == "npy") => Sink::Npy(
            NpyWriter::create(path).with_context(|| format!("cannot create {}", path.display()))?,
        ),
        Some(path) => Sink::Json(Box::new(BufWriter::new(
            File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
        ))),
        None => Sink::Json(Box::new(BufWriter::new(std::io::stdout().lock()))),
    };
    let start = Instant::now();
    let summary = client
        .encode_each(inputs, &options, |item| {
            if let Err(error) = &item.result {
                eprintln!("error: {error}");
            }
            let written = match (&mut sink, &item.result) {
                (Sink::Npy(npy), Ok(embedding)) => npy.push(embedding),
                (Sink::Npy(npy), Err(_)) => npy.push_missing(),
                (Sink::Json(out), _) => serde_json::to_writer(&mut *out, &JsonLine::of(&item))
                    .map_err(std::io::Error::from)
                    .and_then(|()| out.write_all(b"\n")),
            };
            written.map_err(|source| clip_client::Error::Io {
                context: "cannot write the output".into(),
                source,
            })
        })
        .await?;
    match sink {
        Sink::Npy(npy) => {
            let (rows, columns) = npy.finish().context("cannot finish the .npy file")?;
            eprintln!("wrote a {rows} x {columns} float32 matrix");
        }
        Sink::Json(mut out) => out.flush().context("cannot write the output")?,
    }
    if let Some(error) = errors.borrow_mut().take() {
        return Err(error.context("reading the inputs stopped early"));
    }
    let seconds = start.elapsed().as_secs_f64();
    let total = summary.encoded + summary.failed;
    eprintln!(
        "encoded {} of {total} inputs ({} failed) in {seconds:.2} s: {:.1} inputs/s",
        summary.encoded,
        summary.failed,
        total as f64 / seconds.max(1e-9)
    );
    Ok(if summary.failed > 0 {
        ExitCode::from(SOME_INPUTS_FAILED)
    } else {
        ExitCode::SUCCESS
    })
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let client = Client::connect_with(&cli.connection.server, cli.connection.options()?).await?;
    match cli.command {
        Command::Encode {
            inputs,
            out,
            normalize,
            batching,
        } => encode(&client, inputs, out, batching.options(normalize)?).await,
        Command::Rank {
            query,
            candidates,
            top,
            batching,
        } => {
            let errors = ReadError::default();
            let query = input_of(query, false);
            let candidates: Vec<Input> = candidates.iter(&errors)?.collect();
            if let Some(error) = errors.borrow_mut().take() {
                return Err(error);
            }
            if candidates.is_empty() {
                bail!("rank needs at least one candidate");
            }
            let ranked = client
                .rank(query, candidates, &batching.options(false)?)
                .await?;
            println!(
                "{:>4}  {:>10}  {:>7}  candidate",
                "rank", "clip_score", "cosine"
            );
            for (i, r) in ranked.iter().take(top.unwrap_or(usize::MAX)).enumerate() {
                println!(
                    "{:>4}  {:>10.4}  {:>7.4}  {}",
                    i + 1,
                    r.clip_score,
                    r.cosine,
                    r.input.source()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Index {
            index,
            inputs,
            batching,
        } => {
            let errors = ReadError::default();
            let inputs = inputs.iter(&errors)?;
            let start = Instant::now();
            let summary = client
                .index(
                    &index,
                    inputs,
                    &batching.options(false)?,
                    |_| {},
                    |error| eprintln!("error: {error}"),
                )
                .await?;
            if let Some(error) = errors.borrow_mut().take() {
                return Err(error.context("reading the inputs stopped early"));
            }
            println!(
                "added {} items ({} failed) in {:.2} s; {} now holds {} items",
                summary.added,
                summary.failed,
                start.elapsed().as_secs_f64(),
                index.display(),
                summary.total
            );
            Ok(if summary.failed > 0 {
                ExitCode::from(SOME_INPUTS_FAILED)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Search {
            index,
            query,
            limit,
            text,
        } => {
            let hits = client.search(&index, input_of(query, text), limit).await?;
            println!("{:>4}  {:>7}  {:<5}  source", "rank", "cosine", "kind");
            for (i, hit) in hits.iter().enumerate() {
                println!(
                    "{:>4}  {:>7.4}  {:<5}  {}",
                    i + 1,
                    hit.score,
                    hit.kind,
                    hit.source
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Profile {
            input,
            requests,
            text,
        } => {
            let profile = client.profile(input_of(input, text), requests).await?;
            print!("{profile}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Health => {
            let health = client.health().await?;
            print!("{health}");
            Ok(if health.ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Models => {
            let models = client.triton().repository_index().await?;
            println!("{:<28} {:<8} {:<12} details", "model", "version", "state");
            for m in &models {
                println!(
                    "{:<28} {:<8} {:<12} {}",
                    m.name, m.version, m.state, m.reason
                );
            }
            let health = client.health().await?;
            println!();
            for (name, info) in &health.models {
                match info {
                    Ok(info) => println!(
                        "{name}: {} ({}-d embeddings, max batch {}, logit scale {:.2}) via {}",
                        info.clip_model,
                        info.embedding_dim,
                        info.max_batch_size,
                        info.logit_scale(),
                        info.steps.join(" -> ")
                    ),
                    Err(reason) => println!("{name}: not usable: {reason}"),
                }
            }
            Ok(ExitCode::SUCCESS)
        }
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
