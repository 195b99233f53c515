//! [`Condition`], [`Event`], [`Semaphore`] and [`Barrier`]: futex-based,
//! in shared memory, with a timeout form for every wait.
//!
//! Each is a `#[repr(C)]` struct of atomics and a wait cell; the fast paths
//! (setting a set event, a free permit, a non-last arrival's CAS) make no
//! system call, and wakers wake only when a waiter is announced. Every wait
//! uses the wait layer's announce / re-check / sleep protocol with `SeqCst`
//! fences on both sides (see `docs/design.md`).
//!
//! # Liveness
//! Every sleep lasts at most one [`LIVENESS_SLICE`], after which the sleeper
//! re-checks the state it waits for, as the queues and locks do: a process
//! killed between a state change (an event set, a permit released, a
//! barrier tripped) and its notify cannot strand the sleepers, who see the
//! change within a slice. A [`Condition`] cannot see its caller's state, so
//! an untimed [`Condition::wait`] returns at least once a slice (a spurious
//! wake-up) for the caller's loop to re-check, and the `wait_while` forms
//! re-check their predicate every slice. [`Condition::wait_timeout`] is the
//! one sleep bounded by its caller's timeout instead (it reports
//! `timed_out()` only when that has passed).

use super::lock::{Acquired, LockGuard, RLockGuard, MODE};
use crate::error::{BarrierError, OwnerDied, SemaphoreOverflow};
use crate::loom::{AtomicU32, AtomicU64, Ordering};
use crate::wait::{Deadline, WaitCell, LIVENESS_SLICE};
use std::fmt;
use std::time::Duration;

/// Sleeps on `cell` until `ready()` holds or `deadline` passes; `true` if
/// ready. The announce / re-check / sleep loop of the wait layer, each sleep
/// at most a [`LIVENESS_SLICE`]: a state change whose notify never came
/// (its author died in between) is seen within a slice.
fn wait_until(
    cell: &WaitCell,
    deadline: Option<Deadline>,
    mut ready: impl FnMut() -> bool,
) -> bool {
    loop {
        if ready() {
            return true;
        }
        let ticket = cell.prepare(MODE);
        if ready() {
            cell.cancel();
            return true;
        }
        if deadline.is_some_and(Deadline::has_passed) {
            cell.cancel();
            return false;
        }
        let mut wake_at = Deadline::after(LIVENESS_SLICE);
        if let Some(d) = deadline {
            wake_at = wake_at.min(d);
        }
        cell.sleep(ticket, wake_at);
        cell.cancel();
    }
}

mod sealed {
    pub trait Sealed {}
}

/// A guard a [`Condition`] can wait with: of a [`Lock`](super::Lock) or an
/// [`RLock`](super::RLock) (all of whose levels are released while waiting
/// and restored after).
pub trait CondGuard: sealed::Sealed {
    #[doc(hidden)]
    fn release_for_wait(&self) -> u32;
    #[doc(hidden)]
    fn reacquire_after_wait(&self, depth: u32) -> bool;
}

impl sealed::Sealed for LockGuard<'_> {}
impl CondGuard for LockGuard<'_> {
    fn release_for_wait(&self) -> u32 {
        // A guard inherited through fork: the lock is the parent's.
        self.assert_same_process();
        self.lock.raw().release(super::owner::current());
        1
    }
    fn reacquire_after_wait(&self, _depth: u32) -> bool {
        self.lock.raw().reacquire(super::owner::current()) == Acquired::Recovered
    }
}

impl sealed::Sealed for RLockGuard<'_> {}
impl CondGuard for RLockGuard<'_> {
    fn release_for_wait(&self) -> u32 {
        self.assert_same_process();
        self.lock.release_all()
    }
    fn reacquire_after_wait(&self, depth: u32) -> bool {
        self.lock.reacquire(depth) == Acquired::Recovered
    }
}

/// Whether a timed condition wait returned because its time was up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WaitTimeoutResult(bool);

impl WaitTimeoutResult {
    /// Whether the wait timed out (the condition may still have been
    /// signalled at the last moment: re-check your state).
    pub fn timed_out(&self) -> bool {
        self.0
    }
}

/// A condition variable for threads of any process, used with a
/// [`Lock`](super::Lock) or [`RLock`](super::RLock) guard: Python's
/// `multiprocessing.Condition`.
///
/// A waiter announces itself before releasing the lock, so a notify that
/// follows the release always finds it. Wake-ups may be spurious: wait in a
/// loop, or use [`wait_while`](Self::wait_while).
///
/// A notifier may die between changing the state and notifying. So that
/// such a change is still seen, [`wait`](Self::wait) returns within about
/// a [`LIVENESS_SLICE`] even when no notify comes
/// (for the caller's loop to re-check), and [`wait_while`](Self::wait_while)
/// and [`wait_while_timeout`](Self::wait_while_timeout) re-check their
/// predicate at least that often. [`wait_timeout`](Self::wait_timeout)
/// sleeps until a notify or its own timeout, which bounds it: prefer
/// `wait_while_timeout` where notifiers may die and the timeout is long.
#[repr(C)]
#[derive(Debug, Default)]
pub struct Condition {
    cell: WaitCell,
}

