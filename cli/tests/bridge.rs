//! `shmring bridge out` and `shmring bridge in` as processes: through a real
//! broker and back (where one runs), a clean stop on SIGINT with the final
//! counters, and the exit statuses of bad input.

#[path = "../../tests/common/mod.rs"]
mod common;
#[path = "tool/mod.rs"]
mod tool;

use common::*;
use std::time::Duration;
use tool::*;

#[test]
fn bridge_out_then_in_through_the_broker() {
    if !broker_up("bridge_out_then_in_through_the_broker", false) {
        return;
    }
    run("cli_bridge_round", |ctx| {
        let (a, b) = (ctx.name("host-a"), ctx.name("host-b"));
        // The AMQP queue: named after host A's queue, unique too.
        let queue = AmqpQueue(format!("{}-amqp", a.as_str()));
        let (qa, qb) = (
            local_queue(a.as_str(), 16, 256),
            local_queue(b.as_str(), 16, 256),
        );
        let mut rx = qb.receiver().unwrap();
        rx.set_wait_for_senders(true);
        let url = url();
        let out = bridge_out(
            &url,
            a.as_str(),
            &queue.0,
            &["--window", "8", "--stats", "0.2"],
        );
        let inb = bridge_in(&url, &queue.0, b.as_str(), &["--prefetch", "4"]);
        let tx = qa.sender().unwrap();
        const N: usize = 200;
        for i in 0..N {
            tx.send(format!("from host A: {i}").as_bytes()).unwrap();
        }
        for i in 0..N {
            let msg = rx.recv_timeout(Duration::from_secs(60)).unwrap();
            assert_eq!(msg, format!("from host A: {i}").as_bytes());
        }
        wait_until("host A's queue drained", || qa.is_empty());
        let (code, err) = out.interrupt();
        assert_eq!(code, Some(0), "{err}");
        assert!(err.contains("stats (final): state=stopped"), "{err}");
        assert!(err.contains(&format!("confirmed={N}")), "{err}");
        let (code, err) = inb.interrupt();
        assert_eq!(code, Some(0), "{err}");
        assert!(err.contains("connected to amqp://guest:***@"), "{err}");
        assert_eq!(rx.try_recv().ok(), None);
    });
}

/// `shmring bridge out` stopped by an error (an exchange that does not
/// exist) with messages claimed: they stay claimed, and the process's exit
/// makes them kept. A corrected bridge then publishes them first, in the
/// local queue's order and under their original ids, and then the rest:
/// the inbound side gets m0..m7 in order, each once, and nothing is lost.
#[test]
fn a_stopped_bridge_out_leaves_its_claims_in_order_for_the_next() {
    if !broker_up(
        "a_stopped_bridge_out_leaves_its_claims_in_order_for_the_next",
        false,
    ) {
        return;
    }
    run("cli_bridge_keep_on_stop", |ctx| {
        let (a, b) = (ctx.name("host-a"), ctx.name("host-b"));
        let queue = AmqpQueue(format!("{}-amqp", a.as_str()));
        let (qa, qb) = (
            local_queue(a.as_str(), 16, 256),
            local_queue(b.as_str(), 16, 256),
        );
        let tx = qa.sender().unwrap();
        for i in 0..8 {
            tx.send(format!("m{i}").as_bytes()).unwrap();
        }
        let url = url();
        let missing = format!("{}-no-such-exchange", a.as_str());
        let o = shmring(&[
            "bridge",
            "out",
            "--url",
            &url,
            "--local",
            a.as_str(),
            "--exchange",
            &missing,
            "--routing-key",
            "k",
            "--window",
            "4",
        ]);
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        assert!(text(&o).contains(&missing), "{}", text(&o));
        let mut rx = qb.receiver().unwrap();
        rx.set_wait_for_senders(true);
        let out = bridge_out(&url, a.as_str(), &queue.0, &[]);
        let inb = bridge_in(&url, &queue.0, b.as_str(), &["--envelope"]);
        let mut ids = Vec::new();
        for i in 0..8 {
            let m = rx.recv_timeout(Duration::from_secs(60)).unwrap();
            let env = shmring_bridge::Envelope::decode(&m).unwrap();
            assert_eq!(
                env.body,
                format!("m{i}").as_bytes(),
                "first copies in order"
            );
            ids.push(String::from_utf8(env.message_id.to_vec()).unwrap());
        }
        // Ids are the messages' positions in host A's queue, as sent: the
        // kept ones kept theirs (none was re-sent at a new position).
        let positions: Vec<u64> = ids
            .iter()
            .map(|id| id.rsplit_once('-').unwrap().1.parse().unwrap())
            .collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
        wait_until("host A drained", || qa.is_empty());
        std::thread::sleep(Duration::from_millis(200));
        assert!(rx.try_recv().is_err(), "a message arrived twice");
        let (code, err) = out.interrupt();
        assert_eq!(code, Some(0), "{err}");
        assert!(err.contains("held by a stopped bridge"), "{err}");
        let (code, err) = inb.interrupt();
        assert_eq!(code, Some(0), "{err}");
        qa.reap_dead();
        assert_eq!(qa.lost(), 0);
    });
}

#[test]
fn bridge_reports_bad_input_with_exit_statuses() {
    run("cli_bridge_bad_input", |ctx| {
        let local = ctx.name("local");
        // Unreachable broker, failing fast: exit 1, a line naming it.
        let o = shmring(&[
            "bridge",
            "out",
            "--url",
            "amqp://guest:guest@127.0.0.1:1/%2f",
            "--local",
            local.as_str(),
            "--queue",
            "hello",
            "--fail-fast",
        ]);
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        assert!(text(&o).contains("127.0.0.1:1"), "{}", text(&o));
        assert!(
            !text(&o).contains("guest:guest"),
            "password shown: {}",
            text(&o)
        );
        // A malformed URL, a window out of range: exit 2.
        for args in [
            &[
                "bridge",
                "in",
                "--url",
                "amqp://[::1",
                "--local",
                local.as_str(),
                "--queue",
                "q",
            ][..],
            &[
                "bridge",
                "out",
                "--local",
                local.as_str(),
                "--queue",
                "q",
                "--window",
                "49",
            ][..],
        ] {
            let o = shmring(args);
            assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o));
            assert!(!text(&o).contains("panicked"), "{}", text(&o));
        }
    });
}
