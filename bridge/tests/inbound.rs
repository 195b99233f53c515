//! The inbound bridge against a real broker: order, acks only after the
//! commit (back-pressure at `prefetch`), a too-large message, the
//! envelope.

mod common;

use common::{broker, broker_config, start_inbound as start, wait_until, Local, Watchdog};
use lapin::types::{AMQPValue, FieldTable};
use shmring_bridge::{BridgeError, BrokerConfig, Envelope, InboundConfig};
use std::sync::atomic::Ordering;
use std::time::Duration;

fn config(test: &str, queue: &str, local: &Local) -> InboundConfig {
    let mut cfg = InboundConfig::from_queue(queue, &local.name);
    cfg.broker = broker_config(test);
    cfg
}

#[test]
fn messages_arrive_in_order_and_are_acked_only_after_commit() {
    let _w = Watchdog::new("inbound_order_and_acks", Duration::from_secs(120));
    let Some(mut amqp) = broker("inbound_order_and_acks") else {
        return;
    };
    let queue = common::unique("in-order");
    amqp.queue(&queue, FieldTable::default());
    const N: usize = 10;
    for i in 0..N {
        amqp.publish(&queue, format!("m{i}").as_bytes(), &format!("id-{i}"));
    }
    // A local queue of 4 that nobody reads yet: 4 committed, 1 being
    // written, 1 more prefetched (prefetch 2), the rest ready in the broker.
    let local = Local::new("in-order", 4, 64);
    let mut rx = local.q.receiver().unwrap();
    rx.set_wait_for_senders(true); // across the bridge's restart
    let mut cfg = config("in-order", &queue, &local);
    cfg.prefetch = 2;
    let (stats, stop, h) = start(cfg);
    wait_until(|| stats.snapshot().committed == 4);
    amqp.wait_ready(&queue, (N - 4 - 2) as u32);
    std::thread::sleep(Duration::from_millis(200));
    let s = stats.snapshot();
    assert_eq!((s.committed, s.acked), (4, 4), "{s}");
    assert_eq!(
        amqp.ready(&queue),
        (N - 6) as u32,
        "the broker stops at prefetch"
    );

    // Stopped with a full local queue: the deliveries not committed were
    // not acked, and are back in the broker.
    stop.store(true, Ordering::Release);
    h.join().unwrap().unwrap();
    amqp.wait_ready(&queue, (N - 4) as u32);
    let got: Vec<_> = rx.try_iter().collect();
    assert_eq!(got, [b"m0", b"m1", b"m2", b"m3"]);

    // The next bridge moves the rest, in order.
    let mut cfg = config("in-order", &queue, &local);
    cfg.prefetch = 2;
    let (stats, stop, h) = start(cfg);
    for i in 4..N {
        let msg = rx.recv_timeout(Duration::from_secs(30)).unwrap();
        assert_eq!(msg, format!("m{i}").as_bytes());
    }
    wait_until(|| stats.snapshot().acked == (N - 4) as u64);
    stop.store(true, Ordering::Release);
    h.join().unwrap().unwrap();
    assert_eq!(amqp.ready(&queue), 0);
    assert_eq!(rx.try_recv().ok(), None);
}

#[test]
fn a_lost_connection_redelivers_without_loss() {
    let _w = Watchdog::new("inbound_lost_connection", Duration::from_secs(120));
    let Some(mut amqp) = broker("inbound_lost_connection") else {
        return;
    };
    let queue = common::unique("in-lost");
    amqp.queue(&queue, FieldTable::default());
    const N: usize = 2000;
    for i in 0..N {
        amqp.publish(&queue, format!("m{i}").as_bytes(), &format!("id-{i}"));
    }
    let local = Local::new("in-lost", 16, 64);
    let mut rx = local.q.receiver().unwrap();
    rx.set_wait_for_senders(true);
    let mut cfg = config("in-lost", &queue, &local);
    cfg.envelope = true;
    cfg.prefetch = 8;
    let name = cfg.broker.connection_name.clone();
    let (stats, stop, h) = start(cfg);
    let mut seen = std::collections::HashMap::new();
    let mut next = 0;
    let mut closed = false;
    while next < N {
        let framed = rx.recv_timeout(Duration::from_secs(60)).unwrap();
        let env = Envelope::decode(&framed).unwrap();
        match seen.get(env.message_id) {
            // A redelivery: the same message again.
            Some(body) => assert_eq!(body, &env.body),
            None => {
                assert_eq!(env.body, format!("m{next}").as_bytes(), "order");
                seen.insert(env.message_id.to_vec(), env.body.to_vec());
                next += 1;
            }
        }
        if next == 200 && !closed {
            closed = true;
            // The reader stalls while rabbitmqctl runs: the local queue
            // fills, and deliveries are in flight when the connection goes.
            if common::close_connections_named(&name).is_none() {
                eprintln!("inbound_lost_connection: SKIPPED the loss: no rabbitmqctl here");
            }
        }
    }
    stop.store(true, Ordering::Release);
    h.join().unwrap().unwrap();
    let s = stats.snapshot();
    eprintln!("inbound_lost_connection: {s}");
    assert_eq!(amqp.ready(&queue), 0, "{s}");
}