impl Condition {
    /// A condition with no waiters, to place in shared memory.
    pub fn new() -> Self {
        Condition {
            cell: WaitCell::new(),
        }
    }

    /// One wait: until a notify, `deadline`, or (when `sliced`) a liveness
    /// slice, whichever comes first; returns (owner died, timed out). A
    /// wait without a deadline must be sliced (see the type docs).
    fn wait_inner<G: CondGuard>(
        &self,
        guard: &G,
        deadline: Option<Deadline>,
        sliced: bool,
    ) -> (bool, bool) {
        debug_assert!(sliced || deadline.is_some());
        let ticket = self.cell.prepare(MODE);
        let depth = guard.release_for_wait();
        let slice = Deadline::after(LIVENESS_SLICE);
        let wake_at = match deadline {
            Some(d) if sliced => d.min(slice),
            Some(d) => d,
            None => slice,
        };
        let woken = self.cell.sleep(ticket, wake_at);
        self.cell.cancel();
        let died = guard.reacquire_after_wait(depth);
        let timed_out = !woken && deadline.is_some_and(Deadline::has_passed);
        (died, timed_out)
    }

    /// Releases the lock, sleeps until notified (or spuriously, at the
    /// latest after about a liveness slice), and takes the lock back.
    ///
    /// # Errors
    /// `OwnerDied(guard)`: while we waited, a holder of the lock died
    /// holding it; the lock is held again.
    pub fn wait<G: CondGuard>(&self, guard: G) -> Result<G, OwnerDied<G>> {
        match self.wait_inner(&guard, None, true) {
            (true, _) => Err(OwnerDied(guard)),
            (false, _) => Ok(guard),
        }
    }

    /// As [`wait`](Self::wait), for at most `timeout` of waiting for a
    /// notification, but not cut into liveness slices: without a notify it
    /// returns when `timeout` has passed (or, rarely, spuriously). Taking the lock back afterwards is not bounded by the
    /// timeout (as in Python): a live thread that holds the lock delays the
    /// return until it releases it; a dead one is recovered (`OwnerDied`).
    ///
    /// # Errors
    /// As for [`wait`](Self::wait).
    pub fn wait_timeout<G: CondGuard>(
        &self,
        guard: G,
        timeout: Duration,
    ) -> Result<(G, WaitTimeoutResult), OwnerDied<G>> {
        match self.wait_inner(&guard, Some(Deadline::after(timeout)), false) {
            (true, _) => Err(OwnerDied(guard)),
            (false, t) => Ok((guard, WaitTimeoutResult(t))),
        }
    }

    /// Waits while `condition()` holds (checked with the lock held, after
    /// every wake-up and at least once a liveness slice).
    ///
    /// # Errors
    /// As for [`wait`](Self::wait).
    pub fn wait_while<G: CondGuard>(
        &self,
        mut guard: G,
        mut condition: impl FnMut() -> bool,
    ) -> Result<G, OwnerDied<G>> {
        while condition() {
            guard = self.wait(guard)?;
        }
        Ok(guard)
    }

    /// Waits while `condition()` holds, for at most `timeout` in all.
    ///
    /// # Errors
    /// As for [`wait`](Self::wait).
    pub fn wait_while_timeout<G: CondGuard>(
        &self,
        guard: G,
        timeout: Duration,
        mut condition: impl FnMut() -> bool,
    ) -> Result<(G, WaitTimeoutResult), OwnerDied<G>> {
        let deadline = Deadline::after(timeout);
        while condition() {
            if deadline.has_passed() {
                return Ok((guard, WaitTimeoutResult(true)));
            }
            let (died, _) = self.wait_inner(&guard, Some(deadline), true);
            if died {
                return Err(OwnerDied(guard));
            }
        }
        Ok((guard, WaitTimeoutResult(false)))
    }

    /// Wakes one waiter, if any.
    pub fn notify_one(&self) {
        self.cell.notify_one(MODE);
    }

    /// Wakes every waiter.
    pub fn notify_all(&self) {
        self.cell.notify_all(MODE);
    }
}

