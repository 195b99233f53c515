//! Two hosts on one machine, through a real RabbitMQ broker, under chaos:
//! producer processes on "host A" send into A's local queue; `shmring
//! bridge out` publishes it to a durable AMQP queue; `shmring bridge in` on
//! "host B" fills B's local queue, which this test consumes. During the
//! run each bridge is killed with SIGKILL and restarted, and the broker
//! itself is restarted (`rabbitmqctl stop_app` / `start_app`).
//!
//! The ledger: every message arrives (count exact after removing
//! duplicates); each producer's messages first arrive in the order sent;
//! every duplicate carries the same message id as its first copy (so a
//! consumer can drop it), distinct messages carry distinct ids; the
//! duplicates are bounded by what was in flight at the disruptions; and
//! neither local queue counts a lost message (a killed outbound bridge's
//! held messages are kept and published by its successor, not repaired
//! away).
//!
//! Alone in its test binary: restarting the broker would disturb other
//! tests that use it (cargo runs test binaries one after another).

#[path = "../../tests/common/mod.rs"]
mod common;
#[path = "tool/mod.rs"]
mod tool;

use common::*;
use shmring::{ByteQueue, RecvTimeoutError};
use shmring_bridge::Envelope;
use std::collections::HashMap;
use std::process::Child;
use std::time::Duration;
use tool::*;

const PRODUCERS: usize = 2;
const PER_PRODUCER: u64 = 2500;
const WINDOW: usize = 16;
const PREFETCH: usize = 16;
const CAPACITY: u64 = 64;

/// `shmring inspect NAME`, for a failure's message.
fn inspect(name: &str) -> String {
    text(&shmring(&["inspect", name]))
}

/// One producer process on host A: `PER_PRODUCER` messages `p:seq`.
#[test]
#[ignore = "child process of two_hosts_survive_killed_bridges_and_a_broker_restart"]
fn child_producer() {
    child_main("child_producer", |args| {
        let q = ByteQueue::open(args.str(0)).unwrap();
        let p: usize = args.get(1);
        let mut tx = q.sender().unwrap();
        // The bridge, this queue's only receiver, is killed and restarted
        // during the run: wait for it rather than take its absence as the
        // end of the stream.
        tx.set_wait_for_receivers(true);
        for seq in 0..PER_PRODUCER {
            tx.send(format!("{p}:{seq}").as_bytes()).unwrap();
        }
    });
}