#[test]
fn envelope_carries_the_message_id() {
    let _w = Watchdog::new("envelope_carries_the_message_id", Duration::from_secs(60));
    let Some(mut amqp) = broker("envelope_carries_the_message_id") else {
        return;
    };
    let queue = common::unique("in-envelope");
    amqp.queue(&queue, FieldTable::default());
    amqp.publish(&queue, b"Hello World!", "0000000000000001-7");
    let local = Local::new("in-envelope", 4, 64);
    let mut rx = local.q.receiver().unwrap();
    rx.set_wait_for_senders(true);
    let mut cfg = config("in-envelope", &queue, &local);
    cfg.envelope = true;
    let (_stats, stop, h) = start(cfg);
    let framed = rx.recv_timeout(Duration::from_secs(30)).unwrap();
    let env = Envelope::decode(&framed).unwrap();
    assert_eq!(env.message_id, b"0000000000000001-7");
    assert_eq!(env.body, b"Hello World!");
    stop.store(true, Ordering::Release);
    h.join().unwrap().unwrap();
}

#[test]
fn too_large_message_stays_in_the_broker_with_a_clear_error() {
    let _w = Watchdog::new("too_large_message", Duration::from_secs(60));
    let Some(mut amqp) = broker("too_large_message") else {
        return;
    };
    let queue = common::unique("in-large");
    amqp.queue(&queue, FieldTable::default());
    amqp.publish(&queue, &[7u8; 100], "big");
    let local = Local::new("in-large", 4, 16);
    let rx = local.q.receiver().unwrap();
    let (stats, _stop, h) = start(config("in-large", &queue, &local));
    let err = h.join().unwrap().unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(
            err,
            BridgeError::TooLarge {
                size: 100,
                max: 16,
                ..
            }
        ),
        "{text}"
    );
    assert!(
        text.contains("100 bytes") && text.contains("16 bytes"),
        "{text}"
    );
    assert_eq!(stats.snapshot().acked, 0);
    assert_eq!(rx.try_recv().ok(), None);
    amqp.wait_ready(&queue, 1); // requeued: not lost
}

#[test]
fn too_large_message_is_dead_lettered_when_configured() {
    let _w = Watchdog::new("too_large_dead_letter", Duration::from_secs(60));
    let Some(mut amqp) = broker("too_large_dead_letter") else {
        return;
    };
    let dlx = common::unique("in-dlx");
    let dlq = common::unique("in-dlq");
    let queue = common::unique("in-large-dl");
    amqp.fanout(&dlx);
    amqp.queue(&dlq, FieldTable::default());
    amqp.bind(&dlq, &dlx);
    let mut args = FieldTable::default();
    args.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString(dlx.as_str().into()),
    );
    amqp.queue(&queue, args);
    amqp.publish(&queue, &[7u8; 100], "big");
    amqp.publish(&queue, b"small", "small");
    let local = Local::new("in-large-dl", 4, 16);
    let mut rx = local.q.receiver().unwrap();
    rx.set_wait_for_senders(true);
    let mut cfg = config("in-large-dl", &queue, &local);
    cfg.queue.dead_letter_exchange = Some(dlx.clone()); // declared alike
    cfg.dead_letter = true;
    let (stats, stop, h) = start(cfg);
    assert_eq!(rx.recv_timeout(Duration::from_secs(30)).unwrap(), b"small");
    amqp.wait_ready(&dlq, 1);
    assert_eq!(amqp.get(&dlq).unwrap().0, [7u8; 100]);
    wait_until(|| stats.snapshot().acked == 1);
    stop.store(true, Ordering::Release);
    h.join().unwrap().unwrap();
    assert_eq!(stats.snapshot().rejected, 1);
}

