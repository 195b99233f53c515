//! loom models of shmring's synchronisation primitives:
//! [`Lock`], [`RLock`], [`Condition`], [`Event`], [`Semaphore`] and
//! [`Barrier`], each built on a `WaitCell` (under loom a Mutex+Condvar that
//! never times out).
//!
//! What the models check:
//! - exclusion and publication: the data a primitive guards lives in a loom
//!   `UnsafeCell`, so a missing happens-before edge between two critical
//!   sections (a failed exclusion, a too-weak ordering) is a data race that
//!   loom reports;
//! - no lost wake-up: every wait here sleeps without a deadline, so a
//!   wake-up that never comes leaves a thread asleep forever and loom
//!   reports a deadlock;
//! - the primitives' contracts (re-entry depth, permits, leaders, ...) by
//!   asserts.
//!
//! A release is a CAS from the releaser's own owner word to 0 (Release on
//! success): the lock models check it as they checked the store it
//! replaced (a release that failed would leave the lock held and the next
//! locker asleep for ever, which loom reports). The owner check on a
//! deadline and the liveness slices of the other primitives depend on time,
//! which loom does not model (every deadline lies in the future): the
//! process tests in `tests/sync_promises.rs` cover them.
//!
//! In the models nobody dies (`owner::is_dead` is `false` under loom), so
//! every lock call returns `Ok`. Models with three threads use blocking calls
//! only (see the note in `mpmc.rs` on `yield_now` loops).
#![cfg(loom)]

use loom::cell::UnsafeCell;
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;
use shmring::{Barrier, Condition, Event, Lock, RLock, Semaphore, SemaphoreOverflow, TryLockError};
use shmring_loom_tests::{builder, model};

/// A value guarded by a primitive under test: accesses are unsynchronised
/// except through that primitive, and loom checks them for data races.
struct Guarded<T>(UnsafeCell<T>);

// SAFETY: every model touches the cell only while it holds the primitive
// that guards it; loom verifies exactly that (a race fails the model).
unsafe impl<T: Send> Sync for Guarded<T> {}

impl<T: Copy> Guarded<T> {
    fn new(v: T) -> Self {
        Guarded(UnsafeCell::new(v))
    }

    fn get(&self) -> T {
        // SAFETY: see the `Sync` impl: loom reports a racing access.
        self.0.with(|p| unsafe { *p })
    }

    fn set(&self, v: T) {
        // SAFETY: as for `get`.
        self.0.with_mut(|p| unsafe { *p = v })
    }
}

/// Runs `f` under [`builder`] with the preemption bound lowered to `cap`.
fn model_capped<F>(cap: usize, f: F)
where
    F: Fn() + Sync + Send + 'static,
{
    let mut b = builder();
    b.preemption_bound = b.preemption_bound.map(|n| n.min(cap));
    b.check(f);
}

// ---------------------------------------------------------------------------
// Lock

struct Counted {
    lock: Lock,
    count: Guarded<u32>,
}

/// `threads` threads (the model's own included) each take the lock `rounds`
/// times and increment the guarded counter.
fn locked_increments(threads: u32, rounds: u32) {
    let s = Arc::new(Counted {
        lock: Lock::new(),
        count: Guarded::new(0),
    });
    let bump = move |s: &Counted| {
        for _ in 0..rounds {
            let g = s.lock.lock().expect("nobody dies in the models");
            assert!(s.lock.is_locked());
            s.count.set(s.count.get() + 1);
            drop(g);
        }
    };
    let handles: Vec<_> = (1..threads)
        .map(|_| {
            let s = s.clone();
            thread::spawn(move || bump(&s))
        })
        .collect();
    bump(&s);
    for h in handles {
        h.join().unwrap();
    }
    let g = s.lock.try_lock().expect("everyone released the lock");
    assert_eq!(
        s.count.get(),
        threads * rounds,
        "every increment exactly once"
    );
    drop(g);
    assert!(!s.lock.is_locked());
}

