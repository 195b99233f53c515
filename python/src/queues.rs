//! Native classes of `shmring._shmring` for the queues area (see lib.rs):
//! `QueueBase` (under `shmring.Queue`, `SimpleQueue`, `JoinableQueue`),
//! `ConnectionBase` (under `shmring.Connection`, the ends of `Pipe`) and
//! the exception `CorruptedError`.
//!
//! How it is built (the user-facing story is in docs/python.md):
//!
//! - Every queue, and each direction of a pipe, is one anonymous
//!   [`ByteQueue`](shmring::ByteQueue) (a sealed memfd): nothing is ever
//!   created in `/dev/shm`. Its fd travels to other processes through
//!   `multiprocessing.reduction.DupFd` (the Python side's `__reduce__`),
//!   and is re-opened there with `from_fd`.
//! - Endpoints are attached lazily, per process ([`chan`]): a forked child
//!   finds the parent's endpoints stale (a fork generation counter bumped
//!   by a `pthread_atfork` handler) and attaches its own.
//! - A message is the pickle (protocol 5) and its out-of-band buffers,
//!   copied once into a loaned slot ([`frame`]); a receive copies them out
//!   of the slot, read in place, into new `bytes` / `bytearray` objects.
//! - Blocking calls try once with the GIL held, then wait in slices of
//!   [`SLICE`] with the GIL released, checking signals between slices, so
//!   Ctrl-C interrupts them.

use pyo3::exceptions::{
    PyEOFError, PyFileExistsError, PyFileNotFoundError, PyOSError, PyPermissionError, PyTypeError,
    PyValueError,
};
use pyo3::prelude::*;
use shmring::SegmentError;
use std::time::{Duration, Instant};

mod chan;
mod conn;
mod frame;
mod held;
mod pybuf;
mod queue;
mod simple;

pyo3::create_exception!(
    shmring,
    CorruptedError,
    pyo3::exceptions::PyException,
    "A shared-memory segment holds data that cannot be right (a scribbled \
     header, a length beyond the maximum, a malformed message frame): \
     another process is buggy or hostile. Raised instead of reading out of \
     bounds; the message concerned is dropped."
);

/// The longest a blocking call waits with the GIL released before it takes
/// the GIL back to run signal handlers (Ctrl-C) and look at its deadline.
pub(crate) const SLICE: Duration = Duration::from_millis(50);

/// Adds this area's classes and functions to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    chan::install_fork_hook();
    m.add("CorruptedError", m.py().get_type::<CorruptedError>())?;
    m.add_class::<queue::QueueBase>()?;
    m.add_class::<conn::ConnectionBase>()?;
    held::register(m)?;
    Ok(())
}

/// The Python exception for a segment error, with the Rust error's text.
pub(crate) fn segment_err(e: SegmentError) -> PyErr {
    let msg = e.to_string();
    match e {
        SegmentError::NotFound(_) => PyFileNotFoundError::new_err(msg),
        SegmentError::AlreadyExists(_) => PyFileExistsError::new_err(msg),
        SegmentError::PermissionDenied(_) | SegmentError::Untrusted(_) => {
            PyPermissionError::new_err(msg)
        }
        SegmentError::WrongKind { .. } | SegmentError::TypeMismatch { .. } => {
            PyTypeError::new_err(msg)
        }
        SegmentError::FlavorMismatch { .. }
        | SegmentError::VersionMismatch { .. }
        | SegmentError::SizeMismatch { .. }
        | SegmentError::CapacityMismatch { .. }
        | SegmentError::LengthMismatch { .. }
        | SegmentError::MessageSizeMismatch { .. }
        | SegmentError::InvalidArgument(_)
        | SegmentError::Closed => PyValueError::new_err(msg),
        SegmentError::Corrupted(_) | SegmentError::NotInitialized => CorruptedError::new_err(msg),
        SegmentError::Io(io) => PyErr::from(io),
        _ => PyOSError::new_err(msg),
    }
}

/// `EOFError` for a pipe end whose peer is gone.
pub(crate) fn eof() -> PyErr {
    PyEOFError::new_err("the other end of the pipe is closed (or its process died)")
}

/// The absolute deadline of a `timeout` argument (seconds; `None`: none).
/// A negative timeout is 0, as `multiprocessing`'s: `get(timeout=-1)`
/// takes what is there or raises `queue.Empty`, `put(timeout=-1)` puts
/// if there is room, `poll(-1)` only looks.
///
/// # Errors
/// `ValueError` for a NaN timeout (`multiprocessing` raises `ValueError`
/// too).
pub(crate) fn deadline_of(timeout: Option<f64>) -> PyResult<Option<Instant>> {
    match timeout {
        None => Ok(None),
        Some(t) if t.is_nan() => Err(PyValueError::new_err("'timeout' must not be NaN")),
        Some(t) => Ok(Some(
            Instant::now()
                .checked_add(Duration::try_from_secs_f64(t.max(0.0)).unwrap_or(Duration::MAX))
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400 * 365 * 100)),
        )),
    }
}

/// How long the next wait may last: a slice, or what is left before the
/// deadline; `None` once the deadline has passed.
pub(crate) fn next_slice(deadline: Option<Instant>) -> Option<Duration> {
    match deadline {
        None => Some(SLICE),
        Some(d) => {
            let left = d.saturating_duration_since(Instant::now());
            if left.is_zero() {
                None
            } else {
                Some(left.min(SLICE))
            }
        }
    }
}
