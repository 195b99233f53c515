//! Native classes of `shmring._shmring` for the state area (see lib.rs):
//! the segments behind `Value` / `Array`, the locks and other primitives,
//! and the byte-level containers behind `Manager().dict()` / `.list()`.
//! The multiprocessing-shaped classes are in `python/shmring/state.py`.
//!
//! Every object lives in an anonymous segment (a sealed memfd) of the Rust
//! library; it crosses to another process as its descriptor (pickled with
//! `multiprocessing.reduction.DupFd`, or inherited through `fork`) and is
//! re-opened there with the library's `from_fd`, which validates the
//! header. Nothing is ever named in `/dev/shm`.
//!
//! Blocking calls wait in slices of [`SLICE`] with the GIL released and
//! run the interpreter's signal handlers between slices, so Ctrl-C ends a
//! blocked `acquire` or `wait` with `KeyboardInterrupt` promptly.

use pyo3::exceptions::{
    PyFileExistsError, PyFileNotFoundError, PyIndexError, PyMemoryError, PyOSError,
    PyPermissionError, PyRuntimeError, PyTypeError, PyValueError,
};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyList, PyTuple};
use shmring::{
    Array, Condition, ContainerError, Event, Lock, LockGuard, LockTimeoutError, RLock, RLockGuard,
    SegmentError, Semaphore, Shared, SharedList, SharedMap, TryLockError, Value,
};
use std::cell::RefCell;
use std::cmp::Ordering as CmpOrdering;
use std::collections::HashMap;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Once;
use std::time::{Duration, Instant};

/// The longest a blocking call sleeps with the GIL released before it runs
/// the signal handlers (Ctrl-C) and sleeps again.
const SLICE: Duration = Duration::from_millis(20);

// ---------------------------------------------------------------------------
// Errors

/// `shmring.CorruptedError` when the queues area has registered it on the
/// module, `ValueError` otherwise.
fn corrupted(py: Python<'_>, text: String) -> PyErr {
    let class = py
        .import("shmring._shmring")
        .and_then(|m| m.getattr("CorruptedError"));
    match class {
        Ok(c) => match c.call1((text.clone(),)) {
            Ok(e) => PyErr::from_value(e),
            Err(_) => PyValueError::new_err(text),
        },
        Err(_) => PyValueError::new_err(text),
    }
}

/// A segment error as the Python exception that says the same.
fn seg_err(e: SegmentError) -> PyErr {
    let text = e.to_string();
    match e {
        SegmentError::NotFound(_) => PyFileNotFoundError::new_err(text),
        SegmentError::AlreadyExists(_) => PyFileExistsError::new_err(text),
        SegmentError::PermissionDenied(_) => PyPermissionError::new_err(text),
        SegmentError::Corrupted(_) | SegmentError::Untrusted(_) => {
            Python::attach(|py| corrupted(py, text))
        }
        SegmentError::InvalidArgument(_)
        | SegmentError::WrongKind { .. }
        | SegmentError::TypeMismatch { .. }
        | SegmentError::VersionMismatch { .. }
        | SegmentError::SizeMismatch { .. }
        | SegmentError::LengthMismatch { .. }
        | SegmentError::NotInitialized => PyValueError::new_err(text),
        _ => PyOSError::new_err(text),
    }
}

/// A container error as the Python exception that says the same.
fn cont_err(e: ContainerError) -> PyErr {
    let text = e.to_string();
    match e {
        ContainerError::Corrupted(_) => Python::attach(|py| corrupted(py, text)),
        ContainerError::OutOfRange { .. } => PyIndexError::new_err(text),
        ContainerError::Full { .. } | ContainerError::NoSpace { .. } => {
            PyMemoryError::new_err(text)
        }
        _ => PyValueError::new_err(text),
    }
}

// ---------------------------------------------------------------------------
// Descriptors

/// A descriptor of our own for `fd`, which stays the caller's: the
/// unpickling side closes what `DupFd.detach()` gave it either way.
fn dup_fd(fd: RawFd) -> PyResult<OwnedFd> {
    // SAFETY: dup reads no memory of ours; a descriptor that is not open
    // gives EBADF.
    let new = unsafe { libc::dup(fd) };
    if new < 0 {
        return Err(PyOSError::new_err(format!(
            "cannot duplicate descriptor {fd}: {}",
            std::io::Error::last_os_error()
        )));
    }
    // SAFETY: `new` was just returned by dup: open, and owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// The descriptor of an anonymous segment (every segment made here is).
fn need_fd(fd: Option<RawFd>) -> PyResult<RawFd> {
    fd.ok_or_else(|| PyValueError::new_err("the segment has no descriptor (not anonymous)"))
}

/// (size, device, inode) of an open descriptor.
fn fstat(fd: RawFd) -> PyResult<(u64, u64, u64)> {
    // SAFETY: a zeroed `stat` is a valid value of this plain C struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a live, writable `stat`; fstat writes only into it.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return Err(PyOSError::new_err(
            std::io::Error::last_os_error().to_string(),
        ));
    }
    Ok((st.st_size as u64, st.st_dev, st.st_ino))
}

/// Lets a value that is not `Send` (a lock guard) through
/// `Python::detach`, which runs its closure on the calling thread.
struct OnThisThread<T>(T);
// SAFETY: only used to carry values into and out of `Python::detach`,
// which runs the closure synchronously on the calling thread: the value
// never reaches another thread.
unsafe impl<T> Send for OnThisThread<T> {}

impl<T> OnThisThread<T> {
    fn into_inner(self) -> T {
        self.0
    }
}

/// The remaining time to `deadline` cut to one slice; `None` once passed.
fn next_slice(deadline: Option<Instant>) -> Option<Duration> {
    match deadline {
        None => Some(SLICE),
        Some(d) => {
            let left = d.saturating_duration_since(Instant::now());
            (!left.is_zero()).then(|| left.min(SLICE))
        }
    }
}

/// multiprocessing's timeouts: `None` waits forever, a negative one is 0.
fn deadline_of(timeout: Option<f64>) -> PyResult<Option<Instant>> {
    match timeout {
        None => Ok(None),
        Some(t) if t.is_nan() => Err(PyValueError::new_err("timeout is NaN")),
        Some(t) => {
            let d = Duration::try_from_secs_f64(t.max(0.0)).unwrap_or(Duration::from_secs(1 << 40));
            Ok(Some(Instant::now() + d))
        }
    }
}

/// Issues `shmring.OwnerDiedWarning` (defined in `shmring/state.py`).
fn warn_owner_died(py: Python<'_>, what: &str) -> PyResult<()> {
    static CATEGORY: PyOnceLock<Py<pyo3::types::PyType>> = PyOnceLock::new();
    let category = CATEGORY.import(py, "shmring.state", "OwnerDiedWarning")?;
    let msg = std::ffi::CString::new(format!(
        "the previous owner of this {what} died holding it; the lock is now held by the \
         caller, and the data it guards may be inconsistent"
    ))
    .unwrap_or_default();
    PyErr::warn(py, category.as_any(), &msg, 2)
}

