//! The floors, measured in the same run as everything else:
//!
//! - `floor`/`spin`: a busy-poll ping-pong of a `u64` through one shared
//!   cache line each way (no queue at all), and for throughput a minimal
//!   busy-poll SPSC ring of `u64` (head and tail on their own lines, cached
//!   peer index);
//! - `floor`/`block`: a raw futex ping-pong through two shared `u32` words
//!   (`FUTEX_WAIT` / `FUTEX_WAKE`, no private flag, a wake on every hop),
//!   and for throughput the same minimal ring whose sides sleep on a futex
//!   when it is empty or full (a waiter flag and a fence per message).
//!
//! One child process per mode, forked with a fresh shared mapping. The
//! futex calls are the library's own, `shmring::futex_wait`
//! (`FUTEX_WAIT_BITSET`, an absolute deadline) and `futex_wake`: the tool
//! has no futex wrapper of its own.

use crate::sys::{self, Forked, Peer};
use crate::types::{new_histogram, Config, Failure, Latency, Mode, Row};
use shmring::{futex_wait, futex_wake, Deadline};
use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Slots of the floor ring.
pub(crate) const RING: u32 = 1024;
/// How long a futex sleep lasts before the sleeper checks its peer.
const NAP: Duration = Duration::from_millis(50);

const OP_RTT: u32 = 1;
const OP_STREAM: u32 = 2;
const OP_EXIT: u32 = 3;

/// A value alone on its 128-byte line pair.
#[repr(C, align(128))]
pub(crate) struct Line<T>(pub(crate) T);

impl<T> std::ops::Deref for Line<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// The shared page(s); valid when all zero.
#[repr(C)]
struct Shm {
    /// The parent's commands to the child.
    cmd: Commands,
    /// Spin ping-pong.
    ping: Line<AtomicU64>,
    pong: Line<AtomicU64>,
    /// Futex ping-pong.
    fping: Line<AtomicU32>,
    fpong: Line<AtomicU32>,
    /// Ring: next position to read (consumer), next to write (producer),
    /// and the sleepers' flags (block mode).
    head: Line<AtomicU32>,
    tail: Line<AtomicU32>,
    cons_sleeps: Line<AtomicU32>,
    prod_sleeps: Line<AtomicU32>,
    slots: [AtomicU64; RING as usize],
}

/// Commands from a measurement's parent to its child, in shared memory
/// (valid all-zero): a sequence number bumped for each command, which the
/// child polls for a millisecond and then sleeps on (futex), and the
/// command's two words.
#[repr(C)]
pub(crate) struct Commands {
    seq: Line<AtomicU32>,
    op: AtomicU32,
    count: AtomicU64,
}

impl Commands {
    /// Parent: posts `op` with `count`; `sent` counts the commands posted.
    pub(crate) fn post(&self, sent: &mut u32, op: u32, count: u64) {
        *sent = sent.wrapping_add(1);
        // Relaxed: published by the Release store of `seq` below.
        self.op.store(op, Ordering::Relaxed);
        self.count.store(count, Ordering::Relaxed);
        // Release: the command's words happen-before the child's Acquire
        // load that sees the new sequence number.
        self.seq.store(*sent, Ordering::Release);
        futex_wake(&self.seq, 1);
    }

    /// Child: waits for the command after the `seen`-th (spinning for a
    /// millisecond, then sleeping), checking that the parent lives while
    /// asleep; returns its op and count.
    pub(crate) fn next(&self, seen: &mut u32, peer: &Peer) -> Result<(u32, u64), String> {
        let until = Instant::now() + Duration::from_millis(1);
        loop {
            // Acquire: pairs with `post`'s Release store, so the command's
            // words are visible.
            let s = self.seq.load(Ordering::Acquire);
            if s != *seen {
                *seen = s;
                break;
            }
            if Instant::now() < until {
                std::hint::spin_loop();
            } else {
                nap(&self.seq, *seen);
                peer.check()?;
            }
        }
        // Relaxed: ordered by the Acquire load above.
        Ok((
            self.op.load(Ordering::Relaxed),
            self.count.load(Ordering::Relaxed),
        ))
    }
}

/// Busy-polls `cond`; every 2^20 failed polls checks that the peer lives.
#[inline(always)]
pub(crate) fn spin_until(mut cond: impl FnMut() -> bool, peer: &Peer) -> Result<(), String> {
    let mut spins = 0u32;
    while !cond() {
        std::hint::spin_loop();
        spins = spins.wrapping_add(1);
        if spins.is_multiple_of(1 << 20) {
            peer.check()?;
        }
    }
    Ok(())
}

