//! MPMC queues: four producer processes and four consumer processes on one
//! small queue, every message delivered exactly once; odd capacities.
#![cfg(not(loom))]

mod common;

use common::{child_main, kill_child, run, sleep_forever, spawn_child, wait_ok, wait_until, Args};
use shmring::{
    Flavor, Queue, RecvError, RecvTimeoutError, SendTimeoutError, TryRecvError, TrySendError,
};
use std::time::Duration;

const PRODUCERS: u64 = 4;
const CONSUMERS: u64 = 4;
const PER_PRODUCER: u64 = 25_000;

/// A message: producer id in the high half, sequence number in the low.
fn encode(producer: u64, seq: u64) -> u64 {
    (producer << 32) | seq
}

fn decode(v: u64) -> (u64, u64) {
    (v >> 32, v & 0xffff_ffff)
}

/// Child producer: on queue `args[0]`, as producer `args[1]`, sends
/// `args[2]` messages, each way of sending by turns.
#[test]
#[ignore = "child process entry point"]
fn child_producer() {
    child_main("child_producer", |a: Args| {
        let q = Queue::<u64>::open(a.str(0)).unwrap();
        assert_eq!(q.flavor(), Flavor::Mpmc);
        let tx = q.sender().unwrap();
        let id: u64 = a.get(1);
        let count: u64 = a.get(2);
        let mut seq = 0;
        while seq < count {
            match (seq / 100) % 3 {
                0 => {
                    tx.send(encode(id, seq)).unwrap();
                    seq += 1;
                }
                1 => {
                    let mut v = encode(id, seq);
                    loop {
                        match tx.send_timeout(v, Duration::from_millis(5)) {
                            Ok(()) => break,
                            Err(SendTimeoutError::Timeout(back)) => v = back,
                            Err(e) => panic!("send_timeout: {e}"),
                        }
                    }
                    seq += 1;
                }
                _ => {
                    let n = 17.min(count - seq);
                    let batch: Vec<u64> = (seq..seq + n).map(|s| encode(id, s)).collect();
                    tx.send_slice(&batch).unwrap();
                    seq += n;
                }
            }
        }
    });
}

/// Child consumer: on queue `args[0]`, as consumer `args[1]`, receives
/// until disconnected and writes what it got, in order, to file `args[2]`
/// (little-endian `u64`s).
#[test]
#[ignore = "child process entry point"]
fn child_consumer() {
    child_main("child_consumer", |a: Args| {
        let q = Queue::<u64>::open(a.str(0)).unwrap();
        let rx = q.receiver().unwrap();
        let id: u64 = a.get(1);
        let mut got = Vec::new();
        let mut buf = [0u64; 13];
        loop {
            let r = match id % 3 {
                0 => rx.recv().map(|v| got.push(v)),
                1 => match rx.recv_timeout(Duration::from_millis(5)) {
                    Ok(v) => {
                        got.push(v);
                        Ok(())
                    }
                    Err(RecvTimeoutError::Timeout) => Ok(()),
                    Err(RecvTimeoutError::Disconnected) => Err(RecvError::Disconnected),
                    Err(e) => panic!("recv_timeout: {e}"),
                },
                _ => rx
                    .recv_slice(&mut buf)
                    .map(|n| got.extend_from_slice(&buf[..n])),
            };
            match r {
                Ok(()) => {}
                Err(RecvError::Disconnected) => break,
                Err(e) => panic!("recv: {e}"),
            }
        }
        let bytes: Vec<u8> = got.iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(a.str(2), bytes).unwrap();
    });
}

