//! The shared-state layer across real processes: `Lock` / `RLock` (owner
//! death, paused owners, re-entry), `Condition`, `Event`, `Semaphore`,
//! `Barrier`, `Shared<T>` with user structs, and `Value` / `Array` with their
//! locks and atomic operations. Children are this test binary re-executed
//! (see `common`); no test asserts a wall-clock bound.
#![cfg(not(loom))]

mod common;

use common::{
    asleep, child_main, gettid, kill_child, run, sleep_forever, spawn_child, wait_killed, wait_ok,
    wait_until, Args, Ctx, ShmName,
};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use shmring::LIVENESS_SLICE;
use shmring::{
    Array, Barrier, BarrierError, Condition, Event, Flavor, Kind, Lock, LockTimeoutError,
    OwnerDied, Queue, RLock, SegmentError, Semaphore, SemaphoreOverflow, Shared, ShmSafe,
    TryLockError, Value,
};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::process::Child;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::SeqCst};
use std::thread;
use std::time::Duration;

// ---------------------------------------------------------------------------
// Shared structs
// ---------------------------------------------------------------------------

/// Start gate, hand-shake events and report counters of a test's processes.
#[repr(C)]
struct Ctl {
    /// Parent → children: start.
    go: Event,
    /// Child → parent: the lock(s) are held.
    held: Event,
    /// Parent → child: release now.
    release: Event,
    /// Children that reached the start gate.
    ready: AtomicU32,
    /// Children that passed what they were blocked on.
    done: AtomicU32,
    /// A count children report into.
    count: AtomicU64,
    /// Free use.
    flag: AtomicU64,
}

// SAFETY: repr(C); shmring primitives and atomics only, no pointers, any
// bits valid.
unsafe impl ShmSafe for Ctl {}

impl Ctl {
    fn new() -> Self {
        Ctl {
            go: Event::new(),
            held: Event::new(),
            release: Event::new(),
            ready: AtomicU32::new(0),
            done: AtomicU32::new(0),
            count: AtomicU64::new(0),
            flag: AtomicU64::new(0),
        }
    }
}

/// A table of locks and a condition, as a user would embed them.
#[repr(C)]
struct Locks {
    lock: Lock,
    rlock: RLock,
    cond: Condition,
    flag: AtomicU64,
    /// What a child saw, reported to the parent.
    seen: AtomicU64,
}

// SAFETY: repr(C); shmring primitives and atomics only.
unsafe impl ShmSafe for Locks {}

impl Locks {
    fn new() -> Self {
        Locks {
            lock: Lock::new(),
            rlock: RLock::new(),
            cond: Condition::new(),
            flag: AtomicU64::new(0),
            seen: AtomicU64::new(0),
        }
    }
}

const PC_SLOTS: u64 = 8;
const PC_PRODUCERS: u64 = 2;
const PC_PER_PRODUCER: u64 = 5_000;
const PC_TOTAL: u64 = PC_PRODUCERS * PC_PER_PRODUCER;

/// A bounded FIFO of item numbers guarded by a lock and two conditions.
/// Everything but the atomics' own atomicity is protected by `lock`.
#[repr(C)]
struct ProdCons {
    lock: Lock,
    not_empty: Condition,
    not_full: Condition,
    items: [AtomicU64; PC_SLOTS as usize],
    /// Next slot to pop.
    head: AtomicU64,
    /// Next slot to push.
    tail: AtomicU64,
    /// Items in the ring.
    count: AtomicU64,
    /// The most items ever in the ring.
    max_count: AtomicU64,
    /// Items taken out so far.
    taken: AtomicU64,
    /// How often each item was taken.
    seen: [AtomicU32; PC_TOTAL as usize],
    /// FIFO-order violations seen by consumers.
    disorder: AtomicU64,
}

// SAFETY: repr(C); shmring primitives and atomics only.
unsafe impl ShmSafe for ProdCons {}

/// Processes in and out of a semaphore-guarded section.
#[repr(C)]
struct SemTest {
    sem: Semaphore,
    permits: AtomicU32,
    inside: AtomicU32,
    max_inside: AtomicU32,
    violations: AtomicU64,
    passes: AtomicU64,
}

// SAFETY: repr(C); shmring primitives and atomics only.
unsafe impl ShmSafe for SemTest {}

const BARRIER_PARTIES: usize = 4;

/// A barrier and what its parties wrote around it.
#[repr(C)]
struct BarrierTest {
    barrier: Barrier,
    /// Round each party has reached.
    slots: [AtomicU64; BARRIER_PARTIES],
    leaders: AtomicU64,
    /// A party that found another one behind the round it passed.
    early: AtomicU64,
}

// SAFETY: repr(C); shmring primitives and atomics only.
unsafe impl ShmSafe for BarrierTest {}

fn open<T: ShmSafe>(name: &str) -> Shared<T> {
    Shared::open(name).unwrap_or_else(|e| panic!("open {name}: {e}"))
}

/// The id of the calling thread.
/// On another thread: waits until thread `tid` (the caller, about to block)
/// is asleep, lets it make a few liveness checks against the live child,
/// then SIGKILLs `child`. Join to get the child back.
fn kill_when_blocked(mut child: Child, tid: i32) -> thread::JoinHandle<Child> {
    thread::spawn(move || {
        wait_until("the parent to block", || asleep(tid));
        thread::sleep(LIVENESS_SLICE * 3);
        child.kill().expect("kill child");
        child
    })
}

/// Waits for `ev`, failing fast (with the child's output) if `child` exits
/// first.
fn wait_event_from(ev: &Event, child: &mut Child, what: &str) {
    while !ev.wait_timeout(Duration::from_millis(50)) {
        if child.try_wait().expect("try_wait").is_some() {
            wait_ok(child);
            panic!("child exited before {what}");
        }
    }
}

// ---------------------------------------------------------------------------
// A fixture: a control block, a lock table, a Value and an Array
// ---------------------------------------------------------------------------

struct Fixture {
    ctl: Shared<Ctl>,
    locks: Shared<Locks>,
    value: Value<i64>,
    array: Array<u32>,
    // Dropped after the segments, which remove their names themselves.
    names: [ShmName; 4],
}

impl Fixture {
    fn new(ctx: &Ctx) -> Self {
        let names = [
            ctx.name("ctl"),
            ctx.name("locks"),
            ctx.name("value"),
            ctx.name("array"),
        ];
        Fixture {
            ctl: Shared::create(&names[0], Ctl::new()).unwrap(),
            locks: Shared::create(&names[1], Locks::new()).unwrap(),
            value: Value::create(&names[2], 0).unwrap(),
            array: Array::create(&names[3], 4).unwrap(),
            names,
        }
    }

    /// Starts a `child_hold` that takes the locks named in `kinds`
    /// (comma-separated: `lock`, `rlock3`, `value`, `array`, `lockthread`)
    /// and then, per `then`, waits for `release` or hangs; returns once it
    /// holds them.
    fn hold(&self, kinds: &str, then: &str) -> Child {
        self.ctl.held.clear();
        self.ctl.release.clear();
        let n = &self.names;
        let mut child = spawn_child("child_hold", &[&n[0], then, kinds, &n[1], &n[2], &n[3]]);
        wait_event_from(&self.ctl.held, &mut child, "holding its locks");
        child
    }

    /// Starts a `child_probe` that checks from another process that `kind`
    /// is `held` (at RLock depth `depth`) or `free`, and waits for it.
    fn probe(&self, kind: &str, expect: &str, depth: u32) {
        let n = &self.names;
        let mut child = spawn_child(
            "child_probe",
            &[kind, expect, &depth.to_string(), &n[1], &n[2], &n[3]],
        );
        wait_ok(&mut child);
    }
}

