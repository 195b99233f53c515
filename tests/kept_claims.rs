//! Kept claims (`ByteReceiver::keep_claims`, `ByteQueue::adopt_kept`): a
//! receiver process killed while holding an in-place read (`ByteRef`) of an
//! MPMC byte queue leaves that message in its slot for a successor, instead
//! of it being released and counted lost. Real processes: the receivers
//! that die are re-executed children killed with SIGKILL, and the adopter is
//! a separate child process.

mod common;

use common::{
    asleep, child_main, gettid, kill_child, run, sleep_forever, spawn_child, wait_ok, wait_until,
    Args,
};
use shmring::inspect::{inspect, Location};
use shmring::{ByteQueue, ByteSendError, Flavor, SegmentError, TryRecvError};
use std::collections::BTreeMap;
use std::time::Duration;

fn msg(i: u64) -> Vec<u8> {
    format!("message {i}").into_bytes()
}

/// Child: opens byte queue `args[0]`, attaches a receiver, marks its claims
/// as kept if `args[1]` is `keep`, takes the oldest message in place
/// (expecting the bytes `args[2]` and, unless `args[3]` is `-`, the
/// position `args[3]`), and waits to be killed still holding it.
#[test]
#[ignore = "child process entry point"]
fn child_dies_holding() {
    child_main("child_dies_holding", |a: Args| {
        let q = ByteQueue::open(a.str(0)).unwrap();
        let mut rx = q.receiver().unwrap();
        if a.str(1) == "keep" {
            rx.keep_claims().unwrap();
        }
        let held = rx.recv_ref().unwrap();
        assert_eq!(&*held, a.str(2).as_bytes());
        if a.str(3) != "-" {
            assert_eq!(held.position(), a.get::<u64>(3));
        }
        // Killed here, holding the claim (the parent sees `len` drop).
        sleep_forever();
    });
}

/// Child: opens byte queue `args[0]`, attaches a receiver that keeps its
/// claims, receives the message `args[1]` in place and drops it (nothing is
/// held), creates the file `args[2]` to say so, and waits to be killed.
#[test]
#[ignore = "child process entry point"]
fn child_keeper_holds_nothing() {
    child_main("child_keeper_holds_nothing", |a: Args| {
        let q = ByteQueue::open(a.str(0)).unwrap();
        let mut rx = q.receiver().unwrap();
        rx.keep_claims().unwrap();
        assert_eq!(&*rx.recv_ref().unwrap(), a.str(1).as_bytes());
        std::fs::write(a.str(2), b"released").unwrap();
        sleep_forever();
    });
}

/// Child: the successor. Opens byte queue `args[0]`; a first `adopt_kept`
/// whose closure fails (a broker that refused) must hand out exactly the
/// kept message `args[2]` at position `args[1]`, keep it and return the
/// error; a second must hand out the same and release it (`Ok(1)`); a third
/// finds nothing.
#[test]
#[ignore = "child process entry point"]
fn child_adopts() {
    child_main("child_adopts", |a: Args| {
        let q = ByteQueue::open(a.str(0)).unwrap();
        let (pos, bytes) = (a.get::<u64>(1), a.str(2).as_bytes().to_vec());
        let mut seen = Vec::new();
        let r = q.adopt_kept(|p, b| {
            seen.push((p, b.to_vec()));
            Err("broker refused")
        });
        assert_eq!(r, Err("broker refused"));
        assert_eq!(seen, vec![(pos, bytes.clone())]);
        assert_eq!(q.lost(), 0);
        seen.clear();
        let n = q
            .adopt_kept(|p, b| {
                seen.push((p, b.to_vec()));
                Ok::<(), ()>(())
            })
            .unwrap();
        assert_eq!(n, 1);
        assert_eq!(seen, vec![(pos, bytes)]);
        assert_eq!(q.adopt_kept(|_, _| Err(())), Ok(0), "nothing left");
        assert_eq!(q.lost(), 0);
    });
}

