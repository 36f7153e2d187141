//! The whole job of `repo-gen`: from a model name, a folder of weights or a
//! folder of ONNX files to a Triton model repository.
//!
//! 1. Names and the output folder are checked before anything slow.
//! 2. [`crate::sources`] resolves the encoders: downloaded or local weights
//!    exported with clip-export and run once in ONNX Runtime (a probe
//!    batch), or ONNX files as they are.
//! 3. [`crate::repository`] assembles the six models from them (seven
//!    with `--pixel-path`).
//! 4. [`crate::staging`] writes them into a temporary folder beside the
//!    output folder and renames it into place at the end.

use std::path::PathBuf;

use crate::error::GenerateError;
use crate::options::Options;
use crate::repository::{self, ModelNames};
use crate::sources;
use crate::staging::{self, Staging};

/// What was written.
#[derive(Clone, Debug)]
pub struct Generated {
    pub out: PathBuf,
    pub models: Vec<String>,
    /// Things the user should know (fallbacks, what is left to do), for stderr.
    pub notes: Vec<String>,
}

/// Runs the whole job. `log` receives progress lines (for stderr).
pub fn generate(options: &Options, log: &mut dyn FnMut(&str)) -> Result<Generated, GenerateError> {
    let names = ModelNames::new(&options.name_prefix)?;
    options.check()?;
    staging::check_out(&options.out, options.force)?;

    let prepared = sources::prepare(options, log)?;
    let assembled = repository::assemble(options, &names, prepared)?;

    log(&format!("writing {}", options.out.display()));
    let staging = Staging::new(&options.out)?;
    for model in &assembled.models {
        model.write_into(staging.root())?;
    }
    if let Some((name, script)) = &assembled.script {
        staging::write_executable(&staging.root().join(name), script)?;
    }
    staging.commit()?;
    Ok(Generated {
        out: options.out.clone(),
        models: assembled.models.iter().map(|m| m.name.clone()).collect(),
        notes: assembled.notes,
    })
}
