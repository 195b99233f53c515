//! `ConnectionBase`: the native half of `shmring.Connection`, one end of
//! `shmring.Pipe` (python/shmring/connection.py adds pickling and `Pipe`).
//!
//! A pipe is one SPSC byte queue per direction (right → left, and left →
//! right when duplex), each an anonymous memfd. Each end holds its own
//! [`Chan`] on each queue it uses, so closing (or dropping) an end detaches
//! only that end's endpoints, even when both ends live in one process.

use super::chan::{fork_gen, Chan, Mode};
use super::pybuf::Buf;
use super::queue::{copy_out, dumps};
use super::{deadline_of, segment_err};
use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyBytes;
use shmring::{ByteQueue, Flavor};
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};

/// Messages buffered per direction by default.
pub(crate) const DEFAULT_CAPACITY: u64 = 64;

static BUFFER_TOO_SHORT: PyOnceLock<Py<pyo3::types::PyType>> = PyOnceLock::new();

/// The native core of `shmring.Connection`: one end of a pipe. Use
/// `shmring.Pipe()`.
#[pyclass(subclass, module = "shmring._shmring")]
pub struct ConnectionBase {
    /// The direction this end receives from (`None`: write-only end).
    rx: Option<Chan>,
    /// The direction this end sends to (`None`: read-only end).
    tx: Option<Chan>,
    spin: bool,
    /// The fork generation (plus one) in which this end last attached its
    /// endpoints; 0: never.
    attached: AtomicU64,
}

fn new_queue(capacity: u64, max_message_size: u64) -> PyResult<ByteQueue> {
    ByteQueue::builder()
        .flavor(Flavor::Spsc)
        .capacity(capacity)
        .max_message_size(max_message_size)
        .create_anonymous()
        .map_err(segment_err)
}

fn open_queue(fd: i32) -> PyResult<ByteQueue> {
    // SAFETY: the fd comes from `DupFd.detach()` in connection.py's
    // rebuild: a new descriptor owned by nobody else.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    ByteQueue::builder()
        .flavor(Flavor::Spsc)
        .from_fd(owned)
        .map_err(segment_err)
}

impl ConnectionBase {
    fn from_queues(rx: Option<ByteQueue>, tx: Option<ByteQueue>, spin: bool) -> Self {
        ConnectionBase {
            rx: rx.map(|q| Chan::new(q, Mode::Pipe, spin)),
            tx: tx.map(|q| Chan::new(q, Mode::Pipe, spin)),
            spin,
            attached: AtomicU64::new(0),
        }
    }

    /// Whether `close()` was called (it closes both directions at once).
    fn is_closed(&self) -> bool {
        [&self.rx, &self.tx]
            .into_iter()
            .flatten()
            .any(Chan::is_closed)
    }

    fn check_closed(&self) -> PyResult<()> {
        if self.is_closed() {
            return Err(PyOSError::new_err("handle is closed"));
        }
        Ok(())
    }

    /// Attaches both halves of this end in this process, once per process:
    /// the peer then sees this end connected, and sees its death.
    fn ensure_attached(&self, py: Python<'_>) -> PyResult<()> {
        let now = fork_gen() + 1;
        if self.attached.load(Ordering::Relaxed) == now {
            return Ok(());
        }
        if let Some(c) = &self.rx {
            c.attach(py, false, true)?;
        }
        if let Some(c) = &self.tx {
            c.attach(py, true, false)?;
        }
        self.attached.store(now, Ordering::Relaxed);
        Ok(())
    }

    fn rx(&self, py: Python<'_>) -> PyResult<&Chan> {
        self.check_closed()?;
        let c = self
            .rx
            .as_ref()
            .ok_or_else(|| PyOSError::new_err("connection is write-only"))?;
        self.ensure_attached(py)?;
        Ok(c)
    }

    fn tx(&self, py: Python<'_>) -> PyResult<&Chan> {
        self.check_closed()?;
        let c = self
            .tx
            .as_ref()
            .ok_or_else(|| PyOSError::new_err("connection is read-only"))?;
        self.ensure_attached(py)?;
        Ok(c)
    }
}

