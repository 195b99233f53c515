//! loom models of the MPMC ring (Vyukov's per-slot stamps) through the
//! heap-backed queue.
//!
//! Producers race on the `tail` CAS and consumers on the `head` CAS; a slot
//! is reused only after its consumer released it. loom checks that every
//! slot access is ordered by the stamps (no data race on the `UnsafeCell`s);
//! the asserts check that every value arrives exactly once and that each
//! consumer sees each producer's values in the order they were sent.
//!
//! With more than two threads the models use the blocking calls: loom's
//! scheduler may alternate forever between two threads that spin with
//! `yield_now` while a third one, the one they wait for, never runs
//! (tokio-rs/loom#53), so `try_` loops with yields exceed any branch budget.
//! A blocked thread sleeps on a loom condvar instead and is not scheduled
//! until it is woken, which also puts the wait protocol under contention:
//! two consumers asleep on `not_empty`, producers asleep on `not_full`.
#![cfg(loom)]

use loom::thread;
use shmring::__internal::{HeapQueue, HeapReceiver, HeapSender};
use shmring::{Flavor, TryRecvError, TrySendError, WakeMode};
use shmring_loom_tests::builder;
use std::time::Duration;

#[derive(Clone, Copy)]
enum Calls {
    /// `try_send` / `try_recv`, `yield_now` on Full / Empty (two threads only).
    Try,
    /// `send_deadline` / `recv_deadline` with no deadline and no spinning.
    Blocking,
}

fn send_all(tx: &HeapSender<u64>, calls: Calls, values: impl IntoIterator<Item = u64>) {
    for v in values {
        match calls {
            Calls::Try => loop {
                match tx.try_send(v) {
                    Ok(()) => break,
                    Err(TrySendError::Full(back)) => {
                        assert_eq!(back, v, "Full must hand the value back");
                        thread::yield_now();
                    }
                    Err(e) => panic!("unexpected send error: {e:?}"),
                }
            },
            Calls::Blocking => tx
                .send_deadline(v, None, Duration::ZERO, &|| {})
                .expect("receivers are attached"),
        }
    }
}

fn recv_n(rx: &HeapReceiver<u64>, calls: Calls, n: usize) -> Vec<u64> {
    let mut got = Vec::with_capacity(n);
    while got.len() < n {
        match calls {
            Calls::Try => match rx.try_recv() {
                Ok(v) => got.push(v),
                Err(TryRecvError::Empty) => thread::yield_now(),
                Err(e) => panic!("unexpected receive error: {e:?}"),
            },
            Calls::Blocking => match rx.recv_deadline(None, Duration::ZERO, &|| {}) {
                Ok(Some(v)) => got.push(v),
                other => panic!("unexpected receive result: {other:?}"),
            },
        }
    }
    got
}

/// Within one consumer's stream, each producer's values come in send order.
fn assert_per_producer_fifo(stream: &[u64]) {
    for p in 0..2 {
        let mine: Vec<u64> = stream.iter().copied().filter(|v| v / 10 == p).collect();
        assert!(
            mine.windows(2).all(|w| w[0] < w[1]),
            "producer {p}'s values out of order: {stream:?}"
        );
    }
}

struct Shape {
    producers: u64,
    consumers: usize,
    per_producer: u64,
    capacity: u64,
    calls: Calls,
    /// A lower preemption bound than `LOOM_MAX_PREEMPTIONS`, for shapes too
    /// big to explore at the default.
    max_preemptions: Option<usize>,
}

/// `producers` threads each send `per_producer` values tagged `10 * p + i`
/// into a queue of `capacity`; `consumers` threads split the total evenly
/// (the last one runs on the model's main thread).
fn many_to_many(shape: Shape) {
    let Shape {
        producers,
        consumers,
        per_producer,
        capacity,
        calls,
        max_preemptions,
    } = shape;
    let mut b = builder();
    if let Some(cap) = max_preemptions {
        b.preemption_bound = b.preemption_bound.map(|n| n.min(cap));
    }
    b.check(move || {
        let q = HeapQueue::<u64>::new(Flavor::Mpmc, capacity, WakeMode::Fast);
        let total = (producers * per_producer) as usize;
        assert_eq!(total % consumers, 0);
        let share = total / consumers;

        // Attach everything before any thread runs: attach/detach are
        // modelled in disconnect.rs; here they would only add interleavings.
        let senders: Vec<_> = (0..producers)
            .map(|_| q.sender().expect("MPMC senders always attach"))
            .collect();
        let mut receivers: Vec<_> = (0..consumers)
            .map(|_| q.receiver().expect("MPMC receivers always attach"))
            .collect();
        let last = receivers.pop().unwrap();

        let mut handles = Vec::new();
        for (p, tx) in (0..producers).zip(senders) {
            handles.push(thread::spawn(move || {
                send_all(&tx, calls, (0..per_producer).map(|i| 10 * p + i));
                Vec::new()
            }));
        }
        for rx in receivers {
            handles.push(thread::spawn(move || recv_n(&rx, calls, share)));
        }

        let mut all = recv_n(&last, calls, share);
        assert_per_producer_fifo(&all);
        for h in handles {
            let got = h.join().unwrap();
            assert_per_producer_fifo(&got);
            all.extend(got);
        }
        all.sort_unstable();
        let mut want: Vec<u64> = (0..producers)
            .flat_map(|p| (0..per_producer).map(move |i| 10 * p + i))
            .collect();
        want.sort_unstable();
        assert_eq!(all, want, "every value exactly once");
        // Every sender is gone and the queue is drained.
        assert_eq!(last.try_recv(), Err(TryRecvError::Disconnected));
    });
}

