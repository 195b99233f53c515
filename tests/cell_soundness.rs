//! `Value` / `Array`: every access path at once (issue 10, item 3).
//!
//! The guards used to hand out `&mut T` / `&mut [T]` into shared memory
//! while other handles could call the unlocked `fetch_add` / `store` /
//! `load` on the same bytes (a mixed atomic/non-atomic race), and `load`
//! read a 4-byte value with 1-byte atomics while `fetch_add` wrote it with a
//! 4-byte one. Now every access is an atomic of the cell's own width and
//! the guard reads and writes through `get` / `set` / `update`. These tests
//! run the locked and the unlocked paths on one cell at the same time, from
//! threads of one process (each with its own handle, some through their own
//! mapping), and from processes:
//!
//! - a guard's `update` and a lock-free `fetch_add` lose no update of each
//!   other, for every integer width;
//! - an unlocked `load` or a guard's `get` never sees a value that no one
//!   stored (no torn 2- or 4-byte value), in a `Value` and in an `Array`;
//! - an `Array` element updated under the lock while the unlocked copies
//!   (`store`, `write_at`, `read_at`, `to_vec`) work on its neighbours keeps
//!   every update.

mod common;

use common::{child_main, run, spawn_child, wait_ok, wait_until, Args};
use shmring::{Array, Shared, Value};
use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::sync::Barrier;
use std::thread;

/// Increments per thread: enough that two threads on two cores interleave
/// their read-modify-writes many times over.
const EACH: usize = 200_000;

/// Returns `x` after a short spin: a read-modify-write that takes a while
/// between its read and its write, and a lock-free updater paced alike, so
/// that the two overlap all along. (With a guard's plain `*g += 1`, as the
/// old `&mut T` allowed, the mixed tests then lose about half the updates
/// on every run.)
fn slow<T>(x: T) -> T {
    for _ in 0..64 {
        std::hint::spin_loop();
    }
    x
}

/// Two threads on one `Value<$t>`, each with its own handle: one adds 1
/// `EACH` times under the lock (`lock()?.update`), the other `EACH` times
/// with the lock-free `fetch_add`, checking that its loads never go down.
/// The total must be exactly `2 * EACH` (wrapping): no update lost either
/// way.
macro_rules! mixed_rmw {
    ($name:ident, $t:ty) => {
        #[test]
        fn $name() {
            run(concat!("cell_", stringify!($name)), |ctx| {
                let name = ctx.name("v");
                let v = Value::<$t>::create(&name, 0).unwrap();
                // Its own mapping of the same segment: another handle.
                let other = Value::<$t>::open(&name).unwrap();
                let start = Barrier::new(2);
                thread::scope(|s| {
                    s.spawn(|| {
                        start.wait();
                        for _ in 0..EACH {
                            v.lock().unwrap().update(|x| slow(x.wrapping_add(1)));
                        }
                    });
                    s.spawn(|| {
                        start.wait();
                        let mut seen: u64 = 0;
                        for _ in 0..EACH {
                            other.fetch_add(1);
                            slow(());
                            // Every write adds 1; the count of them so far
                            // never goes down (modulo the type's width).
                            let bits = 8 * std::mem::size_of::<$t>() as u32;
                            let mask = u64::MAX >> (64 - bits);
                            let now = other.load() as u64 & mask;
                            let step = now.wrapping_sub(seen) & mask;
                            // (Only meaningful where the type is wide
                            // enough to tell a step back from a wrap.)
                            if mask > 4 * EACH as u64 {
                                assert!(step <= 2 * EACH as u64, "a load went backwards");
                            }
                            seen = now;
                        }
                    });
                });
                let want = (2 * EACH) as $t;
                assert_eq!(v.load_atomic(), want, "updates lost");
                assert_eq!(other.lock().unwrap().get(), want);
                assert!(!v.get_lock().is_locked());
            });
        }
    };
}

mixed_rmw!(value_update_and_fetch_add_at_once_i64, i64);
mixed_rmw!(value_update_and_fetch_add_at_once_u32, u32);
mixed_rmw!(value_update_and_fetch_add_at_once_i32, i32);
mixed_rmw!(value_update_and_fetch_add_at_once_u16, u16);
mixed_rmw!(value_update_and_fetch_add_at_once_u8, u8);

/// How many stores and loads the tearing tests make per thread.
const FLIPS: usize = 300_000;

/// A writer flips a `Value<u32>` between two patterns that differ in every
/// byte, alternately unlocked (`store`, `swap`) and under the lock
/// (`set`); a reader loads it unlocked and under the lock. Every value seen
/// must be one of the two: 4-byte loads of 4-byte stores (the old `load`
/// and `store` copied a `u32` byte by byte, so a reader could see
/// `0x0000ffff`).
#[test]
fn value_u32_never_torn_between_paths() {
    run("cell_value_torn", |_ctx| {
        const A: u32 = 0x0000_0000;
        const B: u32 = 0xffff_ffff;
        let v = Value::<u32>::anonymous(A).unwrap();
        let r = v.clone();
        let start = Barrier::new(2);
        thread::scope(|s| {
            s.spawn(|| {
                start.wait();
                for i in 0..FLIPS {
                    let x = if i % 2 == 0 { B } else { A };
                    match i % 3 {
                        0 => v.store(x),
                        1 => {
                            let _ = v.swap(x);
                        }
                        _ => v.lock().unwrap().set(x),
                    }
                }
            });
            s.spawn(|| {
                start.wait();
                for i in 0..FLIPS {
                    let x = if i % 8 == 0 {
                        r.lock().unwrap().get()
                    } else {
                        r.load()
                    };
                    assert!(x == A || x == B, "torn: {x:#010x}");
                }
            });
        });
    });
}

