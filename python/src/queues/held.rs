//! Zero-copy receive: `Queue.get(copy=False)`.
//!
//! An object sent with out-of-band buffers (a numpy array's data) is
//! normally copied out of its slot into new `bytearray`s before it is
//! unpickled. With `copy=False` the buffers are handed to `pickle.loads`
//! as read-only `memoryview`s *of the slot itself*, so a 1 MiB array costs
//! the sender's one copy and nothing more. Each view's exporter is a
//! ctypes array over the slot's bytes (the stable ABI has no buffer
//! protocol of our own before 3.11): every view derived from it, numpy's
//! base included, keeps it alive. The slot stays claimed while any
//! exporter lives, and goes back to the senders when the last one is
//! collected.
//!
//! # How a claim outlives the call
//! A claim ([`ByteRef`]) borrows its receiver, so each message kept this
//! way gets a receiver of its own: a spare one of this process
//! ([`Endpoints::spare`]), or a new one while fewer than [`MAX_HELD`] are
//! lent; past that, `get(copy=False)` copies as `get()` does. A [`Held`]
//! owns the receiver (boxed: its address does not move) and the claim
//! that borrows it, and drops the claim first.
//!
//! # When a claim ends
//! Each exporter has a weak reference whose callback is its `Held`; the
//! callback of the last one releases the claim and returns the receiver
//! to the spares. Those weak references live in [`REGISTRY`] until then,
//! so a reference cycle collected by the garbage collector cannot drop a
//! `Held` (and unmap a slot) under a live view. At interpreter exit
//! ([`release_held_at_exit`], registered by `shmring.queues`) every claim
//! still held is released, so senders are not stalled by a process that
//! exited cleanly; the receivers are kept, so the slot stays mapped for
//! whatever still runs. In a forked child an inherited `Held` does
//! nothing: the claim belongs to its parent.
//!
//! A process killed while holding views leaves its claims to the reaper,
//! which releases them and counts them in `lost` (they had been delivered).

use super::chan::{fork_gen, lock, Endpoints};
use super::queue::Received;
use super::{frame, CorruptedError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyMemoryView};
use shmring::{ByteReceiver, ByteRef};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Messages one process may hold in place per queue handle at once; a
/// `get(copy=False)` past that copies.
pub(crate) const MAX_HELD: usize = 8;

/// The weak references of every message held in place, by `Held` id.
static REGISTRY: Mutex<Option<HashMap<u64, Entry>>> = Mutex::new(None);
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A held message's `Held` and the weak references to its exporters.
struct Entry {
    held: Py<Held>,
    /// Owned only to keep the weak references (and so their callbacks)
    /// alive until the last one has fired.
    #[allow(dead_code)]
    refs: Vec<Py<PyAny>>,
}

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

// SAFETY: a `Claim` is touched only with the GIL held (Held's methods and
// the registry's users hold it), so never by two threads at once; the
// receiver and its claim are plain memory plus atomics in the mapping,
// not tied to the thread that made them (only to the process, checked by
// `gen`).
unsafe impl Send for Claim {}

/// One message read in place; callable, as the weak-reference callback of
/// its exporters.
#[pyclass(frozen, module = "shmring._shmring", name = "_Held")]
pub(crate) struct Held {
    id: u64,
    claim: Mutex<Option<Claim>>,
    /// Exporters not yet collected.
    live: AtomicU64,
}

impl Held {
    /// Releases the claim: the slot goes back to the senders. `keep_rx`:
    /// keep the receiver (exit; the slot stays mapped), else return it to
    /// the spares. In a process other than the claimer's, forgets both.
    fn release(&self, keep_rx: bool) {
        let mut g = lock(&self.claim);
        if keep_rx {
            // The receiver stays with this (registered, never dropped)
            // Held, and so does the slot's mapping.
            if let Some(c) = g.as_mut().filter(|c| c.gen == fork_gen()) {
                drop(c.msg.take());
            }
            return;
        }
        let c = g.take();
        drop(g);
        drop(c);
    }
}

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

#[pymethods]
impl Held {
    /// The weak-reference callback of one exporter: the last one releases.
    fn __call__(&self, _weakref: &Bound<'_, PyAny>) {
        if self.live.fetch_sub(1, Ordering::Relaxed) != 1 {
            return;
        }
        self.release(false);
        // Drop the registry entry (and with it these weak references)
        // outside the lock.
        let entry = lock(&REGISTRY).as_mut().and_then(|m| m.remove(&self.id));
        drop(entry);
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        // Only reached after `release` (the registry keeps a Held alive
        // until its last view is gone); a claim still here is forgotten
        // rather than released under a view.
        if let Some(c) = lock(&self.claim).take() {
            if c.msg.is_some() {
                std::mem::forget(c);
            }
        }
    }
}

