//! [`Chan`]: one anonymous byte queue and this process's endpoints on it,
//! attached on first use, and the blocking send / receive loops shared by
//! `QueueBase` and `ConnectionBase`.
//!
//! # Endpoints per process
//!
//! A Python handle crosses `fork` as it is (under the `fork` start method
//! nothing is pickled), but shmring endpoints belong to the process that
//! attached them (they panic when used in a child). So a `Chan` keeps its
//! endpoints in an [`Endpoints`] tagged with the *fork generation* that
//! attached them: a counter that a `pthread_atfork` child handler bumps.
//! A handle used in a process whose generation differs drops the inherited
//! endpoints (shmring makes that a no-op in the child) and attaches anew.
//! The generation slot is touched only with the GIL held; Python forks with
//! the GIL held, so no fork can split it half-updated.
//!
//! # Locks and the GIL
//!
//! Each endpoint sits behind a `Mutex`, because the GIL is released while
//! a call waits. The rule that keeps GIL and mutex free of deadlock: a
//! thread holding the GIL only `try_lock`s; a thread waiting for a mutex
//! (`lock`) has released the GIL; nobody holds an endpoint mutex while
//! taking the GIL.
//!
//! # What a disconnect means here
//!
//! A `Queue` (MPMC) has multiprocessing's semantics: no end of stream.
//! A receiver with no sender attached just waits (or times out); a sender
//! that finds no receiver attached (every consumer exited) attaches an
//! *anchor* receiver in its own process, which never receives but keeps
//! the queue connected, and sends on until the queue is full. A pipe
//! direction (SPSC) ends: `Disconnected` after the buffered messages is
//! `EOFError` for the receiver and `BrokenPipeError` for the sender.

use super::held::{Taken, MAX_HELD};
use super::{next_slice, segment_err, CorruptedError};
use pyo3::exceptions::{PyBrokenPipeError, PyOSError, PyValueError};
use pyo3::prelude::*;
use shmring::{ByteQueue, ByteReceiver, ByteSendError, ByteSender, RecvError, TryRecvError};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::time::{Duration, Instant};

/// Bumped in every child right after `fork` (see the module docs).
static FORK_GEN: AtomicU64 = AtomicU64::new(0);

extern "C" fn after_fork_in_child() {
    // Relaxed: the child is single-threaded here; later reads in the same
    // thread see it.
    FORK_GEN.fetch_add(1, Ordering::Relaxed);
}

/// Registers the fork handler (once per process; idempotent).
pub(crate) fn install_fork_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: registers an async-signal-safe handler (one atomic add)
        // to run in the child after fork; no other effect.
        unsafe {
            libc::pthread_atfork(None, None, Some(after_fork_in_child));
        }
    });
}

pub(crate) fn fork_gen() -> u64 {
    FORK_GEN.load(Ordering::Relaxed)
}

/// Locks a mutex, ignoring poisoning (an endpoint stays usable after a
/// panic elsewhere: its operations are all-or-nothing).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn try_lock<T>(m: &Mutex<T>) -> Option<MutexGuard<'_, T>> {
    match m.try_lock() {
        Ok(g) => Some(g),
        Err(TryLockError::Poisoned(e)) => Some(e.into_inner()),
        Err(TryLockError::WouldBlock) => None,
    }
}

/// Queue semantics (MPMC, never ends) or a pipe direction (SPSC, EOF).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    Queue,
    Pipe,
}

/// This process's endpoints on a [`Chan`].
#[derive(Default)]
pub(crate) struct Endpoints {
    tx: Mutex<Option<ByteSender>>,
    rx: Mutex<Option<ByteReceiver>>,
    /// A receiver that never receives: keeps a queue connected for this
    /// process's sends once every consumer has gone (queues only).
    anchor: Mutex<Option<ByteReceiver>>,
    /// Receivers for messages held in place (`get(copy=False)`, see
    /// `held`). Only ever locked with the GIL held, never across a release
    /// of it.
    spare: Mutex<Spares>,
}

/// Idle receivers a process keeps for messages held in place (a loop
/// that holds the previous message while it takes the next needs two).
const IDLE_SPARES: usize = 2;

/// Receivers lent to messages held in place, and idle ones.
#[derive(Default)]
struct Spares {
    // Boxed: a lent receiver must not move while a claim borrows it, and
    // an idle one is lent again as it is.
    #[allow(clippy::vec_box)]
    idle: Vec<Box<ByteReceiver>>,
    lent: usize,
    /// The handle was closed: receivers given back are dropped.
    closed: bool,
}

