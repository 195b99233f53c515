//! Byte messages (`ByteQueue`) across processes: random sizes with
//! checksums through SPSC and MPMC queues, every way of sending and
//! receiving (copies, loans, in-place receives), oversize messages, a
//! scribbled length word, dropped loans (MPMC skip records), disconnects
//! and `poll`, bad input, iterators and buffer reuse.
#![cfg(not(loom))]

mod common;

use common::{
    child_main, run, sleep_forever, spawn_child, wait_killed, wait_ok, wait_until, Args, Ctx,
};
use shmring::{
    ByteQueue, ByteReceiver, ByteSendError, ByteSender, Flavor, Kind, Queue, RecvError,
    RecvTimeoutError, SegmentError, TryRecvError, MAX_MESSAGE,
};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Child;
use std::thread;
use std::time::Duration;

// ---------------------------------------------------------------------------
// Test messages
// ---------------------------------------------------------------------------

/// Bytes of the header a message carries when it is long enough:
/// producer (`u32`), sequence number (`u32`), checksum (`u64`).
const HDR: usize = 16;

/// A short timeout for the retrying loops of the timed calls.
const SHORT: Duration = Duration::from_millis(2);

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn key(producer: u32, seq: u32) -> u64 {
    ((producer as u64) << 32) | seq as u64
}

fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The checksum of a message with a header: FNV-1a over its length, its
/// producer and sequence number, and its body.
fn checksum(msg: &[u8]) -> u64 {
    let h = fnv(0xcbf2_9ce4_8422_2325, &(msg.len() as u64).to_le_bytes());
    fnv(fnv(h, &msg[..8]), &msg[HDR..])
}

/// The length of message `seq` of `producer`, in `min..=max`: mostly short,
/// a quarter anywhere up to `max`, and exactly `min` and exactly `max`
/// regularly.
fn msg_len(producer: u32, seq: u32, min: usize, max: usize) -> usize {
    if seq % 97 == 1 {
        return min;
    }
    if seq % 89 == 2 {
        return max;
    }
    let r = splitmix(key(producer, seq) ^ 0x5151_5151);
    let hi = if r.is_multiple_of(4) {
        max
    } else {
        (min + 256).min(max)
    };
    min + ((r >> 8) % (hi - min + 1) as u64) as usize
}

/// Writes message `seq` of `producer` into `buf` (its whole length):
/// pseudo-random bytes derived from both, and the header when it fits.
fn fill(buf: &mut [u8], producer: u32, seq: u32) {
    let mut s = splitmix(key(producer, seq));
    for chunk in buf.chunks_mut(8) {
        s = splitmix(s);
        chunk.copy_from_slice(&s.to_le_bytes()[..chunk.len()]);
    }
    if buf.len() >= HDR {
        buf[0..4].copy_from_slice(&producer.to_le_bytes());
        buf[4..8].copy_from_slice(&seq.to_le_bytes());
        let c = checksum(buf);
        buf[8..16].copy_from_slice(&c.to_le_bytes());
    }
}

/// Message `seq` of `producer`, of length `len`, as a new `Vec`.
fn make(producer: u32, seq: u32, len: usize) -> Vec<u8> {
    let mut v = vec![0; len];
    fill(&mut v, producer, seq);
    v
}

/// Asserts that `got` is exactly `want`, naming the first differing byte.
fn assert_bytes(got: &[u8], want: &[u8], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: wrong length");
    if let Some(i) = got.iter().zip(want).position(|(a, b)| a != b) {
        panic!(
            "{what}: byte {i} of {} is {:#04x}, expected {:#04x}",
            got.len(),
            got[i],
            want[i]
        );
    }
}

/// Checks a message that carries a header (at least [`HDR`] bytes): its
/// checksum, its length for its sequence number, and every byte. Returns
/// `(producer, seq)`.
fn verify(msg: &[u8], min: usize, max: usize) -> (u32, u32) {
    assert!(
        msg.len() >= HDR && msg.len() <= max,
        "a message of {} bytes was never sent",
        msg.len()
    );
    let producer = u32::from_le_bytes(msg[0..4].try_into().unwrap());
    let seq = u32::from_le_bytes(msg[4..8].try_into().unwrap());
    let sum = u64::from_le_bytes(msg[8..16].try_into().unwrap());
    assert_eq!(
        sum,
        checksum(msg),
        "checksum of a {}-byte message claiming to be ({producer}, {seq})",
        msg.len()
    );
    assert_eq!(
        msg.len(),
        msg_len(producer, seq, min, max),
        "length of message ({producer}, {seq})"
    );
    assert_bytes(
        msg,
        &make(producer, seq, msg.len()),
        &format!("message ({producer}, {seq})"),
    );
    (producer, seq)
}

/// Checks that `msg` is message `seq` of `producer` (any length, down to 0).
fn check_exact(msg: &[u8], producer: u32, seq: u32, min: usize, max: usize) {
    let len = msg_len(producer, seq, min, max);
    assert_eq!(
        msg.len(),
        len,
        "message ({producer}, {seq}) has the wrong length: lost, reordered or mangled"
    );
    if len >= HDR {
        assert_eq!(verify(msg, min, max), (producer, seq));
    } else {
        assert_bytes(
            msg,
            &make(producer, seq, len),
            &format!("message ({producer}, {seq})"),
        );
    }
}

// ---------------------------------------------------------------------------
// Sending and receiving every way
// ---------------------------------------------------------------------------

/// Sends messages `0..count` of `producer` (lengths from `min`), each way of
/// sending by turns. With `abandon`, before every 7th message a loan is
/// taken, scribbled over and dropped: it must send nothing.
fn send_all(tx: &mut ByteSender, producer: u32, count: u32, min: usize, abandon: bool) {
    let max = tx.max_message_size();
    let mut scratch = Vec::with_capacity(max);
    for seq in 0..count {
        let len = msg_len(producer, seq, min, max);
        if abandon && seq % 7 == 3 {
            let mut l = tx.loan(len).unwrap();
            l.fill(0xee);
            drop(l);
        }
        match (seq + producer) % 6 {
            0 => {
                scratch.clear();
                scratch.resize(len, 0);
                fill(&mut scratch, producer, seq);
                tx.send(&scratch).unwrap();
            }
            1 => {
                scratch.clear();
                scratch.resize(len, 0);
                fill(&mut scratch, producer, seq);
                loop {
                    match tx.send_timeout(&scratch, SHORT) {
                        Ok(()) => break,
                        Err(ByteSendError::Timeout) => {}
                        Err(e) => panic!("send_timeout: {e}"),
                    }
                }
            }
            2 => {
                // A loan of the exact length, written through DerefMut.
                let mut l = tx.loan(len).unwrap();
                assert_eq!(l.len(), len);
                fill(&mut l, producer, seq);
                l.commit();
            }
            3 => loop {
                // A loan of nothing, grown with set_len after writing the
                // whole slot.
                match tx.try_loan(0) {
                    Ok(mut l) => {
                        assert_eq!(l.len(), 0);
                        assert_eq!(l.max_len(), max);
                        assert_eq!(l.full_slot().len(), max);
                        fill(&mut l.full_slot()[..len], producer, seq);
                        l.set_len(len).unwrap();
                        assert_eq!(l.len(), len);
                        l.commit();
                        break;
                    }
                    Err(ByteSendError::Full) => thread::yield_now(),
                    Err(e) => panic!("try_loan: {e}"),
                }
            },
            4 => {
                scratch.clear();
                scratch.resize(len, 0);
                fill(&mut scratch, producer, seq);
                loop {
                    match tx.try_send(&scratch) {
                        Ok(()) => break,
                        Err(ByteSendError::Full) => thread::yield_now(),
                        Err(e) => panic!("try_send: {e}"),
                    }
                }
            }
            _ => loop {
                // A loan of the maximum, shrunk with set_len.
                match tx.loan_timeout(max, SHORT) {
                    Ok(mut l) => {
                        assert_eq!(l.len(), max);
                        fill(&mut l[..len], producer, seq);
                        l.set_len(len).unwrap();
                        l.commit();
                        break;
                    }
                    Err(ByteSendError::Timeout) => {}
                    Err(e) => panic!("loan_timeout: {e}"),
                }
            },
        }
    }
}

