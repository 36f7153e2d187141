//! What the preprocessing kinds share: they keep no per-instance state, so
//! every instance of a model runs the model's one copy, on the CPU.

use std::sync::Arc;

use crate::batch::{bytes_elements, check_element_sizes, BatchOutput, Request, RequestError};
use crate::kind::{Device, Runner};
use crate::metrics::{Metrics, Reason};

/// A preprocessing step: stateless per batch, so every instance shares it.
pub(super) trait Preprocess: Send + Sync {
    fn execute(&self, batch: &[Result<Request<'_>, RequestError>]) -> BatchOutput;
}

/// The runner of a preprocessing model's instances: the model's one copy.
/// Preprocessing always runs on the CPU, whatever the instance group says.
pub(super) struct Shared<P: ?Sized>(pub(super) Arc<P>);

impl<P: Preprocess + ?Sized> Runner for Shared<P> {
    fn device(&self) -> Device {
        Device::Cpu
    }

    fn execute(&mut self, batch: &[Result<Request<'_>, RequestError>]) -> BatchOutput {
        self.0.execute(batch)
    }
}

/// A preprocessing request's BYTES elements. The request is refused, and
/// counted once, when its input is missing or malformed, or when an element
/// is over `limit` bytes (checked before any element is worked on).
pub(super) fn request_elements<'d>(
    tensor: &str,
    request: &'d Result<Request<'_>, RequestError>,
    (limit, parameter): (usize, &str),
    metrics: &Metrics,
) -> Result<Vec<&'d [u8]>, RequestError> {
    let elements = request
        .as_ref()
        .map_err(Clone::clone)
        .and_then(Request::first)
        .and_then(|input| bytes_elements(tensor, input))
        .inspect_err(|e| metrics.rejected(Reason::of_request(e)))?;
    check_element_sizes(tensor, &elements, limit, parameter)
        .inspect_err(|_| metrics.rejected(Reason::TooLarge))?;
    Ok(elements)
}
