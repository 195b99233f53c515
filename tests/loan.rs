//! Zero-copy loans of `Queue<T>` slots (`Sender::loan`, `Receiver::recv_ref`)
//! across processes, and what an abandoned loan leaves behind.

mod common;

use common::*;
use shmring::bytemuck::{Pod, Zeroable};
use shmring::{
    Flavor, Queue, RecvError, RecvTimeoutError, SendError, SendTimeoutError, TryRecvError,
    TrySendError,
};
use std::time::Duration;

/// A message big enough that copying it is worth avoiding.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
struct Frame {
    producer: u64,
    seq: u64,
    words: [u64; 30],
}

fn fill(f: &mut Frame, producer: u64, seq: u64) {
    f.producer = producer;
    f.seq = seq;
    for (i, w) in f.words.iter_mut().enumerate() {
        *w = (producer << 48) ^ (seq << 8) ^ i as u64;
    }
}

fn check(f: &Frame) {
    for (i, w) in f.words.iter().enumerate() {
        assert_eq!(
            *w,
            (f.producer << 48) ^ (f.seq << 8) ^ i as u64,
            "frame ({}, {}) torn at word {i}",
            f.producer,
            f.seq
        );
    }
}

/// Child: on queue `args[0]`, as producer `args[1]`, sends `args[2]` frames
/// written in place; every seventh loan is dropped first without commit.
#[test]
#[ignore = "child process entry point"]
fn child_loaner() {
    child_main("child_loaner", |a: Args| {
        let q = Queue::<Frame>::open(a.str(0)).unwrap();
        let mut tx = q.sender().unwrap();
        let id: u64 = a.get(1);
        let count: u64 = a.get(2);
        for seq in 0..count {
            if seq % 7 == 3 {
                let mut abandoned = tx.loan().unwrap();
                fill(&mut abandoned, 99, 99);
                drop(abandoned);
            }
            let mut loan = tx.loan().unwrap();
            fill(&mut loan, id, seq);
            loan.commit();
        }
    });
}

fn receive_all(q: &Queue<Frame>, producers: u64, per: u64) {
    let mut rx = q.receiver().unwrap();
    let mut next = vec![0u64; producers as usize];
    loop {
        match rx.recv_ref() {
            Ok(f) => {
                assert!(
                    f.producer < producers,
                    "an abandoned loan was delivered: {f:?}"
                );
                check(&f);
                let p = f.producer as usize;
                assert_eq!(
                    f.seq, next[p],
                    "producer {p}: lost, duplicated or reordered"
                );
                next[p] += 1;
            }
            Err(RecvError::Disconnected) => break,
            Err(e) => panic!("recv_ref: {e}"),
        }
    }
    assert!(next.iter().all(|&n| n == per), "missing frames: {next:?}");
}

#[test]
fn spsc_loans_across_processes_with_abandoned_loans() {
    run("loan_spsc", |ctx| {
        let name = ctx.name("q");
        let q = Queue::<Frame>::create(&name, Flavor::Spsc, 4).unwrap();
        let mut child = spawn_child("child_loaner", &[&name, "0", "20000"]);
        receive_all(&q, 1, 20_000);
        wait_ok(&mut child);
        assert!(q.is_empty());
    });
}

#[test]
fn mpmc_loans_from_three_processes_skip_records_never_delivered() {
    run("loan_mpmc", |ctx| {
        let name = ctx.name("q");
        let q = Queue::<Frame>::create(&name, Flavor::Mpmc, 8).unwrap();
        let hold = q.sender().unwrap();
        let mut children: Vec<_> = (0..3)
            .map(|p| spawn_child("child_loaner", &[&name, &p.to_string(), "5000"]))
            .collect();
        let receiver = {
            let q = q.clone();
            std::thread::spawn(move || receive_all(&q, 3, 5000))
        };
        for c in &mut children {
            wait_ok(c);
        }
        drop(hold);
        receiver.join().unwrap();
        // Skip records were stepped over, not left in the ring.
        assert!(q.is_empty());
    });
}

#[test]
fn spsc_abandoned_loan_leaves_the_slot_free() {
    let q = Queue::<u64>::anonymous(Flavor::Spsc, 1).unwrap();
    let (mut tx, mut rx) = (q.sender().unwrap(), q.receiver().unwrap());
    *tx.loan().unwrap() = 5; // dropped: nothing sent
    assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    assert_eq!(q.len(), 0);
    let mut l = tx.try_loan().unwrap();
    *l = 6;
    l.commit();
    assert_eq!(tx.try_loan().map(|_| ()), Err(TrySendError::Full(())));
    assert_eq!(
        tx.loan_timeout(Duration::from_millis(5)).map(|_| ()),
        Err(SendTimeoutError::Timeout(()))
    );
    assert_eq!(*rx.try_recv_ref().unwrap(), 6);
    assert_eq!(rx.try_recv_ref().map(|_| ()), Err(TryRecvError::Empty));
    assert_eq!(
        rx.recv_ref_timeout(Duration::from_millis(5)).map(|_| ()),
        Err(RecvTimeoutError::Timeout)
    );
}

#[test]
fn mpmc_abandoned_loans_between_messages() {
    let q = Queue::<u64>::anonymous(Flavor::Mpmc, 3).unwrap();
    let (mut tx, rx) = (q.sender().unwrap(), q.receiver().unwrap());
    for round in 0..10u64 {
        drop(tx.loan().unwrap());
        let mut l = tx.loan().unwrap();
        *l = round;
        l.commit();
        drop(tx.try_loan().unwrap());
        assert_eq!(rx.recv().unwrap(), round);
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    }
    // A batch receive steps over skip records too.
    drop(tx.loan().unwrap());
    tx.send_slice(&[1, 2]).unwrap();
    let mut out = [0u64; 4];
    let mut got = Vec::new();
    while got.len() < 2 {
        let n = rx.try_recv_slice(&mut out).unwrap();
        got.extend_from_slice(&out[..n]);
    }
    assert_eq!(got, vec![1, 2]);
    assert!(q.is_empty());
}

#[test]
fn loans_and_refs_see_disconnect() {
    let q = Queue::<u64>::anonymous(Flavor::Mpmc, 2).unwrap();
    let mut tx = q.sender().unwrap();
    let mut rx = q.receiver().unwrap();
    let mut l = tx.loan().unwrap();
    *l = 1;
    l.commit();
    drop(tx);
    assert_eq!(*rx.recv_ref().unwrap(), 1);
    assert_eq!(rx.recv_ref().map(|_| ()), Err(RecvError::Disconnected));
    let mut tx = q.sender().unwrap();
    drop(rx);
    assert_eq!(tx.loan().map(|_| ()), Err(SendError::Disconnected(())));
    assert_eq!(
        tx.try_loan().map(|_| ()),
        Err(TrySendError::Disconnected(()))
    );
}
