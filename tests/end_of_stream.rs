//! The end of a stream, told apart from "no sender right now", with real
//! processes: `close` ends a stream for good (`Closed`, after every message
//! sent before it), dropping or dying does not (`Disconnected`, undone when
//! a sender attaches), `close_after(n)` waits for `n` producers started in
//! any order, a receiver can sleep through producers' restarts, and an
//! ended stream removes its name.
#![cfg(not(loom))]

mod common;

use common::{asleep, child_main, gettid, kill_child, run, spawn_child, wait_ok, wait_until, Args};
use shmring::{
    ByteQueue, Flavor, Queue, RecvError, RecvTimeoutError, SegmentError, SendError, TryRecvError,
};
use std::time::Duration;

const LONG: Duration = Duration::from_secs(60);

/// Child: opens queue `args[0]`, sends `args[1]..args[1]+args[2]`, then
/// `close`s (args[3] == "close"), returns (drops: "drop"), or waits to be
/// killed ("hang").
#[test]
#[ignore = "child process entry point"]
fn child_produce() {
    child_main("child_produce", |a: Args| {
        let q = Queue::<u64>::open(a.str(0)).unwrap();
        let tx = q.sender().unwrap();
        let (from, n): (u64, u64) = (a.get(1), a.get(2));
        for i in from..from + n {
            tx.send(i).unwrap();
        }
        match a.str(3) {
            "close" => {
                tx.close();
            }
            "drop" => drop(tx),
            _ => common::sleep_forever(),
        }
    });
}

/// Child: byte-queue producer: opens `args[0]`, sends `args[1]` messages
/// and closes.
#[test]
#[ignore = "child process entry point"]
fn child_produce_bytes() {
    child_main("child_produce_bytes", |a: Args| {
        let q = ByteQueue::open(a.str(0)).unwrap();
        let tx = q.sender().unwrap();
        for i in 0..a.get::<u32>(1) {
            tx.send(format!("message {i}").as_bytes()).unwrap();
        }
        assert!(tx.close(), "the only sender's close ends the stream");
    });
}

/// A producer in another process sends and closes: the receiver gets every
/// message, then `Closed` — and keeps getting it; no sender may attach any
/// more. Both flavors, typed and byte queues.
#[test]
fn close_ends_the_stream_after_the_last_message() {
    run("eos_close", |ctx| {
        for flavor in [Flavor::Spsc, Flavor::Mpmc] {
            let name = ctx.name("q");
            let q = Queue::<u64>::create(&name, flavor, 4).unwrap();
            let rx = q.receiver().unwrap();
            let mut child = spawn_child("child_produce", &[&name, "0", "100", "close"]);
            let got: Vec<u64> = (0..100).map(|_| rx.recv().unwrap()).collect();
            assert_eq!(got, (0..100).collect::<Vec<_>>());
            wait_ok(&mut child);
            assert_eq!(rx.recv(), Err(RecvError::Closed));
            assert_eq!(rx.try_recv(), Err(TryRecvError::Closed));
            assert_eq!(rx.recv_timeout(LONG), Err(RecvTimeoutError::Closed));
            assert!(rx.is_closed() && q.is_closed());
            assert!(matches!(q.sender(), Err(SegmentError::Closed)));
            // A receiver attached after the end drains nothing and sees it too.
            drop(rx);
            assert_eq!(q.receiver().unwrap().recv(), Err(RecvError::Closed));

            let name = ctx.name("b");
            let q = ByteQueue::create(&name, flavor, 4, 64).unwrap();
            let rx = q.receiver().unwrap();
            let mut child = spawn_child("child_produce_bytes", &[&name, "50"]);
            for i in 0..50 {
                assert_eq!(rx.recv().unwrap(), format!("message {i}").as_bytes());
            }
            wait_ok(&mut child);
            assert_eq!(rx.recv(), Err(RecvError::Closed));
            assert!(matches!(q.sender(), Err(SegmentError::Closed)));
        }
    });
}