/// Forks seen by this process's lineage: a child's count differs from
/// the one its inherited thread-local entries recorded.
static FORK_GEN: AtomicU64 = AtomicU64::new(0);

extern "C" fn after_fork_in_child() {
    // Relaxed: the child has one thread at this point.
    FORK_GEN.fetch_add(1, Ordering::Relaxed);
}

/// This process's fork generation (no system call, unlike `getpid`).
fn fork_gen() -> u64 {
    static WATCH: Once = Once::new();
    WATCH.call_once(|| {
        // SAFETY: registers a handler that only bumps an atomic, which is
        // async-signal-safe as a forked child's handlers must be.
        unsafe { libc::pthread_atfork(None, None, Some(after_fork_in_child)) };
    });
    // Relaxed: written only by the fork handler, before the child has
    // other threads.
    FORK_GEN.load(Ordering::Relaxed)
}

// ---------------------------------------------------------------------------
// Cells: the segments behind Value / Array

macro_rules! cell_kinds {
    ($($var:ident($t:ty) = $code:literal;)*) => {
        /// A Rust `Array<T>` of one of the storage types.
        enum AnyArray { $($var(Array<$t>)),* }

        impl AnyArray {
            fn create(kind: &str, len: usize) -> PyResult<Self> {
                match kind {
                    $($code => Ok(AnyArray::$var(Array::<$t>::anonymous(len).map_err(seg_err)?)),)*
                    _ => Err(PyTypeError::new_err(format!("no storage type {kind:?}"))),
                }
            }

            fn from_fd(kind: &str, fd: OwnedFd) -> PyResult<Self> {
                match kind {
                    $($code => Ok(AnyArray::$var(Array::<$t>::from_fd(fd).map_err(seg_err)?)),)*
                    _ => Err(PyTypeError::new_err(format!("no storage type {kind:?}"))),
                }
            }

            fn len(&self) -> usize {
                match self { $(AnyArray::$var(a) => a.len()),* }
            }

            fn raw_fd(&self) -> Option<RawFd> {
                match self { $(AnyArray::$var(a) => a.raw_fd()),* }
            }

            fn item_size(&self) -> usize {
                match self { $(AnyArray::$var(_) => std::mem::size_of::<$t>()),* }
            }
        }
    };
}

cell_kinds! {
    I8(i8) = "i1";
    U8(u8) = "u1";
    I16(i16) = "i2";
    U16(u16) = "u2";
    I32(i32) = "i4";
    U32(u32) = "u4";
    I64(i64) = "i8";
    U64(u64) = "u8";
    F32(f32) = "f4";
    F64(f64) = "f8";
}

/// Refuses a segment of `bytes` that cannot fit in this machine's memory
/// (RAM plus swap). A `Value` / `Array` segment is allocated in full when
/// it is created (`posix_fallocate`, so that a later write cannot meet a
/// full file system), and a memfd has no size limit of its own: asking for
/// more than the machine has would not fail, it would fill memory until
/// the kernel's OOM killer ends this process or another one.
fn check_fits_in_memory(bytes: usize) -> PyResult<()> {
    // SAFETY: a zeroed `sysinfo` is a valid value of this plain C struct.
    let mut info: libc::sysinfo = unsafe { std::mem::zeroed() };
    // SAFETY: `info` is a live, writable `sysinfo`; the call writes only
    // into it.
    if unsafe { libc::sysinfo(&mut info) } != 0 {
        return Ok(());
    }
    let unit = u128::from(info.mem_unit.max(1));
    let total = (u128::from(info.totalram) + u128::from(info.totalswap)) * unit;
    if bytes as u128 > total {
        return Err(PyMemoryError::new_err(format!(
            "a shared array of {bytes} bytes exceeds this machine's memory \
             ({total} bytes of RAM and swap)"
        )));
    }
    Ok(())
}

/// The anonymous segment of a `Value` or `Array`: a Rust `shmring::Array`
/// of `length` elements of a storage type (`"i4"`, `"f8"`, …). Python maps
/// the same descriptor (`mmap`) and lays a ctypes object over the elements
/// at `offset`: that gives indexing, `.value` and the buffer protocol.
#[pyclass(module = "shmring._shmring", name = "_CellSegment", frozen)]
struct CellSegment {
    array: AnyArray,
    kind: String,
    offset: usize,
    total_len: usize,
}

impl CellSegment {
    fn finish(array: AnyArray, kind: &str) -> PyResult<Self> {
        let fd = need_fd(array.raw_fd())?;
        let (size, _, _) = fstat(fd)?;
        // The elements are the segment's tail (its layout: header, lock,
        // elements; the file is exactly `total_len` long, which every
        // open checks), so they start `len * size` before the end.
        let data = array.len() * array.item_size();
        let offset = (size as usize)
            .checked_sub(data)
            .filter(|&o| o >= 256 && o % 8 == 0)
            .ok_or_else(|| PyValueError::new_err("unexpected cell segment layout"))?;
        Ok(CellSegment {
            array,
            kind: kind.to_owned(),
            offset,
            total_len: size as usize,
        })
    }
}

#[pymethods]
impl CellSegment {
    /// A new zeroed segment of `length` elements of storage type `kind`.
    ///
    /// # Errors
    /// `MemoryError` when the elements alone exceed the machine's memory
    /// (RAM and swap): see [`check_fits_in_memory`].
    #[new]
    fn new(kind: &str, length: usize) -> PyResult<Self> {
        let item = match kind.get(1..).and_then(|n| n.parse::<usize>().ok()) {
            Some(n) if n > 0 => n,
            _ => return Err(PyTypeError::new_err(format!("no storage type {kind:?}"))),
        };
        if let Some(bytes) = length.checked_mul(item) {
            check_fits_in_memory(bytes)?;
        }
        Self::finish(AnyArray::create(kind, length)?, kind)
    }

    /// Opens the segment behind descriptor `fd` (duplicated: `fd` stays the
    /// caller's), checking its type and that it has `length` elements.
    #[staticmethod]
    fn _from_fd(fd: RawFd, kind: &str, length: usize) -> PyResult<Self> {
        let array = AnyArray::from_fd(kind, dup_fd(fd)?)?;
        if array.len() != length {
            return Err(PyValueError::new_err(format!(
                "the segment holds {} elements, not {length}",
                array.len()
            )));
        }
        Self::finish(array, kind)
    }

    /// The memfd (owned by this object; pickling duplicates it).
    #[getter]
    fn fd(&self) -> PyResult<RawFd> {
        need_fd(self.array.raw_fd())
    }

