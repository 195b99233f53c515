//! loom models of the repair of claims that dead endpoints left in flight
//! (`HeapQueue::repair`, i.e. `MpmcRing::repair_unpublished` and
//! `MpmcRing::repair_unreleased`; see "A process killed holding a claim:
//! intents and repair" in `docs/design.md`).
//!
//! A process killed mid-claim is modelled by a thread that claims
//! (`try_claim` / `try_claim`) and then simply stops: it never commits,
//! abandons or releases, and its handle stays attached (a killed process's
//! endpoint-table entry stays held until it is reaped), so the handle is
//! handed back to the model's main thread and only dropped at the very end.
//! After stopping, the thread declares itself dead in an [`Oracle`]: one
//! loom `AtomicBool` per endpoint bit, which the repairers consult through
//! the liveness callback of `repair`. The oracle never calls a running
//! endpoint dead (that is the contract a real reaper's pid + start-time
//! check provides); the store is Release and the load Acquire, as the
//! reaper's proof of death (`waitpid`, `/proc`) orders the dead process's
//! last writes before the reaper's reads.
//!
//! Endpoint bits are handed out in attach order (0, 1, 2, ...), so every
//! model attaches its endpoints in a fixed order and names their bits.
//!
//! What loom checks beyond the asserts: a repair that freed a slot while a
//! live consumer was still reading it, or turned a live producer's slot into
//! a skip record while it was writing, would let the next producer write
//! the slot's `UnsafeCell` concurrently with that access: loom reports the
//! data race.
//!
//! Two models found a liveness bug of the first version of
//! `repair_unreleased` (a live, idle producer's intent still announced the
//! position it had committed, so a dead consumer's claim of that position
//! was never freed); intents are now retired after each publishing store.
//! See `idle_producer_blocks_dead_consumer_repair`.
//!
//! Since issue 10 the repair walks the positions announced in dead
//! endpoints' intent records (not `[head, tail)` and the slots behind
//! `tail`), with the same per-position test and CAS; `HeapQueue::repair`
//! runs every pass to completion (no time budget: loom does not model
//! time), so these models check the walk's per-position logic, and the
//! ring's unit tests its stop-and-resume. Intent announcements became
//! Release stores (a repairer that sees a live endpoint's next
//! announcement must also see the commit that ended its previous claim);
//! no model here can fail without that, since loom makes each thread's
//! stores visible in program order, and the reordering it prevents
//! (ARMv8: a later plain store overtaking an earlier store-release) is
//! exactly what loom does not explore.
//!
//! Threads: at most one thread spins with `try_` calls and `yield_now`
//! (see the comment at the top of `mpmc.rs`); a producer that must wait for
//! a repair blocks in `send_deadline` (no deadline, no spinning), and is
//! woken by the repair's `wake_all`. loom does not model time, so the
//! blocking calls never run their `reap` callback: repairs are explicit.
#![cfg(loom)]

use loom::sync::atomic::{AtomicBool, Ordering};
use loom::sync::Arc;
use loom::thread;
use shmring::__internal::HeapQueue;
use shmring::{Flavor, TryRecvError, TrySendError, WakeMode};
use shmring_loom_tests::{model_repairing as model, Oracle};
use std::time::Duration;

/// What a dead producer leaves in its claimed slot: never to be delivered.
const GARBAGE: u64 = 0xdead;

fn repair(q: &HeapQueue<u64>, oracle: &Oracle) -> u64 {
    q.repair(&|i| oracle.live(i))
}

