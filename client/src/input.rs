//! What the user hands to `encode`: sentences and images, told apart the
//! way CLIP-as-service's client does, and images read on the client (the
//! server only ever receives bytes).

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;

use crate::error::{ItemError, ItemFailure};

/// Largest image the client downloads or reads from a `data:` URI.
const MAX_FETCH_BYTES: u64 = 256 << 20;
/// Per-download limit for `http(s)://` images.
const FETCH_TIMEOUT: Duration = Duration::from_secs(60);

/// File extensions that make a string an image path.
const IMAGE_EXTENSIONS: &[&str] = &[
    "jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff", "jfif",
];

/// Whether `path` has an image file extension (`.jpg`, `.png`, `.webp`,
/// ...), the rule `encode` and directory walks use to spot images.
pub fn has_image_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// Text or image: which ensemble an input goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Modality {
    Text,
    Image,
}

impl std::fmt::Display for Modality {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Modality::Text => "text",
            Modality::Image => "image",
        })
    }
}

/// Where an image's bytes come from.
#[derive(Debug, Clone, PartialEq)]
pub enum ImageSource {
    /// A local file (from a path or a `file://` URI).
    Path(PathBuf),
    /// An `http://` or `https://` URL, downloaded by the client.
    Url(String),
    /// A `data:` URI, decoded by the client.
    DataUri(String),
    /// Bytes already in memory.
    Bytes(Vec<u8>),
}

/// One thing to embed.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    Text(String),
    Image(ImageSource),
    /// An input already known to be unusable, e.g. a line of a list that is
    /// not UTF-8: it is neither a sentence nor an image, so it is never
    /// sent. `encode` reports it in its place, as that item's
    /// [`ItemFailure::Invalid`](crate::ItemFailure::Invalid), and goes on
    /// with the others; calls that need every input (rank, search,
    /// profile) fail with it. Made with [`Input::invalid`].
    Invalid {
        /// What to show for it (e.g. the line, with its bad bytes escaped).
        source: String,
        /// Why it cannot be used.
        reason: String,
    },
}

impl Input {
    /// Tells a sentence from an image reference:
    /// - `data:`, `http://`, `https://` and `file://` URIs are images;
    /// - so is a single-line string ending in an image extension (`.jpg`,
    ///   `.png`, ...), whether or not the file exists (a missing file is
    ///   then reported as that item's error, not embedded as a sentence);
    /// - so is a string with a `/` that names an existing file;
    /// - anything else is a sentence. Use [`Input::text`] to force text.
    pub fn detect(value: impl Into<String>) -> Input {
        let value = value.into();
        if value.starts_with("data:") {
            return Input::Image(ImageSource::DataUri(value));
        }
        if value.starts_with("http://") || value.starts_with("https://") {
            return Input::Image(ImageSource::Url(value));
        }
        if let Some(path) = file_uri_path(&value) {
            return Input::Image(ImageSource::Path(path));
        }
        let one_line = !value.contains('\n');
        let image_extension = has_image_extension(Path::new(&value));
        if one_line && (image_extension || (value.contains('/') && Path::new(&value).is_file())) {
            return Input::Image(ImageSource::Path(PathBuf::from(value)));
        }
        Input::Text(value)
    }

    /// A sentence, whatever it looks like.
    pub fn text(value: impl Into<String>) -> Input {
        Input::Text(value.into())
    }

    /// A local image file.
    pub fn image_path(path: impl Into<PathBuf>) -> Input {
        Input::Image(ImageSource::Path(path.into()))
    }

    /// An encoded image (JPEG, PNG, ...) already in memory.
    pub fn image_bytes(bytes: impl Into<Vec<u8>>) -> Input {
        Input::Image(ImageSource::Bytes(bytes.into()))
    }

    /// An input that fails as this item, with `reason`, without being
    /// sent: for what a caller's list holds but cannot turn into a sentence
    /// or an image (a line that is not UTF-8 must not become a different
    /// sentence). `source` is what reports show for it.
    pub fn invalid(source: impl Into<String>, reason: impl Into<String>) -> Input {
        Input::Invalid {
            source: source.into(),
            reason: reason.into(),
        }
    }

    /// The ensemble it goes to; `None` for [`Input::Invalid`], which goes
    /// to none.
    pub fn modality(&self) -> Option<Modality> {
        match self {
            Input::Text(_) => Some(Modality::Text),
            Input::Image(_) => Some(Modality::Image),
            Input::Invalid { .. } => None,
        }
    }

