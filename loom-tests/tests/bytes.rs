//! loom models of byte messages through the heap-backed byte queue: a ring
//! of `u64` words (the length, and a pipe's session stamp) plus a payload
//! area with one payload per slot, driven by the same `bytes_core`
//! functions as the segment-backed `ByteQueue`. The last models give the
//! handles pipe sessions (`channel::session`), as a one-way pipe's ends.
//!
//! Each payload is shadowed by a loom `UnsafeCell<()>` that every payload
//! access touches, so loom checks that the ring protocol orders the payload
//! bytes exactly as it orders the slot's own value: the producer's writes
//! (copied or through a loan) before the consumer's reads (copied out or
//! through a `ByteRef`), and those reads before the next producer's writes
//! to the same payload. The asserts check contents, order and
//! exactly-once delivery; abandoned loans (MPMC skip records) must never
//! reach a consumer.
//!
//! Threads: two-thread models may use `try_` calls with `yield_now`; models
//! with more threads use the blocking calls (see the comment at the top of
//! `mpmc.rs`). Blocking calls run with no deadline and no spinning: loom
//! reports a deadlock if a wake-up is lost.
#![cfg(loom)]

use loom::thread;
use shmring::__internal::{HeapByteQueue, HeapByteReceiver, HeapByteSender};
use shmring::{ByteSendError, Flavor, Role, TryRecvError, WakeMode};
use shmring_loom_tests::builder;
use std::time::Duration;

/// The largest message in every model.
const MAX: usize = 8;

/// Lengths of the messages in the streaming models: empty, short, full.
const LENGTHS: [usize; 3] = [0, 3, MAX];

/// Message `i` of producer `p`: `len` bytes, each naming `p`, `i` and its
/// offset, so a torn, stale or misplaced payload shows.
fn message(p: u8, i: u8, len: usize) -> Vec<u8> {
    (0..len as u8).map(|j| 100 * p + 10 * i + j).collect()
}

fn send_blocking(tx: &HeapByteSender, msg: &[u8]) {
    tx.send_deadline(msg, None, Duration::ZERO, &|| {})
        .expect("a receiver is attached");
}

/// Receives the next message, waiting: `Err` once every sender is gone and
/// the queue is drained.
fn recv_blocking(rx: &HeapByteReceiver) -> Result<Vec<u8>, TryRecvError> {
    let mut out = vec![0xff; 2]; // cleared by the receive
    match rx.recv_into_deadline(&mut out, None, Duration::ZERO, &|| {}) {
        Ok(Some(n)) => {
            assert_eq!(n, out.len(), "the returned length is the message's");
            Ok(out)
        }
        Ok(None) => panic!("no deadline, yet timed out"),
        Err(e) => Err(e),
    }
}

/// (a) SPSC: one producer sends messages of 0, 3 and 8 bytes with `try_`
/// calls into a ring of `capacity` (1 or 2 payloads), so they wrap around
/// and every payload is rewritten right after its consumer released it.
/// The consumer copies them out in order; then the queue reports
/// `Disconnected`.
fn spsc_stream(capacity: u64) {
    builder().check(move || {
        let q = HeapByteQueue::new(Flavor::Spsc, capacity, MAX, WakeMode::Fast);
        let tx = q.sender().expect("first sender attaches");
        let rx = q.receiver().expect("first receiver attaches");
        drop(q);

        let producer = thread::spawn(move || {
            for (i, &len) in (0u8..).zip(&LENGTHS) {
                let msg = message(0, i, len);
                loop {
                    match tx.try_send(&msg) {
                        Ok(()) => break,
                        Err(ByteSendError::Full) => thread::yield_now(),
                        Err(e) => panic!("unexpected send error: {e:?}"),
                    }
                }
            }
        });

        let mut out = Vec::new();
        for (i, &len) in (0u8..).zip(&LENGTHS) {
            loop {
                match rx.try_recv_into(&mut out) {
                    Ok(n) => {
                        assert_eq!(n, len);
                        break;
                    }
                    Err(TryRecvError::Empty) => thread::yield_now(),
                    Err(e) => panic!("unexpected receive error: {e:?}"),
                }
            }
            assert_eq!(out, message(0, i, len), "message {i}");
        }
        producer.join().unwrap();
        assert_eq!(rx.try_recv_into(&mut out), Err(TryRecvError::Disconnected));
    });
}