/// Child: opens a fixture (args: ctl, then, kinds, locks, value, array),
/// takes the locks in `kinds`, sets `held`, then waits for `release` (and
/// lets go) or hangs until killed.
#[test]
#[ignore = "child process entry point"]
fn child_hold() {
    child_main("child_hold", |a: Args| {
        let ctl: Shared<Ctl> = open(a.str(0));
        let then = a.str(1).to_string();
        let kinds: Vec<&str> = a.str(2).split(',').collect();
        let locks: Shared<Locks> = open(a.str(3));
        let value = Value::<i64>::open(a.str(4)).unwrap();
        let array = Array::<u32>::open(a.str(5)).unwrap();
        let has = |k: &str| kinds.contains(&k);
        let _lock = has("lock").then(|| locks.lock.lock().expect("lock: a clean take"));
        let _rlock = has("rlock3").then(|| {
            let g1 = locks.rlock.lock().unwrap();
            let g2 = locks.rlock.lock().unwrap();
            let g3 = locks.rlock.try_lock().unwrap();
            assert_eq!(locks.rlock.depth(), 3);
            (g1, g2, g3)
        });
        let _value = has("value").then(|| {
            let g = value.lock().unwrap();
            g.set(42); // a half-done update a recoverer must see
            g
        });
        let _array = has("array").then(|| {
            let g = array.lock().unwrap();
            g.set(0, 7);
            g
        });
        if has("lockthread") {
            // A thread takes the lock and ends without releasing it: its
            // owner is dead although this process lives on.
            let l = locks.clone();
            thread::spawn(move || std::mem::forget(l.lock.lock().unwrap()))
                .join()
                .unwrap();
            assert!(locks.lock.is_locked());
        }
        ctl.held.set();
        match then.as_str() {
            "release" => ctl.release.wait(),
            "hang" => sleep_forever(),
            t => panic!("unknown then {t:?}"),
        }
    });
}

/// Child: checks from this process that lock `kind` of a fixture (args:
/// kind, expect, depth, locks, value, array) is `held` by someone else or
/// `free` (then takes and releases it).
#[test]
#[ignore = "child process entry point"]
fn child_probe() {
    child_main("child_probe", |a: Args| {
        let (kind, expect, depth) = (a.str(0), a.str(1), a.get::<u32>(2));
        let locks: Shared<Locks> = open(a.str(3));
        let value = Value::<i64>::open(a.str(4)).unwrap();
        let array = Array::<u32>::open(a.str(5)).unwrap();
        let short = Duration::from_millis(30);
        match (kind, expect) {
            ("lock", "held") => {
                assert!(locks.lock.is_locked());
                assert!(matches!(
                    locks.lock.try_lock(),
                    Err(TryLockError::WouldBlock)
                ));
                assert!(matches!(
                    locks.lock.lock_timeout(short),
                    Err(LockTimeoutError::Timeout)
                ));
            }
            ("rlock", "held") => {
                assert!(!locks.rlock.is_owned_by_current_thread());
                assert_eq!(
                    locks.rlock.depth(),
                    depth,
                    "the owner's depth, seen from here"
                );
                assert!(matches!(
                    locks.rlock.try_lock(),
                    Err(TryLockError::WouldBlock)
                ));
                assert!(matches!(
                    locks.rlock.lock_timeout(short),
                    Err(LockTimeoutError::Timeout)
                ));
            }
            ("value", "held") => {
                assert!(matches!(value.try_lock(), Err(TryLockError::WouldBlock)));
                assert!(matches!(
                    value.lock_timeout(short),
                    Err(LockTimeoutError::Timeout)
                ));
            }
            ("array", "held") => {
                assert!(matches!(array.try_lock(), Err(TryLockError::WouldBlock)));
                assert!(matches!(
                    array.lock_timeout(short),
                    Err(LockTimeoutError::Timeout)
                ));
            }
            ("lock", "free") => drop(locks.lock.try_lock().expect("a free lock")),
            ("rlock", "free") => {
                assert_eq!(locks.rlock.depth(), 0);
                let g = locks.rlock.try_lock().expect("a free rlock");
                assert_eq!(locks.rlock.depth(), 1);
                assert!(locks.rlock.is_owned_by_current_thread());
                drop(g);
                assert_eq!(locks.rlock.depth(), 0);
            }
            ("value", "free") => drop(value.try_lock().expect("a free value lock")),
            ("array", "free") => drop(array.try_lock().expect("a free array lock")),
            k => panic!("unknown probe {k:?}"),
        }
    });
}

// ---------------------------------------------------------------------------
// 1. Counters: locked, racy, atomic
// ---------------------------------------------------------------------------

const INCR_PROCS: u32 = 5;
const INCR_EACH: i64 = 100_000;

/// Child: opens `Value<i64>` args[0] and control block args[1], waits at the
/// gate, then increments args[3] times in mode args[2].
#[test]
#[ignore = "child process entry point"]
fn child_incr() {
    child_main("child_incr", |a: Args| {
        let v = Value::<i64>::open(a.str(0)).unwrap();
        let ctl: Shared<Ctl> = open(a.str(1));
        let n: i64 = a.get(3);
        ctl.ready.fetch_add(1, SeqCst);
        ctl.go.wait();
        match a.str(2) {
            "locked" => {
                for i in 0..n {
                    if i % 2 == 0 {
                        v.lock().unwrap().update(|x| x + 1);
                    } else {
                        // get_lock() is the lock lock() takes.
                        let _g = v.get_lock().lock().unwrap();
                        v.store(v.load() + 1);
                    }
                }
            }
            "racy" => {
                for _ in 0..n {
                    v.store(v.load() + 1);
                }
            }
            "atomic" => {
                for _ in 0..n {
                    v.fetch_add(1);
                }
            }
            "cas" => {
                for _ in 0..n {
                    let mut cur = v.load_atomic();
                    while let Err(now) = v.compare_exchange(cur, cur + 1) {
                        cur = now;
                    }
                }
            }
            m => panic!("unknown mode {m:?}"),
        }
    });
}

#[test]
fn value_counter_across_five_processes() {
    run("sync_incr", |ctx| {
        for mode in ["locked", "racy", "atomic", "cas"] {
            let vname = ctx.name("v");
            let cname = ctx.name("ctl");
            let v = Value::<i64>::create(&vname, 0).unwrap();
            let ctl = Shared::create(&cname, Ctl::new()).unwrap();
            let n = INCR_EACH.to_string();
            let mut kids: Vec<Child> = (0..INCR_PROCS)
                .map(|_| spawn_child("child_incr", &[&vname, &cname, mode, &n]))
                .collect();
            wait_until("the incrementers", || ctl.ready.load(SeqCst) == INCR_PROCS);
            ctl.go.set();
            for k in &mut kids {
                wait_ok(k);
            }
            let total = v.load_atomic();
            let all = INCR_EACH * INCR_PROCS as i64;
            if mode == "racy" {
                // Lost updates are allowed and can be arbitrarily many: a
                // process that read an old value and was preempted writes it
                // back over everyone else's work (one process's writes need
                // not rise). Every write is some load + 1 and nothing counts
                // down, so the total is at least 1 and at most every step.
                assert!(
                    (1..=all).contains(&total),
                    "racy total {total} outside [1, {all}]"
                );
            } else {
                assert_eq!(total, all, "{mode}: every increment counted");
            }
            assert_eq!(v.lock().unwrap().get(), total);
            assert!(!v.get_lock().is_locked());
        }
    });
}

#[test]
fn value_atomic_operations() {
    run("sync_value_atomics", |ctx| {
        let name = ctx.name("v");
        let v = Value::<u32>::create(&name, 10).unwrap();
        let seen = Value::<u32>::open(&name).unwrap();
        assert_eq!(v.fetch_add(5), 10);
        assert_eq!(seen.fetch_sub(3), 15);
        assert_eq!(v.swap(100), 12);
        assert_eq!(seen.compare_exchange(99, 1), Err(100));
        assert_eq!(seen.compare_exchange(100, 1), Ok(100));
        assert_eq!(v.fetch_max(50), 1);
        assert_eq!(v.fetch_max(20), 50);
        assert_eq!(v.fetch_min(30), 50);
        assert_eq!(v.fetch_min(40), 30);
        assert_eq!(seen.load_atomic(), 30);
        assert_eq!(seen.load(), 30);
        assert_eq!(v.fetch_add(u32::MAX), 30, "wraps");
        assert_eq!(v.load_atomic(), 29);
        v.store(7);
        assert_eq!(seen.lock().unwrap().get(), 7);
        {
            let g = seen.try_lock().unwrap();
            g.update(|x| x + 1);
            assert!(matches!(v.try_lock(), Err(TryLockError::WouldBlock)));
        }
        assert_eq!(v.load(), 8);
        // A Value of a Pod struct: copied whole under its lock.
        let a = Value::<[u64; 3]>::anonymous([1, 2, 3]).unwrap();
        a.lock().unwrap().update(|mut x| {
            x[1] = 20;
            x
        });
        assert_eq!(a.load(), [1, 20, 3]);
        a.store([4, 5, 6]);
        assert_eq!(
            a.lock_timeout(Duration::from_secs(1)).unwrap().get(),
            [4, 5, 6]
        );
        let b = a.clone();
        assert_eq!(b.load(), [4, 5, 6]);
    });
}

// ---------------------------------------------------------------------------
// 2. Event
// ---------------------------------------------------------------------------

