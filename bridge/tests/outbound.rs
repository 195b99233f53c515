//! The outbound bridge against a real broker: order and message ids, a
//! wrong queue name, an unreachable broker.

mod common;

use common::{broker, broker_config, start_outbound as start, wait_until, Local, Watchdog};
use shmring_bridge::{BridgeError, BrokerConfig, OutboundConfig, QueueSpec};
use std::sync::atomic::Ordering;
use std::time::Duration;

fn config(test: &str, local: &Local, queue: &str) -> OutboundConfig {
    let mut cfg = OutboundConfig::to_queue(&local.name, queue);
    cfg.broker = broker_config(test);
    cfg
}

/// Splits `0123456789abcdef-42` into (instance, position).
fn parse_id(id: &str) -> (u64, u64) {
    let (inst, pos) = id.split_once('-').expect("id is instance-position");
    assert_eq!(inst.len(), 16, "{id}");
    (u64::from_str_radix(inst, 16).unwrap(), pos.parse().unwrap())
}

#[test]
fn messages_arrive_in_order_with_ids() {
    let _w = Watchdog::new(
        "messages_arrive_in_order_with_ids",
        Duration::from_secs(120),
    );
    let Some(mut amqp) = broker("messages_arrive_in_order_with_ids") else {
        return;
    };
    let local = Local::new("out-order", 64, 1024);
    let queue = common::unique("out-order");
    // Declared by both, alike (the bridge's declare is then a check).
    amqp.queue(&queue, Default::default());
    let (stats, stop, h) = start(config("out-order", &local, &queue));
    const N: usize = 500;
    let tx = local.q.sender().unwrap();
    for i in 0..N {
        tx.send(format!("message {i}").as_bytes()).unwrap();
    }
    let got = amqp.get_n(&queue, N);
    let mut last = None;
    for (i, (body, id)) in got.iter().enumerate() {
        assert_eq!(body, format!("message {i}").as_bytes());
        let (inst, pos) = parse_id(id);
        if let Some((last_inst, last_pos)) = last {
            assert_eq!(inst, last_inst);
            assert!(pos > last_pos, "ids in claim order: {pos} after {last_pos}");
        }
        last = Some((inst, pos));
    }
    // Every message confirmed leaves the local queue, and nothing else.
    wait_until(|| stats.snapshot().confirmed == N as u64);
    assert_eq!(local.q.len(), 0);
    assert_eq!(amqp.get(&queue), None);
    stop.store(true, Ordering::Release);
    h.join().unwrap().unwrap();
    let s = stats.snapshot();
    assert_eq!(
        (s.published, s.confirmed, s.nacked, s.returned),
        (N as u64, N as u64, 0, 0)
    );
}

