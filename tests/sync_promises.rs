//! Regression tests of issue 10 ("Keep every promise") for the
//! synchronisation primitives, with real processes:
//!
//! - item 6: a guard belongs to its thread; a forked child that drops an
//!   inherited guard leaves its parent's lock held (that guards are not
//!   `Send` is shown by `compile_fail` doc tests on `LockGuard` and
//!   `RLockGuard`);
//! - item 9: `Event`, `Semaphore`, `Barrier` and `Condition` sleepers see a
//!   state change whose notify never came (its author died in between);
//! - item 10: a lock waiter interrupted by signals more often than a
//!   liveness slice still finds a dead owner;
//! - item 2 (lock owners): an owner that `/proc` hides (`hidepid=2`) is not
//!   called dead.
//!
//! No test asserts a wall-clock bound: on the old code each of these hangs
//! (the watchdog turns that into a failure) or sees the wrong state.
#![cfg(not(loom))]

mod common;

use common::{
    asleep, child_main, gettid, mount_private_proc, run, sleep_forever, spawn_child, wait_killed,
    wait_ok, wait_until, Args, Ctx,
};
use shmring::LIVENESS_SLICE;
use shmring::{
    Barrier, Condition, Event, Lock, LockTimeoutError, OwnerDied, RLock, Semaphore, Shared,
    ShmSafe, TryLockError, Value,
};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::process::Child;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

/// Everything the tests share between processes.
#[repr(C)]
struct Lost {
    lock: Lock,
    cond: Condition,
    event: Event,
    sem: Semaphore,
    barrier: Barrier,
    /// Child → parent: the lock is held.
    held: Event,
    flag: AtomicU64,
}

// SAFETY: repr(C); shmring primitives and atomics only, any bits valid.
unsafe impl ShmSafe for Lost {}

impl Lost {
    fn new() -> Self {
        Lost {
            lock: Lock::new(),
            cond: Condition::new(),
            event: Event::new(),
            sem: Semaphore::new(0),
            barrier: Barrier::new(2),
            held: Event::new(),
            flag: AtomicU64::new(0),
        }
    }
}

/// The id of the calling thread.
/// Ends this process with SIGKILL, as a crash between two steps would.
fn die() -> ! {
    // SAFETY: signals our own process; SIGKILL cannot be caught.
    unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    sleep_forever()
}

// ---------------------------------------------------------------------------
// Item 6: an inherited guard is not the child's to release
// ---------------------------------------------------------------------------

/// Child: holds a `Lock`, an `RLock` (depth 2) and a `Value`'s lock in
/// anonymous segments, forks; the grandchild drops its copies of the guards
/// and checks that every lock is still held by the parent (exit status: a
/// bit per failed check).
#[test]
#[ignore = "child process entry point"]
fn child_fork_drops_guards() {
    child_main("child_fork_drops_guards", |_a: Args| {
        let lock = Shared::anonymous(Lock::new()).unwrap();
        let rlock = Shared::anonymous(RLock::new()).unwrap();
        let value = Value::<u64>::anonymous(0).unwrap();
        let g = lock.lock().unwrap();
        let r1 = rlock.lock().unwrap();
        let r2 = rlock.lock().unwrap();
        let v = value.lock().unwrap();
        // SAFETY: the grandchild only touches the shared segments, reads
        // /proc, and leaves with _exit (no destructors, no harness).
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let (lock, rlock, value) = (&lock, &rlock, &value);
            let bad = catch_unwind(AssertUnwindSafe(move || {
                drop(r2);
                drop(r1);
                drop(v);
                drop(g);
                let mut bad = 0;
                if !lock.is_locked() {
                    bad |= 1;
                }
                if !matches!(lock.try_lock(), Err(TryLockError::WouldBlock)) {
                    bad |= 2;
                }
                if rlock.depth() != 2 || rlock.is_owned_by_current_thread() {
                    bad |= 4;
                }
                if !value.get_lock().is_locked() {
                    bad |= 8;
                }
                bad
            }))
            .unwrap_or(64);
            // SAFETY: ends the forked process at once.
            unsafe { libc::_exit(bad) };
        }
        let mut status = 0;
        // SAFETY: waits for our own child, writing into a local.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "grandchild: status {status:#x} (exit bits: 1 lock released, 2 lock taken, \
             4 rlock depth changed, 8 value lock released, 64 panicked)"
        );
        assert!(lock.is_locked());
        assert!(rlock.is_owned_by_current_thread());
        assert_eq!(rlock.depth(), 2);
        assert!(value.get_lock().is_locked());
        drop(v);
        drop(r2);
        drop(r1);
        drop(g);
        assert!(!lock.is_locked());
        assert_eq!(rlock.depth(), 0);
        assert!(!value.get_lock().is_locked());
    });
}

