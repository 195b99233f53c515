//! A kill -9 loop with an exact ledger, for both flavors: producers send
//! with loans, consumers read in place (`recv_ref`), and a random one of
//! them is SIGKILLed every 0–1.5 ms and restarted, thousands of times; then
//! everything drains to `Disconnected`. It checks the promise of
//! `docs/reliability.md`: no message delivered twice or torn, every claimed
//! message delivered or counted in `lost()`, and `lost()` beyond those by at
//! most one per kill (the documented overlaps). The forks run inside a
//! re-exec'd child, so the multi-threaded harness never forks.
#![cfg(not(loom))]

mod common;

use common::{
    child_main, fork_raw as fork, reap_raw as reap, run, shared_mem, spawn_child, wait_ok, Args,
};
use shmring::{Flavor, Queue, RecvError, SegmentError, SendError};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::time::{Duration, Instant};

#[test]
#[ignore = "child process entry point"]
fn child_kill_loop() {
    child_main("child_kill_loop", |a: Args| match a.str(0) {
        "spsc" => kill_ledger(Flavor::Spsc),
        "mpmc" => kill_ledger(Flavor::Mpmc),
        other => panic!("unknown flavor {other}"),
    });
}

#[test]
fn kill_loop_ledger_spsc() {
    run("kill_loop_spsc", |_| {
        let mut c = spawn_child("child_kill_loop", &["spsc"]);
        wait_ok(&mut c);
    });
}

#[test]
fn kill_loop_ledger_mpmc() {
    run("kill_loop_mpmc", |_| {
        let mut c = spawn_child("child_kill_loop", &["mpmc"]);
        wait_ok(&mut c);
    });
}

fn kill9(pid: libc::pid_t) {
    // SAFETY: our own child.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    reap(pid);
}

fn exit(code: i32) -> ! {
    // SAFETY: leaves a fork child at once.
    unsafe { libc::_exit(code) }
}

/// Runs `f` in a forked child; the child exits 0 after it (101 on panic).
fn forked(f: impl FnOnce()) -> libc::pid_t {
    let pid = fork();
    if pid == 0 {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        exit(if r.is_ok() { 0 } else { 101 });
    }
    pid
}

fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// xorshift
fn rnd(s: &mut u64) -> u64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}

fn spin_us(us: u64) {
    let t = Instant::now();
    while t.elapsed() < Duration::from_micros(us) {
        std::hint::spin_loop();
    }
}

/// Messages per run: enough for thousands of kills, few enough for CI.
const N: u64 = 400_000;

