//! Values of any `Serialize` / `Deserialize` type over a byte queue
//! (feature `serde`): encoded with postcard straight into the slot.
#![cfg(feature = "serde")]

mod common;

use common::*;
use serde::{Deserialize, Serialize};
use shmring::{ByteQueue, ByteSendError, Flavor, ValueRecvError, ValueSendError};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Job {
    id: u64,
    name: String,
    weights: Vec<f32>,
    tags: BTreeMap<String, i32>,
    kind: Kind,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Kind {
    Embed { dim: u32 },
    Stop,
}

fn job(i: u64) -> Job {
    Job {
        id: i,
        name: format!("job-{i}"),
        weights: (0..(i % 17)).map(|k| k as f32 * 0.5).collect(),
        tags: (0..(i % 3))
            .map(|k| (format!("t{k}"), k as i32 - 1))
            .collect(),
        kind: if i % 5 == 4 {
            Kind::Stop
        } else {
            Kind::Embed { dim: 384 }
        },
    }
}

/// Child: opens the queue `args[0]` and sends `args[1]` jobs as values.
#[test]
#[ignore = "child process entry point"]
fn child_value_sender() {
    child_main("child_value_sender", |a: Args| {
        let q = ByteQueue::open(a.str(0)).unwrap();
        let mut tx = q.sender().unwrap();
        let n: u64 = a.get(1);
        for i in 0..n {
            tx.send_value(&job(i)).unwrap();
        }
    });
}

#[test]
fn values_cross_processes_intact_and_in_order() {
    run("values_cross_processes_intact_and_in_order", |ctx| {
        let name = ctx.name("q");
        let q = ByteQueue::create(name.as_str(), Flavor::Spsc, 8, 512).unwrap();
        let mut rx = q.receiver().unwrap();
        let n = 5_000u64;
        let mut child = spawn_child("child_value_sender", &[name.as_str(), &n.to_string()]);
        for i in 0..n {
            let got: Job = rx.recv_value().unwrap();
            assert_eq!(got, job(i));
        }
        wait_ok(&mut child);
        assert!(matches!(
            rx.recv_value::<Job>(),
            Err(ValueRecvError::Disconnected)
        ));
    });
}

#[test]
fn value_too_large_is_refused_and_nothing_is_sent() {
    let q = ByteQueue::anonymous(Flavor::Mpmc, 4, 64).unwrap();
    let (mut tx, mut rx) = (q.sender().unwrap(), q.receiver().unwrap());
    tx.send_value(&"small").unwrap();
    let big = vec![7u8; 200];
    match tx.send_value(&big) {
        Err(ValueSendError::TooLarge { max }) => assert_eq!(max, 64),
        other => panic!("expected TooLarge, got {other:?}"),
    }
    // The abandoned loan left a skip record, not a message.
    let s: String = rx.recv_value().unwrap();
    assert_eq!(s, "small");
    assert!(matches!(
        rx.try_recv_value::<String>(),
        Err(ValueRecvError::Empty)
    ));
    assert_eq!(q.len(), 0);
}

#[test]
fn undecodable_message_is_a_decode_error_and_is_consumed() {
    let q = ByteQueue::anonymous(Flavor::Spsc, 4, 64).unwrap();
    let (mut tx, mut rx) = (q.sender().unwrap(), q.receiver().unwrap());
    // A String whose length prefix promises more bytes than there are.
    tx.send(&[50, b'a', b'b']).unwrap();
    tx.send_value(&42u32).unwrap();
    assert!(matches!(
        rx.recv_value::<String>(),
        Err(ValueRecvError::Decode(_))
    ));
    assert_eq!(rx.recv_value::<u32>().unwrap(), 42);
}

#[test]
fn try_and_timeout_forms() {
    let q = ByteQueue::anonymous(Flavor::Spsc, 1, 32).unwrap();
    let (mut tx, mut rx) = (q.sender().unwrap(), q.receiver().unwrap());
    assert!(matches!(
        rx.recv_value_timeout::<u8>(std::time::Duration::from_millis(5)),
        Err(ValueRecvError::Empty)
    ));
    tx.try_send_value(&1u8).unwrap();
    assert!(matches!(
        tx.try_send_value(&2u8),
        Err(ValueSendError::Send(ByteSendError::Full))
    ));
    assert!(matches!(
        tx.send_value_timeout(&2u8, std::time::Duration::from_millis(5)),
        Err(ValueSendError::Send(ByteSendError::Timeout))
    ));
    assert_eq!(rx.try_recv_value::<u8>().unwrap(), 1);
    drop(tx);
    assert!(matches!(
        rx.recv_value::<u8>(),
        Err(ValueRecvError::Disconnected)
    ));
}