/// Two threads lock, increment a guarded counter, unlock: exclusion (no data
/// race on the counter, the release/acquire hand-off publishes it), an exact
/// count, and no lost wake-up of a locker asleep in the slow path.
#[test]
fn lock_two_threads() {
    model(|| locked_increments(2, 1));
}

/// Two threads, two critical sections each: a woken locker may lose the
/// lock again to the other thread's next `lock` and must sleep again.
#[test]
fn lock_two_threads_two_rounds() {
    model(|| locked_increments(2, 2));
}

/// Three threads: two may sleep on the lock's cell at once, and each unlock
/// must hand the lock on.
#[test]
fn lock_three_threads() {
    model(|| locked_increments(3, 1));
}

/// `try_lock` against a blocking locker: `WouldBlock` only while the other
/// thread holds the lock, and a successful `try_lock` excludes it too.
#[test]
fn lock_try_lock_against_lock() {
    model(|| {
        let s = Arc::new(Counted {
            lock: Lock::new(),
            count: Guarded::new(0),
        });
        let t = {
            let s = s.clone();
            thread::spawn(move || {
                let g = s.lock.lock().unwrap();
                s.count.set(s.count.get() + 1);
                drop(g);
            })
        };
        match s.lock.try_lock() {
            Ok(g) => {
                s.count.set(s.count.get() + 10);
                drop(g);
            }
            Err(e) => assert_eq!(e, TryLockError::WouldBlock),
        }
        t.join().unwrap();
        let g = s.lock.lock().unwrap();
        let c = s.count.get();
        assert!(c == 1 || c == 11, "count {c}");
        drop(g);
    });
}

// ---------------------------------------------------------------------------
// RLock

struct Reentrant {
    lock: RLock,
    value: Guarded<u32>,
}

/// One thread enters the RLock twice while another contends: the lock stays
/// held (and the guarded value untouched by the other) after the inner
/// guard drops, until the outer one drops. The contender enters once, or
/// twice through `try_lock`'s re-entry.
#[test]
fn rlock_reentry_while_contended() {
    model(|| {
        let s = Arc::new(Reentrant {
            lock: RLock::new(),
            value: Guarded::new(0),
        });
        let contender = {
            let s = s.clone();
            thread::spawn(move || {
                let g = s.lock.lock().unwrap();
                assert!(s.lock.is_owned_by_current_thread());
                assert_eq!(s.lock.depth(), 1);
                let inner = s.lock.try_lock().expect("re-entry never blocks");
                assert_eq!(s.lock.depth(), 2);
                let v = s.value.get();
                assert!(
                    v == 0 || v == 3,
                    "entered mid-way through the other's hold: {v}"
                );
                s.value.set(v + 10);
                drop(inner);
                drop(g);
            })
        };
        let outer = s.lock.lock().unwrap();
        let base = s.value.get();
        assert!(base == 0 || base == 10, "entered mid-way: {base}");
        s.value.set(base + 1);
        let inner = s.lock.lock().unwrap();
        assert_eq!(s.lock.depth(), 2);
        assert_eq!(s.value.get(), base + 1);
        s.value.set(base + 2);
        drop(inner);
        // Still ours: the other thread cannot have entered.
        assert!(s.lock.is_owned_by_current_thread());
        assert_eq!(s.lock.depth(), 1);
        assert_eq!(s.value.get(), base + 2);
        s.value.set(base + 3);
        drop(outer);
        assert!(!s.lock.is_owned_by_current_thread());
        contender.join().unwrap();
        assert_eq!(s.lock.depth(), 0);
        let g = s.lock.try_lock().expect("both released");
        assert_eq!(s.value.get(), 13);
        drop(g);
    });
}

// ---------------------------------------------------------------------------
// Condition

