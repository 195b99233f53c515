//! Review: `shmring bridge out` killed with SIGKILL, again and again, and
//! stopped with SIGTERM while adopting a killed predecessor's claims over
//! a broker that stalls.

#[path = "../../bridge/tests/review_util/mod.rs"]
mod review_util;
#[path = "tool/mod.rs"]
mod tool;

use nix::sys::signal::Signal;
use review_util::Proxy;
use shmring::{ByteQueue, RecvTimeoutError};
use shmring_bridge::{run_inbound, Envelope, InboundConfig, Stats};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tool::*;

const URL: &str = shmring_bridge::DEFAULT_URL;
const PUBLISH: (u16, u16) = (60, 40);

fn unique(what: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("shmring-review-{what}-{}-{nanos}", std::process::id())
}

/// Cleans up the local queue and the AMQP queue.
struct Names(Vec<String>, Vec<String>);

impl Drop for Names {
    fn drop(&mut self) {
        for l in &self.0 {
            let _ = ByteQueue::unlink(l);
        }
        for q in &self.1 {
            rabbitmqctl(&["-q", "delete_queue", q]);
        }
    }
}

/// `shmring bridge out` from `local` to `queue` through the broker at
/// `url`, retrying connections quickly.
/// `shmring bridge out` with a short reconnect backoff.
fn bridge_out_fast(url: &str, local: &str, queue: &str, extra: &[&str]) -> Bridge {
    let mut args = vec!["--backoff-min", "20", "--backoff-max", "200"];
    args.extend_from_slice(extra);
    bridge_out(url, local, queue, &args)
}