#[test]
fn spsc_stream_capacity_1() {
    spsc_stream(1);
}

#[test]
fn spsc_stream_capacity_2() {
    spsc_stream(2);
}

/// How the two-thread models call.
#[derive(Clone, Copy)]
enum Calls {
    /// `try_` calls, `yield_now` on Full / Empty.
    Try,
    /// Blocking calls: no deadline, no spinning.
    Blocking,
}

/// (b) MPMC, one producer: it takes a loan, fills it and drops it without
/// committing (a skip record), then sends a real message. The consumer
/// receives only the real message, then `Disconnected` once the producer is
/// gone. At capacity 1 the real message needs the very slot of the skip
/// record: the producer finds the ring full until the consumer has stepped
/// over it (last lap's skip record must read as Full, not as Corrupted). At
/// capacity 2 it goes to the next slot.
fn mpmc_abandoned_loan(capacity: u64, calls: Calls) {
    builder().check(move || {
        let q = HeapByteQueue::new(Flavor::Mpmc, capacity, MAX, WakeMode::Fast);
        let mut tx = q.sender().expect("MPMC senders always attach");
        let rx = q.receiver().expect("MPMC receivers always attach");
        drop(q);

        let real = message(0, 1, 3);
        let producer = thread::spawn({
            let real = real.clone();
            move || {
                let mut loan = tx.try_loan(MAX).expect("an empty ring has room");
                loan.fill(0xee);
                drop(loan);
                match calls {
                    Calls::Try => loop {
                        match tx.try_send(&real) {
                            Ok(()) => break,
                            Err(ByteSendError::Full) => thread::yield_now(),
                            Err(e) => panic!("unexpected send error: {e:?}"),
                        }
                    },
                    Calls::Blocking => send_blocking(&tx, &real),
                }
            }
        });

        let recv = || match calls {
            Calls::Try => {
                let mut out = Vec::new();
                loop {
                    match rx.try_recv_into(&mut out) {
                        Ok(_) => return Ok(out),
                        Err(TryRecvError::Empty) => thread::yield_now(),
                        Err(e) => return Err(e),
                    }
                }
            }
            Calls::Blocking => recv_blocking(&rx),
        };
        assert_eq!(recv(), Ok(real));
        assert_eq!(recv(), Err(TryRecvError::Disconnected));
        producer.join().unwrap();
    });
}

#[test]
fn mpmc_abandoned_loan_capacity_1_try() {
    mpmc_abandoned_loan(1, Calls::Try);
}

/// The producer sleeps on `not_full` behind its own skip record; the
/// consumer steps over it (freeing the slot) and, finding nothing after it,
/// goes to sleep on `not_empty`. Stepping over must wake the producer: the
/// first version did not, and loom found the lost wake-up here.
#[test]
fn mpmc_abandoned_loan_capacity_1_blocking() {
    mpmc_abandoned_loan(1, Calls::Blocking);
}

#[test]
fn mpmc_abandoned_loan_capacity_2_blocking() {
    mpmc_abandoned_loan(2, Calls::Blocking);
}