// Cost at LOOM_MAX_PREEMPTIONS=2 (release build): 2 producers x 1 value into
// 2 consumers did not finish in 4 minutes, and 2 x 2 into 2 consumers takes
// about 2 minutes even at bound 1. So the four-thread shape runs with one
// value each at bound 1, and the contended sides are checked separately at
// the full bound with three threads.

/// 2 producers x 2 values, 1 consumer, capacity 2: the producers' `tail` CAS
/// race, a full ring with both producers asleep on `not_full`, and slot reuse
/// on the second lap. Per-producer FIFO order at the consumer.
#[test]
fn two_producers_one_consumer_capacity_2() {
    many_to_many(Shape {
        producers: 2,
        consumers: 1,
        per_producer: 2,
        capacity: 2,
        calls: Calls::Blocking,
        max_preemptions: None,
    });
}

/// 1 producer x 2 values, 2 consumers x 1 value, capacity 2: the consumers'
/// `head` CAS race, both consumers asleep on `not_empty`.
#[test]
fn one_producer_two_consumers_capacity_2() {
    many_to_many(Shape {
        producers: 1,
        consumers: 2,
        per_producer: 2,
        capacity: 2,
        calls: Calls::Blocking,
        max_preemptions: None,
    });
}

/// 2 producers, 2 consumers, capacity 2, one value each, at preemption bound
/// 1 (see above): both CAS races at once, every value exactly once.
#[test]
fn two_producers_two_consumers_capacity_2() {
    many_to_many(Shape {
        producers: 2,
        consumers: 2,
        per_producer: 1,
        capacity: 2,
        calls: Calls::Blocking,
        max_preemptions: Some(1),
    });
}

/// 1 producer, 1 consumer, capacity 1, `try_` calls: every message reuses
/// the one slot, crossing a lap each time (stamp `t + one_lap`).
#[test]
fn one_producer_one_consumer_capacity_1() {
    many_to_many(Shape {
        producers: 1,
        consumers: 1,
        per_producer: 3,
        capacity: 1,
        calls: Calls::Try,
        max_preemptions: None,
    });
}

/// Batch claims (`send_slice` / `recv_slice`): 2 producers each send the
/// slice `[10p, 10p + 1]` into a ring of capacity 3 (so claims get clamped at
/// the end of a lap) while 1 consumer takes batches of up to 3. A batch
/// claim checks every slot of the run before its one CAS, then writes and
/// publishes slot by slot; a consumer may claim the published prefix of a
/// producer's run. Every value exactly once, per-producer FIFO order.
#[test]
fn batch_claims_two_producers_one_consumer_capacity_3() {
    builder().check(|| {
        let q = HeapQueue::<u64>::new(Flavor::Mpmc, 3, WakeMode::Fast);
        let senders: Vec<_> = (0..2u64).map(|_| q.sender().unwrap()).collect();
        let rx = q.receiver().unwrap();
        let handles: Vec<_> = (0..2u64)
            .zip(senders)
            .map(|(p, tx)| {
                thread::spawn(move || {
                    tx.send_slice_deadline(&[10 * p, 10 * p + 1], None, Duration::ZERO, &|| {})
                        .expect("the receiver is attached");
                })
            })
            .collect();
        let mut all = Vec::new();
        let mut buf = [0u64; 3];
        while all.len() < 4 {
            let n = rx
                .recv_slice_deadline(&mut buf, None, Duration::ZERO, &|| {})
                .expect("senders are attached");
            assert!((1..=3).contains(&n), "a batch holds 1..=3 messages: {n}");
            all.extend_from_slice(&buf[..n]);
        }
        assert_per_producer_fifo(&all);
        for h in handles {
            h.join().unwrap();
        }
        all.sort_unstable();
        assert_eq!(all, vec![0, 1, 10, 11], "every value exactly once");
        assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
    });
}

