//! SPSC queues between real processes: ten million messages in order, both
//! directions, batches, `Pod` structs, and the one-sender/one-receiver rule.
#![cfg(not(loom))]

mod common;

use bytemuck::{Pod, Zeroable};
use common::{child_main, kill_child, run, spawn_child, wait_ok, wait_until, Args};
use shmring::{Flavor, Queue, RecvError, Role, SegmentError};

/// Messages in the big ordered stream.
const TEN_MILLION: u64 = 10_000_000;

/// Receives `u64`s until the queue disconnects, checking that they are
/// `0, 1, 2, ...`; returns how many arrived. Batches of `batch` (1: `recv`).
fn recv_sequence(rx: &shmring::Receiver<u64>, batch: usize) -> u64 {
    let mut expect = 0u64;
    if batch == 1 {
        loop {
            match rx.recv() {
                Ok(v) => {
                    if v != expect {
                        panic!("message {expect} arrived as {v}");
                    }
                    expect += 1;
                }
                Err(RecvError::Disconnected) => return expect,
                Err(e) => panic!("recv failed after {expect} messages: {e}"),
            }
        }
    }
    let mut buf = vec![0u64; batch];
    loop {
        match rx.recv_slice(&mut buf) {
            Ok(n) => {
                assert!(n >= 1, "recv_slice returned 0 on a non-empty buffer");
                for &v in &buf[..n] {
                    if v != expect {
                        panic!("message {expect} arrived as {v}");
                    }
                    expect += 1;
                }
            }
            Err(RecvError::Disconnected) => return expect,
            Err(e) => panic!("recv_slice failed after {expect} messages: {e}"),
        }
    }
}

/// Sends `0..count`, in batches of `batch` (1: `send`).
fn send_sequence(tx: &shmring::Sender<u64>, count: u64, batch: usize) {
    if batch == 1 {
        for i in 0..count {
            tx.send(i).unwrap_or_else(|e| panic!("send {i}: {e}"));
        }
        return;
    }
    let mut buf = vec![0u64; batch];
    let mut next = 0u64;
    while next < count {
        let n = (count - next).min(batch as u64) as usize;
        for (k, slot) in buf[..n].iter_mut().enumerate() {
            *slot = next + k as u64;
        }
        tx.send_slice(&buf[..n])
            .unwrap_or_else(|e| panic!("send_slice at {next}: {e}"));
        next += n as u64;
    }
}

/// Child: opens queue `args[0]`, sends `0..args[1]` in batches of `args[2]`.
#[test]
#[ignore = "child process entry point"]
fn child_send_sequence() {
    child_main("child_send_sequence", |a: Args| {
        let q = Queue::<u64>::open(a.str(0)).unwrap();
        assert_eq!(q.flavor(), Flavor::Spsc);
        let tx = q.sender().unwrap();
        send_sequence(&tx, a.get(1), a.get(2));
    });
}

/// Child: opens queue `args[0]`, receives until disconnected, checks that
/// exactly `0..args[1]` arrived in order (batches of `args[2]`).
#[test]
#[ignore = "child process entry point"]
fn child_recv_sequence() {
    child_main("child_recv_sequence", |a: Args| {
        let q = Queue::<u64>::open(a.str(0)).unwrap();
        let rx = q.receiver().unwrap();
        let got = recv_sequence(&rx, a.get(2));
        assert_eq!(got, a.get::<u64>(1));
    });
}

#[test]
fn ten_million_in_order_child_to_parent() {
    run("spsc_10m", |ctx| {
        let name = ctx.name("q");
        let q = Queue::<u64>::create(&name, Flavor::Spsc, 4096).unwrap();
        let rx = q.receiver().unwrap();
        let mut child = spawn_child(
            "child_send_sequence",
            &[&name, &TEN_MILLION.to_string(), "1024"],
        );
        assert_eq!(recv_sequence(&rx, 4096), TEN_MILLION);
        wait_ok(&mut child);
    });
}