    /// Its modality, or, for [`Input::Invalid`], its error as input
    /// `index`.
    pub(crate) fn modality_or_error(&self, index: usize) -> Result<Modality, ItemError> {
        match self {
            Input::Text(_) => Ok(Modality::Text),
            Input::Image(_) => Ok(Modality::Image),
            Input::Invalid { reason, .. } => Err(ItemError {
                index,
                source_text: self.short_source(),
                failure: ItemFailure::Invalid(reason.clone()),
            }),
        }
    }

    /// The input as the user gave it: the sentence, path or URI
    /// (`<N bytes>` for in-memory images).
    pub fn source(&self) -> String {
        match self {
            Input::Text(text) => text.clone(),
            Input::Image(ImageSource::Path(path)) => path.display().to_string(),
            Input::Image(ImageSource::Url(url)) => url.clone(),
            Input::Image(ImageSource::DataUri(uri)) => uri.clone(),
            Input::Image(ImageSource::Bytes(bytes)) => format!("<{} bytes>", bytes.len()),
            Input::Invalid { source, .. } => source.clone(),
        }
    }

    /// [`Input::source`], cut to a length that fits an error message.
    pub fn short_source(&self) -> String {
        const MAX_CHARS: usize = 80;
        let source = self.source();
        match source.char_indices().nth(MAX_CHARS) {
            Some((cut, _)) => format!("{}...", &source[..cut]),
            None => source,
        }
    }
}

impl From<&str> for Input {
    fn from(value: &str) -> Self {
        Input::detect(value)
    }
}

impl From<String> for Input {
    fn from(value: String) -> Self {
        Input::detect(value)
    }
}

impl From<&String> for Input {
    fn from(value: &String) -> Self {
        Input::detect(value.as_str())
    }
}

impl From<PathBuf> for Input {
    fn from(path: PathBuf) -> Self {
        Input::image_path(path)
    }
}

impl From<&Path> for Input {
    fn from(path: &Path) -> Self {
        Input::image_path(path)
    }
}

/// The path of a `file://` URI (`file:///abs` or `file://localhost/abs`),
/// percent-decoded.
fn file_uri_path(value: &str) -> Option<PathBuf> {
    let rest = value.strip_prefix("file://")?;
    let rest = rest.strip_prefix("localhost").unwrap_or(rest);
    let bytes = percent_decode(rest);
    Some(PathBuf::from(String::from_utf8_lossy(&bytes).into_owned()))
}

/// Decodes `%XX` escapes; anything else is kept as is.
fn percent_decode(value: &str) -> Vec<u8> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    out
}

/// The payload of a `data:[<media type>][;base64],<data>` URI.
fn decode_data_uri(uri: &str) -> Result<Vec<u8>, String> {
    let body = uri.strip_prefix("data:").ok_or("not a data: URI")?;
    let (header, payload) = body
        .split_once(',')
        .ok_or("data: URI has no ',' before its payload")?;
    let bytes = if header.split(';').any(|p| p.eq_ignore_ascii_case("base64")) {
        // Whitespace is allowed inside base64 in URIs; padding may be absent.
        let cleaned: String = payload.chars().filter(|c| !c.is_whitespace()).collect();
        let cleaned = cleaned.trim_end_matches('=');
        base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(cleaned)
            .map_err(|e| format!("data: URI has invalid base64: {e}"))?
    } else {
        percent_decode(payload)
    };
    if bytes.len() as u64 > MAX_FETCH_BYTES {
        return Err(format!("data: URI holds more than {MAX_FETCH_BYTES} bytes"));
    }
    Ok(bytes)
}

/// Reads images for the client: local files, HTTP downloads, `data:` URIs.
/// Blocking; the encoder runs it off the async threads.
#[derive(Debug, Clone)]
pub(crate) struct ImageReader {
    agent: ureq::Agent,
}

