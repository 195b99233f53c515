//! Hostile review of the stamped SPSC ring (layout 6): every slot carries a
//! stamp (`p + 1` once position `p` is published), the consumer polls the
//! stamp at its own position, and the shared `tail` word is only a hint
//! that attach and repair re-derive the true end from (`published_end`).
//!
//! Attacks, through the public API and real processes (children are the
//! test binary re-executed: `spawn_child` / `child_main`; the kill loops
//! fork only inside such a child, never the multi-threaded harness):
//!
//! - scribbled `tail` hints ahead of the stamps, just over and just inside
//!   `capacity` away from `head` either way, and near the `u64` wrap;
//! - forged stamps (the position at `head`, a future position, every slot
//!   of a lap) while a receiver polls, sleeps in `recv`, or takes slices;
//! - byte queues of awkward maximum sizes and capacities, filled to the
//!   byte with loans, checked against the header's geometry and stamps;
//! - SIGKILL loops of producers (every send path) and consumers (in-place
//!   reads) with an exact ledger and a strict FIFO check;
//! - `len` bounds, wake-ups in both modes, leaked loans and references,
//!   a handle moved to another thread, a handle inherited through `fork`.
#![cfg(not(loom))]

mod common;

use common::{child_main, run, spawn_child, wait_ok, Args, Rng};
use shmring::inspect::{inspect, Location};
use shmring::{
    ByteQueue, ByteSendError, Flavor, Queue, RecvError, RecvTimeoutError, SegmentError,
    TryRecvError, TrySendError, WakeMode,
};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Duration;

// ---------------------------------------------------------------------------
// The segment, seen from outside
// ---------------------------------------------------------------------------

/// `head`: the consumer's published position (control block, first line).
const HEAD: u64 = 256;
/// `tail`: the producer's hint (control block, second line).
const TAIL: u64 = 256 + 128;

fn read_u64(path: &Path, offset: u64) -> u64 {
    let f = std::fs::File::open(path).unwrap();
    let mut b = [0u8; 8];
    f.read_exact_at(&mut b, offset).unwrap();
    u64::from_le_bytes(b)
}

fn write_u64(path: &Path, offset: u64, v: u64) {
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(&v.to_le_bytes(), offset).unwrap();
}

/// The geometry a segment's header announces.
#[derive(Clone, Copy, Debug)]
struct Geo {
    capacity: u64,
    slot_count: u64,
    slot_stride: u64,
    slots_offset: u64,
    total_len: u64,
    msg_max: u64,
    payload_offset: u64,
    payload_stride: u64,
}

impl Geo {
    fn of(path: &Path) -> Geo {
        Geo {
            capacity: read_u64(path, 48),
            slot_count: read_u64(path, 56),
            slot_stride: read_u64(path, 64),
            slots_offset: read_u64(path, 96),
            total_len: read_u64(path, 104),
            msg_max: read_u64(path, 152),
            payload_offset: read_u64(path, 160),
            payload_stride: read_u64(path, 168),
        }
    }

    /// Offset of the stamp of the slot that holds position `pos`.
    fn stamp(&self, pos: u64) -> u64 {
        self.slots_offset + (pos & (self.slot_count - 1)) * self.slot_stride
    }

    /// Offset of the value (the word, for byte queues) of `pos`'s slot.
    fn value(&self, pos: u64) -> u64 {
        self.stamp(pos) + 8
    }

    /// Offset of the payload of `pos`'s slot (byte queues).
    fn payload(&self, pos: u64) -> u64 {
        self.payload_offset + (pos & (self.slot_count - 1)) * self.payload_stride
    }
}

fn named(name: &str) -> Location {
    Location::Named(name.to_string())
}

