//! Disconnects across processes: a peer that exits, a peer that is
//! SIGKILLed while we are blocked on it, and a side that has not attached yet.
#![cfg(not(loom))]

mod common;

use common::{child_main, kill_child, run, spawn_child, wait_killed, wait_ok, wait_until, Args};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use shmring::{
    Flavor, Queue, RecvError, RecvTimeoutError, SendError, SendTimeoutError, TryRecvError,
    TrySendError,
};
use std::process::Child;
use std::thread;
use std::time::Duration;

/// Child: opens queue `args[0]`, sends `0..args[1]`, then exits normally or,
/// with `args[2] == "hang"`, sleeps until killed (holding its sender).
#[test]
#[ignore = "child process entry point"]
fn child_send_then() {
    child_main("child_send_then", |a: Args| {
        let q = Queue::<u64>::open(a.str(0)).unwrap();
        let tx = q.sender().unwrap();
        for i in 0..a.get::<u64>(1) {
            tx.send(i).unwrap();
        }
        if a.str(2) == "hang" {
            common::sleep_forever();
        }
    });
}

/// Child: opens queue `args[0]`, attaches a receiver and sleeps until killed.
#[test]
#[ignore = "child process entry point"]
fn child_receiver_hangs() {
    child_main("child_receiver_hangs", |a: Args| {
        let q = Queue::<u64>::open(a.str(0)).unwrap();
        let _rx = q.receiver().unwrap();
        common::sleep_forever();
    });
}

/// Kills `child` with `Child::kill` after `delay`, on another thread, so
/// that the caller can be blocked meanwhile; join to get the child back.
fn kill_later(mut child: Child, delay: Duration) -> thread::JoinHandle<Child> {
    thread::spawn(move || {
        thread::sleep(delay);
        child.kill().expect("kill child");
        child
    })
}

#[test]
fn sender_exits_receiver_drains_then_disconnected() {
    run("dis_exit_drain", |ctx| {
        for flavor in [Flavor::Spsc, Flavor::Mpmc] {
            let name = ctx.name("q");
            let q = Queue::<u64>::create(&name, flavor, 1000).unwrap();
            let rx = q.receiver().unwrap();
            let k = 500u64;
            let mut child = spawn_child("child_send_then", &[&name, &k.to_string(), "exit"]);
            // Let it finish first: everything sent is still queued.
            wait_ok(&mut child);
            assert_eq!(q.len() as u64, k);
            for i in 0..k {
                assert_eq!(rx.recv(), Ok(i));
            }
            assert_eq!(rx.recv(), Err(RecvError::Disconnected));
            assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
            assert_eq!(
                rx.recv_timeout(Duration::from_secs(60)),
                Err(RecvTimeoutError::Disconnected)
            );
            let mut buf = [0u64; 8];
            assert_eq!(rx.recv_slice(&mut buf), Err(RecvError::Disconnected));
            assert!(!rx.is_connected());
            assert_eq!(q.reaped(), 0, "a clean exit is not a reaping");
        }
    });
}

#[test]
fn iter_ends_after_draining() {
    run("dis_iter", |ctx| {
        let name = ctx.name("q");
        // Smaller than K: the child blocks on a full queue while we read.
        let q = Queue::<u64>::create(&name, Flavor::Spsc, 16).unwrap();
        let rx = q.receiver().unwrap();
        let k = 10_000u64;
        let mut child = spawn_child("child_send_then", &[&name, &k.to_string(), "exit"]);
        let got: Vec<u64> = rx.iter().collect();
        assert_eq!(got, (0..k).collect::<Vec<_>>());
        wait_ok(&mut child);
        assert_eq!(rx.try_iter().count(), 0);
        assert_eq!((&rx).into_iter().count(), 0);
    });
}

#[test]
fn sender_killed_while_receiver_blocked() {
    run("dis_kill_tx", |ctx| {
        for flavor in [Flavor::Spsc, Flavor::Mpmc] {
            let name = ctx.name("q");
            let q = Queue::<u64>::create(&name, flavor, 64).unwrap();
            let rx = q.receiver().unwrap();
            let k = 10u64;
            let child = spawn_child("child_send_then", &[&name, &k.to_string(), "hang"]);
            for i in 0..k {
                assert_eq!(rx.recv(), Ok(i));
            }
            // The child holds the only sender and sleeps; we block in recv
            // until it is killed, then must see Disconnected (the watchdog
            // turns "forever" into a failure).
            let killer = kill_later(child, Duration::from_millis(150));
            assert_eq!(rx.recv(), Err(RecvError::Disconnected));
            let mut child = killer.join().unwrap();
            wait_killed(&mut child);
            assert_eq!(q.reaped(), 1, "the dead sender is counted as reaped");
            assert_eq!(q.endpoints(), (0, 1));
        }
    });
}

