//! [`Lock`] and [`RLock`]: futex mutexes that live in shared memory and
//! survive the death of their owner.
//!
//! # The protocol
//! `owner` holds 0 (free) or the owner word of the thread holding the lock
//! ([`owner`](super::owner)): taking the lock is one CAS `0 → me`
//! (**Acquire**: the previous holder's writes happen-before ours), releasing
//! is one CAS `me → 0` (**Release**), then a notify that makes a system call
//! only when a waiter is announced. Release clears only the word the
//! releasing thread itself set: a forked child dropping a guard it inherited
//! (its identity is not its parent's), or a holder whose lock was taken over
//! meanwhile, leaves the lock as it is. Guards are not `Send` (as std's), so
//! a guard is always dropped by the thread that took it, or by a forked copy
//! of that thread. A contended locker spins briefly, then
//! announces itself on the wait cell, re-checks, and sleeps (the wait layer's
//! protocol, with `SeqCst` fences on both sides: no lost wake-up).
//!
//! # Owner death
//! A sleeper wakes at least every [`LIVENESS_SLICE`]; after a slice in which
//! it was not woken, and in any case once a slice (a deadline, so that
//! signals or others' unlocks, which count as wake-ups, cannot put the check
//! off for ever), it checks whether the owner is alive. If the owner is proven dead, the
//! sleeper takes the lock with one CAS from that exact owner word to its
//! own, so only one recovers it, and gets [`OwnerDied`] carrying the guard:
//! the protected data may be half-updated. A stopped (SIGSTOP) owner is
//! alive and keeps the lock; a reused tid has another start time and is not
//! mistaken for the dead owner. `try_lock` makes the same check when it
//! finds the lock held.

use super::owner;
use crate::error::{LockTimeoutError, OwnerDied, TryLockError};
use crate::loom::{AtomicU32, AtomicU64, Ordering};
use crate::wait::{Deadline, Spin, WaitCell, WakeMode, LIVENESS_SLICE};
use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

/// How long a contended locker spins before sleeping.
const SPIN: Duration = Duration::from_micros(20);

/// The primitives' wake protocol: they already pay a CAS on every
/// operation, so the fences of [`WakeMode::Strict`] cost little here and
/// need no `membarrier` registration.
pub(crate) const MODE: WakeMode = WakeMode::Strict;

/// How an acquisition ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Acquired {
    /// Taken from a free lock.
    Clean,
    /// Taken over from a dead owner.
    Recovered,
    /// The deadline passed.
    TimedOut,
}

/// The shared core of `Lock` and `RLock`: the owner word and the wait cell.
#[repr(C)]
#[derive(Debug, Default)]
pub(crate) struct RawLock {
    owner: AtomicU64,
    cell: WaitCell,
}

impl RawLock {
    pub(crate) fn new() -> Self {
        RawLock {
            owner: AtomicU64::new(0),
            cell: WaitCell::new(),
        }
    }

