//! The Triton backend C API: every exported entry point, every raw pointer
//! and every `unsafe` block of the backend lives in this file. Each entry
//! point catches panics, so none crosses into the server.

use std::borrow::Cow;
use std::ffi::{c_char, c_void, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::ptr::{null, null_mut};
use std::sync::Arc;

use triton_sys as sys;

use clip_backend_core::batch::{BatchOutput, DataType, ErrorKind, Input, RequestError};
use clip_backend_core::kind::{Device, Instance, Kind, Runner};
use clip_backend_core::{config, kinds, LogLevel, LogSink};

type RawError = *mut sys::TRITONSERVER_Error;

/// The header version this file was written against; the server may be newer.
const API_MAJOR: u32 = 1;
const API_MINOR: u32 = 16;

struct Failure {
    code: sys::TRITONSERVER_Error_Code,
    message: String,
}

impl Failure {
    fn internal(message: impl Into<String>) -> Self {
        Failure {
            code: sys::TRITONSERVER_errorcode_enum_TRITONSERVER_ERROR_INTERNAL,
            message: message.into(),
        }
    }

    fn invalid(message: impl Into<String>) -> Self {
        Failure {
            code: sys::TRITONSERVER_errorcode_enum_TRITONSERVER_ERROR_INVALID_ARG,
            message: message.into(),
        }
    }

    fn into_raw(self) -> RawError {
        let message = c_string(&self.message);
        // SAFETY: Triton copies the message; ownership of the error passes to the caller.
        unsafe { sys::TRITONSERVER_ErrorNew(self.code, message.as_ptr()) }
    }
}

impl From<&RequestError> for Failure {
    fn from(error: &RequestError) -> Self {
        match error.kind {
            ErrorKind::InvalidArg => Failure::invalid(&error.message),
            ErrorKind::Internal => Failure::internal(&error.message),
        }
    }
}

fn c_string(text: &str) -> CString {
    CString::new(text.replace('\0', "\\0")).expect("NUL bytes were replaced")
}

/// Turns an error returned by a Triton call into its message, freeing it.
fn check(error: RawError) -> Result<(), String> {
    if error.is_null() {
        return Ok(());
    }
    // SAFETY: a non-null error from Triton is valid until we delete it.
    unsafe {
        let message = CStr::from_ptr(sys::TRITONSERVER_ErrorMessage(error))
            .to_string_lossy()
            .into_owned();
        sys::TRITONSERVER_ErrorDelete(error);
        Err(message)
    }
}

fn log(level: sys::TRITONSERVER_LogLevel, message: &str) {
    let message = c_string(message);
    // SAFETY: plain C strings that outlive the call. A logging failure has nowhere to go.
    let _ = check(unsafe {
        sys::TRITONSERVER_LogMessage(level, c"clip".as_ptr(), 0, message.as_ptr())
    });
}

/// Where ONNX Runtime's own log goes: Triton's log, at the matching level.
fn ort_log_sink() -> LogSink {
    Arc::new(|level, message| {
        let level = match level {
            LogLevel::Verbose => sys::TRITONSERVER_loglevel_enum_TRITONSERVER_LOG_VERBOSE,
            LogLevel::Info => sys::TRITONSERVER_loglevel_enum_TRITONSERVER_LOG_INFO,
            LogLevel::Warning => sys::TRITONSERVER_loglevel_enum_TRITONSERVER_LOG_WARN,
            LogLevel::Error | LogLevel::Fatal => {
                sys::TRITONSERVER_loglevel_enum_TRITONSERVER_LOG_ERROR
            }
        };
        log(level, message);
    })
}

fn log_info(message: &str) {
    log(
        sys::TRITONSERVER_loglevel_enum_TRITONSERVER_LOG_INFO,
        message,
    );
}

fn log_error(message: &str) {
    log(
        sys::TRITONSERVER_loglevel_enum_TRITONSERVER_LOG_ERROR,
        message,
    );
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("non-text panic payload")
}

/// Runs an entry point's body; its failure or panic becomes a Triton error.
fn guarded(entry: &str, body: impl FnOnce() -> Result<(), Failure>) -> RawError {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => null_mut(),
        Ok(Err(failure)) => failure.into_raw(),
        Err(payload) => {
            Failure::internal(format!("{entry} panicked: {}", panic_message(&*payload))).into_raw()
        }
    }
}

/// Triton's timestamps are steady-clock nanoseconds, i.e. CLOCK_MONOTONIC.
fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Reads a string Triton owns (names, paths) into an owned String.
///
/// SAFETY: `text` must be null or a valid NUL-terminated string.
unsafe fn owned(text: *const c_char) -> String {
    // SAFETY: the caller guarantees a null or valid NUL-terminated string.
    unsafe {
        if text.is_null() {
            String::new()
        } else {
            CStr::from_ptr(text).to_string_lossy().into_owned()
        }
    }
}

