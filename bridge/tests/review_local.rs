//! Review: the outbound and inbound bridges on a local queue that is not
//! theirs to use: SPSC, another kind, or scribbled over. A clear error (or
//! going on), never a panic or a hang.

mod common;

use common::{broker, broker_config, unique, Watchdog};
use shmring::{ByteQueue, Flavor, Queue};
use shmring_bridge::{run_inbound, run_outbound, InboundConfig, OutboundConfig, Stats};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Runs the bridge on `local` for at most `run`, then stops it; its
/// result, or a panic/hang as a string.
fn try_bridge(test: &str, out: bool, local: &str, queue: &str, run: Duration) -> String {
    let stop = AtomicBool::new(false);
    let stats = Stats::new();
    std::thread::scope(|s| {
        let h = s.spawn(|| {
            if out {
                let mut cfg = OutboundConfig::to_queue(local, queue);
                cfg.broker = broker_config(test);
                cfg.window = 2;
                cfg.drain_timeout = Duration::from_millis(200);
                run_outbound(&cfg, &stats, &stop)
            } else {
                let mut cfg = InboundConfig::from_queue(queue, local);
                cfg.broker = broker_config(test);
                run_inbound(&cfg, &stats, &stop)
            }
        });
        let t0 = Instant::now();
        while !h.is_finished() && t0.elapsed() < run {
            std::thread::sleep(Duration::from_millis(10));
        }
        stop.store(true, Ordering::Release);
        let t1 = Instant::now();
        while !h.is_finished() {
            if t1.elapsed() > Duration::from_secs(5) {
                eprintln!("{test}: HANG on {local}");
                std::process::exit(102);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        match h.join() {
            Ok(Ok(())) => "ran".to_string(),
            Ok(Err(e)) => format!("error: {e}"),
            Err(_) => "PANIC".to_string(),
        }
    })
}

#[test]
fn review_spsc_and_other_kinds_are_clear_errors() {
    const TEST: &str = "review-local-kinds";
    let Some(mut amqp) = broker(TEST) else {
        return;
    };
    let _w = Watchdog::new(TEST, Duration::from_secs(60));
    let queue = unique(TEST);
    amqp.forget_queue(&queue);
    let spsc = unique("spsc");
    let _q = ByteQueue::builder()
        .flavor(Flavor::Spsc)
        .capacity(16)
        .max_message_size(128)
        .create(&spsc)
        .unwrap();
    let typed = unique("typed");
    let _t = Queue::<u64>::create(&typed, Flavor::Mpmc, 16).unwrap();
    let mut bad = Vec::new();
    for name in [&spsc, &typed] {
        for out in [true, false] {
            let r = try_bridge(TEST, out, name, &queue, Duration::from_secs(2));
            eprintln!("{name} out={out}: {r}");
            if !r.starts_with("error") {
                bad.push(format!("{name} out={out}: {r}"));
            }
        }
    }
    let _ = ByteQueue::unlink(&spsc);
    let _ = std::fs::remove_file(format!("/dev/shm/{typed}"));
    assert!(bad.is_empty(), "{bad:#?}");
}

/// 64 bytes of 0xff (every 64 bytes of the segment) or 0x41 (every 128)
/// over a queue holding 3 messages, then each bridge on it. Found: 0xff at
/// offset 832 (a role's generation counter) made `attach` panic on an
/// overflow (debug builds), and the outbound bridge then hung for good,
/// its stop flag unheeded (the supervisor waited for the panicked thread).
#[test]
fn review_scribbled_local_queue_never_panics_or_hangs() {
    const TEST: &str = "review-local-scribble";
    let Some(mut amqp) = broker(TEST) else {
        return;
    };
    let _w = Watchdog::new(TEST, Duration::from_secs(400));
    let queue = unique(TEST);
    amqp.queue(&queue, Default::default());
    let probe = unique("probe");
    let size = {
        let _q = ByteQueue::builder()
            .flavor(Flavor::Mpmc)
            .capacity(16)
            .max_message_size(128)
            .create(&probe)
            .unwrap();
        let n = std::fs::metadata(format!("/dev/shm/{probe}"))
            .unwrap()
            .len();
        let _ = ByteQueue::unlink(&probe);
        n
    };
    eprintln!("segment size {size}");
    // Every panic, also one the bridge catches: where it was.
    static PANICS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS.lock().unwrap().push(info.to_string());
        default(info);
    }));
    let mut bad = Vec::new();
    let mut off = 0u64;
    while off < size {
        for pattern in [0xffu8, 0x41] {
            if pattern == 0x41 && !off.is_multiple_of(128) {
                continue;
            }
            let name = unique("scribble");
            let q = ByteQueue::builder()
                .flavor(Flavor::Mpmc)
                .capacity(16)
                .max_message_size(128)
                .create(&name)
                .unwrap();
            q.persist();
            {
                let tx = q.sender().unwrap();
                for i in 0..3 {
                    tx.send(format!("m{i}").as_bytes()).unwrap();
                }
            }
            drop(q);
            {
                use std::io::{Seek, SeekFrom, Write};
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .open(format!("/dev/shm/{name}"))
                    .unwrap();
                f.seek(SeekFrom::Start(off)).unwrap();
                f.write_all(&[pattern; 64]).unwrap();
            }
            for out in [true, false] {
                let r = try_bridge(TEST, out, &name, &queue, Duration::from_millis(300));
                let panics = std::mem::take(&mut *PANICS.lock().unwrap());
                if r.contains("PANIC") || !panics.is_empty() {
                    bad.push(format!(
                        "offset {off} pattern {pattern:#x} out={out}: {r} {panics:?}"
                    ));
                }
            }
            let _ = std::fs::remove_file(format!("/dev/shm/{name}"));
        }
        off += if off < 4096 { 64 } else { 1024 };
    }
    assert!(bad.is_empty(), "{bad:#?}");
}
