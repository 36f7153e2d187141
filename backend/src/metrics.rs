//! The backend's counters as Triton custom metrics, on the server's
//! `/metrics`. One counter family per metric name lives as long as the
//! backend (it is the backend's state); each model gets one counter per
//! series its kind reports, labelled with the model's name, deleted when the
//! model's last runner lets go of them. Triton unloads every model before
//! it finalizes the backend, so counters always go before their families.
//!
//! Metrics never fail a load: a family or counter Triton refuses (a server
//! built without metrics) is logged and not recorded.

use std::collections::HashMap;
use std::ffi::c_void;
use std::ptr::null_mut;
use std::sync::Arc;

use clip_backend_core::metrics::{Counter, Family, Metrics, Recorder};
use clip_contract::metric::label;
use triton_sys as sys;

use crate::status::{c_string, check, log, log_error, Failure};

/// The counter families, created once per backend.
struct Families(HashMap<Family, *mut sys::TRITONSERVER_MetricFamily>);

fn warn(message: &str) {
    log(
        sys::TRITONSERVER_loglevel_enum_TRITONSERVER_LOG_WARN,
        message,
    );
}

/// Creates every family and keeps them as the backend's state.
///
/// SAFETY: `backend` must be the live handle given to TRITONBACKEND_Initialize.
pub(crate) unsafe fn create_families(
    backend: *mut sys::TRITONBACKEND_Backend,
) -> Result<(), Failure> {
    let mut families = HashMap::new();
    for family in Family::ALL {
        let (name, help) = (c_string(family.name()), c_string(family.help()));
        let mut raw = null_mut();
        // SAFETY: C strings that outlive the call (Triton copies them); the out-pointer is a local.
        let created = check(unsafe {
            sys::TRITONSERVER_MetricFamilyNew(
                &mut raw,
                sys::TRITONSERVER_metrickind_enum_TRITONSERVER_METRIC_KIND_COUNTER,
                name.as_ptr(),
                help.as_ptr(),
            )
        });
        match created {
            Ok(()) => {
                families.insert(family, raw);
            }
            Err(message) => warn(&format!("{} is not recorded: {message}", family.name())),
        }
    }
    let state = Box::into_raw(Box::new(Families(families)));
    // SAFETY: `backend` is live (caller's contract); a state Triton refuses is freed here, once.
    check(unsafe { sys::TRITONBACKEND_BackendSetState(backend, state.cast()) }).map_err(|e| {
        // SAFETY: Triton did not take `state`, so it is still ours alone.
        drop(unsafe { Box::from_raw(state) });
        Failure::internal(e)
    })
}

/// Deletes the families.
///
/// SAFETY: `backend` must be the live handle given to TRITONBACKEND_Finalize,
/// whose models (and so their counters) are all gone.
pub(crate) unsafe fn delete_families(
    backend: *mut sys::TRITONBACKEND_Backend,
) -> Result<(), Failure> {
    let mut state = null_mut();
    // SAFETY: `backend` is live; its state, when set, is the Families Box set by create_families, taken back once here.
    unsafe {
        check(sys::TRITONBACKEND_BackendState(backend, &mut state)).map_err(Failure::internal)?;
        if state.is_null() {
            return Ok(());
        }
        let families = Box::from_raw(state.cast::<Families>());
        for (family, raw) in families.0 {
            if let Err(message) = check(sys::TRITONSERVER_MetricFamilyDelete(raw)) {
                log_error(&format!("could not delete {}: {message}", family.name()));
            }
        }
    }
    Ok(())
}

/// The counters of one model, recorded into by its kind from any thread.
struct ModelCounters(HashMap<Counter, *mut sys::TRITONSERVER_Metric>);

// SAFETY: the handles are only read, except in Drop (which has the value alone);
// Triton's counters are Prometheus counters, incremented atomically from any thread.
unsafe impl Send for ModelCounters {}
// SAFETY: as for Send: `add` only increments through the handles.
unsafe impl Sync for ModelCounters {}