/// Checks that `received` (one list per consumer, in its order of receipt)
/// holds every `(producer, seq)` exactly once, nothing else, and that each
/// consumer saw each producer's messages in increasing order (FIFO).
fn check_exactly_once(received: &[Vec<u64>], producers: u64, per_producer: u64) {
    let mut seen = vec![vec![false; per_producer as usize]; producers as usize];
    let mut total = 0u64;
    for (c, list) in received.iter().enumerate() {
        let mut last = vec![None::<u64>; producers as usize];
        for &v in list {
            let (p, s) = decode(v);
            assert!(
                p < producers && s < per_producer,
                "consumer {c} got a message never sent: {v:#x}"
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
    assert_eq!(total, producers * per_producer);
}

#[test]
fn four_producers_four_consumers_across_processes() {
    run("mpmc_4x4", |ctx| {
        let name = ctx.name("q");
        let dir = tempfile::tempdir().unwrap();
        // Small: producers and consumers contend, and positions wrap often.
        let q = Queue::<u64>::create(&name, Flavor::Mpmc, 64).unwrap();
        // Hold a sender until every producer has finished, so that the
        // consumers cannot see a disconnect between one producer leaving
        // and the next attaching.
        let hold = q.sender().unwrap();
        let outs: Vec<_> = (0..CONSUMERS)
            .map(|c| dir.path().join(format!("consumer-{c}.bin")))
            .collect();
        let mut consumers: Vec<_> = outs
            .iter()
            .enumerate()
            .map(|(c, out)| {
                spawn_child(
                    "child_consumer",
                    &[&name, &c.to_string(), out.to_str().unwrap()],
                )
            })
            .collect();
        let mut producers: Vec<_> = (0..PRODUCERS)
            .map(|p| {
                spawn_child(
                    "child_producer",
                    &[&name, &p.to_string(), &PER_PRODUCER.to_string()],
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
        let received: Vec<Vec<u64>> = outs
            .iter()
            .map(|f| {
                std::fs::read(f)
                    .unwrap()
                    .chunks_exact(8)
                    .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
                    .collect()
            })
            .collect();
        check_exactly_once(&received, PRODUCERS, PER_PRODUCER);
        assert!(q.is_empty());
        assert_eq!(q.endpoints(), (0, 0));
    });
}

/// In one process, `producers` threads send `per` messages each through a
/// queue of `flavor` and `capacity` to `consumers` threads; every message
/// must arrive exactly once.
fn threaded(flavor: Flavor, capacity: u64, producers: u64, consumers: u64, per: u64) {
    let q = Queue::<u64>::anonymous(flavor, capacity).unwrap();
    assert_eq!(q.capacity() as u64, capacity);
    // Attach every endpoint before any thread starts, so no consumer can
    // see a disconnect before the last producer attached.
    let txs: Vec<_> = (0..producers).map(|_| q.sender().unwrap()).collect();
    let rxs: Vec<_> = (0..consumers).map(|_| q.receiver().unwrap()).collect();
    let cons: Vec<_> = rxs
        .into_iter()
        .map(|rx| std::thread::spawn(move || rx.iter().collect::<Vec<u64>>()))
        .collect();
    let prods: Vec<_> = txs
        .into_iter()
        .enumerate()
        .map(|(p, tx)| {
            std::thread::spawn(move || {
                for s in 0..per {
                    tx.send(encode(p as u64, s)).unwrap();
                }
            })
        })
        .collect();
    for p in prods {
        p.join().unwrap();
    }
    let received: Vec<Vec<u64>> = cons.into_iter().map(|c| c.join().unwrap()).collect();
    check_exactly_once(&received, producers, per);
    assert!(q.is_empty());
}

#[test]
fn capacity_one() {
    run("mpmc_cap1", |_| {
        threaded(Flavor::Mpmc, 1, 2, 2, 20_000);
        threaded(Flavor::Spsc, 1, 1, 1, 20_000);
    });
}

#[test]
fn capacity_three() {
    run("mpmc_cap3", |_| {
        threaded(Flavor::Mpmc, 3, 2, 2, 20_000);
        threaded(Flavor::Spsc, 3, 1, 1, 20_000);
    });
}

#[test]
fn capacity_thousand() {
    run("mpmc_cap1000", |_| {
        threaded(Flavor::Mpmc, 1000, 3, 2, 30_000);
        threaded(Flavor::Spsc, 1000, 1, 1, 50_000);
    });
}

#[test]
fn exact_capacity_is_honoured() {
    run("mpmc_exact_cap", |_| {
        for flavor in [Flavor::Mpmc, Flavor::Spsc] {
            for cap in [1u64, 3, 5, 1000] {
                let q = Queue::<u64>::anonymous(flavor, cap).unwrap();
                let tx = q.sender().unwrap();
                let rx = q.receiver().unwrap();
                // Several rounds, so the positions wrap around the slots.
                for round in 0..4u64 {
                    for i in 0..cap {
                        tx.try_send(round * cap + i)
                            .unwrap_or_else(|e| panic!("{flavor} cap {cap}: send {i}: {e}"));
                    }
                    assert!(q.is_full(), "{flavor} cap {cap}");
                    assert!(
                        matches!(tx.try_send(u64::MAX), Err(shmring::TrySendError::Full(_))),
                        "{flavor} cap {cap}: a full queue took one more"
                    );
                    for i in 0..cap {
                        assert_eq!(rx.try_recv().unwrap(), round * cap + i);
                    }
                    assert!(q.is_empty());
                }
            }
        }
    });
}

/// Child: on queue `args[0]`, claims a slot as a producer (a loan: the
/// claim is made, the message never published) and then waits to be killed
/// — a producer killed between its claim and its publication.
#[test]
#[ignore = "child process entry point"]
fn child_dies_mid_push() {
    child_main("child_dies_mid_push", |a: Args| {
        let q = Queue::<u64>::open(a.str(0)).unwrap();
        let mut tx = q.sender().unwrap();
        let mut loan = tx.loan().unwrap();
        *loan = 666;
        std::mem::forget(loan);
        sleep_forever();
    });
}

/// Child: on queue `args[0]`, takes a message in place as a consumer (the
/// claim is made, the slot never released) and waits to be killed — a
/// consumer killed mid-receive.
#[test]
#[ignore = "child process entry point"]
fn child_dies_mid_recv() {
    child_main("child_dies_mid_recv", |a: Args| {
        let q = Queue::<u64>::open(a.str(0)).unwrap();
        let mut rx = q.receiver().unwrap();
        let held = rx.recv_ref().unwrap();
        assert_eq!(*held, 1);
        std::mem::forget(held);
        sleep_forever();
    });
}

/// A producer killed after claiming a position and before publishing it
/// must not stall the queue: a blocked consumer finds the claim's owner
/// dead (its intent record, pid and start time), turns the slot into a skip
/// record, and receives the live producers' later messages. The dead one's
/// message is counted as lost, never delivered. A consumer that only ever
/// polls (`try_recv`) does the same from its idle polls.
#[test]
fn producer_killed_mid_push_does_not_stall_consumers() {
    run("mpmc_dead_claim", |ctx| {
        for polling in [false, true] {
            let name = ctx.name("q");
            let q = Queue::<u64>::create(&name, Flavor::Mpmc, 4).unwrap();
            let tx = q.sender().unwrap();
            let rx = q.receiver().unwrap();
            let mut child = spawn_child("child_dies_mid_push", &[&name]);
            wait_until("the child's claim", || q.len() == 1);
            kill_child(&mut child);
            // A live producer goes on sending, behind the dead claim.
            tx.send(5).unwrap();
            tx.send(6).unwrap();
            assert_eq!(q.len(), 3, "the dead claim and two live messages");
            let first = if polling {
                poll_until(|| match rx.try_recv() {
                    Err(TryRecvError::Empty) => None,
                    r => Some(r.ok()),
                })
            } else {
                rx.recv().ok()
            };
            assert_eq!(first, Some(5), "polling: {polling}");
            assert_eq!(rx.recv(), Ok(6));
            assert_eq!(
                q.lost(),
                1,
                "the dead producer's message is lost, and counted"
            );
            assert!(q.is_empty());
            // The queue works on, through every slot.
            for v in 0..20 {
                tx.send(v).unwrap();
                assert_eq!(rx.recv(), Ok(v));
            }
            assert_eq!(q.lost(), 1);
        }
    });
}

/// A consumer killed after claiming a message and before releasing its
/// slot must not wedge producers: a producer blocked on the full queue
/// finds the claim's owner dead and frees the slot. The message it held
/// counts as lost; nothing is delivered twice. A producer that only ever
/// polls (`try_send`) does the same from its idle polls.
#[test]
fn consumer_killed_mid_recv_does_not_stall_producers() {
    run("mpmc_dead_reader", |ctx| {
        for polling in [false, true] {
            let name = ctx.name("q");
            let q = Queue::<u64>::create(&name, Flavor::Mpmc, 2).unwrap();
            let tx = q.sender().unwrap();
            tx.send(1).unwrap();
            tx.send(2).unwrap();
            let mut child = spawn_child("child_dies_mid_recv", &[&name]);
            wait_until("the child's claim", || q.len() == 1);
            kill_child(&mut child);
            let rx = q.receiver().unwrap();
            assert_eq!(rx.recv(), Ok(2));
            // Position 2 needs the slot the dead consumer holds.
            if polling {
                let sent = poll_until(|| match tx.try_send(3) {
                    Err(TrySendError::Full(_)) => None,
                    r => Some(r.is_ok()),
                });
                assert!(sent, "polling past the dead consumer's slot");
            } else {
                tx.send(3).unwrap();
            }
            tx.send(4).unwrap();
            assert_eq!(rx.recv(), Ok(3));
            assert_eq!(rx.recv(), Ok(4));
            assert_eq!(
                q.lost(),
                1,
                "the dead consumer's message is lost, and counted"
            );
            for v in 10..30 {
                tx.send(v).unwrap();
                assert_eq!(rx.recv(), Ok(v));
            }
            assert_eq!(q.lost(), 1);
        }
    });
}

/// Polls `attempt` (a non-blocking call) until it returns `Some`, the way a
/// caller that never blocks would: only the library's own idle checks can
/// notice a dead peer. The watchdog turns "never" into a failure.
fn poll_until<R>(mut attempt: impl FnMut() -> Option<R>) -> R {
    loop {
        if let Some(r) = attempt() {
            return r;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}