impl Endpoints {
    /// A receiver for a message to hold in place: an idle one, or a new
    /// one while fewer than [`MAX_HELD`] are lent. `None`: too many lent,
    /// or none can attach (the endpoint table is full), or the handle is
    /// closed: the caller copies instead.
    fn lend_spare(&self, queue: &ByteQueue) -> Option<Box<ByteReceiver>> {
        let mut s = lock(&self.spare);
        if s.closed {
            return None;
        }
        let rx = match s.idle.pop() {
            Some(rx) => rx,
            None if s.lent < MAX_HELD => Box::new(queue.receiver().ok()?),
            None => return None,
        };
        s.lent += 1;
        Some(rx)
    }

    /// Takes back a receiver lent by [`lend_spare`](Self::lend_spare),
    /// its claim released.
    pub(crate) fn give_back_spare(&self, rx: Box<ByteReceiver>) {
        let mut s = lock(&self.spare);
        s.lent = s.lent.saturating_sub(1);
        // A few stay attached for the next messages; the rest detach, so
        // that idle spares do not fill the queue's endpoint table.
        if !s.closed && s.idle.len() < IDLE_SPARES {
            s.idle.push(rx);
        }
    }
}

/// A failure of an operation, carried out of a GIL-free section.
enum Fail {
    Segment(shmring::SegmentError),
    Eof,
    BrokenPipe,
    TooLarge(usize, usize),
    Closed,
    /// This handle was closed (by another thread, while this call waited).
    HandleClosed(Mode),
    Corrupted(&'static str),
}

impl Fail {
    fn into_py(self) -> PyErr {
        match self {
            Fail::Segment(e) => segment_err(e),
            Fail::Eof => super::eof(),
            Fail::BrokenPipe => PyBrokenPipeError::new_err(
                "the other end of the pipe is closed (or its process died)",
            ),
            Fail::TooLarge(len, max) => PyValueError::new_err(format!(
                "a message of {len} bytes (pickle and buffers) exceeds this queue's \
                 max_message_size of {max} bytes: create it with a larger max_message_size"
            )),
            Fail::Closed => PyValueError::new_err("the queue's stream is closed"),
            Fail::HandleClosed(Mode::Queue) => PyValueError::new_err("Queue is closed"),
            Fail::HandleClosed(Mode::Pipe) => PyOSError::new_err("handle is closed"),
            Fail::Corrupted(what) => CorruptedError::new_err(what),
        }
    }
}

/// What a wait in a GIL-free section came to.
enum Waited {
    /// Try again (something may be there, or the slice ended).
    Again,
    /// Done (a send completed inside the section).
    Done,
}

/// One anonymous byte queue and this process's endpoints on it.
pub(crate) struct Chan {
    pub queue: ByteQueue,
    pub mode: Mode,
    /// How long a blocked call spins before it sleeps, in ns (`spin=True`:
    /// the whole slice, i.e. busy-polling; [`DEFAULT_SPIN`]: the core's
    /// default). An atomic: [`set_spin`](Self::set_spin) changes it.
    spin_ns: AtomicU64,
    /// Received messages at least this long have their pages given back to
    /// the kernel after they are read (see [`Chan::punch`]).
    punch_at: usize,
    /// (fork generation, endpoints of that process): touched with the GIL
    /// held only.
    slot: Mutex<(u64, Arc<Endpoints>)>,
    /// The length of the last message this handle received: a blocked
    /// receive of a handle with the default spin spins longer after large
    /// messages (see [`wait_readable`](Self::wait_readable)).
    last_len: AtomicUsize,
    /// `close()` was called on the handle: no endpoint attaches any more,
    /// so a call of another thread that was waiting stops with the
    /// handle's closed error instead of attaching anew.
    closed: AtomicBool,
}

/// A queue keeps about this much of its slots resident at most (or
/// `capacity x NEVER_PUNCHED`, if more), besides the messages it holds:
/// see [`Chan::punch`].
const RESIDENT_BUDGET: usize = 256 << 20;
/// Messages shorter than this keep their pages (2 MiB: a 1 MiB numpy array
/// streams at memory speed through a default-sized queue, with no page
/// faults).
const NEVER_PUNCHED: usize = 2 << 20;
/// [`Chan::spin_ns`]'s value for "the core's default spin" (sized by
/// [`Chan::default_spin`]).
const DEFAULT_SPIN: u64 = u64::MAX;
/// How long a blocked receive first polls with the GIL held.
const HELD_SPIN: Duration = Duration::from_micros(2);
/// The most a default-spin receive spins after large messages.
const MAX_SIZED_SPIN: Duration = Duration::from_micros(500);

impl Chan {
    pub(crate) fn new(queue: ByteQueue, mode: Mode, spin: bool) -> Chan {
        let cap = queue.capacity().max(1);
        Chan {
            punch_at: (RESIDENT_BUDGET / cap).max(NEVER_PUNCHED),
            queue,
            mode,
            spin_ns: AtomicU64::new(if spin {
                super::SLICE.as_nanos() as u64
            } else {
                DEFAULT_SPIN
            }),
            slot: Mutex::new((fork_gen(), Arc::new(Endpoints::default()))),
            last_len: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
        }
    }