    /// Where the elements start in the segment, in bytes.
    #[getter]
    fn offset(&self) -> usize {
        self.offset
    }

    /// The segment's whole length, in bytes (what to map).
    #[getter]
    fn total_len(&self) -> usize {
        self.total_len
    }

    /// The number of elements.
    #[getter]
    fn length(&self) -> usize {
        self.array.len()
    }

    /// The storage type (`"i4"`, `"f8"`, …).
    #[getter]
    fn kind(&self) -> &str {
        &self.kind
    }
}

// ---------------------------------------------------------------------------
// The pid namespace a handle was opened in

/// The pid namespace a handle was opened in. The locks and containers
/// judge their owners by pid, which means nothing from another pid
/// namespace: a handle inherited by a child forked into a new one (after
/// `unshare(CLONE_NEWPID)`) is refused there with `OSError`, as queues and
/// pipes refuse theirs, instead of reaching the library's check (a panic,
/// `PanicException` in Python). Opening one anew there (`from_fd`, from a
/// pickle) is refused by the library already. One cached load per call.
#[derive(Clone, Copy)]
struct Ns(u64);

impl Ns {
    fn here() -> Ns {
        Ns(shmring::pid_namespace())
    }

    fn check(self) -> PyResult<()> {
        let ours = shmring::pid_namespace();
        if self.0 != 0 && ours != 0 && self.0 != ours {
            return Err(PyOSError::new_err(format!(
                "this handle was opened in pid namespace {} and is used from pid namespace \
                 {ours} (inherited across unshare(CLONE_NEWPID)?): its lock owners cannot be \
                 judged from here; create the object in this namespace",
                self.0
            )));
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Locks, and the guards each thread holds

/// A lock of either kind, with its segment.
#[derive(Clone)]
enum LockRef {
    Plain(Shared<Lock>),
    Recursive(Shared<RLock>),
}

impl LockRef {
    fn raw_fd(&self) -> Option<RawFd> {
        match self {
            LockRef::Plain(s) => s.raw_fd(),
            LockRef::Recursive(s) => s.raw_fd(),
        }
    }

    fn what(&self) -> &'static str {
        match self {
            LockRef::Plain(_) => "Lock",
            LockRef::Recursive(_) => "RLock",
        }
    }

    /// Where this handle maps the lock: two handles of one lock (two
    /// unpicklings, or `_fd=`) have two mappings.
    fn addr(&self) -> *const u8 {
        match self {
            LockRef::Plain(s) => std::ptr::from_ref::<Lock>(s).cast(),
            LockRef::Recursive(s) => std::ptr::from_ref::<RLock>(s).cast(),
        }
    }
}

/// A guard, its lifetime erased: it lives in a [`Held`] beside a clone of
/// the `Shared` it borrows from.
enum Guard {
    Plain(LockGuard<'static>),
    Recursive(RLockGuard<'static>),
}

/// What this thread holds of one lock: a guard per acquire (one for a
/// `Lock`, one per level for an `RLock`).
struct Held {
    /// The fork generation the guards were taken in: an entry inherited
    /// through `fork` is the parent's, not ours.
    gen: u64,
    /// Declared before `keep`, so dropped first: they borrow from it. A
    /// guard taken through another handle of the same lock (another
    /// mapping) carries a clone of that handle's segment, dropped after
    /// it (tuple fields drop in order), so that dropping that handle in
    /// Python leaves the guard's memory mapped.
    guards: Vec<(Guard, Option<LockRef>)>,
    keep: LockRef,
}

/// A lock's identity in this process: the memfd's device and inode, the
/// same for every handle of it (each unpickling maps it anew).
type LockKey = (u64, u64);

thread_local! {
    static HELD: RefCell<Vec<(LockKey, Held)>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on this thread's entry for `key` (dropping entries inherited
/// from a parent process first).
fn with_held<R>(key: LockKey, f: impl FnOnce(Option<&mut Held>) -> R) -> R {
    HELD.with(|h| {
        let mut h = h.borrow_mut();
        let me = fork_gen();
        // Guards a forked child inherited release nothing (the lock word
        // names the parent's thread): dropping them is harmless.
        h.retain(|(_, held)| held.gen == me);
        f(h.iter_mut().find(|(k, _)| *k == key).map(|(_, held)| held))
    })
}

/// Records a guard this thread just took.
fn push_guard(key: LockKey, keep: &LockRef, guard: Guard) {
    HELD.with(|h| {
        let mut h = h.borrow_mut();
        let me = fork_gen();
        h.retain(|(_, held)| held.gen == me);
        match h.iter_mut().find(|(k, _)| *k == key) {
            Some((_, held)) => {
                let own = (held.keep.addr() != keep.addr()).then(|| keep.clone());
                held.guards.push((guard, own));
            }
            None => h.push((
                key,
                Held {
                    gen: me,
                    guards: vec![(guard, None)],
                    keep: keep.clone(),
                },
            )),
        }
    });
}

/// Takes this thread's innermost guard of `key` out (for a condition wait,
/// or to drop it).
fn pop_guard(key: LockKey) -> Option<(Guard, Option<LockRef>)> {
    with_held(key, |held| held.and_then(|h| h.guards.pop()))
}

/// As [`pop_guard`], with the handle whose mapping the guard borrows (to
/// keep alive while the guard is out, and to push it back with).
fn pop_guard_with_its_lock(key: LockKey) -> Option<(Guard, LockRef)> {
    with_held(key, |held| {
        let h = held?;
        let (guard, own) = h.guards.pop()?;
        Some((guard, own.unwrap_or_else(|| h.keep.clone())))
    })
}

/// A thread keeps the entries of up to this many locks it no longer holds,
/// so that taking the same lock again reuses its entry (no allocation, no
/// reference count traffic: an uncontended acquire/release pair from
/// Python went from about 160 to 145–150 ns). Past that, released entries are dropped, and
/// with them the mappings they keep alive.
const KEEP_RELEASED: usize = 8;

/// Drops this thread's entries that hold no guard, once there are more
/// than [`KEEP_RELEASED`] entries.
fn prune() {
    HELD.with(|h| {
        let mut h = h.borrow_mut();
        if h.len() > KEEP_RELEASED {
            h.retain(|(_, held)| !held.guards.is_empty());
        }
    });
}

fn is_held(key: LockKey) -> bool {
    with_held(key, |held| held.is_some_and(|h| !h.guards.is_empty()))
}

/// The outcome of one try at a lock.
enum Try {
    Got(Guard, bool),
    Busy,
}

/// The shared part of `Lock` and `RLock`.
struct LockCore {
    lock: LockRef,
    key: LockKey,
    ns: Ns,
}

impl LockCore {
    fn new(lock: LockRef) -> PyResult<Self> {
        let (_, dev, ino) = fstat(need_fd(lock.raw_fd())?)?;
        Ok(LockCore {
            lock,
            key: (dev, ino),
            ns: Ns::here(),
        })
    }

    fn try_once(&self) -> Try {
        match &self.lock {
            LockRef::Plain(l) => match l.try_lock() {
                Ok(g) => Try::Got(plain(g), false),
                Err(TryLockError::OwnerDied(g)) => Try::Got(plain(g), true),
                Err(TryLockError::WouldBlock) => Try::Busy,
            },
            LockRef::Recursive(l) => match l.try_lock() {
                Ok(g) => Try::Got(recursive(g), false),
                Err(TryLockError::OwnerDied(g)) => Try::Got(recursive(g), true),
                Err(TryLockError::WouldBlock) => Try::Busy,
            },
        }
    }

    fn timed_once(&self, slice: Duration) -> Try {
        match &self.lock {
            LockRef::Plain(l) => match l.lock_timeout(slice) {
                Ok(g) => Try::Got(plain(g), false),
                Err(LockTimeoutError::OwnerDied(g)) => Try::Got(plain(g), true),
                Err(LockTimeoutError::Timeout) => Try::Busy,
            },
            LockRef::Recursive(l) => match l.lock_timeout(slice) {
                Ok(g) => Try::Got(recursive(g), false),
                Err(LockTimeoutError::OwnerDied(g)) => Try::Got(recursive(g), true),
                Err(LockTimeoutError::Timeout) => Try::Busy,
            },
        }
    }

    fn got(&self, py: Python<'_>, guard: Guard, died: bool) -> PyResult<bool> {
        push_guard(self.key, &self.lock, guard);
        if died {
            // The lock stays held even if the warning is an error.
            warn_owner_died(py, self.lock.what())?;
        }
        Ok(true)
    }

    fn acquire(&self, py: Python<'_>, block: bool, timeout: Option<f64>) -> PyResult<bool> {
        self.ns.check()?;
        if let Try::Got(g, died) = self.try_once() {
            return self.got(py, g, died);
        }
        if !block {
            return Ok(false);
        }
        let deadline = deadline_of(timeout)?;
        while let Some(slice) = next_slice(deadline) {
            let r = py.detach(|| OnThisThread(self.timed_once(slice)));
            if let Try::Got(g, died) = r.0 {
                return self.got(py, g, died);
            }
            py.check_signals()?;
        }
        Ok(false)
    }

    fn release(&self) -> PyResult<()> {
        self.ns.check()?;
        match pop_guard(self.key) {
            Some(g) => {
                drop(g);
                prune();
                Ok(())
            }
            None => Err(PyRuntimeError::new_err("cannot release un-acquired lock")),
        }
    }
}

/// A guard of a `LockCore`'s lock, to keep in [`HELD`] (or drop).
fn plain(g: LockGuard<'_>) -> Guard {
    // SAFETY: the guard borrows the lock in the mapping of a `LockCore`'s
    // `Shared`; this module stores it only in a `Held` that keeps a clone
    // of that `Shared` (the same mapping) and drops the guard first, or
    // drops it before the `LockCore` call that took it returns.
    Guard::Plain(unsafe { erase(g) })
}

/// As [`plain`], for an `RLock`.
fn recursive(g: RLockGuard<'_>) -> Guard {
    // SAFETY: as in `plain`.
    Guard::Recursive(unsafe { erase_r(g) })
}

/// Erases a lock guard's lifetime.
///
/// # Safety
/// The guard must be dropped before the mapping of the lock it borrows
/// (kept alive by a `Shared` clone stored beside it).
unsafe fn erase(g: LockGuard<'_>) -> LockGuard<'static> {
    // SAFETY: same type but the lifetime; the caller keeps the lock alive.
    unsafe { std::mem::transmute::<LockGuard<'_>, LockGuard<'static>>(g) }
}

/// As [`erase`], for an `RLock` guard.
///
/// # Safety
/// As [`erase`].
unsafe fn erase_r(g: RLockGuard<'_>) -> RLockGuard<'static> {
    // SAFETY: same type but the lifetime; the caller keeps the lock alive.
    unsafe { std::mem::transmute::<RLockGuard<'_>, RLockGuard<'static>>(g) }
}

/// The native half of `shmring.Lock` (subclassed in Python).
#[pyclass(module = "shmring._shmring", name = "_Lock", subclass, frozen)]
struct PyLock {
    core: LockCore,
}

/// The methods `Lock` and `RLock` share (and their constructor), with each
/// one's own docs and extra methods: one definition for both classes.
macro_rules! lock_class {
    ($ty:ident, $prim:ident, $variant:ident, $acquire_doc:literal, $release_doc:literal,
     { $($extra:tt)* }) => {
        #[pymethods]
        impl $ty {
            #[new]
            #[pyo3(signature = (*, _fd=None))]
            fn new(_fd: Option<RawFd>) -> PyResult<Self> {
                let shared = match _fd {
                    None => Shared::anonymous($prim::new()),
                    Some(fd) => Shared::<$prim>::builder().from_fd(dup_fd(fd)?),
                }
                .map_err(seg_err)?;
                Ok($ty {
                    core: LockCore::new(LockRef::$variant(shared))?,
                })
            }

            #[doc = $acquire_doc]
            #[pyo3(signature = (block=true, timeout=None))]
            fn acquire(&self, py: Python<'_>, block: bool, timeout: Option<f64>) -> PyResult<bool> {
                self.core.acquire(py, block, timeout)
            }

            #[doc = $release_doc]
            fn release(&self) -> PyResult<()> {
                self.core.release()
            }

            fn __enter__(&self, py: Python<'_>) -> PyResult<bool> {
                self.core.acquire(py, true, None)
            }

            #[pyo3(signature = (*_args))]
            fn __exit__(&self, _args: &Bound<'_, PyTuple>) -> PyResult<()> {
                self.core.release()
            }

            /// Whether the calling thread holds the lock.
            fn _is_owned(&self) -> PyResult<bool> {
                self.core.ns.check()?;
                Ok(is_held(self.core.key))
            }

            /// The memfd, for pickling.
            #[getter]
            fn _fd(&self) -> PyResult<RawFd> {
                need_fd(self.core.lock.raw_fd())
            }

            $($extra)*
        }
    };
}

lock_class!(
    PyLock,
    Lock,
    Plain,
    "Takes the lock: waits for it (at most `timeout` seconds if given) \
     when `block`, else only tries. True when taken. A previous owner \
     that died holding it is reported with `OwnerDiedWarning` (the lock \
     is then held).",
    "Releases the lock (only the thread that took it may).",
    {
        /// Whether anybody holds the lock (a snapshot).
        fn _is_locked(&self) -> PyResult<bool> {
            self.core.ns.check()?;
            Ok(match &self.core.lock {
                LockRef::Plain(l) => l.is_locked(),
                LockRef::Recursive(l) => l.depth() > 0,
            })
        }
    }
);

/// The native half of `shmring.RLock` (subclassed in Python).
#[pyclass(module = "shmring._shmring", name = "_RLock", subclass, frozen)]
struct PyRLock {
    core: LockCore,
}

lock_class!(
    PyRLock,
    RLock,
    Recursive,
    "Takes the lock, or enters it once more if this thread holds it; as \
     `Lock.acquire` otherwise.",
    "Leaves one level; the lock is free once every level is left.",
    {
        /// The depth of the holder (0: free; a snapshot).
        fn _depth(&self) -> PyResult<u32> {
            self.core.ns.check()?;
            Ok(match &self.core.lock {
                LockRef::Recursive(l) => l.depth(),
                LockRef::Plain(l) => u32::from(l.is_locked()),
            })
        }
    }
);

/// The key and lock of a `shmring.Lock` or `shmring.RLock` object.
fn lock_of(obj: &Bound<'_, PyAny>) -> PyResult<(LockKey, LockRef)> {
    if let Ok(l) = obj.cast::<PyLock>() {
        let l = l.get();
        return Ok((l.core.key, l.core.lock.clone()));
    }
    if let Ok(l) = obj.cast::<PyRLock>() {
        let l = l.get();
        return Ok((l.core.key, l.core.lock.clone()));
    }
    Err(PyTypeError::new_err(
        "a shmring Condition needs a shmring Lock or RLock",
    ))
}

// ---------------------------------------------------------------------------
// Condition, Event, Semaphore

/// The native half of `shmring.Condition`: the waiting; the lock is the
/// Python object's.
#[pyclass(module = "shmring._shmring", name = "_Condition", frozen)]
struct PyCondition {
    cond: Shared<Condition>,
    ns: Ns,
}

#[pymethods]
impl PyCondition {
    #[new]
    #[pyo3(signature = (*, _fd=None))]
    fn new(_fd: Option<RawFd>) -> PyResult<Self> {
        let cond = match _fd {
            None => Shared::anonymous(Condition::new()),
            Some(fd) => Shared::<Condition>::builder().from_fd(dup_fd(fd)?),
        }
        .map_err(seg_err)?;
        Ok(PyCondition {
            cond,
            ns: Ns::here(),
        })
    }

    /// Releases `lock` (every level of an RLock), waits for a notify (at
    /// most `timeout` seconds if given), takes the lock back; False when
    /// it timed out.
    #[pyo3(signature = (lock, timeout=None))]
    fn wait(
        &self,
        py: Python<'_>,
        lock: &Bound<'_, PyAny>,
        timeout: Option<f64>,
    ) -> PyResult<bool> {
        self.ns.check()?;
        let (key, lref) = lock_of(lock)?;
        let deadline = deadline_of(timeout)?;
        // `guard_lock`: the handle the guard borrows from (not necessarily
        // `lref`, another handle of the same lock), alive until the guard
        // is back in this thread's table.
        let Some((mut guard, guard_lock)) = pop_guard_with_its_lock(key) else {
            return Err(PyRuntimeError::new_err("cannot wait on un-acquired lock"));
        };
        let mut died = false;
        let mut notified = false;
        let mut interrupted = Ok(());
        while let Some(slice) = next_slice(deadline) {
            let g = OnThisThread(guard);
            let r = py.detach(|| {
                let cond = &*self.cond;
                // A method call moves the whole wrapper in (a pattern
                // would capture only its non-Send field).
                OnThisThread(match g.into_inner() {
                    Guard::Plain(g) => match cond.wait_timeout(g, slice) {
                        Ok((g, t)) => (Guard::Plain(g), false, t.timed_out()),
                        Err(d) => (Guard::Plain(d.into_inner()), true, false),
                    },
                    Guard::Recursive(g) => match cond.wait_timeout(g, slice) {
                        Ok((g, t)) => (Guard::Recursive(g), false, t.timed_out()),
                        Err(d) => (Guard::Recursive(d.into_inner()), true, false),
                    },
                })
            });
            let (g, d, timed_out) = r.0;
            guard = g;
            died |= d;
            if !timed_out {
                notified = true;
                break;
            }
            if let Err(e) = py.check_signals() {
                interrupted = Err(e);
                break;
            }
        }
        push_guard(key, &guard_lock, guard);
        interrupted?;
        if died {
            warn_owner_died(py, lref.what())?;
        }
        Ok(notified)
    }

    /// Wakes up to `n` waiters; the caller must hold `lock`.
    #[pyo3(signature = (lock, n=1))]
    fn notify(&self, lock: &Bound<'_, PyAny>, n: usize) -> PyResult<()> {
        self.ns.check()?;
        let (key, _) = lock_of(lock)?;
        if !is_held(key) {
            return Err(PyRuntimeError::new_err("cannot notify on un-acquired lock"));
        }
        for _ in 0..n {
            self.cond.notify_one();
        }
        Ok(())
    }

    /// Wakes every waiter; the caller must hold `lock`.
    fn notify_all(&self, lock: &Bound<'_, PyAny>) -> PyResult<()> {
        self.ns.check()?;
        let (key, _) = lock_of(lock)?;
        if !is_held(key) {
            return Err(PyRuntimeError::new_err("cannot notify on un-acquired lock"));
        }
        self.cond.notify_all();
        Ok(())
    }

    /// The memfd, for pickling.
    #[getter]
    fn _fd(&self) -> PyResult<RawFd> {
        need_fd(self.cond.raw_fd())
    }
}

/// The native half of `shmring.Event` (subclassed in Python).
#[pyclass(module = "shmring._shmring", name = "_Event", subclass, frozen)]
struct PyEvent {
    ev: Shared<Event>,
    ns: Ns,
}

#[pymethods]
impl PyEvent {
    #[new]
    #[pyo3(signature = (*, _fd=None))]
    fn new(_fd: Option<RawFd>) -> PyResult<Self> {
        let ev = match _fd {
            None => Shared::anonymous(Event::new()),
            Some(fd) => Shared::<Event>::builder().from_fd(dup_fd(fd)?),
        }
        .map_err(seg_err)?;
        Ok(PyEvent { ev, ns: Ns::here() })
    }

    /// Whether the flag is set.
    fn is_set(&self) -> PyResult<bool> {
        self.ns.check()?;
        Ok(self.ev.is_set())
    }

    /// Sets the flag and wakes every waiter.
    fn set(&self) -> PyResult<()> {
        self.ns.check()?;
        self.ev.set();
        Ok(())
    }

    /// Clears the flag.
    fn clear(&self) -> PyResult<()> {
        self.ns.check()?;
        self.ev.clear();
        Ok(())
    }

    /// Waits until the flag is set (at most `timeout` seconds if given);
    /// returns the flag.
    #[pyo3(signature = (timeout=None))]
    fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        self.ns.check()?;
        if self.ev.is_set() {
            return Ok(true);
        }
        let deadline = deadline_of(timeout)?;
        while let Some(slice) = next_slice(deadline) {
            if py.detach(|| self.ev.wait_timeout(slice)) {
                return Ok(true);
            }
            py.check_signals()?;
        }
        Ok(self.ev.is_set())
    }

    /// The memfd, for pickling.
    #[getter]
    fn _fd(&self) -> PyResult<RawFd> {
        need_fd(self.ev.raw_fd())
    }
}

/// The native half of `shmring.Semaphore` and `BoundedSemaphore`.
#[pyclass(module = "shmring._shmring", name = "_Semaphore", subclass, frozen)]
struct PySemaphore {
    sem: Shared<Semaphore>,
    bounded: bool,
    ns: Ns,
}

#[pymethods]
impl PySemaphore {
    #[new]
    #[pyo3(signature = (value=1, bounded=false, *, _fd=None))]
    fn new(value: i64, bounded: bool, _fd: Option<RawFd>) -> PyResult<Self> {
        let sem = match _fd {
            None => {
                let v = u32::try_from(value).map_err(|_| {
                    PyValueError::new_err("semaphore initial value must be >= 0 and < 2**32")
                })?;
                Shared::anonymous(if bounded {
                    Semaphore::bounded(v)
                } else {
                    Semaphore::new(v)
                })
            }
            Some(fd) => Shared::<Semaphore>::builder().from_fd(dup_fd(fd)?),
        }
        .map_err(seg_err)?;
        Ok(PySemaphore {
            sem,
            bounded,
            ns: Ns::here(),
        })
    }

    /// Takes a permit: waits for one (at most `timeout` seconds if given)
    /// when `block`, else only tries. True when taken.
    #[pyo3(signature = (block=true, timeout=None))]
    fn acquire(&self, py: Python<'_>, block: bool, timeout: Option<f64>) -> PyResult<bool> {
        self.ns.check()?;
        if self.sem.try_acquire() {
            return Ok(true);
        }
        if !block {
            return Ok(false);
        }
        let deadline = deadline_of(timeout)?;
        while let Some(slice) = next_slice(deadline) {
            if py.detach(|| self.sem.acquire_timeout(slice)) {
                return Ok(true);
            }
            py.check_signals()?;
        }
        Ok(false)
    }

    /// Gives a permit back (any thread or process may); a bounded
    /// semaphore refuses to go past its start value (`ValueError`).
    fn release(&self) -> PyResult<()> {
        self.ns.check()?;
        self.sem
            .release()
            .map_err(|_| PyValueError::new_err("semaphore or lock released too many times"))
    }

    fn __enter__(&self, py: Python<'_>) -> PyResult<bool> {
        self.acquire(py, true, None)
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, _args: &Bound<'_, PyTuple>) -> PyResult<()> {
        self.release()
    }

    /// Free permits now (a snapshot).
    fn get_value(&self) -> PyResult<u32> {
        self.ns.check()?;
        Ok(self.sem.value())
    }

    /// Whether this is a bounded semaphore.
    #[getter]
    fn _bounded(&self) -> bool {
        self.bounded
    }

    /// The memfd, for pickling.
    #[getter]
    fn _fd(&self) -> PyResult<RawFd> {
        need_fd(self.sem.raw_fd())
    }
}

// ---------------------------------------------------------------------------
// Containers: bytes in, bytes out; pickling is Python's

/// A dict record: `[ticket u64 LE][klen u32 LE][original key: klen][value]`.
/// The ticket orders the keys as inserted; the original key is the one
/// first stored when it differs from the lookup key (`1.0` kept for the
/// key `1`), empty otherwise.
fn record(ticket: u64, orig: Option<&[u8]>, value: &[u8]) -> Vec<u8> {
    let orig = orig.unwrap_or(&[]);
    let mut r = Vec::with_capacity(12 + orig.len() + value.len());
    r.extend_from_slice(&ticket.to_le_bytes());
    r.extend_from_slice(&(orig.len() as u32).to_le_bytes());
    r.extend_from_slice(orig);
    r.extend_from_slice(value);
    r
}

/// (ticket, original key if any, value) of a record.
/// (ticket, original key if any, value): a record's parts.
type Parsed<'a> = (u64, Option<&'a [u8]>, &'a [u8]);

fn parse(rec: &[u8]) -> Result<Parsed<'_>, ContainerError> {
    let bad = || ContainerError::Corrupted("a dict record is malformed");
    if rec.len() < 12 {
        return Err(bad());
    }
    let ticket = u64::from_le_bytes(rec[..8].try_into().map_err(|_| bad())?);
    let klen = u32::from_le_bytes(rec[8..12].try_into().map_err(|_| bad())?) as usize;
    let rest = &rec[12..];
    if klen > rest.len() {
        return Err(bad());
    }
    let orig = (klen > 0).then(|| &rest[..klen]);
    Ok((ticket, orig, &rest[klen..]))
}

/// (original key or None, value) of a key found.
type Found<'py> = (Option<Bound<'py, PyBytes>>, Bound<'py, PyBytes>);

type Item<'py> = (
    Bound<'py, PyBytes>,
    Option<Bound<'py, PyBytes>>,
    Bound<'py, PyBytes>,
);

/// The native half of a `Manager().dict()`: a `SharedMap` of pickled keys
/// to records, and a `Value<u64>` handing out insertion tickets.
#[pyclass(module = "shmring._shmring", name = "_SharedDict", frozen)]
struct PySharedDict {
    map: SharedMap,
    tickets: Value<u64>,
    ns: Ns,
}

#[pymethods]
impl PySharedDict {
    #[new]
    #[pyo3(signature = (*, _fds=None))]
    fn new(_fds: Option<(RawFd, RawFd)>) -> PyResult<Self> {
        let (map, tickets) = match _fds {
            None => (SharedMap::anonymous(), Value::<u64>::anonymous(0)),
            Some((m, t)) => (
                SharedMap::builder().from_fd(dup_fd(m)?),
                Value::<u64>::from_fd(dup_fd(t)?),
            ),
        };
        Ok(PySharedDict {
            map: map.map_err(seg_err)?,
            tickets: tickets.map_err(seg_err)?,
            ns: Ns::here(),
        })
    }

    /// (original key or None, value) of `key`, or None.
    fn get<'py>(&self, py: Python<'py>, key: &[u8]) -> PyResult<Option<Found<'py>>> {
        self.ns.check()?;
        let rec = py.detach(|| self.map.get(key)).map_err(cont_err)?;
        let Some(rec) = rec else { return Ok(None) };
        let (_, orig, value) = parse(&rec).map_err(cont_err)?;
        Ok(Some((
            orig.map(|o| PyBytes::new(py, o)),
            PyBytes::new(py, value),
        )))
    }

    /// `d[key] = value`: keeps the key's place and original key when it
    /// is there already.
    #[pyo3(signature = (key, orig, value))]
    fn set(&self, py: Python<'_>, key: &[u8], orig: Option<&[u8]>, value: &[u8]) -> PyResult<()> {
        self.ns.check()?;
        py.detach(|| {
            let ticket = self.tickets.fetch_add(1);
            let mut bad = None;
            self.map.update(key, |old| {
                let kept = old.and_then(|o| match parse(o) {
                    Ok((t, o, _)) => Some((t, o.map(<[u8]>::to_vec))),
                    Err(e) => {
                        bad = Some(e);
                        None
                    }
                });
                Some(match kept {
                    Some((t, o)) => record(t, o.as_deref(), value),
                    None => record(ticket, orig, value),
                })
            })?;
            bad.map_or(Ok(()), Err)
        })
        .map_err(cont_err)
    }

    /// `d.setdefault(key, value)`: the value stored afterwards, as one
    /// atomic step.
    fn setdefault<'py>(
        &self,
        py: Python<'py>,
        key: &[u8],
        orig: Option<&[u8]>,
        value: &[u8],
    ) -> PyResult<Bound<'py, PyBytes>> {
        self.ns.check()?;
        let rec = py
            .detach(|| {
                let ticket = self.tickets.fetch_add(1);
                self.map.update(key, |old| {
                    Some(match old {
                        Some(o) => o.to_vec(),
                        None => record(ticket, orig, value),
                    })
                })
            })
            .map_err(cont_err)?
            .ok_or_else(|| PyRuntimeError::new_err("setdefault stored nothing"))?;
        let (_, _, v) = parse(&rec).map_err(cont_err)?;
        Ok(PyBytes::new(py, v))
    }

