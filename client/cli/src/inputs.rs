//! The inputs of a command: arguments, `--from` lines and directory walks,
//! read lazily. A part of the list that cannot be read (a directory that
//! cannot be walked, a `--from` file that fails mid-way) is an error value
//! in the list, kept by [`InputList`] to be reported once the job is done.
//! A `--from` line that is read but is not UTF-8 is an input of its own, an
//! [`Input::Invalid`]: the library reports it as that item's error, in its
//! row, and the lines after it are still read.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::string::FromUtf8Error;

use anyhow::{bail, Context};
use clap::Args;
use clip_client::{has_image_extension, Input};

#[derive(Args)]
pub struct Inputs {
    /// Sentences, image paths or URIs, or directories of images.
    inputs: Vec<String>,
    /// Also read inputs from this file, one per line ("-" for stdin).
    #[arg(long, short = 'f', value_name = "FILE")]
    from: Option<PathBuf>,
    /// Treat every input as a sentence, even if it looks like a path.
    #[arg(long)]
    text: bool,
}

/// A sentence or an image reference, as the user wrote it.
pub fn input_of(value: String, force_text: bool) -> Input {
    if force_text {
        Input::text(value)
    } else {
        Input::detect(value)
    }
}

type Listed = anyhow::Result<Input>;

/// Every image file under `dir`, in name order, found as the walk goes.
/// Symbolic links are followed (photo libraries often link); walkdir
/// reports loops and unreadable folders as errors, and the walk goes on.
fn images_under(dir: PathBuf) -> impl Iterator<Item = Listed> {
    walkdir::WalkDir::new(dir)
        .follow_links(true)
        .sort_by_file_name()
        .into_iter()
        .filter_map(|entry| match entry {
            Ok(entry) => (entry.file_type().is_file() && has_image_extension(entry.path()))
                .then(|| Ok(Input::image_path(entry.into_path()))),
            Err(error) => Some(Err(
                anyhow::Error::new(error).context("cannot walk a directory")
            )),
        })
}

/// An argument or a `--from` line: text to tell a sentence from an image
/// by, or a line that is not UTF-8, already the input that reports it.
#[derive(Debug, PartialEq)]
enum Value {
    Text(String),
    Invalid(Input),
}

/// The [`Input::Invalid`] for line `number` of `--from name`: shown with
/// its bad bytes escaped (`\xff`), never turned into some other sentence.
fn not_utf8(name: &str, number: usize, error: FromUtf8Error) -> Input {
    let reason = format!(
        "line {number} of --from {name} is not valid UTF-8 ({})",
        error.utf8_error()
    );
    let mut shown = String::new();
    for chunk in error.as_bytes().utf8_chunks() {
        shown.push_str(chunk.valid());
        for byte in chunk.invalid() {
            shown.push_str(&format!("\\x{byte:02x}"));
        }
    }
    Input::invalid(shown, reason)
}

/// The non-empty lines of `reader` (`--from name`), without their `\n` or
/// `\r\n`, read as bytes: a line that is not UTF-8 is a
/// [`Value::Invalid`] and the next line is read as usual. A line that
/// cannot be read at all (an I/O error) ends the list with that error:
/// what follows it cannot be trusted to be there.
fn lines_from(
    mut reader: impl BufRead,
    name: String,
) -> impl Iterator<Item = anyhow::Result<Value>> {
    let mut number = 0;
    let mut ended = false;
    std::iter::from_fn(move || {
        while !ended {
            number += 1;
            let mut line = Vec::new();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) => ended = true,
                Ok(_) => {
                    if line.last() == Some(&b'\n') {
                        line.pop();
                        if line.last() == Some(&b'\r') {
                            line.pop();
                        }
                    }
                    if line.is_empty() {
                        continue;
                    }
                    return Some(Ok(match String::from_utf8(line) {
                        Ok(text) => Value::Text(text),
                        Err(error) => Value::Invalid(not_utf8(&name, number, error)),
                    }));
                }
                Err(error) => {
                    ended = true;
                    return Some(Err(anyhow::Error::new(error)
                        .context(format!("reading --from {name} stopped at line {number}"))));
                }
            }
        }
        None
    })
}

/// The values of the `--from` file at `path` (`-` for stdin), lazily.
fn lines_of(path: &Path) -> anyhow::Result<impl Iterator<Item = anyhow::Result<Value>>> {
    let reader: Box<dyn BufRead> = if path == Path::new("-") {
        Box::new(BufReader::new(std::io::stdin()))
    } else {
        let file =
            File::open(path).with_context(|| format!("cannot open --from {}", path.display()))?;
        Box::new(BufReader::new(file))
    };
    Ok(lines_from(reader, path.display().to_string()))
}