/// A flag that threads of any process can wait on: Python's
/// `multiprocessing.Event`.
///
/// A waiter re-checks the flag at least once a
/// [`LIVENESS_SLICE`], so a setter that died between
/// setting it and waking the waiters strands nobody.
#[repr(C)]
#[derive(Debug, Default)]
pub struct Event {
    flag: AtomicU32,
    cell: WaitCell,
}

impl Event {
    /// A clear event, to place in shared memory.
    pub fn new() -> Self {
        Event {
            flag: AtomicU32::new(0),
            cell: WaitCell::new(),
        }
    }

    /// Sets the flag and wakes every waiter.
    pub fn set(&self) {
        // Release: what the setter did before `set` happens-before what a
        // waiter does after seeing the flag (Acquire).
        self.flag.store(1, Ordering::Release);
        self.cell.notify_all(MODE);
    }

    /// Clears the flag.
    pub fn clear(&self) {
        // Relaxed: clearing publishes nothing.
        self.flag.store(0, Ordering::Relaxed);
    }

    /// Whether the flag is set.
    pub fn is_set(&self) -> bool {
        // Acquire: pairs with `set`'s Release.
        self.flag.load(Ordering::Acquire) != 0
    }

    /// Waits until the flag is set.
    pub fn wait(&self) {
        wait_until(&self.cell, None, || self.is_set());
    }

    /// Waits at most `timeout` for the flag; whether it is set.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        wait_until(&self.cell, Some(Deadline::after(timeout)), || self.is_set())
    }
}

/// A counting semaphore for threads of any process: Python's
/// `multiprocessing.Semaphore`, and with [`bounded`](Self::bounded) its
/// `BoundedSemaphore`.
///
/// Permits are not owned: a process that dies holding permits does not give
/// them back (as in Python); a bounded semaphore at least refuses the
/// releases that would go beyond its start value. A waiter re-checks the
/// count at least once a [`LIVENESS_SLICE`], so a
/// releaser that died before its wake-up strands nobody.
#[repr(C)]
#[derive(Debug)]
pub struct Semaphore {
    count: AtomicU32,
    bound: AtomicU32,
    cell: WaitCell,
}

impl Semaphore {
    /// A semaphore with `permits` free.
    pub fn new(permits: u32) -> Self {
        Semaphore {
            count: AtomicU32::new(permits),
            bound: AtomicU32::new(u32::MAX),
            cell: WaitCell::new(),
        }
    }

    /// A semaphore with `permits` free that refuses to go beyond them.
    pub fn bounded(permits: u32) -> Self {
        Semaphore {
            count: AtomicU32::new(permits),
            bound: AtomicU32::new(permits),
            cell: WaitCell::new(),
        }
    }

    /// Takes a permit if one is free.
    pub fn try_acquire(&self) -> bool {
        // Relaxed first read: the CAS validates it.
        let mut c = self.count.load(Ordering::Relaxed);
        while c > 0 {
            // Acquire: the releaser's writes happen-before our use of the
            // permit. Relaxed on failure: we retry with the fresh count.
            match self
                .count
                .compare_exchange_weak(c, c - 1, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(now) => c = now,
            }
        }
        false
    }

    /// Takes a permit, waiting for one.
    pub fn acquire(&self) {
        wait_until(&self.cell, None, || self.try_acquire());
    }

    /// Takes a permit, waiting at most `timeout`; whether it got one.
    pub fn acquire_timeout(&self, timeout: Duration) -> bool {
        wait_until(&self.cell, Some(Deadline::after(timeout)), || {
            self.try_acquire()
        })
    }

    /// Gives a permit back and wakes one waiter.
    ///
    /// # Errors
    /// `SemaphoreOverflow`: the count is at its bound; nothing changed.
    pub fn release(&self) -> Result<(), SemaphoreOverflow> {
        // Relaxed: the bound is fixed at creation.
        let bound = self.bound.load(Ordering::Relaxed);
        // Relaxed first read: the CAS validates it.
        let mut c = self.count.load(Ordering::Relaxed);
        loop {
            if c >= bound {
                return Err(SemaphoreOverflow { bound });
            }
            // Release: our writes happen-before the acquirer's use.
            match self
                .count
                .compare_exchange_weak(c, c + 1, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(now) => c = now,
            }
        }
        self.cell.notify_one(MODE);
        Ok(())
    }

    /// Free permits now (a snapshot).
    pub fn value(&self) -> u32 {
        // Relaxed: a snapshot.
        self.count.load(Ordering::Relaxed)
    }
}

/// What a completed barrier wait says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BarrierWaitResult {
    leader: bool,
    generation: u32,
}

impl BarrierWaitResult {
    /// Whether this caller's arrival tripped the barrier (exactly one per
    /// generation).
    pub fn is_leader(&self) -> bool {
        self.leader
    }