#[test]
fn parent_to_child_in_order_one_by_one() {
    run("spsc_p2c", |ctx| {
        let name = ctx.name("q");
        let q = Queue::<u64>::create(&name, Flavor::Spsc, 1024).unwrap();
        let tx = q.sender().unwrap();
        let count: u64 = 300_000;
        let mut child = spawn_child("child_recv_sequence", &[&name, &count.to_string(), "1"]);
        send_sequence(&tx, count, 1);
        drop(tx);
        wait_ok(&mut child);
    });
}

#[test]
fn child_to_parent_one_by_one() {
    run("spsc_c2p_single", |ctx| {
        let name = ctx.name("q");
        let q = Queue::<u64>::create(&name, Flavor::Spsc, 1000).unwrap();
        let rx = q.receiver().unwrap();
        let count: u64 = 300_000;
        let mut child = spawn_child("child_send_sequence", &[&name, &count.to_string(), "1"]);
        assert_eq!(recv_sequence(&rx, 1), count);
        wait_ok(&mut child);
    });
}

/// Child: sends `0..args[1]` on `args[0]` in batches of pseudo-random sizes
/// (seed `args[2]`), mixing `send_slice`, `try_send_slice` and `send`.
#[test]
#[ignore = "child process entry point"]
fn child_send_batches() {
    child_main("child_send_batches", |a: Args| {
        let q = Queue::<u64>::open(a.str(0)).unwrap();
        let tx = q.sender().unwrap();
        let count: u64 = a.get(1);
        let mut rng = common::Rng::new(a.get(2));
        let mut next = 0u64;
        let mut buf = Vec::new();
        while next < count {
            let n = rng.range(1, 300).min(count - next);
            buf.clear();
            buf.extend(next..next + n);
            match rng.range(0, 3) {
                0 => {
                    // try_send_slice sends a prefix; retry the rest.
                    let mut done = 0;
                    while done < buf.len() {
                        match tx.try_send_slice(&buf[done..]) {
                            Ok(k) => done += k,
                            Err(shmring::TrySendError::Full(())) => std::thread::yield_now(),
                            Err(e) => panic!("try_send_slice: {e}"),
                        }
                    }
                }
                1 => {
                    for &v in &buf {
                        tx.send(v).unwrap();
                    }
                }
                _ => tx.send_slice(&buf).unwrap(),
            }
            next += n;
        }
    });
}

#[test]
fn batches_across_processes() {
    run("spsc_batches", |ctx| {
        let name = ctx.name("q");
        // Not a power of two: batches straddle the end of the slot array.
        let q = Queue::<u64>::create(&name, Flavor::Spsc, 100).unwrap();
        let rx = q.receiver().unwrap();
        let count: u64 = 400_000;
        let mut child = spawn_child("child_send_batches", &[&name, &count.to_string(), "7"]);
        let mut rng = common::Rng::new(11);
        let mut buf = vec![0u64; 512];
        let mut expect = 0u64;
        loop {
            let want = rng.range(1, 512) as usize;
            let r = if rng.range(0, 1) == 0 {
                rx.recv_slice(&mut buf[..want])
            } else {
                match rx.try_recv_slice(&mut buf[..want]) {
                    Ok(n) => Ok(n),
                    Err(shmring::TryRecvError::Empty) => {
                        std::thread::yield_now();
                        continue;
                    }
                    Err(shmring::TryRecvError::Disconnected) => Err(RecvError::Disconnected),
                    Err(e) => panic!("try_recv_slice: {e}"),
                }
            };
            match r {
                Ok(n) => {
                    assert!((1..=want).contains(&n), "got {n} for a buffer of {want}");
                    for &v in &buf[..n] {
                        assert_eq!(v, expect, "out of order");
                        expect += 1;
                    }
                }
                Err(RecvError::Disconnected) => break,
                Err(e) => panic!("recv_slice: {e}"),
            }
        }
        assert_eq!(expect, count);
        wait_ok(&mut child);
    });
}

