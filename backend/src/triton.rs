//! The backend's lifecycle: every exported `TRITONBACKEND_*` entry point,
//! from loading the backend to answering a batch. Each entry point catches
//! panics, so none crosses into the server.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::ptr::{null, null_mut};
use std::sync::Arc;

use clip_backend_core::batch::{Request, RequestError};
use clip_backend_core::kind::{Device, Instance, Kind, Runner};
use clip_backend_core::warmup::WarmupCheck;
use clip_backend_core::{config, kinds, metrics};
use triton_sys as sys;

use crate::io::{read_input, respond, respond_error};
use crate::metrics::{create_families, delete_families, model_metrics};
use crate::status::{
    check, guarded, log, log_error, log_info, now_ns, ort_log_sink, owned, panic_message, Failure,
    RawError,
};

/// The header version this file was written against; the server may be newer.
const API_MAJOR: u32 = 1;
const API_MINOR: u32 = 16;

struct ModelState {
    name: String,
    kind: Arc<dyn Kind>,
    warmup: WarmupCheck,
}

/// What one model instance answers its batches with.
struct InstanceState {
    name: String,
    /// The inputs read from every request, in the order the kind takes them.
    input_names: Vec<String>,
    runner: Box<dyn Runner>,
}

#[no_mangle]
pub unsafe extern "C" fn TRITONBACKEND_Initialize(
    backend: *mut sys::TRITONBACKEND_Backend,
) -> RawError {
    guarded("TRITONBACKEND_Initialize", || {
        // SAFETY: Triton calls this once with its backend; the out-pointers are locals.
        unsafe {
            let (mut major, mut minor) = (0u32, 0u32);
            check(sys::TRITONBACKEND_ApiVersion(&mut major, &mut minor))
                .map_err(Failure::internal)?;
            if major != API_MAJOR || minor < API_MINOR {
                return Err(Failure {
                code: sys::TRITONSERVER_errorcode_enum_TRITONSERVER_ERROR_UNSUPPORTED,
                message: format!(
                    "the clip backend needs Triton backend API {API_MAJOR}.{API_MINOR} or a newer {API_MAJOR}.x; the server offers {major}.{minor}"
                ),
            });
            }
            create_families(backend)?;
            log_info(&format!(
                "clip backend {} loaded (backend API {major}.{minor})",
                env!("CARGO_PKG_VERSION")
            ));
            Ok(())
        }
    })
}

#[no_mangle]
pub unsafe extern "C" fn TRITONBACKEND_Finalize(
    backend: *mut sys::TRITONBACKEND_Backend,
) -> RawError {
    // SAFETY: Triton calls this once, with the backend it initialized, after every model of it is gone.
    guarded("TRITONBACKEND_Finalize", || unsafe {
        delete_families(backend)
    })
}

#[no_mangle]
pub unsafe extern "C" fn TRITONBACKEND_ModelInitialize(
    model: *mut sys::TRITONBACKEND_Model,
) -> RawError {
    guarded("TRITONBACKEND_ModelInitialize", || {
        // SAFETY: `model` is the live handle Triton passed to this entry point; out-pointers are locals, and the strings Triton returns live as long as the model.
        unsafe {
            let mut name = null();
            check(sys::TRITONBACKEND_ModelName(model, &mut name)).map_err(Failure::internal)?;
            let name = owned(name);
            let mut version = 0u64;
            check(sys::TRITONBACKEND_ModelVersion(model, &mut version))
                .map_err(Failure::internal)?;

            let (mut artifact, mut location) = (0, null());
            check(sys::TRITONBACKEND_ModelRepository(
                model,
                &mut artifact,
                &mut location,
            ))
            .map_err(Failure::internal)?;
            if artifact != sys::TRITONBACKEND_artifacttype_enum_TRITONBACKEND_ARTIFACT_FILESYSTEM {
                return Err(Failure::invalid(format!(
                "model '{name}': the clip backend reads models from a filesystem repository only"
            )));
            }
            let model_dir = PathBuf::from(owned(location));
            let version_dir = model_dir.join(version.to_string());

            let config_json = model_config_json(model)?;
            let spec = config::parse(&config_json).map_err(|e| Failure::invalid(e.to_string()))?;
            let metrics = model_metrics(model, &name, &metrics::counters(&spec))?;
            let kind = kinds::load(spec, &version_dir, Some(ort_log_sink()), metrics)
                .map_err(|e| Failure::invalid(format!("model '{name}': {e}")))?;
            let inputs = kind.input_names().join("', '");
            // Warmup samples are checked for the first input: the BYTES one of
            // the preprocessing kinds.
            let first = kind.input_names()[0].to_owned();
            let warmup = WarmupCheck::from_config(&config_json, &first, &model_dir)
                .map_err(|e| Failure::invalid(format!("model '{name}': {e}")))?;
            log_info(&format!(
                "model '{name}' version {version}: ready, reads input '{inputs}'"
            ));

            let state = Box::new(ModelState { name, kind, warmup });
            check(sys::TRITONBACKEND_ModelSetState(
                model,
                Box::into_raw(state).cast(),
            ))
            .map_err(Failure::internal)
        }
    })
}