    /// The generation this wait completed (counts trips, wrapping).
    pub fn generation(&self) -> u32 {
        self.generation
    }
}

/// A reusable barrier for `parties` threads of any processes: Python's
/// `multiprocessing.Barrier`.
///
/// The state is one word, `generation << 32 | arrived`, changed only by
/// CAS: an arrival increments `arrived`, and the last arrival starts the
/// next generation with none arrived, atomically, then wakes the rest. A
/// wait that times out withdraws its arrival (if its generation has not
/// tripped meanwhile), so the barrier stays usable. A process that dies
/// after arriving counts as arrived; one that dies before arriving leaves
/// the others waiting: use [`wait_timeout`](Self::wait_timeout) when
/// parties may die. A waiter re-checks the generation at least once a
/// [`LIVENESS_SLICE`], so a last arrival that died
/// between tripping the barrier and waking the rest strands nobody.
#[repr(C)]
#[derive(Debug)]
pub struct Barrier {
    state: AtomicU64,
    parties: AtomicU32,
    cell: WaitCell,
}

const ARRIVED: u64 = 0xffff_ffff;

impl Barrier {
    /// A barrier for `parties` parties (a barrier for 0 parties acts as one
    /// for 1: every wait passes at once).
    pub fn new(parties: u32) -> Self {
        Barrier {
            state: AtomicU64::new(0),
            parties: AtomicU32::new(parties.max(1)),
            cell: WaitCell::new(),
        }
    }

    /// The number of parties.
    pub fn parties(&self) -> u32 {
        // Relaxed: fixed at creation.
        self.parties.load(Ordering::Relaxed)
    }

    /// Parties waiting now (a snapshot).
    pub fn n_waiting(&self) -> u32 {
        // Relaxed: a snapshot.
        (self.state.load(Ordering::Relaxed) & ARRIVED) as u32
    }

    /// Waits until all parties have arrived.
    ///
    /// # Errors
    /// `Corrupted` if the shared state is out of range.
    pub fn wait(&self) -> Result<BarrierWaitResult, BarrierError> {
        self.wait_deadline(None)
    }

    /// As [`wait`](Self::wait), for at most `timeout`.
    ///
    /// # Errors
    /// `Timeout` (the arrival is withdrawn), `Corrupted`.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<BarrierWaitResult, BarrierError> {
        self.wait_deadline(Some(Deadline::after(timeout)))
    }

    fn wait_deadline(&self, deadline: Option<Deadline>) -> Result<BarrierWaitResult, BarrierError> {
        let parties = self.parties() as u64;
        if parties == 0 {
            return Err(BarrierError::Corrupted);
        }
        // Relaxed first read: the CAS validates it.
        let mut s = self.state.load(Ordering::Relaxed);
        let gen = loop {
            let arrived = s & ARRIVED;
            if arrived >= parties {
                return Err(BarrierError::Corrupted);
            }
            let gen = s >> 32;
            let next = if arrived + 1 == parties {
                (gen.wrapping_add(1) & ARRIVED) << 32
            } else {
                s + 1
            };
            // AcqRel: our arrival releases what we did before it; the trip
            // acquires every arrival (they form one release sequence of
            // RMWs) and releases it all to the waiters.
            match self
                .state
                .compare_exchange_weak(s, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) if arrived + 1 == parties => {
                    self.cell.notify_all(MODE);
                    return Ok(BarrierWaitResult {
                        leader: true,
                        generation: gen as u32,
                    });
                }
                Ok(_) => break gen,
                Err(now) => s = now,
            }
        };
        // Acquire: seeing the next generation synchronises with the trip.
        let tripped = || self.state.load(Ordering::Acquire) >> 32 != gen;
        if wait_until(&self.cell, deadline, tripped) {
            return Ok(BarrierWaitResult {
                leader: false,
                generation: gen as u32,
            });
        }
        // Timed out: withdraw our arrival unless the generation tripped.
        let mut s = self.state.load(Ordering::Acquire);
        loop {
            if s >> 32 != gen {
                return Ok(BarrierWaitResult {
                    leader: false,
                    generation: gen as u32,
                });
            }
            if s & ARRIVED == 0 {
                return Err(BarrierError::Corrupted);
            }
            // Relaxed: withdrawing publishes nothing; Acquire on failure to
            // re-check a possible trip.
            match self
                .state
                .compare_exchange_weak(s, s - 1, Ordering::Relaxed, Ordering::Acquire)
            {
                Ok(_) => return Err(BarrierError::Timeout),
                Err(now) => s = now,
            }
        }
    }
}

impl fmt::Display for BarrierWaitResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "generation {}{}",
            self.generation,
            if self.leader { " (leader)" } else { "" }
        )
    }
}