/// Child: checks that the clear `go` event times out, reports ready, blocks
/// in `go.wait()`, then reports done.
#[test]
#[ignore = "child process entry point"]
fn child_event_waiter() {
    child_main("child_event_waiter", |a: Args| {
        let ctl: Shared<Ctl> = open(a.str(0));
        assert!(!ctl.go.wait_timeout(Duration::from_millis(20)));
        assert!(!ctl.go.is_set());
        ctl.ready.fetch_add(1, SeqCst);
        ctl.go.wait();
        assert!(ctl.go.is_set());
        assert!(ctl.go.wait_timeout(Duration::ZERO));
        ctl.done.fetch_add(1, SeqCst);
    });
}

/// Child: sets the `go` event of `Ctl` args[0] after a moment.
#[test]
#[ignore = "child process entry point"]
fn child_event_setter() {
    child_main("child_event_setter", |a: Args| {
        let ctl: Shared<Ctl> = open(a.str(0));
        thread::sleep(Duration::from_millis(30));
        ctl.go.set();
    });
}

#[test]
fn event_wakes_every_waiting_process() {
    run("sync_event", |ctx| {
        let cname = ctx.name("ctl");
        let ctl = Shared::create(&cname, Ctl::new()).unwrap();
        let mut kids: Vec<Child> = (0..4)
            .map(|_| spawn_child("child_event_waiter", &[&cname]))
            .collect();
        wait_until("four waiters", || ctl.ready.load(SeqCst) == 4);
        thread::sleep(Duration::from_millis(50));
        assert_eq!(ctl.done.load(SeqCst), 0, "nobody passes a clear event");
        ctl.go.set();
        for k in &mut kids {
            wait_ok(k);
        }
        assert_eq!(ctl.done.load(SeqCst), 4, "every waiter returned");

        // Set stays set; clear clears.
        assert!(ctl.go.is_set());
        assert!(ctl.go.wait_timeout(Duration::from_millis(1)));
        ctl.go.wait();
        ctl.go.set();
        assert!(ctl.go.is_set());
        ctl.go.clear();
        assert!(!ctl.go.is_set());
        assert!(!ctl.go.wait_timeout(Duration::from_millis(30)));
        ctl.go.clear();
        assert!(!ctl.go.is_set());

        // Another process sets it while we block in wait_timeout.
        let mut setter = spawn_child("child_event_setter", &[&cname]);
        assert!(ctl.go.wait_timeout(Duration::from_secs(60)));
        wait_ok(&mut setter);
        assert!(ctl.go.is_set());
    });
}

// ---------------------------------------------------------------------------
// 3. Condition
// ---------------------------------------------------------------------------

/// Child: producer args[1] of `ProdCons` args[0]: pushes its items.
#[test]
#[ignore = "child process entry point"]
fn child_producer() {
    child_main("child_producer", |a: Args| {
        let pc: Shared<ProdCons> = open(a.str(0));
        let p: u64 = a.get(1);
        for i in 0..PC_PER_PRODUCER {
            let item = p * PC_PER_PRODUCER + i;
            let full = || pc.count.load(SeqCst) == PC_SLOTS;
            let g = pc.lock.lock().unwrap();
            let g = if p.is_multiple_of(2) {
                pc.not_full.wait_while(g, full).unwrap()
            } else {
                // Short timed waits, looping: timing out is fine here.
                let mut g = g;
                while full() {
                    g = pc
                        .not_full
                        .wait_timeout(g, Duration::from_millis(5))
                        .unwrap()
                        .0;
                }
                g
            };
            let tail = pc.tail.load(SeqCst);
            pc.items[(tail % PC_SLOTS) as usize].store(item, SeqCst);
            pc.tail.store(tail + 1, SeqCst);
            let c = pc.count.load(SeqCst) + 1;
            pc.count.store(c, SeqCst);
            pc.max_count.fetch_max(c, SeqCst);
            // Notify with the lock held.
            pc.not_empty.notify_one();
            drop(g);
        }
    });
}

/// Child: consumer args[1] of `ProdCons` args[0]: pops until every item
/// has been taken by someone.
#[test]
#[ignore = "child process entry point"]
fn child_consumer() {
    child_main("child_consumer", |a: Args| {
        let pc: Shared<ProdCons> = open(a.str(0));
        let me: u64 = a.get(1);
        let mut last = [None::<u64>; PC_PRODUCERS as usize];
        loop {
            let empty = || pc.count.load(SeqCst) == 0 && pc.taken.load(SeqCst) < PC_TOTAL;
            let g = pc.lock.lock().unwrap();
            let g = if me.is_multiple_of(2) {
                pc.not_empty.wait_while(g, empty).unwrap()
            } else {
                let mut g = g;
                while empty() {
                    g = pc.not_empty.wait(g).unwrap();
                }
                g
            };
            if pc.count.load(SeqCst) == 0 {
                break;
            }
            let head = pc.head.load(SeqCst);
            let item = pc.items[(head % PC_SLOTS) as usize].load(SeqCst);
            pc.head.store(head + 1, SeqCst);
            pc.count.fetch_sub(1, SeqCst);
            let taken = pc.taken.fetch_add(1, SeqCst) + 1;
            drop(g);
            // Notify after unlocking.
            pc.not_full.notify_one();
            if taken == PC_TOTAL {
                pc.not_empty.notify_all(); // the other consumers may leave
            }
            pc.seen[item as usize].fetch_add(1, SeqCst);
            // One FIFO: one consumer sees each producer's items in order.
            let p = (item / PC_PER_PRODUCER) as usize;
            if last[p].is_some_and(|l| l >= item) {
                pc.disorder.fetch_add(1, SeqCst);
            }
            last[p] = Some(item);
        }
    });
}

#[test]
fn condition_producers_consumers_across_processes() {
    run("sync_prodcons", |ctx| {
        let name = ctx.name("pc");
        let pc = Shared::create(
            &name,
            ProdCons {
                lock: Lock::new(),
                not_empty: Condition::new(),
                not_full: Condition::new(),
                items: Default::default(),
                head: AtomicU64::new(0),
                tail: AtomicU64::new(0),
                count: AtomicU64::new(0),
                max_count: AtomicU64::new(0),
                taken: AtomicU64::new(0),
                seen: std::array::from_fn(|_| AtomicU32::new(0)),
                disorder: AtomicU64::new(0),
            },
        )
        .unwrap();
        let mut kids = Vec::new();
        for c in 0..2 {
            kids.push(spawn_child("child_consumer", &[&name, &c.to_string()]));
        }
        for p in 0..PC_PRODUCERS {
            kids.push(spawn_child("child_producer", &[&name, &p.to_string()]));
        }
        for k in &mut kids {
            wait_ok(k);
        }
        let _g = pc.lock.lock().unwrap();
        assert_eq!(pc.taken.load(SeqCst), PC_TOTAL);
        assert_eq!(pc.count.load(SeqCst), 0);
        assert_eq!(pc.head.load(SeqCst), PC_TOTAL);
        assert_eq!(pc.tail.load(SeqCst), PC_TOTAL);
        assert!(pc.max_count.load(SeqCst) <= PC_SLOTS);
        assert_eq!(pc.disorder.load(SeqCst), 0, "FIFO order per producer");
        let wrong: Vec<(usize, u32)> = pc
            .seen
            .iter()
            .map(|s| s.load(SeqCst))
            .enumerate()
            .filter(|&(_, n)| n != 1)
            .take(10)
            .collect();
        assert!(wrong.is_empty(), "items not taken exactly once: {wrong:?}");
    });
}

/// Child: takes the `RLock` of `Locks` args[0] (free only while the parent
/// waits on the condition), reports its own depth in `seen`, sets `flag`
/// and notifies.
#[test]
#[ignore = "child process entry point"]
fn child_rlock_notify() {
    child_main("child_rlock_notify", |a: Args| {
        let l: Shared<Locks> = open(a.str(0));
        let g = l.rlock.lock().unwrap();
        let g2 = l.rlock.lock().unwrap();
        l.seen.store(u64::from(l.rlock.depth()), SeqCst);
        l.flag.store(1, SeqCst);
        l.cond.notify_all();
        drop(g2);
        drop(g);
    });
}

/// Child: takes the `Lock` of `Locks` args[0] (free only while the parent
/// waits on the condition), sets `flag` and notifies one.
#[test]
#[ignore = "child process entry point"]
fn child_lock_notify() {
    child_main("child_lock_notify", |a: Args| {
        let l: Shared<Locks> = open(a.str(0));
        let g = l.lock.lock().unwrap();
        l.flag.store(1, SeqCst);
        l.cond.notify_one();
        drop(g);
    });
}