/// SAFETY: `model` must be a valid model handle.
unsafe fn model_config_json(model: *mut sys::TRITONBACKEND_Model) -> Result<String, Failure> {
    // SAFETY: `model` is a valid handle (caller's contract); the serialized buffer belongs to `message`, read before it is deleted.
    unsafe {
        let mut message = null_mut();
        check(sys::TRITONBACKEND_ModelConfig(model, 1, &mut message)).map_err(Failure::internal)?;
        let (mut base, mut size) = (null(), 0usize);
        let serialized = check(sys::TRITONSERVER_MessageSerializeToJson(
            message, &mut base, &mut size,
        ))
        .map(|()| {
            String::from_utf8_lossy(std::slice::from_raw_parts(base.cast::<u8>(), size))
                .into_owned()
        });
        let _ = check(sys::TRITONSERVER_MessageDelete(message));
        serialized.map_err(Failure::internal)
    }
}

/// SAFETY: `model` must be a valid model handle whose state we set.
unsafe fn model_state<'m>(model: *mut sys::TRITONBACKEND_Model) -> Result<&'m ModelState, Failure> {
    // SAFETY: `model` is valid and its state, when set, is the ModelState Box set by ModelInitialize.
    unsafe {
        let mut state = null_mut();
        check(sys::TRITONBACKEND_ModelState(model, &mut state)).map_err(Failure::internal)?;
        state
            .cast::<ModelState>()
            .as_ref()
            .ok_or_else(|| Failure::internal("model has no state"))
    }
}

#[no_mangle]
pub unsafe extern "C" fn TRITONBACKEND_ModelFinalize(
    model: *mut sys::TRITONBACKEND_Model,
) -> RawError {
    guarded("TRITONBACKEND_ModelFinalize", || {
        // SAFETY: `model` is live; its state is the Box this backend set in ModelInitialize, taken back exactly once here.
        unsafe {
            let mut state = null_mut();
            check(sys::TRITONBACKEND_ModelState(model, &mut state)).map_err(Failure::internal)?;
            if !state.is_null() {
                let state = Box::from_raw(state.cast::<ModelState>());
                log_info(&format!("model '{}': unloaded", state.name));
            }
            Ok(())
        }
    })
}

