//! `QueueBase`: the native half of `shmring.Queue`, `SimpleQueue` and
//! `JoinableQueue` (python/shmring/queues.py adds pickling and the
//! multiprocessing-shaped subclasses), and the pickle helpers shared with
//! the pipe's connections.

use super::chan::{Chan, Mode};
use super::pybuf::Buf;
use super::{deadline_of, frame, next_slice, segment_err, simple, CorruptedError};
use pyo3::exceptions::{PyAssertionError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyByteArray, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString};
use shmring::{futex_wait, futex_wake, ByteQueue, Deadline, Flavor, Shared};
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// Messages a `Queue(maxsize=0)` holds.
pub(crate) const DEFAULT_CAPACITY: u64 = 1024;
/// The largest message (pickle and buffers) by default: 4 MiB.
pub(crate) const DEFAULT_MAX_MESSAGE: u64 = 4 << 20;
/// The flag bit of a `JoinableQueue`'s counter word: a `join` may be asleep
/// on it, so the `task_done` that reaches zero must wake it.
const JOIN_WAITING: u32 = 1 << 31;

static DUMPS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static LOADS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static FULL: PyOnceLock<Py<pyo3::types::PyType>> = PyOnceLock::new();
static EMPTY: PyOnceLock<Py<pyo3::types::PyType>> = PyOnceLock::new();

/// `queue.Full`, the exception `multiprocessing` raises.
pub(crate) fn full_err(py: Python<'_>) -> PyResult<PyErr> {
    Ok(PyErr::from_type(
        FULL.import(py, "queue", "Full")?.clone(),
        (),
    ))
}

/// `queue.Empty`.
pub(crate) fn empty_err(py: Python<'_>) -> PyResult<PyErr> {
    Ok(PyErr::from_type(
        EMPTY.import(py, "queue", "Empty")?.clone(),
        (),
    ))
}

/// A pointer and length that a GIL-free section copies from.
#[derive(Clone, Copy)]
struct RawSlice(*const u8, usize);

// SAFETY: points into a `bytes` object that the sending frame keeps alive
// (a `Bound` on its stack) until the GIL-free section has returned; bytes
// objects are immutable.
unsafe impl Send for RawSlice {}
// SAFETY: as above; shared access only reads.
unsafe impl Sync for RawSlice {}

impl RawSlice {
    fn get(&self) -> &[u8] {
        if self.1 == 0 {
            return &[];
        }
        // SAFETY: see the `Send` impl: valid for `self.1` bytes meanwhile.
        unsafe { std::slice::from_raw_parts(self.0, self.1) }
    }
}

/// An object pickled for sending: the pickle and its out-of-band buffers.
pub(crate) struct Pickled<'py> {
    pickle: PickleBytes<'py>,
    bufs: Vec<Buf>,
}

/// A pickle: made by `pickle.dumps`, or by [`simple::encode`].
enum PickleBytes<'py> {
    Py(Bound<'py, PyBytes>),
    Own(Vec<u8>),
}

impl PickleBytes<'_> {
    fn as_bytes(&self) -> &[u8] {
        match self {
            PickleBytes::Py(b) => b.as_bytes(),
            PickleBytes::Own(v) => v,
        }
    }
}

impl Pickled<'_> {
    /// The message's length.
    pub(crate) fn len(&self) -> PyResult<usize> {
        let lens: Vec<usize> = self.bufs.iter().map(Buf::len).collect();
        frame::frame_len(self.pickle.as_bytes().len(), &lens)
            .ok_or_else(|| PyValueError::new_err("message too large"))
    }

    /// Sends it through `chan`.
    pub(crate) fn send(
        &self,
        py: Python<'_>,
        chan: &Chan,
        block: bool,
        deadline: Option<std::time::Instant>,
    ) -> PyResult<bool> {
        let bytes = self.pickle.as_bytes();
        let pickle = RawSlice(bytes.as_ptr(), bytes.len());
        let bufs = &self.bufs;
        let fill = move |dst: &mut [u8]| {
            let slices: Vec<&[u8]> = bufs.iter().map(Buf::bytes).collect();
            frame::write(dst, pickle.get(), &slices);
        };
        chan.send(py, self.len()?, block, deadline, &fill)
    }
}

