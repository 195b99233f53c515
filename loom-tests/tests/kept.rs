//! loom models of kept claims (`ByteReceiver::keep_claims`,
//! `ByteQueue::adopt_kept`; see "Kept claims" in `docs/design.md`): an MPMC
//! consumer whose intent record has KEEP and that dies holding a claimed
//! message leaves it in its slot; repairers do not free it; an adopter that
//! holds the dead consumer's record hands it out and releases it once.
//!
//! Death is modelled as in `repair.rs`: a thread claims (`try_claim`, the
//! claim a `ByteRef` holds) and stops, then declares itself dead in an
//! [`Oracle`] (Release store; repairers and adopters read it with Acquire,
//! as a real reaper's proof of death orders the dead process's last
//! writes). The adopter's right to a dead endpoint's record is the
//! endpoint-table entry it wins with the real reaping CAS
//! (`EndpointTable::begin_reap`), which the models drive directly; the
//! heap queue's `adopt_kept` is the same `bytes_core::adopt_kept` the
//! mapped queue runs once it has won the entries.
//!
//! What loom checks beyond the asserts: the payload of each slot is
//! shadowed by a tracked cell, so an adopter reading a message whose slot
//! was freed (by a repairer, or another adopter) while a producer rewrites
//! it is a data race loom reports; a lost wake-up of the blocked producer
//! is a deadlock loom reports.
#![cfg(loom)]

use loom::sync::atomic::AtomicU64;
use loom::sync::Arc;
use loom::thread;
use shmring::__internal::{EndpointTable, HeapByteQueue, ProcId};
use shmring::{Flavor, Role, TryRecvError, WakeMode};
use shmring_loom_tests::{model_repairing as model, Oracle};
use std::time::Duration;

/// The kept message.
const KEPT: &[u8] = b"abc";
/// The message a producer sends behind it.
const NEXT: &[u8] = b"de";

/// A fake process identity for the table (never checked for liveness here:
/// the oracle is the proof of death).
fn proc_id(pid: u32) -> ProcId {
    ProcId { pid, start: 7 }
}

/// Model 1. Capacity 1: the keeping consumer K (bit 1) claims the only
/// message and dies, while a repairer runs one repair at any point of that
/// claim and death. The adopter (main thread, after K's death: the join is
/// the proof of death), concurrently with the repairer, first fails (its
/// broker refused: the message stays kept), then succeeds: K's message is
/// handed over at least once and released exactly once (no repair frees or
/// counts it); then the producer (bit 0) finds the slot free, and consumer
/// C (bit 2) receives its next message, never K's again.
#[test]
fn kept_claim_survives_repairer_and_is_adopted() {
    model(|| {
        let q = HeapByteQueue::new(Flavor::Mpmc, 1, 4, WakeMode::Fast);
        let p = q.sender().expect("MPMC senders always attach"); // bit 0
        let mut k = q.receiver().expect("MPMC receivers always attach"); // bit 1
        let c = q.receiver().expect("MPMC receivers always attach"); // bit 2
        assert_eq!(k.bit(), 1);
        k.keep_claims();
        p.try_send(KEPT).expect("empty ring");
        let oracle = Oracle::new(3);

        let o = oracle.clone();
        let dying = thread::spawn(move || {
            let claim = k.raw().try_claim().expect("K is the only taker");
            assert_eq!(claim.pos, 0);
            // Killed here, holding the claim.
            o.kill(1);
            k
        });
        let (rq, o) = (q.clone(), oracle.clone());
        let repairer = thread::spawn(move || rq.queue().repair(&|i| o.live(i)));

        let k = dying.join().unwrap();
        let live = |i: usize| oracle.live(i);
        let held = |i: usize| i == 1;
        let mut seen = Vec::new();
        let refused = q.adopt_kept(&live, &held, &mut |pos, b| {
            seen.push((pos, b.to_vec()));
            Err("refused")
        });
        assert_eq!(refused, Err("refused"));
        assert_eq!(seen, vec![(0, KEPT.to_vec())], "handed over, and kept");
        assert!(p.try_send(NEXT).is_err(), "the kept slot is still taken");
        let handed = q.adopt_kept(&live, &held, &mut |pos, b| {
            seen.push((pos, b.to_vec()));
            Ok::<(), ()>(())
        });
        assert_eq!(handed, Ok(1), "released exactly once");
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[1], (0, KEPT.to_vec()));
        p.try_send(NEXT).expect("the kept slot was released");
        assert_eq!(repairer.join().unwrap(), 0, "a kept message is never lost");
        let mut out = Vec::new();
        assert_eq!(c.try_recv_into(&mut out), Ok(NEXT.len()));
        assert_eq!(out, NEXT, "never the kept message again");
        assert_eq!(c.try_recv_into(&mut out), Err(TryRecvError::Empty));
        assert_eq!(q.queue().repair(&|i| oracle.live(i)), 0);
        assert_eq!(q.adopt_kept(&live, &held, &mut |_, _| Err(())), Ok(0));
        drop((k, p));
    });
}

