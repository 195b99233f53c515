//! Zero-copy receive: `Queue.get(copy=False)`.
//!
//! An object sent with out-of-band buffers (a numpy array's data) is
//! normally copied out of its slot into new `bytearray`s before it is
//! unpickled. With `copy=False` the buffers are handed to `pickle.loads`
//! as read-only `memoryview`s *of the slot itself*, so a 1 MiB array costs
//! the sender's one copy and nothing more. Each view's exporter is a
//! ctypes array over the slot's bytes (the stable ABI has no buffer
//! protocol of our own before 3.11): every view derived from it, numpy's
//! base included, keeps it alive.
//!
//! # How a claim outlives the call
//! A claim ([`ByteRef`]) borrows its receiver, so each message kept this
//! way gets a receiver of its own: an idle spare of this process
//! ([`Endpoints`]), or a new one while fewer than [`MAX_HELD`] are lent;
//! past that, `get(copy=False)` copies as `get()` does. A [`Claim`] owns
//! the receiver (boxed: its address does not move) and the claim that
//! borrows it, and drops the claim first.
//!
//! # When a claim ends
//! Each exporter carries, as an attribute, a [`SlotGuard`]: a native
//! object with no finalizer and no weak references, holding the message's
//! [`Shared`] claim. The guard is freed only when its exporter is: when no
//! view derived from it is left, or when the garbage collector clears a
//! cycle that is really dead (after finalizers have run and any object
//! they brought back has been taken out of the garbage). The last guard
//! of a message drops its claim, which releases the slot and gives the
//! receiver back. (Weak-reference callbacks would not do: the collector
//! calls them before finalizers that may still revive a view.)
//!
//! # Exit
//! A process that exits cleanly gives its held slots back after the
//! interpreter has finalized (`Py_AtExit`), when no Python code can read
//! them any more; a `multiprocessing` child, which leaves with `os._exit`
//! (no `Py_AtExit`), does so from `multiprocessing`'s exit handlers, after
//! its target has returned. The receivers are kept, so nothing is
//! unmapped. In a forked child an inherited claim does nothing: it belongs
//! to its parent. A process killed while holding views leaves its claims
//! to the reaper, which releases them and counts them in `lost` (they had
//! been delivered).

use super::chan::{fork_gen, lock, Endpoints};
use super::queue::Received;
use super::{frame, simple, CorruptedError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyMemoryView};
use shmring::{ByteReceiver, ByteRef};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

/// Messages one process may hold in place per queue handle at once; a
/// `get(copy=False)` past that copies.
pub(crate) const MAX_HELD: usize = 8;

/// Every claim held in place in this process (weakly), for the exit
/// release and the test hook.
static LIVE: Mutex<Vec<Weak<Shared>>> = Mutex::new(Vec::new());

/// A claim and the boxed receiver it borrows.
struct Claim {
    /// Borrows `*rx`: dropped (or forgotten) before it.
    msg: Option<ByteRef<'static>>,
    rx: Option<Box<ByteReceiver>>,
    /// This process's endpoints, to return the receiver to.
    eps: Arc<Endpoints>,
    /// The fork generation that claimed it.
    gen: u64,
}

// SAFETY: a `Claim` is plain memory plus pointers into its mapping (kept
// alive by the receiver it owns), and is moved or dropped only under its
// `Shared` mutex or by its single owner; nothing in it is tied to the
// thread that made it (only to the process, checked by `gen`).
unsafe impl Send for Claim {}

impl Drop for Claim {
    fn drop(&mut self) {
        if self.gen != fork_gen() {
            // Inherited through fork: the claim and the receiver are the
            // parent's.
            std::mem::forget(self.msg.take());
            std::mem::forget(self.rx.take());
            return;
        }
        drop(self.msg.take());
        if let Some(rx) = self.rx.take() {
            self.eps.give_back_spare(rx);
        }
    }
}

/// One message held in place: its claim, shared by the guards of its
/// buffers' exporters; the last one to go drops it.
struct Shared {
    claim: Mutex<Option<Claim>>,
}

impl Shared {
    /// Releases the claim at exit: the slot goes back to the senders, the
    /// receiver (and so the mapping) stays.
    fn release_at_exit(&self) {
        if let Some(c) = lock(&self.claim).as_mut() {
            if c.gen == fork_gen() {
                drop(c.msg.take());
            }
        }
    }
}

/// Keeps a held message's slot claimed while the exporter it is attached
/// to lives (see the module docs). Made only by `get(copy=False)`.
#[pyclass(frozen, module = "shmring._shmring", name = "_SlotGuard")]
pub(crate) struct SlotGuard {
    _shared: Arc<Shared>,
}

/// Releases every claim this process still holds in place (exit: see the
/// module docs; `multiprocessing`'s exit handlers call it in its
/// children).
#[pyfunction]
fn _release_held_at_exit() {
    release_all_at_exit();
}

fn release_all_at_exit() {
    let live: Vec<Arc<Shared>> = lock(&LIVE).iter().filter_map(Weak::upgrade).collect();
    for s in live {
        s.release_at_exit();
    }
}

/// Run by the interpreter after it has finalized (`Py_AtExit`).
extern "C" fn release_after_finalize() {
    release_all_at_exit();
}

/// The fork generation whose exit releases held messages through
/// `multiprocessing` (see [`register_exit_release`]).
static EXIT_RELEASE_GEN: AtomicU64 = AtomicU64::new(u64::MAX);