struct CondState {
    lock: Lock,
    cond: Condition,
    /// Guarded by `lock`.
    ready: Guarded<bool>,
    /// Guarded by `lock`: how many waiters saw `ready`.
    seen: Guarded<u32>,
}

impl CondState {
    fn new() -> Arc<Self> {
        Arc::new(CondState {
            lock: Lock::new(),
            cond: Condition::new(),
            ready: Guarded::new(false),
            seen: Guarded::new(0),
        })
    }

    fn wait_ready(&self) {
        let g = self.lock.lock().unwrap();
        let g = self
            .cond
            .wait_while(g, || !self.ready.get())
            .expect("nobody dies in the models");
        assert!(self.ready.get());
        self.seen.set(self.seen.get() + 1);
        drop(g);
    }
}

/// Producer sets the flag under the lock and `notify_one`s (inside the
/// critical section, or just after it); the consumer waits with
/// `wait_while`. No lost wake-up either way, and the flag is read under the
/// re-taken lock.
fn condition_one_waiter(notify_under_lock: bool) {
    model(move || {
        let s = CondState::new();
        let producer = {
            let s = s.clone();
            thread::spawn(move || {
                let g = s.lock.lock().unwrap();
                s.ready.set(true);
                if notify_under_lock {
                    s.cond.notify_one();
                    drop(g);
                } else {
                    drop(g);
                    s.cond.notify_one();
                }
            })
        };
        s.wait_ready();
        producer.join().unwrap();
        let g = s.lock.lock().unwrap();
        assert_eq!(s.seen.get(), 1);
        drop(g);
    });
}

#[test]
fn condition_notify_one_under_lock() {
    condition_one_waiter(true);
}

#[test]
fn condition_notify_one_after_unlock() {
    condition_one_waiter(false);
}

/// Two waiters, one `notify_all`: both wake (each may also have seen the
/// flag before ever sleeping).
#[test]
fn condition_notify_all_two_waiters() {
    model(|| {
        let s = CondState::new();
        let waiter = {
            let s = s.clone();
            thread::spawn(move || s.wait_ready())
        };
        let producer = {
            let s = s.clone();
            thread::spawn(move || {
                let g = s.lock.lock().unwrap();
                s.ready.set(true);
                s.cond.notify_all();
                drop(g);
            })
        };
        s.wait_ready();
        waiter.join().unwrap();
        producer.join().unwrap();
        let g = s.lock.lock().unwrap();
        assert_eq!(s.seen.get(), 2);
        drop(g);
    });
}

struct RCondState {
    lock: RLock,
    cond: Condition,
    ready: Guarded<bool>,
}

/// A condition wait with an RLock held twice: the wait releases every level
/// (else the producer could never take the lock: a deadlock), and restores
/// the depth after.
#[test]
fn condition_with_rlock_depth_two() {
    model(|| {
        let s = Arc::new(RCondState {
            lock: RLock::new(),
            cond: Condition::new(),
            ready: Guarded::new(false),
        });
        let producer = {
            let s = s.clone();
            thread::spawn(move || {
                let g = s.lock.lock().unwrap();
                assert_eq!(s.lock.depth(), 1);
                s.ready.set(true);
                s.cond.notify_one();
                drop(g);
            })
        };
        let outer = s.lock.lock().unwrap();
        let inner = s.lock.lock().unwrap();
        let inner = s
            .cond
            .wait_while(inner, || !s.ready.get())
            .expect("nobody dies in the models");
        assert!(s.lock.is_owned_by_current_thread());
        assert_eq!(s.lock.depth(), 2, "the depth is restored after the wait");
        assert!(s.ready.get());
        drop(inner);
        assert!(s.lock.is_owned_by_current_thread());
        drop(outer);
        producer.join().unwrap();
        assert_eq!(s.lock.depth(), 0);
    });
}

// ---------------------------------------------------------------------------
// Event