    #[inline]
    fn try_take(&self, me: u64) -> bool {
        // Acquire: the previous holder's writes (before its Release store
        // of 0) happen-before ours. Relaxed on failure: we learn nothing.
        self.owner
            .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    /// Takes the lock over from a dead owner, if it has one.
    #[cold]
    fn recover(&self, me: u64) -> bool {
        // Relaxed: an identity to check; the CAS below validates it.
        let held = self.owner.load(Ordering::Relaxed);
        // Acquire on success: whatever the dead owner wrote is visible to
        // the recoverer, which is told the state may be inconsistent.
        held != 0
            && held != me
            && owner::is_dead(held)
            && self
                .owner
                .compare_exchange(held, me, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
    }

    /// Whether the calling thread (`me`) holds the lock.
    #[inline]
    pub(crate) fn held_by(&self, me: u64) -> bool {
        // Relaxed: only `me` itself ever stores `me`.
        self.owner.load(Ordering::Relaxed) == me
    }

    /// Whether anyone holds the lock (a snapshot).
    pub(crate) fn is_locked(&self) -> bool {
        // Relaxed: a snapshot.
        self.owner.load(Ordering::Relaxed) != 0
    }

    /// Without waiting: `Some(Clean)`, `Some(Recovered)` or `None` (held by
    /// a live thread).
    pub(crate) fn try_acquire(&self, me: u64) -> Option<Acquired> {
        if self.try_take(me) {
            Some(Acquired::Clean)
        } else if self.recover(me) {
            Some(Acquired::Recovered)
        } else {
            None
        }
    }

    /// Takes the lock, waiting until `deadline` (`None`: forever).
    #[inline]
    pub(crate) fn acquire(&self, me: u64, deadline: Option<Deadline>) -> Acquired {
        if self.try_take(me) {
            return Acquired::Clean;
        }
        self.acquire_slow(me, deadline)
    }

    #[cold]
    fn acquire_slow(&self, me: u64, deadline: Option<Deadline>) -> Acquired {
        let mut spin = Spin::until(SPIN, deadline);
        while spin.spin() {
            // Relaxed peek before the CAS: do not steal the line needlessly.
            if self.owner.load(Ordering::Relaxed) == 0 && self.try_take(me) {
                return Acquired::Clean;
            }
        }
        let mut next_check = Deadline::after(LIVENESS_SLICE);
        loop {
            let ticket = self.cell.prepare(MODE);
            if self.try_take(me) {
                self.cell.cancel();
                return Acquired::Clean;
            }
            if deadline.is_some_and(Deadline::has_passed) {
                self.cell.cancel();
                // A dead owner is no reason to time out (try_lock would
                // recover it too, however short the deadline).
                if self.recover(me) {
                    return Acquired::Recovered;
                }
                return Acquired::TimedOut;
            }
            let mut wake_at = Deadline::after(LIVENESS_SLICE);
            if let Some(d) = deadline {
                wake_at = wake_at.min(d);
            }
            let woken = self.cell.sleep(ticket, wake_at);
            self.cell.cancel();
            // After a slice nobody woke, and at least once a slice even when
            // wake-ups keep coming: EINTR (a signal every few milliseconds)
            // and unlocks taken by other waiters count as wake-ups, and must
            // not hide a dead owner.
            if !woken || next_check.has_passed() {
                if self.recover(me) {
                    return Acquired::Recovered;
                }
                next_check = Deadline::after(LIVENESS_SLICE);
            }
        }
    }

    /// Takes the lock back after this thread released it for a condition
    /// wait. An owner word naming this very thread then can only have been
    /// written by someone else (a scribbling peer): it counts as taken
    /// rather than deadlocking this thread on itself.
    pub(crate) fn reacquire(&self, me: u64) -> Acquired {
        loop {
            match self.acquire(me, Some(Deadline::after(LIVENESS_SLICE))) {
                Acquired::TimedOut if self.held_by(me) => return Acquired::Clean,
                Acquired::TimedOut => {}
                other => return other,
            }
        }
    }

    /// Releases the lock if `me` holds it, and then wakes one sleeper, if
    /// any; whether it did. An owner word other than `me` (a forked child's
    /// inherited guard, a lock taken over meanwhile, a scribble) is left as
    /// it is: it is someone else's lock.
    #[inline]
    pub(crate) fn release(&self, me: u64) -> bool {
        // Release: our writes happen-before the next holder's Acquire CAS.
        // Relaxed on failure: the lock is not ours, and we touch nothing.
        let ours = self
            .owner
            .compare_exchange(me, 0, Ordering::Release, Ordering::Relaxed)
            .is_ok();
        if ours {
            self.cell.notify_one(MODE);
        }
        ours
    }
}

/// A mutual-exclusion lock for threads of any process, placed in shared
/// memory: Python's `multiprocessing.Lock`.
///
/// Put it in a segment with [`Shared`](crate::Shared) (by name, at a path,
/// or anonymous for `fork`), or as a field of your own `#[repr(C)]` struct
/// in one. Unlike Python's, the lock belongs to the thread that took it:
/// only that thread releases it (by dropping the guard, which is not
/// `Send`), so a thread that dies holding it is detected.
///
/// # Examples
/// ```
/// use shmring::{Lock, Shared};
/// let lock = Shared::anonymous(Lock::new())?; // shared with forked children
/// let guard = lock.lock().unwrap_or_else(|died| died.into_inner());
/// assert!(lock.try_lock().is_err());
/// drop(guard);
/// # Ok::<(), shmring::SegmentError>(())
/// ```
#[repr(C)]
#[derive(Debug, Default)]
pub struct Lock {
    raw: RawLock,
}

/// Holds a [`Lock`]; releases it when dropped.
///
/// The lock belongs to the thread that took it, so the guard is not `Send`
/// (as `std::sync::MutexGuard`): it cannot be moved to another thread, and
/// neither can the guards of [`Value`](crate::Value) and
/// [`Array`](crate::Array), which hold one.
///
/// ```compile_fail
/// use shmring::{Lock, Shared};
/// let lock = Shared::anonymous(Lock::new()).unwrap();
/// let guard = lock.lock().unwrap();
/// std::thread::scope(|s| {
///     s.spawn(move || drop(guard)); // error: `LockGuard` is not `Send`
/// });
/// ```
///
/// ```compile_fail
/// use shmring::Value;
/// let v = Value::<u64>::anonymous(0).unwrap();
/// let guard = v.lock().unwrap();
/// std::thread::scope(|s| {
///     s.spawn(move || drop(guard)); // error: the guard is not `Send`
/// });
/// ```
///
/// Dropping a guard that a forked child inherited leaves the parent's lock
/// held: it releases only the owner word its own thread set.
#[must_use = "the lock is released when the guard is dropped"]
pub struct LockGuard<'a> {
    pub(crate) lock: &'a Lock,
    _not_send: NotSend,
    taken_in: TakenIn,
}

/// Makes a guard `!Send` but keeps it `Sync`, as std's guards are (a
/// `MutexGuard` is exactly that; the lifetime and type are placeholders).
type NotSend = PhantomData<std::sync::MutexGuard<'static, ()>>;

/// The process a guard was taken in (0 in loom models: unchecked).
#[derive(Clone, Copy)]
struct TakenIn(#[cfg_attr(loom, allow(dead_code))] u32);

impl TakenIn {
    fn here() -> Self {
        #[cfg(not(loom))]
        {
            TakenIn(crate::process::current_pid())
        }
        #[cfg(loom)]
        {
            TakenIn(0)
        }
    }

    /// Stops a guard used in a process other than the one that took the
    /// lock: one inherited through `fork` holds the parent's lock, and
    /// writing under it from the child would break the lock's exclusivity.
    ///
    /// # Panics
    /// In such a process (a bug in the caller, as using an endpoint there).
    #[inline(always)]
    #[cfg_attr(loom, allow(dead_code))]
    fn assert_here(self) {
        #[cfg(not(loom))]
        if self.0 != 0 && crate::process::current_pid() != self.0 {
            guard_in_other_process(self.0);
        }
    }
}

impl fmt::Debug for LockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LockGuard")
    }
}

