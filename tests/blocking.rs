//! Blocking and non-blocking calls: sleepers woken across processes (both
//! wake modes), a producer held by a full queue, the Python seed's
//! putter/getter, timeouts, `try_*`, and the size queries.
#![cfg(not(loom))]

mod common;

use common::{child_main, run, spawn_child, wait_ok, Args, Ctx};
use shmring::{
    Deadline, Flavor, Queue, RecvError, RecvTimeoutError, SendTimeoutError, TryRecvError,
    TrySendError, WakeMode,
};
use std::thread::sleep;
use std::time::Duration;

fn mode_name(m: WakeMode) -> &'static str {
    match m {
        WakeMode::Fast => "fast",
        WakeMode::Strict => "strict",
    }
}

fn mode_of(s: &str) -> WakeMode {
    match s {
        "fast" => WakeMode::Fast,
        "strict" => WakeMode::Strict,
        _ => panic!("unknown wake mode {s}"),
    }
}

fn create(ctx_name: &str, flavor: Flavor, capacity: u64, mode: WakeMode) -> Queue<u64> {
    Queue::<u64>::builder()
        .flavor(flavor)
        .capacity(capacity)
        .wake_mode(mode)
        .create(ctx_name)
        .unwrap()
}

/// Child: on queue `args[0]` (wake mode `args[1]`), sends `args[2]` values
/// `1000 + i`, sleeping `args[3]` ms before each, so that the parent's
/// receiver is asleep when each arrives.
#[test]
#[ignore = "child process entry point"]
fn child_sleep_then_send() {
    child_main("child_sleep_then_send", |a: Args| {
        let q = Queue::<u64>::open(a.str(0)).unwrap();
        assert_eq!(q.info().wake_mode, mode_of(a.str(1)));
        let tx = q.sender().unwrap();
        let pause = Duration::from_millis(a.get(3));
        for i in 0..a.get::<u64>(2) {
            sleep(pause);
            tx.send(1000 + i).unwrap();
        }
    });
}

fn sleeping_consumer_is_woken(ctx: &Ctx, flavor: Flavor, mode: WakeMode) {
    let name = ctx.name("q");
    let q = create(&name, flavor, 4, mode);
    let mut rx = q.receiver().unwrap();
    // No spinning: every wait goes to sleep on the futex at once.
    rx.set_spin(Duration::ZERO);
    let rounds = 5u64;
    let mut child = spawn_child(
        "child_sleep_then_send",
        &[&name, mode_name(mode), &rounds.to_string(), "50"],
    );
    for i in 0..rounds {
        assert_eq!(rx.recv().unwrap(), 1000 + i);
    }
    assert_eq!(rx.recv(), Err(RecvError::Disconnected));
    wait_ok(&mut child);
}

#[test]
fn sleeping_consumer_is_woken_by_another_process_fast() {
    run("blk_wake_rx_fast", |ctx| {
        sleeping_consumer_is_woken(ctx, Flavor::Spsc, WakeMode::Fast);
        sleeping_consumer_is_woken(ctx, Flavor::Mpmc, WakeMode::Fast);
    });
}

#[test]
fn sleeping_consumer_is_woken_by_another_process_strict() {
    run("blk_wake_rx_strict", |ctx| {
        sleeping_consumer_is_woken(ctx, Flavor::Spsc, WakeMode::Strict);
        sleeping_consumer_is_woken(ctx, Flavor::Mpmc, WakeMode::Strict);
    });
}

/// Child: on queue `args[0]`, attaches a receiver, sleeps `args[2]` ms, then
/// receives until disconnected, checking the values are `0..args[1]`.
#[test]
#[ignore = "child process entry point"]
fn child_sleep_then_recv() {
    child_main("child_sleep_then_recv", |a: Args| {
        let q = Queue::<u64>::open(a.str(0)).unwrap();
        let rx = q.receiver().unwrap();
        let count: u64 = a.get(1);
        let pause = Duration::from_millis(a.get(2));
        for i in 0..count {
            sleep(pause);
            assert_eq!(rx.recv().unwrap(), i);
        }
        assert_eq!(rx.recv(), Err(RecvError::Disconnected));
    });
}

fn blocked_producer_is_woken(ctx: &Ctx, flavor: Flavor, mode: WakeMode) {
    let name = ctx.name("q");
    let q = create(&name, flavor, 2, mode);
    let mut tx = q.sender().unwrap();
    tx.set_spin(Duration::ZERO);
    // Fill it before the receiver exists: no receiver has ever attached,
    // so this is not a disconnect, just a full queue.
    tx.send(0).unwrap();
    tx.send(1).unwrap();
    assert!(q.is_full());
    assert!(matches!(tx.try_send(2), Err(TrySendError::Full(2))));
    let count = 8u64;
    let mut child = spawn_child("child_sleep_then_recv", &[&name, &count.to_string(), "30"]);
    // Each of these waits, asleep, until the child takes one.
    for i in 2..count {
        tx.send(i).unwrap();
    }
    drop(tx);
    wait_ok(&mut child);
}