/// Makes a `multiprocessing` child's exit release its held messages: it
/// leaves with `os._exit` (under fork and forkserver), after running
/// `multiprocessing.util`'s finalizers (its bootstrap clears the
/// parent's), so each such child that holds a message registers one.
fn register_exit_release(py: Python<'_>) -> PyResult<()> {
    let gen = fork_gen();
    if EXIT_RELEASE_GEN.swap(gen, Ordering::Relaxed) == gen {
        return Ok(());
    }
    let mp = py.import("multiprocessing")?;
    if mp.call_method0("parent_process")?.is_none() {
        // Not a multiprocessing child: `Py_AtExit` releases, later (in a
        // main process, multiprocessing's exit handlers run from `atexit`,
        // before other handlers that may still read the arrays).
        return Ok(());
    }
    let release = wrap_pyfunction!(_release_held_at_exit, py)?;
    let kwargs = pyo3::types::PyDict::new(py);
    kwargs.set_item("exitpriority", 0)?;
    py.import("multiprocessing.util")?
        .getattr("Finalize")?
        .call((py.None(), release), Some(&kwargs))?;
    Ok(())
}

/// How many messages this process holds in place now (all queues; tests).
#[pyfunction]
fn _held_count() -> usize {
    lock(&LIVE)
        .iter()
        .filter_map(Weak::upgrade)
        .filter(|s| lock(&s.claim).as_ref().is_some_and(|c| c.msg.is_some()))
        .count()
}

/// A message claimed through a receiver of its own.
pub(crate) struct Taken {
    claim: Claim,
}

impl Taken {
    /// Claims the oldest message through the spare receiver `rx` (`Ok(None)`:
    /// none now; the receiver is returned).
    ///
    /// # Errors
    /// The receive's error (the receiver is returned first).
    pub(crate) fn claim(
        eps: &Arc<Endpoints>,
        mut rx: Box<ByteReceiver>,
    ) -> Result<Option<Taken>, shmring::TryRecvError> {
        let r = rx.try_recv_ref().map(|m| {
            // SAFETY: the claim borrows the boxed receiver, whose heap
            // address does not change when the box moves; `Claim` keeps
            // the box and drops (or forgets) the claim before it, and
            // never hands the receiver out while the claim lives.
            unsafe { std::mem::transmute::<ByteRef<'_>, ByteRef<'static>>(m) }
        });
        match r {
            Ok(msg) => Ok(Some(Taken {
                claim: Claim {
                    msg: Some(msg),
                    rx: Some(rx),
                    eps: eps.clone(),
                    gen: fork_gen(),
                },
            })),
            Err(shmring::TryRecvError::Empty) => {
                eps.give_back_spare(rx);
                Ok(None)
            }
            Err(e) => {
                eps.give_back_spare(rx);
                Err(e)
            }
        }
    }

    /// The message's length.
    pub(crate) fn len(&self) -> usize {
        self.bytes().len()
    }

    /// The message's bytes.
    fn bytes(&self) -> &[u8] {
        self.claim.msg.as_deref().expect("claimed")
    }

    /// The object, its buffers read in place (or copied, with the claim
    /// released at once, when it has none).
    pub(crate) fn into_object(self, py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
        let msg = self.bytes();
        if let Some(obj) = simple::decode(py, msg) {
            drop(self);
            return Ok(obj);
        }
        let parts = frame::parse(msg).map_err(CorruptedError::new_err)?;
        let pickle = PyBytes::new(py, &msg[parts.pickle.clone()]);
        if parts.bufs.is_empty() {
            drop(self);
            return Received::new(pickle, Vec::new()).loads(py);
        }
        register_exit_release(py)?;
        let addrs: Vec<(usize, usize)> = parts
            .bufs
            .iter()
            .map(|r| (msg[r.clone()].as_ptr() as usize, r.len()))
            .collect();
        let shared = Arc::new(Shared {
            claim: Mutex::new(Some(self.claim)),
        });
        {
            let mut live = lock(&LIVE);
            live.retain(|w| w.strong_count() > 0);
            live.push(Arc::downgrade(&shared));
        }
        // One exporter per buffer, a ctypes array over the slot's bytes
        // carrying a guard of the claim, handed out as a read-only byte
        // view of it. Should anything below fail, the exporters made so
        // far go with their guards, and the last guard releases.
        let ctypes = py.import("ctypes")?;
        let c_char = ctypes.getattr("c_char")?;
        let mut views = Vec::with_capacity(addrs.len());
        for (addr, len) in addrs {
            let exporter = c_char
                .call_method1("__mul__", (len,))?
                .call_method1("from_address", (addr,))?;
            let guard = SlotGuard {
                _shared: shared.clone(),
            };
            exporter.setattr("_shmring_slot", Py::new(py, guard)?)?;
            let view = PyMemoryView::from(&exporter)?
                .call_method1("cast", ("B",))?
                .call_method0("toreadonly")?;
            views.push(view);
        }
        drop(shared);
        Received::new(pickle, views).loads(py)
    }
}

/// Registers `_SlotGuard`, the exit release and the test hook.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<SlotGuard>()?;
    // Private: attributes, not in `__all__` (as testhooks.rs does).
    m.setattr(
        "_release_held_at_exit",
        wrap_pyfunction!(_release_held_at_exit, m)?,
    )?;
    m.setattr("_held_count", wrap_pyfunction!(_held_count, m)?)?;
    static AT_EXIT: std::sync::Once = std::sync::Once::new();
    AT_EXIT.call_once(|| {
        // SAFETY: registers a plain function to run after finalization;
        // it touches no Python object (only this module's Rust state).
        // A full table (32 functions) only loses the exit release: the
        // reaper then releases those slots.
        unsafe {
            pyo3::ffi::Py_AtExit(Some(release_after_finalize));
        }
    });
    Ok(())
}