#[test]
fn issue10_guard_dropped_in_a_fork_child_leaves_the_parents_lock_held() {
    run("sync_promise_fork_guard", |_| {
        let mut child = spawn_child("child_fork_drops_guards", &[]);
        wait_ok(&mut child);
    });
}

// ---------------------------------------------------------------------------
// Item 9: a state change whose notify was lost is seen within a slice
// ---------------------------------------------------------------------------

/// The word at offset 0 of a `#[repr(C)]` primitive: `Event::flag`,
/// `Semaphore::count`. The shared layout is the cross-process contract, so
/// a test may write it as a peer's `set` / `release` does before notifying.
fn word32<T>(p: &T) -> &AtomicU32 {
    // SAFETY: `T` is a repr(C) shmring primitive whose first field is an
    // AtomicU32, which therefore lies at offset 0 and lives as long as `p`.
    unsafe { &*(p as *const T as *const AtomicU32) }
}

/// `Barrier::state` (`generation << 32 | arrived`), at offset 0.
fn word64(b: &Barrier) -> &AtomicU64 {
    // SAFETY: `Barrier` is repr(C) and its first field is an AtomicU64.
    unsafe { &*(b as *const Barrier as *const AtomicU64) }
}

/// Child: makes the state change `what` in `Lost` args[0] without the
/// notify that follows it, and dies (SIGKILL) before it could notify.
#[test]
#[ignore = "child process entry point"]
fn child_change_without_notify() {
    child_main("child_change_without_notify", |a: Args| {
        let l: Shared<Lost> = Shared::open(a.str(0)).unwrap();
        match a.str(1) {
            // `Event::set` stores the flag, then notifies.
            "event" => word32(&l.event).store(1, SeqCst),
            // `Semaphore::release` adds a permit, then notifies.
            "sem" => {
                word32(&l.sem).fetch_add(1, SeqCst);
            }
            // The last arrival starts the next generation, then notifies.
            "barrier" => {
                let s = word64(&l.barrier).load(SeqCst);
                assert_eq!(s & 0xffff_ffff, 1, "the parent has arrived");
                word64(&l.barrier).store(((s >> 32) + 1) << 32, SeqCst);
            }
            // The user's state, changed under the lock; the process dies
            // before `notify_all`.
            "cond" => {
                let g = l.lock.lock().unwrap();
                l.flag.store(1, SeqCst);
                drop(g);
            }
            w => panic!("unknown change {w:?}"),
        }
        die();
    });
}

/// Runs `block` (a wait on `Lost`) on this thread while another starts a
/// `child_change_without_notify` for `what` once this thread sleeps.
fn lost_notify(ctx: &Ctx, what: &'static str, block: impl FnOnce(&Lost)) {
    let name = ctx.name("lost");
    let l = Shared::create(&name, Lost::new()).unwrap();
    let tid = gettid();
    let seg = name.to_string();
    let changer = thread::spawn(move || {
        wait_until("the waiter to sleep", || asleep(tid));
        let mut child = spawn_child("child_change_without_notify", &[&seg, what]);
        wait_killed(&mut child);
    });
    block(&l);
    changer.join().unwrap();
}