/// The bridge's promise: a receiver that keeps its claims and is killed
/// holding message 0 loses nothing. Reapers (`reap_dead`, a timed send at
/// its deadline, a blocked send) leave the message in its slot; it is not
/// delivered to the other receiver; senders stop at its slot once they wrap
/// round to it (`Full`, a blocked send sleeps) instead of overwriting it. A
/// successor process adopts exactly that message, with its position (an
/// `Err` from its closure keeps it for the next call); then the blocked
/// send completes, the queue flows again, and every message is received
/// exactly once overall. The dead receiver's entry is then freed, and the
/// endpoint that takes it next does not inherit its KEEP: its own death
/// loses its message, as before.
#[test]
fn kept_claim_is_adopted_by_a_successor() {
    run("kept_adopted", |ctx| {
        let name = ctx.name("q");
        let q = ByteQueue::create(&name, Flavor::Mpmc, 4, 64).unwrap();
        let tx = q.sender().unwrap();
        let rx = q.receiver().unwrap();
        for i in 0..3 {
            tx.send(&msg(i)).unwrap();
        }
        let m0 = String::from_utf8(msg(0)).unwrap();
        let mut child = spawn_child("child_dies_holding", &[&name, "keep", &m0, "0"]);
        wait_until("the keeper's claim", || q.len() == 2);
        kill_child(&mut child);

        let mut received: BTreeMap<Vec<u8>, u32> = BTreeMap::new();
        let mut count = |m: Vec<u8>| *received.entry(m).or_default() += 1;
        // Reapers of every kind find the dead receiver and keep its claim.
        q.reap_dead();
        assert_eq!(q.lost(), 0, "a kept claim is not lost");
        assert_eq!(
            q.live_endpoints(),
            (1, 1),
            "the dead keeper is disconnected"
        );
        count(rx.recv().unwrap());
        count(rx.recv().unwrap());
        tx.send(&msg(3)).unwrap(); // position 3, the last slot of lap 0
        count(rx.recv().unwrap());
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty), "message 0 is kept");
        // Position 4 is slot 0, the kept one: senders stop there.
        assert_eq!(tx.try_send(&msg(4)), Err(ByteSendError::Full));
        assert_eq!(
            tx.send_timeout(&msg(4), Duration::from_millis(50)),
            Err(ByteSendError::Timeout),
            "a timed send reaps at its deadline, and still finds no room"
        );
        q.reap_dead();
        assert_eq!(q.lost(), 0);
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
        // `inspect` shows the dead keeper's entry (which `gc` keeps the
        // segment for: the occupancy does not count a kept message).
        let report = inspect(&Location::Named(name.as_str().to_string())).unwrap();
        let dead: Vec<_> = report.endpoints.iter().filter(|e| !e.alive).collect();
        assert_eq!(dead.len(), 1);
        assert!(dead[0].keeps_claims);
        assert!(report.endpoints.iter().all(|e| e.alive != e.keeps_claims));

        // A blocked sender sleeps (reaping every liveness slice) until the
        // successor releases the kept slot.
        let q2 = q.clone();
        let (tid_tx, tid_rx) = std::sync::mpsc::channel();
        let blocked = std::thread::spawn(move || {
            let tx2 = q2.sender().unwrap();
            tid_tx.send(gettid()).unwrap();
            tx2.send(&msg(4)).unwrap();
        });
        let tid = tid_rx.recv().unwrap();
        wait_until("the blocked sender's sleep", || asleep(tid));
        assert!(!blocked.is_finished());

        let mut adopter = spawn_child("child_adopts", &[&name, "0", &m0]);
        wait_ok(&mut adopter);
        count(msg(0)); // received by the successor
        blocked.join().unwrap();
        assert_eq!(q.lost(), 0);
        assert_eq!(rx.recv().unwrap(), msg(4));
        count(msg(4));
        for i in 5..20 {
            tx.send(&msg(i)).unwrap();
            count(rx.recv().unwrap());
        }
        assert_eq!(q.lost(), 0);
        let expected: BTreeMap<Vec<u8>, u32> = (0..20).map(|i| (msg(i), 1)).collect();
        assert_eq!(received, expected, "every message exactly once");
        assert_eq!(q.adopt_kept(|_, _| Err(())), Ok(0));
        assert_eq!(q.endpoints(), (1, 1));

        // The next receiver to take an entry does not keep: its death loses
        // its message and leaves nothing to adopt.
        tx.send(&msg(20)).unwrap();
        let m20 = String::from_utf8(msg(20)).unwrap();
        let mut plain = spawn_child("child_dies_holding", &[&name, "plain", &m20, "-"]);
        wait_until("the plain receiver's claim", || q.is_empty());
        kill_child(&mut plain);
        q.reap_dead();
        assert_eq!(q.lost(), 1);
        assert_eq!(q.adopt_kept(|_, _| Err(())), Ok(0));
        drop((tx, rx));
        ByteQueue::unlink(&name).unwrap();
    });
}

