//! Review: messages at the local queue's maximum size through the outbound
//! bridge and back through the inbound one.

mod common;

use common::{broker, broker_config, unique, wait_until, Local, Watchdog};
use shmring_bridge::{run_inbound, run_outbound, InboundConfig, OutboundConfig, Stats};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

#[test]
fn review_messages_at_the_local_maximum_go_through() {
    const TEST: &str = "review-large";
    let Some(mut amqp) = broker(TEST) else {
        return;
    };
    let _w = Watchdog::new(TEST, Duration::from_secs(90));
    const MAX: u64 = 4 << 20;
    let a = Local::new("large-a", 8, MAX);
    let b = Local::new("large-b", 8, MAX);
    let queue = unique(TEST);
    amqp.queue(&queue, Default::default());
    let stop = AtomicBool::new(false);
    let (so, si) = (Stats::new(), Stats::new());
    let mut out = OutboundConfig::to_queue(&a.name, &queue);
    out.broker = broker_config(TEST);
    out.window = 4;
    let mut inb = InboundConfig::from_queue(&queue, &b.name);
    inb.broker = broker_config(TEST);
    inb.prefetch = 2;
    let rx = b.q.receiver().unwrap();
    std::thread::scope(|s| {
        let ho = s.spawn(|| run_outbound(&out, &so, &stop));
        let hi = s.spawn(|| run_inbound(&inb, &si, &stop));
        let tx = a.q.sender().unwrap();
        for i in 0..6u8 {
            let mut m = vec![i; MAX as usize];
            m[0] = b'x';
            tx.send(&m).unwrap();
        }
        for i in 0..6u8 {
            let m = rx.recv_timeout(Duration::from_secs(30)).unwrap();
            assert_eq!(m.len(), MAX as usize);
            assert_eq!(m[1], i);
        }
        wait_until(|| a.q.is_empty());
        stop.store(true, Ordering::Release);
        ho.join().unwrap().unwrap();
        hi.join().unwrap().unwrap();
    });
}