#[test]
fn blocked_producer_is_woken_by_another_process_fast() {
    run("blk_wake_tx_fast", |ctx| {
        blocked_producer_is_woken(ctx, Flavor::Spsc, WakeMode::Fast);
        blocked_producer_is_woken(ctx, Flavor::Mpmc, WakeMode::Fast);
    });
}

#[test]
fn blocked_producer_is_woken_by_another_process_strict() {
    run("blk_wake_tx_strict", |ctx| {
        blocked_producer_is_woken(ctx, Flavor::Spsc, WakeMode::Strict);
        blocked_producer_is_woken(ctx, Flavor::Mpmc, WakeMode::Strict);
    });
}

/// Child: echoes every value from queue `args[0]` back on queue `args[1]`
/// plus one, sleeping in every wait (no spin), until disconnected.
#[test]
#[ignore = "child process entry point"]
fn child_echo() {
    child_main("child_echo", |a: Args| {
        let req = Queue::<u64>::open(a.str(0)).unwrap();
        let resp = Queue::<u64>::open(a.str(1)).unwrap();
        let mut rx = req.receiver().unwrap();
        let mut tx = resp.sender().unwrap();
        rx.set_spin(Duration::ZERO);
        tx.set_spin(Duration::ZERO);
        for v in rx.iter() {
            tx.send(v + 1).unwrap();
        }
    });
}

/// Many sleep/wake hand-offs in a row: ping-pong with no spinning.
fn ping_pong(ctx: &Ctx, mode: WakeMode) {
    let req_name = ctx.name("req");
    let resp_name = ctx.name("resp");
    let req = create(&req_name, Flavor::Spsc, 1, mode);
    let resp = create(&resp_name, Flavor::Spsc, 1, mode);
    let mut tx = req.sender().unwrap();
    let mut rx = resp.receiver().unwrap();
    tx.set_spin(Duration::ZERO);
    rx.set_spin(Duration::ZERO);
    let mut child = spawn_child("child_echo", &[&req_name, &resp_name]);
    for i in 0..2000u64 {
        tx.send(i * 2).unwrap();
        assert_eq!(rx.recv().unwrap(), i * 2 + 1);
    }
    drop(tx);
    wait_ok(&mut child);
    assert_eq!(rx.recv(), Err(RecvError::Disconnected));
}

#[test]
fn ping_pong_without_spinning_fast() {
    run("blk_pingpong_fast", |ctx| ping_pong(ctx, WakeMode::Fast));
}

#[test]
fn ping_pong_without_spinning_strict() {
    run("blk_pingpong_strict", |ctx| {
        ping_pong(ctx, WakeMode::Strict)
    });
}