#[test]
fn sender_killed_while_receiver_blocked_in_timed_and_slice_calls() {
    run("dis_kill_tx_timed", |ctx| {
        for slice in [false, true] {
            let name = ctx.name("q");
            let q = Queue::<u64>::create(&name, Flavor::Spsc, 64).unwrap();
            let rx = q.receiver().unwrap();
            let child = spawn_child("child_send_then", &[&name, "1", "hang"]);
            assert_eq!(rx.recv(), Ok(0));
            let killer = kill_later(child, Duration::from_millis(100));
            if slice {
                let mut buf = [0u64; 4];
                assert_eq!(rx.recv_slice(&mut buf), Err(RecvError::Disconnected));
            } else {
                assert_eq!(
                    rx.recv_timeout(Duration::from_secs(100)),
                    Err(RecvTimeoutError::Disconnected)
                );
            }
            wait_killed(&mut killer.join().unwrap());
            assert_eq!(q.reaped(), 1);
        }
    });
}

#[test]
fn receiver_killed_while_sender_blocked_on_full_queue() {
    run("dis_kill_rx", |ctx| {
        for flavor in [Flavor::Spsc, Flavor::Mpmc] {
            let name = ctx.name("q");
            let q = Queue::<u64>::create(&name, flavor, 4).unwrap();
            let tx = q.sender().unwrap();
            let child = spawn_child("child_receiver_hangs", &[&name]);
            wait_until("the child's receiver", || q.endpoints().1 == 1);
            let mut n = 0;
            while tx.try_send(n).is_ok() {
                n += 1;
            }
            assert_eq!(n, 4);
            let killer = kill_later(child, Duration::from_millis(150));
            match tx.send(999) {
                Err(SendError::Disconnected(v)) => assert_eq!(v, 999),
                r => panic!("send to a killed receiver: {r:?}"),
            }
            wait_killed(&mut killer.join().unwrap());
            assert_eq!(q.reaped(), 1);
            assert!(!tx.is_connected());
            assert!(matches!(tx.try_send(5), Err(TrySendError::Disconnected(5))));
        }
    });
}

#[test]
fn receiver_killed_while_sender_blocked_in_send_slice() {
    run("dis_kill_rx_slice", |ctx| {
        let name = ctx.name("q");
        let q = Queue::<u64>::create(&name, Flavor::Spsc, 4).unwrap();
        let tx = q.sender().unwrap();
        let child = spawn_child("child_receiver_hangs", &[&name]);
        wait_until("the child's receiver", || q.endpoints().1 == 1);
        let killer = kill_later(child, Duration::from_millis(100));
        // Four fit; the rest wait for a receiver that dies.
        assert_eq!(
            tx.send_slice(&[1, 2, 3, 4, 5, 6]),
            Err(SendError::Disconnected(4))
        );
        wait_killed(&mut killer.join().unwrap());
        match tx.send_timeout(7, Duration::from_secs(100)) {
            Err(SendTimeoutError::Disconnected(7)) => {}
            r => panic!("{r:?}"),
        }
    });
}

#[test]
fn all_receivers_dropped_sender_sees_disconnected() {
    run("dis_rx_dropped", |_| {
        for flavor in [Flavor::Spsc, Flavor::Mpmc] {
            let q = Queue::<u64>::anonymous(flavor, 4).unwrap();
            let tx = q.sender().unwrap();
            let rx = q.receiver().unwrap();
            tx.send(1).unwrap();
            assert!(tx.is_connected());
            drop(rx);
            assert!(!tx.is_connected());
            match tx.try_send(7) {
                Err(TrySendError::Disconnected(v)) => assert_eq!(v, 7),
                r => panic!("{flavor}: try_send with no receivers: {r:?}"),
            }
            let e = tx.try_send(8).unwrap_err();
            assert!(e.is_disconnected() && !e.is_full());
            assert_eq!(tx.send(9), Err(SendError::Disconnected(9)));
            assert!(matches!(
                tx.send_timeout(10, Duration::from_secs(60)),
                Err(SendTimeoutError::Disconnected(10))
            ));
            assert_eq!(
                tx.try_send_slice(&[1, 2]),
                Err(TrySendError::Disconnected(()))
            );
            assert_eq!(tx.send_slice(&[1, 2]), Err(SendError::Disconnected(0)));
            assert_eq!(
                format!("{}", SendError::Disconnected(0u64)),
                "sending on a queue with no receivers"
            );
            // A new receiver reconnects the queue and finds the old message.
            let rx = q.receiver().unwrap();
            assert_eq!(rx.try_recv(), Ok(1));
            tx.try_send(2).unwrap();
            assert_eq!(rx.try_recv(), Ok(2));
        }
    });
}