/// Receives one message the way `mode` picks and hands it to `f`;
/// `Err(Disconnected)` once drained with no sender left. `Corrupted`
/// panics.
fn recv_with(
    rx: &mut ByteReceiver,
    mode: u64,
    buf: &mut Vec<u8>,
    f: &mut dyn FnMut(&[u8]),
) -> Result<(), RecvError> {
    match mode % 7 {
        0 => {
            let n = rx.recv_into(buf)?;
            assert_eq!(n, buf.len());
            f(buf);
        }
        1 => f(&rx.recv()?),
        2 => f(&rx.recv_ref()?),
        3 => loop {
            match rx.recv_into_timeout(buf, SHORT) {
                Ok(n) => {
                    assert_eq!(n, buf.len());
                    f(buf);
                    break;
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return Err(RecvError::Disconnected),
                Err(e) => panic!("recv_into_timeout: {e}"),
            }
        },
        4 => loop {
            match rx.try_recv_into(buf) {
                Ok(n) => {
                    assert_eq!(n, buf.len());
                    f(buf);
                    break;
                }
                Err(TryRecvError::Empty) => thread::yield_now(),
                Err(TryRecvError::Disconnected) => return Err(RecvError::Disconnected),
                Err(e) => panic!("try_recv_into: {e}"),
            }
        },
        5 => loop {
            match rx.recv_ref_timeout(SHORT) {
                Ok(r) => {
                    f(&r);
                    break;
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return Err(RecvError::Disconnected),
                Err(e) => panic!("recv_ref_timeout: {e}"),
            }
        },
        _ => loop {
            match rx.try_recv_ref() {
                Ok(r) => {
                    f(&r);
                    break;
                }
                Err(TryRecvError::Empty) => thread::yield_now(),
                Err(TryRecvError::Disconnected) => return Err(RecvError::Disconnected),
                Err(e) => panic!("try_recv_ref: {e}"),
            }
        },
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Child processes
// ---------------------------------------------------------------------------

/// Child: opens byte queue `args[0]` and, as producer `args[1]`, sends
/// `args[2]` messages of at least `args[3]` bytes ([`send_all`]). `args[4]`
/// holds options: `abandon` (drop a loan before every 7th message), `hang`
/// (then sleep holding the sender until killed).
#[test]
#[ignore = "child process entry point"]
fn child_byte_sender() {
    child_main("child_byte_sender", |a: Args| {
        let q = ByteQueue::open(a.str(0)).unwrap();
        let mut tx = q.sender().unwrap();
        let opts = a.str(4).to_string();
        send_all(
            &mut tx,
            a.get(1),
            a.get(2),
            a.get(3),
            opts.contains("abandon"),
        );
        if opts.contains("hang") {
            sleep_forever();
        }
    });
}

/// Child: opens byte queue `args[0]` and, as consumer `args[1]`, receives
/// messages of at least `args[2]` bytes until disconnected, checking each,
/// and writes their `(producer, seq)` in order of receipt to file `args[3]`
/// (little-endian `u32` pairs).
#[test]
#[ignore = "child process entry point"]
fn child_byte_consumer() {
    child_main("child_byte_consumer", |a: Args| {
        let q = ByteQueue::open(a.str(0)).unwrap();
        let mut rx = q.receiver().unwrap();
        let id: u64 = a.get(1);
        let min: usize = a.get(2);
        let max = rx.max_message_size();
        let mut got = Vec::new();
        let mut buf = Vec::new();
        let mut i = id;
        loop {
            let r = recv_with(&mut rx, i, &mut buf, &mut |m| {
                let (p, s) = verify(m, min, max);
                got.extend_from_slice(&p.to_le_bytes());
                got.extend_from_slice(&s.to_le_bytes());
            });
            match r {
                Ok(()) => i += 1,
                Err(RecvError::Disconnected) => break,
                Err(e) => panic!("recv: {e}"),
            }
        }
        std::fs::write(a.str(3), got).unwrap();
    });
}

/// Child: opens byte queue `args[0]`, attaches a receiver and sleeps until
/// killed.
#[test]
#[ignore = "child process entry point"]
fn child_byte_receiver_hangs() {
    child_main("child_byte_receiver_hangs", |a: Args| {
        let q = ByteQueue::open(a.str(0)).unwrap();
        let _rx = q.receiver().unwrap();
        sleep_forever();
    });
}

/// Child: opens byte queue `args[0]` and sends, by loans only: `hello`
/// through a loan of 5; `abc` through a loan of 10 shrunk to 3; the whole
/// slot (bytes `i % 251`) through `full_slot` and `set_len(max)`; nothing
/// through a dropped loan; an empty message through a loan of 0; `tail`
/// through `try_loan`. Checks `set_len` beyond the maximum on the way.
#[test]
#[ignore = "child process entry point"]
fn child_loan_writer() {
    child_main("child_loan_writer", |a: Args| {
        let q = ByteQueue::open(a.str(0)).unwrap();
        let mut tx = q.sender().unwrap();
        let max = tx.max_message_size();

        let mut l = tx.loan(5).unwrap();
        assert_eq!((l.len(), l.max_len()), (5, max));
        l.copy_from_slice(b"hello");
        l.commit();

        let mut l = tx.loan(10).unwrap();
        l[..3].copy_from_slice(b"abc");
        l.set_len(3).unwrap();
        assert_eq!(&*l, b"abc");
        l.commit();

        let mut l = tx.loan_timeout(0, Duration::from_secs(60)).unwrap();
        for (i, b) in l.full_slot().iter_mut().enumerate() {
            *b = (i % 251) as u8;
        }
        assert_eq!(
            l.set_len(max + 1),
            Err(ByteSendError::TooLarge { len: max + 1, max })
        );
        assert_eq!(l.len(), 0, "a refused set_len leaves the loan as it was");
        l.set_len(max).unwrap();
        l.commit();

        let mut l = tx.loan(7).unwrap();
        l.copy_from_slice(b"dropped");
        drop(l);

        tx.loan(0).unwrap().commit();

        let mut l = loop {
            if let Ok(l) = tx.try_loan(4) {
                break l;
            }
            thread::yield_now();
        };
        l.copy_from_slice(b"tail");
        l.commit();
    });
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// Reads the little-endian `u64` at `offset` of file `path`.
fn read_u64(path: &Path, offset: u64) -> u64 {
    let f = std::fs::File::open(path).unwrap();
    let mut b = [0u8; 8];
    f.read_exact_at(&mut b, offset).unwrap();
    u64::from_le_bytes(b)
}

fn read_bytes(path: &Path, offset: u64, len: usize) -> Vec<u8> {
    let f = std::fs::File::open(path).unwrap();
    let mut b = vec![0u8; len];
    f.read_exact_at(&mut b, offset).unwrap();
    b
}

fn write_at(path: &Path, offset: u64, bytes: &[u8]) {
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(bytes, offset).unwrap();
}

/// Header offsets (src/shm/header.rs).
const SLOTS_OFFSET: u64 = 96;
const MSG_MAX: u64 = 152;
const PAYLOAD_OFFSET: u64 = 160;
const PAYLOAD_STRIDE: u64 = 168;
/// The control block follows the header: `head` at +0, `tail` at +128.
const HEAD: u64 = 256;
const TAIL: u64 = 256 + 128;

/// Kills `child` after `delay` on another thread, so that the caller can
/// be blocked meanwhile; join to get the child back.
fn kill_later(mut child: Child, delay: Duration) -> thread::JoinHandle<Child> {
    thread::spawn(move || {
        thread::sleep(delay);
        child.kill().expect("kill child");
        child
    })
}

/// Receives `count` messages of producer 0 (lengths from `min`) from a
/// sender in another process, every way of receiving by turns, checking
/// each exactly; then the sender has gone and the queue is disconnected.
fn receive_checked(rx: &mut ByteReceiver, count: u32, min: usize) {
    let max = rx.max_message_size();
    let mut buf = Vec::new();
    for seq in 0..count {
        recv_with(rx, seq as u64, &mut buf, &mut |m| {
            check_exact(m, 0, seq, min, max)
        })
        .unwrap_or_else(|e| panic!("message {seq}: {e}"));
    }
}

/// One sender process, this process receiving: `count` messages of random
/// sizes `0..=max` through a queue of `flavor`, capacity 8.
fn one_to_one(ctx: &Ctx, flavor: Flavor, count: u32, max: u64, opts: &str) {
    let name = ctx.name("q");
    let q = ByteQueue::create(&name, flavor, 8, max).unwrap();
    assert_eq!(q.max_message_size(), max as usize);
    assert_eq!(q.flavor(), flavor);
    let mut rx = q.receiver().unwrap();
    let mut child = spawn_child(
        "child_byte_sender",
        &[&name, "0", &count.to_string(), "0", opts],
    );
    receive_checked(&mut rx, count, 0);
    assert_eq!(rx.recv(), Err(RecvError::Disconnected), "nothing else");
    wait_ok(&mut child);
    assert!(q.is_empty());
    assert_eq!(q.endpoints(), (0, 1));
}

#[test]
fn spsc_random_sizes_across_processes() {
    run("bytes_spsc_random", |ctx| {
        one_to_one(ctx, Flavor::Spsc, 20_000, 4096, "abandon");
    });
}

#[test]
fn mpmc_one_to_one_random_sizes_across_processes() {
    run("bytes_mpmc_1x1", |ctx| {
        // With dropped loans: skip records on a small queue that wraps.
        one_to_one(ctx, Flavor::Mpmc, 5_000, 1000, "abandon");
    });
}

// ---------------------------------------------------------------------------
// MPMC: three producers, three consumers
// ---------------------------------------------------------------------------

const PRODUCERS: u32 = 3;
const CONSUMERS: u32 = 3;
/// Shortest MPMC message: every one carries its header.
const MPMC_MIN: usize = HDR;

/// Checks that `received` (one list of `(producer, seq)` per consumer, in
/// its order of receipt) holds each of `per` messages of every producer
/// exactly once, nothing else, each consumer seeing each producer's
/// messages in increasing order.
fn check_exactly_once(received: &[Vec<(u32, u32)>], per: u32) {
    let mut seen = vec![vec![false; per as usize]; PRODUCERS as usize];
    let mut total = 0u64;
    for (c, list) in received.iter().enumerate() {
        let mut last = vec![None::<u32>; PRODUCERS as usize];
        for &(p, s) in list {
            assert!(
                p < PRODUCERS && s < per,
                "consumer {c} got ({p}, {s}), never sent"
            );
            assert!(
                !seen[p as usize][s as usize],
                "message ({p}, {s}) was delivered twice"
            );
            seen[p as usize][s as usize] = true;
            if let Some(prev) = last[p as usize] {
                assert!(
                    s > prev,
                    "consumer {c} got producer {p}'s {s} after {prev}: not FIFO"
                );
            }
            last[p as usize] = Some(s);
            total += 1;
        }
    }
    for (p, row) in seen.iter().enumerate() {
        if let Some(s) = row.iter().position(|&b| !b) {
            panic!("message ({p}, {s}) was never delivered");
        }
    }
    assert_eq!(total, PRODUCERS as u64 * per as u64);
}

/// Three producer processes and three consumer processes on one MPMC byte
/// queue of `capacity` and maximum `max`, `per` messages per producer.
fn three_by_three(ctx: &Ctx, capacity: u64, max: u64, per: u32, opts: &str) {
    let name = ctx.name("q");
    let dir = tempfile::tempdir().unwrap();
    let q = ByteQueue::create(&name, Flavor::Mpmc, capacity, max).unwrap();
    // Held until every producer has finished, so that no consumer sees a
    // disconnect between one producer leaving and the next attaching.
    let hold = q.sender().unwrap();
    let outs: Vec<_> = (0..CONSUMERS)
        .map(|c| dir.path().join(format!("consumer-{c}.bin")))
        .collect();
    let min = MPMC_MIN.to_string();
    let mut consumers: Vec<_> = outs
        .iter()
        .enumerate()
        .map(|(c, out)| {
            spawn_child(
                "child_byte_consumer",
                &[&name, &c.to_string(), &min, out.to_str().unwrap()],
            )
        })
        .collect();
    let mut producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            spawn_child(
                "child_byte_sender",
                &[&name, &p.to_string(), &per.to_string(), &min, opts],
            )
        })
        .collect();
    for p in &mut producers {
        wait_ok(p);
    }
    drop(hold);
    for c in &mut consumers {
        wait_ok(c);
    }
    let received: Vec<Vec<(u32, u32)>> = outs
        .iter()
        .map(|f| {
            std::fs::read(f)
                .unwrap()
                .chunks_exact(8)
                .map(|b| {
                    (
                        u32::from_le_bytes(b[0..4].try_into().unwrap()),
                        u32::from_le_bytes(b[4..8].try_into().unwrap()),
                    )
                })
                .collect()
        })
        .collect();
    check_exactly_once(&received, per);
    assert!(q.is_empty());
    assert_eq!(q.len(), 0);
    assert_eq!(q.endpoints(), (0, 0));
}

#[test]
fn mpmc_three_producers_three_consumers() {
    run("bytes_mpmc_3x3", |ctx| {
        // Small: producers and consumers contend, and positions wrap often.
        three_by_three(ctx, 16, 2048, 2_000, "");
    });
}

#[test]
fn mpmc_three_by_three_with_dropped_loans() {
    run("bytes_mpmc_3x3_drop", |ctx| {
        // Dropped loans become skip records that consumers step over while
        // producers and consumers race. The capacity exceeds every position
        // used, so no slot is reused...
        three_by_three(ctx, 8192, 512, 1_500, "abandon");
    });
    run("bytes_mpmc_3x3_drop_wrap", |ctx| {
        // ...and here slots are reused all the time: producers come round
        // to last lap's skip records while the queue is full.
        three_by_three(ctx, 2, 512, 1_500, "abandon");
    });
}

// ---------------------------------------------------------------------------
// Oversize messages
// ---------------------------------------------------------------------------

#[test]
fn oversize_is_too_large_and_queued_messages_survive() {
    run("bytes_oversize", |ctx| {
        for flavor in [Flavor::Spsc, Flavor::Mpmc] {
            let name = ctx.name("q");
            let max = 100usize;
            let q = ByteQueue::create(&name, flavor, 4, max as u64).unwrap();
            let mut tx = q.sender().unwrap();
            let rx = q.receiver().unwrap();
            assert_eq!(tx.max_message_size(), max);
            assert_eq!(rx.max_message_size(), max);
            // Messages already queued: exactly the maximum and empty.
            let full = make(7, 0, max);
            tx.send(&full).unwrap();
            tx.send(b"").unwrap();

            let big = vec![0xab; max + 1];
            let e = tx.send(&big).unwrap_err();
            assert_eq!(e, ByteSendError::TooLarge { len: max + 1, max });
            let msg = e.to_string();
            assert!(msg.contains("101") && msg.contains("100"), "{msg}");
            assert_eq!(
                tx.try_send(&big),
                Err(ByteSendError::TooLarge { len: max + 1, max })
            );
            assert_eq!(
                tx.send_timeout(&big, Duration::from_secs(60)),
                Err(ByteSendError::TooLarge { len: max + 1, max })
            );
            assert_eq!(
                tx.loan(max + 1).unwrap_err(),
                ByteSendError::TooLarge { len: max + 1, max }
            );
            assert_eq!(
                tx.try_loan(max + 1).unwrap_err(),
                ByteSendError::TooLarge { len: max + 1, max }
            );
            assert_eq!(
                tx.loan_timeout(usize::MAX, Duration::from_secs(60))
                    .unwrap_err(),
                ByteSendError::TooLarge {
                    len: usize::MAX,
                    max
                }
            );
            assert_eq!(q.len(), 2, "a refused message takes no slot");

            // On a full queue the size is refused at once: the blocking
            // calls do not wait for room they could not use.
            tx.send(b"x").unwrap();
            tx.send(b"y").unwrap();
            assert!(q.is_full());
            assert_eq!(
                tx.send(&big),
                Err(ByteSendError::TooLarge { len: max + 1, max })
            );
            assert_eq!(
                tx.loan(max + 1).unwrap_err(),
                ByteSendError::TooLarge { len: max + 1, max }
            );

            assert_bytes(&rx.recv().unwrap(), &full, "the maximal message");
            assert_eq!(rx.recv().unwrap(), b"");
            assert_eq!(rx.recv().unwrap(), b"x");
            assert_eq!(rx.recv().unwrap(), b"y");
            assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
            // The queue still works, up to the maximum.
            tx.send(&full).unwrap();
            assert_bytes(&rx.recv().unwrap(), &full, "the maximal message again");
        }
    });
}

// ---------------------------------------------------------------------------
// A scribbled length word
// ---------------------------------------------------------------------------

/// Where the stored length of ring position `pos` lies in the file, for a
/// queue of 4 slots (both flavors use slot `pos % 4` in the first laps).
fn len_word(flavor: Flavor, slots_offset: u64, stride: u64, pos: u64) -> u64 {
    // Slots are a `u64` ring stamp, then the `u64` word, then the payload
    // (the stride): the length in the word's low 32 bits (little-endian:
    // the first 4 bytes), a pipe's session stamp above. (Both flavors;
    // capacity 4 is a power of two, so SPSC and MPMC index alike.)
    let _ = flavor;
    slots_offset + stride * (pos % 4) + 8
}

#[test]
fn scribbled_length_is_corrupted_then_the_queue_goes_on() {
    run("bytes_bad_len", |ctx| {
        for flavor in [Flavor::Spsc, Flavor::Mpmc] {
            let name = ctx.name("q");
            let max = 64u64;
            let q = ByteQueue::create(&name, flavor, 4, max).unwrap();
            let tx = q.sender().unwrap();
            let mut rx = q.receiver().unwrap();
            let path = name.path();
            let slots = read_u64(&path, SLOTS_OFFSET);
            let payload = read_u64(&path, PAYLOAD_OFFSET);
            let stride = read_u64(&path, PAYLOAD_STRIDE);
            assert_eq!(read_u64(&path, MSG_MAX), max);
            // Each payload follows its slot's stamp and word, in one line.
            assert_eq!(payload, slots + 16);
            assert!(slots >= 256 && stride >= max + 16 && stride.is_power_of_two());

            tx.send(b"first").unwrap();
            tx.send(b"second").unwrap();
            // The layout is what we think it is: the lengths in the slots,
            // the bytes in the payload area.
            let word = |pos| len_word(flavor, slots, stride, pos);
            assert_eq!(read_bytes(&path, word(0), 4), 5u32.to_le_bytes());
            assert_eq!(read_bytes(&path, word(1), 4), 6u32.to_le_bytes());
            // A plain byte queue's messages carry no session stamp.
            assert_eq!(read_bytes(&path, word(0) + 4, 4), [0; 4]);
            assert_eq!(read_bytes(&path, word(1) + 4, 4), [0; 4]);
            assert_eq!(read_bytes(&path, payload, 5), b"first");
            assert_eq!(read_bytes(&path, payload + stride, 6), b"second");
            // Either ring: position 0's stamp says published.
            assert_eq!(read_u64(&path, slots), 1, "stamp of position 0");

            // Position 0: a length one beyond the maximum.
            write_at(&path, word(0), &(max as u32 + 1).to_le_bytes());
            let mut buf = Vec::new();
            assert_eq!(rx.try_recv_into(&mut buf), Err(TryRecvError::Corrupted));
            assert_eq!(q.len(), 1, "the bad message is dropped");
            assert_eq!(rx.try_recv().unwrap(), b"second");

            // Position 2: the largest length, through a blocking receive.
            tx.send(b"third").unwrap();
            write_at(&path, word(2), &u32::MAX.to_le_bytes());
            assert_eq!(rx.recv(), Err(RecvError::Corrupted));
            tx.send(b"fourth").unwrap();
            assert_eq!(rx.recv().unwrap(), b"fourth");

            // Position 4 (slot 0 again): in-place receives.
            tx.send(b"fifth").unwrap();
            write_at(&path, word(4), &(1u32 << 31).to_le_bytes());
            assert_eq!(rx.recv_ref().unwrap_err(), RecvError::Corrupted);
            tx.send(b"sixth").unwrap();
            assert_eq!(&*rx.try_recv_ref().unwrap(), b"sixth");

            // Position 6: the timed calls.
            tx.send(b"seventh").unwrap();
            write_at(&path, word(6), &(max as u32 + 1).to_le_bytes());
            assert_eq!(
                rx.recv_into_timeout(&mut buf, Duration::from_secs(60)),
                Err(RecvTimeoutError::Corrupted)
            );
            tx.send(b"eighth").unwrap();
            write_at(&path, word(7), &(max as u32 + 1).to_le_bytes());
            assert_eq!(
                rx.recv_ref_timeout(Duration::from_secs(60)).unwrap_err(),
                RecvTimeoutError::Corrupted
            );
            tx.send(b"ninth").unwrap();
            write_at(&path, word(8), &(max as u32 + 1).to_le_bytes());
            assert_eq!(rx.try_recv_ref().unwrap_err(), TryRecvError::Corrupted);

            // A length within the maximum is believed: the receiver gets
            // that many bytes of the payload, and nothing breaks.
            tx.send(b"tenth").unwrap();
            write_at(&path, word(9), &(max as u32).to_le_bytes());
            let got = rx.recv().unwrap();
            assert_eq!(got.len(), max as usize);
            assert_eq!(&got[..5], b"tenth");

            // A scribbled stamp (the word's high half) means nothing to a
            // plain byte queue: every receive delivers the message.
            for (i, p) in (10..14).enumerate() {
                tx.send(b"stamped").unwrap();
                write_at(&path, word(p) + 4, &[0xff, 0xff, i as u8, 0xff]);
            }
            assert_eq!(rx.poll(Duration::ZERO), Ok(true));
            assert_eq!(rx.try_recv().unwrap(), b"stamped");
            assert_eq!(rx.recv().unwrap(), b"stamped");
            assert_eq!(&*rx.recv_ref().unwrap(), b"stamped");
            assert_eq!(
                rx.recv_timeout(Duration::from_secs(60)).unwrap(),
                b"stamped"
            );
            assert_eq!(q.stale(), 0);

            // Every slot was given back: the queue fills to its capacity.
            assert!(q.is_empty());
            for i in 0..4u8 {
                tx.try_send(&[i; 3]).unwrap();
            }
            assert_eq!(tx.try_send(b"more"), Err(ByteSendError::Full));
            for i in 0..4u8 {
                assert_eq!(rx.try_recv().unwrap(), [i; 3]);
            }
            assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
        }
    });
}

// ---------------------------------------------------------------------------
// Loans
// ---------------------------------------------------------------------------

#[test]
fn dropped_loan_sends_nothing() {
    run("bytes_loan_drop", |_| {
        for flavor in [Flavor::Spsc, Flavor::Mpmc] {
            let q = ByteQueue::anonymous(flavor, 4, 32).unwrap();
            let mut tx = q.sender().unwrap();
            let rx = q.receiver().unwrap();

            let mut l = tx.loan(5).unwrap();
            l.copy_from_slice(b"never");
            // Not visible before commit.
            assert_eq!(rx.try_recv(), Err(TryRecvError::Empty), "{flavor}");
            drop(l);
            assert_eq!(rx.try_recv(), Err(TryRecvError::Empty), "{flavor}");
            assert_eq!(q.len(), 0, "{flavor}: nothing left behind");
            assert!(q.is_empty());

            // A dropped loan between two messages.
            tx.send(b"one").unwrap();
            drop(tx.try_loan(32).unwrap());
            tx.send(b"two").unwrap();
            assert_eq!(rx.try_recv().unwrap(), b"one");
            assert_eq!(rx.try_recv().unwrap(), b"two");
            assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
            assert_eq!(q.len(), 0, "{flavor}");

            // Many dropped loans in a row wrap the ring without sending.
            for i in 0..10u8 {
                let mut l = tx.loan(1).unwrap();
                l[0] = i;
                drop(l);
                let mut l = tx.loan(1).unwrap();
                l[0] = i;
                l.commit();
                assert_eq!(rx.recv().unwrap(), [i], "{flavor}");
            }
            assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
            assert_eq!(q.len(), 0, "{flavor}");
        }
    });
}

#[test]
fn mpmc_abandoned_claim_between_live_ones_is_skipped() {
    run("bytes_loan_skip", |ctx| {
        let name = ctx.name("q");
        let q = ByteQueue::create(&name, Flavor::Mpmc, 4, 32).unwrap();
        let mut a = q.sender().unwrap();
        let mut b = q.sender().unwrap();
        let rx = q.receiver().unwrap();

        // `a` claims position 0, `b` position 1: the receiver waits for 0.
        let mut la = a.loan(3).unwrap();
        la.copy_from_slice(b"aaa");
        let mut lb = b.loan(3).unwrap();
        lb.copy_from_slice(b"bbb");
        lb.commit();
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty), "0 is not ready");
        // `a` gives up: its position becomes a skip record.
        drop(la);
        assert_eq!(rx.try_recv().unwrap(), b"bbb");
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
        assert_eq!(q.len(), 0);

        // A receiver blocked behind an uncommitted claim is woken by its
        // abandonment and gets the next committed message.
        let mut la = a.loan(3).unwrap();
        let mut lb = b.loan(3).unwrap();
        lb.copy_from_slice(b"BBB");
        lb.commit();
        let rx2 = q.receiver().unwrap();
        let waiter = thread::spawn(move || rx2.recv());
        thread::sleep(Duration::from_millis(20));
        la.copy_from_slice(b"xxx");
        drop(la);
        assert_eq!(waiter.join().unwrap().unwrap(), b"BBB");
        assert_eq!(q.len(), 0);
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    });
}

#[test]
fn full_queue_refuses_loans_and_sends() {
    run("bytes_loan_full", |_| {
        for flavor in [Flavor::Spsc, Flavor::Mpmc] {
            let q = ByteQueue::anonymous(flavor, 3, 16).unwrap();
            let mut tx = q.sender().unwrap();
            let rx = q.receiver().unwrap();
            for i in 0..3u8 {
                tx.try_send(&[i]).unwrap();
            }
            assert!(q.is_full() && tx.is_full() && rx.is_full());
            assert_eq!(tx.try_loan(1).unwrap_err(), ByteSendError::Full);
            assert_eq!(tx.try_send(b"z"), Err(ByteSendError::Full));
            assert_eq!(
                tx.loan_timeout(1, Duration::from_millis(10)).unwrap_err(),
                ByteSendError::Timeout
            );
            assert_eq!(
                tx.send_timeout(b"z", Duration::from_millis(10)),
                Err(ByteSendError::Timeout)
            );
            assert_eq!(q.len(), 3);
            // Room again after one receive.
            assert_eq!(rx.recv().unwrap(), [0]);
            let mut l = tx.try_loan(1).unwrap();
            l[0] = 3;
            l.commit();
            for i in 1..4u8 {
                assert_eq!(rx.recv().unwrap(), [i], "{flavor}");
            }
        }
    });
}

#[test]
fn held_loan_and_byte_ref_keep_their_slots() {
    run("bytes_hold_slot", |_| {
        for flavor in [Flavor::Spsc, Flavor::Mpmc] {
            let q = ByteQueue::anonymous(flavor, 1, 16).unwrap();
            let mut tx = q.sender().unwrap();
            let mut rx = q.receiver().unwrap();
            // A message read in place keeps its slot until dropped.
            tx.send(b"held").unwrap();
            let r = rx.recv_ref().unwrap();
            assert_eq!(&*r, b"held");
            assert_eq!(r.len(), 4);
            assert_eq!(tx.try_send(b"no"), Err(ByteSendError::Full), "{flavor}");
            assert_eq!(tx.try_loan(1).unwrap_err(), ByteSendError::Full);
            drop(r);
            // A loan not yet committed is not received.
            let mut l = tx.try_loan(2).unwrap();
            l.copy_from_slice(b"ok");
            assert_eq!(rx.try_recv(), Err(TryRecvError::Empty), "{flavor}");
            l.commit();
            assert_eq!(rx.try_recv().unwrap(), b"ok");
        }
    });
}

#[test]
fn loans_in_one_process_read_in_place_in_another() {
    run("bytes_loan_xproc", |ctx| {
        for flavor in [Flavor::Spsc, Flavor::Mpmc] {
            let name = ctx.name("q");
            let max = 300usize;
            let q = ByteQueue::create(&name, flavor, 2, max as u64).unwrap();
            let mut rx = q.receiver().unwrap();
            let mut child = spawn_child("child_loan_writer", &[&name]);
            assert_eq!(&*rx.recv_ref().unwrap(), b"hello");
            assert_eq!(&*rx.recv_ref().unwrap(), b"abc");
            {
                let r = rx.recv_ref().unwrap();
                assert_eq!(r.len(), max);
                let want: Vec<u8> = (0..max).map(|i| (i % 251) as u8).collect();
                assert_bytes(&r, &want, "the whole slot");
            }
            assert_eq!(&*rx.recv_ref().unwrap(), b"", "the empty message");
            assert_eq!(&*rx.recv_ref().unwrap(), b"tail");
            assert_eq!(
                rx.recv_ref().unwrap_err(),
                RecvError::Disconnected,
                "the dropped loan sent nothing"
            );
            wait_ok(&mut child);
            assert_eq!(q.len(), 0);
        }
    });
}

// ---------------------------------------------------------------------------
// Disconnects and poll
// ---------------------------------------------------------------------------

#[test]
fn sender_exits_receiver_drains_then_disconnected() {
    run("bytes_dis_drain", |ctx| {
        for flavor in [Flavor::Spsc, Flavor::Mpmc] {
            let name = ctx.name("q");
            let q = ByteQueue::create(&name, flavor, 512, 256).unwrap();
            let mut rx = q.receiver().unwrap();
            let k = 300u32;
            let mut child =
                spawn_child("child_byte_sender", &[&name, "0", &k.to_string(), "0", ""]);
            // Let it finish first: everything sent is still queued.
            wait_ok(&mut child);
            assert_eq!(q.len(), k as usize);
            assert!(!rx.is_connected());
            assert_eq!(rx.poll(Duration::from_secs(60)), Ok(true));
            receive_checked(&mut rx, k, 0);
            let mut buf = Vec::new();
            assert_eq!(rx.recv(), Err(RecvError::Disconnected));
            assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
            assert_eq!(rx.recv_into(&mut buf), Err(RecvError::Disconnected));
            assert_eq!(
                rx.recv_into_timeout(&mut buf, Duration::from_secs(60)),
                Err(RecvTimeoutError::Disconnected)
            );
            assert_eq!(
                rx.recv_timeout(Duration::from_secs(60)),
                Err(RecvTimeoutError::Disconnected)
            );
            assert_eq!(rx.recv_ref().unwrap_err(), RecvError::Disconnected);
            assert_eq!(rx.try_recv_ref().unwrap_err(), TryRecvError::Disconnected);
            assert_eq!(
                rx.recv_ref_timeout(Duration::from_secs(60)).unwrap_err(),
                RecvTimeoutError::Disconnected
            );
            assert_eq!(
                rx.poll(Duration::from_secs(60)),
                Err(RecvError::Disconnected)
            );
            assert_eq!(q.endpoints(), (0, 1));
        }
    });
}

#[test]
fn sender_killed_while_receiver_blocked() {
    run("bytes_dis_kill_tx", |ctx| {
        // Each way of blocking, on one flavor or the other.
        for (flavor, how) in [
            (Flavor::Spsc, "recv"),
            (Flavor::Mpmc, "recv_ref"),
            (Flavor::Spsc, "poll"),
            (Flavor::Mpmc, "recv_into_timeout"),
        ] {
            let name = ctx.name("q");
            let q = ByteQueue::create(&name, flavor, 64, 128).unwrap();
            let mut rx = q.receiver().unwrap();
            let k = 10u32;
            let child = spawn_child(
                "child_byte_sender",
                &[&name, "0", &k.to_string(), "0", "hang"],
            );
            receive_checked(&mut rx, k, 0);
            // The child holds the only sender and sleeps; we block until it
            // is killed, then must see Disconnected (the watchdog turns
            // "forever" into a failure).
            let killer = kill_later(child, Duration::from_millis(100));
            let long = Duration::from_secs(600);
            match how {
                "recv" => assert_eq!(rx.recv(), Err(RecvError::Disconnected)),
                "recv_ref" => assert_eq!(rx.recv_ref().unwrap_err(), RecvError::Disconnected),
                "poll" => assert_eq!(rx.poll(long), Err(RecvError::Disconnected)),
                _ => assert_eq!(
                    rx.recv_into_timeout(&mut Vec::new(), long),
                    Err(RecvTimeoutError::Disconnected)
                ),
            }
            let mut child = killer.join().unwrap();
            wait_killed(&mut child);
            assert_eq!(
                q.endpoints(),
                (0, 1),
                "{flavor} {how}: the dead sender is reaped"
            );
            assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
        }
    });
}

#[test]
fn receiver_killed_while_sender_blocked() {
    run("bytes_dis_kill_rx", |ctx| {
        for (flavor, loan) in [(Flavor::Spsc, false), (Flavor::Mpmc, true)] {
            let name = ctx.name("q");
            let q = ByteQueue::create(&name, flavor, 2, 64).unwrap();
            let mut tx = q.sender().unwrap();
            let child = spawn_child("child_byte_receiver_hangs", &[&name]);
            wait_until("the child's receiver", || q.endpoints().1 == 1);
            tx.send(b"a").unwrap();
            tx.send(b"b").unwrap();
            assert!(q.is_full());
            let killer = kill_later(child, Duration::from_millis(100));
            if loan {
                assert_eq!(tx.loan(8).unwrap_err(), ByteSendError::Disconnected);
            } else {
                assert_eq!(tx.send(b"c"), Err(ByteSendError::Disconnected));
            }
            let mut child = killer.join().unwrap();
            wait_killed(&mut child);
            assert!(!tx.is_connected());
            assert_eq!(tx.try_send(b"c"), Err(ByteSendError::Disconnected));
            assert_eq!(tx.try_loan(1).unwrap_err(), ByteSendError::Disconnected);
            assert_eq!(
                tx.send_timeout(b"c", Duration::from_secs(60)),
                Err(ByteSendError::Disconnected)
            );
            assert_eq!(q.endpoints(), (1, 0));
        }
    });
}

#[test]
fn poll_reports_waiting_timeout_and_disconnect() {
    run("bytes_poll", |ctx| {
        for flavor in [Flavor::Spsc, Flavor::Mpmc] {
            let name = ctx.name("q");
            let q = ByteQueue::create(&name, flavor, 4, 64).unwrap();
            let mut rx = q.receiver().unwrap();
            // No sender has attached yet: poll waits for one in another
            // process and its message, which is still reported once that
            // sender has gone.
            let mut child = spawn_child("child_byte_sender", &[&name, "0", "1", "0", ""]);
            assert_eq!(rx.poll(Duration::from_secs(60)), Ok(true), "{flavor}");
            wait_ok(&mut child);
            assert!(!rx.is_connected());
            assert_eq!(rx.poll(Duration::from_secs(60)), Ok(true), "{flavor}");
            assert_eq!(q.len(), 1, "poll takes nothing");
            receive_checked(&mut rx, 1, 0);
            // The sender is gone and nothing is queued.
            assert_eq!(
                rx.poll(Duration::from_secs(60)),
                Err(RecvError::Disconnected)
            );
            assert_eq!(rx.recv_into(&mut Vec::new()), Err(RecvError::Disconnected));
            {
                // A live sender again, nothing queued: a timeout.
                let tx = q.sender().unwrap();
                assert_eq!(rx.poll(Duration::from_millis(10)), Ok(false));
                assert_eq!(rx.poll(Duration::ZERO), Ok(false));
                tx.send(b"m").unwrap();
                assert_eq!(rx.poll(Duration::ZERO), Ok(true));
                assert_eq!(rx.poll(Duration::from_secs(60)), Ok(true));
                assert_eq!(q.len(), 1, "poll takes nothing");
                assert_eq!(rx.recv().unwrap(), b"m");
                assert_eq!(rx.poll(Duration::from_millis(10)), Ok(false));
                tx.send(b"last").unwrap();
            }
            // Gone, but a message waits.
            assert_eq!(rx.poll(Duration::from_secs(60)), Ok(true));
            assert_eq!(rx.recv().unwrap(), b"last");
            assert_eq!(
                rx.poll(Duration::from_secs(60)),
                Err(RecvError::Disconnected)
            );
        }
    });
}

// ---------------------------------------------------------------------------
// Bad input
// ---------------------------------------------------------------------------

#[test]
fn other_kind_of_queue_is_wrong_kind() {
    run("bytes_wrong_kind", |ctx| {
        let plain = ctx.name("plain");
        let _q = Queue::<u32>::create(&plain, Flavor::Spsc, 8).unwrap();
        match ByteQueue::open(&plain) {
            Err(e @ SegmentError::WrongKind { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains("byte queue"), "{msg}");
                let SegmentError::WrongKind { expected, found } = e else {
                    unreachable!()
                };
                assert_eq!((expected, found), (Kind::ByteQueue, Kind::Queue));
            }
            r => panic!("ByteQueue over Queue<u32>: expected WrongKind, got {r:?}"),
        }
        assert!(matches!(
            ByteQueue::builder().max_message_size(4).open(&plain),
            Err(SegmentError::WrongKind { .. })
        ));

        let bytes = ctx.name("bytes");
        let _b = ByteQueue::create(&bytes, Flavor::Mpmc, 8, 64).unwrap();
        for r in [
            Queue::<u32>::open(&bytes).map(drop),
            Queue::<u64>::open(&bytes).map(drop),
        ] {
            match r {
                Err(SegmentError::WrongKind { expected, found }) => {
                    assert_eq!((expected, found), (Kind::Queue, Kind::ByteQueue));
                }
                r => panic!("Queue over a byte queue: expected WrongKind, got {r:?}"),
            }
        }
        // Both are unharmed.
        let q = ByteQueue::open(&bytes).unwrap();
        assert_eq!(
            (q.flavor(), q.capacity(), q.max_message_size()),
            (Flavor::Mpmc, 8, 64)
        );
        assert_eq!(Queue::<u32>::open(&plain).unwrap().capacity(), 8);
    });
}

#[test]
fn bad_maximum_sizes_are_invalid_argument() {
    run("bytes_bad_max", |ctx| {
        let name = ctx.name("q");
        for flavor in [Flavor::Spsc, Flavor::Mpmc] {
            for bad in [0, MAX_MESSAGE + 1, u64::MAX] {
                match ByteQueue::create(&name, flavor, 4, bad) {
                    Err(SegmentError::InvalidArgument(_)) => {}
                    r => panic!("maximum {bad}: expected InvalidArgument, got {r:?}"),
                }
                assert!(matches!(
                    ByteQueue::anonymous(flavor, 4, bad),
                    Err(SegmentError::InvalidArgument(_))
                ));
                assert!(matches!(
                    ByteQueue::builder()
                        .flavor(flavor)
                        .capacity(4)
                        .max_message_size(bad)
                        .open_or_create(&name),
                    Err(SegmentError::InvalidArgument(_))
                ));
                assert!(!name.exists(), "a refused create left a file");
            }
            match ByteQueue::create(&name, flavor, 4, MAX_MESSAGE + 1) {
                Err(SegmentError::InvalidArgument(m)) => {
                    assert!(m.contains(&MAX_MESSAGE.to_string()), "{m}")
                }
                r => panic!("{r:?}"),
            }
            // Creating needs a maximum at all, and a capacity.
            assert!(matches!(
                ByteQueue::builder()
                    .flavor(flavor)
                    .capacity(4)
                    .create(&name),
                Err(SegmentError::InvalidArgument(_))
            ));
            assert!(matches!(
                ByteQueue::builder().max_message_size(8).create(&name),
                Err(SegmentError::InvalidArgument(_))
            ));
            assert!(matches!(
                ByteQueue::anonymous(flavor, 0, 8),
                Err(SegmentError::InvalidArgument(_))
            ));
            assert!(!name.exists());
        }
        // The smallest maximum works.
        let q = ByteQueue::anonymous(Flavor::Spsc, 2, 1).unwrap();
        let (tx, rx) = (q.sender().unwrap(), q.receiver().unwrap());
        tx.send(b"!").unwrap();
        assert_eq!(
            tx.send(b"!!"),
            Err(ByteSendError::TooLarge { len: 2, max: 1 })
        );
        assert_eq!(rx.recv().unwrap(), b"!");
    });
}

#[test]
fn other_maximum_size_is_message_size_mismatch() {
    run("bytes_size_mismatch", |ctx| {
        let name = ctx.name("q");
        let _q = ByteQueue::create(&name, Flavor::Spsc, 8, 64).unwrap();
        match ByteQueue::builder().max_message_size(65).open(&name) {
            Err(e @ SegmentError::MessageSizeMismatch { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains("65") && msg.contains("64"), "{msg}");
                let SegmentError::MessageSizeMismatch { expected, found } = e else {
                    unreachable!()
                };
                assert_eq!((expected, found), (65, 64));
            }
            r => panic!("expected MessageSizeMismatch, got {r:?}"),
        }
        assert!(matches!(
            ByteQueue::builder().max_message_size(63).open(&name),
            Err(SegmentError::MessageSizeMismatch {
                expected: 63,
                found: 64
            })
        ));
        // open_or_create checks too, and does not replace the queue.
        assert!(matches!(
            ByteQueue::builder()
                .capacity(8)
                .max_message_size(128)
                .open_or_create(&name),
            Err(SegmentError::MessageSizeMismatch {
                expected: 128,
                found: 64
            })
        ));
        // The other expectations are checked as for any queue.
        assert!(matches!(
            ByteQueue::builder().flavor(Flavor::Mpmc).open(&name),
            Err(SegmentError::FlavorMismatch { .. })
        ));
        assert!(matches!(
            ByteQueue::builder().capacity(9).open(&name),
            Err(SegmentError::CapacityMismatch { .. })
        ));
        // Matching expectations open fine.
        let q = ByteQueue::builder()
            .flavor(Flavor::Spsc)
            .capacity(8)
            .max_message_size(64)
            .open(&name)
            .unwrap();
        assert_eq!(q.max_message_size(), 64);
        let q = ByteQueue::builder()
            .capacity(8)
            .max_message_size(64)
            .open_or_create(&name)
            .unwrap();
        assert_eq!(q.max_message_size(), 64);
    });
}

#[test]
fn missing_name_is_not_found() {
    run("bytes_missing", |ctx| {
        let name = ctx.raw_name("never-created");
        match ByteQueue::open(&name) {
            Err(SegmentError::NotFound(n)) => assert!(n.contains(name.as_str())),
            r => panic!("expected NotFound, got {r:?}"),
        }
        assert!(matches!(
            ByteQueue::builder().max_message_size(8).open(&name),
            Err(SegmentError::NotFound(_))
        ));
        assert!(matches!(
            ByteQueue::unlink(&name),
            Err(SegmentError::NotFound(_))
        ));
        assert!(!name.exists());
    });
}

// ---------------------------------------------------------------------------
// Iterators and buffer reuse
// ---------------------------------------------------------------------------

#[test]
fn try_iter_and_iter() {
    run("bytes_iter", |ctx| {
        for flavor in [Flavor::Spsc, Flavor::Mpmc] {
            // try_iter: what is queued now, then stops while a sender lives.
            let q = ByteQueue::anonymous(flavor, 8, 16).unwrap();
            let tx = q.sender().unwrap();
            let rx = q.receiver().unwrap();
            assert_eq!(rx.try_iter().next(), None);
            let msgs: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; i as usize]).collect();
            for m in &msgs {
                tx.send(m).unwrap();
            }
            assert_eq!(rx.try_iter().collect::<Vec<_>>(), msgs);
            assert_eq!(rx.try_iter().next(), None);
            tx.send(b"later").unwrap();
            assert_eq!(rx.try_iter().collect::<Vec<_>>(), vec![b"later".to_vec()]);
            drop((tx, rx, q));

            // iter: blocks for a sender in another process (smaller than
            // what it sends, so it blocks on a full queue meanwhile), ends
            // when it has gone and the queue is drained.
            let name = ctx.name("q");
            let q = ByteQueue::create(&name, flavor, 4, 512).unwrap();
            let rx = q.receiver().unwrap();
            let k = 300u32;
            let mut child =
                spawn_child("child_byte_sender", &[&name, "0", &k.to_string(), "0", ""]);
            let mut n = 0u32;
            for m in rx.iter() {
                check_exact(&m, 0, n, 0, 512);
                n += 1;
            }
            assert_eq!(n, k);
            wait_ok(&mut child);
            assert_eq!(rx.try_iter().count(), 0);
            assert_eq!((&rx).into_iter().count(), 0);
        }
    });
}