/// The end of a named stream does not remove the name while a dead
/// receiver's kept message waits for an adopter: the stream is closed and
/// every endpoint is gone, but the name stays until the adoption, which
/// then removes it (the stream has ended and is drained).
#[test]
fn ended_stream_keeps_its_name_for_the_adopter() {
    run("kept_end", |ctx| {
        let name = ctx.removed_name("q");
        let q = ByteQueue::create(&name, Flavor::Mpmc, 4, 64).unwrap();
        let tx = q.sender().unwrap();
        tx.send(&msg(0)).unwrap();
        let m0 = String::from_utf8(msg(0)).unwrap();
        let mut child = spawn_child("child_dies_holding", &[&name, "keep", &m0, "0"]);
        wait_until("the keeper's claim", || q.is_empty());
        kill_child(&mut child);
        assert!(tx.close(), "the stream ends");
        q.reap_dead();
        assert!(name.exists(), "the kept message keeps the name");
        drop(q);
        let q = ByteQueue::open(&name).unwrap();
        let mut got = Vec::new();
        let n = q.adopt_kept(|p, b| {
            got.push((p, b.to_vec()));
            Ok::<(), ()>(())
        });
        assert_eq!(n, Ok(1));
        assert_eq!(got, vec![(0, msg(0))]);
        assert!(!name.exists(), "adopted: the ended stream's name goes");
    });
}

/// Without `keep_claims`, the old behaviour holds: a receiver killed
/// holding a message loses it (counted once), a sender wraps past its slot,
/// and there is nothing to adopt.
#[test]
fn without_keep_the_claim_is_lost() {
    run("kept_not_kept", |ctx| {
        let name = ctx.name("q");
        let q = ByteQueue::create(&name, Flavor::Mpmc, 2, 64).unwrap();
        let tx = q.sender().unwrap();
        tx.send(&msg(0)).unwrap();
        tx.send(&msg(1)).unwrap();
        let m0 = String::from_utf8(msg(0)).unwrap();
        let mut child = spawn_child("child_dies_holding", &[&name, "plain", &m0, "0"]);
        wait_until("the claim", || q.len() == 1);
        kill_child(&mut child);
        let rx = q.receiver().unwrap();
        assert_eq!(rx.recv().unwrap(), msg(1));
        // Position 2 needs the dead receiver's slot: freed by the repair.
        tx.send(&msg(2)).unwrap();
        assert_eq!(rx.recv().unwrap(), msg(2));
        assert_eq!(q.lost(), 1);
        let mut called = false;
        let n = q
            .adopt_kept(|_, _| {
                called = true;
                Ok::<(), ()>(())
            })
            .unwrap();
        assert_eq!((n, called), (0, false));
        drop((tx, rx));
        ByteQueue::unlink(&name).unwrap();
    });
}