/// The value the putter puts `i`-th (the seed puts `random.random()`).
fn seed_value(i: u64) -> f64 {
    let mut r = common::Rng::new(0x5eed + i);
    (r.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// Child "putter": puts `seed_value(0..args[1])` on queue `args[0]`.
#[test]
#[ignore = "child process entry point"]
fn child_putter() {
    child_main("child_putter", |a: Args| {
        let q = Queue::<f64>::open(a.str(0)).unwrap();
        let tx = q.sender().unwrap();
        for i in 0..a.get::<u64>(1) {
            tx.send(seed_value(i)).unwrap();
        }
    });
}

/// Child "getter": gets from queue `args[0]` until the putter is gone,
/// checking it gets exactly `seed_value(0..args[1])`, in order.
#[test]
#[ignore = "child process entry point"]
fn child_getter() {
    child_main("child_getter", |a: Args| {
        let q = Queue::<f64>::open(a.str(0)).unwrap();
        let rx = q.receiver().unwrap();
        let mut n = 0u64;
        for v in rx.iter() {
            assert_eq!(v.to_bits(), seed_value(n).to_bits(), "value {n}");
            n += 1;
        }
        assert_eq!(n, a.get::<u64>(1));
    });
}

/// The seed's putter/getter: `Queue(2)`, a getter process started first, a
/// putter process putting values; the getter gets them all, in order.
#[test]
fn putter_and_getter_with_capacity_two() {
    run("blk_putter_getter", |ctx| {
        for mode in [WakeMode::Fast, WakeMode::Strict] {
            let name = ctx.name("q");
            let q = Queue::<f64>::builder()
                .capacity(2)
                .wake_mode(mode)
                .create(&name)
                .unwrap();
            let count = "20000";
            let mut getter = spawn_child("child_getter", &[&name, count]);
            let mut putter = spawn_child("child_putter", &[&name, count]);
            wait_ok(&mut putter);
            wait_ok(&mut getter);
            assert!(q.is_empty());
        }
    });
}

#[test]
fn timeouts_and_try_calls() {
    run("blk_timeouts", |_| {
        for flavor in [Flavor::Spsc, Flavor::Mpmc] {
            for mode in [WakeMode::Fast, WakeMode::Strict] {
                let q = Queue::<u64>::builder()
                    .flavor(flavor)
                    .capacity(3)
                    .wake_mode(mode)
                    .create_anonymous()
                    .unwrap();
                let tx = q.sender().unwrap();
                let rx = q.receiver().unwrap();

                // Empty.
                assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
                assert_eq!(
                    rx.recv_timeout(Duration::from_millis(20)),
                    Err(RecvTimeoutError::Timeout)
                );
                assert_eq!(
                    rx.recv_deadline(Deadline::now()),
                    Err(RecvTimeoutError::Timeout)
                );
                let mut buf = [0u64; 4];
                assert_eq!(
                    rx.recv_slice_timeout(&mut buf, Duration::from_millis(10)),
                    Err(RecvTimeoutError::Timeout)
                );
                assert_eq!(rx.try_recv_slice(&mut buf), Err(TryRecvError::Empty));
                assert_eq!(rx.try_iter().count(), 0);

                // Full.
                for i in 0..3 {
                    tx.try_send(10 + i).unwrap();
                }
                match tx.try_send(77) {
                    Err(TrySendError::Full(v)) => assert_eq!(v, 77),
                    r => panic!("try_send on a full queue: {r:?}"),
                }
                let e = tx.try_send(78).unwrap_err();
                assert!(e.is_full() && !e.is_disconnected());
                assert_eq!(e.into_inner(), 78);
                match tx.send_timeout(88, Duration::from_millis(20)) {
                    Err(SendTimeoutError::Timeout(v)) => assert_eq!(v, 88),
                    r => panic!("send_timeout on a full queue: {r:?}"),
                }
                match tx.send_deadline(89, Deadline::now()) {
                    Err(SendTimeoutError::Timeout(v)) => assert_eq!(v, 89),
                    r => panic!("send_deadline on a full queue: {r:?}"),
                }
                assert_eq!(tx.try_send_slice(&[1, 2]), Err(TrySendError::Full(())));
                // Nothing the failed calls held was queued.
                assert_eq!(rx.try_iter().collect::<Vec<_>>(), vec![10, 11, 12]);

                // Empty slices are no-ops, whatever the queue holds.
                assert_eq!(tx.send_slice(&[]), Ok(()));
                assert_eq!(rx.recv_slice(&mut []), Ok(0));
                assert_eq!(rx.try_recv_slice(&mut []), Ok(0));
                assert_eq!(rx.recv_slice_timeout(&mut [], Duration::ZERO), Ok(0));

                // A timed receive that succeeds, and a timed send with room.
                tx.send_timeout(5, Duration::from_millis(20)).unwrap();
                assert_eq!(rx.recv_timeout(Duration::from_millis(20)), Ok(5));
                assert_eq!(
                    format!("{}", RecvTimeoutError::Timeout),
                    "timed out receiving on an empty queue"
                );
            }
        }
    });
}

#[test]
fn recv_timeout_gets_a_value_sent_before_its_deadline() {
    // recv_timeout really waits and really returns: a second thread sends
    // after the first timeout, the second timed receive gets the value.
    run("blk_timeout_then_value", |_| {
        let q = Queue::<u64>::anonymous(Flavor::Spsc, 2).unwrap();
        let tx = q.sender().unwrap();
        let rx = q.receiver().unwrap();
        assert_eq!(
            rx.recv_timeout(Duration::from_millis(10)),
            Err(RecvTimeoutError::Timeout)
        );
        let t = std::thread::spawn(move || {
            sleep(Duration::from_millis(20));
            tx.send(42).unwrap();
            tx
        });
        assert_eq!(rx.recv_timeout(Duration::from_secs(60)), Ok(42));
        drop(t.join().unwrap());
    });
}

#[test]
fn size_queries() {
    run("blk_sizes", |_| {
        for flavor in [Flavor::Spsc, Flavor::Mpmc] {
            for cap in [1usize, 3, 8] {
                let q = Queue::<u64>::anonymous(flavor, cap as u64).unwrap();
                let tx = q.sender().unwrap();
                let rx = q.receiver().unwrap();
                for round in 0..3 {
                    assert_eq!(q.capacity(), cap);
                    assert_eq!(tx.capacity(), cap);
                    assert_eq!(rx.capacity(), cap);
                    assert_eq!(q.len(), 0);
                    assert!(q.is_empty() && tx.is_empty() && rx.is_empty());
                    assert!(!q.is_full() && !tx.is_full() && !rx.is_full());
                    for i in 0..cap {
                        tx.send(i as u64).unwrap();
                        assert_eq!(q.len(), i + 1, "{flavor} cap {cap} round {round}");
                        assert_eq!(tx.len(), i + 1);
                        assert_eq!(rx.len(), i + 1);
                        assert!(!q.is_empty());
                    }
                    assert!(q.is_full() && tx.is_full() && rx.is_full());
                    rx.recv().unwrap();
                    assert_eq!(q.len(), cap - 1);
                    assert!(!q.is_full());
                    while rx.try_recv().is_ok() {}
                    assert!(q.is_empty());
                }
                assert!(tx.is_connected() && rx.is_connected());
            }
        }
    });
}