#[test]
fn recv_into_reuses_the_buffer() {
    run("bytes_recv_into", |ctx| {
        for flavor in [Flavor::Spsc, Flavor::Mpmc] {
            let name = ctx.name("q");
            let max = 700usize;
            let q = ByteQueue::create(&name, flavor, 4, max as u64).unwrap();
            let rx = q.receiver().unwrap();
            let k = 400u32;
            let mut child =
                spawn_child("child_byte_sender", &[&name, "0", &k.to_string(), "0", ""]);
            let mut buf = Vec::with_capacity(max);
            buf.extend_from_slice(b"stale contents");
            let (ptr, cap) = (buf.as_ptr(), buf.capacity());
            for seq in 0..k {
                let n = match seq % 3 {
                    0 => rx.recv_into(&mut buf).unwrap(),
                    1 => rx
                        .recv_into_timeout(&mut buf, Duration::from_secs(60))
                        .unwrap(),
                    _ => loop {
                        match rx.try_recv_into(&mut buf) {
                            Ok(n) => break n,
                            Err(TryRecvError::Empty) => thread::yield_now(),
                            Err(e) => panic!("{e}"),
                        }
                    },
                };
                assert_eq!(n, buf.len());
                check_exact(&buf, 0, seq, 0, max);
                assert_eq!(
                    buf.as_ptr(),
                    ptr,
                    "message {seq}: the buffer was reallocated"
                );
                assert_eq!(buf.capacity(), cap);
            }
            wait_ok(&mut child);
            // A buffer too small grows to hold the message.
            let tx = q.sender().unwrap();
            let big = make(9, 9, max);
            tx.send(&big).unwrap();
            let mut small = Vec::with_capacity(4);
            small.push(1);
            assert_eq!(rx.recv_into(&mut small).unwrap(), max);
            assert_bytes(&small, &big, "into a small buffer");
        }
    });
}

