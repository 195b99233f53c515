//! Zero heap allocations per message in steady state.
//!
//! A counting global allocator counts only on threads that have switched
//! counting on (a thread-local flag and counter), so the harness's own
//! allocations on other threads never interfere. Each test warms up (attach,
//! a few thousand messages), then counts while 100,000 messages go through
//! a queue on the measuring thread alone.
#![cfg(not(loom))]

mod common;

use common::run;
use shmring::{Flavor, Queue, Receiver, Sender};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::Duration;

struct Counting;

thread_local! {
    /// Whether this thread counts its allocations now.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    /// Allocations this thread made while counting.
    static COUNT: Cell<usize> = const { Cell::new(0) };
}

fn note_allocation() {
    // `try_with`: a thread being torn down may still allocate; it does not
    // count. Const-initialised `Cell`s need no allocation to access.
    let counting = COUNTING.try_with(Cell::get).unwrap_or(false);
    if counting {
        let _ = COUNT.try_with(|c| c.set(c.get() + 1));
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged, so `System`'s guarantees hold; counting touches only
// const-initialised thread-locals, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: the caller upholds `alloc`'s contract; passed on as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation();
        // SAFETY: as for `alloc`; `ptr` came from `System` through us.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as for `alloc`; `ptr` came from `System` through us.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Runs `f` with counting on (this thread only); returns the allocations.
fn allocations_in(f: impl FnOnce()) -> usize {
    COUNT.with(|c| c.set(0));
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    COUNT.with(Cell::get)
}

const WARM_UP: u64 = 5_000;
const MEASURED: u64 = 100_000;

/// Sends and receives `count` messages starting at `start`, in bursts of up
/// to `burst` (so the ring fills and empties), with `send`/`recv`.
fn blocking_calls(tx: &Sender<u64>, rx: &Receiver<u64>, start: u64, count: u64, burst: u64) {
    let mut next = start;
    let end = start + count;
    let mut expect = start;
    while next < end {
        let n = burst.min(end - next);
        for v in next..next + n {
            tx.send(v).unwrap();
        }
        next += n;
        for _ in 0..n {
            let v = rx.recv().unwrap();
            assert_eq!(v, expect);
            expect += 1;
        }
    }
}

/// As [`blocking_calls`], with `try_send`/`try_recv` and the timed calls.
fn try_calls(tx: &Sender<u64>, rx: &Receiver<u64>, start: u64, count: u64, burst: u64) {
    let mut next = start;
    let end = start + count;
    let mut expect = start;
    while next < end {
        let n = burst.min(end - next);
        for v in next..next + n {
            if v % 2 == 0 {
                tx.try_send(v).unwrap();
            } else {
                tx.send_timeout(v, Duration::from_secs(60)).unwrap();
            }
        }
        next += n;
        for i in 0..n {
            let v = if i % 2 == 0 {
                rx.try_recv().unwrap()
            } else {
                rx.recv_timeout(Duration::from_secs(60)).unwrap()
            };
            assert_eq!(v, expect);
            expect += 1;
        }
        assert!(rx.try_recv().unwrap_err().is_empty());
    }
}

/// As [`blocking_calls`], with `send_slice`/`recv_slice` and the `try_`
/// slice calls, through stack buffers.
fn slice_calls(tx: &Sender<u64>, rx: &Receiver<u64>, start: u64, count: u64, burst: u64) {
    let mut out = [0u64; 64];
    let mut inp = [0u64; 64];
    let burst = burst.min(64) as usize;
    let mut next = start;
    let end = start + count;
    let mut expect = start;
    let mut round = 0u64;
    while next < end {
        let n = (burst as u64).min(end - next) as usize;
        for (k, o) in out[..n].iter_mut().enumerate() {
            *o = next + k as u64;
        }
        if round.is_multiple_of(2) {
            tx.send_slice(&out[..n]).unwrap();
        } else {
            let mut done = 0;
            while done < n {
                done += tx.try_send_slice(&out[done..n]).unwrap();
            }
        }
        next += n as u64;
        let mut got = 0;
        while got < n {
            let k = if round.is_multiple_of(2) {
                rx.recv_slice(&mut inp[..n - got]).unwrap()
            } else {
                rx.try_recv_slice(&mut inp[..n - got]).unwrap()
            };
            for &v in &inp[..k] {
                assert_eq!(v, expect);
                expect += 1;
            }
            got += k;
        }
        round += 1;
    }
}

type Pattern = fn(&Sender<u64>, &Receiver<u64>, u64, u64, u64);

fn assert_zero_allocations(queue: Queue<u64>, what: &str, pattern: Pattern) {
    let cap = queue.capacity() as u64;
    let tx = queue.sender().unwrap();
    let rx = queue.receiver().unwrap();
    // Warm-up: attach, first messages, anything lazily set up.
    pattern(&tx, &rx, 0, WARM_UP, cap);
    let n = allocations_in(|| pattern(&tx, &rx, WARM_UP, MEASURED, cap));
    assert_eq!(
        n, 0,
        "{what}: {n} heap allocations while moving {MEASURED} messages"
    );
}

fn named(ctx: &common::Ctx, flavor: Flavor, capacity: u64) -> (common::ShmName, Queue<u64>) {
    let name = ctx.name("q");
    let q = Queue::<u64>::create(&name, flavor, capacity).unwrap();
    (name, q)
}

#[test]
fn spsc_send_recv_allocates_nothing() {
    run("alloc_spsc_blocking", |ctx| {
        let (_name, q) = named(ctx, Flavor::Spsc, 64);
        assert_zero_allocations(q, "spsc send/recv", blocking_calls);
    });
}

#[test]
fn spsc_try_calls_allocate_nothing() {
    run("alloc_spsc_try", |ctx| {
        let (_name, q) = named(ctx, Flavor::Spsc, 100);
        assert_zero_allocations(q, "spsc try_send/try_recv", try_calls);
    });
}

#[test]
fn spsc_slices_allocate_nothing() {
    run("alloc_spsc_slices", |ctx| {
        let (_name, q) = named(ctx, Flavor::Spsc, 48);
        assert_zero_allocations(q, "spsc send_slice/recv_slice", slice_calls);
    });
}

#[test]
fn mpmc_send_recv_allocates_nothing() {
    run("alloc_mpmc_blocking", |ctx| {
        let (_name, q) = named(ctx, Flavor::Mpmc, 64);
        assert_zero_allocations(q, "mpmc send/recv", blocking_calls);
    });
}

#[test]
fn mpmc_try_calls_allocate_nothing() {
    run("alloc_mpmc_try", |ctx| {
        let (_name, q) = named(ctx, Flavor::Mpmc, 100);
        assert_zero_allocations(q, "mpmc try_send/try_recv", try_calls);
    });
}

#[test]
fn mpmc_slices_allocate_nothing() {
    run("alloc_mpmc_slices", |ctx| {
        let (_name, q) = named(ctx, Flavor::Mpmc, 48);
        assert_zero_allocations(q, "mpmc send_slice/recv_slice", slice_calls);
    });
}

#[test]
fn anonymous_queue_allocates_nothing() {
    run("alloc_anon", |_| {
        let q = Queue::<u64>::anonymous(Flavor::Spsc, 16).unwrap();
        assert_zero_allocations(q, "anonymous spsc send/recv", blocking_calls);
    });
}

#[test]
fn the_counter_counts() {
    // The measurement itself works: a Vec allocates.
    let n = allocations_in(|| {
        let v: Vec<u64> = Vec::with_capacity(std::hint::black_box(16));
        std::hint::black_box(&v);
    });
    assert_eq!(n, 1);
}

/// Byte messages: `send` + `recv_into` a reused `Vec`, then loan + commit +
/// `recv_ref`, in bursts, on one thread: nothing allocates per message once
/// the `Vec` has grown to the largest message.
fn byte_calls(flavor: Flavor) {
    let q = shmring::ByteQueue::anonymous(flavor, 8, 256).unwrap();
    let mut tx = q.sender().unwrap();
    let mut rx = q.receiver().unwrap();
    let msg: Vec<u8> = (0..=255u8).collect();
    let mut buf = Vec::with_capacity(256);
    let mut round = |start: u64, count: u64| {
        let mut i = start;
        while i < start + count {
            let n = 1 + (i % 8);
            for k in 0..n {
                let len = ((i + k) % 257) as usize;
                tx.send(&msg[..len]).unwrap();
            }
            for k in 0..n {
                let len = ((i + k) % 257) as usize;
                assert_eq!(rx.recv_into(&mut buf).unwrap(), len);
                assert_eq!(buf[..], msg[..len]);
            }
            let mut loan = tx.loan(8).unwrap();
            loan.copy_from_slice(&i.to_le_bytes());
            loan.commit();
            assert_eq!(*rx.recv_ref().unwrap(), i.to_le_bytes());
            i += n;
        }
    };
    round(0, WARM_UP);
    let n = allocations_in(|| round(WARM_UP, MEASURED));
    assert_eq!(n, 0, "byte messages ({flavor:?}) allocated {n} times");
}

#[test]
fn spsc_byte_messages_allocate_nothing() {
    run("alloc_bytes_spsc", |_| byte_calls(Flavor::Spsc));
}

#[test]
fn mpmc_byte_messages_allocate_nothing() {
    run("alloc_bytes_mpmc", |_| byte_calls(Flavor::Mpmc));
}