/// Dropping a sender, or its process being killed, is not the end: the
/// receiver sees `Disconnected` once it has drained, and a sender that
/// attaches later undoes it; only a close ends the stream.
#[test]
fn a_dropped_or_killed_sender_is_not_a_close() {
    run("eos_not_close", |ctx| {
        let name = ctx.name("q");
        let q = Queue::<u64>::create(&name, Flavor::Mpmc, 8).unwrap();
        let rx = q.receiver().unwrap();
        let mut dropper = spawn_child("child_produce", &[&name, "0", "3", "drop"]);
        wait_ok(&mut dropper);
        assert_eq!(
            (0..3).map(|_| rx.recv().unwrap()).collect::<Vec<_>>(),
            [0, 1, 2]
        );
        assert_eq!(rx.recv(), Err(RecvError::Disconnected));
        let mut hang = spawn_child("child_produce", &[&name, "3", "3", "hang"]);
        // Undone by the next sender: wait for it (futex), then receive.
        assert!(rx.wait_connected(Some(LONG)));
        assert_eq!(
            (0..3).map(|_| rx.recv().unwrap()).collect::<Vec<_>>(),
            [3, 4, 5]
        );
        kill_child(&mut hang);
        // Found dead within a liveness slice: Disconnected, not Closed.
        assert_eq!(rx.recv(), Err(RecvError::Disconnected));
        assert!(!q.is_closed());
        let mut closer = spawn_child("child_produce", &[&name, "6", "1", "close"]);
        wait_ok(&mut closer);
        assert!(rx.wait_connected(Some(LONG)), "a queued message counts");
        assert_eq!(rx.recv(), Ok(6));
        assert_eq!(rx.recv(), Err(RecvError::Closed));
    });
}

/// `close_after(2)`: the first producer runs to its end, closes and exits
/// before the second starts; a receiver that waits for senders sleeps (on
/// the futex: its thread is seen asleep) through the gap, and the stream
/// ends only at the second close.
#[test]
fn close_after_waits_for_every_producer() {
    run("eos_close_after", |ctx| {
        let name = ctx.name("q");
        let q = Queue::<u64>::builder()
            .flavor(Flavor::Mpmc)
            .capacity(8)
            .close_after(2)
            .create(&name)
            .unwrap();
        // Opening with another count is refused; with the same, accepted.
        assert!(matches!(
            Queue::<u64>::builder().close_after(3).open(&name),
            Err(SegmentError::InvalidArgument(_))
        ));
        Queue::<u64>::builder().close_after(2).open(&name).unwrap();
        let mut rx = q.receiver().unwrap();
        rx.set_wait_for_senders(true);
        let mut first = spawn_child("child_produce", &[&name, "0", "4", "close"]);
        wait_ok(&mut first);
        assert!(!q.is_closed(), "one close of two");
        let (tid_tx, tid_rx) = std::sync::mpsc::channel();
        let consumer = std::thread::spawn(move || {
            tid_tx.send(gettid()).unwrap();
            let mut got = Vec::new();
            loop {
                match rx.recv() {
                    Ok(v) => got.push(v),
                    Err(e) => return (got, e),
                }
            }
        });
        let tid = tid_rx.recv().unwrap();
        // Drained the first producer's 4, then asleep waiting for a sender.
        wait_until("the consumer asleep with no sender", || asleep(tid));
        assert!(!consumer.is_finished());
        let mut second = spawn_child("child_produce", &[&name, "4", "4", "close"]);
        wait_ok(&mut second);
        let (got, end) = consumer.join().unwrap();
        assert_eq!(got, (0..8).collect::<Vec<_>>());
        assert_eq!(end, RecvError::Closed);
    });
}

/// A receiver that waits for senders returns `Timeout` (not
/// `Disconnected`) from a timed receive while none is attached, and a
/// message as soon as one attaches and sends; without the setting,
/// `Disconnected` at once (it can be undone, as the rustdoc says).
#[test]
fn waiting_for_senders_sleeps_through_disconnected() {
    run("eos_wait_senders", |ctx| {
        let name = ctx.name("q");
        let q = Queue::<u64>::create(&name, Flavor::Spsc, 4).unwrap();
        let mut rx = q.receiver().unwrap();
        drop(q.sender().unwrap());
        assert_eq!(
            rx.recv_timeout(Duration::from_millis(10)),
            Err(RecvTimeoutError::Disconnected)
        );
        rx.set_wait_for_senders(true);
        assert_eq!(
            rx.recv_timeout(Duration::from_millis(10)),
            Err(RecvTimeoutError::Timeout)
        );
        assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
        let mut child = spawn_child("child_produce", &[&name, "9", "1", "drop"]);
        assert_eq!(rx.recv_timeout(LONG), Ok(9));
        wait_ok(&mut child);
    });
}

/// A sender still attached when the stream is closed outright
/// (`Queue::close`) gets `Closed` back with its value; receivers drain,
/// and see `Closed` once it has left.
#[test]
fn queue_close_stops_every_sender() {
    run("eos_queue_close", |_ctx| {
        let q = Queue::<u64>::anonymous(Flavor::Mpmc, 4).unwrap();
        let (tx, rx) = (q.sender().unwrap(), q.receiver().unwrap());
        tx.send(1).unwrap();
        q.close();
        assert_eq!(tx.send(2), Err(SendError::Closed(2)));
        assert!(tx.try_send(3).unwrap_err().is_closed());
        assert_eq!(rx.recv(), Ok(1));
        // The stream is over once its last sender leaves.
        assert_eq!(
            rx.try_recv(),
            Err(TryRecvError::Empty),
            "tx is still attached"
        );
        drop(tx);
        assert_eq!(rx.recv(), Err(RecvError::Closed));
        assert!(matches!(q.sender(), Err(SegmentError::Closed)));
    });
}