impl LockGuard<'_> {
    /// Panics in a process other than the one that took the lock (a guard
    /// inherited through `fork`): see `TakenIn::assert_here`.
    #[inline(always)]
    #[cfg_attr(loom, allow(dead_code))]
    pub(crate) fn assert_same_process(&self) {
        self.taken_in.assert_here();
    }
}

impl RLockGuard<'_> {
    /// As [`LockGuard::assert_same_process`].
    #[inline(always)]
    #[cfg_attr(loom, allow(dead_code))]
    pub(crate) fn assert_same_process(&self) {
        self.taken_in.assert_here();
    }
}

#[cfg(not(loom))]
#[cold]
#[inline(never)]
#[track_caller]
fn guard_in_other_process(pid: u32) -> ! {
    panic!(
        "shmring: a lock guard taken in process {pid} was used in process {} \
         (inherited through fork?): the lock is the parent's; take it in this process",
        crate::process::current_pid()
    )
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        self.lock.raw.release(owner::current());
    }
}

impl Lock {
    /// An unlocked lock, to place in shared memory.
    pub fn new() -> Self {
        Lock {
            raw: RawLock::new(),
        }
    }

    pub(crate) fn raw(&self) -> &RawLock {
        &self.raw
    }

    fn guard(&self) -> LockGuard<'_> {
        LockGuard {
            lock: self,
            _not_send: PhantomData,
            taken_in: TakenIn::here(),
        }
    }

    /// Takes the lock, waiting as long as a live thread holds it.
    ///
    /// # Errors
    /// `OwnerDied(guard)`: the previous owner died holding it (detected
    /// within about [`LIVENESS_SLICE`]); the lock is now held.
    pub fn lock(&self) -> Result<LockGuard<'_>, OwnerDied<LockGuard<'_>>> {
        match self.raw.acquire(owner::current(), None) {
            Acquired::Recovered => Err(OwnerDied(self.guard())),
            _ => Ok(self.guard()),
        }
    }

    /// Takes the lock if it is free (or its owner is dead), without waiting.
    ///
    /// # Errors
    /// `WouldBlock`, or `OwnerDied(guard)`.
    pub fn try_lock(&self) -> Result<LockGuard<'_>, TryLockError<LockGuard<'_>>> {
        match self.raw.try_acquire(owner::current()) {
            Some(Acquired::Recovered) => Err(TryLockError::OwnerDied(self.guard())),
            Some(_) => Ok(self.guard()),
            None => Err(TryLockError::WouldBlock),
        }
    }

    /// Takes the lock, waiting at most `timeout`.
    ///
    /// # Errors
    /// `Timeout`, or `OwnerDied(guard)`.
    pub fn lock_timeout(
        &self,
        timeout: Duration,
    ) -> Result<LockGuard<'_>, LockTimeoutError<LockGuard<'_>>> {
        match self
            .raw
            .acquire(owner::current(), Some(Deadline::after(timeout)))
        {
            Acquired::Clean => Ok(self.guard()),
            Acquired::Recovered => Err(LockTimeoutError::OwnerDied(self.guard())),
            Acquired::TimedOut => Err(LockTimeoutError::Timeout),
        }
    }

    /// Whether someone holds the lock (a snapshot).
    pub fn is_locked(&self) -> bool {
        self.raw.is_locked()
    }

    /// Takes the lock if it is free: one CAS, and no look at a holder's
    /// liveness (which `try_lock` makes, reading `/proc`), for callers that
    /// poll a lock they know is held briefly and fall back to
    /// [`lock`](Self::lock), which finds a dead holder.
    pub(crate) fn try_lock_free(&self) -> Option<LockGuard<'_>> {
        (!self.raw.is_locked() && self.raw.try_take(owner::current())).then(|| self.guard())
    }
}