/// Pickles `obj` with protocol 5, its buffers (numpy arrays' data) out of
/// band.
pub(crate) fn dumps<'py>(py: Python<'py>, obj: &Bound<'py, PyAny>) -> PyResult<Pickled<'py>> {
    if let Some(pickle) = simple::encode(obj)? {
        return Ok(Pickled {
            pickle: PickleBytes::Own(pickle),
            bufs: Vec::new(),
        });
    }
    let dumps = DUMPS.import(py, "pickle", "dumps")?;
    // Objects of these types have no out-of-band buffers.
    let plain = obj.is_none()
        || obj.is_exact_instance_of::<PyInt>()
        || obj.is_exact_instance_of::<PyFloat>()
        || obj.is_exact_instance_of::<PyString>()
        || obj.is_exact_instance_of::<PyBytes>()
        || obj.is_exact_instance_of::<PyBool>();
    if plain {
        let pickle = dumps.call1((obj, 5))?.cast_into::<PyBytes>()?;
        return Ok(Pickled {
            pickle: PickleBytes::Py(pickle),
            bufs: Vec::new(),
        });
    }
    let list = PyList::empty(py);
    let kwargs = PyDict::new(py);
    kwargs.set_item("buffer_callback", list.getattr("append")?)?;
    let pickle = PickleBytes::Py(
        dumps
            .call((obj, 5), Some(&kwargs))?
            .cast_into::<PyBytes>()?,
    );
    let mut bufs = Vec::with_capacity(list.len());
    if list.len() > frame::MAX_BUFFERS {
        return Err(PyValueError::new_err("too many out-of-band buffers"));
    }
    for pb in list.iter() {
        // `raw()`: the buffer as contiguous bytes; a non-contiguous one is
        // copied into bytes first.
        let buf = match pb.call_method0("raw").and_then(|raw| Buf::get(&raw, false)) {
            Ok(b) => b,
            Err(_) => {
                let b = py
                    .import("builtins")?
                    .getattr("memoryview")?
                    .call1((&pb,))?
                    .call_method0("tobytes")?;
                Buf::get(&b, false)?
            }
        };
        bufs.push(buf);
    }
    Ok(Pickled { pickle, bufs })
}

/// A received message, copied out of its slot: the pickle and a
/// `bytearray` per out-of-band buffer.
pub(crate) struct Received<'py> {
    pickle: Bound<'py, PyBytes>,
    /// `bytearray`s, or views of a slot held in place (`held`).
    bufs: Vec<Bound<'py, PyAny>>,
}

/// A received message: read already ([`simple::decode`]), or to unpickle.
pub(crate) enum Got<'py> {
    Ready(Bound<'py, PyAny>),
    Pickled(Received<'py>),
}

impl<'py> Got<'py> {
    /// The object.
    pub(crate) fn loads(self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        match self {
            Got::Ready(obj) => Ok(obj),
            Got::Pickled(r) => r.loads(py),
        }
    }
}

/// A new `bytearray` holding a copy of `data` (not zeroed first).
pub(crate) fn bytearray_of<'py>(py: Python<'py>, data: &[u8]) -> PyResult<Bound<'py, PyByteArray>> {
    let n = ffi::Py_ssize_t::try_from(data.len())
        .map_err(|_| PyValueError::new_err("message too large"))?;
    // SAFETY: a NULL source asks CPython for an uninitialised bytearray of
    // `n` bytes (a new reference, or NULL with an exception set).
    let obj = unsafe { ffi::PyByteArray_FromStringAndSize(std::ptr::null(), n) };
    // SAFETY: `obj` is a new reference or NULL (error set).
    let ba = unsafe { Bound::from_owned_ptr_or_err(py, obj)? }.cast_into::<PyByteArray>()?;
    if !data.is_empty() {
        // SAFETY: the bytearray was just made with `n` bytes, nobody else
        // holds it, and `data` does not overlap it.
        unsafe {
            let dst = ffi::PyByteArray_AsString(ba.as_ptr()).cast::<u8>();
            std::ptr::copy_nonoverlapping(data.as_ptr(), dst, data.len());
        }
    }
    Ok(ba)
}