/// Model 1. Producer A (bit 0) claims a position, writes garbage into its
/// slot and dies without committing; producer B (bit 1) sends one value
/// concurrently (capacity 2: both always find room, and either may get
/// position 0). The consumer (bit 2, the main thread) is also the repairer:
/// whenever it finds the ring empty it runs `repair`. It receives exactly
/// B's value, never A's garbage, and the repairs report exactly one lost
/// message in total; afterwards the ring is empty and a further repair
/// finds nothing.
#[test]
fn dead_producer_is_skipped_consumer_repairs() {
    model(|| {
        let q = HeapQueue::<u64>::new(Flavor::Mpmc, 2, WakeMode::Fast);
        let a = q.sender().expect("MPMC senders always attach"); // bit 0
        let b = q.sender().expect("MPMC senders always attach"); // bit 1
        let rx = q.receiver().expect("MPMC receivers always attach"); // bit 2
        let oracle = Oracle::new(3);

        let o = oracle.clone();
        let dying = thread::spawn(move || {
            let c = a.try_claim().expect("capacity 2: room for both producers");
            a.write(&c, GARBAGE);
            // Killed here: no commit, no abandon, still attached.
            o.kill(0);
            a
        });
        let live = thread::spawn(move || {
            b.try_send(7).expect("capacity 2: room for both producers");
            b
        });

        let mut got = None;
        let mut lost = 0;
        while got.is_none() || lost == 0 {
            match rx.try_recv() {
                Ok(v) => {
                    assert_eq!(v, 7, "only B's value may be delivered");
                    assert!(got.replace(v).is_none(), "B's value delivered twice");
                }
                Err(TryRecvError::Empty) => {
                    lost += repair(&q, &oracle);
                    assert!(lost <= 1, "one dead claim, {lost} messages lost");
                    thread::yield_now();
                }
                Err(e) => panic!("unexpected receive error: {e:?}"),
            }
        }
        let a = dying.join().unwrap();
        let b = live.join().unwrap();
        assert_eq!(lost, 1);
        assert_eq!(repair(&q, &oracle), 0, "the dead claim is repaired once");
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
        drop((a, b));
    });
}

/// Model 1b. Producer A (bit 0) claims position 0 (the ring is empty),
/// writes garbage and dies, while a separate repairer thread runs one
/// repair at any point of A's claim. Once A is dead, producer B (bit 1,
/// the main thread) sends behind A's dead claim, so the consumer (bit 2,
/// also the main thread) gets B's value only past a repair: its own, run
/// when it finds the ring empty, or the repairer's. Together the repairs
/// count the lost message exactly once.
///
/// The costliest model here: about 3 s at bound 2 (release). With intents
/// withdrawn after each publishing store (the fix suggested for the bug
/// below) it took about 45 s; lower its bound to 1 if it grows further.
#[test]
fn dead_producer_is_skipped_separate_repairer() {
    model(|| {
        let q = HeapQueue::<u64>::new(Flavor::Mpmc, 2, WakeMode::Fast);
        let a = q.sender().expect("MPMC senders always attach"); // bit 0
        let b = q.sender().expect("MPMC senders always attach"); // bit 1
        let rx = q.receiver().expect("MPMC receivers always attach"); // bit 2
        let oracle = Oracle::new(3);

        let o = oracle.clone();
        let dying = thread::spawn(move || {
            let c = a.try_claim().expect("empty ring");
            assert_eq!(c.pos, 0, "nobody else claims before A is dead");
            a.write(&c, GARBAGE);
            o.kill(0);
            a
        });
        let (q2, o) = (q.clone(), oracle.clone());
        let repairer = thread::spawn(move || repair(&q2, &o));

        while oracle.live(0) {
            thread::yield_now();
        }
        b.try_send(7).expect("capacity 2: room behind A's claim");
        let mut lost = 0;
        loop {
            match rx.try_recv() {
                Ok(v) => {
                    assert_eq!(v, 7, "only B's value may be delivered");
                    break;
                }
                Err(TryRecvError::Empty) => {
                    lost += repair(&q, &oracle);
                    thread::yield_now();
                }
                Err(e) => panic!("unexpected receive error: {e:?}"),
            }
        }
        let a = dying.join().unwrap();
        lost += repairer.join().unwrap();
        assert_eq!(lost, 1, "the dead claim counts exactly once");
        assert_eq!(repair(&q, &oracle), 0);
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
        drop((a, b));
    });
}

/// Model 2. A slow live producer is never repaired: producer A (bit 0)
/// claims, writes and commits while a repairer runs `repair` concurrently,
/// with A live in the oracle throughout (bit 2, an idle attached producer,
/// is dead: the oracle is not all-live). The consumer (main thread) makes
/// one attempt concurrently, then joins both: A's value is delivered
/// exactly once, nothing is lost, and no skip record replaced A's commit.
#[test]
fn slow_live_producer_is_never_repaired() {
    model(|| {
        let q = HeapQueue::<u64>::new(Flavor::Mpmc, 1, WakeMode::Fast);
        let a = q.sender().expect("MPMC senders always attach"); // bit 0
        let rx = q.receiver().expect("MPMC receivers always attach"); // bit 1
        let idle = q.sender().expect("MPMC senders always attach"); // bit 2
        let oracle = Oracle::new(3);
        oracle.kill(2);

        let producer = thread::spawn(move || {
            let c = a.try_claim().expect("empty ring");
            a.write(&c, 5);
            a.commit(c);
            a
        });
        let (q2, o) = (q.clone(), oracle.clone());
        let repairer = thread::spawn(move || repair(&q2, &o));

        let early = match rx.try_recv() {
            Ok(v) => Some(v),
            Err(TryRecvError::Empty) => None,
            Err(e) => panic!("unexpected receive error: {e:?}"),
        };
        let a = producer.join().unwrap();
        let lost = repairer.join().unwrap();
        let v = match early {
            Some(v) => v,
            None => rx.try_recv().expect("A committed: its value must be there"),
        };
        assert_eq!(v, 5, "the consumer must get A's value");
        assert_eq!(lost, 0, "a live producer's claim was repaired");
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
        drop((a, idle));
    });
}