fn kill_ledger(flavor: Flavor) {
    let q = Queue::<[u64; 4]>::anonymous(flavor, 16).unwrap();
    let next: &AtomicU64 = &shared_mem::<AtomicU64>(1)[0];
    let claimed: &[AtomicU8] = shared_mem(N as usize);
    let delivered: &[AtomicU8] = shared_mem(N as usize);
    let torn: &AtomicU64 = &shared_mem::<AtomicU64>(1)[0];
    // Set once every producer has finished: consumers then drain and stop.
    let done: &AtomicU64 = &shared_mem::<AtomicU64>(1)[0];

    let producer = |q: &Queue<[u64; 4]>| {
        let q = q.clone();
        forked(move || {
            let mut tx = loop {
                match q.sender() {
                    Ok(t) => break t,
                    Err(SegmentError::RoleTaken { .. }) => {
                        std::thread::sleep(Duration::from_micros(200))
                    }
                    Err(e) => panic!("sender: {e}"),
                }
            };
            loop {
                let seq = next.fetch_add(1, Ordering::SeqCst);
                if seq >= N {
                    break;
                }
                // No receiver attached right now (killed, its successor not
                // yet attached) is `Disconnected`: wait for the next one.
                loop {
                    match tx.loan() {
                        Ok(mut l) => {
                            claimed[seq as usize].store(1, Ordering::SeqCst);
                            l[0] = seq;
                            l[1] = !seq;
                            l[2] = seq.wrapping_mul(31);
                            if seq.is_multiple_of(7) {
                                spin_us(3);
                            }
                            l[3] = seq ^ 0x5555;
                            l.commit();
                            break;
                        }
                        Err(SendError::Disconnected(())) => {
                            std::thread::sleep(Duration::from_micros(100))
                        }
                        Err(e) => panic!("loan: {e:?}"),
                    }
                }
            }
        })
    };
    let consumer = |q: &Queue<[u64; 4]>| {
        let q = q.clone();
        forked(move || {
            let mut rx = loop {
                match q.receiver() {
                    Ok(r) => break r,
                    Err(SegmentError::RoleTaken { .. }) => {
                        std::thread::sleep(Duration::from_micros(200))
                    }
                    Err(e) => panic!("receiver: {e}"),
                }
            };
            let mut i = 0u64;
            loop {
                match rx.recv_ref() {
                    Ok(r) => {
                        let m = *r;
                        if m[1] != !m[0] || m[2] != m[0].wrapping_mul(31) || m[3] != m[0] ^ 0x5555 {
                            torn.fetch_add(1, Ordering::SeqCst);
                        } else if m[0] < N {
                            delivered[m[0] as usize].fetch_add(1, Ordering::SeqCst);
                        }
                        i += 1;
                        if i.is_multiple_of(5) {
                            spin_us(5); // hold the Ref a little
                        }
                        drop(r);
                    }
                    // No sender right now: done only once every producer
                    // has finished (else one was killed and restarts).
                    Err(RecvError::Disconnected) if done.load(Ordering::SeqCst) != 0 => break,
                    Err(RecvError::Disconnected) => std::thread::sleep(Duration::from_micros(100)),
                    Err(e) => panic!("recv_ref: {e:?}"),
                }
            }
        })
    };

    let np = if flavor == Flavor::Mpmc { 2 } else { 1 };
    let mut prods: Vec<_> = (0..np).map(|_| producer(&q)).collect();
    let mut cons: Vec<_> = (0..np).map(|_| consumer(&q)).collect();
    let mut seed = 0x9E3779B97F4A7C15u64 ^ now_ns();
    let (mut pk, mut ck) = (0u64, 0u64);
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(8) && next.load(Ordering::SeqCst) < N * 8 / 10 {
        std::thread::sleep(Duration::from_micros(rnd(&mut seed) % 1500));
        let r = rnd(&mut seed);
        let i = (r >> 8) as usize % np;
        if r.is_multiple_of(2) {
            kill9(prods[i]);
            pk += 1;
            prods[i] = producer(&q);
        } else {
            kill9(cons[i]);
            ck += 1;
            cons[i] = consumer(&q);
        }
    }
    // Let everything finish: producers stop at N, drop their senders; the
    // consumers drain and see Disconnected.
    for p in prods {
        assert_eq!(reap(p), 0, "producer failed");
    }
    done.store(1, Ordering::SeqCst);
    for c in cons {
        assert_eq!(reap(c), 0, "consumer failed");
    }
    let lost = q.lost();
    let (mut dup, mut missing_claimed, mut delivered_n, mut unclaimed_delivered) =
        (0u64, 0u64, 0u64, 0u64);
    let mut dup_list = vec![];
    for s in 0..N as usize {
        let d = delivered[s].load(Ordering::SeqCst);
        let c = claimed[s].load(Ordering::SeqCst);
        if d > 1 {
            dup += 1;
            if dup_list.len() < 10 {
                dup_list.push(s);
            }
        }
        if d >= 1 {
            delivered_n += 1;
            if c == 0 {
                unclaimed_delivered += 1;
            }
        }
        if c == 1 && d == 0 {
            missing_claimed += 1;
        }
    }
    let report = format!(
        "{flavor:?}: kills producer {pk} consumer {ck}; delivered {delivered_n} dup {dup} {dup_list:?} torn {} \
         claimed-not-delivered {missing_claimed} lost() {lost} (excess {}) delivered-but-never-marked-claimed {unclaimed_delivered}",
        torn.load(Ordering::SeqCst),
        lost as i64 - missing_claimed as i64,
    );
    eprintln!("{report}");
    assert!(pk + ck >= 50, "too few kills to mean anything: {report}");
    assert_eq!(dup, 0, "delivered twice: {report}");
    assert_eq!(torn.load(Ordering::SeqCst), 0, "torn: {report}");
    assert!(
        lost >= missing_claimed,
        "a claimed message neither delivered nor counted: {report}"
    );
    assert!(
        lost - missing_claimed <= pk + ck,
        "lost() over-counted beyond one per kill: {report}"
    );
}