/// A fixed-layout record, as a user would send (no padding: `Pod`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
struct Tick {
    seq: u64,
    price: f64,
    xyz: [f32; 3],
    flags: u32,
    symbol: [u8; 16],
}

impl Tick {
    fn for_seq(seq: u64) -> Self {
        let mut symbol = [0u8; 16];
        for (i, b) in symbol.iter_mut().enumerate() {
            *b = (seq as u8).wrapping_mul(31).wrapping_add(i as u8);
        }
        Tick {
            seq,
            price: seq as f64 * 0.25 - 1e6,
            xyz: [seq as f32, -(seq as f32), 0.5],
            flags: (seq as u32).rotate_left(7) ^ 0xdead_beef,
            symbol,
        }
    }
}

/// An embedding vector, as in the design's first use case.
type Embedding = [f32; 384];

fn embedding_for(seq: u64) -> Embedding {
    let mut e = [0f32; 384];
    for (i, x) in e.iter_mut().enumerate() {
        *x = (seq * 384 + i as u64) as f32 * 0.001;
    }
    e
}

/// Child: sends `args[1]` `Tick`s on `args[0]`, and `args[1] / 10`
/// embeddings on `args[2]`.
#[test]
#[ignore = "child process entry point"]
fn child_send_structs() {
    child_main("child_send_structs", |a: Args| {
        let count: u64 = a.get(1);
        let ticks = Queue::<Tick>::open(a.str(0)).unwrap();
        let tx = ticks.sender().unwrap();
        for i in 0..count {
            tx.send(Tick::for_seq(i)).unwrap();
        }
        // The parent reads the ticks to their disconnect before it reads
        // the embeddings.
        drop(tx);
        let emb = Queue::<Embedding>::open(a.str(2)).unwrap();
        let etx = emb.sender().unwrap();
        for i in 0..count / 10 {
            etx.send(embedding_for(i)).unwrap();
        }
    });
}

#[test]
fn pod_structs_round_trip() {
    run("spsc_structs", |ctx| {
        let tname = ctx.name("ticks");
        let ename = ctx.name("emb");
        let ticks = Queue::<Tick>::create(&tname, Flavor::Spsc, 64).unwrap();
        let emb = Queue::<Embedding>::create(&ename, Flavor::Spsc, 8).unwrap();
        assert_eq!(ticks.info().elem.size, std::mem::size_of::<Tick>() as u64);
        assert_eq!(emb.info().elem.size, 384 * 4);
        let rx = ticks.receiver().unwrap();
        let erx = emb.receiver().unwrap();
        let count: u64 = 20_000;
        let mut child = spawn_child("child_send_structs", &[&tname, &count.to_string(), &ename]);
        for i in 0..count {
            assert_eq!(rx.recv().unwrap(), Tick::for_seq(i));
        }
        assert_eq!(rx.recv(), Err(RecvError::Disconnected));
        for i in 0..count / 10 {
            let got = erx.recv().unwrap();
            assert!(got == embedding_for(i), "embedding {i} differs");
        }
        assert_eq!(erx.recv(), Err(RecvError::Disconnected));
        wait_ok(&mut child);
    });
}

#[test]
fn second_sender_or_receiver_is_refused_in_process() {
    run("spsc_roles_local", |ctx| {
        let name = ctx.name("q");
        let q = Queue::<u64>::create(&name, Flavor::Spsc, 8).unwrap();
        let other = Queue::<u64>::open(&name).unwrap();

        let tx = q.sender().unwrap();
        for h in [&q, &other] {
            match h.sender() {
                Err(SegmentError::RoleTaken {
                    role: Role::Sender, ..
                }) => {}
                r => panic!("second sender: expected RoleTaken(Sender), got {r:?}"),
            }
        }
        let rx = other.receiver().unwrap();
        for h in [&q, &other] {
            match h.receiver() {
                Err(SegmentError::RoleTaken {
                    role: Role::Receiver,
                    ..
                }) => {}
                r => panic!("second receiver: expected RoleTaken(Receiver), got {r:?}"),
            }
        }
        let msg = format!(
            "{}",
            SegmentError::RoleTaken {
                role: Role::Sender,
                holder: Some(42)
            }
        );
        assert!(msg.contains("sender") && msg.contains("pid 42"), "{msg}");
        assert_eq!(q.endpoints(), (1, 1));

        tx.send(1).unwrap();
        tx.send(2).unwrap();
        drop(tx);
        // A new sender takes over where the old one stopped.
        let tx2 = other.sender().unwrap();
        tx2.send(3).unwrap();
        assert_eq!(rx.recv().unwrap(), 1);
        drop(rx);
        let rx2 = q.receiver().unwrap();
        assert_eq!(rx2.recv().unwrap(), 2);
        assert_eq!(rx2.recv().unwrap(), 3);
        assert_eq!(q.endpoints(), (1, 1));
    });
}