impl ImageReader {
    pub(crate) fn new() -> ImageReader {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(FETCH_TIMEOUT))
            .user_agent(concat!("clip-client/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        ImageReader { agent }
    }

    /// The encoded image bytes, or why they could not be had.
    pub(crate) fn read(&self, source: &ImageSource) -> Result<Vec<u8>, String> {
        match source {
            ImageSource::Path(path) => {
                std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
            }
            ImageSource::DataUri(uri) => decode_data_uri(uri),
            ImageSource::Bytes(bytes) => Ok(bytes.clone()),
            ImageSource::Url(url) => {
                let mut response = self.agent.get(url).call().map_err(|e| match e {
                    ureq::Error::StatusCode(code) => format!("{url}: HTTP {code}"),
                    other => format!("{url}: {other}"),
                })?;
                response
                    .body_mut()
                    .with_config()
                    .limit(MAX_FETCH_BYTES)
                    .read_to_vec()
                    .map_err(|e| format!("{url}: {e}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_and_image_paths_are_images_everything_else_is_text() {
        let image = |s: &str| Input::detect(s).modality() == Some(Modality::Image);
        assert!(image("http://example.com/cat"));
        assert!(image("https://example.com/cat.jpg?size=2"));
        assert!(image("data:image/png;base64,iVBORw0KGgo="));
        assert!(image("file:///tmp/x"));
        assert!(image("photos/IMG_0001.JPG"));
        assert!(image("missing.webp"));
        assert!(!image("a photo of a cat"));
        assert!(!image("cat"));
        assert!(!image("I saved it as\ncat.png"));
        assert!(!image("httpd is a web server"));
    }

    #[test]
    fn an_existing_file_with_a_slash_is_an_image_whatever_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("IMG_0001");
        std::fs::write(&file, b"x").unwrap();
        let name = file.to_str().unwrap();
        assert_eq!(Input::detect(name), Input::image_path(&file));
        // Without a slash the same word stays a sentence.
        assert_eq!(Input::detect("IMG_0001").modality(), Some(Modality::Text));
        assert_eq!(Input::text(name).modality(), Some(Modality::Text));
    }

    #[test]
    fn file_uris_are_percent_decoded() {
        assert_eq!(
            Input::detect("file:///photos/my%20cat.jpg"),
            Input::image_path("/photos/my cat.jpg")
        );
        assert_eq!(
            Input::detect("file://localhost/a.png"),
            Input::image_path("/a.png")
        );
    }

    #[test]
    fn data_uris_decode_base64_and_percent_payloads() {
        assert_eq!(
            decode_data_uri("data:image/png;base64,AAEC").unwrap(),
            [0, 1, 2]
        );
        assert_eq!(decode_data_uri("data:;base64,AAE").unwrap(), [0, 1]);
        assert_eq!(decode_data_uri("data:,a%20b%zz").unwrap(), b"a b%zz");
        assert!(decode_data_uri("data:image/png;base64")
            .unwrap_err()
            .contains("','"));
        assert!(decode_data_uri("data:;base64,!!!!")
            .unwrap_err()
            .contains("base64"));
    }

    #[test]
    fn reader_reports_missing_files_and_bad_urls_by_name() {
        let reader = ImageReader::new();
        let err = reader
            .read(&ImageSource::Path("/nonexistent/x.jpg".into()))
            .unwrap_err();
        assert!(err.contains("/nonexistent/x.jpg"), "{err}");
        // Nothing listens on port 9 of localhost: connection refused.
        let err = reader
            .read(&ImageSource::Url("http://127.0.0.1:9/x.jpg".into()))
            .unwrap_err();
        assert!(err.contains("127.0.0.1:9"), "{err}");
    }

    #[test]
    fn reader_downloads_over_http() {
        // A one-shot HTTP server on a local port, serving 3 bytes.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            use std::io::{Read, Write};
            for status in ["200 OK", "404 Not Found"] {
                let (mut stream, _) = listener.accept().unwrap();
                let mut request = [0u8; 1024];
                let _ = stream.read(&mut request).unwrap();
                write!(
                    stream,
                    "HTTP/1.1 {status}\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc"
                )
                .unwrap();
            }
        });
        let reader = ImageReader::new();
        let url = format!("http://127.0.0.1:{port}/img.jpg");
        assert_eq!(reader.read(&ImageSource::Url(url.clone())).unwrap(), b"abc");
        let err = reader.read(&ImageSource::Url(url)).unwrap_err();
        assert!(err.contains("404"), "{err}");
        server.join().unwrap();
    }

    #[test]
    fn short_source_cuts_long_sentences_on_a_char_boundary() {
        let long = "é".repeat(100);
        let short = Input::text(long).short_source();
        assert_eq!(short.chars().count(), 83);
        assert!(short.ends_with("..."));
    }
}