/// Measures the floor of `mode`: one row (transport `floor`, size 8).
pub fn measure(cfg: &Config, mode: Mode) -> Result<Row, Failure> {
    // SAFETY: `Shm` is atomics only (valid all-zero), aligned to 128 bytes.
    let shm = unsafe { sys::SharedMap::<Shm>::new() }
        .map_err(|e| Failure::Run(format!("mapping the floor's page: {e}")))?;
    let label = format!("floor {}", mode.name());
    match sys::fork().map_err(|e| Failure::Run(format!("fork: {e}")))? {
        Forked::Child => sys::child_main(&label, cfg.cpus.1, cfg.timeout, |peer| {
            child(&shm, mode, peer)
        }),
        Forked::Parent(child) => {
            let peer = Peer::Child(&child);
            let mut sent = 0u32;
            let mut post = |op: u32, count: u64| shm.cmd.post(&mut sent, op, count);
            let n = cfg.rtt_iterations(8);
            let warm = cfg.warmup(n);
            let mut hist = new_histogram();
            // Round trips.
            post(OP_RTT, warm + n);
            let r = match mode {
                Mode::Spin => rtt_spin(&shm, warm, n, &mut hist, &peer),
                Mode::Block => rtt_futex(&shm, warm, n, &mut hist, &peer),
            };
            r.map_err(|e| Failure::Run(format!("{label}: {e}")))?;
            // Throughput: a calibration run, then one of about the target time.
            let mut pos = 0u32;
            let mut stream = |count: u64, pos: &mut u32| -> Result<Duration, String> {
                post(OP_STREAM, count);
                let t = Instant::now();
                consume(&shm, mode, pos, count, &peer)?;
                Ok(t.elapsed())
            };
            let run = |e: String| Failure::Run(format!("{label}: {e}"));
            let n0 = cfg.calibration_messages();
            let d0 = stream(n0, &mut pos).map_err(run)?;
            let count = cfg.stream_messages(n0, d0);
            let d = stream(count, &mut pos).map_err(run)?;
            post(OP_EXIT, 0);
            child
                .reap()
                .map_err(|e| Failure::Run(format!("{label}: {e}")))?;
            Ok(Row {
                transport: "floor".into(),
                mode,
                size: 8,
                loan: false,
                lat: Latency::from_histogram(&hist),
                msgs_per_s: count as f64 / d.as_secs_f64(),
                rounds: Vec::new(),
            })
        }
    }
}

fn rtt_spin(
    shm: &Shm,
    warm: u64,
    n: u64,
    hist: &mut hdrhistogram::Histogram<u64>,
    peer: &Peer,
) -> Result<(), String> {
    let base = shm.ping.load(Ordering::Relaxed);
    for i in 1..=warm + n {
        let v = base + i;
        let t = Instant::now();
        shm.ping.store(v, Ordering::Release);
        spin_until(|| shm.pong.load(Ordering::Acquire) == v, peer)?;
        let dt = t.elapsed();
        if i > warm {
            hist.saturating_record(dt.as_nanos() as u64);
        }
    }
    Ok(())
}

/// Sleeps (futex) while `word` holds `stuck`, at most [`NAP`]; callers
/// re-check.
fn nap(word: &AtomicU32, stuck: u32) {
    futex_wait(word, stuck, Some(Deadline::after(NAP)));
}

/// Waits (futex) until `word` holds `want`; `before` is its value until then.
fn futex_until(word: &AtomicU32, before: u32, want: u32, peer: &Peer) -> Result<(), String> {
    while word.load(Ordering::Acquire) != want {
        nap(word, before);
        if word.load(Ordering::Acquire) != want {
            peer.check()?;
        }
    }
    Ok(())
}

fn rtt_futex(
    shm: &Shm,
    warm: u64,
    n: u64,
    hist: &mut hdrhistogram::Histogram<u64>,
    peer: &Peer,
) -> Result<(), String> {
    let base = shm.fping.load(Ordering::Relaxed);
    for i in 1..=warm + n {
        let v = base.wrapping_add(i as u32);
        let t = Instant::now();
        shm.fping.store(v, Ordering::Release);
        futex_wake(&shm.fping, 1);
        futex_until(&shm.fpong, v.wrapping_sub(1), v, peer)?;
        let dt = t.elapsed();
        if i > warm {
            hist.saturating_record(dt.as_nanos() as u64);
        }
    }
    Ok(())
}