struct ModelState {
    name: String,
    kind: Arc<dyn Kind>,
}

/// What one model instance answers its batches with.
struct InstanceState {
    name: String,
    input_name: String,
    runner: Box<dyn Runner>,
}

#[no_mangle]
pub unsafe extern "C" fn TRITONBACKEND_Initialize(
    _backend: *mut sys::TRITONBACKEND_Backend,
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
            log_info(&format!(
                "clip backend {} loaded (backend API {major}.{minor})",
                env!("CARGO_PKG_VERSION")
            ));
            Ok(())
        }
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
            let version_dir = PathBuf::from(owned(location)).join(version.to_string());

            let spec = config::parse(&model_config_json(model)?)
                .map_err(|e| Failure::invalid(e.to_string()))?;
            let kind = kinds::load(spec, &version_dir, Some(ort_log_sink()))
                .map_err(|e| Failure::invalid(format!("model '{name}': {e}")))?;
            log_info(&format!(
                "model '{name}' version {version}: ready, reads input '{}'",
                kind.input_name()
            ));

            let state = Box::new(ModelState { name, kind });
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
            let runner = Arc::clone(&model.kind).runner(&placement).map_err(|e| {
                Failure::invalid(format!("model '{}' instance '{name}': {e}", model.name))
            })?;
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
                input_name: model.kind.input_name().to_owned(),
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
            let name = state.input_name.as_str();
            let inputs: Vec<Result<Input<'_>, RequestError>> =
                requests.iter().map(|&r| read_input(r, name)).collect();
            stats.2 = inputs
                .iter()
                .flatten()
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

fn datatype_to_raw(datatype: DataType) -> sys::TRITONSERVER_DataType {
    match datatype {
        DataType::Bytes => sys::TRITONSERVER_datatype_enum_TRITONSERVER_TYPE_BYTES,
        DataType::Int32 => sys::TRITONSERVER_datatype_enum_TRITONSERVER_TYPE_INT32,
        DataType::Int64 => sys::TRITONSERVER_datatype_enum_TRITONSERVER_TYPE_INT64,
        DataType::Fp16 => sys::TRITONSERVER_datatype_enum_TRITONSERVER_TYPE_FP16,
        DataType::Fp32 => sys::TRITONSERVER_datatype_enum_TRITONSERVER_TYPE_FP32,
    }
}

fn datatype_from_raw(raw: sys::TRITONSERVER_DataType) -> Option<DataType> {
    DataType::ALL
        .into_iter()
        .find(|&t| datatype_to_raw(t) == raw)
}

fn is_host_memory(memory_type: sys::TRITONSERVER_MemoryType) -> bool {
    memory_type == sys::TRITONSERVER_memorytype_enum_TRITONSERVER_MEMORY_CPU
        || memory_type == sys::TRITONSERVER_memorytype_enum_TRITONSERVER_MEMORY_CPU_PINNED
}

/// Reads one input of one request; its buffers stay owned by Triton until
/// the request is released, which happens only after processing.
///
/// SAFETY: `request` must be a live request handle.
unsafe fn read_input<'r>(
    request: *mut sys::TRITONBACKEND_Request,
    name: &str,
) -> Result<Input<'r>, RequestError> {
    // SAFETY: `request` is live (caller's contract); the input and its buffers are Triton's and stay valid until the request is released, after processing.
    unsafe {
        let c_name = c_string(name);
        let mut input = null_mut();
        check(sys::TRITONBACKEND_RequestInput(
            request,
            c_name.as_ptr(),
            &mut input,
        ))
        .map_err(|m| RequestError::invalid(format!("input '{name}' is missing: {m}")))?;
        let (mut datatype, mut shape, mut dims, mut byte_size, mut buffers) =
            (0, null(), 0u32, 0u64, 0u32);
        check(sys::TRITONBACKEND_InputProperties(
            input,
            null_mut(),
            &mut datatype,
            &mut shape,
            &mut dims,
            &mut byte_size,
            &mut buffers,
        ))
        .map_err(RequestError::internal)?;
        let shape = if dims == 0 {
            Vec::new()
        } else {
            std::slice::from_raw_parts(shape, dims as usize).to_vec()
        };

        let mut parts = Vec::with_capacity(buffers as usize);
        for index in 0..buffers {
            let (mut base, mut size) = (null(), 0u64);
            let (mut memory_type, mut memory_id) = (
                sys::TRITONSERVER_memorytype_enum_TRITONSERVER_MEMORY_CPU,
                0i64,
            );
            check(sys::TRITONBACKEND_InputBuffer(
                input,
                index,
                &mut base,
                &mut size,
                &mut memory_type,
                &mut memory_id,
            ))
            .map_err(RequestError::internal)?;
            if !is_host_memory(memory_type) {
                return Err(RequestError::invalid(format!(
                    "input '{name}' is in GPU memory; the clip backend reads host memory only"
                )));
            }
            if size > 0 {
                parts.push(std::slice::from_raw_parts(base.cast::<u8>(), size as usize));
            }
        }
        let data = match parts.as_slice() {
            [] => Cow::Borrowed(&[][..]),
            [only] => Cow::Borrowed(*only),
            many => Cow::Owned(many.concat()),
        };
        let datatype = datatype_from_raw(datatype).ok_or_else(|| {
            RequestError::invalid(format!(
            "input '{name}' has Triton data type #{datatype}, which the clip backend does not read"
        ))
        })?;
        Ok(Input {
            datatype,
            shape,
            data,
        })
    }
}