/// A re-entrant lock: the thread that holds it may take it again, and it is
/// released when every guard is dropped. Python's `multiprocessing.RLock`.
///
/// The depth is kept in shared memory next to the owner (only the owner
/// writes it). Guards are not `Send`: a re-entrant lock belongs to a thread.
#[repr(C)]
#[derive(Debug, Default)]
pub struct RLock {
    raw: RawLock,
    depth: AtomicU32,
}

/// Holds an [`RLock`] once; the lock is released when the outermost guard
/// is dropped.
///
/// Not `Send`: the lock and its depth belong to the thread that took it.
///
/// ```compile_fail
/// use shmring::{RLock, Shared};
/// let lock = Shared::anonymous(RLock::new()).unwrap();
/// let guard = lock.lock().unwrap();
/// std::thread::scope(|s| {
///     s.spawn(move || drop(guard)); // error: `RLockGuard` is not `Send`
/// });
/// ```
///
/// A guard dropped by a thread that does not hold the lock (a forked
/// child's inherited copy) changes neither the owner nor the depth.
#[must_use = "the lock is released when the guard is dropped"]
pub struct RLockGuard<'a> {
    pub(crate) lock: &'a RLock,
    _not_send: NotSend,
    taken_in: TakenIn,
}

impl fmt::Debug for RLockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RLockGuard")
            .field("depth", &self.lock.depth())
            .finish()
    }
}

impl Drop for RLockGuard<'_> {
    fn drop(&mut self) {
        let me = owner::current();
        if !self.lock.raw.held_by(me) {
            // Not ours (an inherited guard in a forked child): the depth
            // is the holder's.
            return;
        }
        // Relaxed: only the owner (this thread) touches the depth.
        let d = self.lock.depth.load(Ordering::Relaxed);
        self.lock
            .depth
            .store(d.saturating_sub(1), Ordering::Relaxed);
        if d <= 1 {
            self.lock.raw.release(me);
        }
    }
}