/// The ring's consumer (parent): `count` messages from position `pos`.
fn consume(shm: &Shm, mode: Mode, pos: &mut u32, count: u64, peer: &Peer) -> Result<(), String> {
    let mut cached_tail = shm.tail.load(Ordering::Acquire);
    let mut sum = 0u64;
    let first = *pos;
    for _ in 0..count {
        let p = *pos;
        if p == cached_tail {
            match mode {
                Mode::Spin => spin_until(
                    || {
                        cached_tail = shm.tail.load(Ordering::Acquire);
                        cached_tail != p
                    },
                    peer,
                )?,
                Mode::Block => {
                    cached_tail = sleep_while(&shm.tail, p, &shm.cons_sleeps, peer)?;
                }
            }
        }
        sum = sum.wrapping_add(shm.slots[(p % RING) as usize].load(Ordering::Relaxed));
        *pos = p.wrapping_add(1);
        shm.head.store(*pos, Ordering::Release);
        if mode == Mode::Block {
            // The producer may have announced a sleep on `head` before our
            // store: Dekker's pattern, a full fence between store and load.
            fence(Ordering::SeqCst);
            if shm.prod_sleeps.load(Ordering::Relaxed) != 0 {
                futex_wake(&shm.head, 1);
            }
        }
    }
    let want = (0..count).fold(0u64, |s, i| {
        s.wrapping_add(u64::from(first.wrapping_add(i as u32)))
    });
    if sum != want {
        return Err("the floor ring delivered wrong values".into());
    }
    Ok(())
}

/// Sleeps until `word` differs from `stuck`, announcing the sleep in `flag`;
/// returns the new value.
fn sleep_while(word: &AtomicU32, stuck: u32, flag: &AtomicU32, peer: &Peer) -> Result<u32, String> {
    loop {
        let v = word.load(Ordering::Acquire);
        if v != stuck {
            return Ok(v);
        }
        flag.store(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        let v = word.load(Ordering::Acquire);
        if v != stuck {
            flag.store(0, Ordering::Relaxed);
            return Ok(v);
        }
        nap(word, stuck);
        flag.store(0, Ordering::Relaxed);
        if word.load(Ordering::Acquire) == stuck {
            peer.check()?;
        }
    }
}

/// The ring's producer (child).
fn produce(shm: &Shm, mode: Mode, pos: &mut u32, count: u64, peer: &Peer) -> Result<(), String> {
    let mut cached_head = shm.head.load(Ordering::Acquire);
    for _ in 0..count {
        let p = *pos;
        if p.wrapping_sub(cached_head) == RING {
            let full = p.wrapping_sub(RING);
            match mode {
                Mode::Spin => spin_until(
                    || {
                        cached_head = shm.head.load(Ordering::Acquire);
                        cached_head != full
                    },
                    peer,
                )?,
                Mode::Block => {
                    cached_head = sleep_while(&shm.head, full, &shm.prod_sleeps, peer)?;
                }
            }
        }
        shm.slots[(p % RING) as usize].store(u64::from(p), Ordering::Relaxed);
        *pos = p.wrapping_add(1);
        shm.tail.store(*pos, Ordering::Release);
        if mode == Mode::Block {
            fence(Ordering::SeqCst);
            if shm.cons_sleeps.load(Ordering::Relaxed) != 0 {
                futex_wake(&shm.tail, 1);
            }
        }
    }
    Ok(())
}

/// The child: serves commands until `OP_EXIT`.
fn child(shm: &Shm, mode: Mode, peer: &Peer) -> Result<(), String> {
    let mut seen = 0u32;
    let mut pos = 0u32;
    loop {
        let (op, count) = shm.cmd.next(&mut seen, peer)?;
        match op {
            OP_RTT => match mode {
                Mode::Spin => {
                    let base = shm.pong.load(Ordering::Relaxed);
                    for i in 1..=count {
                        let v = base + i;
                        spin_until(|| shm.ping.load(Ordering::Acquire) == v, peer)?;
                        shm.pong.store(v, Ordering::Release);
                    }
                }
                Mode::Block => {
                    let base = shm.fpong.load(Ordering::Relaxed);
                    for i in 1..=count {
                        let v = base.wrapping_add(i as u32);
                        futex_until(&shm.fping, v.wrapping_sub(1), v, peer)?;
                        shm.fpong.store(v, Ordering::Release);
                        futex_wake(&shm.fpong, 1);
                    }
                }
            },
            OP_STREAM => produce(shm, mode, &mut pos, count, peer)?,
            OP_EXIT => return Ok(()),
            op => return Err(format!("unknown command {op}")),
        }
    }
}