/// Child: opens `args[0]`, receives until `Closed`, prints nothing, exits.
#[test]
#[ignore = "child process entry point"]
fn child_drain() {
    child_main("child_drain", |a: Args| {
        let q = Queue::<u64>::open(a.str(0)).unwrap();
        let mut rx = q.receiver().unwrap();
        rx.set_wait_for_senders(true);
        let n = rx.iter().count() as u64;
        assert_eq!(n, a.get::<u64>(1));
        assert_eq!(rx.recv(), Err(RecvError::Closed));
    });
}

/// A named stream that ended — closed, every message taken, its last
/// endpoint gone — removes its name, in whichever process leaves last. A
/// closed stream still holding messages keeps it until they are taken; a
/// later `open_or_create` starts a new stream.
#[test]
fn an_ended_stream_removes_its_name() {
    run("eos_removed", |ctx| {
        // Closed and drained in other processes: the name goes.
        let name = ctx.removed_name("q");
        {
            let q = Queue::<u64>::create(&name, Flavor::Mpmc, 8).unwrap();
            let mut a = spawn_child("child_drain", &[&name, "5"]);
            let mut b = spawn_child("child_produce", &[&name, "0", "5", "close"]);
            wait_ok(&mut b);
            wait_ok(&mut a);
            assert!(!name.exists(), "the last to leave removed it");
            assert!(q.is_closed(), "this handle still maps the old stream");
        }

        // Closed with messages left and nobody attached: kept, with them.
        let name = ctx.removed_name("kept");
        let q = Queue::<u64>::builder()
            .flavor(Flavor::Mpmc)
            .capacity(8)
            .open_or_create(&name)
            .unwrap();
        let mut b = spawn_child("child_produce", &[&name, "0", "3", "close"]);
        wait_ok(&mut b);
        assert!(q.is_closed());
        assert!(name.exists(), "three messages still queued");
        let rx = Queue::<u64>::open(&name).unwrap().receiver().unwrap();
        assert_eq!(rx.iter().collect::<Vec<_>>(), [0, 1, 2]);
        assert!(name.exists(), "a receiver is still attached");
        drop(rx);
        assert!(!name.exists(), "drained and left: removed");

        // The same name starts a new stream.
        let fresh = Queue::<u64>::builder()
            .flavor(Flavor::Mpmc)
            .capacity(8)
            .open_or_create(&name)
            .unwrap();
        assert!(!fresh.is_closed());
        let tx = fresh.sender().unwrap();
        tx.send(1).unwrap();
        assert!(tx.close());
        let rx = fresh.receiver().unwrap();
        assert_eq!(rx.recv(), Ok(1));
        assert_eq!(rx.recv(), Err(RecvError::Closed));
        drop(rx);
        assert!(!name.exists());
        drop(q);
    });
}

/// Child: opens `args[0]`, receives `args[1]` messages, exits (drops).
#[test]
#[ignore = "child process entry point"]
fn child_take() {
    child_main("child_take", |a: Args| {
        let q = Queue::<u64>::open(a.str(0)).unwrap();
        let rx = q.receiver().unwrap();
        for _ in 0..a.get::<u64>(1) {
            rx.recv_timeout(LONG).unwrap();
        }
    });
}

/// A sender that waits for receivers sleeps (futex) through the gap
/// between one consumer's exit and the next one's start, instead of
/// returning `Disconnected`; without the setting, `Disconnected`.
#[test]
fn waiting_for_receivers_sleeps_through_disconnected() {
    run("eos_wait_receivers", |ctx| {
        let name = ctx.name("q");
        let q = Queue::<u64>::create(&name, Flavor::Spsc, 1).unwrap();
        let mut tx = q.sender().unwrap();
        let mut first = spawn_child("child_take", &[&name, "1"]);
        tx.send(1).unwrap();
        wait_ok(&mut first);
        assert_eq!(tx.send(2), Err(SendError::Disconnected(2)));
        tx.set_wait_for_receivers(true);
        assert!(tx
            .send_timeout(2, Duration::from_millis(10))
            .unwrap_err()
            .is_timeout());
        let (tid_tx, tid_rx) = std::sync::mpsc::channel();
        let producer = std::thread::spawn(move || {
            tid_tx.send(gettid()).unwrap();
            tx.send(2).and_then(|()| tx.send(3))
        });
        let tid = tid_rx.recv().unwrap();
        wait_until("the producer asleep with no receiver", || asleep(tid));
        let mut second = spawn_child("child_take", &[&name, "2"]);
        assert_eq!(producer.join().unwrap(), Ok(()));
        wait_ok(&mut second);
    });
}