    /// Removes `key`; its value, or None.
    fn pop<'py>(&self, py: Python<'py>, key: &[u8]) -> PyResult<Option<Bound<'py, PyBytes>>> {
        self.ns.check()?;
        let rec = py.detach(|| self.map.remove(key)).map_err(cont_err)?;
        match rec {
            None => Ok(None),
            Some(r) => Ok(Some(PyBytes::new(py, parse(&r).map_err(cont_err)?.2))),
        }
    }

    /// Removes the last key inserted (atomically: retried if another
    /// process changed it meanwhile); (key, original, value), or None.
    fn popitem<'py>(&self, py: Python<'py>) -> PyResult<Option<Item<'py>>> {
        self.ns.check()?;
        loop {
            let entries = py.detach(|| self.map.entries()).map_err(cont_err)?;
            let mut last: Option<(u64, Vec<u8>, Vec<u8>)> = None;
            for (k, rec) in entries {
                let t = parse(&rec).map_err(cont_err)?.0;
                if last.as_ref().is_none_or(|(lt, _, _)| t > *lt) {
                    last = Some((t, k, rec));
                }
            }
            let Some((_, k, rec)) = last else {
                return Ok(None);
            };
            let swapped = py
                .detach(|| self.map.compare_and_swap(&k, Some(&rec), None))
                .map_err(cont_err)?;
            if swapped.is_ok() {
                let (_, orig, value) = parse(&rec).map_err(cont_err)?;
                return Ok(Some((
                    PyBytes::new(py, &k),
                    orig.map(|o| PyBytes::new(py, o)),
                    PyBytes::new(py, value),
                )));
            }
        }
    }

    /// Whether `key` is there.
    fn contains(&self, py: Python<'_>, key: &[u8]) -> PyResult<bool> {
        self.ns.check()?;
        py.detach(|| self.map.contains_key(key)).map_err(cont_err)
    }

    fn __len__(&self, py: Python<'_>) -> PyResult<usize> {
        self.ns.check()?;
        Ok(py.detach(|| self.map.len()))
    }

    /// Removes every key (one atomic step).
    fn clear(&self, py: Python<'_>) -> PyResult<()> {
        self.ns.check()?;
        py.detach(|| self.map.clear()).map_err(cont_err)
    }

    /// One consistent snapshot: (key, original or None, value) in
    /// insertion order.
    fn items<'py>(&self, py: Python<'py>) -> PyResult<Vec<Item<'py>>> {
        self.ns.check()?;
        let entries = py.detach(|| self.map.entries()).map_err(cont_err)?;
        let mut parsed = Vec::with_capacity(entries.len());
        for (k, rec) in &entries {
            let (t, orig, value) = parse(rec).map_err(cont_err)?;
            parsed.push((t, k, orig, value));
        }
        parsed.sort_by_key(|p| p.0);
        Ok(parsed
            .into_iter()
            .map(|(_, k, o, v)| {
                (
                    PyBytes::new(py, k),
                    o.map(|o| PyBytes::new(py, o)),
                    PyBytes::new(py, v),
                )
            })
            .collect())
    }

    /// The two memfds (map, tickets), for pickling.
    #[getter]
    fn _fds(&self) -> PyResult<(RawFd, RawFd)> {
        Ok((need_fd(self.map.raw_fd())?, need_fd(self.tickets.raw_fd())?))
    }
}