/// Model 2b. A dead claim and a slow live one at once (capacity 2):
/// producer D (bit 0) claims, writes garbage and dies while producer A
/// (bit 1, live throughout) claims, writes and commits; either may get
/// position 0. The consumer (bit 2, the main thread) repairs whenever it
/// finds the ring empty. The repairs must pick exactly D's position: A's
/// value is delivered once, D's garbage never, one message is lost.
#[test]
fn dead_and_slow_live_producer_only_dead_is_repaired() {
    model(|| {
        let q = HeapQueue::<u64>::new(Flavor::Mpmc, 2, WakeMode::Fast);
        let d = q.sender().expect("MPMC senders always attach"); // bit 0
        let a = q.sender().expect("MPMC senders always attach"); // bit 1
        let rx = q.receiver().expect("MPMC receivers always attach"); // bit 2
        let oracle = Oracle::new(3);

        let o = oracle.clone();
        let dying = thread::spawn(move || {
            let c = d.try_claim().expect("capacity 2: room for both producers");
            d.write(&c, GARBAGE);
            o.kill(0);
            d
        });
        let producer = thread::spawn(move || {
            let c = a.try_claim().expect("capacity 2: room for both producers");
            a.write(&c, 5);
            a.commit(c);
            a
        });

        let mut got = None;
        let mut lost = 0;
        while got.is_none() || lost == 0 {
            match rx.try_recv() {
                Ok(v) => {
                    assert_eq!(v, 5, "only A's value may be delivered");
                    assert!(got.replace(v).is_none(), "A's value delivered twice");
                }
                Err(TryRecvError::Empty) => {
                    lost += repair(&q, &oracle);
                    assert!(lost <= 1, "one dead claim, {lost} messages lost");
                    thread::yield_now();
                }
                Err(e) => panic!("unexpected receive error: {e:?}"),
            }
        }
        let d = dying.join().unwrap();
        let a = producer.join().unwrap();
        assert_eq!(repair(&q, &oracle), 0, "the dead claim is repaired once");
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
        drop((d, a));
    });
}

/// Model 3. Dead consumer, capacity 1: producer P (bit 0) has sent 1;
/// consumer C1 (bit 1) takes it (`try_claim`, from a thread) and dies
/// without releasing it, while P sends 2 from another thread, blocking on
/// the one slot. The main thread is the repairer until P's send completes,
/// then consumer C2 (bit 2): it receives 2 exactly once, never 1 (no double
/// delivery), and the repairs count exactly one lost message.
///
/// C2 consumes only after P's send, so that C1 is the one to take 1: a C2
/// that took 1 first would leave C1 taking 2 after P's send, and an idle P
/// blocked the repair for ever in the first version (see
/// `dead_consumer_racing_live_consumer` below).
#[test]
fn dead_consumer_slot_is_freed() {
    model(|| {
        let q = HeapQueue::<u64>::new(Flavor::Mpmc, 1, WakeMode::Fast);
        let p = q.sender().expect("MPMC senders always attach"); // bit 0
        let c1 = q.receiver().expect("MPMC receivers always attach"); // bit 1
        let c2 = q.receiver().expect("MPMC receivers always attach"); // bit 2
        let oracle = Oracle::new(3);
        p.try_send(1).expect("empty ring");
        let sent = Arc::new(AtomicBool::new(false));

        let o = oracle.clone();
        let dying = thread::spawn(move || {
            let c = c1
                .try_claim()
                .expect("1 is published, and C1 is the only taker");
            assert_eq!(c1.read(&c), 1);
            // Killed here: no release, still attached.
            o.kill(1);
            c1
        });
        let done = sent.clone();
        let producer = thread::spawn(move || {
            p.send_deadline(2, None, Duration::ZERO, &|| {})
                .expect("receivers are attached");
            done.store(true, Ordering::Release);
            p
        });

        let mut lost = 0;
        while !sent.load(Ordering::Acquire) {
            lost += repair(&q, &oracle);
            assert!(lost <= 1, "one dead claim, {lost} messages lost");
            thread::yield_now();
        }
        assert_eq!(lost, 1, "P's send needed the dead claim's slot");
        assert_eq!(c2.try_recv(), Ok(2), "never 1: it died with C1");
        assert_eq!(c2.try_recv(), Err(TryRecvError::Empty));
        let c1 = dying.join().unwrap();
        let p = producer.join().unwrap();
        assert_eq!(repair(&q, &oracle), 0, "the dead claim is repaired once");
        drop((c1, p));
    });
}