impl RLock {
    /// An unlocked re-entrant lock, to place in shared memory.
    pub fn new() -> Self {
        RLock {
            raw: RawLock::new(),
            depth: AtomicU32::new(0),
        }
    }

    fn guard(&self) -> RLockGuard<'_> {
        RLockGuard {
            lock: self,
            _not_send: PhantomData,
            taken_in: TakenIn::here(),
        }
    }

    /// Enters once more if this thread holds the lock.
    fn reenter(&self, me: u64) -> Option<RLockGuard<'_>> {
        if !self.raw.held_by(me) {
            return None;
        }
        // Relaxed: only the owner (this thread) touches the depth.
        let d = self.depth.load(Ordering::Relaxed);
        self.depth.store(d.saturating_add(1), Ordering::Relaxed);
        Some(self.guard())
    }

    fn entered(&self, how: Acquired) -> Result<RLockGuard<'_>, OwnerDied<RLockGuard<'_>>> {
        // Relaxed: we are the owner now; a dead owner's depth is void.
        self.depth.store(1, Ordering::Relaxed);
        match how {
            Acquired::Recovered => Err(OwnerDied(self.guard())),
            _ => Ok(self.guard()),
        }
    }

    /// Takes the lock (again, if this thread holds it).
    ///
    /// # Errors
    /// `OwnerDied(guard)`: the previous owner died holding it.
    pub fn lock(&self) -> Result<RLockGuard<'_>, OwnerDied<RLockGuard<'_>>> {
        let me = owner::current();
        if let Some(g) = self.reenter(me) {
            return Ok(g);
        }
        self.entered(self.raw.acquire(me, None))
    }

    /// Takes the lock without waiting.
    ///
    /// # Errors
    /// `WouldBlock` (another live thread holds it), or `OwnerDied(guard)`.
    pub fn try_lock(&self) -> Result<RLockGuard<'_>, TryLockError<RLockGuard<'_>>> {
        let me = owner::current();
        if let Some(g) = self.reenter(me) {
            return Ok(g);
        }
        match self.raw.try_acquire(me) {
            Some(how) => self.entered(how).map_err(|e| TryLockError::OwnerDied(e.0)),
            None => Err(TryLockError::WouldBlock),
        }
    }

    /// Takes the lock, waiting at most `timeout`.
    ///
    /// # Errors
    /// `Timeout`, or `OwnerDied(guard)`.
    pub fn lock_timeout(
        &self,
        timeout: Duration,
    ) -> Result<RLockGuard<'_>, LockTimeoutError<RLockGuard<'_>>> {
        let me = owner::current();
        if let Some(g) = self.reenter(me) {
            return Ok(g);
        }
        match self.raw.acquire(me, Some(Deadline::after(timeout))) {
            Acquired::TimedOut => Err(LockTimeoutError::Timeout),
            how => self
                .entered(how)
                .map_err(|e| LockTimeoutError::OwnerDied(e.0)),
        }
    }

    /// How many guards the owning thread holds (0: free). A snapshot when
    /// read by another thread.
    pub fn depth(&self) -> u32 {
        if self.raw.is_locked() {
            // Relaxed: exact for the owner, a snapshot for others.
            self.depth.load(Ordering::Relaxed)
        } else {
            0
        }
    }

    /// Whether the calling thread holds the lock.
    pub fn is_owned_by_current_thread(&self) -> bool {
        self.raw.held_by(owner::current())
    }

    /// Releases every level at once for a condition wait; returns the depth
    /// (0, touching nothing, when this thread does not hold the lock).
    pub(crate) fn release_all(&self) -> u32 {
        let me = owner::current();
        if !self.raw.held_by(me) {
            return 0;
        }
        // Relaxed: only the owner touches the depth.
        let d = self.depth.swap(0, Ordering::Relaxed);
        self.raw.release(me);
        d
    }

    /// Re-acquires after a condition wait and restores the depth.
    pub(crate) fn reacquire(&self, depth: u32) -> Acquired {
        let how = self.raw.reacquire(owner::current());
        // Relaxed: we are the owner.
        self.depth.store(depth.max(1), Ordering::Relaxed);
        how
    }
}