#[test]
fn issue10_event_waiter_sees_a_set_whose_notify_was_lost() {
    run("sync_promise_lost_event", |ctx| {
        lost_notify(ctx, "event", |l| {
            l.event.wait();
            assert!(l.event.is_set());
        });
    });
}

#[test]
fn issue10_semaphore_waiter_sees_a_release_whose_notify_was_lost() {
    run("sync_promise_lost_sem", |ctx| {
        lost_notify(ctx, "sem", |l| {
            l.sem.acquire();
            assert_eq!(l.sem.value(), 0);
        });
    });
}

#[test]
fn issue10_barrier_waiter_sees_a_trip_whose_notify_was_lost() {
    run("sync_promise_lost_barrier", |ctx| {
        lost_notify(ctx, "barrier", |l| {
            let r = l.barrier.wait().expect("the barrier tripped");
            assert!(!r.is_leader());
            assert_eq!(r.generation(), 0);
        });
    });
}

#[test]
fn issue10_condition_waiter_sees_a_change_whose_notify_was_lost() {
    run("sync_promise_lost_cond", |ctx| {
        let name = ctx.name("lost");
        let l = Shared::create(&name, Lost::new()).unwrap();
        // The child can take the lock (and change the flag) only once we
        // wait on the condition: the change comes while we sleep.
        let g = l.lock.lock().unwrap();
        let mut child = spawn_child("child_change_without_notify", &[&name, "cond"]);
        let g = match l.cond.wait_while(g, || l.flag.load(SeqCst) == 0) {
            Ok(g) => g,
            Err(OwnerDied(_)) => panic!("the child released the lock before dying"),
        };
        assert_eq!(l.flag.load(SeqCst), 1);
        wait_killed(&mut child);
        // The timed form re-checks every slice too, long before its timeout.
        l.flag.store(0, SeqCst);
        let mut child = spawn_child("child_change_without_notify", &[&name, "cond"]);
        let (g, r) = l
            .cond
            .wait_while_timeout(g, Duration::from_secs(3600), || l.flag.load(SeqCst) == 0)
            .unwrap_or_else(|_| panic!("the child released the lock before dying"));
        assert!(!r.timed_out());
        assert_eq!(l.flag.load(SeqCst), 1);
        drop(g);
        wait_killed(&mut child);
    });
}

// ---------------------------------------------------------------------------
// Item 10: signals every few milliseconds do not hide a dead owner
// ---------------------------------------------------------------------------

extern "C" fn on_alarm(_: libc::c_int) {}

/// Installs a no-op SIGALRM handler without `SA_RESTART`, so that a signal
/// makes a futex wait return `EINTR`. Left installed: a late signal must
/// still find a handler (the default action would end the process).
fn install_alarm_handler() {
    // SAFETY: an all-zero sigaction is valid (no flags, empty mask).
    let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
    sa.sa_sigaction = on_alarm as extern "C" fn(libc::c_int) as libc::sighandler_t;
    sa.sa_flags = 0;
    // SAFETY: `sa` is a valid sigaction with an async-signal-safe (empty)
    // handler; the old action is not asked for.
    let r = unsafe { libc::sigaction(libc::SIGALRM, &sa, std::ptr::null_mut()) };
    assert_eq!(r, 0, "sigaction");
}

/// A kernel timer that sends SIGALRM to the calling thread every
/// millisecond (a thread-directed `setitimer`: other threads of the test
/// binary are left alone). Deleted on drop.
struct AlarmStorm(libc::timer_t);

