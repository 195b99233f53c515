//! loom models of the end of a stream: `close` against other senders'
//! closes, against a sender attaching at the same moment, and against a
//! receiver blocked on the empty queue.
//!
//! What must hold: the stream closes exactly once, exactly when the rule
//! says (the last attached sender's close, or the n-th close); a sender
//! that attaches either comes before the closing CAS (then the close was
//! not the last) or is refused; a blocked receiver wakes, takes every
//! message sent before the close, and only then sees `Closed`.
#![cfg(loom)]

use loom::thread;
use shmring::__internal::HeapQueue;
use shmring::{Flavor, TryRecvError, WakeMode};
use shmring_loom_tests::model;
use std::time::Duration;

/// Two senders each send one value and close at once, while the receiver
/// is blocked: exactly one close ends the stream, and the receiver gets
/// both values, then `Closed` (a lost wake-up is a loom deadlock).
#[test]
fn the_last_of_two_closes_ends_the_stream() {
    model(|| {
        let q = HeapQueue::<u64>::new(Flavor::Mpmc, 2, WakeMode::Fast);
        let rx = q.receiver().expect("first receiver attaches");
        let a = q.sender().expect("a attaches");
        let b = q.sender().expect("b attaches");
        let ta = thread::spawn(move || {
            a.try_send(1).expect("room for both");
            a.close()
        });
        let tb = thread::spawn(move || {
            b.try_send(2).expect("room for both");
            b.close()
        });
        let mut got = Vec::new();
        loop {
            match rx.recv_deadline(None, Duration::ZERO, &|| {}) {
                Ok(Some(v)) => got.push(v),
                Err(TryRecvError::Closed) => break,
                other => panic!("unexpected {other:?}"),
            }
        }
        let (ca, cb) = (ta.join().unwrap(), tb.join().unwrap());
        assert!(ca ^ cb, "exactly one close ends the stream: {ca} {cb}");
        got.sort_unstable();
        assert_eq!(got, [1, 2], "every message before the end");
        assert!(q.is_closed());
    });
}

/// A sender attaches while the only sender closes: either it attached
/// first (the close did not end the stream, and its own close does), or
/// it is refused and the stream ended. Never both, never neither.
#[test]
fn an_attach_racing_the_last_close() {
    model(|| {
        let q = HeapQueue::<u64>::new(Flavor::Mpmc, 2, WakeMode::Fast);
        let a = q.sender().expect("a attaches");
        let q2 = q.clone();
        let late = thread::spawn(move || q2.sender());
        let ended = a.close();
        let b = late.join().unwrap();
        match b {
            Some(b) => {
                assert!(!ended, "a sender attached before the close: not the last");
                assert!(!q.is_closed());
                assert!(b.close(), "now it is the last");
            }
            None => assert!(ended, "refused only once the stream ended"),
        }
        assert!(q.is_closed());
        assert!(q.sender().is_none(), "no sender joins a closed stream");
    });
}

/// With `close_after(2)`, the first close ends nothing even with no other
/// sender attached (the second producer has not started yet); the second
/// close, from a sender that attached later, ends it. A receiver waiting
/// meanwhile sees `Disconnected` at most between the two, never `Closed`
/// before the second close.
#[test]
fn close_after_two_waits_for_the_second_producer() {
    model(|| {
        let q = HeapQueue::<u64>::new(Flavor::Mpmc, 2, WakeMode::Fast);
        q.set_close_after(2);
        let rx = q.receiver().expect("receiver attaches");
        let a = q.sender().expect("a attaches");
        let q2 = q.clone();
        let t = thread::spawn(move || {
            a.try_send(1).expect("room");
            assert!(!a.close(), "one close of two");
            let b = q2.sender().expect("the stream is still open");
            b.try_send(2).expect("room");
            assert!(b.close(), "the second close ends it");
        });
        let mut got = Vec::new();
        loop {
            match rx.try_recv() {
                Ok(v) => got.push(v),
                Err(TryRecvError::Closed) => break,
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => thread::yield_now(),
                Err(e) => panic!("unexpected {e:?}"),
            }
        }
        t.join().unwrap();
        assert_eq!(got, [1, 2], "both producers' messages, then the end");
    });
}

/// The stream is closed outright while a sender sends: a message the send
/// accepted is received before `Closed`, never after it (receivers wait
/// for the sender to leave). The sender sees `Closed` or succeeds.
#[test]
fn a_send_racing_queue_close_never_lands_after_closed() {
    model(|| {
        let q = HeapQueue::<u64>::new(Flavor::Mpmc, 2, WakeMode::Fast);
        let rx = q.receiver().expect("receiver attaches");
        let tx = q.sender().expect("sender attaches");
        let t = thread::spawn(move || {
            let sent = tx.try_send(5).is_ok();
            drop(tx);
            sent
        });
        q.close_stream();
        let mut got = Vec::new();
        loop {
            match rx.recv_deadline(None, Duration::ZERO, &|| {}) {
                Ok(Some(v)) => got.push(v),
                Err(TryRecvError::Closed) => break,
                other => panic!("unexpected {other:?}"),
            }
        }
        let sent = t.join().unwrap();
        assert_eq!(got, if sent { vec![5] } else { vec![] });
        assert_eq!(rx.try_recv(), Err(TryRecvError::Closed), "permanent");
    });
}