/// (c) MPMC, capacity 2, three threads with blocking calls: producer 0
/// takes a loan, writes into it and drops it (a skip record), then, if
/// `p0_sends`, sends a message; producer 1 sends two messages meanwhile.
/// Three claims or more on two slots: a producer may find the ring full
/// with the skip record in it and sleep until the consumer steps over it,
/// and the skip record and messages share slots across laps (the next
/// writer of the skip record's payload is ordered after the loan's writes
/// through the consumer's step-over). The consumer gets only the real
/// messages, each producer's in order, then `Disconnected`.
fn two_producers_one_abandons(p0_sends: bool, max_preemptions: Option<usize>) {
    let mut b = builder();
    if let Some(cap) = max_preemptions {
        b.preemption_bound = b.preemption_bound.map(|n| n.min(cap));
    }
    b.check(move || {
        let q = HeapByteQueue::new(Flavor::Mpmc, 2, MAX, WakeMode::Fast);
        let mut tx0 = q.sender().expect("MPMC senders always attach");
        let tx1 = q.sender().expect("MPMC senders always attach");
        let rx = q.receiver().expect("MPMC receivers always attach");
        drop(q);

        let from_0 = message(0, 0, MAX);
        let from_1 = [message(1, 0, 3), message(1, 1, 0)];
        let p0 = thread::spawn({
            let msg = from_0.clone();
            move || {
                let mut loan = tx0
                    .loan_deadline(MAX, None, Duration::ZERO, &|| {})
                    .expect("a receiver is attached");
                loan.fill(0xee);
                drop(loan);
                if p0_sends {
                    send_blocking(&tx0, &msg);
                }
            }
        });
        let p1 = thread::spawn({
            let msgs = from_1.clone();
            move || {
                for m in &msgs {
                    send_blocking(&tx1, m);
                }
            }
        });

        let mut got = Vec::new();
        for _ in 0..2 + usize::from(p0_sends) {
            got.push(recv_blocking(&rx).expect("more messages are coming"));
        }
        let got_1: Vec<_> = got.iter().filter(|m| **m != from_0).cloned().collect();
        assert_eq!(got_1, from_1, "producer 1's messages, in order: {got:?}");
        assert_eq!(got.len() - got_1.len(), usize::from(p0_sends), "{got:?}");
        p0.join().unwrap();
        p1.join().unwrap();
        assert_eq!(recv_blocking(&rx), Err(TryRecvError::Disconnected));
    });
}

/// Producer 0 only abandons: three claims on two slots, at the full
/// preemption bound (about 18 s at bound 2 in a release build on a loaded
/// 2-core machine).
#[test]
fn mpmc_two_producers_one_abandons() {
    two_producers_one_abandons(false, None);
}

/// Producer 0 abandons, then sends: four claims on two slots (two full
/// laps), at preemption bound 1: at bound 2 this shape takes about 90 s.
#[test]
fn mpmc_two_producers_one_abandons_then_sends() {
    two_producers_one_abandons(true, Some(1));
}

/// (d) Zero-copy both ways, capacity 1: the producer writes two messages in
/// place through loans (the first filled whole, then shortened with
/// `set_len`) and commits them; the consumer reads each in place through a
/// `ByteRef`, so the second loan's writes must wait for the first
/// `ByteRef`'s drop (the payload's ownership passes by the ring alone).
fn in_place(flavor: Flavor) {
    builder().check(move || {
        let q = HeapByteQueue::new(flavor, 1, MAX, WakeMode::Fast);
        let mut tx = q.sender().expect("first sender attaches");
        let mut rx = q.receiver().expect("first receiver attaches");
        drop(q);

        let producer = thread::spawn(move || {
            let mut loan = tx
                .loan_deadline(MAX, None, Duration::ZERO, &|| {})
                .expect("a receiver is attached");
            assert_eq!(loan.max_len(), MAX);
            loan.copy_from_slice(&message(0, 0, MAX));
            loan.set_len(3).expect("3 <= MAX");
            loan.commit();

            let mut loan = tx
                .loan_deadline(5, None, Duration::ZERO, &|| {})
                .expect("a receiver is attached");
            loan.copy_from_slice(&message(0, 1, 5));
            loan.commit();
        });

        for (i, len) in [(0, 3), (1, 5)] {
            let r = rx
                .recv_ref_deadline(None, Duration::ZERO, &|| {})
                .expect("the sender is attached")
                .expect("no deadline");
            assert_eq!(&*r, &message(0, i, len)[..], "message {i}");
        }
        producer.join().unwrap();
        assert!(matches!(rx.try_recv_ref(), Err(TryRecvError::Disconnected)));
    });
}

#[test]
fn spsc_in_place() {
    in_place(Flavor::Spsc);
}

#[test]
fn mpmc_in_place() {
    in_place(Flavor::Mpmc);
}