#[test]
fn a_lost_connection_republishes_in_order() {
    let _w = Watchdog::new("a_lost_connection_republishes", Duration::from_secs(120));
    let Some(mut amqp) = broker("a_lost_connection_republishes") else {
        return;
    };
    let local = Local::new("out-lost", 256, 64);
    let queue = common::unique("out-lost");
    amqp.queue(&queue, Default::default());
    let cfg = config("out-lost", &local, &queue);
    let name = cfg.broker.connection_name.clone();
    let (stats, stop, h) = start(cfg);
    // Bursts for a few seconds, so that messages are in flight when the
    // connection goes (not certain: `republished` says if any were).
    const N: usize = 12_000;
    let tx = local.q.sender().unwrap();
    let producer = std::thread::spawn(move || {
        for i in 0..N {
            tx.send(format!("message {i}").as_bytes()).unwrap();
            if i % 64 == 63 {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    });
    wait_until(|| stats.snapshot().confirmed >= 300);
    match common::close_connections_named(&name) {
        Some(1) => {}
        None => {
            eprintln!("a_lost_connection_republishes: SKIPPED the loss: no rabbitmqctl here");
        }
        Some(n) => panic!("closed {n} connections named {name:?}"),
    }
    producer.join().unwrap();
    // Every message arrives; a copy only repeats one already seen (same
    // id, same body), and first copies come in order.
    let mut seen = std::collections::HashMap::new();
    let mut next = 0;
    while next < N {
        let Some((body, id)) = amqp.get(&queue) else {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        };
        match seen.get(&id) {
            Some(first) => assert_eq!(first, &body, "a copy of {id} differs"),
            None => {
                assert_eq!(body, format!("message {next}").as_bytes(), "order");
                seen.insert(id, body);
                next += 1;
            }
        }
    }
    wait_until(|| local.q.is_empty() && stats.snapshot().confirmed >= N as u64);
    stop.store(true, Ordering::Release);
    h.join().unwrap().unwrap();
    let s = stats.snapshot();
    eprintln!("a_lost_connection_republishes: {s}");
    if common::close_connections_named("-").is_some() {
        assert!(s.reconnects >= 1, "{s}");
    }
}

#[test]
fn persistent_messages_to_a_durable_queue() {
    let _w = Watchdog::new(
        "persistent_messages_to_a_durable_queue",
        Duration::from_secs(60),
    );
    let Some(mut amqp) = broker("persistent_messages_to_a_durable_queue") else {
        return;
    };
    let local = Local::new("out-durable", 8, 64);
    let queue = common::unique("out-durable");
    amqp.queue_with(&queue, true, Default::default());
    let mut cfg = config("out-durable", &local, &queue);
    cfg.queue.as_mut().unwrap().durable = true;
    cfg.persistent = true;
    cfg.window = 1;
    let (_stats, stop, h) = start(cfg);
    local.q.sender().unwrap().send(b"kept on disk").unwrap();
    let got = amqp.get_n(&queue, 1);
    assert_eq!(got[0].0, b"kept on disk");
    stop.store(true, Ordering::Release);
    h.join().unwrap().unwrap();
}

#[test]
fn wrong_queue_name_is_an_error_and_the_message_stays() {
    let _w = Watchdog::new("wrong_queue_name", Duration::from_secs(60));
    let Some(_amqp) = broker("wrong_queue_name") else {
        return;
    };
    let local = Local::new("out-wrong", 8, 64);
    let missing = common::unique("no-such-queue");
    let tx = local.q.sender().unwrap();
    tx.send(b"keep me").unwrap();

    // Not declared: the broker returns the message (mandatory).
    let mut cfg = config("out-wrong", &local, &missing);
    cfg.queue = None;
    let (stats, _stop, h) = start(cfg);
    let err = h.join().unwrap().unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, BridgeError::Unroutable { .. }), "{text}");
    assert!(
        text.contains(&missing) && text.contains(&local.name),
        "{text}"
    );
    assert_eq!(stats.snapshot().returned, 1);
    let rx = local.q.receiver().unwrap();
    assert_eq!(rx.try_recv().unwrap(), b"keep me");

    // Passive: the queue must exist; nothing is claimed.
    tx.send(b"keep me too").unwrap();
    let mut cfg = config("out-wrong", &local, &missing);
    cfg.queue = Some(QueueSpec {
        passive: true,
        ..QueueSpec::new(&missing)
    });
    let (stats, _stop, h) = start(cfg);
    let err = h.join().unwrap().unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, BridgeError::Amqp { .. }), "{text}");
    assert!(
        text.contains(&missing) && text.contains("not found"),
        "{text}"
    );
    assert_eq!(stats.snapshot().published, 0);
    assert_eq!(rx.try_recv().unwrap(), b"keep me too");
}

#[test]
fn unreachable_broker_fails_fast() {
    let _w = Watchdog::new("unreachable_broker_fails_fast", Duration::from_secs(60));
    let local = Local::new("out-unreachable", 8, 64);
    local.q.sender().unwrap().send(b"stays").unwrap();
    let mut cfg = OutboundConfig::to_queue(&local.name, "hello");
    cfg.broker = BrokerConfig {
        url: "amqp://guest:guest@127.0.0.1:1/%2f".into(),
        fail_fast: true,
        ..broker_config("out-unreachable")
    };
    let (_stats, _stop, h) = start(cfg.clone());
    let err = h.join().unwrap().unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, BridgeError::Broker { .. }), "{text}");
    assert!(
        text.contains("127.0.0.1:1") && !text.contains(":guest@"),
        "{text}"
    );
    assert_eq!(local.q.receiver().unwrap().try_recv().unwrap(), b"stays");

    // A malformed URL is not retried at all.
    cfg.broker.url = "amqp://[::1".into();
    cfg.broker.fail_fast = false;
    let (_stats, _stop, h) = start(cfg);
    let err = h.join().unwrap().unwrap_err();
    assert!(matches!(err, BridgeError::Config(_)), "{err}");
}

#[test]
fn wrong_password_fails_fast_with_a_clear_error() {
    let _w = Watchdog::new("wrong_password", Duration::from_secs(60));
    let Some(_amqp) = broker("wrong_password") else {
        return;
    };
    let local = Local::new("out-password", 8, 64);
    let mut cfg = OutboundConfig::to_queue(&local.name, "hello");
    cfg.broker = broker_config("out-password");
    cfg.broker.fail_fast = true;
    cfg.broker.url = cfg
        .broker
        .url
        .replacen("guest:guest", "guest:wrong-password", 1);
    if !cfg.broker.url.contains("wrong-password") {
        return; // SHMRING_AMQP_URL names another account
    }
    let (_stats, _stop, h) = start(cfg);
    let err = h.join().unwrap().unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, BridgeError::Broker { .. }), "{text}");
    assert!(!text.contains("wrong-password"), "password hidden: {text}");
}