/// Batch claims with `try_` calls, 1 producer and 1 consumer, capacity 2: a
/// 3-value slice never fits at once, so the producer sends partial batches
/// that cross laps, and the consumer's batches reuse slots released by its
/// own earlier batch.
#[test]
fn batch_try_calls_capacity_2() {
    builder().check(|| {
        let q = HeapQueue::<u64>::new(Flavor::Mpmc, 2, WakeMode::Fast);
        let tx = q.sender().unwrap();
        let rx = q.receiver().unwrap();
        let producer = thread::spawn(move || {
            let values = [1u64, 2, 3];
            let mut sent = 0;
            while sent < values.len() {
                match tx.try_send_slice(&values[sent..]) {
                    Ok(n) => {
                        assert!((1..=2).contains(&n), "a claim fits the ring: {n}");
                        sent += n;
                    }
                    Err(TrySendError::Full(())) => thread::yield_now(),
                    Err(e) => panic!("unexpected send error: {e:?}"),
                }
            }
        });
        let mut got = Vec::new();
        let mut buf = [0u64; 2];
        while got.len() < 3 {
            match rx.try_recv_slice(&mut buf) {
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(TryRecvError::Empty) => thread::yield_now(),
                Err(e) => panic!("unexpected receive error: {e:?}"),
            }
        }
        assert_eq!(got, vec![1, 2, 3]);
        producer.join().unwrap();
    });
}

/// Issue 10 item 8: a leaked loan (a claim never committed nor abandoned,
/// as after `mem::forget`) is settled by its sender's next call. Producer A
/// claims position 0 and leaks the claim, then sends 2 (its `try_send`
/// first abandons the leaked claim: a skip record, counted lost); producer
/// B sends 3 concurrently; the consumer (main thread) receives exactly 2
/// and 3, never the leaked slot's garbage, and `lost` is 1. A leaked `Ref`
/// likewise: the consumer's next receive releases it, and the producer
/// waiting for that slot gets through.
#[test]
fn leaked_claims_are_settled_by_the_next_call() {
    builder().check(|| {
        let q = HeapQueue::<u64>::new(Flavor::Mpmc, 2, WakeMode::Fast);
        let a = q.sender().expect("MPMC senders always attach");
        let b = q.sender().expect("MPMC senders always attach");
        let rx = q.receiver().expect("MPMC receivers always attach");
        let leaker = thread::spawn(move || {
            let c = a.try_claim().expect("capacity 2: room for both producers");
            a.write(&c, 0xdead);
            // Leaked: neither committed nor abandoned.
            send_all(&a, Calls::Blocking, [2]);
            a
        });
        let other = thread::spawn(move || {
            send_all(&b, Calls::Blocking, [3]);
            b
        });
        let mut got = recv_n(&rx, Calls::Blocking, 2);
        got.sort_unstable();
        assert_eq!(got, [2, 3], "the leaked claim is never delivered");
        let (a, b) = (leaker.join().unwrap(), other.join().unwrap());
        // Relaxed: the joins order the counts before this load.
        let lost = q
            .ctrl()
            .peers
            .lost
            .load(loom::sync::atomic::Ordering::Relaxed);
        assert_eq!(lost, 1, "the leaked loan's message, counted once");

        // A leaked Ref: the consumer's next receive releases its slot, so
        // the producer that needs that slot (capacity 2: 5 goes where 7
        // was) can send, and its values arrive.
        a.try_send(7).expect("the ring is empty");
        let leaked = rx.try_claim().expect("7 is published");
        assert_eq!(rx.read(&leaked), 7);
        let sender = thread::spawn(move || {
            send_all(&a, Calls::Blocking, [4, 5]);
            a
        });
        let rest = recv_n(&rx, Calls::Blocking, 2);
        assert_eq!(rest, [4, 5]);
        let _ = sender.join().unwrap();
        let lost = q
            .ctrl()
            .peers
            .lost
            .load(loom::sync::atomic::Ordering::Relaxed);
        assert_eq!(lost, 2, "the leaked Ref's message, counted once");
        drop(b);
    });
}

/// Model: wake-one with hand-off. Two consumers block on an empty
/// capacity-2 ring; the main thread claims position 0 with one sender, sends a
/// message at position 1 with another (its notify wakes one consumer, which may find
/// position 0 still unpublished and sleep again), then commits position 0
/// (its notify wakes one consumer). Each notify wakes one sleeper at most,
/// so the second message reaches a consumer only through the one woken
/// first passing the wake-up on when it finds more: a lost wake-up would
/// leave a consumer asleep for ever, which loom reports as a deadlock.
#[test]
fn out_of_order_commits_wake_both_sleepers() {
    builder().check(|| {
        let q = HeapQueue::<u64>::new(Flavor::Mpmc, 2, WakeMode::Strict);
        let (tx, tx2) = (q.sender().unwrap(), q.sender().unwrap());
        let consumers: Vec<_> = (0..2)
            .map(|_| {
                let rx = q.receiver().unwrap();
                thread::spawn(move || {
                    rx.recv_deadline(None, Duration::ZERO, &|| {})
                        .expect("a message")
                        .expect("no deadline")
                })
            })
            .collect();
        // A loan holds its sender (as `Sender::loan` borrows it): the
        // second message goes through another sender.
        let c = tx.try_claim().unwrap();
        tx2.try_send(2).unwrap();
        tx.write(&c, 1);
        tx.commit(c);
        let mut got: Vec<u64> = consumers.into_iter().map(|h| h.join().unwrap()).collect();
        got.sort_unstable();
        assert_eq!(got, vec![1, 2]);
    });
}