/// Model 3b. The dead-consumer model with the consumers racing: C2 (main
/// thread, also the repairer) consumes from the start, so C1's one
/// `try_claim` gets 1, 2 or nothing. Whatever C1 took is never delivered and
/// counts as lost exactly once; everything else reaches C2 exactly once.
///
/// Failed before intents were retired after commits (loom: "Model exceeded
/// maximum number of branches"): when C2 takes
/// 1 and C1 takes 2 after P's send, P is live and idle, its intent still
/// announces position 2 (an intent is only replaced by the next claim or
/// withdrawn by a failed one, never cleared after the commit), so
/// `repair_unreleased` finds a live endpoint covering the dead consumer's
/// position and never frees it: C2 spins for ever. See
/// `idle_producer_blocks_dead_consumer_repair` for the minimal case.
#[test]
fn dead_consumer_racing_live_consumer() {
    model(|| {
        let q = HeapQueue::<u64>::new(Flavor::Mpmc, 1, WakeMode::Fast);
        let p = q.sender().expect("MPMC senders always attach"); // bit 0
        let c1 = q.receiver().expect("MPMC receivers always attach"); // bit 1
        let c2 = q.receiver().expect("MPMC receivers always attach"); // bit 2
        let oracle = Oracle::new(3);
        p.try_send(1).expect("empty ring");

        let o = oracle.clone();
        let dying = thread::spawn(move || {
            let took = match c1.try_claim() {
                Ok(c) => Some(c1.read(&c)),
                Err(TryRecvError::Empty) => None,
                Err(e) => panic!("unexpected take error: {e:?}"),
            };
            // Killed here: no release, still attached.
            o.kill(1);
            (c1, took)
        });
        let producer = thread::spawn(move || {
            p.send_deadline(2, None, Duration::ZERO, &|| {})
                .expect("receivers are attached");
            p
        });

        let mut got = Vec::new();
        let mut lost = 0;
        while got.len() as u64 + lost < 2 {
            match c2.try_recv() {
                Ok(v) => got.push(v),
                Err(TryRecvError::Empty) => {
                    lost += repair(&q, &oracle);
                    thread::yield_now();
                }
                Err(e) => panic!("unexpected receive error: {e:?}"),
            }
        }
        let (c1, took) = dying.join().unwrap();
        let p = producer.join().unwrap();
        match took {
            Some(m) => {
                assert_eq!(lost, 1, "C1 died holding {m}");
                assert!(!got.contains(&m), "{m} delivered twice: {got:?}");
                assert_eq!(got, [3 - m], "the other message, once");
            }
            None => {
                assert_eq!(lost, 0, "nothing was held by a dead consumer");
                assert_eq!(got, [1, 2]);
            }
        }
        assert_eq!(repair(&q, &oracle), 0, "the dead claim is repaired once");
        assert_eq!(c2.try_recv(), Err(TryRecvError::Empty));
        drop((c1, p));
    });
}