#[test]
fn condition_with_rlock_releases_every_level() {
    run("sync_rlock_cond", |ctx| {
        let name = ctx.name("locks");
        let l = Shared::create(&name, Locks::new()).unwrap();
        let g1 = l.rlock.lock().unwrap();
        let g2 = l.rlock.lock().unwrap();
        assert_eq!(l.rlock.depth(), 2);
        let mut child = spawn_child("child_rlock_notify", &[&name]);
        // The child can only take the RLock if the wait released both levels.
        let g2 = l.cond.wait_while(g2, || l.flag.load(SeqCst) == 0).unwrap();
        assert_eq!(l.rlock.depth(), 2, "depth restored after the wait");
        assert!(l.rlock.is_owned_by_current_thread());
        assert_eq!(l.seen.load(SeqCst), 2, "the child counted its own levels");
        wait_ok(&mut child);
        drop(g2);
        assert_eq!(l.rlock.depth(), 1);
        assert!(l.rlock.is_owned_by_current_thread());
        // Still held at depth 1: a timed wait with nobody notifying.
        let (g1, r) = l.cond.wait_timeout(g1, Duration::from_millis(30)).unwrap();
        assert!(r.timed_out());
        assert_eq!(l.rlock.depth(), 1);
        drop(g1);
        assert_eq!(l.rlock.depth(), 0);
        assert!(!l.rlock.is_owned_by_current_thread());
        assert!(l.rlock.try_lock().is_ok());
    });
}

// ---------------------------------------------------------------------------
// 4. Semaphore
// ---------------------------------------------------------------------------

const SEM_PROCS: usize = 4;
const SEM_PERMITS: u32 = 2;
const SEM_ITERS: u64 = 10_000;

/// Child: enters and leaves the semaphore of `SemTest` args[0] args[1]
/// times, counting who is inside.
#[test]
#[ignore = "child process entry point"]
fn child_sem() {
    child_main("child_sem", |a: Args| {
        let s: Shared<SemTest> = open(a.str(0));
        let iters: u64 = a.get(1);
        let permits = s.permits.load(SeqCst);
        for i in 0..iters {
            match i % 3 {
                0 => s.sem.acquire(),
                1 => {
                    while !s.sem.try_acquire() {
                        thread::yield_now();
                    }
                }
                _ => while !s.sem.acquire_timeout(Duration::from_millis(5)) {},
            }
            let now = s.inside.fetch_add(1, SeqCst) + 1;
            s.max_inside.fetch_max(now, SeqCst);
            if now > permits {
                s.violations.fetch_add(1, SeqCst);
            }
            if i % 16 == 0 {
                thread::yield_now(); // linger inside now and then
            }
            s.inside.fetch_sub(1, SeqCst);
            s.passes.fetch_add(1, SeqCst);
            // Bounded: a release beyond the start value would be refused.
            s.sem.release().expect("release within the bound");
        }
    });
}

/// Child: releases one permit of `Semaphore` args[0] after a moment.
#[test]
#[ignore = "child process entry point"]
fn child_sem_release() {
    child_main("child_sem_release", |a: Args| {
        let s: Shared<Semaphore> = open(a.str(0));
        thread::sleep(Duration::from_millis(50));
        s.release().unwrap();
    });
}

#[test]
fn semaphore_never_admits_more_than_its_permits() {
    run("sync_sem", |ctx| {
        let name = ctx.name("sem");
        let s = Shared::create(
            &name,
            SemTest {
                sem: Semaphore::bounded(SEM_PERMITS),
                permits: AtomicU32::new(SEM_PERMITS),
                inside: AtomicU32::new(0),
                max_inside: AtomicU32::new(0),
                violations: AtomicU64::new(0),
                passes: AtomicU64::new(0),
            },
        )
        .unwrap();
        let iters = SEM_ITERS.to_string();
        let mut kids: Vec<Child> = (0..SEM_PROCS)
            .map(|_| spawn_child("child_sem", &[&name, &iters]))
            .collect();
        for k in &mut kids {
            wait_ok(k);
        }
        assert_eq!(s.violations.load(SeqCst), 0, "more inside than permits");
        let max = s.max_inside.load(SeqCst);
        assert!((1..=SEM_PERMITS).contains(&max), "max inside {max}");
        assert_eq!(s.inside.load(SeqCst), 0);
        assert_eq!(s.passes.load(SeqCst), SEM_PROCS as u64 * SEM_ITERS);
        assert_eq!(s.sem.value(), SEM_PERMITS, "every permit came back");
    });
}

#[test]
fn semaphore_bounded_try_and_timeout() {
    run("sync_sem_bounded", |ctx| {
        let b = Semaphore::bounded(2);
        assert_eq!(b.value(), 2);
        assert_eq!(b.release(), Err(SemaphoreOverflow { bound: 2 }));
        assert_eq!(b.value(), 2, "a refused release changes nothing");
        assert!(b.try_acquire());
        assert!(b.acquire_timeout(Duration::from_millis(10)));
        assert_eq!(b.value(), 0);
        assert!(!b.try_acquire());
        assert!(!b.acquire_timeout(Duration::from_millis(30)));
        assert_eq!(b.release(), Ok(()));
        assert_eq!(b.release(), Ok(()));
        assert_eq!(
            b.release(),
            Err(SemaphoreOverflow { bound: 2 }),
            "back at the bound"
        );
        assert_eq!(
            SemaphoreOverflow { bound: 2 }.to_string(),
            "semaphore released beyond its bound of 2"
        );
        // Unbounded: only u32::MAX stops it.
        let u = Semaphore::new(0);
        assert!(!u.try_acquire());
        u.release().unwrap();
        u.release().unwrap();
        assert_eq!(u.value(), 2);
        let full = Semaphore::new(u32::MAX);
        assert_eq!(full.release(), Err(SemaphoreOverflow { bound: u32::MAX }));
        // Across processes: we block, another process releases.
        let name = ctx.name("sem");
        let s = Shared::create(&name, Semaphore::bounded(1)).unwrap();
        s.acquire();
        assert!(!s.acquire_timeout(Duration::from_millis(20)));
        let mut child = spawn_child("child_sem_release", &[&name]);
        assert!(s.acquire_timeout(Duration::from_secs(60)));
        wait_ok(&mut child);
        assert_eq!(s.value(), 0);
        s.release().unwrap();
        assert_eq!(s.release(), Err(SemaphoreOverflow { bound: 1 }));
        s.acquire();
        // We hold the only permit: the child's release is within the bound.
        let mut child = spawn_child("child_sem_release", &[&name]);
        s.acquire();
        wait_ok(&mut child);
        assert_eq!(s.value(), 0);
    });
}

// ---------------------------------------------------------------------------
// 5. Barrier
// ---------------------------------------------------------------------------

const BARRIER_ROUNDS: u64 = 1_000;

/// Child: party args[1] of `BarrierTest` args[0], for args[2] rounds.
#[test]
#[ignore = "child process entry point"]
fn child_barrier() {
    child_main("child_barrier", |a: Args| {
        let b: Shared<BarrierTest> = open(a.str(0));
        let me: usize = a.get(1);
        let rounds: u64 = a.get(2);
        for r in 1..=rounds {
            // Relaxed: the barrier itself must order these.
            b.slots[me].store(r, std::sync::atomic::Ordering::Relaxed);
            let res = if r % 10 == 0 {
                b.barrier.wait_timeout(Duration::from_secs(100))
            } else {
                b.barrier.wait()
            }
            .unwrap_or_else(|e| panic!("round {r}: {e}"));
            assert_eq!(u64::from(res.generation()), r - 1, "round {r}");
            if res.is_leader() {
                b.leaders.fetch_add(1, SeqCst);
            }
            for s in &b.slots {
                let seen = s.load(std::sync::atomic::Ordering::Relaxed);
                // Nobody is behind this round, nobody past the next one.
                if seen < r || seen > r + 1 {
                    b.early.fetch_add(1, SeqCst);
                }
            }
        }
    });
}

