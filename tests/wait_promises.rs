//! Promises of the wait layer across real processes (issue 10, item 15): a
//! waiter that dies announced does not make every later unlock or release
//! pay a FUTEX_WAKE. Children are this test binary re-executed (see
//! `common`); no test asserts a wall-clock bound.
#![cfg(not(loom))]

mod common;

use common::{child_main, kill_child, run, spawn_child, task_asleep, wait_until, Args};
use shmring::__internal::thread_wake_stats;
use shmring::{Lock, Semaphore, Shared, ShmSafe};
use std::sync::atomic::{AtomicI32, Ordering::SeqCst};

#[repr(C)]
struct Blocked {
    /// The thread id of the child's blocking thread (0: not yet known).
    tid: AtomicI32,
    lock: Lock,
    sem: Semaphore,
}

// SAFETY: repr(C); shmring primitives and atomics only.
unsafe impl ShmSafe for Blocked {}

/// Blocks on `lock` or `sem` (argument 1) of the `Blocked` named by
/// argument 0, until killed.
#[test]
#[ignore = "child process"]
fn child_block() {
    child_main("child_block", |a: Args| {
        let b: Shared<Blocked> = Shared::open(a.str(0)).unwrap();
        b.tid.store(nix::unistd::gettid().as_raw(), SeqCst);
        match a.str(1) {
            "lock" => drop(b.lock.lock()),
            _ => b.sem.acquire(),
        }
        panic!("the parent never lets the child through");
    });
}

/// A child blocks (announced on the wait cell) and is SIGKILLed; then the
/// parent unlocks / releases ten times and counts the FUTEX_WAKE calls its
/// thread made. Before the fix every one of them paid a wake for the dead
/// waiter's announcement; now the first finds nobody asleep and marks the
/// cell WOKEN, and the rest skip the system call.
fn dead_waiter_costs_no_wake_per_call(test: &'static str, what: &'static str) {
    run(test, move |ctx| {
        let name = ctx.name("blocked");
        let b = Shared::create(
            &name,
            Blocked {
                tid: AtomicI32::new(0),
                lock: Lock::new(),
                sem: Semaphore::new(0),
            },
        )
        .unwrap();
        let guard = (what == "lock").then(|| b.lock.lock().unwrap());
        let mut child = spawn_child("child_block", &[&name, what]);
        let pid = child.id();
        wait_until("the child to start", || b.tid.load(SeqCst) != 0);
        let tid = b.tid.load(SeqCst);
        wait_until("the child to block", || task_asleep(pid, tid));
        kill_child(&mut child);

        let (before, _) = thread_wake_stats();
        drop(guard);
        for _ in 0..10 {
            match what {
                "lock" => drop(b.lock.lock().unwrap()),
                _ => b.sem.release().unwrap(),
            }
        }
        let (after, _) = thread_wake_stats();
        assert!(
            after - before <= 1,
            "{} wake calls for 10 {what} hand-offs with only a dead waiter",
            after - before
        );
        drop(b);
    });
}

#[test]
fn issue10_dead_lock_waiter_costs_no_wake_per_unlock() {
    dead_waiter_costs_no_wake_per_call("issue10_dead_lock_waiter_costs_no_wake_per_unlock", "lock");
}

#[test]
fn issue10_dead_semaphore_waiter_costs_no_wake_per_release() {
    dead_waiter_costs_no_wake_per_call(
        "issue10_dead_semaphore_waiter_costs_no_wake_per_release",
        "sem",
    );
}