    /// This process's endpoints (fresh ones in a forked child).
    pub(crate) fn endpoints(&self, _py: Python<'_>) -> Arc<Endpoints> {
        // Only ever locked with the GIL held, never across a release of
        // it: uncontended, and never held across a fork.
        let mut slot = lock(&self.slot);
        let now = fork_gen();
        if slot.0 != now {
            *slot = (now, Arc::new(Endpoints::default()));
        }
        slot.1.clone()
    }

    /// How long a blocked call spins before it sleeps, if not the core's
    /// default.
    fn spin(&self) -> Option<Duration> {
        match self.spin_ns.load(Ordering::Relaxed) {
            DEFAULT_SPIN => None,
            ns => Some(Duration::from_nanos(ns)),
        }
    }

    /// How long a blocked receive of a handle with the default spin spins
    /// before it sleeps: the core's 20 µs, plus twice the time the last
    /// message received would take to copy between two cores at 8 GB/s
    /// (at most [`MAX_SIZED_SPIN`] in all). A peer answering a large
    /// message spends about that long copying its answer in, so the
    /// answer is caught without a futex wake-up, whose latency would
    /// otherwise be added to every large message's hop; a small-message
    /// stream keeps the 20 µs.
    fn default_spin(&self) -> Duration {
        let len = self.last_len.load(Ordering::Relaxed) as u64;
        (shmring::DEFAULT_SPIN + Duration::from_nanos(len / 4)).min(MAX_SIZED_SPIN)
    }

    /// Records a received message's length (see [`default_spin`](Self::default_spin)).
    fn received(&self, len: usize) {
        if self.last_len.load(Ordering::Relaxed) != len {
            self.last_len.store(len, Ordering::Relaxed);
        }
    }

    /// Sets how long this process's blocked calls spin before they sleep
    /// (zero: never): for endpoints attached later, and for those attached
    /// now (waits, without the GIL, for a blocked call of another thread
    /// to end its slice).
    pub(crate) fn set_spin(&self, py: Python<'_>, spin: Duration) {
        let ns = u64::try_from(spin.as_nanos()).unwrap_or(DEFAULT_SPIN - 1);
        self.spin_ns
            .store(ns.min(DEFAULT_SPIN - 1), Ordering::Relaxed);
        let eps = self.endpoints(py);
        py.detach(|| {
            if let Some(tx) = lock(&eps.tx).as_mut() {
                tx.set_spin(spin);
            }
            if let Some(rx) = lock(&eps.rx).as_mut() {
                rx.set_spin(spin);
            }
        });
    }

    /// Whether [`close`](Self::close) was called.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    /// Closes the handle in this process (`close()`): drops its endpoints,
    /// and no call attaches new ones (they fail with the handle's closed
    /// error).
    pub(crate) fn close(&self, py: Python<'_>) {
        // Relaxed: the endpoints' mutexes order it before a waiting call's
        // next attach, which takes them.
        self.closed.store(true, Ordering::Relaxed);
        let eps = self.endpoints(py);
        {
            // Messages held in place stay claimed until their views go;
            // their receivers are then dropped.
            let mut s = lock(&eps.spare);
            s.closed = true;
            s.idle.clear();
        }
        // Endpoints are dropped without the GIL: a blocked call of another
        // thread may hold one for a slice.
        py.detach(|| {
            *lock(&eps.tx) = None;
            *lock(&eps.rx) = None;
            *lock(&eps.anchor) = None;
        });
    }