/// The native half of a `Manager().list()`: a `SharedList` of pickled
/// items.
#[pyclass(module = "shmring._shmring", name = "_SharedList", frozen)]
struct PySharedList {
    list: SharedList,
    /// The list's identity in this process (its memfd's device and
    /// inode, the same for every handle of it): see [`SORTING`].
    key: (u64, u64),
    ns: Ns,
}

thread_local! {
    /// The lists this thread is sorting now. `sort` holds the list's
    /// writer lock while it calls Python (unpickling, `key`, `<`); a
    /// change to the same list from there (through any handle) would wait
    /// for itself, and the Rust list panics instead: such a change is
    /// refused with `ValueError` first, as `list.sort` refuses a list
    /// modified during the sort.
    static SORTING: RefCell<Vec<(u64, u64)>> = const { RefCell::new(Vec::new()) };
}

/// Marks a list as being sorted by this thread until dropped (also when
/// the sort unwinds).
struct Sorting((u64, u64));

impl Sorting {
    fn start(key: (u64, u64)) -> Self {
        SORTING.with(|s| s.borrow_mut().push(key));
        Sorting(key)
    }
}

impl Drop for Sorting {
    fn drop(&mut self) {
        SORTING.with(|s| {
            let mut s = s.borrow_mut();
            if let Some(i) = s.iter().rposition(|k| *k == self.0) {
                s.remove(i);
            }
        });
    }
}

