//! What the preprocessing kinds share: they keep no per-instance state, so
//! every instance of a model runs the model's one copy, on the CPU.

use std::sync::Arc;

use crate::batch::{BatchOutput, Input, RequestError};
use crate::kind::{Device, Runner};

/// A preprocessing step: stateless per batch, so every instance shares it.
pub(super) trait Preprocess: Send + Sync {
    fn execute(&self, batch: &[Result<Input<'_>, RequestError>]) -> BatchOutput;
}

/// The runner of a preprocessing model's instances: the model's one copy.
/// Preprocessing always runs on the CPU, whatever the instance group says.
pub(super) struct Shared<P: ?Sized>(pub(super) Arc<P>);

impl<P: Preprocess + ?Sized> Runner for Shared<P> {
    fn device(&self) -> Device {
        Device::Cpu
    }

    fn execute(&mut self, batch: &[Result<Input<'_>, RequestError>]) -> BatchOutput {
        self.0.execute(batch)
    }
}