#[pymethods]
impl ConnectionBase {
    /// Not for direct use: `shmring.Pipe()` makes connections.
    ///
    /// `ConnectionBase(duplex, capacity, max_message_size, spin)` creates
    /// the left end of a new pipe; `peer=left` makes the right end of
    /// `left`'s pipe; `_fds=(rx_fd, tx_fd)` re-opens a pickled end.
    #[new]
    #[pyo3(signature = (duplex=true, capacity=DEFAULT_CAPACITY, max_message_size=super::queue::DEFAULT_MAX_MESSAGE, spin=false, *, peer=None, _fds=None))]
    fn new(
        duplex: bool,
        capacity: u64,
        max_message_size: u64,
        spin: bool,
        peer: Option<PyRef<'_, ConnectionBase>>,
        _fds: Option<(Option<i32>, Option<i32>)>,
    ) -> PyResult<Self> {
        if let Some(p) = peer {
            // The other end: receives what the peer sends, and the reverse.
            let rx = p.tx.as_ref().map(|c| c.queue.clone());
            let tx = p.rx.as_ref().map(|c| c.queue.clone());
            return Ok(Self::from_queues(rx, tx, p.spin));
        }
        if let Some((rx, tx)) = _fds {
            let rx = rx.map(open_queue).transpose()?;
            let tx = tx.map(open_queue).transpose()?;
            return Ok(Self::from_queues(rx, tx, spin));
        }
        // The left end: receives right → left; sends left → right if duplex.
        let to_left = new_queue(capacity, max_message_size)?;
        let to_right = if duplex {
            Some(new_queue(capacity, max_message_size)?)
        } else {
            None
        };
        Ok(Self::from_queues(Some(to_left), to_right, spin))
    }

    /// Sends `obj` (pickled, protocol 5, its buffers out of band) to the
    /// other end, waiting while its buffer is full. `BrokenPipeError` if
    /// the other end was closed or its process died; `ValueError` if the
    /// pickle exceeds `max_message_size`.
    fn send(&self, py: Python<'_>, obj: &Bound<'_, PyAny>) -> PyResult<()> {
        let chan = self.tx(py)?;
        let msg = dumps(py, obj)?;
        msg.send(py, chan, true, None)?;
        Ok(())
    }