/// As [`value_u32_never_torn_between_paths`], for `Array<u16>` and
/// `Array<u32>` elements: one thread flips elements 0 and 1 (unlocked
/// `store` and `write_at`, and under the lock), another reads them
/// (`load`, `read_at`, the guard's `get` and `to_vec`).
#[test]
fn array_elements_never_torn_between_paths() {
    run("cell_array_torn", |_ctx| {
        macro_rules! flip {
            ($t:ty, $b:expr) => {{
                const A: $t = 0;
                const B: $t = $b;
                let a = Array::<$t>::anonymous(3).unwrap();
                let r = a.clone();
                let start = Barrier::new(2);
                thread::scope(|s| {
                    s.spawn(|| {
                        start.wait();
                        for i in 0..FLIPS {
                            let x = if i % 2 == 0 { B } else { A };
                            match i % 3 {
                                0 => a.store(i % 2, x),
                                1 => a.write_at(0, &[x, x]),
                                _ => a.lock().unwrap().set(i % 2, x),
                            }
                        }
                    });
                    s.spawn(|| {
                        start.wait();
                        let mut two = [A; 2];
                        for i in 0..FLIPS {
                            let xs = match i % 8 {
                                0 => r.lock().unwrap().to_vec()[..2].to_vec(),
                                1 => vec![r.lock().unwrap().get(1)],
                                2 => {
                                    r.read_at(0, &mut two);
                                    two.to_vec()
                                }
                                _ => vec![r.load(i % 2)],
                            };
                            for x in xs {
                                assert!(x == A || x == B, "torn: {x:#x}");
                            }
                        }
                    });
                });
                assert_eq!(a.load(2), 0, "element 2 never written");
            }};
        }
        flip!(u16, 0xffff);
        flip!(u32, 0xffff_ffff);
    });
}

/// One thread adds 1 to element 1 of an `Array<i32>` under the lock, `EACH`
/// times; another, without the lock, overwrites elements 0 and 2 (`store`,
/// `write_at`; element 0 shares an 8-byte word with element 1) and
/// copies the whole (`read_at`, `to_vec`), checking element 1 never goes
/// down. Element 1 ends at exactly `EACH`.
#[test]
fn array_locked_update_beside_unlocked_copies() {
    run("cell_array_mixed", |ctx| {
        let name = ctx.name("a");
        let a = Array::<i32>::create(&name, 3).unwrap();
        let other = Array::<i32>::open_len(&name, 3).unwrap();
        let start = Barrier::new(2);
        thread::scope(|s| {
            s.spawn(|| {
                start.wait();
                for _ in 0..EACH {
                    a.lock().unwrap().update(1, |x| x + 1);
                }
            });
            s.spawn(|| {
                start.wait();
                let mut seen = 0;
                let mut three = [0; 3];
                for i in 0..EACH {
                    let k = i as i32;
                    if i % 2 == 0 {
                        other.store(0, k);
                        other.write_at(2, &[-k]);
                        other.read_at(0, &mut three);
                    } else {
                        three.copy_from_slice(&other.to_vec());
                    }
                    assert!(three[1] >= seen, "element 1 went down");
                    seen = three[1];
                }
            });
        });
        let g = other.lock().unwrap();
        assert_eq!(g.get(1), EACH as i32, "updates lost");
        assert_eq!(g.get(0), EACH as i32 - 2, "the last even step's store");
        assert_eq!(g.get(2), -(EACH as i32 - 2));
    });
}

// ---------------------------------------------------------------------------
// Across processes
// ---------------------------------------------------------------------------

/// Processes (the parent and `MIXED_PROCS` children) each increment one
/// `Value<i64>` both ways.
const MIXED_PROCS: usize = 3;
const MIXED_EACH: i64 = 50_000;

#[repr(C)]
struct Gate {
    ready: AtomicU32,
    go: AtomicU32,
}
// SAFETY: repr(C), atomics only.
unsafe impl shmring::ShmSafe for Gate {}

/// Child: opens `Value<i64>` args[0] and `Gate` args[1]; once the gate
/// opens, adds 1 under the lock and 1 with `fetch_add`, `MIXED_EACH` times
/// each, alternating.
#[test]
#[ignore = "child process entry point"]
fn child_mixed() {
    child_main("child_mixed", |a: Args| {
        let v = Value::<i64>::open(a.str(0)).unwrap();
        let gate = Shared::<Gate>::open(a.str(1)).unwrap();
        gate.ready.fetch_add(1, SeqCst);
        wait_until("the gate", || gate.go.load(SeqCst) == 1);
        mixed_increments(&v);
    });
}

fn mixed_increments(v: &Value<i64>) {
    for _ in 0..MIXED_EACH {
        v.lock().unwrap().update(|x| slow(x + 1));
        v.fetch_add(1);
    }
}

#[test]
fn value_update_and_fetch_add_across_processes() {
    run("cell_mixed_procs", |ctx| {
        let vname = ctx.name("v");
        let gname = ctx.name("gate");
        let v = Value::<i64>::create(&vname, 0).unwrap();
        let gate = Shared::create(
            &gname,
            Gate {
                ready: AtomicU32::new(0),
                go: AtomicU32::new(0),
            },
        )
        .unwrap();
        let mut kids: Vec<_> = (0..MIXED_PROCS)
            .map(|_| spawn_child("child_mixed", &[&vname, &gname]))
            .collect();
        wait_until("the children", || {
            gate.ready.load(SeqCst) == MIXED_PROCS as u32
        });
        gate.go.store(1, SeqCst);
        mixed_increments(&v);
        for k in &mut kids {
            wait_ok(k);
        }
        let want = 2 * MIXED_EACH * (MIXED_PROCS as i64 + 1);
        assert_eq!(v.load_atomic(), want, "updates lost across processes");
    });
}