/// Copies a received message out of its slot.
pub(crate) fn copy_out<'py>(py: Python<'py>, msg: &[u8]) -> PyResult<Got<'py>> {
    if let Some(obj) = simple::decode(py, msg) {
        return Ok(Got::Ready(obj));
    }
    let parts = frame::parse(msg).map_err(CorruptedError::new_err)?;
    let pickle = PyBytes::new(py, &msg[parts.pickle]);
    let bufs = parts
        .bufs
        .into_iter()
        .map(|r| bytearray_of(py, &msg[r]).map(Bound::into_any))
        .collect::<PyResult<Vec<_>>>()?;
    Ok(Got::Pickled(Received { pickle, bufs }))
}

impl<'py> Received<'py> {
    /// A message's pickle and its buffers.
    pub(crate) fn new(pickle: Bound<'py, PyBytes>, bufs: Vec<Bound<'py, PyAny>>) -> Self {
        Received { pickle, bufs }
    }

    /// Unpickles the message.
    pub(crate) fn loads(self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let loads = LOADS.import(py, "pickle", "loads")?;
        if self.bufs.is_empty() {
            loads.call1((self.pickle,))
        } else {
            let kwargs = PyDict::new(py);
            kwargs.set_item("buffers", self.bufs)?;
            loads.call((self.pickle,), Some(&kwargs))
        }
    }
}

/// The native core of `shmring.Queue`, `SimpleQueue` and `JoinableQueue`:
/// a bounded multi-producer multi-consumer queue of pickled objects in
/// shared memory. Use the subclasses in `shmring`.
#[pyclass(subclass, module = "shmring._shmring")]
pub struct QueueBase {
    chan: Chan,
    /// The unfinished-task counter of a `JoinableQueue`, shared by every
    /// process (a futex word): the count in the low bits, [`JOIN_WAITING`]
    /// set while a `join` may be asleep on it.
    unfinished: Option<Shared<AtomicU32>>,
    /// What the creator asked for (`maxsize=0`: the default capacity).
    maxsize: usize,
    spin: bool,
}

impl QueueBase {
    fn check_open(&self) -> PyResult<()> {
        if self.chan.is_closed() {
            return Err(PyValueError::new_err("Queue is closed"));
        }
        Ok(())
    }

    fn counter(&self) -> PyResult<&AtomicU32> {
        self.unfinished
            .as_deref()
            .ok_or_else(|| PyValueError::new_err("not a JoinableQueue"))
    }

    /// One task fewer; at zero, clears [`JOIN_WAITING`] and wakes the
    /// joiners if it was set (no system call when nobody joins).
    fn finish_one(&self) -> PyResult<()> {
        let c = self.counter()?;
        // AcqRel: a joiner that sees 0 (Acquire) sees the work of every task
        // marked done before.
        let prev = c
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| {
                match n & !JOIN_WAITING {
                    0 => None,
                    1 => Some(0),
                    _ => Some(n - 1),
                }
            })
            .map_err(|_| PyValueError::new_err("task_done() called too many times"))?;
        if prev == 1 | JOIN_WAITING {
            futex_wake(c, u32::MAX);
        }
        Ok(())
    }
}

impl QueueBase {
    /// The name of a named queue (the last part of its path).
    fn name(&self) -> Option<String> {
        let path = self.chan.queue.path()?;
        Some(path.file_name()?.to_string_lossy().into_owned())
    }
}

/// The segment name of a named `JoinableQueue`'s task counter.
fn tasks_name(name: &str) -> String {
    format!("{name}.tasks")
}

