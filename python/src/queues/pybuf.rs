//! The buffer protocol (PEP 3118), for reading a `bytes`, `memoryview` or
//! numpy array's memory, and writing into a `bytearray` or any writable
//! buffer, without a copy through Python objects.
//!
//! PyO3's `PyBuffer` is compiled only for the full API or abi3 ≥ 3.11; this
//! extension is abi3 ≥ 3.9. `PyObject_GetBuffer`, `PyBuffer_Release` and
//! the `Py_buffer` layout below are exported unchanged by every CPython
//! since 3.3 (and are part of the stable ABI from 3.11), so they are
//! declared here.

use pyo3::ffi;
use pyo3::prelude::*;
use std::os::raw::{c_char, c_int, c_void};

/// `Py_buffer`, as CPython lays it out (Include/pybuffer.h).
#[repr(C)]
struct RawBuffer {
    buf: *mut c_void,
    obj: *mut ffi::PyObject,
    len: ffi::Py_ssize_t,
    itemsize: ffi::Py_ssize_t,
    readonly: c_int,
    ndim: c_int,
    format: *mut c_char,
    shape: *mut ffi::Py_ssize_t,
    strides: *mut ffi::Py_ssize_t,
    suboffsets: *mut ffi::Py_ssize_t,
    internal: *mut c_void,
}

extern "C" {
    fn PyObject_GetBuffer(obj: *mut ffi::PyObject, view: *mut RawBuffer, flags: c_int) -> c_int;
    fn PyBuffer_Release(view: *mut RawBuffer);
}

/// `PyBUF_SIMPLE`: one contiguous run of bytes (exporters refuse otherwise).
const PYBUF_SIMPLE: c_int = 0;
/// `PyBUF_WRITABLE`.
const PYBUF_WRITABLE: c_int = 1;

/// A held buffer export: the memory stays valid (and, for a writable
/// request, writable) until this is dropped.
pub(crate) struct Buf {
    // Boxed: exporters may point into the struct itself, so it must not move.
    raw: Box<RawBuffer>,
}

// SAFETY: a buffer export is a pointer and a length that stay valid until
// `PyBuffer_Release`, whichever thread reads them; the release (in `Drop`)
// takes the GIL. Readers without the GIL copy bytes only (races with
// Python threads that write the same memory meanwhile give torn bytes,
// never unsafety in this process, as for any C extension that releases the
// GIL over a buffer).
unsafe impl Send for Buf {}
// SAFETY: as above: shared access only reads the pointer and length.
unsafe impl Sync for Buf {}

impl Buf {
    /// Exports `obj`'s memory as one contiguous run of bytes (`writable`:
    /// refused by read-only objects).
    ///
    /// # Errors
    /// `TypeError` (not a buffer), `BufferError` (not contiguous, or
    /// read-only when `writable`), as CPython raises them.
    pub(crate) fn get(obj: &Bound<'_, PyAny>, writable: bool) -> PyResult<Buf> {
        let mut raw = Box::new(RawBuffer {
            buf: std::ptr::null_mut(),
            obj: std::ptr::null_mut(),
            len: 0,
            itemsize: 0,
            readonly: 0,
            ndim: 0,
            format: std::ptr::null_mut(),
            shape: std::ptr::null_mut(),
            strides: std::ptr::null_mut(),
            suboffsets: std::ptr::null_mut(),
            internal: std::ptr::null_mut(),
        });
        let flags = if writable {
            PYBUF_SIMPLE | PYBUF_WRITABLE
        } else {
            PYBUF_SIMPLE
        };
        // SAFETY: `obj` is a live object (the GIL is held: `Bound`), `raw`
        // points to a writable `Py_buffer` that does not move (boxed).
        let rc = unsafe { PyObject_GetBuffer(obj.as_ptr(), &mut *raw, flags) };
        if rc != 0 {
            return Err(PyErr::fetch(obj.py()));
        }
        Ok(Buf { raw })
    }

    /// The first byte.
    pub(crate) fn ptr(&self) -> *mut u8 {
        self.raw.buf.cast()
    }

    /// Length in bytes.
    pub(crate) fn len(&self) -> usize {
        // A successful export has a non-negative length.
        usize::try_from(self.raw.len).unwrap_or(0)
    }

    /// The bytes, as a slice (while the GIL is held, by the caller's
    /// discipline, or for copying only).
    pub(crate) fn bytes(&self) -> &[u8] {
        if self.len() == 0 {
            return &[];
        }
        // SAFETY: the export guarantees `len` readable bytes at `buf` until
        // release, which `self` delays.
        unsafe { std::slice::from_raw_parts(self.ptr(), self.len()) }
    }
}

impl Drop for Buf {
    fn drop(&mut self) {
        Python::attach(|_py| {
            // SAFETY: `raw` was filled by a successful `PyObject_GetBuffer`
            // and is released exactly once, with the GIL held.
            unsafe { PyBuffer_Release(&mut *self.raw) }
        });
    }
}