// ---------------------------------------------------------------------------
// Pipe sessions
// ---------------------------------------------------------------------------

/// A one-way pipe over `q` (its right → left queue): the reading end's
/// receiver, screened by a session of the generation it just got.
fn reading_end(q: &HeapByteQueue) -> HeapByteReceiver {
    let mut rx = q.receiver().expect("the reading end is free");
    // Right after our own attach, with no other of the role racing: ours.
    let mine = q.queue().ctrl().holder(Role::Receiver);
    rx.set_session(q.session(Role::Sender, mine, false));
    rx
}

/// The writing end's sender, stamped by a session of its generation.
fn writing_end(q: &HeapByteQueue) -> HeapByteSender {
    let mut tx = q.sender().expect("the writing end is free");
    let mine = q.queue().ctrl().holder(Role::Sender);
    tx.set_session(q.session(Role::Receiver, mine, false));
    tx
}

/// (f) A reader blocked on the writer session it heard from is told that
/// the session ended — `Disconnected`, not a wait for ever and not the new
/// writer's message — however the old writer's detach and a new writer's
/// attach (which sends nothing) interleave with its sleep: it sees the old
/// writer gone, or the new one holding the end. The new holder's
/// generation is stored before the attach's wake-up; stored after it, a
/// reader that checked in between would sleep through it (loom reports
/// the deadlock).
#[test]
fn session_blocked_reader_sees_its_writer_session_end() {
    builder().check(|| {
        let q = HeapByteQueue::new(Flavor::Spsc, 1, MAX, WakeMode::Strict);
        let rx = reading_end(&q);
        let tx1 = writing_end(&q);
        send_blocking(&tx1, b"x");
        assert_eq!(recv_blocking(&rx).unwrap(), b"x");
        let reader = thread::spawn(move || {
            assert_eq!(recv_blocking(&rx), Err(TryRecvError::Disconnected));
            rx
        });
        drop(tx1);
        let tx2 = writing_end(&q);
        let rx = reader.join().unwrap();
        // Then the new writer's messages.
        send_blocking(&tx2, b"y");
        assert_eq!(recv_blocking(&rx).unwrap(), b"y");
    });
}

/// (g) A reader restarted while the writer sends: what the writer
/// addressed to the first reader (everything sent while it held the end)
/// never reaches the second, which drops and counts it; what is addressed
/// to the second (sent once the writer could see it, or nobody, holding the
/// end) reaches it, once. A send finding no reader at all is refused.
#[test]
fn session_restarted_reader_never_gets_its_predecessors_messages() {
    builder().check(|| {
        let q = HeapByteQueue::new(Flavor::Spsc, 2, MAX, WakeMode::Strict);
        let rx1 = reading_end(&q);
        let tx = writing_end(&q);
        tx.try_send(b"a").unwrap();
        let q2 = q.clone();
        let restart = thread::spawn(move || {
            drop(rx1);
            reading_end(&q2)
        });
        let sent_b = match tx.try_send(b"b") {
            Ok(()) => true,
            Err(ByteSendError::Disconnected) => false,
            Err(e) => panic!("send: {e:?}"),
        };
        let rx2 = restart.join().unwrap();
        let mut got = Vec::new();
        loop {
            let mut out = Vec::new();
            match rx2.try_recv_into(&mut out) {
                Ok(_) => got.push(out),
                Err(TryRecvError::Empty) => break,
                // One writer session throughout: no session end to report.
                Err(e) => panic!("receive: {e:?}"),
            }
        }
        assert!(
            !got.iter().any(|m| m == b"a"),
            "a stale message was delivered"
        );
        let dropped = q
            .queue()
            .ctrl()
            .peers
            .stale
            .load(std::sync::atomic::Ordering::Relaxed);
        // "a" dropped; "b" sent once: delivered or dropped, not both.
        assert_eq!(got.len() as u64 + dropped, 1 + u64::from(sent_b), "{got:?}");
        assert!(got.len() <= 1 && got.iter().all(|m| m == b"b"), "{got:?}");
    });
}
