//! loom models of disconnection: the live-endpoint bitmaps, the `ever` bits,
//! and the wake-up that `detach` sends to the other side.
//!
//! A blocked peer must see the disconnect (loom reports a deadlock if the
//! wake-up is lost, since model waits never time out), must get every
//! message sent before it, and must not see a disconnect that did not happen.
#![cfg(loom)]

use loom::thread;
use shmring::__internal::HeapQueue;
use shmring::{Flavor, SendTimeoutError, TryRecvError, WakeMode};
use shmring_loom_tests::model;
use std::time::Duration;

/// A receiver blocked in `recv_deadline(None, ..)` while the only sender
/// sends one value and is dropped: it gets the value, then `Disconnected`.
fn receiver_sees_last_message_then_disconnect(flavor: Flavor) {
    model(move || {
        let q = HeapQueue::<u64>::new(flavor, 1, WakeMode::Fast);
        let tx = q.sender().expect("first sender attaches");
        let rx = q.receiver().expect("first receiver attaches");
        let sender = thread::spawn(move || {
            tx.try_send(7).expect("empty queue with a receiver");
            drop(tx);
        });
        assert_eq!(rx.recv_deadline(None, Duration::ZERO, &|| {}), Ok(Some(7)));
        assert_eq!(
            rx.recv_deadline(None, Duration::ZERO, &|| {}),
            Err(TryRecvError::Disconnected)
        );
        sender.join().unwrap();
    });
}

#[test]
fn blocked_receiver_spsc() {
    receiver_sees_last_message_then_disconnect(Flavor::Spsc);
}

#[test]
fn blocked_receiver_mpmc() {
    receiver_sees_last_message_then_disconnect(Flavor::Mpmc);
}

/// A sender blocked on a full queue (capacity 1) while the only receiver is
/// dropped: it gets its value back in `SendTimeoutError::Disconnected`.
fn sender_sees_disconnect(flavor: Flavor) {
    model(move || {
        let q = HeapQueue::<u64>::new(flavor, 1, WakeMode::Fast);
        let tx = q.sender().expect("first sender attaches");
        let rx = q.receiver().expect("first receiver attaches");
        tx.try_send(1).expect("empty queue with a receiver");
        let receiver = thread::spawn(move || drop(rx));
        assert_eq!(
            tx.send_deadline(2, None, Duration::ZERO, &|| {}),
            Err(SendTimeoutError::Disconnected(2))
        );
        receiver.join().unwrap();
    });
}

#[test]
fn blocked_sender_spsc() {
    sender_sees_disconnect(Flavor::Spsc);
}

#[test]
fn blocked_sender_mpmc() {
    sender_sees_disconnect(Flavor::Mpmc);
}

/// A receiver that attached before any sender polls while a sender attaches,
/// sends one value and leaves: until it has the value it sees only `Empty`,
/// never `Disconnected` (no sender has come and gone yet, as far as it can
/// tell); after the value, `Disconnected` once the sender is gone.
fn receiver_before_sender(flavor: Flavor) {
    model(move || {
        let q = HeapQueue::<u64>::new(flavor, 1, WakeMode::Fast);
        let rx = q.receiver().expect("first receiver attaches");
        let sender = {
            let q = q.clone();
            thread::spawn(move || {
                let tx = q.sender().expect("first sender attaches");
                tx.try_send(7).expect("empty queue with a receiver");
            })
        };
        let mut got = None;
        loop {
            match rx.try_recv() {
                Ok(v) => {
                    assert_eq!(got, None, "one value sent, one received");
                    got = Some(v);
                }
                Err(TryRecvError::Empty) => thread::yield_now(),
                Err(TryRecvError::Disconnected) => {
                    assert_eq!(got, Some(7), "Disconnected before the only message");
                    break;
                }
                Err(e) => panic!("unexpected receive error: {e:?}"),
            }
        }
        sender.join().unwrap();
    });
}

#[test]
fn receiver_before_sender_spsc() {
    receiver_before_sender(Flavor::Spsc);
}

#[test]
fn receiver_before_sender_mpmc() {
    receiver_before_sender(Flavor::Mpmc);
}

/// The mirror image: a sender that attached before any receiver must not be
/// told `Disconnected` while a receiver is attaching (the receiver stays
/// attached until the model ends, so no disconnect ever happens here).
#[test]
fn sender_before_receiver() {
    model(|| {
        let q = HeapQueue::<u64>::new(Flavor::Spsc, 1, WakeMode::Fast);
        let tx = q.sender().expect("first sender attaches");
        let receiver = {
            let q = q.clone();
            thread::spawn(move || q.receiver().expect("first receiver attaches"))
        };
        assert_eq!(tx.try_send(1), Ok(()), "room for one, no receiver has left");
        let rx = receiver.join().unwrap();
        assert_eq!(rx.try_recv(), Ok(1));
    });
}

/// Waiting for a peer: a receiver that waits for a sender to attach
/// (`wait_for_sender`, no deadline) is woken by the attach, whenever it
/// comes: a lost wake-up would leave it asleep for ever (a loom deadlock).
/// The same for a sender waiting for a receiver.
#[test]
fn waiting_for_a_peer_to_attach() {
    for flavor in [Flavor::Spsc, Flavor::Mpmc] {
        model(move || {
            let q = HeapQueue::<u64>::new(flavor, 1, WakeMode::Strict);
            let rx = q.receiver().unwrap();
            let waiter = thread::spawn(move || {
                assert!(rx.wait_for_sender(None, &|| {}));
                rx
            });
            let tx = q.sender().unwrap();
            let _rx = waiter.join().unwrap();
            drop(tx);
        });
        model(move || {
            let q = HeapQueue::<u64>::new(flavor, 1, WakeMode::Strict);
            let tx = q.sender().unwrap();
            let waiter = thread::spawn(move || {
                assert!(tx.wait_for_receiver(None, &|| {}));
                tx
            });
            let rx = q.receiver().unwrap();
            let _tx = waiter.join().unwrap();
            drop(rx);
        });
    }
}