#[test]
fn barrier_four_processes_thousand_rounds() {
    run("sync_barrier", |ctx| {
        let name = ctx.name("b");
        let b = Shared::create(
            &name,
            BarrierTest {
                barrier: Barrier::new(BARRIER_PARTIES as u32),
                slots: Default::default(),
                leaders: AtomicU64::new(0),
                early: AtomicU64::new(0),
            },
        )
        .unwrap();
        assert_eq!(b.barrier.parties(), BARRIER_PARTIES as u32);
        let rounds = BARRIER_ROUNDS.to_string();
        let mut kids: Vec<Child> = (0..BARRIER_PARTIES)
            .map(|p| spawn_child("child_barrier", &[&name, &p.to_string(), &rounds]))
            .collect();
        for k in &mut kids {
            wait_ok(k);
        }
        assert_eq!(b.early.load(SeqCst), 0, "a party passed early");
        assert_eq!(b.leaders.load(SeqCst), BARRIER_ROUNDS, "one leader a round");
        assert_eq!(b.barrier.n_waiting(), 0);
        for s in &b.slots {
            assert_eq!(s.load(SeqCst), BARRIER_ROUNDS);
        }
    });
}

/// Child: one wait at `Barrier` args[0]: `wait` (counting leaders and
/// passes in `Ctl` args[1]) or `timeout` (expects a timeout).
#[test]
#[ignore = "child process entry point"]
fn child_barrier_once() {
    child_main("child_barrier_once", |a: Args| {
        let b: Shared<Barrier> = open(a.str(0));
        let ctl: Shared<Ctl> = open(a.str(1));
        match a.str(2) {
            "wait" => {
                let r = b.wait().unwrap();
                if r.is_leader() {
                    ctl.count.fetch_add(1, SeqCst);
                }
                ctl.done.fetch_add(1, SeqCst);
            }
            "timeout" => {
                assert_eq!(
                    b.wait_timeout(Duration::from_millis(100)),
                    Err(BarrierError::Timeout)
                );
            }
            m => panic!("unknown mode {m:?}"),
        }
    });
}

#[test]
fn barrier_timeout_withdraws_and_stays_usable() {
    run("sync_barrier_timeout", |ctx| {
        let bname = ctx.name("b");
        let cname = ctx.name("ctl");
        let b = Shared::create(&bname, Barrier::new(3)).unwrap();
        let ctl = Shared::create(&cname, Ctl::new()).unwrap();
        // Alone, then two of three: every wait times out and withdraws.
        assert_eq!(
            b.wait_timeout(Duration::from_millis(20)),
            Err(BarrierError::Timeout)
        );
        assert_eq!(b.n_waiting(), 0);
        let mut child = spawn_child("child_barrier_once", &[&bname, &cname, "timeout"]);
        assert_eq!(
            b.wait_timeout(Duration::from_millis(100)),
            Err(BarrierError::Timeout)
        );
        wait_ok(&mut child);
        assert_eq!(b.n_waiting(), 0, "timed-out arrivals withdrawn");
        // Full rounds pass, one leader each.
        for round in 0..2u32 {
            let mut kids: Vec<Child> = (0..2)
                .map(|_| spawn_child("child_barrier_once", &[&bname, &cname, "wait"]))
                .collect();
            let r = b.wait_timeout(Duration::from_secs(60)).unwrap();
            assert_eq!(r.generation(), round, "the timeouts tripped nothing");
            for k in &mut kids {
                wait_ok(k);
            }
            let leaders = ctl.count.load(SeqCst) + u64::from(r.is_leader());
            assert_eq!(leaders, u64::from(round) + 1, "one leader a round");
            if r.is_leader() {
                ctl.count.fetch_add(1, SeqCst);
            }
        }
        assert_eq!(ctl.done.load(SeqCst), 4);
        assert_eq!(b.n_waiting(), 0);
        // One party (and "zero", which acts as one) never waits.
        for parties in [0, 1] {
            let one = Barrier::new(parties);
            assert_eq!(one.parties(), 1);
            let r = one.wait().unwrap();
            assert!(r.is_leader());
            assert_eq!(r.generation(), 0);
            assert_eq!(one.wait().unwrap().generation(), 1);
        }
    });
}

// ---------------------------------------------------------------------------
// 6. RLock re-entry
// ---------------------------------------------------------------------------

#[test]
fn rlock_reentry_depth_and_exclusion() {
    run("sync_rlock", |ctx| {
        let f = Fixture::new(ctx);
        let r = &f.locks.rlock;
        assert_eq!(r.depth(), 0);
        let g1 = r.lock().unwrap();
        assert_eq!(r.depth(), 1);
        let g2 = r.try_lock().unwrap();
        assert_eq!(r.depth(), 2);
        let g3 = r.lock_timeout(Duration::from_millis(1)).unwrap();
        assert_eq!(r.depth(), 3);
        assert!(r.is_owned_by_current_thread());
        f.probe("rlock", "held", 3);
        // Another thread of this process is another owner too.
        thread::scope(|s| {
            s.spawn(|| {
                assert!(!r.is_owned_by_current_thread());
                assert!(matches!(r.try_lock(), Err(TryLockError::WouldBlock)));
            });
        });
        // Guards dropped out of order: the lock goes when the last one does.
        drop(g1);
        assert_eq!(r.depth(), 2);
        f.probe("rlock", "held", 2);
        drop(g3);
        assert_eq!(r.depth(), 1);
        f.probe("rlock", "held", 1);
        assert!(r.is_owned_by_current_thread());
        drop(g2);
        assert_eq!(r.depth(), 0);
        assert!(!r.is_owned_by_current_thread());
        f.probe("rlock", "free", 0);
        // Usable again from here.
        let g = r.lock().unwrap();
        assert_eq!(r.depth(), 1);
        drop(g);
        // The plain Lock is not re-entrant: a second take from the same
        // thread would block.
        let g = f.locks.lock.lock().unwrap();
        assert!(matches!(
            f.locks.lock.try_lock(),
            Err(TryLockError::WouldBlock)
        ));
        assert!(matches!(
            f.locks.lock.lock_timeout(Duration::from_millis(10)),
            Err(LockTimeoutError::Timeout)
        ));
        f.probe("lock", "held", 0);
        drop(g);
        f.probe("lock", "free", 0);
    });
}

// ---------------------------------------------------------------------------
// 7. Every timeout form
// ---------------------------------------------------------------------------

#[test]
fn every_timeout_form_times_out() {
    run("sync_timeouts", |ctx| {
        let f = Fixture::new(ctx);
        let short = Duration::from_millis(40);
        let mut child = f.hold("lock,rlock3,value,array", "release");
        assert!(matches!(
            f.locks.lock.lock_timeout(short),
            Err(LockTimeoutError::Timeout)
        ));
        assert!(matches!(
            f.locks.lock.try_lock(),
            Err(TryLockError::WouldBlock)
        ));
        assert!(matches!(
            f.locks.rlock.lock_timeout(short),
            Err(LockTimeoutError::Timeout)
        ));
        assert!(matches!(
            f.locks.rlock.try_lock(),
            Err(TryLockError::WouldBlock)
        ));
        assert_eq!(
            f.locks.rlock.depth(),
            3,
            "the holder's depth, seen from here"
        );
        assert!(!f.locks.rlock.is_owned_by_current_thread());
        assert!(matches!(
            f.value.lock_timeout(short),
            Err(LockTimeoutError::Timeout)
        ));
        assert!(matches!(f.value.try_lock(), Err(TryLockError::WouldBlock)));
        assert!(matches!(
            f.array.lock_timeout(short),
            Err(LockTimeoutError::Timeout)
        ));
        assert!(matches!(f.array.try_lock(), Err(TryLockError::WouldBlock)));
        assert_eq!(
            f.locks.lock.lock_timeout(short).unwrap_err(),
            LockTimeoutError::Timeout
        );
        assert_eq!(
            LockTimeoutError::<()>::Timeout.to_string(),
            "timed out waiting for the lock"
        );
        f.ctl.release.set();
        wait_ok(&mut child);
        // Released: the same calls succeed, and see the holder's writes.
        drop(f.locks.lock.lock_timeout(short).unwrap());
        assert_eq!(f.locks.rlock.depth(), 0);
        drop(f.locks.rlock.lock_timeout(short).unwrap());
        assert_eq!(f.value.lock_timeout(short).unwrap().get(), 42);
        assert_eq!(f.array.lock_timeout(short).unwrap().get(0), 7);

        // Condition: no notifier, with a Lock guard and with an RLock one.
        let g = f.locks.lock.lock().unwrap();
        let (g, r) = f.locks.cond.wait_timeout(g, short).unwrap();
        assert!(r.timed_out());
        assert!(f.locks.lock.is_locked(), "the guard holds the lock again");
        assert!(matches!(
            f.locks.lock.try_lock(),
            Err(TryLockError::WouldBlock)
        ));
        let (g, r) = f.locks.cond.wait_while_timeout(g, short, || true).unwrap();
        assert!(r.timed_out());
        let (g, r) = f.locks.cond.wait_while_timeout(g, short, || false).unwrap();
        assert!(!r.timed_out(), "a false condition returns at once");
        // Notified by another process before the time is up.
        f.locks.flag.store(0, SeqCst);
        let mut child = spawn_child("child_lock_notify", &[&f.names[1]]);
        let (g, r) = f
            .locks
            .cond
            .wait_while_timeout(g, Duration::from_secs(60), || {
                f.locks.flag.load(SeqCst) == 0
            })
            .unwrap();
        assert!(!r.timed_out());
        assert_eq!(f.locks.flag.load(SeqCst), 1);
        drop(g);
        wait_ok(&mut child);
        let rg = f.locks.rlock.lock().unwrap();
        let (rg, r) = f.locks.cond.wait_timeout(rg, short).unwrap();
        assert!(r.timed_out());
        assert!(f.locks.rlock.is_owned_by_current_thread());
        drop(rg);

        // Event, Semaphore, Barrier.
        assert!(!f.ctl.go.wait_timeout(short));
        let sem = Semaphore::new(0);
        assert!(!sem.acquire_timeout(short));
        let b = Barrier::new(2);
        assert_eq!(b.wait_timeout(short), Err(BarrierError::Timeout));
        assert_eq!(b.n_waiting(), 0);
        assert_eq!(
            BarrierError::Timeout.to_string(),
            "timed out waiting at the barrier"
        );
    });
}