#[no_mangle]
pub unsafe extern "C" fn TRITONBACKEND_ModelInstanceInitialize(
    instance: *mut sys::TRITONBACKEND_ModelInstance,
) -> RawError {
    guarded("TRITONBACKEND_ModelInstanceInitialize", || {
        // SAFETY: `instance` is the live handle Triton passed; its model's state was set by ModelInitialize; a state Triton refuses is freed here, once.
        unsafe {
            let mut name = null();
            check(sys::TRITONBACKEND_ModelInstanceName(instance, &mut name))
                .map_err(Failure::internal)?;
            let name = owned(name);
            let mut kind = 0;
            check(sys::TRITONBACKEND_ModelInstanceKind(instance, &mut kind))
                .map_err(Failure::internal)?;
            let device = if kind
                == sys::TRITONSERVER_instancegroupkind_enum_TRITONSERVER_INSTANCEGROUPKIND_GPU
            {
                let mut device_id = 0;
                check(sys::TRITONBACKEND_ModelInstanceDeviceId(
                    instance,
                    &mut device_id,
                ))
                .map_err(Failure::internal)?;
                Device::Gpu(device_id)
            } else {
                Device::Cpu
            };
            let mut model = null_mut();
            check(sys::TRITONBACKEND_ModelInstanceModel(instance, &mut model))
                .map_err(Failure::internal)?;
            let model = model_state(model)?;

            let placement = Instance {
                name: name.clone(),
                device,
            };
            let instance_error = |e: String| {
                Failure::invalid(format!("model '{}' instance '{name}': {e}", model.name))
            };
            let mut runner = Arc::clone(&model.kind)
                .runner(&placement)
                .map_err(instance_error)?;
            // Before Triton's own warmup, whose failure can crash Triton 2.51 (see the warmup module).
            model.warmup.run(runner.as_mut()).map_err(instance_error)?;
            match (device, runner.device()) {
            (Device::Gpu(_), Device::Cpu) => log(
                sys::TRITONSERVER_loglevel_enum_TRITONSERVER_LOG_WARN,
                &format!("instance '{name}': preprocessing runs on the CPU; KIND_GPU only pins it to a GPU's NUMA node"),
            ),
            (_, Device::Gpu(id)) => log_info(&format!("instance '{name}': runs on CUDA device {id}")),
            _ => {}
        }
            let state = Box::new(InstanceState {
                name,
                input_names: model
                    .kind
                    .input_names()
                    .into_iter()
                    .map(str::to_owned)
                    .collect(),
                runner,
            });
            let raw = Box::into_raw(state);
            check(sys::TRITONBACKEND_ModelInstanceSetState(
                instance,
                raw.cast(),
            ))
            .map_err(|e| {
                // Triton did not take it; FINALIZE will not see it either.
                drop(Box::from_raw(raw));
                Failure::internal(e)
            })
        }
    })
}

#[no_mangle]
pub unsafe extern "C" fn TRITONBACKEND_ModelInstanceFinalize(
    instance: *mut sys::TRITONBACKEND_ModelInstance,
) -> RawError {
    guarded("TRITONBACKEND_ModelInstanceFinalize", || {
        // SAFETY: `instance` is live; its state is the Box set in ModelInstanceInitialize, taken back exactly once here.
        unsafe {
            let mut state = null_mut();
            check(sys::TRITONBACKEND_ModelInstanceState(instance, &mut state))
                .map_err(Failure::internal)?;
            if !state.is_null() {
                let state = Box::from_raw(state.cast::<InstanceState>());
                log_info(&format!("instance '{}': finalized", state.name));
            }
            Ok(())
        }
    })
}

/// SAFETY: `instance` must be a valid instance handle whose state we set,
/// and the caller must be the only one using that state (Triton calls an
/// instance's Execute from one thread at a time).
unsafe fn instance_state<'i>(
    instance: *mut sys::TRITONBACKEND_ModelInstance,
) -> Result<&'i mut InstanceState, RequestError> {
    // SAFETY: `instance` is valid, its state is the InstanceState Box set at instance initialization, and Triton runs one Execute per instance at a time, so the &mut is unique.
    unsafe {
        let mut state = null_mut();
        check(sys::TRITONBACKEND_ModelInstanceState(instance, &mut state))
            .map_err(RequestError::internal)?;
        state
            .cast::<InstanceState>()
            .as_mut()
            .ok_or_else(|| RequestError::internal("model instance has no state"))
    }
}