impl Recorder for ModelCounters {
    fn add(&self, counter: Counter, value: f64) {
        // A counter whose family Triton refused is not recorded (warned once, at load).
        if let Some(&raw) = self.0.get(&counter) {
            // SAFETY: `raw` is a live metric until Drop. Increments fail only on a deleted
            // family or a negative value, neither of which happens here, so the result is ignored.
            let _ = check(unsafe { sys::TRITONSERVER_MetricIncrement(raw, value) });
        }
    }
}

impl Drop for ModelCounters {
    fn drop(&mut self) {
        for (counter, raw) in self.0.drain() {
            // SAFETY: `raw` was made by TRITONSERVER_MetricNew and is deleted once, here.
            if let Err(message) = check(unsafe { sys::TRITONSERVER_MetricDelete(raw) }) {
                log_error(&format!("could not delete {counter:?}: {message}"));
            }
        }
    }
}

/// A counter of `family` with these labels.
///
/// SAFETY: `family` must be a live metric family.
unsafe fn new_counter(
    family: *mut sys::TRITONSERVER_MetricFamily,
    labels: &[(&str, &str)],
) -> Result<*mut sys::TRITONSERVER_Metric, String> {
    let strings: Vec<_> = labels
        .iter()
        .map(|(name, value)| (c_string(name), c_string(value)))
        .collect();
    // SAFETY: the C strings outlive the calls; Triton copies a string parameter's value and
    // the labels' contents into the metric, so the parameters are deleted right after.
    unsafe {
        let parameters: Vec<*mut sys::TRITONSERVER_Parameter> = strings
            .iter()
            .map(|(name, value)| {
                sys::TRITONSERVER_ParameterNew(
                    name.as_ptr(),
                    sys::TRITONSERVER_parametertype_enum_TRITONSERVER_PARAMETER_STRING,
                    value.as_ptr().cast::<c_void>(),
                )
            })
            .collect();
        let mut pointers: Vec<*const sys::TRITONSERVER_Parameter> =
            parameters.iter().map(|p| p.cast_const()).collect();
        let mut raw = null_mut();
        let created = check(sys::TRITONSERVER_MetricNew(
            &mut raw,
            family,
            pointers.as_mut_ptr(),
            pointers.len() as u64,
        ));
        for parameter in parameters {
            sys::TRITONSERVER_ParameterDelete(parameter);
        }
        created.map(|()| raw)
    }
}

/// Model `name`'s counters (`counters`, labelled `model="name"`) in the
/// backend's families, and the [`Metrics`] its kind reports to.
///
/// SAFETY: `model` must be a live model handle of this backend.
pub(crate) unsafe fn model_metrics(
    model: *mut sys::TRITONBACKEND_Model,
    name: &str,
    counters: &[Counter],
) -> Result<Metrics, Failure> {
    // SAFETY: `model` is live; its backend's state is the Families Box set at
    // backend initialization, which lives until the backend is finalized, after this model.
    let families = unsafe {
        let (mut backend, mut state) = (null_mut(), null_mut());
        check(sys::TRITONBACKEND_ModelBackend(model, &mut backend)).map_err(Failure::internal)?;
        check(sys::TRITONBACKEND_BackendState(backend, &mut state)).map_err(Failure::internal)?;
        state
            .cast::<Families>()
            .as_ref()
            .ok_or_else(|| Failure::internal("the clip backend has no metric families"))?
    };
    let mut made = ModelCounters(HashMap::new());
    for &counter in counters {
        let Some(&family) = families.0.get(&counter.family) else {
            continue;
        };
        let mut labels = vec![(label::MODEL, name)];
        labels.extend(counter.label);
        // SAFETY: `family` lives as long as the backend, so longer than this model.
        match unsafe { new_counter(family, &labels) } {
            Ok(raw) => {
                made.0.insert(counter, raw);
            }
            Err(message) => warn(&format!(
                "model '{name}': {} {labels:?} is not recorded: {message}",
                counter.family.name()
            )),
        }
    }
    Ok(Metrics::new(Arc::new(made)))
}