// ---------------------------------------------------------------------------
// 8. Owner death
// ---------------------------------------------------------------------------

#[test]
fn dead_owner_of_lock_detected_while_blocked() {
    run("sync_died_lock", |ctx| {
        let f = Fixture::new(ctx);
        let child = f.hold("lock", "hang");
        let killer = kill_when_blocked(child, gettid());
        let g = match f.locks.lock.lock() {
            Err(OwnerDied(g)) => g,
            Ok(_) => panic!("a dead owner's lock taken as if free"),
        };
        wait_killed(&mut killer.join().unwrap());
        assert!(f.locks.lock.is_locked());
        assert!(matches!(
            f.locks.lock.try_lock(),
            Err(TryLockError::WouldBlock)
        ));
        drop(g);
        assert!(!f.locks.lock.is_locked());
        // Normal again: clean takes, no second OwnerDied.
        drop(f.locks.lock.lock().expect("clean after recovery"));
        drop(f.locks.lock.try_lock().expect("clean after recovery"));
        f.probe("lock", "free", 0);
    });
}

#[test]
fn dead_owner_of_rlock_at_depth_three() {
    run("sync_died_rlock", |ctx| {
        let f = Fixture::new(ctx);
        let r = &f.locks.rlock;
        let child = f.hold("rlock3", "hang");
        assert_eq!(r.depth(), 3);
        let killer = kill_when_blocked(child, gettid());
        let g = r.lock().expect_err("the owner died").into_inner();
        wait_killed(&mut killer.join().unwrap());
        assert_eq!(r.depth(), 1, "the dead owner's depth is void");
        assert!(r.is_owned_by_current_thread());
        let g2 = r.lock().unwrap();
        assert_eq!(r.depth(), 2);
        drop(g2);
        drop(g);
        assert_eq!(r.depth(), 0);
        f.probe("rlock", "free", 0);
        drop(r.lock().expect("clean after recovery"));
        // try_lock on a dead owner's RLock.
        let mut child = f.hold("rlock3", "hang");
        kill_child(&mut child);
        match r.try_lock() {
            Err(TryLockError::OwnerDied(g)) => {
                assert_eq!(r.depth(), 1);
                drop(g);
            }
            Err(TryLockError::WouldBlock) => panic!("a dead owner blocks the RLock"),
            Ok(_) => panic!("a dead owner's RLock taken as if free"),
        }
        assert_eq!(r.depth(), 0);
        drop(r.try_lock().expect("clean after recovery"));
    });
}

#[test]
fn dead_owner_of_value_and_array_locks() {
    run("sync_died_cells", |ctx| {
        let f = Fixture::new(ctx);
        // Blocked in Value::lock_timeout when the holder dies.
        let child = f.hold("value", "hang");
        let killer = kill_when_blocked(child, gettid());
        match f.value.lock_timeout(Duration::from_secs(100)) {
            Err(LockTimeoutError::OwnerDied(g)) => {
                assert_eq!(g.get(), 42, "the dead owner's write is visible");
                g.set(0);
            }
            Err(LockTimeoutError::Timeout) => panic!("timed out on a dead owner"),
            Ok(_) => panic!("a dead owner's lock taken as if free"),
        }
        wait_killed(&mut killer.join().unwrap());
        assert_eq!(f.value.lock().expect("clean after recovery").get(), 0);
        // Value::lock (no timeout), blocked too.
        let child = f.hold("value", "hang");
        let killer = kill_when_blocked(child, gettid());
        let g = f.value.lock().expect_err("the owner died").into_inner();
        assert_eq!(g.get(), 42);
        drop(g);
        wait_killed(&mut killer.join().unwrap());
        // try_lock, after the death, on the Array's, the Lock's and the
        // Value's locks.
        let mut child = f.hold("array,lock,value", "hang");
        kill_child(&mut child);
        match f.array.try_lock() {
            Err(TryLockError::OwnerDied(g)) => assert_eq!(g.get(0), 7),
            Err(TryLockError::WouldBlock) => panic!("a dead owner blocks the array"),
            Ok(_) => panic!("a dead owner's lock taken as if free"),
        }
        assert!(!f.array.get_lock().is_locked());
        assert!(matches!(
            f.locks.lock.try_lock(),
            Err(TryLockError::OwnerDied(_))
        ));
        assert!(matches!(
            f.value.lock_timeout(Duration::from_secs(100)),
            Err(LockTimeoutError::OwnerDied(_))
        ));
        assert!(f.array.try_lock().is_ok());
        assert!(f.locks.lock.try_lock().is_ok());
        assert!(f.value.try_lock().is_ok());
        f.probe("array", "free", 0);
        f.probe("value", "free", 0);
    });
}

#[test]
fn dead_owner_thread_in_a_live_process() {
    run("sync_died_thread", |ctx| {
        let f = Fixture::new(ctx);
        let mut child = f.hold("lockthread", "release");
        assert!(f.locks.lock.is_locked());
        match f.locks.lock.lock_timeout(Duration::from_secs(100)) {
            Err(LockTimeoutError::OwnerDied(g)) => drop(g),
            Err(LockTimeoutError::Timeout) => panic!("timed out on a dead thread"),
            Ok(_) => panic!("a dead owner's lock taken as if free"),
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the process is alive; only the owning thread died"
        );
        f.ctl.release.set();
        wait_ok(&mut child);
        drop(f.locks.lock.try_lock().expect("clean after recovery"));
    });
}

/// Child: waits for the parent to wait on the condition of `Locks` args[0]
/// (its lock is free only then), takes the lock, sets `flag`, notifies, sets
/// `held` of `Ctl` args[1], and hangs holding the lock.
#[test]
#[ignore = "child process entry point"]
fn child_notify_then_hang() {
    child_main("child_notify_then_hang", |a: Args| {
        let l: Shared<Locks> = open(a.str(0));
        let ctl: Shared<Ctl> = open(a.str(1));
        let g = l.lock.lock().unwrap();
        l.flag.store(1, SeqCst);
        l.cond.notify_all();
        ctl.held.set();
        std::mem::forget(g);
        sleep_forever();
    });
}

#[test]
fn condition_wait_reports_a_dead_lock_holder() {
    run("sync_died_cond", |ctx| {
        let f = Fixture::new(ctx);
        let g = f.locks.lock.lock().unwrap();
        let child = spawn_child("child_notify_then_hang", &[&f.names[1], &f.names[0]]);
        let ctl = f.ctl.clone();
        let killer = thread::spawn(move || {
            let mut child = child;
            wait_event_from(&ctl.held, &mut child, "notifying");
            child.kill().expect("kill child");
            child
        });
        // Woken by the notify, we must re-take the lock, which the child
        // holds until it dies.
        let r = f
            .locks
            .cond
            .wait_while(g, || f.locks.flag.load(SeqCst) == 0);
        let g = match r {
            Err(OwnerDied(g)) => g,
            Ok(_) => panic!("re-took a dead holder's lock as if free"),
        };
        wait_killed(&mut killer.join().unwrap());
        assert_eq!(f.locks.flag.load(SeqCst), 1);
        assert!(f.locks.lock.is_locked());
        drop(g);
        drop(f.locks.lock.try_lock().expect("clean after recovery"));
    });
}

