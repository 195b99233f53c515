//! Review: stopping an outbound bridge while publishes are unconfirmed, and
//! a broker that stalls (TCP open, nothing answered), through a proxy.

mod common;
mod review_util;

use common::{
    broker, broker_config, start_inbound, start_outbound as start, unique, wait_until, Local,
    Running as Bridge, Watchdog,
};
use lapin::types::FieldTable;
use review_util::Proxy;
use shmring_bridge::{BridgeError, InboundConfig, OutboundConfig};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const PUBLISH: (u16, u16) = (60, 40);
const CHANNEL_OPEN: (u16, u16) = (20, 10);

fn config(test: &str, local: &Local, queue: &str, url: &str) -> OutboundConfig {
    let mut cfg = OutboundConfig::to_queue(&local.name, queue);
    cfg.broker = broker_config(test);
    cfg.broker.url = url.to_string();
    cfg.window = 4;
    cfg.drain_timeout = Duration::from_millis(300);
    cfg
}

fn stop_and_join(b: Bridge, limit: Duration) -> Result<(), BridgeError> {
    b.1.store(true, Ordering::Release);
    let t0 = Instant::now();
    while !b.2.is_finished() {
        assert!(
            t0.elapsed() < limit,
            "the bridge did not stop within {limit:?} of its stop flag"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    b.2.join().unwrap()
}

/// Runs the scenario: 2 messages through, the proxy stalls on the next
/// publish (`c2s`: the broker never sees it; else only its confirm is
/// lost), 8 more sent, the bridge stopped; then a direct bridge moves the
/// rest. Returns what the AMQP queue holds: (body, id) in order.
fn scenario(test: &'static str, c2s: bool) -> Option<Vec<(Vec<u8>, String)>> {
    let mut amqp = broker(test)?;
    let _w = Watchdog::new(test, Duration::from_secs(60));
    let local = Local::new(test, 64, 1024);
    let queue = unique(test);
    amqp.queue(&queue, FieldTable::default());
    let proxy = Proxy::new("127.0.0.1:5672");
    let tx = local.q.sender().unwrap();
    let b = start(config(test, &local, &queue, &proxy.url()));
    for i in 0..2 {
        tx.send(format!("m{i}").as_bytes()).unwrap();
    }
    amqp.wait_ready(&queue, 2);
    proxy.stall_on(PUBLISH, c2s, true);
    for i in 2..10 {
        tx.send(format!("m{i}").as_bytes()).unwrap();
    }
    wait_until(|| proxy.flags.fired.load(Ordering::Acquire));
    std::thread::sleep(Duration::from_millis(300));
    let r = stop_and_join(b, Duration::from_secs(10));
    eprintln!("first bridge: {r:?}");
    proxy.cut();
    let url = common::broker_url();
    let b2 = start(config(test, &local, &queue, &url));
    // Every message at least once.
    wait_until(|| amqp.ready(&queue) >= 10 && local.q.is_empty());
    std::thread::sleep(Duration::from_millis(500));
    stop_and_join(b2, Duration::from_secs(10)).unwrap();
    let n = amqp.ready(&queue) as usize;
    Some(amqp.get_n(&queue, n))
}

fn show(got: &[(Vec<u8>, String)]) -> Vec<String> {
    got.iter()
        .map(|(b, id)| format!("{} {id}", String::from_utf8_lossy(b)))
        .collect()
}

/// Promise: "duplicates ... carry the same message_id as the first copy".
/// A message published, its confirm not yet in when the bridge stops, is
/// sent back into the local queue at a new position: the next bridge
/// publishes it again under another id.
#[test]
#[ignore = "the library default (keep_on_stop false) sends unconfirmed messages back at new positions (new ids); shmring bridge out keeps them (cli/tests/bridge.rs)"]
fn review_stop_with_unconfirmed_publishes_keeps_message_ids() {
    let Some(got) = scenario("review-stop-ids", false) else {
        return;
    };
    let mut ids: BTreeMap<Vec<u8>, Vec<String>> = BTreeMap::new();
    for (b, id) in &got {
        ids.entry(b.clone()).or_default().push(id.clone());
    }
    for (b, v) in &ids {
        assert!(
            v.iter().all(|id| *id == v[0]),
            "copies of {:?} carry different ids {v:?}; all: {:#?}",
            String::from_utf8_lossy(b),
            show(&got)
        );
    }
}

/// Promise: "each producer's messages arrive in the order sent (first
/// copies)". Messages claimed but never received by the broker when the
/// bridge stops go back behind the ones queued since.
#[test]
#[ignore = "the library default (keep_on_stop false) sends unconfirmed claims back behind newer messages; shmring bridge out keeps them (cli/tests/bridge.rs)"]
fn review_stop_with_unpublished_claims_keeps_order() {
    let Some(got) = scenario("review-stop-order", true) else {
        return;
    };
    let mut seen = std::collections::HashSet::new();
    let firsts: Vec<String> = got
        .iter()
        .filter(|(b, _)| seen.insert(b.clone()))
        .map(|(b, _)| String::from_utf8_lossy(b).into_owned())
        .collect();
    let want: Vec<String> = (0..10).map(|i| format!("m{i}")).collect();
    assert_eq!(
        firsts,
        want,
        "first copies out of order; all: {:#?}",
        show(&got)
    );
}

/// Promise: "SIGINT/SIGTERM stop a bridge cleanly". A broker that takes
/// the connection and then answers nothing (stalled, partitioned) while
/// the bridge sets up its channel: the stop flag used to go unheeded. Runs
/// the bridge `start` makes (local queue, AMQP queue, the proxy's URL).
fn stop_during_stalled_setup(
    test: &'static str,
    start: impl FnOnce(&Local, &str, String) -> Bridge,
) {
    let Some(mut amqp) = broker(test) else {
        return;
    };
    let _w = Watchdog::new(test, Duration::from_secs(60));
    let local = Local::new(test, 64, 1024);
    let queue = unique(test);
    amqp.forget_queue(&queue);
    let proxy = Proxy::new("127.0.0.1:5672");
    proxy.stall_on(CHANNEL_OPEN, false, true);
    let b = start(&local, &queue, proxy.url());
    wait_until(|| proxy.flags.fired.load(Ordering::Acquire));
    std::thread::sleep(Duration::from_millis(200));
    let r = stop_and_join(b, Duration::from_secs(5));
    proxy.cut();
    assert!(r.is_ok(), "a stop during setup is a clean stop: {r:?}");
}

#[test]
fn review_stop_during_channel_setup_with_a_stalled_broker() {
    const TEST: &str = "review-stop-setup";
    stop_during_stalled_setup(TEST, |local, queue, url| {
        start(config(TEST, local, queue, &url))
    });
}

/// The same for the inbound bridge: stalled while it sets up its consumer.
#[test]
fn review_stop_inbound_during_setup_with_a_stalled_broker() {
    const TEST: &str = "review-stop-setup-in";
    stop_during_stalled_setup(TEST, |local, queue, url| {
        let mut cfg = InboundConfig::from_queue(queue, &local.name);
        cfg.broker = broker_config(TEST);
        cfg.broker.url = url;
        start_inbound(cfg)
    });
}
