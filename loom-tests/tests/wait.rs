//! loom models of the announce/re-check/sleep protocol of
//! [`WaitCell`](shmring::__internal::WaitCell), directly and through the blocking
//! queue calls.
//!
//! Under loom a futex wait is a Mutex+Condvar that never times out, so a lost
//! wake-up leaves a thread asleep forever and loom reports a deadlock.
#![cfg(loom)]

use loom::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use loom::sync::Arc;
use loom::thread;
use shmring::__internal::HeapQueue;
use shmring::__internal::WaitCell;
use shmring::Deadline;
use shmring::{Flavor, TryRecvError, WakeMode};
use shmring_loom_tests::model;
use std::time::Duration;

struct Event {
    flag: AtomicBool,
    cell: WaitCell,
}

impl Event {
    fn new() -> Arc<Self> {
        Arc::new(Event {
            flag: AtomicBool::new(false),
            cell: WaitCell::new(),
        })
    }

    /// N1 publish (Release), then N2/N3: barrier, wake if anyone announced.
    fn set(&self, mode: WakeMode) {
        self.flag.store(true, Ordering::Release);
        self.cell.notify(mode);
    }

    /// The waiter's loop: check, announce (W1-W3), re-check (W4), sleep (W5),
    /// withdraw (W6).
    fn wait(&self, mode: WakeMode) {
        loop {
            if self.flag.load(Ordering::Acquire) {
                break;
            }
            let ticket = self.cell.prepare(mode);
            if self.flag.load(Ordering::Acquire) {
                self.cell.cancel();
                break;
            }
            self.cell.sleep(ticket, Deadline::now());
            self.cell.cancel();
        }
    }

    /// The same loop without the re-check after `prepare`: a notifier that
    /// publishes between the first check and the announcement sees no
    /// waiter and skips the wake, and the waiter sleeps forever.
    fn wait_without_recheck(&self, mode: WakeMode) {
        loop {
            if self.flag.load(Ordering::Acquire) {
                break;
            }
            let ticket = self.cell.prepare(mode);
            self.cell.sleep(ticket, Deadline::now());
            self.cell.cancel();
        }
    }
}

fn one_waiter(mode: WakeMode) {
    model(move || {
        let ev = Event::new();
        let notifier = {
            let ev = ev.clone();
            thread::spawn(move || ev.set(mode))
        };
        ev.wait(mode);
        notifier.join().unwrap();
        assert_eq!(ev.cell.waiters(), 0, "every announcement withdrawn");
    });
}

#[test]
fn no_lost_wakeup_fast() {
    one_waiter(WakeMode::Fast);
}

#[test]
fn no_lost_wakeup_strict() {
    one_waiter(WakeMode::Strict);
}

/// Two sleepers on one cell: a single notify must wake both (the waiter
/// count is a count, and the wake is a broadcast).
#[test]
fn no_lost_wakeup_two_waiters() {
    model(|| {
        let mode = WakeMode::Strict;
        let ev = Event::new();
        let other = {
            let ev = ev.clone();
            thread::spawn(move || ev.wait(mode))
        };
        let notifier = {
            let ev = ev.clone();
            thread::spawn(move || ev.set(mode))
        };
        ev.wait(mode);
        other.join().unwrap();
        notifier.join().unwrap();
        assert_eq!(ev.cell.waiters(), 0);
    });
}

/// A counting semaphore over one cell, released with `notify_one`: the
/// lock/semaphore side of the protocol.
struct Sem {
    permits: AtomicU32,
    cell: WaitCell,
}

impl Sem {
    fn new() -> Arc<Self> {
        Arc::new(Sem {
            permits: AtomicU32::new(0),
            cell: WaitCell::new(),
        })
    }

    fn try_acquire(&self) -> bool {
        // AcqRel/Acquire: takes a permit published by `release`.
        self.permits
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |p| p.checked_sub(1))
            .is_ok()
    }

    fn acquire(&self) {
        let mode = WakeMode::Strict;
        loop {
            if self.try_acquire() {
                return;
            }
            let ticket = self.cell.prepare(mode);
            if self.try_acquire() {
                self.cell.cancel();
                return;
            }
            self.cell.sleep(ticket, Deadline::now());
            self.cell.cancel();
        }
    }

    fn release(&self) {
        // Release: the permit is published before the wake-up.
        self.permits.fetch_add(1, Ordering::Release);
        self.cell.notify_one(WakeMode::Strict);
    }
}

