//! Waiting for the other side: programs started on their own, in either
//! order, wait (on the queue's futex, not polling) until their peer has
//! attached, and time out when it never comes.
#![cfg(not(loom))]

mod common;

use common::{child_main, run, spawn_child, wait_ok, Args};
use shmring::{Flavor, Pipe, Queue};
use std::time::Duration;

/// Child: opens queue `args[0]` as `args[1]` ("sender" or "receiver"),
/// waits for the other side, then sends 7 or receives it.
#[test]
#[ignore = "child process entry point"]
fn child_peer() {
    child_main("child_peer", |a: Args| {
        let q = Queue::<u64>::open(a.str(0)).unwrap();
        if a.str(1) == "sender" {
            let tx = q.sender().unwrap();
            assert!(tx.wait_connected(Some(Duration::from_secs(60))));
            tx.send(7).unwrap();
        } else {
            let rx = q.receiver().unwrap();
            assert!(rx.wait_connected(Some(Duration::from_secs(60))));
            assert_eq!(rx.recv_timeout(Duration::from_secs(60)), Ok(7));
        }
    });
}

/// Child: opens pipe `args[0]`, takes end `args[1]`, waits for the other
/// end, and exchanges one message each way.
#[test]
#[ignore = "child process entry point"]
fn child_pipe_peer() {
    child_main("child_pipe_peer", |a: Args| {
        let pipe = Pipe::open(a.str(0)).unwrap();
        let (end, me, peer): (_, &[u8], &[u8]) = if a.str(1) == "left" {
            (pipe.left().unwrap(), b"from left", b"from right")
        } else {
            (pipe.right().unwrap(), b"from right", b"from left")
        };
        assert!(end.wait_connected(Some(Duration::from_secs(60))));
        assert!(end.is_connected());
        end.send(me).unwrap();
        assert_eq!(end.recv().unwrap(), peer);
    });
}

/// Sender first or receiver first, each in its own process: whichever
/// starts first waits for the other, then the message goes through.
#[test]
fn a_queue_peer_started_later_is_waited_for() {
    run("peers_queue", |ctx| {
        for flavor in [Flavor::Spsc, Flavor::Mpmc] {
            for first in ["sender", "receiver"] {
                let name = ctx.name("q");
                let _q = Queue::<u64>::create(&name, flavor, 4).unwrap();
                let second = if first == "sender" {
                    "receiver"
                } else {
                    "sender"
                };
                let mut a = spawn_child("child_peer", &[&name, first]);
                // Give the first one time to block (not required: either
                // order of arrival must work).
                std::thread::sleep(Duration::from_millis(30));
                let mut b = spawn_child("child_peer", &[&name, second]);
                wait_ok(&mut a);
                wait_ok(&mut b);
            }
        }
    });
}

/// The two ends of a pipe started in either order find each other.
#[test]
fn a_pipe_end_started_later_is_waited_for() {
    run("peers_pipe", |ctx| {
        for first in ["left", "right"] {
            let name = ctx.name("p");
            let _p = Pipe::builder().create(&name).unwrap();
            let second = if first == "left" { "right" } else { "left" };
            let mut a = spawn_child("child_pipe_peer", &[&name, first]);
            std::thread::sleep(Duration::from_millis(30));
            let mut b = spawn_child("child_pipe_peer", &[&name, second]);
            wait_ok(&mut a);
            wait_ok(&mut b);
        }
    });
}

/// Nobody comes: the wait times out (false); a peer that attached and
/// died does not count once it is reaped.
#[test]
fn waiting_for_nobody_times_out() {
    run("peers_none", |_ctx| {
        let q = Queue::<u64>::anonymous(Flavor::Mpmc, 4).unwrap();
        let rx = q.receiver().unwrap();
        assert!(!rx.wait_connected(Some(Duration::from_millis(20))));
        assert!(!rx.wait_connected(Some(Duration::ZERO)));
        let tx = q.sender().unwrap();
        assert!(rx.wait_connected(Some(Duration::ZERO)));
        assert!(tx.wait_connected(None), "a receiver is attached");
        drop(tx);
        assert!(!rx.is_connected());
        let pipe = Pipe::anonymous(true).unwrap();
        let left = pipe.left().unwrap();
        assert!(!left.is_connected());
        assert!(!left.wait_connected(Some(Duration::from_millis(20))));
        let _right = pipe.right().unwrap();
        assert!(left.wait_connected(Some(Duration::ZERO)));
    });
}