struct EventState {
    event: Event,
    /// Written before `set`, read after `wait`: published by the event.
    data: Guarded<u32>,
}

impl EventState {
    fn new() -> Arc<Self> {
        Arc::new(EventState {
            event: Event::new(),
            data: Guarded::new(0),
        })
    }
}

/// `set` wakes a waiter blocked in `wait` (or one that has not slept yet),
/// and what the setter wrote before `set` is visible after `wait`.
#[test]
fn event_set_wakes_waiter() {
    model(|| {
        let s = EventState::new();
        let setter = {
            let s = s.clone();
            thread::spawn(move || {
                s.data.set(42);
                s.event.set();
            })
        };
        s.event.wait();
        assert!(s.event.is_set());
        assert_eq!(s.data.get(), 42);
        setter.join().unwrap();
    });
}

/// Two waiters, one `set`: it wakes both.
#[test]
fn event_set_wakes_two_waiters() {
    model(|| {
        let s = EventState::new();
        let waiter = {
            let s = s.clone();
            thread::spawn(move || {
                s.event.wait();
                assert_eq!(s.data.get(), 42);
            })
        };
        let setter = {
            let s = s.clone();
            thread::spawn(move || {
                s.data.set(42);
                s.event.set();
            })
        };
        s.event.wait();
        assert_eq!(s.data.get(), 42);
        waiter.join().unwrap();
        setter.join().unwrap();
    });
}

/// A set event: `wait` returns at once (on this thread, and on another one
/// started after the `set`); after `clear` a new `set` is needed.
#[test]
fn event_set_before_wait() {
    model(|| {
        let s = EventState::new();
        s.data.set(7);
        s.event.set();
        s.event.wait();
        let t = {
            let s = s.clone();
            thread::spawn(move || {
                s.event.wait();
                assert_eq!(s.data.get(), 7);
            })
        };
        t.join().unwrap();
        s.event.clear();
        assert!(!s.event.is_set());
        let setter = {
            let s = s.clone();
            thread::spawn(move || s.event.set())
        };
        s.event.wait();
        setter.join().unwrap();
    });
}

// ---------------------------------------------------------------------------
// Semaphore

struct SemState {
    sem: Semaphore,
    /// Threads holding a permit now.
    inside: AtomicUsize,
    /// Guarded by the permit.
    data: Guarded<u32>,
}

fn one_permit(threads: u32) {
    let s = Arc::new(SemState {
        sem: Semaphore::bounded(1),
        inside: AtomicUsize::new(0),
        data: Guarded::new(0),
    });
    let enter = |s: &SemState| {
        s.sem.acquire();
        assert!(s.sem.value() <= 1, "count wrapped: {}", s.sem.value());
        let before = s.inside.fetch_add(1, Ordering::Relaxed);
        assert_eq!(before, 0, "two threads hold the one permit");
        s.data.set(s.data.get() + 1);
        s.inside.fetch_sub(1, Ordering::Relaxed);
        s.sem
            .release()
            .expect("a held permit goes back within the bound");
        assert!(
            s.sem.value() <= 1,
            "count beyond the bound: {}",
            s.sem.value()
        );
    };
    let handles: Vec<_> = (1..threads)
        .map(|_| {
            let s = s.clone();
            thread::spawn(move || enter(&s))
        })
        .collect();
    enter(&s);
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(s.sem.value(), 1, "every permit returned");
    assert!(s.sem.try_acquire());
    assert_eq!(s.data.get(), threads);
    s.sem.release().unwrap();
}

/// A bounded semaphore of 1 permit, two threads: at most one inside, the
/// count within [0, 1], every release accepted, the permit back at the end.
#[test]
fn semaphore_one_permit_two_threads() {
    model(|| one_permit(2));
}

/// As above with three threads (two may sleep at once).
#[test]
fn semaphore_one_permit_three_threads() {
    model(|| one_permit(3));
}

