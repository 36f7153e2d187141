//! What every entry point shares: Triton errors made and read, the server's
//! log, panic guards, the clock Triton's statistics use, and C strings.

use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr::null_mut;
use std::sync::Arc;

use clip_backend_core::batch::{ErrorKind, RequestError};
use clip_backend_core::{LogLevel, LogSink};
use triton_sys as sys;

pub(crate) type RawError = *mut sys::TRITONSERVER_Error;

pub(crate) struct Failure {
    pub(crate) code: sys::TRITONSERVER_Error_Code,
    pub(crate) message: String,
}

impl Failure {
    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Failure {
            code: sys::TRITONSERVER_errorcode_enum_TRITONSERVER_ERROR_INTERNAL,
            message: message.into(),
        }
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Failure {
            code: sys::TRITONSERVER_errorcode_enum_TRITONSERVER_ERROR_INVALID_ARG,
            message: message.into(),
        }
    }

    pub(crate) fn into_raw(self) -> RawError {
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

pub(crate) fn c_string(text: &str) -> CString {
    CString::new(text.replace('\0', "\\0")).expect("NUL bytes were replaced")
}

/// Turns an error returned by a Triton call into its message, freeing it.
pub(crate) fn check(error: RawError) -> Result<(), String> {
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

pub(crate) fn log(level: sys::TRITONSERVER_LogLevel, message: &str) {
    let message = c_string(message);
    // SAFETY: plain C strings that outlive the call. A logging failure has nowhere to go.
    let _ = check(unsafe {
        sys::TRITONSERVER_LogMessage(level, c"clip".as_ptr(), 0, message.as_ptr())
    });
}

/// Where ONNX Runtime's own log goes: Triton's log, at the matching level.
pub(crate) fn ort_log_sink() -> LogSink {
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

pub(crate) fn log_info(message: &str) {
    log(
        sys::TRITONSERVER_loglevel_enum_TRITONSERVER_LOG_INFO,
        message,
    );
}

pub(crate) fn log_error(message: &str) {
    log(
        sys::TRITONSERVER_loglevel_enum_TRITONSERVER_LOG_ERROR,
        message,
    );
}

pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("non-text panic payload")
}

/// Runs an entry point's body; its failure or panic becomes a Triton error.
pub(crate) fn guarded(entry: &str, body: impl FnOnce() -> Result<(), Failure>) -> RawError {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => null_mut(),
        Ok(Err(failure)) => failure.into_raw(),
        Err(payload) => {
            Failure::internal(format!("{entry} panicked: {}", panic_message(&*payload))).into_raw()
        }
    }
}

/// Triton's timestamps are steady-clock nanoseconds, i.e. CLOCK_MONOTONIC.
pub(crate) fn now_ns() -> u64 {
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
pub(crate) unsafe fn owned(text: *const c_char) -> String {
    // SAFETY: the caller guarantees a null or valid NUL-terminated string.
    unsafe {
        if text.is_null() {
            String::new()
        } else {
            CStr::from_ptr(text).to_string_lossy().into_owned()
        }
    }
}
