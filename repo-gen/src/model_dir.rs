//! One model of a repository as it goes onto disk: `<name>/config.pbtxt` and
//! the version folder `<name>/1/` with its files. Every model type renders
//! into a [`ModelDir`], and repo-gen and the tests write them the same way.

use std::fs;
use std::path::{Path, PathBuf};

use clip_export::OnnxModel;

use crate::render::{check_name, RenderError};
use crate::warmup::{WarmupFile, WARMUP_FOLDER};

/// Version folder every generated model is written into.
pub const VERSION: &str = "1";

/// A model folder: its config, the files of its version folder, and the
/// data files of its warmup samples.
#[derive(Debug)]
pub struct ModelDir {
    pub name: String,
    pub config: String,
    pub files: Vec<VersionFile>,
    pub warmup: Vec<WarmupFile>,
}

/// A file of the version folder.
#[derive(Debug)]
pub struct VersionFile {
    /// Its name inside the version folder.
    pub name: String,
    pub source: FileSource,
}

/// Where a file's contents come from.
#[derive(Debug)]
pub enum FileSource {
    /// A file on disk, copied.
    Copy(PathBuf),
    /// An ONNX file used as it is, and the external data files it names
    /// (relative to it), copied beside it.
    OnnxFile {
        path: PathBuf,
        external: Vec<PathBuf>,
    },
    /// An ONNX model in memory; its external data, if any, goes beside it.
    Onnx(OnnxModel),
}

impl FileSource {
    /// Bytes it takes on disk (0 when a file to copy cannot be read; the copy then says why).
    pub fn bytes(&self) -> u64 {
        match self {
            FileSource::Copy(path) => fs::metadata(path).map(|m| m.len()).unwrap_or(0),
            FileSource::OnnxFile { path, external } => {
                let folder = path.parent().unwrap_or(Path::new(""));
                std::iter::once(path.clone())
                    .chain(external.iter().map(|file| folder.join(file)))
                    .map(|file| fs::metadata(file).map(|m| m.len()).unwrap_or(0))
                    .sum()
            }
            FileSource::Onnx(model) => {
                (model.model.len() + model.external_data.as_ref().map_or(0, |d| d.bytes.len()))
                    as u64
            }
        }
    }
}

impl VersionFile {
    pub fn new(name: impl Into<String>, source: FileSource) -> Self {
        VersionFile {
            name: name.into(),
            source,
        }
    }
}

impl ModelDir {
    /// Writes `<repository>/<name>/config.pbtxt` and `<name>/1/` with the
    /// files. Returns the model folder.
    pub fn write_into(&self, repository: &Path) -> Result<PathBuf, RenderError> {
        check_name(&self.name)?;
        let model = repository.join(&self.name);
        let version = model.join(VERSION);
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| RenderError::Io { path, source }
        };
        fs::create_dir_all(&version).map_err(io(&version))?;
        let config_path = model.join("config.pbtxt");
        fs::write(&config_path, &self.config).map_err(io(&config_path))?;
        if !self.warmup.is_empty() {
            let folder = model.join(WARMUP_FOLDER);
            fs::create_dir_all(&folder).map_err(io(&folder))?;
            for file in &self.warmup {
                let path = folder.join(&file.name);
                fs::write(&path, &file.bytes).map_err(io(&path))?;
            }
        }
        for file in &self.files {
            let copy = |from: &Path, to: PathBuf| {
                if let Some(parent) = to.parent() {
                    fs::create_dir_all(parent).map_err(io(parent))?;
                }
                fs::copy(from, &to).map_err(|source| RenderError::Copy {
                    from: from.to_path_buf(),
                    to,
                    source,
                })
            };
            match &file.source {
                FileSource::Copy(from) => {
                    copy(from, version.join(&file.name))?;
                }
                FileSource::OnnxFile { path, external } => {
                    copy(path, version.join(&file.name))?;
                    let folder = path.parent().unwrap_or(Path::new(""));
                    for data in external {
                        copy(&folder.join(data), version.join(data))?;
                    }
                }
                FileSource::Onnx(onnx) => {
                    onnx.write(&version, &file.name)
                        .map_err(|source| RenderError::Onnx {
                            dir: version.clone(),
                            source,
                        })?;
                }
            }
        }
        Ok(model)
    }
}