/// Releases every claim still held (interpreter exit); the receivers stay.
#[pyfunction]
pub(crate) fn release_held_at_exit(py: Python<'_>) {
    let helds: Vec<Py<Held>> = lock(&REGISTRY)
        .as_ref()
        .map(|m| m.values().map(|e| e.held.clone_ref(py)).collect())
        .unwrap_or_default();
    for h in helds {
        h.get().release(true);
    }
}

/// The fork generation whose exit releases held messages (see
/// [`register_exit_release`]).
static EXIT_RELEASE_GEN: AtomicU64 = AtomicU64::new(u64::MAX);

/// Makes this process's exit release its held messages, once per process.
/// `shmring.queues` registers [`release_held_at_exit`] with `atexit`, but
/// a `multiprocessing` child leaves with `os._exit` (no `atexit`) after
/// running `multiprocessing.util`'s finalizers, which its bootstrap clears
/// of the parent's: so each process that holds a message registers one.
fn register_exit_release(py: Python<'_>) -> PyResult<()> {
    let gen = fork_gen();
    if EXIT_RELEASE_GEN.swap(gen, Ordering::Relaxed) == gen {
        return Ok(());
    }
    let release = wrap_pyfunction!(release_held_at_exit, py)?;
    let kwargs = pyo3::types::PyDict::new(py);
    kwargs.set_item("exitpriority", 0)?;
    py.import("multiprocessing.util")?
        .getattr("Finalize")?
        .call((py.None(), release), Some(&kwargs))?;
    Ok(())
}

/// How many messages this process holds in place now (all queues; tests).
#[pyfunction]
pub(crate) fn _held_count() -> usize {
    lock(&REGISTRY).as_ref().map_or(0, |m| {
        m.values()
            .filter(|e| {
                lock(&e.held.get().claim)
                    .as_ref()
                    .is_some_and(|c| c.msg.is_some())
            })
            .count()
    })
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
        let parts = frame::parse(msg).map_err(CorruptedError::new_err)?;
        let pickle = PyBytes::new(py, &msg[parts.pickle.clone()]);
        if parts.bufs.is_empty() {
            drop(self);
            return Received::new(pickle, Vec::new()).loads(py);
        }
        // One exporter per buffer: a ctypes array over the slot's bytes,
        // handed out as a read-only byte view of it. Every view derived
        // from it (slices, casts, numpy's base) keeps the exporter alive,
        // so its weak reference fires only when the last of them is gone.
        let ctypes = py.import("ctypes")?;
        let c_char = ctypes.getattr("c_char")?;
        let mut exporters = Vec::with_capacity(parts.bufs.len());
        let mut views = Vec::with_capacity(parts.bufs.len());
        for r in &parts.bufs {
            let addr = msg[r.clone()].as_ptr() as usize;
            let exporter = c_char
                .call_method1("__mul__", (r.len(),))?
                .call_method1("from_address", (addr,))?;
            let view = PyMemoryView::from(&exporter)?
                .call_method1("cast", ("B",))?
                .call_method0("toreadonly")?;
            exporters.push(exporter);
            views.push(view);
        }
        register_exit_release(py)?;
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let held = Py::new(
            py,
            Held {
                id,
                claim: Mutex::new(Some(self.claim)),
                live: AtomicU64::new(exporters.len() as u64),
            },
        )?;
        let mut refs = Vec::with_capacity(views.len());
        let made = py.import("weakref").and_then(|w| {
            let weakref = w.getattr("ref")?;
            for e in &exporters {
                refs.push(weakref.call1((e, held.clone_ref(py)))?.unbind());
            }
            Ok(())
        });
        if made.is_err() {
            // Only the exporters with a weak reference release: count those
            // (none: release now).
            held.get().live.store(refs.len() as u64, Ordering::Relaxed);
            if refs.is_empty() {
                held.get().release(false);
            }
        }
        lock(&REGISTRY)
            .get_or_insert_with(HashMap::new)
            .insert(id, Entry { held, refs });
        made?;
        drop(exporters);
        Received::new(pickle, views).loads(py)
    }
}

/// Registers `_Held` and the module functions.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Held>()?;
    m.add_function(wrap_pyfunction!(release_held_at_exit, m)?)?;
    // A test hook: an attribute, not in `__all__` (as testhooks.rs does).
    m.setattr("_held_count", wrap_pyfunction!(_held_count, m)?)?;
    Ok(())
}