/// Model 2. Two adopters race for the dead keeping consumer K (dead before
/// they start), each first winning K's endpoint-table entry with the
/// reaping CAS and adopting only if it won, while a producer (main thread)
/// blocks to send into the one slot. The message is handed over and
/// released exactly once in total (the loser of the CAS hands out nothing,
/// and never reads the slot the winner frees), and the release wakes the
/// producer, whose message then reaches consumer C.
#[test]
fn two_adopters_release_once_and_wake_the_producer() {
    model(|| {
        let q = HeapByteQueue::new(Flavor::Mpmc, 1, 4, WakeMode::Fast);
        let p = q.sender().expect("MPMC senders always attach"); // bit 0
        let mut k = q.receiver().expect("MPMC receivers always attach"); // bit 1
        let c = q.receiver().expect("MPMC receivers always attach"); // bit 2
        k.keep_claims();
        p.try_send(KEPT).expect("empty ring");
        let claim = k.raw().try_claim().expect("K is the only taker");
        assert_eq!(claim.pos, 0);
        let oracle = Oracle::new(3);
        oracle.kill(1);
        // K's entry in an endpoint table, as its process left it.
        let words: Arc<Vec<AtomicU64>> = Arc::new((0..2).map(|_| AtomicU64::new(0)).collect());
        let dead = EndpointTable::new(&words[..])
            .claim(Role::Receiver, proc_id(100))
            .expect("a free entry");

        let adopters: Vec<_> = [200, 300]
            .into_iter()
            .map(|me| {
                let (q, o, words) = (q.clone(), oracle.clone(), words.clone());
                thread::spawn(move || {
                    let table = EndpointTable::new(&words[..]);
                    let Some(won) = table.begin_reap(&dead, proc_id(me)) else {
                        return (0, 0);
                    };
                    let mut calls = 0;
                    let handed = q
                        .adopt_kept(&|i| o.live(i), &|i| i == 1, &mut |pos, b| {
                            assert_eq!((pos, b), (0, KEPT));
                            calls += 1;
                            Ok::<(), ()>(())
                        })
                        .unwrap();
                    assert!(table.release(&won.entry), "ours until freed");
                    (handed, calls)
                })
            })
            .collect();

        p.send_deadline(NEXT, None, Duration::ZERO, &|| {})
            .expect("receivers are attached");
        let results: Vec<(usize, usize)> =
            adopters.into_iter().map(|h| h.join().unwrap()).collect();
        let handed: usize = results.iter().map(|r| r.0).sum();
        let calls: usize = results.iter().map(|r| r.1).sum();
        assert_eq!((handed, calls), (1, 1), "handed and released once");
        assert_eq!(q.queue().repair(&|i| oracle.live(i)), 0, "nothing lost");
        let mut out = Vec::new();
        assert_eq!(c.try_recv_into(&mut out), Ok(NEXT.len()));
        assert_eq!(out, NEXT);
        drop((k, p));
    });
}

/// Model 3. Without KEEP the old behaviour holds under the same race: the
/// dead consumer's message is freed by the repairs (counted once), and an
/// adopter holding its record finds nothing to hand out.
#[test]
fn without_keep_repair_frees_and_adopter_finds_nothing() {
    model(|| {
        let q = HeapByteQueue::new(Flavor::Mpmc, 1, 4, WakeMode::Fast);
        let p = q.sender().expect("MPMC senders always attach"); // bit 0
        let k = q.receiver().expect("MPMC receivers always attach"); // bit 1
        p.try_send(KEPT).expect("empty ring");
        let _claim = k.raw().try_claim().expect("K is the only taker");
        let oracle = Oracle::new(3);
        oracle.kill(1);
        let (rq, o) = (q.clone(), oracle.clone());
        let repairer = thread::spawn(move || rq.queue().repair(&|i| o.live(i)));
        let handed = q.adopt_kept(&|i| oracle.live(i), &|i| i == 1, &mut |_,
                                                                          _|
         -> Result<
            (),
            (),
        > {
            panic!("nothing is kept without KEEP")
        });
        assert_eq!(handed, Ok(0));
        let lost = repairer.join().unwrap() + q.queue().repair(&|i| oracle.live(i));
        assert_eq!(lost, 1, "freed and counted once");
        p.try_send(NEXT).expect("the slot was freed");
        drop(k);
    });
}