// ---------------------------------------------------------------------------
// 9. Paused owner; 10. live owners are never taken over
// ---------------------------------------------------------------------------

#[test]
fn stopped_owner_keeps_its_lock() {
    run("sync_sigstop", |ctx| {
        let f = Fixture::new(ctx);
        let mut child = f.hold("lock,rlock3", "release");
        let pid = Pid::from_raw(child.id() as i32);
        kill(pid, Signal::SIGSTOP).unwrap();
        // Several liveness checks against a stopped owner: it keeps both.
        let t = Duration::from_millis(300);
        assert!(matches!(
            f.locks.lock.lock_timeout(t),
            Err(LockTimeoutError::Timeout)
        ));
        assert!(matches!(
            f.locks.lock.try_lock(),
            Err(TryLockError::WouldBlock)
        ));
        assert!(matches!(
            f.locks.rlock.lock_timeout(LIVENESS_SLICE * 3),
            Err(LockTimeoutError::Timeout)
        ));
        kill(pid, Signal::SIGCONT).unwrap();
        f.ctl.release.set();
        // Blocks until the child lets go: a clean take.
        drop(f.locks.lock.lock().expect("a live owner released it"));
        wait_ok(&mut child);
        drop(f.locks.rlock.lock().expect("a live owner released it"));
    });
}

#[test]
fn live_owner_is_never_reported_dead() {
    run("sync_live_owner", |ctx| {
        let f = Fixture::new(ctx);
        let mut child = f.hold("lock,rlock3,value", "release");
        for _ in 0..10 {
            // Each crosses a few liveness slices.
            assert!(matches!(
                f.locks.lock.lock_timeout(LIVENESS_SLICE * 3),
                Err(LockTimeoutError::Timeout)
            ));
        }
        for _ in 0..3 {
            assert!(matches!(
                f.locks.rlock.lock_timeout(LIVENESS_SLICE * 2),
                Err(LockTimeoutError::Timeout)
            ));
            assert!(matches!(
                f.value.lock_timeout(LIVENESS_SLICE * 2),
                Err(LockTimeoutError::Timeout)
            ));
        }
        for _ in 0..500 {
            assert!(matches!(
                f.locks.lock.try_lock(),
                Err(TryLockError::WouldBlock)
            ));
            assert!(matches!(
                f.locks.rlock.try_lock(),
                Err(TryLockError::WouldBlock)
            ));
        }
        // Many threads of ours trying at once change nothing either.
        thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    assert!(matches!(
                        f.locks.lock.lock_timeout(LIVENESS_SLICE * 4),
                        Err(LockTimeoutError::Timeout)
                    ));
                });
            }
        });
        f.ctl.release.set();
        wait_ok(&mut child);
        drop(f.locks.lock.try_lock().expect("released cleanly"));
        drop(f.locks.rlock.try_lock().expect("released cleanly"));
        assert_eq!(f.value.try_lock().expect("released cleanly").get(), 42);
    });
}

// ---------------------------------------------------------------------------
// 11. Bad input
// ---------------------------------------------------------------------------

fn expect_err<T>(r: Result<T, SegmentError>, what: &str) -> SegmentError {
    match r {
        Ok(_) => panic!("{what}: opened"),
        Err(e) => e,
    }
}

#[test]
fn shared_value_array_bad_input() {
    run("sync_bad_input", |ctx| {
        let lname = ctx.name("lock");
        let vname = ctx.name("v64");
        let aname = ctx.name("arr");
        let qname = ctx.name("q");
        let cname = ctx.name("ctl");
        let _lock = Shared::create(&lname, Lock::new()).unwrap();
        let _v = Value::<i64>::create(&vname, 5).unwrap();
        let arr = Array::<f64>::create(&aname, 8).unwrap();
        let _q = Queue::<u64>::create(&qname, Flavor::Spsc, 8).unwrap();
        let _ctl = Shared::create(&cname, Ctl::new()).unwrap();

        let e = expect_err(Shared::<Event>::open(&lname), "Event as Lock");
        assert!(matches!(e, SegmentError::TypeMismatch { .. }), "{e}");
        let e = expect_err(Shared::<Locks>::open(&cname), "one user struct as another");
        assert!(matches!(e, SegmentError::TypeMismatch { .. }), "{e}");
        let e = expect_err(Value::<i32>::open(&vname), "Value<i32> as Value<i64>");
        match e {
            SegmentError::TypeMismatch { expected, found } => {
                assert_ne!(expected.fingerprint, found.fingerprint, "{e}");
            }
            e => panic!("Value<i32> as Value<i64>: {e}"),
        }
        let e = expect_err(Value::<u64>::open(&vname), "Value<u64> as Value<i64>");
        assert!(matches!(e, SegmentError::TypeMismatch { .. }), "{e}");
        let e = expect_err(Array::<f64>::open_len(&aname, 10), "length 10 of 8");
        assert!(
            matches!(
                e,
                SegmentError::LengthMismatch {
                    expected: 10,
                    found: 8
                }
            ),
            "{e}"
        );
        let e = expect_err(Array::<u64>::open(&aname), "Array<u64> as Array<f64>");
        assert!(matches!(e, SegmentError::TypeMismatch { .. }), "{e}");
        assert_eq!(Array::<f64>::open_len(&aname, 8).unwrap().len(), 8);
        assert_eq!(Array::<f64>::open(&aname).unwrap().len(), 8);

        let e = expect_err(Value::<f64>::open(&aname), "Array as Value");
        assert!(
            matches!(
                e,
                SegmentError::WrongKind {
                    expected: Kind::Struct,
                    found: Kind::Array
                }
            ),
            "{e}"
        );
        let e = expect_err(Queue::<u64>::open(&aname), "Array as Queue");
        assert!(
            matches!(
                e,
                SegmentError::WrongKind {
                    expected: Kind::Queue,
                    found: Kind::Array
                }
            ),
            "{e}"
        );
        let e = expect_err(Array::<i64>::open(&vname), "Value as Array");
        assert!(
            matches!(
                e,
                SegmentError::WrongKind {
                    expected: Kind::Array,
                    found: Kind::Struct
                }
            ),
            "{e}"
        );
        let e = expect_err(Shared::<Lock>::open(&qname), "Queue as Shared");
        assert!(
            matches!(
                e,
                SegmentError::WrongKind {
                    expected: Kind::Struct,
                    found: Kind::Queue
                }
            ),
            "{e}"
        );
        let e = expect_err(Value::<u64>::open(&qname), "Queue as Value");
        assert!(matches!(e, SegmentError::WrongKind { .. }), "{e}");

        let missing = ctx.raw_name("missing");
        let e = expect_err(Shared::<Lock>::open(&missing), "missing");
        assert!(matches!(e, SegmentError::NotFound(_)), "{e}");
        let e = expect_err(Value::<i64>::open(&missing), "missing");
        assert!(matches!(e, SegmentError::NotFound(_)), "{e}");
        let e = expect_err(Array::<f64>::open(&missing), "missing");
        assert!(matches!(e, SegmentError::NotFound(_)), "{e}");
        let e = expect_err(Shared::create(&lname, Lock::new()), "existing");
        assert!(matches!(e, SegmentError::AlreadyExists(_)), "{e}");
        let e = expect_err(Array::<f64>::create(&aname, 8), "existing");
        assert!(matches!(e, SegmentError::AlreadyExists(_)), "{e}");

        // Out-of-bounds indexes and copies panic, like slices.
        let a = AssertUnwindSafe(&arr);
        assert!(catch_unwind(|| a.load(8)).is_err());
        assert!(catch_unwind(|| a.store(8, 1.0)).is_err());
        assert!(catch_unwind(|| a.read_into(&mut [0.0; 9])).is_err());
        assert!(catch_unwind(|| a.write_from(&[0.0; 9])).is_err());
        assert!(catch_unwind(|| a.lock().unwrap().get(8)).is_err());
        assert!(!arr.get_lock().is_locked(), "a panic drops the guard");
        arr.store(7, 2.5);
        assert_eq!(arr.load(7), 2.5);
    });
}

/// Child: sets the `Shared<Event>` at path args[0].
#[test]
#[ignore = "child process entry point"]
fn child_set_at_path() {
    child_main("child_set_at_path", |a: Args| {
        let ev = Shared::<Event>::builder().open_at(a.str(0)).unwrap();
        ev.set();
    });
}