#[test]
fn two_hosts_survive_killed_bridges_and_a_broker_restart() {
    const TEST: &str = "two_hosts_survive_killed_bridges_and_a_broker_restart";
    if !broker_up(TEST, true) {
        return;
    }
    run("cli_bridge_chaos", |ctx| {
        let (a, b) = (ctx.name("host-a"), ctx.name("host-b"));
        let amqp = AmqpQueue(format!("{}-amqp", a.as_str()));
        let (qa, qb) = (
            local_queue(a.as_str(), CAPACITY, 128),
            local_queue(b.as_str(), CAPACITY, 128),
        );
        let url = url();
        let window = WINDOW.to_string();
        let prefetch = PREFETCH.to_string();
        let out_args = ["--durable", "--persistent", "--window", &window];
        let in_args = ["--durable", "--prefetch", &prefetch, "--envelope"];
        let start_out = || bridge_out(&url, a.as_str(), &amqp.0, &out_args);
        let start_in = || bridge_in(&url, &amqp.0, b.as_str(), &in_args);
        let mut out = Some(start_out());
        let mut inb = Some(start_in());
        let mut producers: Vec<Child> = (0..PRODUCERS)
            .map(|p| spawn_child("child_producer", &[a.as_str(), &p.to_string()]))
            .collect();

        let rx = qb.receiver().unwrap();
        let total = PRODUCERS as u64 * PER_PRODUCER;
        // Per producer: the next sequence number expected first time.
        let mut next = vec![0u64; PRODUCERS];
        // Every body seen, with the id of its first copy.
        let mut ids: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
        let mut id_owner: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
        let (mut unique, mut dups) = (0u64, 0u64);
        let mut disruptions = 0u64;
        let mut stage = 0;
        let mut buf = Vec::new();
        while unique < total {
            // The chaos, at fixed points of the run.
            let at = |f: u64| unique >= total * f / 10;
            if stage == 0 && at(2) {
                out.take().unwrap().kill9();
                out = Some(start_out());
                disruptions += 1;
                stage = 1;
            } else if stage == 1 && at(4) {
                inb.take().unwrap().kill9();
                inb = Some(start_in());
                disruptions += 1;
                stage = 2;
            } else if stage == 2 && at(6) {
                assert!(rabbitmqctl(&["stop_app"]), "rabbitmqctl stop_app failed");
                std::thread::sleep(Duration::from_millis(500));
                assert!(rabbitmqctl(&["start_app"]), "rabbitmqctl start_app failed");
                disruptions += 2; // both bridges lose their connection
                stage = 3;
            } else if stage == 3 && at(8) {
                out.take().unwrap().kill9();
                inb.take().unwrap().kill9();
                inb = Some(start_in());
                out = Some(start_out());
                disruptions += 2;
                stage = 4;
            }
            match rx.recv_into_timeout(&mut buf, Duration::from_secs(60)) {
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => panic!(
                    "nothing for 60 s with {unique} of {total} received (stage {stage}); \
                     bridge out:\n{}\nbridge in:\n{}\nhost A's queue:\n{}",
                    out.as_ref().map(Bridge::log).unwrap_or_default(),
                    inb.as_ref().map(Bridge::log).unwrap_or_default(),
                    inspect(a.as_str()),
                ),
                Err(e) => panic!("receiving on host B: {e:?}"),
            }
            let env = Envelope::decode(&buf).expect("an enveloped message");
            let body = env.body.to_vec();
            let id = env.message_id.to_vec();
            assert!(!id.is_empty(), "a message without a message id");
            if let Some(first) = ids.get(&body) {
                assert_eq!(
                    first,
                    &id,
                    "a duplicate of {:?} with another message id",
                    String::from_utf8_lossy(&body)
                );
                dups += 1;
                continue;
            }
            if let Some(other) = id_owner.insert(id.clone(), body.clone()) {
                panic!(
                    "message id {:?} on two messages: {:?} and {:?}",
                    String::from_utf8_lossy(&id),
                    String::from_utf8_lossy(&other),
                    String::from_utf8_lossy(&body)
                );
            }
            ids.insert(body.clone(), id);
            let text = String::from_utf8(body).unwrap();
            let (p, seq) = text.split_once(':').unwrap();
            let (p, seq): (usize, u64) = (p.parse().unwrap(), seq.parse().unwrap());
            assert_eq!(
                seq, next[p],
                "producer {p}: {seq} arrived first where {} was due (order per producer)",
                next[p]
            );
            next[p] += 1;
            unique += 1;
        }
        for c in &mut producers {
            wait_ok(c);
        }
        assert_eq!(next, vec![PER_PRODUCER; PRODUCERS]);
        // Duplicates only for messages in flight at a disruption: at most a
        // window (outbound) or a prefetch (inbound) each.
        let bound = disruptions * (WINDOW + PREFETCH) as u64;
        assert!(
            dups <= bound,
            "{dups} duplicates after {disruptions} disruptions (at most {bound} in flight)"
        );
        // Nothing more arrives once every message has.
        wait_until("host A drained", || qa.is_empty());
        std::thread::sleep(Duration::from_millis(300));
        while let Ok(m) = rx.try_recv() {
            let env = Envelope::decode(&m).expect("an enveloped message");
            assert!(
                ids.contains_key(env.body),
                "an unknown message after the end: {:?}",
                String::from_utf8_lossy(env.body)
            );
        }
        qa.reap_dead();
        qb.reap_dead();
        assert_eq!(qa.lost(), 0, "host A's queue lost messages");
        assert_eq!(qb.lost(), 0, "host B's queue lost messages");
        eprintln!("{TEST}: {total} messages, {dups} duplicates after {disruptions} disruptions");
        drop(out);
        drop(inb);
    });
}