/// Model 3c, the minimal case of the bug above (no race needed, capacity
/// 1): producer P1 (bit 0) sends 1 and stays live and idle; consumer C
/// (bit 1) takes it and dies; producer P2 (bit 2) finds the ring full and
/// repairs. P1's intent still covers position 0 (set for its claim, never
/// cleared after its commit), so the dead consumer's slot is "covered by a
/// live endpoint" and is never freed: P2 stays blocked for as long as P1
/// sends nothing, and the lost message is never counted.
#[test]
fn idle_producer_blocks_dead_consumer_repair() {
    model(|| {
        let q = HeapQueue::<u64>::new(Flavor::Mpmc, 1, WakeMode::Fast);
        let p1 = q.sender().expect("MPMC senders always attach"); // bit 0
        let c = q.receiver().expect("MPMC receivers always attach"); // bit 1
        let p2 = q.sender().expect("MPMC senders always attach"); // bit 2
        let oracle = Oracle::new(3);
        p1.try_send(1).expect("empty ring");

        let o = oracle.clone();
        let dying = thread::spawn(move || {
            let _held = c.try_claim().expect("1 is published");
            o.kill(1);
            c
        });
        let c = dying.join().unwrap();
        assert_eq!(p2.try_send(2), Err(TrySendError::Full(2)));
        assert_eq!(
            repair(&q, &oracle),
            1,
            "C died holding 1; only P1's stale intent (of its committed claim) also covers it"
        );
        p2.try_send(2).expect("the dead consumer's slot was freed");
        drop((p1, c));
    });
}

/// Model 4. A repair racing a live consumer's claim of the same position:
/// producer A (bit 0) sent 1 and died, so its intent still covers the
/// position. Consumer C (bit 1, live) takes, reads and releases it while a
/// repairer runs `repair` and producer B (bit 2, the main thread) retries
/// `try_send` into the one slot. A repair that freed the slot before C's
/// release would let B write it while C reads (a data race for loom) and
/// report a lost message.
#[test]
fn live_consumer_claim_is_never_freed_early() {
    model(|| {
        let q = HeapQueue::<u64>::new(Flavor::Mpmc, 1, WakeMode::Fast);
        let a = q.sender().expect("MPMC senders always attach"); // bit 0
        let c = q.receiver().expect("MPMC receivers always attach"); // bit 1
        let b = q.sender().expect("MPMC senders always attach"); // bit 2
        let oracle = Oracle::new(3);
        a.try_send(1).expect("empty ring");
        oracle.kill(0);

        let consumer = thread::spawn(move || {
            let claim = c.try_claim().expect("1 is published");
            let v = c.read(&claim);
            c.release(claim);
            (c, v)
        });
        let (q2, o) = (q.clone(), oracle.clone());
        let repairer = thread::spawn(move || repair(&q2, &o));

        loop {
            match b.try_send(2) {
                Ok(()) => break,
                Err(TrySendError::Full(_)) => thread::yield_now(),
                Err(e) => panic!("unexpected send error: {e:?}"),
            }
        }
        let (c, v) = consumer.join().unwrap();
        let lost = repairer.join().unwrap();
        assert_eq!(v, 1);
        assert_eq!(lost, 0, "a live consumer's claim was repaired");
        assert_eq!(c.try_recv(), Ok(2));
        assert_eq!(c.try_recv(), Err(TryRecvError::Empty));
        drop((a, b));
    });
}

/// Model 5a. Two repairers race on the same dead producer's claim (made
/// before they start) while the consumer looks once: the lost message is
/// counted once in total, the consumer never gets the garbage, and the
/// position can be stepped over, after which a new value flows.
#[test]
fn two_repairers_dead_producer_count_once() {
    model(|| {
        let q = HeapQueue::<u64>::new(Flavor::Mpmc, 1, WakeMode::Fast);
        let a = q.sender().expect("MPMC senders always attach"); // bit 0
        let b = q.sender().expect("MPMC senders always attach"); // bit 1
        let rx = q.receiver().expect("MPMC receivers always attach"); // bit 2
        let oracle = Oracle::new(3);
        let c = a.try_claim().expect("empty ring");
        a.write(&c, GARBAGE);
        oracle.kill(0);

        let repairers: Vec<_> = (0..2)
            .map(|_| {
                let (q, o) = (q.clone(), oracle.clone());
                thread::spawn(move || repair(&q, &o))
            })
            .collect();
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
        let lost: u64 = repairers.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(lost, 1, "one dead claim, counted once");
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty), "skip stepped over");
        b.try_send(9).expect("the skip record's slot is free again");
        assert_eq!(rx.try_recv(), Ok(9));
        drop(a);
    });
}