#[test]
fn shared_by_path_anonymous_and_open_or_create() {
    run("sync_shared_ways", |ctx| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("event");
        let ev = Shared::<Event>::builder()
            .persist(false)
            .create_at(&path, Event::new())
            .unwrap();
        assert_eq!(ev.path().as_deref(), Some(path.as_path()));
        let mut child = spawn_child("child_set_at_path", &[path.to_str().unwrap()]);
        assert!(ev.wait_timeout(Duration::from_secs(60)));
        wait_ok(&mut child);
        drop(ev);
        assert!(
            !path.exists(),
            "persist(false): the creator's drop removes the file"
        );

        let anon = Shared::anonymous(Semaphore::new(1)).unwrap();
        assert!(anon.fd().is_some() && anon.path().is_none());
        let other = anon.clone();
        assert!(anon.try_acquire());
        assert!(!other.try_acquire(), "one semaphore behind both handles");
        other.release().unwrap();

        let name = ctx.name("ooc");
        let a = Shared::<Event>::builder()
            .open_or_create(&name, Event::new)
            .unwrap();
        let b = Shared::<Event>::builder()
            .open_or_create(&name, Event::new)
            .unwrap();
        a.set();
        assert!(b.is_set());
        let e = expect_err(
            Shared::<Lock>::builder().open_or_create(&name, Lock::new),
            "Lock over Event",
        );
        assert!(matches!(e, SegmentError::TypeMismatch { .. }), "{e}");
        let vname = ctx.name("vooc");
        let v = Value::<u64>::open_or_create(&vname, 3).unwrap();
        let w = Value::<u64>::open_or_create(&vname, 99).unwrap();
        assert_eq!(w.load_atomic(), 3, "opened, not re-created");
        v.fetch_add(1);
        assert_eq!(w.load(), 4);
    });
}

// ---------------------------------------------------------------------------
// 12. Array filled by several processes
// ---------------------------------------------------------------------------

const FILL_WORKERS: usize = 4;
const FILL_CHUNK: usize = 2_500;

fn fill_value(i: usize) -> f64 {
    i as f64 * 0.5 + 1.0
}

/// Child: worker args[1] of `Array<f64>` args[0] fills its slice, through
/// the lock guard (even workers) or element by element (odd ones).
#[test]
#[ignore = "child process entry point"]
fn child_array_fill() {
    child_main("child_array_fill", |a: Args| {
        let arr = Array::<f64>::open_len(a.str(0), FILL_WORKERS * FILL_CHUNK).unwrap();
        let w: usize = a.get(1);
        let range = w * FILL_CHUNK..(w + 1) * FILL_CHUNK;
        if w.is_multiple_of(2) {
            let vals: Vec<f64> = range.clone().map(fill_value).collect();
            let g = arr.lock().unwrap();
            g.write_at(range.start, &vals);
        } else {
            for i in range {
                arr.store(i, fill_value(i));
            }
        }
    });
}

#[test]
fn array_filled_by_worker_processes() {
    run("sync_array_fill", |ctx| {
        let name = ctx.name("arr");
        let n = FILL_WORKERS * FILL_CHUNK;
        let arr = Array::<f64>::create(&name, n).unwrap();
        assert_eq!(arr.len(), n);
        assert!(!arr.is_empty());
        assert!(arr.to_vec().iter().all(|&x| x == 0.0), "created zeroed");
        let mut kids: Vec<Child> = (0..FILL_WORKERS)
            .map(|w| spawn_child("child_array_fill", &[&name, &w.to_string()]))
            .collect();
        for k in &mut kids {
            wait_ok(k);
        }
        let want: f64 = (0..n).map(fill_value).sum();
        let g = arr.lock().unwrap().to_vec();
        let sum: f64 = g.iter().sum();
        assert_eq!(sum, want);
        for (i, &x) in g.iter().enumerate() {
            assert_eq!(x, fill_value(i), "element {i}");
        }
        drop(g);
        let mut head = vec![0.0; 10];
        arr.read_into(&mut head);
        assert_eq!(head, (0..10).map(fill_value).collect::<Vec<_>>());
        arr.write_from(&[-1.0, -2.0]);
        assert_eq!(arr.load(0), -1.0);
        assert_eq!(arr.load(1), -2.0);
        assert_eq!(arr.load(2), fill_value(2), "only the prefix is written");
        // Created from values; anonymous arrays too.
        let anon = Array::<u16>::anonymous_from(&[1, 2, 3]).unwrap();
        assert_eq!(anon.to_vec(), vec![1, 2, 3]);
        assert!(anon.raw_fd().is_some());
        assert!(Array::<u8>::anonymous(0).unwrap().is_empty());
    });
}

// ---------------------------------------------------------------------------
// Edge: a zero timeout on a dead owner's lock
// ---------------------------------------------------------------------------

/// A deadline that has passed still recovers a dead owner's lock (the first
/// version timed out without looking at the owner).
#[test]
fn zero_timeout_on_a_dead_owners_lock_recovers_like_try_lock() {
    run("sync_died_zero_timeout", |ctx| {
        let f = Fixture::new(ctx);
        let mut child = f.hold("lock,rlock3,value", "hang");
        kill_child(&mut child);
        // `Timeout` means "a live thread held the lock until the deadline";
        // the owner is dead, so a zero timeout must recover as try_lock does.
        assert!(matches!(
            f.locks.lock.lock_timeout(Duration::ZERO),
            Err(LockTimeoutError::OwnerDied(_))
        ));
        assert!(matches!(
            f.locks.rlock.lock_timeout(Duration::ZERO),
            Err(LockTimeoutError::OwnerDied(_))
        ));
        assert!(matches!(
            f.value.lock_timeout(Duration::from_micros(1)),
            Err(LockTimeoutError::OwnerDied(_))
        ));
    });
}

// ---------------------------------------------------------------------------
// 13. Anonymous segments across fork (only in a re-executed child)
// ---------------------------------------------------------------------------

const FORK_KIDS: usize = 2;
const FORK_INCR: i64 = 10_000;

/// Child: holds an anonymous `RLock`, forks grandchildren that must not
/// think they own it (the forking thread's cached identity is the
/// parent's), and that count into an anonymous `Value` under its lock.
#[test]
#[ignore = "child process entry point"]
fn child_fork() {
    child_main("child_fork", |_a: Args| {
        let v = Value::<i64>::anonymous(0).unwrap();
        let checked = Value::<u32>::anonymous(0).unwrap();
        let r = Shared::anonymous(RLock::new()).unwrap();
        let held = r.lock().unwrap();
        assert!(r.is_owned_by_current_thread());
        let mut pids = Vec::new();
        for _ in 0..FORK_KIDS {
            // SAFETY: the grandchild only touches the shared segments,
            // reads /proc, and leaves with _exit (no destructors, no harness).
            let pid = unsafe { libc::fork() };
            assert!(pid >= 0, "fork failed");
            if pid == 0 {
                let ok = catch_unwind(AssertUnwindSafe(|| {
                    let verdict = if r.is_owned_by_current_thread() {
                        3
                    } else {
                        match r.try_lock() {
                            Err(TryLockError::WouldBlock) => 0,
                            Ok(_) => 4,
                            Err(TryLockError::OwnerDied(_)) => 5,
                        }
                    };
                    checked.fetch_add(1);
                    if verdict != 0 {
                        return verdict;
                    }
                    for _ in 0..FORK_INCR {
                        v.lock().unwrap().update(|x| x + 1);
                    }
                    0
                }))
                .unwrap_or(2);
                // SAFETY: ends the forked process at once.
                unsafe { libc::_exit(ok) };
            }
            pids.push(pid);
        }
        // Held until every grandchild has looked at it.
        wait_until("the grandchildren's checks", || {
            checked.load_atomic() == FORK_KIDS as u32
        });
        drop(held);
        for pid in pids {
            let pid = Pid::from_raw(pid);
            let status = nix::sys::wait::waitpid(pid, None).expect("waitpid");
            assert_eq!(
                status,
                nix::sys::wait::WaitStatus::Exited(pid, 0),
                "grandchild {pid}: (3: it owns the parent's RLock, \
                 4: took it, 5: called its owner dead)"
            );
        }
        assert_eq!(v.load_atomic(), FORK_KIDS as i64 * FORK_INCR);
        assert!(!r.is_owned_by_current_thread());
        assert_eq!(r.depth(), 0);
    });
}

#[test]
fn anonymous_segments_across_fork() {
    run("sync_fork", |_| {
        let mut child = spawn_child("child_fork", &[]);
        wait_ok(&mut child);
    });
}