#[no_mangle]
pub unsafe extern "C" fn TRITONBACKEND_ModelInstanceExecute(
    instance: *mut sys::TRITONBACKEND_ModelInstance,
    requests: *mut *mut sys::TRITONBACKEND_Request,
    request_count: u32,
) -> RawError {
    // SAFETY: Triton passes `request_count` live requests at `requests` and a live `instance`.
    unsafe {
        let requests: &[*mut sys::TRITONBACKEND_Request] = if requests.is_null() {
            &[]
        } else {
            std::slice::from_raw_parts(requests, request_count as usize)
        };
        // A panic while processing is answered per request inside; this outer
        // guard only keeps one in the response plumbing from reaching Triton.
        if let Err(payload) = catch_unwind(AssertUnwindSafe(|| execute(instance, requests))) {
            log_error(&format!(
                "the clip backend panicked while answering a batch: {}",
                panic_message(&*payload)
            ));
        }
        null_mut()
    }
}

/// Answers and releases every request of one batch.
///
/// SAFETY: `instance` and `requests` must be the live handles Triton passed to Execute.
unsafe fn execute(
    instance: *mut sys::TRITONBACKEND_ModelInstance,
    requests: &[*mut sys::TRITONBACKEND_Request],
) {
    // SAFETY: `instance` and `requests` are the live handles Triton passed to Execute (caller's contract); each request is answered and released exactly once, at the end.
    unsafe {
        let exec_start = now_ns();

        // Whatever happens below, every request gets exactly one response and is released.
        let mut stats = (exec_start, exec_start, 0u64);
        let output = catch_unwind(AssertUnwindSafe(|| {
            let state = instance_state(instance)?;
            let names = &state.input_names;
            let inputs: Vec<Result<Request<'_>, RequestError>> = requests
                .iter()
                .map(|&r| {
                    let inputs = names.iter().map(|name| read_input(r, name));
                    Ok(Request {
                        inputs: inputs.collect::<Result<_, _>>()?,
                    })
                })
                .collect();
            stats.2 = inputs
                .iter()
                .flatten()
                .filter_map(|request| request.inputs.first())
                .map(|i| i.shape.first().copied().unwrap_or(0).max(0) as u64)
                .sum();
            stats.0 = now_ns();
            let output = state.runner.execute(&inputs);
            stats.1 = now_ns();
            Ok::<_, RequestError>(output)
        }));
        let output = output.unwrap_or_else(|payload| {
            let message = format!(
                "the clip backend panicked on this batch: {}",
                panic_message(&*payload)
            );
            log_error(&message);
            Err(RequestError::internal(message))
        });
        // After a panic mid-compute the end was never taken; Triton subtracts these unsigned.
        let (compute_start, compute_end, batch_size) = (stats.0, stats.1.max(stats.0), stats.2);

        let successes: Vec<bool> = requests
            .iter()
            .enumerate()
            .map(|(index, &request)| match &output {
                Ok(output) => respond(request, output, index),
                Err(error) => respond_error(request, error),
            })
            .collect();
        let exec_end = now_ns();
        for (&request, success) in requests.iter().zip(successes) {
            let report = sys::TRITONBACKEND_ModelInstanceReportStatistics(
                instance,
                request,
                success,
                exec_start,
                compute_start,
                compute_end,
                exec_end,
            );
            if let Err(message) = check(report) {
                log_error(&format!("could not report request statistics: {message}"));
            }
            if let Err(message) = check(sys::TRITONBACKEND_RequestRelease(
                request,
                sys::tritonserver_requestreleaseflag_enum_TRITONSERVER_REQUEST_RELEASE_ALL,
            )) {
                log_error(&format!("could not release a request: {message}"));
            }
        }
        if batch_size > 0 {
            let report = sys::TRITONBACKEND_ModelInstanceReportBatchStatistics(
                instance,
                batch_size,
                exec_start,
                compute_start,
                compute_end,
                exec_end,
            );
            if let Err(message) = check(report) {
                log_error(&format!("could not report batch statistics: {message}"));
            }
        }
    }
}