/// A receiver that keeps its claims and dies holding nothing leaves
/// nothing to adopt and is reaped as usual; a keeper that dies holding a
/// message counts as disconnected at once (its senders see
/// `Disconnected`), though its entry stays until adoption.
#[test]
fn keeper_death_disconnects_and_empty_handed_keeper_is_reaped() {
    run("kept_empty", |ctx| {
        let name = ctx.name("q");
        let q = ByteQueue::create(&name, Flavor::Mpmc, 4, 64).unwrap();
        let tx = q.sender().unwrap();
        tx.send(&msg(0)).unwrap();
        let m0 = String::from_utf8(msg(0)).unwrap();
        let marker = std::env::temp_dir().join(format!("{}.released", name.as_str()));
        let marker_s = marker.to_str().unwrap().to_string();
        let mut child = spawn_child("child_keeper_holds_nothing", &[&name, &m0, &marker_s]);
        wait_until("the keeper's release", || marker.exists());
        kill_child(&mut child);
        std::fs::remove_file(&marker).unwrap();
        q.reap_dead();
        assert_eq!(q.endpoints(), (1, 0), "reaped: its entry is free");
        assert_eq!(q.adopt_kept(|_, _| Err(())), Ok(0));
        assert_eq!(q.lost(), 0);
        assert_eq!(tx.try_send(&msg(1)), Err(ByteSendError::Disconnected));

        // Now a keeper that dies holding message 1.
        let m1 = String::from_utf8(msg(1)).unwrap();
        let mut child = spawn_child("child_dies_holding", &[&name, "keep", &m1, "-"]);
        wait_until("the keeper's attach", || q.endpoints().1 == 1);
        tx.send(&msg(1)).unwrap();
        wait_until("the keeper's claim", || q.is_empty());
        kill_child(&mut child);
        q.reap_dead();
        assert_eq!(q.live_endpoints(), (1, 0), "its role bit went");
        assert_eq!(
            tx.try_send(&msg(2)),
            Err(ByteSendError::Disconnected),
            "no receiver left"
        );
        assert_eq!(q.lost(), 0);
        let mut got = Vec::new();
        let n = q
            .adopt_kept(|p, b| {
                got.push((p, b.to_vec()));
                Ok::<(), ()>(())
            })
            .unwrap();
        assert_eq!(n, 1);
        assert_eq!(got, vec![(1, msg(1))]);
        assert_eq!(q.endpoints(), (1, 0));
        drop(tx);
        ByteQueue::unlink(&name).unwrap();
    });
}

/// `ByteRef::position` increases across successive messages, over several
/// laps, and is unique; `instance` differs when a queue of the same name is
/// created again; an SPSC receiver cannot keep its claims.
#[test]
fn positions_increase_and_instances_differ() {
    run("kept_positions", |ctx| {
        let name = ctx.name("q");
        let q = ByteQueue::create(&name, Flavor::Mpmc, 3, 16).unwrap();
        let tx = q.sender().unwrap();
        let mut rx = q.receiver().unwrap();
        let mut last = None;
        for i in 0..20 {
            tx.send(&msg(i)).unwrap();
            let r = rx.recv_ref().unwrap();
            assert_eq!(&*r, msg(i));
            let p = r.position();
            if let Some(l) = last {
                assert!(p > l, "position {p} after {l}");
            }
            last = Some(p);
        }
        let first = q.instance();
        assert_eq!(ByteQueue::open(&name).unwrap().instance(), first);
        drop((tx, rx, q));
        ByteQueue::unlink(&name).unwrap();
        let again = ByteQueue::create(&name, Flavor::Mpmc, 3, 16).unwrap();
        assert_ne!(again.instance(), first, "a new incarnation");
        drop(again);
        ByteQueue::unlink(&name).unwrap();

        let spsc = ByteQueue::anonymous(Flavor::Spsc, 4, 16).unwrap();
        let mut rx = spsc.receiver().unwrap();
        assert!(matches!(
            rx.keep_claims(),
            Err(SegmentError::FlavorMismatch {
                expected: Flavor::Mpmc,
                found: Flavor::Spsc
            })
        ));
        assert_eq!(spsc.adopt_kept(|_, _| Err(())), Ok(0));
    });
}