// ---------------------------------------------------------------------------
// Skip records at the edges (regressions of the MPMC skip-bit comparison)
// ---------------------------------------------------------------------------

/// A dropped MPMC loan publishes the skip stamp `(pos + 1) | SKIP`. A
/// producer that comes round to that slot a lap later, before any consumer
/// has stepped over it, must find the queue full (and a timed send time
/// out), not corrupted.
#[test]
fn mpmc_full_queue_behind_a_skip_record_is_full_not_corrupted() {
    run("bytes_skip_full", |_| {
        for cap in [1u64, 2, 3] {
            let q = ByteQueue::anonymous(Flavor::Mpmc, cap, 16).unwrap();
            let mut tx = q.sender().unwrap();
            let rx = q.receiver().unwrap();
            drop(tx.loan(3).unwrap());
            for i in 1..cap {
                tx.send(&[i as u8]).unwrap();
            }
            assert_eq!(tx.try_send(b"z"), Err(ByteSendError::Full), "cap {cap}");
            assert_eq!(tx.try_loan(1).unwrap_err(), ByteSendError::Full);
            assert_eq!(
                tx.send_timeout(b"z", Duration::from_millis(10)),
                Err(ByteSendError::Timeout)
            );
            assert_eq!(
                tx.loan_timeout(1, Duration::from_millis(10)).unwrap_err(),
                ByteSendError::Timeout
            );
            // The skip record is stepped over on the way to the messages.
            for i in 1..cap {
                assert_eq!(rx.recv().unwrap(), [i as u8], "cap {cap}");
            }
            assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
            assert_eq!(q.len(), 0);
            // A blocked sender is let in once a receiver steps over it.
            // (This time the skip record is the last position of the lap.)
            for i in 1..cap {
                tx.send(&[i as u8]).unwrap();
            }
            drop(tx.loan(1).unwrap());
            assert!(q.is_full());
            let waiter = thread::spawn(move || {
                tx.send(b"z").unwrap();
                tx
            });
            for i in 1..cap {
                assert_eq!(rx.recv().unwrap(), [i as u8], "cap {cap}");
            }
            assert_eq!(rx.recv().unwrap(), b"z", "cap {cap}");
            let _tx = waiter.join().unwrap();
            assert_eq!(q.len(), 0);
        }
    });
}

