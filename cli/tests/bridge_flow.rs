//! Back-pressure from the broker: RabbitMQ in flow control (a memory alarm,
//! raised here with `rabbitmqctl set_vm_memory_high_watermark`) blocks its
//! publishers; `shmring bridge out` then stalls, logs that it is blocked,
//! holds what it claimed, and host A's local queue fills until its senders
//! see `Full`: nothing is dropped. Once the alarm clears, the bridge logs
//! that it is unblocked and every message arrives, in order, once.
//!
//! Alone in its test binary: the alarm blocks every publisher of the
//! broker, so it must not overlap another test (cargo runs test binaries
//! one after another). The watermark is put back (RabbitMQ's default, 0.4)
//! when the test ends, also on failure.

#[path = "../../tests/common/mod.rs"]
mod common;
#[path = "tool/mod.rs"]
mod tool;

use common::*;
use shmring::ByteSendError;
use std::time::{Duration, Instant};
use tool::*;

/// Raises the broker's memory alarm; clears it when dropped.
struct MemoryAlarm;

impl MemoryAlarm {
    fn raise() -> MemoryAlarm {
        assert!(
            rabbitmqctl(&["-q", "set_vm_memory_high_watermark", "absolute", "1MB"]),
            "rabbitmqctl set_vm_memory_high_watermark failed"
        );
        MemoryAlarm
    }
}

impl Drop for MemoryAlarm {
    fn drop(&mut self) {
        rabbitmqctl(&["-q", "set_vm_memory_high_watermark", "0.4"]);
    }
}

/// Clears the alarm when the test ends, whatever happened: the watchdog
/// fails a hung test on the test's own thread while the body (and its
/// [`MemoryAlarm`]) is left running, so the body's guard alone is not
/// enough.
struct ClearAlarmAtEnd;

impl Drop for ClearAlarmAtEnd {
    fn drop(&mut self) {
        drop(MemoryAlarm);
    }
}

#[test]
fn a_broker_in_flow_control_fills_the_local_queue_and_loses_nothing() {
    const TEST: &str = "a_broker_in_flow_control_fills_the_local_queue_and_loses_nothing";
    if !broker_up(TEST, true) {
        return;
    }
    let _clear = ClearAlarmAtEnd;
    run("cli_bridge_flow", |ctx| {
        let (a, b) = (ctx.name("host-a"), ctx.name("host-b"));
        let amqp = AmqpQueue(format!("{}-amqp", a.as_str()));
        const CAP: u32 = 16;
        const WINDOW: u32 = 4;
        let (qa, qb) = (
            local_queue(a.as_str(), u64::from(CAP), 64),
            local_queue(b.as_str(), u64::from(CAP), 64),
        );
        let url = url();
        let window = WINDOW.to_string();
        let out = bridge_out(&url, a.as_str(), &amqp.0, &["--window", &window]);
        let inb = bridge_in(&url, &amqp.0, b.as_str(), &[]);
        let tx = qa.sender().unwrap();
        let mut rx = qb.receiver().unwrap();
        rx.set_wait_for_senders(true);
        let mut next = 0u32;
        let mut sent = 0u32;
        // Flowing: five messages through, end to end.
        for _ in 0..5 {
            tx.send(format!("m{sent}").as_bytes()).unwrap();
            sent += 1;
        }
        for _ in 0..5 {
            let m = rx.recv_timeout(Duration::from_secs(60)).unwrap();
            assert_eq!(m, format!("m{next}").as_bytes());
            next += 1;
        }

        let alarm = MemoryAlarm::raise();
        // RabbitMQ blocks a connection when it next publishes: host A's
        // queue fills (the bridge claims at most its window) until a
        // sender sees Full; nothing is lost meanwhile.
        loop {
            match tx.try_send(format!("m{sent}").as_bytes()) {
                Ok(()) => sent += 1,
                Err(ByteSendError::Full) => break,
                Err(e) => panic!("sending while the broker is blocked: {e:?}"),
            }
            assert!(
                sent < 1000,
                "host A's queue never filled: the broker did not block the bridge\n{}",
                out.log()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(
            sent >= 5 + CAP,
            "only {sent} sent before Full (the queue holds {CAP})"
        );
        let t0 = Instant::now();
        while !out.log().contains("blocked by the broker") {
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "the bridge never logged that the broker blocked it:\n{}",
                out.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // Nothing crossed while the broker was blocked, beyond what was
        // published before the block took hold (at most one window).
        let early = std::iter::from_fn(|| rx.try_recv().ok()).collect::<Vec<_>>();
        assert!(
            early.len() <= WINDOW as usize,
            "{} messages crossed a blocked broker",
            early.len()
        );
        let crossed = early.len() as u32;
        for m in early {
            assert_eq!(m, format!("m{next}").as_bytes(), "order while blocked");
            next += 1;
        }
        assert!(
            sent <= 5 + crossed + CAP + WINDOW,
            "{sent} sent before Full, {crossed} crossed: the bridge took more than its \
             window of {WINDOW} while blocked"
        );
        eprintln!("blocked: {sent} sent before Full, {crossed} crossed before the block");
        // A blocking sender waits (it does not fail) while the broker is
        // blocked.
        assert!(
            matches!(
                tx.send_timeout(b"late", Duration::from_millis(300)),
                Err(ByteSendError::Timeout)
            ),
            "a send into the full queue of a blocked bridge did not wait"
        );

        drop(alarm);
        wait_until("the bridge logs that the broker unblocked it", || {
            out.log().contains("unblocked by the broker")
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        while next < sent {
            assert!(
                Instant::now() < deadline,
                "{next} of {sent} arrived after the alarm cleared"
            );
            let m = rx.recv_timeout(Duration::from_secs(60)).unwrap();
            assert_eq!(m, format!("m{next}").as_bytes(), "order after the alarm");
            next += 1;
        }
        std::thread::sleep(Duration::from_millis(300));
        assert!(rx.try_recv().is_err(), "a message arrived twice");
        let (code, log) = out.interrupt();
        assert_eq!(code, Some(0), "{log}");
        qa.reap_dead();
        assert_eq!(qa.lost(), 0);
        drop(inb);
    });
}
