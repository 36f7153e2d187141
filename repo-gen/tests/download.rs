//! Downloads against a local stand-in for the Hugging Face hub.
//!
//! The real hub is never contacted: each test starts its own HTTP server on
//! 127.0.0.1 that answers `/{repo}/resolve/{revision}/{file}` the way the
//! hub does for hf-hub 0.4 (ETag, X-Repo-Commit, Range requests answered
//! with 206 and Content-Range), and counts what it is asked. The endpoint is
//! given through `HubOptions`, so no test touches environment variables.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use repo_gen::download::{self, DownloadError, HubOptions};
use repo_gen::registry::{self, ModelSpec, WeightsLayout};

const REPO: &str = "test-org/tiny-clip";
const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

/// What the mirror answers for one path.
#[derive(Clone)]
enum Reply {
    File(Vec<u8>),
    Status(u16),
}

/// One request the mirror saw.
#[derive(Clone, Debug)]
struct Seen {
    path: String,
    range: Option<String>,
    authorization: Option<String>,
}

struct Mirror {
    endpoint: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    port: u16,
    thread: Option<JoinHandle<()>>,
}

impl Mirror {
    fn start(replies: HashMap<String, Reply>) -> Mirror {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let replies = Arc::new(replies);
        let thread = {
            let (seen, stop) = (seen.clone(), stop.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let (seen, replies) = (seen.clone(), replies.clone());
                    std::thread::spawn(move || serve(stream, &replies, &seen));
                }
            })
        };
        Mirror {
            endpoint: format!("http://127.0.0.1:{port}"),
            seen,
            stop,
            port,
            thread: Some(thread),
        }
    }

    fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Mirror {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so that it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One request per connection (`Connection: close`), as much of HTTP/1.1 as hf-hub uses.
fn serve(stream: TcpStream, replies: &HashMap<String, Reply>, seen: &Mutex<Vec<Seen>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
        return;
    }
    let (mut range, mut authorization) = (None, None);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("range") {
                range = Some(value.trim().to_owned());
            } else if name.eq_ignore_ascii_case("authorization") {
                authorization = Some(value.trim().to_owned());
            }
        }
    }
    let path = request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or("")
        .to_owned();
    seen.lock().unwrap().push(Seen {
        path: path.clone(),
        range: range.clone(),
        authorization,
    });

    let mut out = stream;
    let response = match replies.get(&path) {
        Some(Reply::File(bytes)) => file_response(bytes, range.as_deref()),
        Some(Reply::Status(status)) => head(*status, &[("Content-Length", "0".into())], &[]),
        None => head(
            404,
            &[
                ("Content-Length", "0".into()),
                ("X-Error-Code", "EntryNotFound".into()),
            ],
            &[],
        ),
    };
    let _ = out.write_all(&response);
    let _ = out.flush();
    let _ = out.shutdown(Shutdown::Both);
}

fn file_response(bytes: &[u8], range: Option<&str>) -> Vec<u8> {
    let total = bytes.len();
    let mut headers = vec![
        ("ETag", format!("\"{}\"", etag(bytes))),
        ("X-Repo-Commit", COMMIT.to_owned()),
        ("Accept-Ranges", "bytes".to_owned()),
    ];
    match range.and_then(|r| r.strip_prefix("bytes=")) {
        Some(spec) => {
            let (start, end) = spec.split_once('-').unwrap();
            let start: usize = start.parse().unwrap();
            let end: usize = if end.is_empty() {
                total - 1
            } else {
                end.parse::<usize>().unwrap().min(total - 1)
            };
            let body = &bytes[start..=end];
            headers.push(("Content-Range", format!("bytes {start}-{end}/{total}")));
            headers.push(("Content-Length", body.len().to_string()));
            head(206, &headers, body)
        }
        None => {
            headers.push(("Content-Length", total.to_string()));
            head(200, &headers, bytes)
        }
    }
}

