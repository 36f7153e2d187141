//! The repository is written into a temporary folder beside `--out` and
//! moved into place at the end, so a failure leaves no half-written
//! repository behind.

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{io, GenerateError};

/// Refuses a file, and a non-empty folder without `force`.
pub(crate) fn check_out(out: &Path, force: bool) -> Result<(), GenerateError> {
    match fs::metadata(out) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io(out)(e)),
        Ok(meta) if !meta.is_dir() => Err(GenerateError::Invalid(format!(
            "--out {} exists and is not a folder",
            out.display()
        ))),
        Ok(_) => {
            let mut entries = fs::read_dir(out).map_err(io(out))?;
            if entries.next().is_some() && !force {
                Err(GenerateError::NotEmpty(out.to_path_buf()))
            } else {
                Ok(())
            }
        }
    }
}

/// A repository being written. Dropped without [`Staging::commit`], its
/// folder is removed.
pub(crate) struct Staging {
    dir: tempfile::TempDir,
    out: PathBuf,
}

impl Staging {
    /// A fresh folder beside `out` (same file system, so the final rename is atomic).
    pub(crate) fn new(out: &Path) -> Result<Self, GenerateError> {
        Ok(Staging {
            dir: temp_beside(out)?,
            out: out.to_path_buf(),
        })
    }

    /// Where to write the repository's contents.
    pub(crate) fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Moves the staged repository into place. A missing or empty `out` is
    /// replaced whole; into a non-empty one (`--force`) each entry is moved,
    /// replacing one of the same name, and put back if a move fails.
    pub(crate) fn commit(self) -> Result<(), GenerateError> {
        let (staging, out) = (self.dir, self.out.as_path());
        let is_empty_dir = fs::read_dir(out).map(|mut e| e.next().is_none());
        match is_empty_dir {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                fs::rename(staging.path(), out).map_err(io(out))?;
                return Ok(());
            }
            Err(e) => return Err(io(out)(e)),
            Ok(true) => {
                fs::remove_dir(out).map_err(io(out))?;
                fs::rename(staging.path(), out).map_err(io(out))?;
                return Ok(());
            }
            Ok(false) => {}
        }
        let backup = temp_beside(out)?;
        let mut moved: Vec<(PathBuf, Option<PathBuf>)> = Vec::new();
        let entries: Vec<_> = fs::read_dir(staging.path())
            .map_err(io(staging.path()))?
            .filter_map(Result::ok)
            .collect();
        let result = (|| -> Result<(), GenerateError> {
            for entry in entries {
                let target = out.join(entry.file_name());
                let saved = if fs::symlink_metadata(&target).is_ok() {
                    let saved = backup.path().join(entry.file_name());
                    fs::rename(&target, &saved).map_err(io(&target))?;
                    Some(saved)
                } else {
                    None
                };
                moved.push((target.clone(), saved));
                fs::rename(entry.path(), &target).map_err(io(&target))?;
            }
            Ok(())
        })();
        if result.is_err() {
            for (target, saved) in moved.into_iter().rev() {
                let _ = remove_any(&target);
                if let Some(saved) = saved {
                    let _ = fs::rename(saved, &target);
                }
            }
        }
        result
    }
}

fn temp_beside(out: &Path) -> Result<tempfile::TempDir, GenerateError> {
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&parent).map_err(io(&parent))?;
    tempfile::Builder::new()
        .prefix(".repo-gen-")
        .tempdir_in(&parent)
        .map_err(io(&parent))
}

fn remove_any(path: &Path) -> std::io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) => Err(e),
    }
}

/// Writes a script that the user runs (`sh` or directly).
#[cfg(unix)]
pub(crate) fn write_executable(path: &Path, contents: &str) -> Result<(), GenerateError> {
    use std::os::unix::fs::PermissionsExt;
    fs::write(path, contents).map_err(io(path))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).map_err(io(path))
}

#[cfg(not(unix))]
pub(crate) fn write_executable(path: &Path, contents: &str) -> Result<(), GenerateError> {
    fs::write(path, contents).map_err(io(path))
}