/// A bounded semaphore refuses a release beyond its bound and stays usable;
/// an unbounded one accepts it. A release racing an `acquire` that waits
/// for it wakes it.
#[test]
fn semaphore_bound_and_release_wakes() {
    model(|| {
        let sem = Arc::new(Semaphore::bounded(1));
        assert_eq!(sem.release(), Err(SemaphoreOverflow { bound: 1 }));
        assert_eq!(sem.value(), 1);
        assert!(sem.try_acquire());
        assert!(!sem.try_acquire());
        assert_eq!(sem.value(), 0);
        let t = {
            let sem = sem.clone();
            thread::spawn(move || sem.acquire())
        };
        sem.release().unwrap();
        t.join().unwrap();
        assert_eq!(sem.value(), 0);
        sem.release().unwrap();
        assert_eq!(sem.release(), Err(SemaphoreOverflow { bound: 1 }));
        assert_eq!(sem.value(), 1);

        let free = Semaphore::new(0);
        free.release().unwrap();
        free.release().unwrap();
        assert_eq!(free.value(), 2);
    });
}

// ---------------------------------------------------------------------------
// Barrier

struct BarrierState {
    barrier: Barrier,
    /// Per thread: the last round it reached (Relaxed: only the barrier
    /// orders these).
    reached: Vec<AtomicUsize>,
    /// Per round, per thread: written before arriving, read by everyone
    /// after the barrier trips (loom reports a race if one passes early).
    marks: Vec<Vec<Guarded<bool>>>,
    /// Per round: how many waits returned as leader.
    leaders: Vec<AtomicUsize>,
}

/// `parties` threads pass the barrier `rounds` times; each checks, after
/// every pass, that all the others reached that round.
fn barrier_rounds(parties: usize, rounds: usize) {
    let s = Arc::new(BarrierState {
        barrier: Barrier::new(parties as u32),
        reached: (0..parties).map(|_| AtomicUsize::new(0)).collect(),
        marks: (0..rounds)
            .map(|_| (0..parties).map(|_| Guarded::new(false)).collect())
            .collect(),
        leaders: (0..rounds).map(|_| AtomicUsize::new(0)).collect(),
    });
    let party = move |s: &BarrierState, me: usize| {
        for round in 0..rounds {
            s.marks[round][me].set(true);
            s.reached[me].store(round + 1, Ordering::Relaxed);
            let r = s.barrier.wait().expect("the state is sane");
            assert_eq!(r.generation() as usize, round);
            if r.is_leader() {
                s.leaders[round].fetch_add(1, Ordering::Relaxed);
            }
            for other in 0..parties {
                let at = s.reached[other].load(Ordering::Relaxed);
                assert!(at > round, "party {other} is at {at}, behind round {round}");
                assert!(s.marks[round][other].get(), "party {other} passed early");
            }
        }
    };
    let handles: Vec<_> = (1..parties)
        .map(|me| {
            let s = s.clone();
            thread::spawn(move || party(&s, me))
        })
        .collect();
    party(&s, 0);
    for h in handles {
        h.join().unwrap();
    }
    for (round, l) in s.leaders.iter().enumerate() {
        assert_eq!(l.load(Ordering::Relaxed), 1, "one leader in round {round}");
    }
    assert_eq!(s.barrier.n_waiting(), 0);
}

/// Two parties, two generations: nobody passes early, one leader each.
#[test]
fn barrier_two_parties_two_rounds() {
    model(|| barrier_rounds(2, 2));
}

/// Three parties, one generation, at the full bound.
#[test]
fn barrier_three_parties_one_round() {
    model(|| barrier_rounds(3, 1));
}

/// Three parties, two generations (a fast party arrives for the second
/// while the others still wake from the first). Preemption bound 1: at 2
/// this shape did not finish in 200 s.
#[test]
fn barrier_three_parties_two_rounds() {
    model_capped(1, || barrier_rounds(3, 2));
}