fn head(status: u16, headers: &[(&str, String)], body: &[u8]) -> Vec<u8> {
    let reason = match status {
        200 => "OK",
        206 => "Partial Content",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        _ => "Error",
    };
    let mut out = format!("HTTP/1.1 {status} {reason}\r\nConnection: close\r\n");
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

/// A content hash standing in for the hub's (the cache names blobs by it).
fn etag(bytes: &[u8]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// A registry entry whose files live in the test repository.
fn test_spec() -> ModelSpec {
    let mut spec = *registry::lookup("ViT-B-32::openai").unwrap();
    spec.hub.repo = REPO;
    spec
}

/// The three files of the test model, with distinct contents.
fn files() -> Vec<(&'static str, Vec<u8>)> {
    let weights: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    vec![
        ("config.json", br#"{"model_type": "clip"}"#.to_vec()),
        ("model.safetensors", weights),
        ("tokenizer.json", br#"{"model": {"type": "BPE"}}"#.to_vec()),
    ]
}

fn url_path(file: &str) -> String {
    format!("/{REPO}/resolve/main/{file}")
}

fn full_mirror() -> Mirror {
    Mirror::start(
        files()
            .into_iter()
            .map(|(file, bytes)| (url_path(file), Reply::File(bytes)))
            .collect(),
    )
}

fn options(cache: &Path, endpoint: &str) -> HubOptions {
    HubOptions::new(cache).with_endpoint(endpoint)
}

/// An endpoint on which nothing listens.
fn dead_endpoint() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

fn assert_contents(paths: &download::ModelFiles) {
    let expected = files();
    assert_eq!(std::fs::read(&paths.config).unwrap(), expected[0].1);
    assert_eq!(std::fs::read(&paths.weights).unwrap(), expected[1].1);
    assert_eq!(std::fs::read(&paths.tokenizer).unwrap(), expected[2].1);
}

#[test]
fn full_download_fills_the_cache_in_hub_layout() {
    let mirror = full_mirror();
    let cache = tempfile::tempdir().unwrap();
    let got = download::fetch(&test_spec(), &options(cache.path(), &mirror.endpoint)).unwrap();

    assert_eq!(got.layout, WeightsLayout::Transformers);
    assert_contents(&got);
    let snapshot = cache
        .path()
        .join("models--test-org--tiny-clip")
        .join("snapshots")
        .join(COMMIT);
    assert_eq!(got.config, snapshot.join("config.json"));
    assert_eq!(got.weights, snapshot.join("model.safetensors"));
    assert_eq!(got.tokenizer, snapshot.join("tokenizer.json"));
    let main_ref = cache.path().join("models--test-org--tiny-clip/refs/main");
    assert_eq!(std::fs::read_to_string(main_ref).unwrap(), COMMIT);

    // Per file: a one-byte metadata probe, then the body.
    let requests = mirror.requests();
    assert_eq!(requests.len(), 6, "{requests:?}");
    for (file, _) in files() {
        let for_file: Vec<&Seen> = requests
            .iter()
            .filter(|s| s.path == url_path(file))
            .collect();
        assert_eq!(for_file.len(), 2, "{file}: {requests:?}");
        assert_eq!(for_file[0].range.as_deref(), Some("bytes=0-0"));
        assert_eq!(for_file[1].range.as_deref(), Some("bytes=0-"));
    }
}

#[test]
fn second_run_is_served_from_the_cache() {
    let mirror = full_mirror();
    let cache = tempfile::tempdir().unwrap();
    let options = options(cache.path(), &mirror.endpoint);
    let first = download::fetch(&test_spec(), &options).unwrap();
    let after_first = mirror.requests().len();

    let second = download::fetch(&test_spec(), &options).unwrap();
    assert_eq!(first, second);
    assert_eq!(
        mirror.requests().len(),
        after_first,
        "the cache was bypassed"
    );
}

#[test]
fn interrupted_download_resumes_from_its_part_file() {
    let mirror = full_mirror();
    let cache = tempfile::tempdir().unwrap();
    let weights = files().remove(1).1;
    let blobs = cache.path().join("models--test-org--tiny-clip/blobs");
    std::fs::create_dir_all(&blobs).unwrap();
    let part = blobs.join(format!("{}.part", etag(&weights)));
    std::fs::write(&part, &weights[..123_456]).unwrap();

    let got = download::fetch(&test_spec(), &options(cache.path(), &mirror.endpoint)).unwrap();
    assert_contents(&got);
    let weight_requests: Vec<Seen> = mirror
        .requests()
        .into_iter()
        .filter(|s| s.path == url_path("model.safetensors"))
        .collect();
    assert_eq!(
        weight_requests.last().unwrap().range.as_deref(),
        Some("bytes=123456-"),
        "{weight_requests:?}"
    );
    assert!(!part.exists());
}

#[test]
fn offline_mode_uses_a_filled_cache_without_any_request() {
    let mirror = full_mirror();
    let cache = tempfile::tempdir().unwrap();
    let online = download::fetch(&test_spec(), &options(cache.path(), &mirror.endpoint)).unwrap();
    let before = mirror.requests().len();

    // Offline with a dead endpoint: the network must not be needed.
    let offline = options(cache.path(), &dead_endpoint()).with_offline(true);
    let got = download::fetch(&test_spec(), &offline).unwrap();
    assert_eq!(got, online);
    assert_contents(&got);
    assert_eq!(mirror.requests().len(), before);
}

#[test]
fn offline_mode_with_an_empty_cache_names_what_is_missing() {
    let cache = tempfile::tempdir().unwrap();
    let offline = options(cache.path(), &dead_endpoint()).with_offline(true);
    let err = download::fetch(&test_spec(), &offline).unwrap_err();
    let DownloadError::NotCached { missing, .. } = &err else {
        panic!("expected NotCached, got {err:?}");
    };
    assert_eq!(
        missing,
        &["config.json", "model.safetensors", "tokenizer.json"]
    );
    assert_eq!(
        err.to_string(),
        format!(
            "HF_HUB_OFFLINE is set and the cache at {} has no config.json, model.safetensors, \
             tokenizer.json of test-org/tiny-clip (revision main). Run once without \
             HF_HUB_OFFLINE where the hub (or an HF_ENDPOINT mirror) is reachable, or pass \
             --weights DIR with the files",
            cache.path().display()
        )
    );
}

#[test]
fn offline_mode_with_a_partial_cache_names_only_the_missing_file() {
    let mirror = Mirror::start(
        files()
            .into_iter()
            .filter(|(file, _)| *file != "tokenizer.json")
            .map(|(file, bytes)| (url_path(file), Reply::File(bytes)))
            .collect(),
    );
    let cache = tempfile::tempdir().unwrap();
    let err = download::fetch(&test_spec(), &options(cache.path(), &mirror.endpoint)).unwrap_err();
    assert!(matches!(err, DownloadError::NotFound { .. }), "{err:?}");

    let offline = options(cache.path(), &mirror.endpoint).with_offline(true);
    let before = mirror.requests().len();
    let err = download::fetch(&test_spec(), &offline).unwrap_err();
    let DownloadError::NotCached { missing, .. } = &err else {
        panic!("expected NotCached, got {err:?}");
    };
    assert_eq!(missing, &["tokenizer.json"]);
    assert_eq!(mirror.requests().len(), before);
}

#[test]
fn unreachable_endpoint_says_what_to_do() {
    let cache = tempfile::tempdir().unwrap();
    let endpoint = dead_endpoint();
    let err = download::fetch(&test_spec(), &options(cache.path(), &endpoint)).unwrap_err();
    let DownloadError::Unreachable {
        endpoint: named,
        file,
        ..
    } = &err
    else {
        panic!("expected Unreachable, got {err:?}");
    };
    assert_eq!(named, &endpoint);
    assert_eq!(file, "config.json");
    let message = err.to_string();
    for needle in [
        format!("cannot reach the Hugging Face hub at {endpoint}"),
        "fetching config.json of test-org/tiny-clip".to_owned(),
        "HF_ENDPOINT".to_owned(),
        "HF_HUB_OFFLINE=1".to_owned(),
        cache.path().display().to_string(),
        "--weights DIR".to_owned(),
    ] {
        assert!(message.contains(&needle), "{needle:?} not in: {message}");
    }
}

#[test]
fn missing_file_is_a_404_naming_repo_and_revision() {
    let mirror = Mirror::start(HashMap::new());
    let cache = tempfile::tempdir().unwrap();
    let err = download::fetch(&test_spec(), &options(cache.path(), &mirror.endpoint)).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{} has no config.json in test-org/tiny-clip at revision main (HTTP 404); \
             if the repository changed, pass --weights DIR with the files",
            mirror.endpoint
        )
    );
}

#[test]
fn gated_repository_asks_for_a_token() {
    let mirror = Mirror::start(HashMap::from([(
        url_path("config.json"),
        Reply::Status(401),
    )]));
    let cache = tempfile::tempdir().unwrap();
    let err = download::fetch(&test_spec(), &options(cache.path(), &mirror.endpoint)).unwrap_err();
    assert!(
        matches!(err, DownloadError::Denied { status: 401, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("set HF_TOKEN"), "{err}");
}

#[test]
fn token_is_sent_as_a_bearer_header() {
    let mirror = full_mirror();
    let cache = tempfile::tempdir().unwrap();
    let options =
        options(cache.path(), &format!("{}/", mirror.endpoint)).with_token(Some("hf_x".into()));
    assert_eq!(options.endpoint, mirror.endpoint);
    let got = download::fetch(&test_spec(), &options).unwrap();
    assert_contents(&got);
    let requests = mirror.requests();
    assert!(!requests.is_empty());
    for seen in requests {
        assert_eq!(
            seen.authorization.as_deref(),
            Some("Bearer hf_x"),
            "{seen:?}"
        );
    }
}

#[test]
fn server_that_is_not_a_hub_is_named_as_such() {
    // A plain web server: 200 without ETag / X-Repo-Commit.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut line = String::new();
        while reader.read_line(&mut line).unwrap() > 2 {
            line.clear();
        }
        let _ = stream
            .write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nhi");
    });
    let cache = tempfile::tempdir().unwrap();
    let err = download::fetch(&test_spec(), &options(cache.path(), &endpoint)).unwrap_err();
    server.join().unwrap();
    assert!(matches!(err, DownloadError::Hub { .. }), "{err:?}");
    assert!(
        err.to_string().contains("is this a Hugging Face hub"),
        "{err}"
    );
}

#[test]
fn the_tokenizer_alone_is_fetched_for_onnx_files() {
    let mirror = full_mirror();
    let cache = tempfile::tempdir().unwrap();
    let options = options(cache.path(), &mirror.endpoint);
    let path = download::fetch_tokenizer(&test_spec().hub, &options).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), files()[2].1);
    let requests = mirror.requests();
    assert!(
        requests
            .iter()
            .all(|s| s.path == url_path("tokenizer.json")),
        "only the tokenizer is asked for: {requests:?}"
    );
    // Offline, from the cache it filled.
    let again = download::fetch_tokenizer(&test_spec().hub, &options.with_offline(true)).unwrap();
    assert_eq!(again, path);
}