impl AlarmStorm {
    fn start() -> Self {
        // SAFETY: an all-zero sigevent is a valid starting point.
        let mut sev: libc::sigevent = unsafe { std::mem::zeroed() };
        sev.sigev_notify = libc::SIGEV_THREAD_ID;
        sev.sigev_signo = libc::SIGALRM;
        sev.sigev_notify_thread_id = gettid();
        let mut timer: libc::timer_t = std::ptr::null_mut();
        // SAFETY: valid pointers to a sigevent naming a thread of this
        // process and to the timer id to fill in.
        let r = unsafe { libc::timer_create(libc::CLOCK_MONOTONIC, &mut sev, &mut timer) };
        assert_eq!(r, 0, "timer_create");
        let ms = libc::timespec {
            tv_sec: 0,
            tv_nsec: 1_000_000,
        };
        let spec = libc::itimerspec {
            it_interval: ms,
            it_value: ms,
        };
        // SAFETY: `timer` was just created; `spec` is valid.
        let r = unsafe { libc::timer_settime(timer, 0, &spec, std::ptr::null_mut()) };
        assert_eq!(r, 0, "timer_settime");
        AlarmStorm(timer)
    }
}

impl Drop for AlarmStorm {
    fn drop(&mut self) {
        // SAFETY: deletes the timer created in `start`, once.
        unsafe { libc::timer_delete(self.0) };
    }
}

/// `SCHED_FIFO` for the calling thread while alive, if permitted.
struct RealTime(bool);

impl RealTime {
    fn try_enter() -> Self {
        let p = libc::sched_param { sched_priority: 1 };
        // SAFETY: changes the calling thread's policy; `p` is valid.
        RealTime(unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &p) } == 0)
    }
}

impl Drop for RealTime {
    fn drop(&mut self) {
        if self.0 {
            let p = libc::sched_param { sched_priority: 0 };
            // SAFETY: as in `try_enter`, back to the normal policy.
            unsafe { libc::sched_setscheduler(0, libc::SCHED_OTHER, &p) };
        }
    }
}

/// Child: takes the lock of `Lost` args[0], sets `held`, hangs.
#[test]
#[ignore = "child process entry point"]
fn child_hold_lock() {
    child_main("child_hold_lock", |a: Args| {
        let l: Shared<Lost> = Shared::open(a.str(0)).unwrap();
        std::mem::forget(l.lock.lock().unwrap());
        l.held.set();
        sleep_forever();
    });
}

#[test]
fn issue10_lock_waiter_interrupted_every_millisecond_finds_a_dead_owner() {
    run("sync_promise_sigstorm", |ctx| {
        install_alarm_handler();
        let name = ctx.name("lost");
        let l = Shared::create(&name, Lost::new()).unwrap();
        let mut child = spawn_child("child_hold_lock", &[&name]);
        while !l.held.wait_timeout(Duration::from_millis(50)) {
            assert!(child.try_wait().unwrap().is_none(), "holder exited");
        }
        let tid = gettid();
        let killed = Arc::new(AtomicBool::new(false));
        let killer = {
            let killed = killed.clone();
            thread::spawn(move || -> Child {
                wait_until("the waiter to sleep", || asleep(tid));
                // A few slices' worth of signals against the live owner,
                // then the owner dies mid-storm.
                thread::sleep(LIVENESS_SLICE * 5);
                killed.store(true, SeqCst);
                child.kill().expect("kill the holder");
                child
            })
        };
        let r = {
            // Every sleep of this wait ends in EINTR long before its slice
            // does. Real-time scheduling (where permitted) keeps the
            // waiter from missing signals while it waits for a CPU: on a
            // loaded machine a 20 ms run-queue delay lets a slice time
            // out, which the old code needed to look at the owner at all.
            let _rt = RealTime::try_enter();
            let _storm = AlarmStorm::start();
            l.lock.lock()
        };
        let mut child = killer.join().unwrap();
        wait_killed(&mut child);
        assert!(killed.load(SeqCst), "returned before the owner died");
        match r {
            Err(OwnerDied(g)) => drop(g),
            Ok(_) => panic!("a dead owner's lock taken as if free"),
        }
        drop(l.lock.try_lock().expect("clean after recovery"));
    });
}

// ---------------------------------------------------------------------------
// Item 2 (lock owners): an owner that /proc hides is alive
// ---------------------------------------------------------------------------