#[test]
fn unreachable_broker_fails_fast() {
    let _w = Watchdog::new("inbound_unreachable", Duration::from_secs(60));
    let local = Local::new("in-unreachable", 4, 16);
    let mut cfg = InboundConfig::from_queue("hello", &local.name);
    cfg.broker = BrokerConfig {
        url: "amqp://guest:guest@127.0.0.1:1/%2f".into(),
        fail_fast: true,
        ..broker_config("in-unreachable")
    };
    let (_stats, _stop, h) = start(cfg);
    let err = h.join().unwrap().unwrap_err();
    assert!(matches!(err, BridgeError::Broker { .. }), "{err}");
}

#[test]
fn a_queue_declared_otherwise_is_a_clear_error() {
    let _w = Watchdog::new("durable_mismatch", Duration::from_secs(60));
    let Some(mut amqp) = broker("durable_mismatch") else {
        return;
    };
    let queue = common::unique("in-mismatch");
    amqp.queue(&queue, FieldTable::default()); // not durable, like the seed's `hello`
    let local = Local::new("in-mismatch", 4, 16);
    let mut cfg = config("in-mismatch", &queue, &local);
    cfg.queue.durable = true;
    let (_stats, _stop, h) = start(cfg);
    let err = h.join().unwrap().unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, BridgeError::Amqp { .. }), "{text}");
    assert!(text.contains("durable") && text.contains(&queue), "{text}");
}

#[test]
fn acks_in_batches_cover_every_commit_and_nothing_more() {
    let _w = Watchdog::new("inbound_ack_batches", Duration::from_secs(120));
    let Some(mut amqp) = broker("inbound_ack_batches") else {
        return;
    };
    let queue = common::unique("in-batch");
    amqp.queue(&queue, FieldTable::default());
    const N: usize = 600;
    for i in 0..N {
        amqp.publish(&queue, format!("m{i}").as_bytes(), &format!("id-{i}"));
    }
    let local = Local::new("in-batch", 1024, 64);
    let mut rx = local.q.receiver().unwrap();
    rx.set_wait_for_senders(true);
    let mut cfg = config("in-batch", &queue, &local);
    cfg.ack_batch = 16;
    let (stats, stop, h) = start(cfg.clone());
    // Stopped mid-stream: every commit is acked (no duplicate later), and
    // nothing else is (the rest goes back to the broker, none lost).
    wait_until(|| stats.snapshot().committed >= 100);
    stop.store(true, Ordering::Release);
    h.join().unwrap().unwrap();
    let s = stats.snapshot();
    let k = local.q.len();
    assert_eq!(s.committed as usize, k, "{s}");
    assert_eq!(s.acked, s.committed, "{s}");
    amqp.wait_ready(&queue, (N - k) as u32);
    // A second bridge moves the rest; all arrive once, in order.
    let (stats, stop, h) = start(cfg);
    for i in 0..N {
        let msg = rx.recv_timeout(Duration::from_secs(30)).unwrap();
        assert_eq!(msg, format!("m{i}").as_bytes());
    }
    wait_until(|| stats.snapshot().acked == (N - k) as u64);
    stop.store(true, Ordering::Release);
    h.join().unwrap().unwrap();
    assert_eq!(amqp.ready(&queue), 0);
    assert_eq!(rx.try_recv().ok(), None, "a message arrived twice");
}

#[test]
fn a_zero_ack_batch_is_a_config_error() {
    let mut cfg = InboundConfig::from_queue("hello", "shmring-bridge-test-unused");
    cfg.ack_batch = 0;
    let stats = shmring_bridge::Stats::new();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let err = shmring_bridge::run_inbound(&cfg, &stats, &stop).unwrap_err();
    assert!(matches!(err, BridgeError::Config(_)), "{err}");
    assert!(err.to_string().contains("ack_batch"), "{err}");
}