#[test]
fn all_senders_dropped_in_process() {
    run("dis_tx_dropped", |_| {
        let q = Queue::<u64>::anonymous(Flavor::Mpmc, 8).unwrap();
        let rx = q.receiver().unwrap();
        let a = q.sender().unwrap();
        let b = q.sender().unwrap();
        a.send(1).unwrap();
        drop(a);
        // One sender is left: not disconnected.
        assert_eq!(rx.try_recv(), Ok(1));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
        b.send(2).unwrap();
        drop(b);
        assert_eq!(rx.try_recv(), Ok(2));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
        assert_eq!(rx.recv(), Err(RecvError::Disconnected));
    });
}

#[test]
fn receiver_started_before_any_sender_waits() {
    run("dis_rx_first", |ctx| {
        for flavor in [Flavor::Spsc, Flavor::Mpmc] {
            let name = ctx.name("q");
            let q = Queue::<u64>::create(&name, flavor, 8).unwrap();
            let rx = q.receiver().unwrap();
            // No sender has ever attached: that is not a disconnect.
            assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
            assert_eq!(
                rx.recv_timeout(Duration::from_millis(50)),
                Err(RecvTimeoutError::Timeout)
            );
            assert!(!rx.is_connected());
            // A sender in another process comes later, sends, and leaves.
            let mut child = spawn_child("child_send_then", &[&name, "3", "exit"]);
            assert_eq!(rx.recv(), Ok(0));
            assert_eq!(rx.recv(), Ok(1));
            assert_eq!(rx.recv(), Ok(2));
            assert_eq!(rx.recv(), Err(RecvError::Disconnected));
            wait_ok(&mut child);
        }
    });
}

#[test]
fn sender_started_before_any_receiver_fills_then_is_full() {
    run("dis_tx_first", |_| {
        let q = Queue::<u64>::anonymous(Flavor::Spsc, 2).unwrap();
        let tx = q.sender().unwrap();
        tx.try_send(1).unwrap();
        tx.try_send(2).unwrap();
        assert!(matches!(tx.try_send(3), Err(TrySendError::Full(3))));
        assert!(matches!(
            tx.send_timeout(3, Duration::from_millis(20)),
            Err(SendTimeoutError::Timeout(3))
        ));
    });
}

#[test]
fn stopped_sender_is_not_dead() {
    run("dis_sigstop", |ctx| {
        let name = ctx.name("q");
        let q = Queue::<u64>::create(&name, Flavor::Spsc, 8).unwrap();
        let rx = q.receiver().unwrap();
        let mut child = spawn_child("child_send_then", &[&name, "1", "hang"]);
        assert_eq!(rx.recv(), Ok(0));
        let pid = Pid::from_raw(child.id() as i32);
        kill(pid, Signal::SIGSTOP).unwrap();
        // Paused is not dead: no disconnect, nothing reaped, the role stays
        // taken, however often the receiver's liveness checks run.
        assert_eq!(
            rx.recv_timeout(Duration::from_millis(200)),
            Err(RecvTimeoutError::Timeout)
        );
        q.reap_dead();
        assert_eq!(q.reaped(), 0);
        assert_eq!(q.endpoints(), (1, 1));
        assert!(rx.is_connected());
        assert!(q.sender().is_err(), "the stopped process keeps its sender");
        kill(pid, Signal::SIGCONT).unwrap();
        kill_child(&mut child);
        assert_eq!(rx.recv(), Err(RecvError::Disconnected));
        assert_eq!(q.reaped(), 1);
    });
}

/// The error without the value it holds back.
fn unit<T>(e: TrySendError<T>) -> TrySendError<()> {
    match e {
        TrySendError::Full(_) => TrySendError::Full(()),
        TrySendError::Disconnected(_) => TrySendError::Disconnected(()),
        TrySendError::Closed(_) => TrySendError::Closed(()),
        TrySendError::Corrupted(_) => TrySendError::Corrupted(()),
    }
}

/// A caller that never blocks: polls `attempt` until it returns `Some`,
/// pausing between polls. Only the library's own idle checks can notice a
/// dead peer here; the watchdog turns "never" into a failure.
fn poll_until<R>(mut attempt: impl FnMut() -> Option<R>) -> R {
    loop {
        if let Some(r) = attempt() {
            return r;
        }
        thread::sleep(Duration::from_micros(200));
    }
}

