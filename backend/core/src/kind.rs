//! The one narrow seam between the Triton plumbing and the CLIP logic.
//!
//! A [`Kind`] is loaded once per model; it makes one [`Runner`] per model
//! instance, which answers that instance's batches.

use std::sync::Arc;

use crate::batch::{BatchOutput, Request, RequestError};

/// Where Triton placed a model instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Device {
    Cpu,
    /// KIND_GPU, with the CUDA device id.
    Gpu(i32),
}

/// One model instance, as Triton describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instance {
    pub name: String,
    pub device: Device,
}

/// One model kind of the `clip` backend.
pub trait Kind: Send + Sync {
    /// The input tensors read from every request, in the order a
    /// [`Request`] holds them; warmup samples feed the first.
    fn input_names(&self) -> Vec<&str>;

    /// What one instance of the model runs its batches with; called once
    /// per instance. An `Err` fails that instance's, and so the model's, load.
    fn runner(self: Arc<Self>, instance: &Instance) -> Result<Box<dyn Runner>, String>;
}

/// Answers the batches of one model instance. Triton calls an instance from
/// one thread at a time, hence `&mut self`.
pub trait Runner: Send {
    /// Where the work really runs.
    fn device(&self) -> Device;

    /// One buffer for the whole batch and one result per request, in order:
    /// its rows of the buffer, or its error. An `Err` fails that request
    /// alone; a request whose input could not even be read arrives as one.
    fn execute(&mut self, batch: &[Result<Request<'_>, RequestError>]) -> BatchOutput;
}

/// A KIND_CPU instance (tests).
#[cfg(test)]
pub(crate) fn cpu_instance() -> Instance {
    Instance {
        name: "test_0".into(),
        device: Device::Cpu,
    }
}
