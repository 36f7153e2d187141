//! The inputs of a command: arguments, `--from` lines and directory walks,
//! read lazily. A part of the list that cannot be read (a directory that
//! cannot be walked, a `--from` file that fails mid-way) is an error value
//! in the list, kept by [`InputList`] to be reported once the job is done.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

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

/// The non-empty lines of `--from`. A line that cannot be read ends the
/// file with that error: what follows it cannot be trusted to be there.
fn lines_of(path: &Path) -> anyhow::Result<impl Iterator<Item = anyhow::Result<String>>> {
    let reader: Box<dyn BufRead> = if path == Path::new("-") {
        Box::new(BufReader::new(std::io::stdin()))
    } else {
        let file =
            File::open(path).with_context(|| format!("cannot open --from {}", path.display()))?;
        Box::new(BufReader::new(file))
    };
    let path = path.to_path_buf();
    let mut failed = false;
    Ok(reader
        .lines()
        .enumerate()
        .map_while(move |(number, line)| {
            if failed {
                return None;
            }
            failed = line.is_err();
            Some(line.with_context(|| {
                format!(
                    "reading --from {} stopped at line {}",
                    path.display(),
                    number + 1
                )
            }))
        })
        .filter(|line| !matches!(line, Ok(l) if l.is_empty())))
}

impl Inputs {
    /// The inputs in order: arguments first, then `--from` lines;
    /// directories expand to their images.
    pub fn read(self) -> anyhow::Result<InputList> {
        let force_text = self.text;
        let is_dir = move |value: &str| !force_text && Path::new(value).is_dir();
        let known_len = (self.from.is_none() && !self.inputs.iter().any(|v| is_dir(v)))
            .then_some(self.inputs.len() as u64);
        let lines: Box<dyn Iterator<Item = anyhow::Result<String>>> = match &self.from {
            None => Box::new(std::iter::empty()),
            Some(path) => Box::new(lines_of(path)?),
        };
        let values = self.inputs.into_iter().map(Ok).chain(lines);
        let listed = values.flat_map(move |value| -> Box<dyn Iterator<Item = Listed>> {
            match value {
                Ok(value) if is_dir(&value) => Box::new(images_under(PathBuf::from(value))),
                Ok(value) => Box::new(std::iter::once(Ok(input_of(value, force_text)))),
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
    fn an_unreadable_line_ends_the_list_and_fails_it_after_the_good_inputs() {
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("list.txt");
        std::fs::write(&list, b"first\n\xff\xfe\nnever read\n").unwrap();
        let mut read = inputs(&["arg"], Some(list)).read().unwrap();
        let got: Vec<Input> = read.by_ref().collect();
        assert_eq!(got, [Input::text("arg"), Input::text("first")]);
        let err = read.finish().unwrap_err().to_string();
        assert!(err.contains("1 error(s)"), "{err}");
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