impl Inputs {
    /// The inputs in order: arguments first, then `--from` lines;
    /// directories expand to their images.
    pub fn read(self) -> anyhow::Result<InputList> {
        let force_text = self.text;
        let is_dir = move |value: &str| !force_text && Path::new(value).is_dir();
        let known_len = (self.from.is_none() && !self.inputs.iter().any(|v| is_dir(v)))
            .then_some(self.inputs.len() as u64);
        let lines: Box<dyn Iterator<Item = anyhow::Result<Value>>> = match &self.from {
            None => Box::new(std::iter::empty()),
            Some(path) => Box::new(lines_of(path)?),
        };
        let arguments = self.inputs.into_iter().map(|v| Ok(Value::Text(v)));
        let listed =
            arguments
                .chain(lines)
                .flat_map(move |value| -> Box<dyn Iterator<Item = Listed>> {
                    match value {
                        Ok(Value::Text(value)) if is_dir(&value) => {
                            Box::new(images_under(PathBuf::from(value)))
                        }
                        Ok(Value::Text(value)) => {
                            Box::new(std::iter::once(Ok(input_of(value, force_text))))
                        }
                        Ok(Value::Invalid(input)) => Box::new(std::iter::once(Ok(input))),
                        Err(error) => Box::new(std::iter::once(Err(error))),
                    }
                });
        Ok(InputList {
            listed: Box::new(listed),
            known_len,
            errors: Vec::new(),
        })
    }
}

/// The inputs, for the library to pull lazily, and the errors met while
/// listing them. Lend it with `by_ref()` and call [`InputList::finish`]
/// after the job.
pub struct InputList {
    listed: Box<dyn Iterator<Item = Listed>>,
    known_len: Option<u64>,
    errors: Vec<anyhow::Error>,
}

impl InputList {
    /// How many inputs there are, when that is known without reading them
    /// (no `--from`, no directory).
    pub fn known_len(&self) -> Option<u64> {
        self.known_len
    }

    /// Fails, after printing each one, if any part of the list could not
    /// be read; the inputs that were read have had their results.
    pub fn finish(self) -> anyhow::Result<()> {
        for error in &self.errors {
            eprintln!("error: {error:#}");
        }
        match self.errors.len() {
            0 => Ok(()),
            n => bail!("not every input could be listed ({n} error(s) above)"),
        }
    }
}

impl Iterator for InputList {
    type Item = Input;