/// Sends the one final response of `request`, number `index` of the batch:
/// its rows of the batch buffer, copied once into Triton's output buffer, or
/// its error. True when it carried a result.
///
/// SAFETY: `request` must be a live request handle.
unsafe fn respond(
    request: *mut sys::TRITONBACKEND_Request,
    output: &BatchOutput,
    index: usize,
) -> bool {
    // SAFETY: `request` is live (caller's contract).
    unsafe {
        match output.response(index) {
            Ok((shape, bytes)) => send(request, |response| {
                write_output(
                    response,
                    &output.name,
                    output.tensor.datatype(),
                    &shape,
                    bytes,
                )
            }),
            Err(error) => respond_error(request, &error),
        }
    }
}

/// SAFETY: `request` must be a live request handle.
unsafe fn respond_error(request: *mut sys::TRITONBACKEND_Request, error: &RequestError) -> bool {
    // SAFETY: `request` is live (caller's contract).
    unsafe { send(request, |_| Err(Failure::from(error))) }
}

/// Creates the response of `request`, fills it with `fill`, and sends it as
/// final, with `fill`'s failure as its error.
///
/// SAFETY: `request` must be a live request handle.
unsafe fn send(
    request: *mut sys::TRITONBACKEND_Request,
    fill: impl FnOnce(*mut sys::TRITONBACKEND_Response) -> Result<(), Failure>,
) -> bool {
    // SAFETY: `request` is live (caller's contract); the response is sent once, and the error we made is deleted after sending, which does not take it.
    unsafe {
        let mut response = null_mut();
        if let Err(message) = check(sys::TRITONBACKEND_ResponseNew(&mut response, request)) {
            log_error(&format!("could not create a response: {message}"));
            return false;
        }
        let failure = fill(response).err();
        let success = failure.is_none();
        let error = failure.map_or(null_mut(), Failure::into_raw);
        let sent = check(sys::TRITONBACKEND_ResponseSend(
            response,
            sys::tritonserver_responsecompleteflag_enum_TRITONSERVER_RESPONSE_COMPLETE_FINAL,
            error,
        ));
        // Sending does not take ownership of the error.
        if !error.is_null() {
            sys::TRITONSERVER_ErrorDelete(error);
        }
        if let Err(message) = sent {
            log_error(&format!("could not send a response: {message}"));
            return false;
        }
        success
    }
}

/// SAFETY: `response` must be a live response handle.
unsafe fn write_output(
    response: *mut sys::TRITONBACKEND_Response,
    name: &str,
    datatype: DataType,
    shape: &[i64],
    bytes: &[u8],
) -> Result<(), Failure> {
    // SAFETY: `response` is live (caller's contract); Triton allocated `buffer` for exactly `bytes.len()` bytes in host memory, checked before the copy.
    unsafe {
        let c_name = c_string(name);
        let mut handle = null_mut();
        check(sys::TRITONBACKEND_ResponseOutput(
            response,
            &mut handle,
            c_name.as_ptr(),
            datatype_to_raw(datatype),
            shape.as_ptr(),
            shape.len() as u32,
        ))
        .map_err(Failure::internal)?;
        let mut buffer: *mut c_void = null_mut();
        let (mut memory_type, mut memory_id) = (
            sys::TRITONSERVER_memorytype_enum_TRITONSERVER_MEMORY_CPU,
            0i64,
        );
        check(sys::TRITONBACKEND_OutputBuffer(
            handle,
            &mut buffer,
            bytes.len() as u64,
            &mut memory_type,
            &mut memory_id,
        ))
        .map_err(Failure::internal)?;
        if !is_host_memory(memory_type) {
            return Err(Failure::internal(format!(
                "output '{name}' was placed in GPU memory"
            )));
        }
        if !bytes.is_empty() {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), buffer.cast::<u8>(), bytes.len());
        }
        Ok(())
    }
}