/// Issue 10 item 15, wake-one: two acquirers sleep, one permit is released,
/// exactly one of them gets through and the other keeps sleeping; a second
/// release lets the other through (a lost wake-up would be a deadlock).
#[test]
fn wake_one_two_sleepers() {
    model(|| {
        let sem = Sem::new();
        let done = Arc::new(AtomicU32::new(0));
        let spawn = |sem: &Arc<Sem>| {
            let (sem, done) = (sem.clone(), done.clone());
            thread::spawn(move || {
                sem.acquire();
                // Release: pairs with the main thread's Acquire loads.
                done.fetch_add(1, Ordering::Release);
            })
        };
        let a = spawn(&sem);
        let b = spawn(&sem);
        sem.release();
        // Acquire: sees the finished acquirer's work.
        while done.load(Ordering::Acquire) == 0 {
            thread::yield_now();
        }
        assert_eq!(done.load(Ordering::Acquire), 1, "one permit, one taker");
        sem.release();
        a.join().unwrap();
        b.join().unwrap();
        assert_eq!(sem.cell.waiters(), 0);
    });
}

/// Issue 10 item 15, dead waiter: `dead` announcements are never withdrawn
/// (their processes died between `prepare` and `cancel`). A live waiter
/// still gets its wake-up, and once it is gone, notifies stop paying a
/// wake call: the first finds nobody asleep and marks WOKEN.
fn dead_waiter(dead: u32) {
    model(move || {
        let sem = Sem::new();
        for _ in 0..dead {
            let _ = sem.cell.prepare(WakeMode::Strict);
        }
        let live = {
            let sem = sem.clone();
            thread::spawn(move || sem.acquire())
        };
        sem.release();
        live.join().unwrap();
        assert_eq!(sem.cell.waiters(), dead, "only the dead stay counted");
        // One more unlock may still pay (the live waiter's announcement
        // cleared WOKEN); after it, none does.
        sem.release();
        let (calls, _) = sem.cell.wake_stats();
        assert!(!sem.cell.wake_pending(), "WOKEN set over the dead count");
        for _ in 0..3 {
            sem.release();
        }
        assert_eq!(sem.cell.wake_stats().0, calls, "no wake call per unlock");
    });
}

#[test]
fn dead_waiter_one() {
    dead_waiter(1);
}

/// Two dead waiters: more announced than `notify_one` wakes, so WOKEN comes
/// from the fallback broadcast after a FUTEX_WAKE that woke nobody.
#[test]
fn dead_waiter_two() {
    dead_waiter(2);
}

/// Set in the child process that runs the broken model.
const BROKEN_CHILD: &str = "SHMRING_LOOM_BROKEN_MODEL";

/// The broken protocol as a model. It runs only in the child process started
/// by [`lost_wakeup_without_recheck_is_caught`]: loom's deadlock panic
/// unwinds through a parked condvar wait, whose guard then panics again in
/// its destructor, which aborts the process, so `#[should_panic]` cannot
/// catch it in-process.
#[test]
fn broken_model_child() {
    if std::env::var_os(BROKEN_CHILD).is_none() {
        return;
    }
    model(|| {
        let mode = WakeMode::Strict;
        let ev = Event::new();
        let notifier = {
            let ev = ev.clone();
            thread::spawn(move || ev.set(mode))
        };
        ev.wait_without_recheck(mode);
        notifier.join().unwrap();
    });
}

/// The models can fail: drop the re-check and loom finds the lost wake-up
/// (the child running [`broken_model_child`] dies reporting a deadlock).
#[test]
fn lost_wakeup_without_recheck_is_caught() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["broken_model_child", "--exact", "--nocapture"])
        .args(["--test-threads", "1"])
        .env(BROKEN_CHILD, "1")
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("re-run this test binary");
    let text = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the broken model passed:\n{text}");
    assert!(
        text.contains("deadlock"),
        "the broken model failed, but not with a deadlock:\n{text}"
    );
}

/// Blocking send and receive through the queue: capacity 1 and three messages,
/// so the sender sleeps on a full queue (`not_full`) and the receiver on an
/// empty one (`not_empty`) in some interleavings; each must be woken.
fn blocking_pair(flavor: Flavor, mode: WakeMode) {
    model(move || {
        let q = HeapQueue::<u64>::new(flavor, 1, mode);
        let tx = q.sender().expect("first sender attaches");
        let rx = q.receiver().expect("first receiver attaches");
        let producer = thread::spawn(move || {
            for v in [1, 2, 3] {
                tx.send_deadline(v, None, Duration::ZERO, &|| {})
                    .expect("a receiver is attached");
            }
        });
        for want in [1, 2, 3] {
            let got = rx.recv_deadline(None, Duration::ZERO, &|| {});
            assert_eq!(got, Ok(Some(want)));
        }
        producer.join().unwrap();
        assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
    });
}

#[test]
fn blocking_pair_spsc_fast() {
    blocking_pair(Flavor::Spsc, WakeMode::Fast);
}

#[test]
fn blocking_pair_spsc_strict() {
    blocking_pair(Flavor::Spsc, WakeMode::Strict);
}

#[test]
fn blocking_pair_mpmc_fast() {
    blocking_pair(Flavor::Mpmc, WakeMode::Fast);
}