#[test]
fn mclip_fetches_its_text_tower_and_only_the_image_towers_weights() {
    const TEXT_REPO: &str = "test-org/tiny-mclip";
    let mut spec = *registry::lookup("M-CLIP/XLM-Roberta-Large-Vit-B-32").unwrap();
    spec.hub.repo = REPO;
    let mut text = spec.multilingual.unwrap();
    text.hub.repo = TEXT_REPO;
    spec.multilingual = Some(text);
    let text_files = [
        ("config.json", br#"{"model_type": "M-CLIP"}"#.to_vec()),
        ("pytorch_model.bin", b"PK\x03\x04 a torch zip".to_vec()),
        (
            "tokenizer.json",
            br#"{"model": {"type": "Unigram"}}"#.to_vec(),
        ),
    ];
    let mut replies: HashMap<String, Reply> = files()
        .into_iter()
        .map(|(file, bytes)| (url_path(file), Reply::File(bytes)))
        .collect();
    for (file, bytes) in &text_files {
        replies.insert(
            format!("/{TEXT_REPO}/resolve/main/{file}"),
            Reply::File(bytes.clone()),
        );
    }
    let mirror = Mirror::start(replies);
    let cache = tempfile::tempdir().unwrap();
    let got = download::fetch(&spec, &options(cache.path(), &mirror.endpoint)).unwrap();

    let expected = files();
    assert_eq!(std::fs::read(&got.config).unwrap(), expected[0].1);
    assert_eq!(std::fs::read(&got.weights).unwrap(), expected[1].1);
    // The tokenizer is the multilingual tower's; the CLIP's is never asked for.
    assert_eq!(std::fs::read(&got.tokenizer).unwrap(), text_files[2].1);
    let text = got.multilingual.expect("the text tower's files");
    assert_eq!(std::fs::read(&text.config).unwrap(), text_files[0].1);
    assert_eq!(std::fs::read(&text.weights).unwrap(), text_files[1].1);
    let requests = mirror.requests();
    assert!(
        !requests
            .iter()
            .any(|s| s.path == url_path("tokenizer.json")),
        "{requests:?}"
    );
}

#[test]
fn a_repository_without_safetensors_gives_its_pytorch_checkpoint() {
    let checkpoint = b"PK\x03\x04 a torch zip".to_vec();
    let mut replies: HashMap<String, Reply> = files()
        .into_iter()
        .filter(|(file, _)| *file != "model.safetensors")
        .map(|(file, bytes)| (url_path(file), Reply::File(bytes)))
        .collect();
    replies.insert(
        url_path("pytorch_model.bin"),
        Reply::File(checkpoint.clone()),
    );
    let mirror = Mirror::start(replies);
    let cache = tempfile::tempdir().unwrap();
    let got = download::fetch(&test_spec(), &options(cache.path(), &mirror.endpoint)).unwrap();
    assert!(got.weights.ends_with("pytorch_model.bin"), "{got:?}");
    assert_eq!(std::fs::read(&got.weights).unwrap(), checkpoint);
    // Offline, the cache it filled serves it again.
    let offline = options(cache.path(), &mirror.endpoint).with_offline(true);
    assert_eq!(download::fetch(&test_spec(), &offline).unwrap(), got);

    // Neither file: the error names the safetensors file.
    let mirror = Mirror::start(
        files()
            .into_iter()
            .filter(|(file, _)| *file != "model.safetensors")
            .map(|(file, bytes)| (url_path(file), Reply::File(bytes)))
            .collect(),
    );
    let cache = tempfile::tempdir().unwrap();
    let err = download::fetch(&test_spec(), &options(cache.path(), &mirror.endpoint)).unwrap_err();
    let DownloadError::NotFound { file, .. } = &err else {
        panic!("expected NotFound, got {err:?}");
    };
    assert_eq!(file, "model.safetensors");
}