    /// Returns the next object the other end sent, waiting for one.
    /// `EOFError` once everything was received and the other end is closed
    /// (or its process died).
    fn recv<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let chan = self.rx(py)?;
        let r = chan
            .recv(py, true, None, |m| copy_out(py, m))?
            .expect("a blocking receive without deadline returns a message");
        r.loads(py)
    }

    /// Sends the bytes of a bytes-like object (`buf[offset:offset+size]`,
    /// in bytes) as one message.
    #[pyo3(signature = (buf, offset=0, size=None))]
    fn send_bytes(
        &self,
        py: Python<'_>,
        buf: &Bound<'_, PyAny>,
        offset: i64,
        size: Option<i64>,
    ) -> PyResult<()> {
        let chan = self.tx(py)?;
        let b = Buf::get(buf, false)?;
        let n = b.len() as i64;
        if offset < 0 {
            return Err(PyValueError::new_err("offset is negative"));
        }
        if n < offset {
            return Err(PyValueError::new_err("buffer length < offset"));
        }
        let size = match size {
            None => n - offset,
            Some(s) if s < 0 => return Err(PyValueError::new_err("size is negative")),
            Some(s) if offset + s > n => {
                return Err(PyValueError::new_err("buffer length < offset + size"))
            }
            Some(s) => s,
        };
        let (off, len) = (offset as usize, size as usize);
        let src = &b;
        chan.send(py, len, true, None, &move |dst: &mut [u8]| {
            dst.copy_from_slice(&src.bytes()[off..off + len]);
        })?;
        Ok(())
    }

    /// Returns the next message as `bytes`, waiting for one. `EOFError` at
    /// the end; `OSError` (and the connection is closed) if it is longer
    /// than `maxlength`.
    #[pyo3(signature = (maxlength=None))]
    fn recv_bytes<'py>(
        &self,
        py: Python<'py>,
        maxlength: Option<i64>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        if maxlength.is_some_and(|m| m < 0) {
            return Err(PyValueError::new_err("negative maxlength"));
        }
        let chan = self.rx(py)?;
        let r = chan
            .recv(py, true, None, |m| {
                Ok(match maxlength {
                    Some(max) if m.len() as i64 > max => None,
                    _ => Some(PyBytes::new(py, m)),
                })
            })?
            .expect("a blocking receive without deadline returns a message");
        match r {
            Some(b) => Ok(b),
            None => {
                self.close(py);
                Err(PyOSError::new_err("bad message length"))
            }
        }
    }

    /// Receives the next message into the writable buffer `buf`, from byte
    /// `offset`; returns its length. `multiprocessing.BufferTooShort` (the
    /// message as its argument) if it does not fit.
    #[pyo3(signature = (buf, offset=0))]
    fn recv_bytes_into(
        &self,
        py: Python<'_>,
        buf: &Bound<'_, PyAny>,
        offset: i64,
    ) -> PyResult<usize> {
        let chan = self.rx(py)?;
        let b = Buf::get(buf, true)?;
        if offset < 0 {
            return Err(PyValueError::new_err("negative offset"));
        }
        if offset as usize > b.len() {
            return Err(PyValueError::new_err("offset too large"));
        }
        let off = offset as usize;
        let room = b.len() - off;
        let r = chan
            .recv(py, true, None, |m| {
                if m.len() > room {
                    return Ok(Err(PyBytes::new(py, m)));
                }
                if !m.is_empty() {
                    // SAFETY: the writable export holds `b.len()` bytes;
                    // `off + m.len() <= b.len()`; the message (shared
                    // memory) does not overlap the caller's buffer.
                    unsafe {
                        std::ptr::copy_nonoverlapping(m.as_ptr(), b.ptr().add(off), m.len());
                    }
                }
                Ok(Ok(m.len()))
            })?
            .expect("a blocking receive without deadline returns a message");
        match r {
            Ok(n) => Ok(n),
            Err(msg) => {
                let ty = BUFFER_TOO_SHORT.import(py, "multiprocessing", "BufferTooShort")?;
                Err(PyErr::from_value(ty.call1((msg,))?))
            }
        }
    }

    /// Whether a message is waiting, waiting up to `timeout` seconds for
    /// one (`0`: just look; `None`: for ever). `True` also at the end of
    /// the stream (the next `recv` raises `EOFError` at once).
    #[pyo3(signature = (timeout=0.0))]
    fn poll(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        let chan = self.rx(py)?;
        chan.poll(py, deadline_of(timeout)?)
    }

    /// Closes this end in this process: the other end's `recv` raises
    /// `EOFError` after what was sent (once no process holds this end).
    /// Later calls on this handle raise `OSError`.
    fn close(&self, py: Python<'_>) {
        for c in [&self.rx, &self.tx].into_iter().flatten() {
            c.close(py);
        }
    }

    /// Whether this handle is closed.
    #[getter]
    fn closed(&self) -> bool {
        self.is_closed()
    }

    /// Whether this end can receive.
    #[getter]
    fn readable(&self) -> bool {
        self.rx.is_some()
    }

    /// Whether this end can send.
    #[getter]
    fn writable(&self) -> bool {
        self.tx.is_some()
    }

    /// `(rx_fd, tx_fd, spin)` for pickling (borrowed fds: duplicate them
    /// before use).
    fn _reduce_args(&self) -> PyResult<(Option<i32>, Option<i32>, bool)> {
        self.check_closed()?;
        Ok((
            self.rx.as_ref().and_then(|c| c.queue.raw_fd()),
            self.tx.as_ref().and_then(|c| c.queue.raw_fd()),
            self.spin,
        ))
    }
}