    fn next(&mut self) -> Option<Input> {
        loop {
            match self.listed.next()? {
                Ok(input) => return Some(input),
                Err(error) => self.errors.push(error),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(values: &[&str], from: Option<PathBuf>) -> Inputs {
        Inputs {
            inputs: values.iter().map(|v| v.to_string()).collect(),
            from,
            text: false,
        }
    }

    #[test]
    fn arguments_then_lines_then_directories_expanded_in_name_order() {
        let dir = tempfile::tempdir().unwrap();
        let photos = dir.path().join("photos");
        std::fs::create_dir_all(photos.join("sub")).unwrap();
        for name in ["b.jpg", "a.png", "notes.txt", "sub/c.webp"] {
            std::fs::write(photos.join(name), b"x").unwrap();
        }
        let list = dir.path().join("list.txt");
        std::fs::write(&list, "a dog\n\nx.jpg\n").unwrap();
        let mut read = inputs(&["a cat", photos.to_str().unwrap()], Some(list))
            .read()
            .unwrap();
        assert_eq!(read.known_len(), None);
        let got: Vec<Input> = read.by_ref().collect();
        assert_eq!(
            got,
            [
                Input::text("a cat"),
                Input::image_path(photos.join("a.png")),
                Input::image_path(photos.join("b.jpg")),
                Input::image_path(photos.join("sub/c.webp")),
                Input::text("a dog"),
                Input::image_path("x.jpg"),
            ]
        );
        read.finish().unwrap();
        assert_eq!(
            inputs(&["a", "b"], None).read().unwrap().known_len(),
            Some(2)
        );
    }

    #[test]
    fn lines_are_read_as_bytes_without_their_line_ends_and_empty_ones_skipped() {
        let file: &[u8] =
            b"\xff\xfe first\nok one\r\n\r\n\ncaf\xe9 au lait\n\xc3\nx.jpg\nin\rside\nlast \xff";
        let got: Vec<Value> = lines_from(file, "list.txt".into())
            .map(Result::unwrap)
            .collect();
        let bad = |number: usize, shown: &str, error: &str| {
            Value::Invalid(Input::invalid(
                shown,
                format!("line {number} of --from list.txt is not valid UTF-8 ({error})"),
            ))
        };
        let text = |t: &str| Value::Text(t.into());
        assert_eq!(
            got,
            [
                bad(
                    1,
                    "\\xff\\xfe first",
                    "invalid utf-8 sequence of 1 bytes from index 0"
                ),
                text("ok one"),
                bad(
                    5,
                    "caf\\xe9 au lait",
                    "invalid utf-8 sequence of 1 bytes from index 3"
                ),
                bad(6, "\\xc3", "incomplete utf-8 byte sequence from index 0"),
                text("x.jpg"),
                text("in\rside"),
                bad(
                    9,
                    "last \\xff",
                    "invalid utf-8 sequence of 1 bytes from index 5"
                ),
            ]
        );
        // Valid UTF-8 around the bad bytes is shown as it is.
        let shown = |bytes: &[u8]| match lines_from(bytes, "-".into()).next() {
            Some(Ok(Value::Invalid(input))) => input.source(),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            shown(b"caf\xc3\xa9 \xe2\x82 \xf0\x9f\x90\xb1\n"),
            "café \\xe2\\x82 🐱"
        );
    }

    #[test]
    fn a_line_that_is_not_utf8_is_an_invalid_input_in_its_place_and_the_list_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("list.txt");
        std::fs::write(&list, b"first\n\xff\xfe\nstill read.png\n").unwrap();
        let mut read = inputs(&["arg"], Some(list.clone())).read().unwrap();
        let got: Vec<Input> = read.by_ref().collect();
        let reason = format!(
            "line 2 of --from {} is not valid UTF-8 \
             (invalid utf-8 sequence of 1 bytes from index 0)",
            list.display()
        );
        assert_eq!(
            got,
            [
                Input::text("arg"),
                Input::text("first"),
                Input::invalid("\\xff\\xfe", reason),
                Input::image_path("still read.png"),
            ]
        );
        // Not an error of the list: the library reports it as an item.
        read.finish().unwrap();
        // --text does not make it a sentence either.
        let mut forced = inputs(&[], Some(list));
        forced.text = true;
        let got: Vec<Input> = forced.read().unwrap().collect();
        assert_eq!(got[1].modality(), None);
        assert_eq!(got[2], Input::text("still read.png"));
    }

    #[test]
    fn an_io_error_mid_file_ends_the_list_after_the_lines_before_it() {
        /// Its bytes, then an I/O error instead of the end of the file.
        struct FailsAtTheEnd(&'static [u8]);
        impl std::io::Read for FailsAtTheEnd {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                match self.0.read(buf)? {
                    0 => Err(std::io::Error::other("the disk went away")),
                    n => Ok(n),
                }
            }
        }
        let reader = BufReader::new(FailsAtTheEnd(b"a\n\xff\npartial"));
        let got: Vec<anyhow::Result<Value>> = lines_from(reader, "list.txt".into()).collect();
        assert_eq!(got.len(), 3, "{got:?}");
        assert_eq!(got[0].as_ref().unwrap(), &Value::Text("a".into()));
        assert!(matches!(got[1], Ok(Value::Invalid(_))), "{got:?}");
        let err = format!("{:#}", got[2].as_ref().unwrap_err());
        assert_eq!(
            err,
            "reading --from list.txt stopped at line 3: the disk went away"
        );
    }

    #[test]
    fn a_directory_loop_is_an_error_and_the_walk_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let photos = dir.path().join("photos");
        std::fs::create_dir(&photos).unwrap();
        std::fs::write(photos.join("a.jpg"), b"x").unwrap();
        std::fs::write(photos.join("z.jpg"), b"x").unwrap();
        std::os::unix::fs::symlink(&photos, photos.join("m-loop")).unwrap();
        let mut read = inputs(&[photos.to_str().unwrap()], None).read().unwrap();
        let got: Vec<Input> = read.by_ref().collect();
        assert_eq!(
            got,
            [
                Input::image_path(photos.join("a.jpg")),
                Input::image_path(photos.join("z.jpg")),
            ]
        );
        assert!(read.finish().is_err());
    }

    #[test]
    fn a_missing_from_file_is_refused_before_the_job() {
        let err = inputs(&[], Some("/nonexistent/list.txt".into()))
            .read()
            .err()
            .unwrap();
        assert!(err.to_string().contains("/nonexistent/list.txt"), "{err}");
    }
}