impl PySharedList {
    /// `ValueError` when this thread is sorting this list (a change from
    /// the sort's `key`, `<` or unpickling).
    fn not_sorting(&self) -> PyResult<()> {
        if SORTING.with(|s| s.borrow().contains(&self.key)) {
            return Err(PyValueError::new_err("list modified during sort"));
        }
        Ok(())
    }
}

/// Stops a sort whose comparison raised (the list stays as it was).
struct SortAborted;

#[pymethods]
impl PySharedList {
    #[new]
    #[pyo3(signature = (*, _fd=None))]
    fn new(_fd: Option<RawFd>) -> PyResult<Self> {
        let list = match _fd {
            None => SharedList::anonymous(),
            Some(fd) => SharedList::builder().from_fd(dup_fd(fd)?),
        }
        .map_err(seg_err)?;
        let (_, dev, ino) = fstat(need_fd(list.raw_fd())?)?;
        Ok(PySharedList {
            list,
            key: (dev, ino),
            ns: Ns::here(),
        })
    }

    fn __len__(&self, py: Python<'_>) -> PyResult<usize> {
        self.ns.check()?;
        Ok(py.detach(|| self.list.len()))
    }

    /// The item at `index` (0 ≤ index), or None past the end.
    fn get<'py>(&self, py: Python<'py>, index: usize) -> PyResult<Option<Bound<'py, PyBytes>>> {
        self.ns.check()?;
        let v = py.detach(|| self.list.get(index)).map_err(cont_err)?;
        Ok(v.map(|v| PyBytes::new(py, &v)))
    }

    /// Every item (one consistent snapshot).
    fn to_list<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        self.ns.check()?;
        let items = py.detach(|| self.list.to_vec()).map_err(cont_err)?;
        PyList::new(py, items.iter().map(|v| PyBytes::new(py, v)))
    }

    /// Appends one item.
    fn append(&self, py: Python<'_>, value: &[u8]) -> PyResult<()> {
        self.ns.check()?;
        self.not_sorting()?;
        py.detach(|| self.list.push(value)).map_err(cont_err)
    }

    /// Appends every item, as one atomic step.
    fn extend(&self, py: Python<'_>, values: Vec<Vec<u8>>) -> PyResult<()> {
        self.ns.check()?;
        self.not_sorting()?;
        py.detach(|| self.list.extend(&values)).map_err(cont_err)
    }

    /// Inserts before `index` (0 ≤ index ≤ len).
    fn insert(&self, py: Python<'_>, index: usize, value: &[u8]) -> PyResult<()> {
        self.ns.check()?;
        self.not_sorting()?;
        py.detach(|| self.list.insert(index, value))
            .map_err(cont_err)
    }

    /// Replaces the item at `index`.
    fn set(&self, py: Python<'_>, index: usize, value: &[u8]) -> PyResult<()> {
        self.ns.check()?;
        self.not_sorting()?;
        py.detach(|| self.list.set(index, value))
            .map(drop)
            .map_err(cont_err)
    }

    /// Removes and returns the last item, or None.
    fn pop_last<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        self.ns.check()?;
        self.not_sorting()?;
        let v = py.detach(|| self.list.pop()).map_err(cont_err)?;
        Ok(v.map(|v| PyBytes::new(py, &v)))
    }

    /// Removes and returns the item at `index`.
    fn remove_at<'py>(&self, py: Python<'py>, index: usize) -> PyResult<Bound<'py, PyBytes>> {
        self.ns.check()?;
        self.not_sorting()?;
        let v = py.detach(|| self.list.remove(index)).map_err(cont_err)?;
        Ok(PyBytes::new(py, &v))
    }

    /// Reverses the order (one atomic step).
    fn reverse(&self, py: Python<'_>) -> PyResult<()> {
        self.ns.check()?;
        self.not_sorting()?;
        py.detach(|| self.list.reverse()).map_err(cont_err)
    }

    /// Removes every item (one atomic step).
    fn clear(&self, py: Python<'_>) -> PyResult<()> {
        self.ns.check()?;
        self.not_sorting()?;
        py.detach(|| self.list.clear()).map_err(cont_err)
    }

    /// Sorts the items as Python objects, as one atomic step under the
    /// list's writer lock: `loads` unpickles an item, `key` (or None)
    /// maps it, and items compare with `<` (stable; `reverse` as
    /// `list.sort`). An exception from a comparison leaves the list as it
    /// was.
    #[pyo3(signature = (loads, key=None, reverse=false))]
    fn sort(
        &self,
        py: Python<'_>,
        loads: &Bound<'_, PyAny>,
        key: Option<&Bound<'_, PyAny>>,
        reverse: bool,
    ) -> PyResult<()> {
        self.ns.check()?;
        self.not_sorting()?;
        let _sorting = Sorting::start(self.key);
        // Decoded (and keyed) once per distinct item.
        let mut cache: HashMap<Vec<u8>, Py<PyAny>> = HashMap::new();
        let mut failure: Option<PyErr> = None;
        let mut decode = |b: &[u8]| -> PyResult<Py<PyAny>> {
            if let Some(o) = cache.get(b) {
                return Ok(o.clone_ref(py));
            }
            let mut o = loads.call1((PyBytes::new(py, b),))?;
            if let Some(k) = key {
                o = k.call1((o,))?;
            }
            let o = o.unbind();
            cache.insert(b.to_vec(), o.clone_ref(py));
            Ok(o)
        };
        let mut compare = |a: &[u8], b: &[u8]| -> PyResult<CmpOrdering> {
            let (a, b) = if reverse { (b, a) } else { (a, b) };
            let (a, b) = (decode(a)?, decode(b)?);
            let (a, b) = (a.bind(py), b.bind(py));
            Ok(if a.lt(b)? {
                CmpOrdering::Less
            } else if b.lt(a)? {
                CmpOrdering::Greater
            } else {
                CmpOrdering::Equal
            })
        };
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.list.sort_by(|a, b| match compare(a, b) {
                Ok(o) => o,
                Err(e) => {
                    failure = Some(e);
                    // Unwinds out of the sort without the panic hook; the
                    // list is left unchanged and its lock released.
                    std::panic::resume_unwind(Box::new(SortAborted))
                }
            })
        }));
        match outcome {
            Ok(r) => r.map_err(cont_err),
            Err(payload) => match failure {
                Some(e) if payload.is::<SortAborted>() => Err(e),
                _ => std::panic::resume_unwind(payload),
            },
        }
    }

    /// The memfd, for pickling.
    #[getter]
    fn _fd(&self) -> PyResult<RawFd> {
        need_fd(self.list.raw_fd())
    }
}

/// Adds this area's classes and functions to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<CellSegment>()?;
    m.add_class::<PyLock>()?;
    m.add_class::<PyRLock>()?;
    m.add_class::<PyCondition>()?;
    m.add_class::<PyEvent>()?;
    m.add_class::<PySemaphore>()?;
    m.add_class::<PySharedDict>()?;
    m.add_class::<PySharedList>()?;
    Ok(())
}