/// A consumer that steps over a skip record moves `head` first and
/// releases the slot after. A consumer (or producer) that reaches the same
/// slot a lap later in between sees the old skip stamp: that is Empty
/// (Full), not Corrupted. The state between the two steps is made
/// directly: capacity 1, a dropped loan (slot 0 stamp `1 | SKIP`, tail 2)
/// and `head` moved to 2.
#[test]
fn mpmc_skip_record_being_stepped_over_reads_as_empty_and_full() {
    run("bytes_skip_step", |ctx| {
        let name = ctx.name("q");
        let q = ByteQueue::create(&name, Flavor::Mpmc, 1, 16).unwrap();
        let mut tx = q.sender().unwrap();
        let rx = q.receiver().unwrap();
        drop(tx.loan(1).unwrap());
        let path = name.path();
        let slots = read_u64(&path, SLOTS_OFFSET);
        assert_eq!(read_u64(&path, slots), 1 | (1 << 63), "the skip stamp");
        assert_eq!(read_u64(&path, TAIL), 2);
        assert_eq!(read_u64(&path, HEAD), 0);
        // A consumer has moved head past the skip record and not yet
        // released its slot.
        write_at(&path, HEAD, &2u64.to_le_bytes());
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
        assert_eq!(tx.try_send(b"z"), Err(ByteSendError::Full));
        // It releases the slot: all is well again.
        write_at(&path, slots, &2u64.to_le_bytes());
        tx.try_send(b"z").unwrap();
        assert_eq!(rx.try_recv().unwrap(), b"z");
        assert_eq!(q.len(), 0);
    });
}