#[test]
fn sender_killed_while_receiver_only_polls() {
    run("dis_kill_tx_poll", |ctx| {
        for flavor in [Flavor::Spsc, Flavor::Mpmc] {
            for how in [
                "try_recv",
                "try_recv_slice",
                "try_recv_ref",
                "recv_timeout_zero",
            ] {
                let name = ctx.name("q");
                let q = Queue::<u64>::create(&name, flavor, 64).unwrap();
                let mut rx = q.receiver().unwrap();
                let mut child = spawn_child("child_send_then", &[&name, "3", "hang"]);
                wait_until("the child's messages", || q.len() == 3);
                kill_child(&mut child);
                let mut got = Vec::new();
                let end = poll_until(|| {
                    let r = match how {
                        "try_recv" => rx.try_recv().map(|v| vec![v]),
                        "try_recv_slice" => {
                            let mut buf = [0u64; 2];
                            rx.try_recv_slice(&mut buf).map(|n| buf[..n].to_vec())
                        }
                        "try_recv_ref" => rx.try_recv_ref().map(|r| vec![*r]),
                        // A zero timeout never sleeps a slice: it checks
                        // when its deadline passes (rate-limited).
                        "recv_timeout_zero" => match rx.recv_timeout(Duration::ZERO) {
                            Ok(v) => Ok(vec![v]),
                            Err(RecvTimeoutError::Timeout) => Err(TryRecvError::Empty),
                            Err(RecvTimeoutError::Disconnected) => Err(TryRecvError::Disconnected),
                            Err(RecvTimeoutError::Closed) => Err(TryRecvError::Closed),
                            Err(RecvTimeoutError::Corrupted) => Err(TryRecvError::Corrupted),
                        },
                        _ => unreachable!(),
                    };
                    match r {
                        Ok(v) => {
                            got.extend(v);
                            None
                        }
                        Err(TryRecvError::Empty) => None,
                        Err(e) => Some(e),
                    }
                });
                assert_eq!(end, TryRecvError::Disconnected, "{flavor:?} {how}");
                assert_eq!(got, [0, 1, 2], "{flavor:?} {how}: every message first");
                assert_eq!(q.reaped(), 1, "{flavor:?} {how}");
            }
        }
    });
}

#[test]
fn receiver_killed_while_sender_only_polls() {
    run("dis_kill_rx_poll", |ctx| {
        for flavor in [Flavor::Spsc, Flavor::Mpmc] {
            for how in [
                "try_send",
                "try_send_slice",
                "try_loan",
                "send_timeout_zero",
            ] {
                let name = ctx.name("q");
                let q = Queue::<u64>::create(&name, flavor, 4).unwrap();
                let mut tx = q.sender().unwrap();
                let mut child = spawn_child("child_receiver_hangs", &[&name]);
                wait_until("the child's receiver", || q.endpoints().1 == 1);
                kill_child(&mut child);
                let mut sent = 0u64;
                let end = poll_until(|| {
                    let r = match how {
                        "try_send" => tx.try_send(sent).map(|()| 1).map_err(unit),
                        "try_send_slice" => tx.try_send_slice(&[sent, sent + 1]),
                        "try_loan" => tx.try_loan().map(|mut l| {
                            *l = sent;
                            l.commit();
                            1
                        }),
                        "send_timeout_zero" => match tx.send_timeout(sent, Duration::ZERO) {
                            Ok(()) => Ok(1),
                            Err(SendTimeoutError::Timeout(_)) => Err(TrySendError::Full(())),
                            Err(SendTimeoutError::Disconnected(_)) => {
                                Err(TrySendError::Disconnected(()))
                            }
                            Err(SendTimeoutError::Closed(_)) => Err(TrySendError::Closed(())),
                            Err(SendTimeoutError::Corrupted(_)) => Err(TrySendError::Corrupted(())),
                        },
                        _ => unreachable!(),
                    };
                    match r {
                        Ok(n) => {
                            sent += n as u64;
                            None
                        }
                        Err(TrySendError::Full(())) => None,
                        Err(e) => Some(e),
                    }
                });
                assert_eq!(end, TrySendError::Disconnected(()), "{flavor:?} {how}");
                assert!(sent <= 4, "{flavor:?} {how}: at most a queue-full before");
                assert_eq!(q.reaped(), 1, "{flavor:?} {how}");
            }
        }
    });
}