/// Opens queue `name` in `/dev/shm`, or creates it (the name stays until
/// `Queue.unlink(name)` or `shmring rm`): what separately started programs
/// share. Opening takes the queue as its creator made it; a `maxsize` or
/// `max_message_size` given explicitly must match it (`ValueError`).
fn named(
    name: &str,
    maxsize: i64,
    max_message_size: Option<u64>,
    joinable: bool,
) -> PyResult<(ByteQueue, Option<Shared<AtomicU32>>)> {
    let capacity = if maxsize <= 0 {
        DEFAULT_CAPACITY
    } else {
        maxsize as u64
    };
    let max = max_message_size.unwrap_or(DEFAULT_MAX_MESSAGE);
    let queue = match ByteQueue::builder().flavor(Flavor::Mpmc).open(name) {
        Ok(q) => q,
        Err(shmring::SegmentError::NotFound(_)) => ByteQueue::builder()
            .flavor(Flavor::Mpmc)
            .capacity(capacity)
            .max_message_size(max)
            .open_or_create(name)
            .map_err(segment_err)?,
        Err(e) => return Err(segment_err(e)),
    };
    if maxsize > 0 && queue.capacity() as u64 != capacity {
        return Err(PyValueError::new_err(format!(
            "queue {name:?} holds {} objects, not maxsize={maxsize}",
            queue.capacity()
        )));
    }
    if max_message_size.is_some() && queue.max_message_size() as u64 != max {
        return Err(PyValueError::new_err(format!(
            "queue {name:?} takes messages of at most {} bytes, not max_message_size={max}",
            queue.max_message_size()
        )));
    }
    let unfinished = if joinable {
        Some(
            Shared::<AtomicU32>::builder()
                .open_or_create(&tasks_name(name), || AtomicU32::new(0))
                .map_err(segment_err)?,
        )
    } else {
        None
    };
    Ok((queue, unfinished))
}

#[pymethods]
impl QueueBase {
    /// Creates a queue holding up to `maxsize` objects (`0`: 1024), each
    /// pickled to at most `max_message_size` bytes (default 4 MiB);
    /// `spin=True` busy-polls instead of sleeping while blocked.
    #[new]
    #[pyo3(signature = (maxsize=0, *, max_message_size=None, spin=false, joinable=false, name=None, _fds=None))]
    fn new(
        maxsize: i64,
        max_message_size: Option<u64>,
        spin: bool,
        joinable: bool,
        name: Option<&str>,
        _fds: Option<(i32, Option<i32>)>,
    ) -> PyResult<Self> {
        let capacity = if maxsize <= 0 {
            DEFAULT_CAPACITY
        } else {
            maxsize as u64
        };
        let (queue, unfinished) = match (_fds, name) {
            (_, Some(name)) => named(name, maxsize, max_message_size, joinable)?,
            (None, None) => {
                let q = ByteQueue::builder()
                    .flavor(Flavor::Mpmc)
                    .capacity(capacity)
                    .max_message_size(max_message_size.unwrap_or(DEFAULT_MAX_MESSAGE))
                    .create_anonymous()
                    .map_err(segment_err)?;
                let u = if joinable {
                    Some(Shared::anonymous(AtomicU32::new(0)).map_err(segment_err)?)
                } else {
                    None
                };
                (q, u)
            }
            (Some((fd, jfd)), None) => {
                // SAFETY: the fds come from `DupFd.detach()` in
                // queues.py's rebuild: new descriptors owned by nobody else.
                let owned = unsafe { OwnedFd::from_raw_fd(fd) };
                let q = ByteQueue::builder()
                    .flavor(Flavor::Mpmc)
                    .from_fd(owned)
                    .map_err(segment_err)?;
                let u = match jfd {
                    // SAFETY: as above.
                    Some(j) => Some(
                        Shared::<AtomicU32>::builder()
                            .from_fd(unsafe { OwnedFd::from_raw_fd(j) })
                            .map_err(segment_err)?,
                    ),
                    None => None,
                };
                (q, u)
            }
        };
        Ok(QueueBase {
            chan: Chan::new(queue, Mode::Queue, spin),
            unfinished,
            maxsize: maxsize.max(0) as usize,
            spin,
        })
    }

    /// Sets how long this process's blocked `get`/`put` calls on this
    /// handle spin before they sleep, in microseconds (`0`: they sleep at
    /// once). Private: `shmring.Pool` uses it for threads that wait long.
    fn _set_spin_us(&self, py: Python<'_>, us: u64) {
        self.chan.set_spin(py, Duration::from_micros(us));
    }