/// Child: opens `args[0]`, attaches a sender, announces itself by sending
/// 1, then waits for a word on control queue `args[1]` before exiting (or,
/// with `args[2] == "hang"`, sleeps until killed).
#[test]
#[ignore = "child process entry point"]
fn child_hold_sender() {
    child_main("child_hold_sender", |a: Args| {
        let q = Queue::<u64>::open(a.str(0)).unwrap();
        let tx = q.sender().unwrap();
        tx.send(1).unwrap();
        if a.str(2) == "hang" {
            common::sleep_forever();
        }
        let ctl = Queue::<u64>::open(a.str(1)).unwrap();
        let go = ctl.receiver().unwrap();
        assert_eq!(go.recv().unwrap(), 0);
        drop(tx);
    });
}

/// Child: opens `args[0]`, attaches a receiver, waits for the control word
/// on `args[1]` (or sleeps until killed with `args[2] == "hang"`).
#[test]
#[ignore = "child process entry point"]
fn child_hold_receiver() {
    child_main("child_hold_receiver", |a: Args| {
        let q = Queue::<u64>::open(a.str(0)).unwrap();
        let _rx = q.receiver().unwrap();
        if a.str(2) == "hang" {
            common::sleep_forever();
        }
        let ctl = Queue::<u64>::open(a.str(1)).unwrap();
        let go = ctl.receiver().unwrap();
        assert_eq!(go.recv().unwrap(), 0);
    });
}

#[test]
fn second_sender_is_refused_across_processes() {
    run("spsc_roles_tx", |ctx| {
        let name = ctx.name("q");
        let ctl_name = ctx.name("ctl");
        let q = Queue::<u64>::create(&name, Flavor::Spsc, 8).unwrap();
        let ctl = Queue::<u64>::create(&ctl_name, Flavor::Spsc, 1).unwrap();
        let go = ctl.sender().unwrap();
        let rx = q.receiver().unwrap();
        let mut child = spawn_child("child_hold_sender", &[&name, &ctl_name, "wait"]);
        assert_eq!(rx.recv().unwrap(), 1);
        match q.sender() {
            Err(SegmentError::RoleTaken {
                role: Role::Sender, ..
            }) => {}
            r => panic!("expected RoleTaken(Sender) while the child holds it, got {r:?}"),
        }
        go.send(0).unwrap();
        wait_ok(&mut child);
        // The child dropped its sender: ours may attach now.
        let tx = q.sender().unwrap();
        tx.send(2).unwrap();
        assert_eq!(rx.recv().unwrap(), 2);

        // A sender whose process was killed is reclaimed on the next attach.
        drop(tx);
        let mut child = spawn_child("child_hold_sender", &[&name, &ctl_name, "hang"]);
        // Every earlier sender has left, so until the child attaches, `recv`
        // would report a disconnect: wait for the child first.
        wait_until("the child's sender", || q.endpoints().0 == 1);
        assert_eq!(rx.recv().unwrap(), 1);
        assert!(matches!(
            q.sender(),
            Err(SegmentError::RoleTaken {
                role: Role::Sender,
                ..
            })
        ));
        kill_child(&mut child);
        let tx = q.sender().unwrap();
        assert_eq!(q.reaped(), 1);
        tx.send(3).unwrap();
        assert_eq!(rx.recv().unwrap(), 3);
    });
}