    /// Attaches this process's endpoints of the given roles now (a pipe
    /// end attaches both halves at its first use, so that its peer sees
    /// it connected, and sees its death).
    pub(crate) fn attach(&self, py: Python<'_>, tx: bool, rx: bool) -> PyResult<()> {
        let eps = self.endpoints(py);
        py.detach(|| -> Result<(), Fail> {
            if tx {
                self.tx_of(&mut lock(&eps.tx))?;
            }
            if rx {
                self.rx_of(&mut lock(&eps.rx))?;
            }
            Ok(())
        })
        .map_err(Fail::into_py)
    }

    fn tx_of<'a>(&self, g: &'a mut Option<ByteSender>) -> Result<&'a mut ByteSender, Fail> {
        if g.is_none() {
            if self.closed.load(Ordering::Relaxed) {
                return Err(Fail::HandleClosed(self.mode));
            }
            let mut tx = self.queue.sender().map_err(Fail::Segment)?;
            if let Some(s) = self.spin() {
                tx.set_spin(s);
            }
            *g = Some(tx);
        }
        Ok(g.as_mut().expect("just attached"))
    }

    fn rx_of<'a>(&self, g: &'a mut Option<ByteReceiver>) -> Result<&'a mut ByteReceiver, Fail> {
        if g.is_none() {
            if self.closed.load(Ordering::Relaxed) {
                return Err(Fail::HandleClosed(self.mode));
            }
            let mut rx = self.queue.receiver().map_err(Fail::Segment)?;
            if let Some(s) = self.spin() {
                rx.set_spin(s);
            }
            *g = Some(rx);
        }
        Ok(g.as_mut().expect("just attached"))
    }

    /// Attaches the anchor receiver (see the module docs).
    fn anchor(&self, eps: &Endpoints) -> Result<(), Fail> {
        let mut g = lock(&eps.anchor);
        if g.is_none() {
            if self.closed.load(Ordering::Relaxed) {
                return Err(Fail::HandleClosed(self.mode));
            }
            *g = Some(self.queue.receiver().map_err(Fail::Segment)?);
        }
        Ok(())
    }

    /// Sends a message of `len` bytes written by `fill`, waiting (in
    /// slices, signals checked between them) while the queue is full, up
    /// to `deadline` if `block`. `Ok(false)`: full (not `block`, or the
    /// deadline passed).
    pub(crate) fn send(
        &self,
        py: Python<'_>,
        len: usize,
        block: bool,
        deadline: Option<Instant>,
        fill: &(dyn Fn(&mut [u8]) + Sync),
    ) -> PyResult<bool> {
        let eps = self.endpoints(py);
        let max = self.queue.max_message_size();
        if len > max {
            return Err(Fail::TooLarge(len, max).into_py());
        }
        // First try with the GIL held: no release/re-take when there is
        // room. A queue found without consumers is anchored, then tried
        // once more.
        for _ in 0..2 {
            let Some(mut g) = try_lock(&eps.tx) else {
                break;
            };
            let tx = self.tx_of(&mut g).map_err(Fail::into_py)?;
            let r = match tx.try_loan(len) {
                Ok(mut loan) => {
                    fill(&mut loan[..]);
                    loan.commit();
                    return Ok(true);
                }
                Err(e) => e,
            };
            drop(g);
            match r {
                ByteSendError::Full => break,
                e => self.send_failed(&eps, e).map_err(Fail::into_py)?,
            }
        }
        loop {
            if !block {
                return Ok(false);
            }
            let Some(slice) = next_slice(deadline) else {
                return Ok(false);
            };
            let r = py.detach(|| -> Result<Waited, Fail> {
                let mut g = lock(&eps.tx);
                let tx = self.tx_of(&mut g)?;
                let r = match tx.loan_timeout(len, slice) {
                    Ok(mut loan) => {
                        fill(&mut loan[..]);
                        loan.commit();
                        return Ok(Waited::Done);
                    }
                    Err(e) => e,
                };
                drop(g);
                self.send_failed(&eps, r)?;
                Ok(Waited::Again)
            });
            match r.map_err(Fail::into_py)? {
                Waited::Done => return Ok(true),
                Waited::Again => py.check_signals()?,
            }
        }
    }

    /// After a send error other than `Full`/`Timeout`: `Ok` to try again
    /// (a queue whose consumers all left: anchored now), else the error.
    fn send_failed(&self, eps: &Endpoints, e: ByteSendError) -> Result<(), Fail> {
        match e {
            ByteSendError::Disconnected if self.mode == Mode::Queue => self.anchor(eps),
            ByteSendError::Disconnected => Err(Fail::BrokenPipe),
            ByteSendError::TooLarge { len, max } => Err(Fail::TooLarge(len, max)),
            ByteSendError::Closed => Err(Fail::Closed),
            ByteSendError::Corrupted => Err(Fail::Corrupted("corrupted queue segment")),
            ByteSendError::Full | ByteSendError::Timeout => Ok(()),
        }
    }

    /// Receives a message, handing it, in place, to `take` (with the GIL
    /// held), waiting as [`send`](Self::send) does. `Ok(None)`: nothing
    /// came (not `block`, or the deadline passed).
    ///
    /// # Errors
    /// `EOFError` for a pipe direction whose sender is gone (after its
    /// messages), `CorruptedError`, and whatever `take` returns.
    pub(crate) fn recv<R>(
        &self,
        py: Python<'_>,
        block: bool,
        deadline: Option<Instant>,
        take: impl FnOnce(&[u8]) -> PyResult<R>,
    ) -> PyResult<Option<R>> {
        let mut take = Some(take);
        self.recv_with(py, block, deadline, |eps| self.try_take(eps, &mut take))
    }

    /// As [`recv`](Self::recv), the message claimed through a receiver of
    /// its own and handed to `held` still claimed (`get(copy=False)`);
    /// with [`MAX_HELD`] already held, copied to `take` as `recv` does.
    pub(crate) fn recv_held<R>(
        &self,
        py: Python<'_>,
        block: bool,
        deadline: Option<Instant>,
        held: impl FnOnce(Taken) -> PyResult<R>,
        take: impl FnOnce(&[u8]) -> PyResult<R>,
    ) -> PyResult<Option<R>> {
        let mut held = Some(held);
        let mut take = Some(take);
        self.recv_with(py, block, deadline, |eps| {
            let Some(rx) = eps.lend_spare(&self.queue) else {
                return self.try_take(eps, &mut take);
            };
            match Taken::claim(eps, rx) {
                Ok(Some(t)) => {
                    self.received(t.len());
                    (held.take().expect("taken once"))(t).map(Some)
                }
                Ok(None) | Err(TryRecvError::Disconnected | TryRecvError::Closed) => Ok(None),
                Err(_) => Err(Fail::Corrupted("corrupted queue segment").into_py()),
            }
        })
    }

    /// The receive loop: `attempt` (GIL held; `Ok(None)`: nothing yet),
    /// then waits in slices (GIL released, signals checked between them).
    fn recv_with<R>(
        &self,
        py: Python<'_>,
        block: bool,
        deadline: Option<Instant>,
        mut attempt: impl FnMut(&Arc<Endpoints>) -> PyResult<Option<R>>,
    ) -> PyResult<Option<R>> {
        let eps = self.endpoints(py);
        let mut first = true;
        loop {
            if let Some(r) = attempt(&eps)? {
                return Ok(Some(r));
            }
            if !block {
                return Ok(None);
            }
            let Some(slice) = next_slice(deadline) else {
                return Ok(None);
            };
            let first_slice = first;
            // A handle told to sleep at once (spin 0) does not poll here.
            if std::mem::take(&mut first) && self.spin() != Some(Duration::ZERO) {
                // A message about to land (a peer answering) is caught
                // with the GIL held: releasing and taking it back would
                // cost more than the wait. Bounded by HELD_SPIN, so other
                // threads wait no longer than that.
                let until = Instant::now() + HELD_SPIN.min(slice);
                while Instant::now() < until {
                    std::hint::spin_loop();
                    if let Some(r) = attempt(&eps)? {
                        return Ok(Some(r));
                    }
                }
            }
            py.detach(|| self.wait_readable(&eps, slice, first_slice))
                .map_err(Fail::into_py)?;
            py.check_signals()?;
        }
    }

    /// One receive through this process's receiver, without waiting,
    /// handed in place to `take` (once). `Ok(None)`: nothing queued (or
    /// the receiver is busy in another thread's wait).
    fn try_take<R>(
        &self,
        eps: &Endpoints,
        take: &mut Option<impl FnOnce(&[u8]) -> PyResult<R>>,
    ) -> PyResult<Option<R>> {
        let Some(mut g) = try_lock(&eps.rx) else {
            return Ok(None);
        };
        let rx = self.rx_of(&mut g).map_err(Fail::into_py)?;
        let got = rx.try_recv_ref();
        match got {
            Ok(msg) => {
                self.received(msg.len());
                let r = (take.take().expect("taken once"))(&msg);
                self.punch(&msg);
                drop(msg);
                r.map(Some)
            }
            Err(TryRecvError::Empty) => Ok(None),
            Err(TryRecvError::Disconnected | TryRecvError::Closed) => {
                if self.mode == Mode::Pipe {
                    return Err(super::eof());
                }
                Ok(None)
            }
            Err(_) => Err(Fail::Corrupted("corrupted queue segment").into_py()),
        }
    }

    /// Waits up to `slice` for a message to be queued (without taking it).
    /// `first`: the call's first slice, the only one that spins longer
    /// after a large message (an answer in flight lands within it, or the
    /// peer is idle and later slices need not spin more than usual).
    fn wait_readable(&self, eps: &Endpoints, slice: Duration, first: bool) -> Result<(), Fail> {
        let mut g = lock(&eps.rx);
        let rx = self.rx_of(&mut g)?;
        if self.spin().is_none() {
            rx.set_spin(if first {
                self.default_spin()
            } else {
                shmring::DEFAULT_SPIN
            });
        }
        match rx.poll(slice) {
            Ok(_) => Ok(()),
            Err(RecvError::Disconnected | RecvError::Closed) => match self.mode {
                Mode::Pipe => Err(Fail::Eof),
                // No sender attached now: wait for one (or the slice).
                Mode::Queue => {
                    rx.wait_connected(Some(slice));
                    Ok(())
                }
            },
            Err(_) => Err(Fail::Corrupted("corrupted queue segment")),
        }
    }

    /// Whether a message is waiting, waiting up to `deadline` (`None`:
    /// forever) in slices. A pipe direction at EOF counts as readable (the
    /// next receive raises `EOFError` at once), as `multiprocessing`'s
    /// `poll` says.
    pub(crate) fn poll(&self, py: Python<'_>, deadline: Option<Instant>) -> PyResult<bool> {
        let eps = self.endpoints(py);
        // First look with the GIL held: no release/re-take when a message
        // is waiting, nor for `poll(0)`.
        if let Some(mut g) = try_lock(&eps.rx) {
            let rx = self.rx_of(&mut g).map_err(Fail::into_py)?;
            match rx.poll(Duration::ZERO) {
                Ok(true) | Err(RecvError::Disconnected | RecvError::Closed) => return Ok(true),
                Ok(false) => {}
                Err(_) => return Err(Fail::Corrupted("corrupted queue segment").into_py()),
            }
            if next_slice(deadline).is_none() {
                return Ok(false);
            }
        }
        loop {
            let slice = next_slice(deadline).unwrap_or(Duration::ZERO);
            let r = py.detach(|| -> Result<bool, Fail> {
                let mut g = lock(&eps.rx);
                let rx = self.rx_of(&mut g)?;
                match rx.poll(slice) {
                    Ok(ready) => Ok(ready),
                    Err(RecvError::Disconnected | RecvError::Closed) => Ok(true),
                    Err(_) => Err(Fail::Corrupted("corrupted queue segment")),
                }
            });
            if r.map_err(Fail::into_py)? {
                return Ok(true);
            }
            if slice.is_zero() || next_slice(deadline).is_none() {
                return Ok(false);
            }
            py.check_signals()?;
        }
    }

    /// Gives the pages of a long message just read back to the kernel, so
    /// that a queue whose slots all once held large messages does not keep
    /// `capacity × max_message_size` resident: at most about
    /// `max(RESIDENT_BUDGET, capacity × NEVER_PUNCHED)` (256 MiB, or 2 MiB
    /// a slot) of once-touched slot space stays, plus the messages queued.
    /// Messages shorter than `RESIDENT_BUDGET / capacity` (and than 2 MiB)
    /// are left alone: the next sender into that slot finds its pages
    /// mapped (no page faults). Longer ones cost their next sender page
    /// faults (and the kernel's zeroing): about 0.1–0.3 ms per MiB.
    fn punch(&self, msg: &[u8]) {
        if msg.len() < self.punch_at {
            return;
        }
        const PAGE: usize = 4096;
        let start = (msg.as_ptr() as usize).div_ceil(PAGE) * PAGE;
        let end = (msg.as_ptr() as usize + msg.len()) / PAGE * PAGE;
        if end > start {
            // SAFETY: [start, end) lies inside the message this receiver
            // holds claimed (whole pages only), in a shared memfd mapping:
            // MADV_REMOVE frees its backing pages, which then read as
            // zeros. Nobody else reads or writes a claimed slot's payload,
            // `msg` is not read after this, and the next sender overwrites
            // what it sends. A failure (not supported) changes nothing.
            unsafe {
                libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_REMOVE);
            }
        }
    }
}