fn wait_until(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !cond() {
        assert!(t0.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Moves everything in AMQP `queue` into a fresh local queue through an
/// in-process inbound bridge with envelopes, until `distinct` distinct
/// bodies came and nothing more for a while: (body, id) in order.
fn collect(queue: &str, distinct: usize) -> Vec<(Vec<u8>, String)> {
    let local = unique("collect");
    let q = local_queue(&local, 1024, 4096);
    let _names = Names(vec![local.clone()], vec![]);
    let rx = q.receiver().unwrap();
    let stop = AtomicBool::new(false);
    let stats = Stats::new();
    let mut cfg = InboundConfig::from_queue(queue, &local);
    cfg.broker.url = URL.to_string();
    cfg.envelope = true;
    let mut got = Vec::new();
    std::thread::scope(|s| {
        let h = s.spawn(|| run_inbound(&cfg, &stats, &stop));
        let mut seen = std::collections::HashSet::new();
        let mut quiet = Instant::now();
        let t0 = Instant::now();
        loop {
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(buf) => {
                    let e = Envelope::decode(&buf).unwrap();
                    seen.insert(e.body.to_vec());
                    got.push((
                        e.body.to_vec(),
                        String::from_utf8_lossy(e.message_id).into_owned(),
                    ));
                    quiet = Instant::now();
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(e) => panic!("{e:?}"),
            }
            if seen.len() >= distinct && quiet.elapsed() > Duration::from_millis(1500) {
                break;
            }
            if t0.elapsed() > Duration::from_secs(60) {
                break;
            }
        }
        stop.store(true, Ordering::Release);
        h.join().unwrap().unwrap();
    });
    got
}

/// Promise: a bridge killed with kill -9 at any moment: every message
/// arrives at least once, duplicates with the first copy's id, first
/// copies in order, nothing counted lost locally.
#[test]
fn review_kill9_outbound_many_times() {
    if !broker_up("review_kill9_outbound_many_times", false) {
        return;
    }
    const N: u64 = 20000;
    let local = unique("k9");
    let queue = unique("k9q");
    let _names = Names(vec![local.clone()], vec![queue.clone()]);
    let q = local_queue(&local, 64, 1024);
    let producer = {
        let q = q.clone();
        std::thread::spawn(move || {
            let mut tx = q.sender().unwrap();
            tx.set_wait_for_receivers(true);
            for i in 0..N {
                tx.send(format!("{i:06}").as_bytes()).unwrap();
            }
        })
    };
    let mut seed = std::process::id() as u64 ^ 0x9e37_79b9_7f4a_7c15;
    for _ in 0..30 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let b = bridge_out_fast(URL, &local, &queue, &["--window", "8"]);
        std::thread::sleep(Duration::from_millis(seed % 400));
        b.kill9();
    }
    let b = bridge_out_fast(URL, &local, &queue, &["--window", "8"]);
    wait_until(Duration::from_secs(60), "the producer", || {
        producer.is_finished()
    });
    wait_until(Duration::from_secs(60), "the local queue to drain", || {
        q.is_empty()
    });
    // Kept claims are not in the queue's length: give the last bridge
    // time to adopt them.
    std::thread::sleep(Duration::from_secs(3));
    let status = b
        .stop(Signal::SIGTERM, Duration::from_secs(15))
        .0
        .expect("bridge stops on SIGTERM");
    assert!(status.success(), "{status:?}");
    assert_eq!(q.lost(), 0, "messages counted lost in the local queue");
    let got = collect(&queue, N as usize);
    let mut ids: HashMap<Vec<u8>, String> = HashMap::new();
    let mut firsts = Vec::new();
    for (b, id) in &got {
        match ids.get(b) {
            Some(first) => assert_eq!(first, id, "a duplicate of {b:?} with another id"),
            None => {
                ids.insert(b.clone(), id.clone());
                firsts.push(String::from_utf8_lossy(b).into_owned());
            }
        }
    }
    assert_eq!(firsts.len(), N as usize, "missing messages");
    let want: Vec<String> = (0..N).map(|i| format!("{i:06}")).collect();
    assert!(firsts == want, "first copies out of order");
    eprintln!("{} deliveries for {N} messages", got.len());
}

/// Promise: SIGTERM stops cleanly. A bridge adopting a killed
/// predecessor's claims over a broker that stopped answering (its
/// confirm never comes).
#[test]
fn review_sigterm_while_adopting_with_a_stalled_broker() {
    if !broker_up("review_sigterm_while_adopting_with_a_stalled_broker", false) {
        return;
    }
    let local = unique("adopt");
    let queue = unique("adoptq");
    let _names = Names(vec![local.clone()], vec![queue.clone()]);
    let q = local_queue(&local, 64, 1024);
    let tx = q.sender().unwrap();
    let p1 = Proxy::new("127.0.0.1:5672");
    p1.stall_on(PUBLISH, false, true);
    let b1 = bridge_out_fast(&p1.url(), &local, &queue, &["--window", "4"]);
    for i in 0..4 {
        tx.send(format!("m{i}").as_bytes()).unwrap();
    }
    wait_until(Duration::from_secs(20), "the first publish", || {
        p1.flags.fired.load(Ordering::Acquire)
    });
    std::thread::sleep(Duration::from_millis(300));
    b1.kill9();
    p1.cut();
    let p2 = Proxy::new("127.0.0.1:5672");
    p2.stall_on(PUBLISH, false, true);
    let b2 = bridge_out_fast(
        &p2.url(),
        &local,
        &queue,
        &["--window", "4", "--drain-timeout", "0.5"],
    );
    wait_until(Duration::from_secs(20), "the adoption's publish", || {
        p2.flags.fired.load(Ordering::Acquire)
    });
    std::thread::sleep(Duration::from_millis(300));
    let status = b2.stop(Signal::SIGTERM, Duration::from_secs(10)).0;
    p2.cut();
    assert!(
        status.is_some(),
        "the bridge did not exit within 10 s of SIGTERM"
    );
    // What it could not get confirmed stays kept: the next bridge moves it.
    let b3 = bridge_out_fast(URL, &local, &queue, &["--window", "4"]);
    let got = collect(&queue, 4);
    drop(b3);
    let mut bodies: Vec<String> = got
        .iter()
        .map(|(b, _)| String::from_utf8_lossy(b).into_owned())
        .collect();
    bodies.sort();
    bodies.dedup();
    assert_eq!(bodies, ["m0", "m1", "m2", "m3"]);
    assert_eq!(q.lost(), 0);
}

/// Promise: a bridge killed with kill -9: every message arrives. Two
/// outbound bridges on one local queue (more throughput, or a rolling
/// restart), one killed while holding claims. Found: the survivor adopted
/// kept claims only when it started, so the dead one's claims were never
/// published, and once the producer wrapped round to them the queue
/// stalled for good.
#[test]
fn review_two_outbound_bridges_one_killed() {
    if !broker_up("review_two_outbound_bridges_one_killed", false) {
        return;
    }
    const N: u64 = 2000;
    let local = unique("two");
    let queue = unique("twoq");
    let _names = Names(vec![local.clone()], vec![queue.clone()]);
    let q = local_queue(&local, 16, 1024);
    let p1 = Proxy::new("127.0.0.1:5672");
    let a = bridge_out_fast(&p1.url(), &local, &queue, &["--window", "4"]);
    let b = bridge_out_fast(URL, &local, &queue, &["--window", "4"]);
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let p1 = std::sync::Arc::new(p1);
    let producer = {
        let (q, sent, p1) = (q.clone(), sent.clone(), p1.clone());
        std::thread::spawn(move || {
            let mut tx = q.sender().unwrap();
            tx.set_wait_for_receivers(true);
            for i in 0..N {
                tx.send(format!("{i:06}").as_bytes()).unwrap();
                sent.store(i + 1, Ordering::Relaxed);
                if i == 100 {
                    // A holds claims (its confirms held back), then dies.
                    p1.stall_on(PUBLISH, false, true);
                }
            }
        })
    };
    wait_until(Duration::from_secs(20), "a's stall", || {
        p1.flags.fired.load(Ordering::Acquire)
    });
    std::thread::sleep(Duration::from_millis(300));
    a.kill9();
    let t0 = Instant::now();
    while !producer.is_finished() && t0.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let stuck = sent.load(Ordering::Relaxed);
    assert!(
        producer.is_finished(),
        "the producer is stuck after {stuck} of {N} messages: bridge b never publishes \
         the killed bridge's kept claims (local queue len {})",
        q.len()
    );
    let got = collect(&queue, N as usize);
    drop(b);
    let distinct: std::collections::HashSet<&Vec<u8>> = got.iter().map(|(b, _)| b).collect();
    assert_eq!(distinct.len(), N as usize, "messages missing");
    assert_eq!(q.lost(), 0);
}