#[test]
fn second_receiver_is_refused_across_processes() {
    run("spsc_roles_rx", |ctx| {
        let name = ctx.name("q");
        let ctl_name = ctx.name("ctl");
        let q = Queue::<u64>::create(&name, Flavor::Spsc, 8).unwrap();
        let ctl = Queue::<u64>::create(&ctl_name, Flavor::Spsc, 1).unwrap();
        let go = ctl.sender().unwrap();
        let mut child = spawn_child("child_hold_receiver", &[&name, &ctl_name, "wait"]);
        wait_until("the child's receiver", || q.endpoints().1 == 1);
        match q.receiver() {
            Err(SegmentError::RoleTaken {
                role: Role::Receiver,
                ..
            }) => {}
            r => panic!("expected RoleTaken(Receiver) while the child holds it, got {r:?}"),
        }
        go.send(0).unwrap();
        wait_ok(&mut child);
        let rx = q.receiver().unwrap();
        drop(rx);

        let mut child = spawn_child("child_hold_receiver", &[&name, &ctl_name, "hang"]);
        wait_until("the child's receiver", || q.endpoints().1 == 1);
        assert!(matches!(
            q.receiver(),
            Err(SegmentError::RoleTaken {
                role: Role::Receiver,
                ..
            })
        ));
        kill_child(&mut child);
        let rx = q.receiver().unwrap();
        assert_eq!(q.reaped(), 1);
        let tx = q.sender().unwrap();
        tx.send(9).unwrap();
        assert_eq!(rx.recv().unwrap(), 9);
    });
}

/// The `tail` word is a hint the producer stores after its slot stamps. A
/// producer killed between its last stamp and that store leaves the hint one
/// behind (made here directly, as the kill would): the next producer starts
/// after the stamps, so nothing is overwritten, lost or delivered twice,
/// and its first send brings the hint (and `len`) up to date.
#[test]
fn a_stale_tail_hint_costs_nothing() {
    use std::os::unix::fs::FileExt;
    run("spsc_stale_hint", |ctx| {
        const TAIL: u64 = 256 + 128;
        let name = ctx.name("q");
        let q = Queue::<u64>::create(&name, Flavor::Spsc, 4).unwrap();
        let rx = q.receiver().unwrap();
        let tx = q.sender().unwrap();
        for v in 0..3 {
            tx.send(v).unwrap();
        }
        drop(tx);
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(name.path())
            .unwrap();
        file.write_all_at(&2u64.to_le_bytes(), TAIL).unwrap();
        assert_eq!(q.len(), 2, "len reads the hint");
        // The receiver takes one meanwhile (it polls the stamps, not the hint).
        assert_eq!(rx.recv().unwrap(), 0);
        let tx = q.sender().unwrap();
        assert_eq!(q.len(), 2, "the attach found the true end");
        tx.send(3).unwrap();
        tx.send(4).unwrap();
        assert!(
            matches!(tx.try_send(5), Err(shmring::TrySendError::Full(5))),
            "four in flight"
        );
        let mut buf = [0u64; 8];
        assert_eq!(rx.recv_slice(&mut buf), Ok(4));
        assert_eq!(buf[..4], [1, 2, 3, 4]);

        // The consumer ahead of the hint (it took what the hint does not
        // show yet): the next producer starts at the consumer's position.
        tx.send(5).unwrap();
        drop(tx);
        file.write_all_at(&5u64.to_le_bytes(), TAIL).unwrap();
        assert_eq!(rx.recv().unwrap(), 5);
        assert_eq!(q.len(), 0, "a hint behind the head reads as empty");
        let tx = q.sender().unwrap();
        tx.send(6).unwrap();
        assert_eq!(q.len(), 1);
        assert_eq!(rx.recv().unwrap(), 6);
    });
}