    /// Puts `obj` into the queue (pickled, protocol 5, its buffers out of
    /// band). If the queue is full: with `block` true, waits up to
    /// `timeout` seconds (`None`: for ever) for room; otherwise, or once
    /// the timeout passes, raises `queue.Full`.
    ///
    /// Raises `ValueError` if the pickled object exceeds
    /// `max_message_size`, or if this handle was closed.
    #[pyo3(signature = (obj, block=true, timeout=None))]
    fn put(
        &self,
        py: Python<'_>,
        obj: &Bound<'_, PyAny>,
        block: bool,
        timeout: Option<f64>,
    ) -> PyResult<()> {
        self.check_open()?;
        let deadline = deadline_of(timeout)?;
        let msg = dumps(py, obj)?;
        // Counted before it can be taken (and task_done-d), as
        // multiprocessing does.
        if let Some(c) = self.unfinished.as_deref() {
            // The count stays below the flag bit.
            c.fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| {
                (n & !JOIN_WAITING < JOIN_WAITING - 1).then_some(n + 1)
            })
            .map_err(|_| PyValueError::new_err("too many unfinished tasks"))?;
        }
        match msg.send(py, &self.chan, block, deadline) {
            Ok(true) => Ok(()),
            other => {
                if self.unfinished.is_some() {
                    self.finish_one()?;
                }
                match other {
                    Ok(_) => Err(full_err(py)?),
                    Err(e) => Err(e),
                }
            }
        }
    }

    /// Removes and returns an object from the queue. If it is empty: with
    /// `block` true, waits up to `timeout` seconds (`None`: for ever);
    /// otherwise, or once the timeout passes, raises `queue.Empty`. A
    /// queue whose producers have all exited (or died) is simply empty.
    ///
    /// `copy=False` (a shmring extension): out-of-band buffers (numpy
    /// arrays' data) are not copied out of the queue; they arrive as
    /// read-only views of the message's slot, which stays claimed until
    /// the last of them is collected. While claimed, the slot is not
    /// reused: a sender that comes round to it (a queue's capacity of
    /// messages later) waits. Up to 8 messages per handle are held so;
    /// past that, and for objects without buffers, `get` copies.
    #[pyo3(signature = (block=true, timeout=None, *, copy=true))]
    fn get<'py>(
        &self,
        py: Python<'py>,
        block: bool,
        timeout: Option<f64>,
        copy: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.check_open()?;
        let deadline = deadline_of(timeout)?;
        let got = if copy {
            self.chan
                .recv(py, block, deadline, |m| copy_out(py, m))?
                .map(|r| r.loads(py))
        } else {
            self.chan.recv_held(
                py,
                block,
                deadline,
                |t| Ok(t.into_object(py)),
                |m| Ok(copy_out(py, m).and_then(|r| r.loads(py))),
            )?
        };
        match got {
            Some(obj) => obj,
            None => Err(empty_err(py)?),
        }
    }

    /// `put(obj, False)`.
    fn put_nowait(&self, py: Python<'_>, obj: &Bound<'_, PyAny>) -> PyResult<()> {
        self.put(py, obj, false, None)
    }

    /// `get(False)`.
    fn get_nowait<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.get(py, false, None, true)
    }

    /// The number of objects queued now (a snapshot, as in
    /// `multiprocessing`: it may be stale by the time it is used).
    fn qsize(&self) -> usize {
        self.chan.queue.len()
    }

    /// Whether the queue is empty now (a snapshot).
    fn empty(&self) -> bool {
        self.chan.queue.is_empty()
    }

    /// Whether the queue is full now (a snapshot).
    fn full(&self) -> bool {
        self.chan.queue.is_full()
    }

    /// Says this process will put and get no more through this handle:
    /// its endpoints are detached; later `put` / `get` raise `ValueError`.
    /// Objects already put stay queued for other processes (there is no
    /// feeder thread to flush: `put` has already copied them into shared
    /// memory).
    fn close(&self, py: Python<'_>) {
        self.chan.close(py);
    }

    /// Returns at once (there is no feeder thread); like `multiprocessing`,
    /// only allowed after `close()`.
    fn join_thread(&self) -> PyResult<()> {
        if !self.chan.is_closed() {
            return Err(PyAssertionError::new_err("Queue not closed"));
        }
        Ok(())
    }

    /// Does nothing (there is no feeder thread to join at exit).
    fn cancel_join_thread(&self) {}

    /// `JoinableQueue.task_done`: one task fewer.
    fn _task_done(&self) -> PyResult<()> {
        self.finish_one()
    }

    /// `JoinableQueue.join`: waits until every task put has been marked
    /// done, in slices (Ctrl-C interrupts it). `True`, or `False` if
    /// `timeout` (seconds) passed first.
    #[pyo3(signature = (timeout=None))]
    fn _join(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        let deadline = deadline_of(timeout)?;
        let c = self.counter()?;
        loop {
            // Acquire: pairs with `finish_one`'s AcqRel.
            let n = c.load(Ordering::Acquire);
            if n & !JOIN_WAITING == 0 {
                return Ok(true);
            }
            let Some(slice) = next_slice(deadline) else {
                return Ok(false);
            };
            // Says a joiner may sleep, before sleeping on the word with the
            // flag: a `finish_one` reaching zero in between changes the word
            // (the wait returns at once), one after it wakes us.
            if n & JOIN_WAITING == 0
                && c.compare_exchange(n, n | JOIN_WAITING, Ordering::AcqRel, Ordering::Relaxed)
                    .is_err()
            {
                continue;
            }
            let n = n | JOIN_WAITING;
            py.detach(|| futex_wait(c, n, Some(Deadline::after(slice))));
            py.check_signals()?;
        }
    }

    /// The queue's construction arguments and fds, for pickling:
    /// `(maxsize, max_message_size, spin, joinable, fd, joinable_fd,
    /// name)`: the fds of an anonymous queue (borrowed: duplicate them,
    /// `DupFd`, before use), or the name of a named one (its fds `None`).
    #[allow(clippy::type_complexity)]
    fn _reduce_args(
        &self,
    ) -> PyResult<(
        usize,
        usize,
        bool,
        bool,
        Option<i32>,
        Option<i32>,
        Option<String>,
    )> {
        let (max, spin, joinable) = (
            self.chan.queue.max_message_size(),
            self.spin,
            self.unfinished.is_some(),
        );
        if let Some(name) = self.name() {
            return Ok((self.maxsize, max, spin, joinable, None, None, Some(name)));
        }
        let fd = self
            .chan
            .queue
            .raw_fd()
            .ok_or_else(|| PyValueError::new_err("not an anonymous queue"))?;
        let jfd = match &self.unfinished {
            Some(s) => Some(
                s.raw_fd()
                    .ok_or_else(|| PyValueError::new_err("not an anonymous counter"))?,
            ),
            None => None,
        };
        Ok((self.maxsize, max, spin, joinable, Some(fd), jfd, None))
    }

    /// The queue's name (`None`: anonymous).
    #[getter(name)]
    fn py_name(&self) -> Option<String> {
        self.name()
    }

    /// Removes the name of queue `name` (and of its task counter, for a
    /// `JoinableQueue`); handles already open keep working. Raises
    /// `FileNotFoundError` when there is no such queue, and leaves a name
    /// that is not a shmring queue (`TypeError`, `ValueError` or
    /// `CorruptedError`, as opening it would say).
    #[staticmethod]
    fn _unlink(name: &str) -> PyResult<()> {
        // Opened first (mapped and checked, no endpoint attached): only a
        // queue's name is removed.
        drop(
            ByteQueue::builder()
                .flavor(Flavor::Mpmc)
                .open(name)
                .map_err(segment_err)?,
        );
        ByteQueue::unlink(name).map_err(segment_err)?;
        let tasks = tasks_name(name);
        match Shared::<AtomicU32>::open(&tasks) {
            Ok(_) => match Shared::<AtomicU32>::unlink(&tasks) {
                Ok(()) | Err(shmring::SegmentError::NotFound(_)) => Ok(()),
                Err(e) => Err(segment_err(e)),
            },
            // None, or not a task counter: left alone.
            Err(_) => Ok(()),
        }
    }

    /// The most objects the queue holds.
    #[getter]
    fn _capacity(&self) -> usize {
        self.chan.queue.capacity()
    }

    /// Messages the queue has counted lost: claimed by a receiver whose
    /// process died before it released them (reaped).
    #[getter]
    fn _lost(&self) -> u64 {
        self.chan.queue.lost()
    }

    /// `(senders, receivers)` attached to the queue now, by every process
    /// (live ones).
    #[getter]
    fn _endpoints(&self) -> (u32, u32) {
        self.chan.queue.live_endpoints()
    }

    /// The largest pickled object (with its buffers) the queue takes, in
    /// bytes.
    #[getter]
    fn max_message_size(&self) -> usize {
        self.chan.queue.max_message_size()
    }
}
