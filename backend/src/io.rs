//! Tensors in and out of Triton: a request's input read into an [`Input`]
//! (its buffers borrowed, joined only when Triton split them), and each
//! request's rows of the batch buffer copied once into its response.

use std::borrow::Cow;
use std::ffi::c_void;
use std::ptr::{null, null_mut};

use clip_backend_core::batch::{BatchOutput, DataType, Input, RequestError};
use triton_sys as sys;

use crate::status::{c_string, check, log_error, Failure};

fn datatype_to_raw(datatype: DataType) -> sys::TRITONSERVER_DataType {
    match datatype {
        DataType::Bytes => sys::TRITONSERVER_datatype_enum_TRITONSERVER_TYPE_BYTES,
        DataType::Uint8 => sys::TRITONSERVER_datatype_enum_TRITONSERVER_TYPE_UINT8,
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
pub(crate) unsafe fn read_input<'r>(
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
/// its rows of each batch buffer, copied once into Triton's output buffer, or
/// its error. True when it carried a result.
///
/// SAFETY: `request` must be a live request handle.
pub(crate) unsafe fn respond(
    request: *mut sys::TRITONBACKEND_Request,
    output: &BatchOutput,
    index: usize,
) -> bool {
    // SAFETY: `request` is live (caller's contract).
    unsafe {
        match output.response(index) {
            Ok(outputs) => send(request, |response| {
                outputs.iter().try_for_each(|rows| {
                    write_output(response, rows.name, rows.datatype, &rows.shape, rows.bytes)
                })
            }),
            Err(error) => respond_error(request, &error),
        }
    }
}

/// SAFETY: `request` must be a live request handle.
pub(crate) unsafe fn respond_error(
    request: *mut sys::TRITONBACKEND_Request,
    error: &RequestError,
) -> bool {
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