/// `shmring inspect` and a dry-run `gc` of a directory holding a copy of
/// the segment: neither may panic or hang, and the occupancy is in range.
fn inspect_and_gc(path: &Path, name: &str, capacity: u64) {
    if let Ok(r) = inspect(&named(name)) {
        if let Some(o) = r.occupancy {
            assert!(o <= capacity, "inspect occupancy {o} > capacity {capacity}");
        }
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(path, dir.path().join("copy.shm")).unwrap();
    let _ = shmring::inspect::scan(dir.path());
    let out = shmring::inspect::gc(dir.path(), true, true);
    assert!(out.iter().all(|o| !o.removed), "a dry run removes nothing");
}

// ---------------------------------------------------------------------------
// Scribbled tail hints
// ---------------------------------------------------------------------------

/// The hint scribbled ahead of the stamps but within `capacity` of `head`
/// (what a stray write, or a hostile peer, can leave; no crash produces it:
/// the producer stores the hint only after its stamps). Nothing is queued.
/// A new producer (another process) attaches and sends `capacity`
/// messages: the receiver must get them all.
//
// BREAKS (before the fix in src/ring/spsc.rs `published_end`, same commit):
// `published_end` trusted any hint within `capacity` of `head` and only
// scanned forward from it, so the new producer started at `head + k`; the
// positions `head..head + k` were never published, the receiver (which
// polls the stamp at its own position) waited at `head` for ever, every
// message the producer sent "successfully" was never delivered, and after
// `capacity - k` sends the queue was Full for ever. No call reported
// `Corrupted`: a silent permanent wedge, not "Corrupted or wrong data".
// Fix: a hint ahead of `head` whose previous position is not published is
// not trusted; the stamps are scanned from `head`.
#[test]
fn holds_hint_ahead_of_the_stamps_is_not_trusted() {
    run("hint_ahead", |ctx| {
        for (cap, k) in [(1u64, 1u64), (4, 1), (4, 3), (4, 4), (5, 2), (7, 7), (8, 5)] {
            let name = ctx.name("q");
            let q = Queue::<u64>::create(&name, Flavor::Spsc, cap).unwrap();
            let rx = q.receiver().unwrap();
            // Some traffic first, so head is not 0.
            {
                let tx = q.sender().unwrap();
                for v in 0..3 * cap {
                    tx.send(v).unwrap();
                    assert_eq!(rx.recv().unwrap(), v);
                }
            }
            let head = read_u64(&name.path(), HEAD);
            assert_eq!(head, 3 * cap);
            write_u64(&name.path(), TAIL, head + k);
            assert!(q.len() <= cap as usize);
            // The new producer's attach (in another process), then its sends.
            let mut c = spawn_child("child_send_n", &[&name, &cap.to_string()]);
            wait_ok(&mut c);
            let mut got = Vec::new();
            loop {
                match rx.recv_timeout(Duration::from_millis(200)) {
                    Ok(v) => got.push(v),
                    Err(RecvTimeoutError::Timeout)
                    | Err(RecvTimeoutError::Disconnected)
                    | Err(RecvTimeoutError::Corrupted) => break,
                    Err(e) => panic!("cap {cap} k {k}: {e:?}"),
                }
            }
            let want: Vec<u64> = (1000..1000 + cap).collect();
            assert_eq!(
                got, want,
                "cap {cap}, hint head+{k}: what the new producer sent was never delivered"
            );
            inspect_and_gc(&name.path(), &name, cap);
        }
    });
}

/// The consumer's `head` word scribbled ahead of the stamps (within
/// `capacity` of the hint) while no producer is attached. A live consumer
/// never reads `head` back (its position is its own), so a producer that
/// attached there would publish where the consumer never looks: a silent
/// wedge, as for the hint above. `published_end` sees that `head - 1` was
/// never published and refuses the attach (`Corrupted`), which is the
/// promise; with the word restored, everything works again.
//
// BREAKS (before the same fix): the attach succeeded at `head + k` and the
// child's sends vanished (the receiver, at the real head, never saw them).
#[test]
fn holds_head_ahead_of_the_stamps_refuses_the_producer() {
    run("head_ahead", |ctx| {
        for (cap, k) in [(1u64, 1u64), (4, 1), (4, 4), (5, 3), (8, 8)] {
            let name = ctx.name("q");
            let q = Queue::<u64>::create(&name, Flavor::Spsc, cap).unwrap();
            let rx = q.receiver().unwrap();
            {
                let tx = q.sender().unwrap();
                for v in 0..2 * cap + 1 {
                    tx.send(v).unwrap();
                    assert_eq!(rx.recv().unwrap(), v);
                }
            }
            let head = read_u64(&name.path(), HEAD);
            write_u64(&name.path(), HEAD, head + k);
            assert_eq!(q.len(), 0);
            let mut c = spawn_child("child_send_n", &[&name, &cap.to_string()]);
            wait_ok(&mut c);
            assert!(
                matches!(q.sender(), Err(SegmentError::Corrupted(_))),
                "cap {cap}: head + {k}"
            );
            // Whatever the child managed (nothing, by the check above) was
            // not sent into the void: nothing queued, nothing lost quietly.
            assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
            write_u64(&name.path(), HEAD, head);
            let tx = q.sender().unwrap();
            for v in 0..cap {
                tx.send(50 + v).unwrap();
            }
            for v in 0..cap {
                assert_eq!(rx.recv().unwrap(), 50 + v);
            }
        }
    });
}

/// Child: opens queue `args[0]`, attaches a sender and sends
/// `1000..1000 + args[1]`; a refused attach or a failed send is reported
/// by its error and is not a failure (the parent judges what arrived).
#[test]
#[ignore = "child process entry point"]
fn child_send_n() {
    child_main("child_send_n", |a: Args| {
        let q = Queue::<u64>::open(a.str(0)).unwrap();
        let n: u64 = a.get(1);
        match q.sender() {
            Ok(tx) => {
                for v in 1000..1000 + n {
                    match tx.send_timeout(v, Duration::from_millis(200)) {
                        Ok(()) => {}
                        Err(e) => {
                            eprintln!("send {v}: {e:?}");
                            break;
                        }
                    }
                }
            }
            Err(e) => eprintln!("attach: {e}"),
        }
    });
}

/// The hint just over `capacity` away from `head`, either way, refuses the
/// attach of either end (`Corrupted`); just inside it, the attach works and
/// nothing is lost. `len` stays in `0..=capacity`; `inspect` and `gc` cope.
#[test]
fn holds_hint_at_the_capacity_boundaries() {
    run("hint_bounds", |ctx| {
        for cap in [1u64, 3, 4, 5, 7] {
            let name = ctx.name("q");
            let q = Queue::<u64>::create(&name, Flavor::Spsc, cap).unwrap();
            {
                let tx = q.sender().unwrap();
                let rx = q.receiver().unwrap();
                for v in 0..2 * cap + 1 {
                    tx.send(v).unwrap();
                    assert_eq!(rx.recv().unwrap(), v);
                }
            }
            let path = name.path();
            let head = read_u64(&path, HEAD);
            for hint in [
                head + cap + 1,
                head.wrapping_sub(cap + 1),
                u64::MAX,
                head + (1 << 63),
            ] {
                write_u64(&path, TAIL, hint);
                assert!(q.len() <= cap as usize, "len {} > {cap}", q.len());
                assert!(
                    matches!(q.sender(), Err(SegmentError::Corrupted(_))),
                    "cap {cap}: hint {hint} vs head {head}"
                );
                assert!(matches!(q.receiver(), Err(SegmentError::Corrupted(_))));
                inspect_and_gc(&path, &name, cap);
            }
            // Behind the head by up to `capacity` (a consumer that ran
            // ahead of a stale hint): the attach works.
            write_u64(&path, TAIL, head - cap.min(head));
            assert_eq!(q.len(), 0);
            let tx = q.sender().unwrap();
            let rx = q.receiver().unwrap();
            assert_eq!(q.len(), 0);
            for v in 0..cap {
                tx.try_send(100 + v).unwrap();
            }
            assert!(matches!(tx.try_send(0), Err(TrySendError::Full(0))));
            assert_eq!(q.len(), cap as usize);
            for v in 0..cap {
                assert_eq!(rx.try_recv(), Ok(100 + v));
            }
            assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
        }
    });
}

/// Head and hint near the `u64` wrap, in step: position `u64::MAX`'s
/// stamp is `0`, which is also a never-written slot's stamp, so a zeroed
/// slot reads as published there. That is wrong data at worst: no panic,
/// no hang, `len` in range, every call returns.
#[test]
fn holds_positions_at_the_u64_wrap() {
    run("wrap", |ctx| {
        for cap in [1u64, 3, 4] {
            for start in [u64::MAX - 2 * cap, u64::MAX, u64::MAX - 1] {
                let name = ctx.name("q");
                let q = Queue::<u64>::create(&name, Flavor::Spsc, cap).unwrap();
                write_u64(&name.path(), HEAD, start);
                write_u64(&name.path(), TAIL, start);
                let tx = q.sender().unwrap();
                let rx = q.receiver().unwrap();
                let mut buf = vec![0u64; 2 * cap as usize];
                for round in 0..4 * cap {
                    let _ = tx.try_send(round);
                    let _ = tx.try_send_slice(&[round, round]);
                    assert!(q.len() <= cap as usize);
                    let _ = rx.try_recv();
                    if let Ok(n) = rx.try_recv_slice(&mut buf) {
                        assert!(n as u64 <= cap);
                    }
                    let _ = rx.recv_timeout(Duration::from_millis(1));
                    let _ = tx.send_timeout(round, Duration::from_millis(1));
                    inspect_and_gc(&name.path(), &name, cap);
                }
                drop(tx);
                drop(rx);
                // Attaching again at the wrap: an answer, not a hang.
                let _ = q.sender();
                let _ = q.receiver();
            }
        }
    });
}

// ---------------------------------------------------------------------------
// Forged stamps
// ---------------------------------------------------------------------------

/// The stamp of the slot at `head` forged to `head + 1` ("published") with
/// nothing sent: the receiver takes the slot's stale value once (wrong data,
/// in bounds) and moves on; the producer's next message at that position
/// is then lost to it, and the queue goes on working — no panic, no hang,
/// FIFO for everything after.
///
/// And a *future* position's stamp forged (`head + 1`'s slot to
/// `head + 2`): the receiver does not look there until the message at
/// `head` arrives, and the real send to `head + 1` rewrites the same stamp,
/// so nothing at all is visible.
#[test]
fn holds_forged_stamps_cost_one_stale_read() {
    run("forged_stamps", |ctx| {
        for cap in [1u64, 2, 3, 5, 8] {
            let name = ctx.name("q");
            let q = Queue::<u64>::create(&name, Flavor::Spsc, cap).unwrap();
            let g = Geo::of(&name.path());
            assert_eq!(g.slot_count, cap.next_power_of_two());
            let tx = q.sender().unwrap();
            let rx = q.receiver().unwrap();
            for v in 0..2 * cap + 1 {
                tx.send(v).unwrap();
                assert_eq!(rx.recv().unwrap(), v);
            }
            let head = read_u64(&name.path(), HEAD);
            // A future position first (cap >= 2: head + 1 is in the ring).
            if cap >= 2 {
                write_u64(&name.path(), g.stamp(head + 1), head + 2);
                assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
                tx.send(500).unwrap();
                tx.send(501).unwrap();
                assert_eq!(rx.try_recv(), Ok(500));
                assert_eq!(rx.try_recv(), Ok(501));
                assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
            }
            let head = read_u64(&name.path(), HEAD);
            write_u64(&name.path(), g.value(head), 0xdead);
            write_u64(&name.path(), g.stamp(head), head + 1);
            assert_eq!(rx.try_recv(), Ok(0xdead), "the forged slot, once");
            assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
            // The producer still thinks position `head` is next. Either its
            // next read of `head` (when its cached copy says full) finds the
            // receiver ahead of it, `Corrupted`, or what it writes at `head`
            // is not seen and everything after is, in order.
            let mut got = Vec::new();
            let mut corrupted = false;
            for v in 0..3 * cap {
                match tx.send_timeout(1000 + v, Duration::from_secs(5)) {
                    Ok(()) => assert!(!corrupted, "Corrupted, then fine again"),
                    Err(e) => {
                        assert!(e.is_corrupted(), "{e:?}");
                        corrupted = true;
                    }
                }
                while let Ok(x) = rx.try_recv() {
                    got.push(x);
                }
                assert!(q.len() <= cap as usize);
            }
            if !corrupted {
                let want: Vec<u64> = (1001..1000 + 3 * cap).collect();
                assert_eq!(got, want, "cap {cap}");
            } else {
                assert!(got.windows(2).all(|w| w[0] < w[1]), "{got:?}");
                assert!(got.iter().all(|&x| x > 1000), "{got:?}");
            }
            // A new producer starts after the receiver: exact again.
            drop(tx);
            let tx = q.sender().unwrap();
            for v in 0..2 * cap {
                tx.send(2000 + v).unwrap();
                assert_eq!(rx.recv().unwrap(), 2000 + v, "cap {cap}");
            }
        }
    });
}

/// Every stamp of a lap and more forged "published" (positions `head ..
/// head + slot_count`): `recv_slice` takes at most `capacity`, each a
/// stale value, and returns.
#[test]
fn holds_recv_slice_reads_at_most_capacity_forged_stamps() {
    run("forged_lap", |ctx| {
        for cap in [1u64, 3, 5, 7, 8] {
            let name = ctx.name("q");
            let q = Queue::<u64>::create(&name, Flavor::Spsc, cap).unwrap();
            let g = Geo::of(&name.path());
            let rx = q.receiver().unwrap();
            let head = read_u64(&name.path(), HEAD);
            for p in head..head + g.slot_count {
                write_u64(&name.path(), g.stamp(p), p + 1);
                write_u64(&name.path(), g.value(p), 7000 + p);
            }
            let mut buf = vec![0u64; 4 * g.slot_count as usize];
            let n = rx.recv_slice(&mut buf).unwrap();
            assert_eq!(n as u64, cap, "at most capacity");
            assert_eq!(buf[..n], (7000..7000 + cap).collect::<Vec<_>>()[..]);
            assert!(q.len() <= cap as usize);
            // What is left forged past the capacity: taken next, in bounds.
            let rest = rx.try_recv_slice(&mut buf).unwrap_or(0);
            assert!(rest as u64 <= cap);
            // A new producer attaching now finds the words consistent.
            drop(rx);
            let tx = q.sender();
            assert!(tx.is_ok() || matches!(tx, Err(SegmentError::Corrupted(_))));
            inspect_and_gc(&name.path(), &name, cap);
        }
    });
}

/// A receiver asleep in `recv` (another process) while the stamp at its
/// position is forged: it wakes within a liveness slice by itself (nobody
/// notifies it), takes the stale value, and its next `recv` gets what is
/// really sent. Both wake modes.
#[test]
fn holds_forged_stamp_under_a_sleeping_recv() {
    run("forged_sleeping", |ctx| {
        for mode in ["strict", "fast"] {
            let name = ctx.name("q");
            let q = Queue::<u64>::builder()
                .flavor(Flavor::Spsc)
                .capacity(4)
                .wake_mode(wake_mode(mode))
                .create(&name)
                .unwrap();
            let g = Geo::of(&name.path());
            let tx = q.sender().unwrap();
            let flag = ctx.name("flag");
            let mut c = spawn_child("child_recv_two", &[&name, &flag]);
            // Wait until the child's receiver is attached and asleep.
            common::wait_until("receiver attached", || q.live_endpoints().1 == 1);
            std::thread::sleep(Duration::from_millis(100));
            let head = read_u64(&name.path(), HEAD);
            write_u64(&name.path(), g.value(head), 0xbad);
            write_u64(&name.path(), g.stamp(head), head + 1);
            // The child got the forged value. The producer's next position
            // is the one the forged stamp stood for, which the receiver has
            // passed: that message is lost to it; the next one arrives.
            common::wait_until("first receive", || flag.exists());
            tx.send(41).unwrap();
            tx.send(42).unwrap();
            wait_ok(&mut c);
        }
    });
}

fn wake_mode(s: &str) -> WakeMode {
    match s {
        "fast" => WakeMode::Fast,
        _ => WakeMode::Strict,
    }
}

/// Child: receives twice from `args[0]` with a blocking `recv`: the first
/// (a forged stamp) is `0xbad`; then creates the file `/dev/shm/<args[1]>`
/// and expects `42` (the `41` sent to the forged position is not seen).
#[test]
#[ignore = "child process entry point"]
fn child_recv_two() {
    child_main("child_recv_two", |a: Args| {
        let q = Queue::<u64>::open(a.str(0)).unwrap();
        let rx = q.receiver().unwrap();
        assert_eq!(rx.recv(), Ok(0xbad));
        std::fs::write(Path::new("/dev/shm").join(a.str(1)), b"").unwrap();
        assert_eq!(rx.recv(), Ok(42));
    });
}
