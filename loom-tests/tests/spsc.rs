//! loom models of the SPSC ring through the heap-backed queue: one producer
//! thread, one consumer thread, non-blocking calls only.
//!
//! Small capacities (1 and 2) with more messages than slots make the ring
//! fill up and wrap around, so the producer overwrites slots the consumer has
//! just released: loom checks that every slot access is ordered (no data race
//! on the `UnsafeCell`s), and the asserts check FIFO order and exactly-once
//! delivery.
#![cfg(loom)]

use loom::thread;
use shmring::__internal::HeapQueue;
use shmring::{Flavor, TryRecvError, TrySendError, WakeMode};
use shmring_loom_tests::model;

/// Sends `0..n` one at a time and receives them on the model's main thread.
fn one_by_one(capacity: u64, n: u64, mode: WakeMode) {
    model(move || {
        let q = HeapQueue::<u64>::new(Flavor::Spsc, capacity, mode);
        let tx = q.sender().expect("first sender attaches");
        let rx = q.receiver().expect("first receiver attaches");

        let producer = thread::spawn(move || {
            for v in 0..n {
                loop {
                    match tx.try_send(v) {
                        Ok(()) => break,
                        Err(TrySendError::Full(back)) => {
                            assert_eq!(back, v, "Full must hand the value back");
                            thread::yield_now();
                        }
                        Err(e) => panic!("unexpected send error: {e:?}"),
                    }
                }
            }
        });

        let mut got = Vec::new();
        while got.len() < n as usize {
            match rx.try_recv() {
                Ok(v) => got.push(v),
                Err(TryRecvError::Empty) => thread::yield_now(),
                Err(e) => panic!("unexpected receive error: {e:?}"),
            }
        }
        producer.join().unwrap();
        // FIFO and exactly once.
        assert_eq!(got, (0..n).collect::<Vec<_>>());
        // Nothing extra, and with the sender gone the drained queue says so.
        assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
    });
}

#[test]
fn capacity_1_three_values() {
    one_by_one(1, 3, WakeMode::Fast);
}

#[test]
fn capacity_2_five_values() {
    one_by_one(2, 5, WakeMode::Strict);
}

/// The batch path: `try_send_slice` / `try_recv_slice`, which publish and
/// release once per batch. Five values through two slots: the batches are
/// split by the full ring and wrap around.
#[test]
fn batches_capacity_2() {
    const N: u64 = 5;
    model(|| {
        let q = HeapQueue::<u64>::new(Flavor::Spsc, 2, WakeMode::Fast);
        let tx = q.sender().expect("first sender attaches");
        let rx = q.receiver().expect("first receiver attaches");

        let producer = thread::spawn(move || {
            let values: Vec<u64> = (0..N).collect();
            let mut sent = 0;
            while sent < values.len() {
                match tx.try_send_slice(&values[sent..]) {
                    Ok(k) => {
                        assert!(k >= 1 && k <= values.len() - sent);
                        sent += k;
                    }
                    Err(TrySendError::Full(())) => thread::yield_now(),
                    Err(e) => panic!("unexpected send error: {e:?}"),
                }
            }
        });

        let mut got = Vec::new();
        let mut buf = [u64::MAX; 2];
        while got.len() < N as usize {
            match rx.try_recv_slice(&mut buf) {
                Ok(k) => {
                    assert!(k >= 1 && k <= buf.len());
                    got.extend_from_slice(&buf[..k]);
                }
                Err(TryRecvError::Empty) => thread::yield_now(),
                Err(e) => panic!("unexpected receive error: {e:?}"),
            }
        }
        producer.join().unwrap();
        assert_eq!(got, (0..N).collect::<Vec<_>>());
        assert_eq!(rx.try_recv_slice(&mut buf), Err(TryRecvError::Disconnected));
    });
}

/// A producer that attaches after its predecessor died between its last
/// stamp and its `tail` hint starts after the stamps, not at the stale
/// hint, while the consumer drains concurrently: nothing is overwritten,
/// nothing delivered twice, order kept.
#[test]
fn new_producer_starts_after_the_stamps_not_the_stale_hint() {
    model(|| {
        let q = HeapQueue::<u64>::new(Flavor::Spsc, 2, WakeMode::Fast);
        let rx = q.receiver().expect("first receiver attaches");
        {
            let tx = q.sender().expect("first sender attaches");
            tx.try_send(0).unwrap();
            tx.try_send(1).unwrap();
        }
        // As if that producer had died before storing its last hint.
        q.ctrl()
            .tail
            .store(1, loom::sync::atomic::Ordering::Relaxed);

        let consumer = thread::spawn(move || {
            let mut got = Vec::new();
            while got.len() < 3 {
                match rx.try_recv() {
                    Ok(v) => got.push(v),
                    // Between the two senders the queue has none.
                    Err(TryRecvError::Empty | TryRecvError::Disconnected) => thread::yield_now(),
                    Err(e) => panic!("unexpected receive error: {e:?}"),
                }
            }
            got
        });
        let tx = q.sender().expect("second sender attaches");
        loop {
            match tx.try_send(2) {
                Ok(()) => break,
                Err(TrySendError::Full(_)) => thread::yield_now(),
                Err(e) => panic!("unexpected send error: {e:?}"),
            }
        }
        assert_eq!(consumer.join().unwrap(), vec![0, 1, 2]);
    });
}