/// Model 5b. Two repairers race on the same dead consumer's claim (made
/// before they start, after which the producer found the ring full) while
/// a live consumer (main thread) looks once: the lost message is counted
/// once in total, the slot is freed once, and the producer's next value
/// then reaches the live consumer.
#[test]
fn two_repairers_dead_consumer_count_once() {
    model(|| {
        let q = HeapQueue::<u64>::new(Flavor::Mpmc, 1, WakeMode::Fast);
        let p = q.sender().expect("MPMC senders always attach"); // bit 0
        let c1 = q.receiver().expect("MPMC receivers always attach"); // bit 1
        let c2 = q.receiver().expect("MPMC receivers always attach"); // bit 2
        let oracle = Oracle::new(3);
        p.try_send(1).expect("empty ring");
        let _held = c1.try_claim().expect("1 is published");
        oracle.kill(1);
        // The producer finds the slot stuck before the repairs, as a
        // blocked sender does before it reaps (its failed claim withdraws
        // its intent; see `idle_producer_blocks_dead_consumer_repair`).
        assert_eq!(p.try_send(2), Err(TrySendError::Full(2)));

        let repairers: Vec<_> = (0..2)
            .map(|_| {
                let (q, o) = (q.clone(), oracle.clone());
                thread::spawn(move || repair(&q, &o))
            })
            .collect();
        assert_eq!(c2.try_recv(), Err(TryRecvError::Empty), "never 1");
        let lost: u64 = repairers.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(lost, 1, "one dead claim, counted once");
        p.try_send(2).expect("the slot was freed");
        assert_eq!(c2.try_recv(), Ok(2), "never 1: it died with C1");
        assert_eq!(c2.try_recv(), Err(TryRecvError::Empty));
        assert_eq!(repair(&q, &oracle), 0);
        drop(c1);
    });
}

/// Model: an SPSC consumer (bit 1) reads the only message of a capacity-1
/// ring in place and dies holding it, while the producer (bit 0) blocks to
/// send a second one. The repairer (main thread, after the consumer's
/// death: the join orders its last writes first, as a proof of death
/// does) steps over the dead read exactly once, which wakes the producer;
/// once it has sent, the dead consumer is detached and a new one (bit 2) receives only
/// the second message: the first is never delivered again. loom checks
/// that the producer's overwrite of the slot is ordered after the dead
/// consumer's read (no data race on the slot's `UnsafeCell`).
#[test]
fn spsc_dead_reader_is_stepped_over_once() {
    model(|| {
        let q = HeapQueue::<u64>::new(Flavor::Spsc, 1, WakeMode::Strict);
        let tx = q.sender().unwrap();
        let rx = q.receiver().unwrap();
        tx.try_send(1).unwrap();
        let consumer = thread::spawn(move || {
            let c = rx.try_claim().unwrap();
            assert_eq!(rx.read(&c), 1);
            rx // never released: the process died holding the read
        });
        let producer = thread::spawn(move || {
            tx.send_deadline(2, None, Duration::ZERO, &|| {})
                .expect("room after the repair");
            tx
        });
        let dead = consumer.join().unwrap();
        assert!(q.repair_dead_spsc(1, shmring::Role::Receiver));
        assert!(
            !q.repair_dead_spsc(1, shmring::Role::Receiver),
            "a second repairer counts nothing"
        );
        let _tx = producer.join().unwrap();
        // The reaper detaches the dead consumer (its handle is gone with
        // its process: forgotten, not dropped).
        std::mem::forget(dead);
        q.ctrl().detach(shmring::Role::Receiver, 1);
        let rx2 = q.receiver().unwrap();
        assert_eq!(rx2.try_recv(), Ok(2));
        assert_eq!(rx2.try_recv(), Err(TryRecvError::Empty));
    });
}

/// Model: an SPSC producer dies holding an uncommitted loan; the repairer
/// counts it once and nothing is ever delivered from it.
#[test]
fn spsc_dead_loan_is_counted_once() {
    model(|| {
        let q = HeapQueue::<u64>::new(Flavor::Spsc, 2, WakeMode::Strict);
        let tx = q.sender().unwrap();
        let rx = q.receiver().unwrap();
        let producer = thread::spawn(move || {
            let c = tx.try_claim().unwrap();
            tx.write(&c, GARBAGE);
            tx
        });
        let dead = producer.join().unwrap();
        let a = q.repair_dead_spsc(0, shmring::Role::Sender);
        let b = q.repair_dead_spsc(0, shmring::Role::Sender);
        assert!(a && !b, "counted exactly once");
        std::mem::forget(dead);
        q.ctrl().detach(shmring::Role::Sender, 0);
        let tx2 = q.sender().unwrap();
        tx2.try_send(7).unwrap();
        assert_eq!(rx.try_recv(), Ok(7));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    });
}