/// Grandchild exit statuses of `child_hidden_owner`.
const HIDDEN_OK: i32 = 0;
const HIDDEN_SKIP_NS: i32 = 10;
const HIDDEN_SKIP_VISIBLE: i32 = 11;
const HIDDEN_CALLED_DEAD: i32 = 3;
const HIDDEN_TOOK_IT: i32 = 4;
const HIDDEN_PANICKED: i32 = 64;

/// In a forked, single-threaded grandchild: a private mount namespace with
/// `/proc` mounted `hidepid=2`, then the identity of `nobody`, from which
/// the owner (a root thread) is invisible in `/proc`. Never returns.
fn hidden_owner_grandchild(lock: &Lock, owner_tid: i32) -> ! {
    let code = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: plain system calls on this single-threaded process; they
        // change only this process's mount namespace and credentials.
        let ready = unsafe { libc::unshare(libc::CLONE_NEWNS) == 0 }
            && mount_private_proc(Some(c"hidepid=2"))
            // SAFETY: as above.
            && unsafe {
                libc::setgroups(0, std::ptr::null()) == 0                && libc::setgroups(0, std::ptr::null()) == 0
                    && libc::setresgid(65534, 65534, 65534) == 0
                    && libc::setresuid(65534, 65534, 65534) == 0
            };
        if !ready {
            return HIDDEN_SKIP_NS;
        }
        let hidden = !std::path::Path::new(&format!("/proc/{owner_tid}")).exists()
            && std::path::Path::new("/proc/self/stat").exists();
        if !hidden {
            return HIDDEN_SKIP_VISIBLE;
        }
        match lock.try_lock() {
            Err(TryLockError::WouldBlock) => {}
            Err(TryLockError::OwnerDied(_)) => return HIDDEN_CALLED_DEAD,
            Ok(_) => return HIDDEN_TOOK_IT,
        }
        match lock.lock_timeout(LIVENESS_SLICE * 3) {
            Err(LockTimeoutError::Timeout) => HIDDEN_OK,
            Err(LockTimeoutError::OwnerDied(_)) => HIDDEN_CALLED_DEAD,
            Ok(_) => HIDDEN_TOOK_IT,
        }
    }))
    .unwrap_or(HIDDEN_PANICKED);
    // SAFETY: ends the forked process at once.
    unsafe { libc::_exit(code) }
}

/// Child: holds an anonymous `Lock` and forks a grandchild that, as another
/// user under `hidepid=2`, must find the lock held by a live owner. Skips
/// (passes, saying so) where namespaces or the mount are not permitted.
#[test]
#[ignore = "child process entry point"]
fn child_hidden_owner() {
    child_main("child_hidden_owner", |_a: Args| {
        let lock = Shared::anonymous(Lock::new()).unwrap();
        let g = lock.lock().unwrap();
        let tid = gettid();
        // SAFETY: the grandchild makes plain system calls, touches the
        // shared segment, and leaves with _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            hidden_owner_grandchild(&lock, tid);
        }
        let mut status = 0;
        // SAFETY: waits for our own child, writing into a local.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(libc::WIFEXITED(status), "grandchild: status {status:#x}");
        match libc::WEXITSTATUS(status) {
            HIDDEN_OK => {}
            HIDDEN_SKIP_NS => println!("skipped: no private mount namespace / proc mount here"),
            HIDDEN_SKIP_VISIBLE => println!("skipped: hidepid=2 did not hide the owner"),
            HIDDEN_CALLED_DEAD => panic!("a live owner hidden by hidepid was called dead"),
            HIDDEN_TOOK_IT => panic!("a live owner's lock was taken as if free"),
            s => panic!("grandchild exited with {s}"),
        }
        assert!(lock.is_locked());
        drop(g);
    });
}

#[test]
fn issue10_lock_owner_hidden_by_hidepid_is_alive() {
    run("sync_promise_hidepid", |_| {
        let mut child = spawn_child("child_hidden_owner", &[]);
        wait_ok(&mut child);
    });
}
