//! `shmring bench --scaling LIST`: MPMC scaling, P producers × C consumers
//! for every P and C in LIST, against crossbeam's `ArrayQueue` in the same
//! run.
//!
//! For each (P, C), busy-polling (spin, then `sched_yield` after
//! [`SPINS`] failed polls, so that an oversubscribed machine still
//! finishes):
//!
//! - `shm-mpmc`: shmring's MPMC `Queue<u64>` (anonymous, a memfd: nothing
//!   in `/dev/shm`) between P producer and C consumer **processes**, forked;
//! - `arrayqueue`: `crossbeam_queue::ArrayQueue<u64>` between P producer
//!   and C consumer **threads** of one process;
//! - `shm-mpmc-threads`: the shmring queue between threads of one process,
//!   which separates what processes cost from what the queue costs.
//!
//! All have [`floor::RING`] slots. Producer `p` sends `p, p + P, p + 2P, …`
//! below `n`, so the values sent are exactly `0..n`; each consumer keeps a
//! [`Tally`] (count, sum, xor and a sum of hashes of what it received), and
//! the tallies together must be `Tally::of_range(n)`: a message lost or
//! received twice fails the run. A consumer stops once every producer has
//! finished and the queue is then empty. Time runs from the moment every
//! participant is attached and waiting (then `go`) to the latest consumer's
//! stop. Participants are pinned to distinct CPUs when there are enough
//! (P + C ≤ the CPUs this process may use), otherwise left unpinned, and the
//! table says so.
//!
//! The thread rows run in a forked child, so the tool's own process stays
//! single-threaded (it forks). One measurement at a time, under the
//! watchdog.

use crate::args::BenchArgs;
use crate::floor::{self, Line};
use crate::report;
use crate::sys::{self, Forked, SharedMap};
use crate::types::{Failure, Spread};
use crossbeam_queue::ArrayQueue;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use shmring::{Deadline, Flavor, Queue, TryRecvError, TrySendError, WakeMode};
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The most producers (or consumers) of one cell: 2 × 31 endpoints stay
/// under a queue's 63.
pub const MAX_SIDE: u32 = 31;
/// Failed polls spent spinning before each further one yields the CPU.
const SPINS: u32 = 128;
/// Messages per cell by default (`--quick`: a tenth).
const DEFAULT_MESSAGES: u64 = 5_000_000;

/// What carries the messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Variant {
    /// shmring's MPMC queue between processes.
    ShmProcesses,
    /// crossbeam's `ArrayQueue` between threads.
    ArrayQueue,
    /// shmring's MPMC queue between threads.
    ShmThreads,
}

const VARIANTS: [Variant; 3] = [
    Variant::ShmProcesses,
    Variant::ArrayQueue,
    Variant::ShmThreads,
];

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::ShmProcesses => "shm-mpmc",
            Variant::ArrayQueue => "arrayqueue",
            Variant::ShmThreads => "shm-mpmc-threads",
        }
    }
}

// ---------------------------------------------------------------------------
// The exactly-once check

/// A summary of a multiset of received values: equal to
/// [`Tally::of_range`]`(n)` when every value of `0..n` came exactly once.
/// A lost or duplicated message changes `count`; a loss and a duplicate
/// together change `sum`, `xor` or `hashes` (the sum of a 64-bit mix of
/// each value: two different multisets of the same size agree on it only
/// by a 2^-64 accident).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Values received.
    pub count: u64,
    /// Their sum (wrapping).
    pub sum: u64,
    /// Their xor.
    pub xor: u64,
    /// The sum (wrapping) of [`mix`] of each.
    pub hashes: u64,
}

/// SplitMix64's finaliser: a bijection of `u64` that scatters every bit.
#[inline(always)]
fn mix(v: u64) -> u64 {
    let mut z = v.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Tally {
    /// Counts one received value.
    #[inline(always)]
    pub fn add(&mut self, v: u64) {
        self.count += 1;
        self.sum = self.sum.wrapping_add(v);
        self.xor ^= v;
        self.hashes = self.hashes.wrapping_add(mix(v));
    }

    /// Adds another consumer's tally.
    pub fn merge(&mut self, o: &Tally) {
        self.count += o.count;
        self.sum = self.sum.wrapping_add(o.sum);
        self.xor ^= o.xor;
        self.hashes = self.hashes.wrapping_add(o.hashes);
    }

    /// The tally of `0..n`, each once.
    pub fn of_range(n: u64) -> Tally {
        // The xor of 0..=m repeats with period 4.
        let xor_upto = |m: u64| match m % 4 {
            0 => m,
            1 => 1,
            2 => m + 1,
            _ => 0,
        };
        Tally {
            count: n,
            sum: ((u128::from(n) * u128::from(n.saturating_sub(1))) / 2) as u64,
            xor: if n == 0 { 0 } else { xor_upto(n - 1) },
            hashes: (0..n).fold(0u64, |h, v| h.wrapping_add(mix(v))),
        }
    }

    /// Ok if this is the tally of `0..n`, each once (`want` is
    /// `Tally::of_range(n)`); else what went wrong.
    pub fn check(&self, want: &Tally) -> Result<(), String> {
        if self == want {
            return Ok(());
        }
        let n = want.count;
        Err(if self.count < n {
            format!(
                "exactly-once check failed: {} of {n} messages received ({} lost)",
                self.count,
                n - self.count
            )
        } else if self.count > n {
            format!(
                "exactly-once check failed: {} messages received for {n} sent ({} duplicated)",
                self.count,
                self.count - n
            )
        } else {
            format!(
                "exactly-once check failed: {n} messages received, but not 0..{n} once each \
                 (a message lost and another duplicated, or a wrong value)"
            )
        })
    }
}

// ---------------------------------------------------------------------------
// Shared state of one measurement

/// One consumer's result.
#[repr(C)]
struct Slot {
    count: AtomicU64,
    sum: AtomicU64,
    xor: AtomicU64,
    hashes: AtomicU64,
    /// `CLOCK_MONOTONIC` ns at its stop.
    end_ns: AtomicU64,
    /// 1 once the fields above are written.
    filled: AtomicU32,
}

/// What the participants of one measurement share (a [`SharedMap`]: the
/// same for processes and threads); valid when all zero.
#[repr(C)]
struct Control {
    /// Participants attached and waiting for `go`.
    ready: Line<AtomicU32>,
    /// 1: start.
    go: Line<AtomicU32>,
    /// Producers that have sent their share.
    done: Line<AtomicU32>,
    /// 1: a participant failed; the others stop waiting.
    abort: Line<AtomicU32>,
    /// `CLOCK_MONOTONIC` ns just before `go`.
    start_ns: Line<AtomicU64>,
    results: [Line<Slot>; MAX_SIDE as usize],
}

/// Spin, then yield: every participant's wait.
struct Backoff(u32);

impl Backoff {
    #[inline(always)]
    fn snooze(&mut self, ctl: &Control) -> Result<(), String> {
        if self.0 < SPINS {
            self.0 += 1;
            std::hint::spin_loop();
            return Ok(());
        }
        // Relaxed: a stop request only; no data travels with it.
        if ctl.abort.load(Ordering::Relaxed) != 0 {
            return Err("stopped: another participant failed".into());
        }
        // SAFETY: sched_yield takes nothing.
        unsafe { libc::sched_yield() };
        Ok(())
    }
}

/// Says "attached", then waits for `go`.
fn ready_then_wait(ctl: &Control) -> Result<(), String> {
    // Release: the endpoint attached before this is visible to whoever
    // reads the count with Acquire (the orchestrator, before `go`).
    ctl.ready.fetch_add(1, Ordering::Release);
    let mut b = Backoff(0);
    // Acquire: pairs with the Release store of `go` (after `start_ns`).
    while ctl.go.load(Ordering::Acquire) == 0 {
        b.snooze(ctl)?;
    }
    Ok(())
}

/// One end of a queue under test, for one participant.
trait Lanes: Sync {
    /// A producer's handle.
    type Tx;
    /// A consumer's handle.
    type Rx;
    fn sender(&self) -> Result<Self::Tx, String>;
    fn receiver(&self) -> Result<Self::Rx, String>;
    /// True if sent, false if full.
    fn push(&self, tx: &Self::Tx, v: u64) -> Result<bool, String>;
    /// A value, or None if empty.
    fn pop(&self, rx: &Self::Rx) -> Result<Option<u64>, String>;
}

impl Lanes for Queue<u64> {
    type Tx = shmring::Sender<u64>;
    type Rx = shmring::Receiver<u64>;
    fn sender(&self) -> Result<Self::Tx, String> {
        Queue::sender(self).map_err(|e| format!("attaching a sender: {e}"))
    }
    fn receiver(&self) -> Result<Self::Rx, String> {
        Queue::receiver(self).map_err(|e| format!("attaching a receiver: {e}"))
    }
    #[inline(always)]
    fn push(&self, tx: &Self::Tx, v: u64) -> Result<bool, String> {
        match tx.try_send(v) {
            Ok(()) => Ok(true),
            Err(TrySendError::Full(_)) => Ok(false),
            Err(e) => Err(format!("try_send: {e}")),
        }
    }
    #[inline(always)]
    fn pop(&self, rx: &Self::Rx) -> Result<Option<u64>, String> {
        match rx.try_recv() {
            Ok(v) => Ok(Some(v)),
            // Disconnected: empty, and the producers that finished have
            // detached; the consumer's stop rule decides, as for Empty.
            Err(TryRecvError::Empty | TryRecvError::Disconnected) => Ok(None),
            Err(e) => Err(format!("try_recv: {e}")),
        }
    }
}

impl Lanes for ArrayQueue<u64> {
    type Tx = ();
    type Rx = ();
    fn sender(&self) -> Result<(), String> {
        Ok(())
    }
    fn receiver(&self) -> Result<(), String> {
        Ok(())
    }
    #[inline(always)]
    fn push(&self, _: &(), v: u64) -> Result<bool, String> {
        Ok(ArrayQueue::push(self, v).is_ok())
    }
    #[inline(always)]
    fn pop(&self, _: &()) -> Result<Option<u64>, String> {
        Ok(ArrayQueue::pop(self))
    }
}

/// Producer `p` of `producers`: sends `p, p + P, …` below `n`.
fn producer<Q: Lanes>(q: &Q, ctl: &Control, p: u32, producers: u32, n: u64) -> Result<(), String> {
    let tx = q.sender()?;
    ready_then_wait(ctl)?;
    let mut v = u64::from(p);
    let mut b = Backoff(0);
    while v < n {
        if q.push(&tx, v)? {
            v += u64::from(producers);
            b.0 = 0;
        } else {
            b.snooze(ctl)?;
        }
    }
    // Release: every send above happens-before a consumer's Acquire load
    // that sees the final count (its stop rule).
    ctl.done.fetch_add(1, Ordering::Release);
    Ok(())
}

/// Consumer `c`: receives until every producer is done and the queue is
/// then empty; writes its tally into `results[c]`.
fn consumer<Q: Lanes>(q: &Q, ctl: &Control, c: u32, producers: u32, n: u64) -> Result<(), String> {
    let rx = q.receiver()?;
    ready_then_wait(ctl)?;
    let mut t = Tally::default();
    let mut all_sent = false;
    let mut b = Backoff(0);
    loop {
        match q.pop(&rx)? {
            Some(v) => {
                if v >= n {
                    return Err(format!("received {v}, never sent (values are below {n})"));
                }
                t.add(v);
                b.0 = 0;
            }
            // Empty after every producer was seen done: every message
            // sent is taken (by this consumer or another).
            None if all_sent => break,
            None => {
                // Acquire: pairs with each producer's Release increment,
                // so the poll after this one sees all their messages.
                if ctl.done.load(Ordering::Acquire) == producers {
                    all_sent = true;
                } else {
                    b.snooze(ctl)?;
                }
            }
        }
    }
    let end = Deadline::now().as_nanos();
    let s = &ctl.results[c as usize];
    // Relaxed: published by the Release store of `filled` below.
    s.count.store(t.count, Ordering::Relaxed);
    s.sum.store(t.sum, Ordering::Relaxed);
    s.xor.store(t.xor, Ordering::Relaxed);
    s.hashes.store(t.hashes, Ordering::Relaxed);
    s.end_ns.store(end, Ordering::Relaxed);
    // Release: the fields above happen-before the collector's Acquire
    // load of `filled`.
    s.filled.store(1, Ordering::Release);
    Ok(())
}

/// Participant `i` (producers first): its role.
fn participate<Q: Lanes>(q: &Q, ctl: &Control, cell: Cell, i: u32, n: u64) -> Result<(), String> {
    let r = if i < cell.p {
        producer(q, ctl, i, cell.p, n)
    } else {
        consumer(q, ctl, i - cell.p, cell.p, n)
    };
    if r.is_err() {
        // Relaxed: a stop request only.
        ctl.abort.store(1, Ordering::Relaxed);
    }
    r
}

/// Waits (sleeping) until every participant is attached, then starts them.
/// `alive` is asked on each wake-up.
fn start(
    ctl: &Control,
    total: u32,
    mut alive: impl FnMut() -> Result<(), String>,
) -> Result<(), String> {
    // Acquire: pairs with each participant's Release increment.
    while ctl.ready.load(Ordering::Acquire) < total {
        // Relaxed: a stop request only.
        if ctl.abort.load(Ordering::Relaxed) != 0 {
            return Err("a participant failed before the start".into());
        }
        alive()?;
        std::thread::sleep(Duration::from_micros(200));
    }
    // Relaxed: published by the Release store of `go`.
    ctl.start_ns
        .store(Deadline::now().as_nanos(), Ordering::Relaxed);
    // Release: `start_ns` happens-before every participant's Acquire load
    // that sees `go`.
    ctl.go.store(1, Ordering::Release);
    Ok(())
}

/// The messages per second of a finished measurement, after checking the
/// consumers' tallies.
fn collect(ctl: &Control, cell: Cell, n: u64, want: &Tally) -> Result<f64, String> {
    let mut all = Tally::default();
    let mut end = 0u64;
    for s in &ctl.results[..cell.c as usize] {
        // Acquire: pairs with the consumer's Release store of `filled`.
        if s.filled.load(Ordering::Acquire) != 1 {
            return Err("a consumer left no result".into());
        }
        // Relaxed: ordered by the Acquire load of `filled` above.
        all.merge(&Tally {
            count: s.count.load(Ordering::Relaxed),
            sum: s.sum.load(Ordering::Relaxed),
            xor: s.xor.load(Ordering::Relaxed),
            hashes: s.hashes.load(Ordering::Relaxed),
        });
        // Relaxed: as above.
        end = end.max(s.end_ns.load(Ordering::Relaxed));
    }
    all.check(want)?;
    // Relaxed: written before `go`, which every consumer saw before
    // writing its result (and `filled` orders it for us).
    let start = ctl.start_ns.load(Ordering::Relaxed);
    let secs = end.saturating_sub(start).max(1) as f64 / 1e9;
    Ok(n as f64 / secs)
}

// ---------------------------------------------------------------------------
// One measurement

/// One cell of the grid.
#[derive(Clone, Copy, Debug)]
struct Cell {
    p: u32,
    c: u32,
}

/// Settings of the run.
struct Setup {
    n: u64,
    timeout: u64,
    wake: WakeMode,
    /// The CPUs participants are pinned to, in order, when there are enough.
    cpus: Vec<usize>,
    want: Tally,
}

impl Setup {
    fn pinned(&self, cell: Cell) -> bool {
        (cell.p + cell.c) as usize <= self.cpus.len()
    }

    fn cpu_of(&self, cell: Cell, i: u32) -> Option<usize> {
        self.pinned(cell).then(|| self.cpus[i as usize])
    }
}

/// Polls `children` (sleeping between polls) until all exited 0; the first
/// failure stops the others (`abort`, then their handles kill them).
fn reap_all(children: Vec<sys::ChildProc>, ctl: &Control, names: &[String]) -> Result<(), String> {
    let mut left: Vec<(usize, sys::ChildProc)> = children.into_iter().enumerate().collect();
    while !left.is_empty() {
        let mut i = 0;
        while i < left.len() {
            match left[i].1.poll_exit() {
                None => i += 1,
                Some(Ok(())) => {
                    left.swap_remove(i);
                }
                Some(Err(e)) => {
                    // Relaxed: a stop request only.
                    ctl.abort.store(1, Ordering::Relaxed);
                    return Err(format!("{}: {e}", names[left[i].0]));
                }
            }
        }
        if !left.is_empty() {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    Ok(())
}

fn new_control() -> Result<SharedMap<Control>, String> {
    // SAFETY: `Control` is atomics only (valid all-zero), aligned to 128
    // bytes, and shared through atomics only.
    unsafe { SharedMap::<Control>::new() }.map_err(|e| format!("mapping the shared page: {e}"))
}

/// The shmring queue of a cell: MPMC, anonymous, as many slots as
/// `ArrayQueue`'s.
fn new_queue(s: &Setup) -> Result<Queue<u64>, String> {
    Queue::<u64>::builder()
        .flavor(Flavor::Mpmc)
        .capacity(u64::from(floor::RING))
        .wake_mode(s.wake)
        .create_anonymous()
        .map_err(|e| format!("making the queue: {e}"))
}

/// `shm-mpmc`: P + C forked processes on one anonymous queue.
fn measure_processes(s: &Setup, cell: Cell, label: &str) -> Result<f64, String> {
    let ctl = new_control()?;
    let q = new_queue(s)?;
    let total = cell.p + cell.c;
    let mut children = Vec::new();
    let mut names = Vec::new();
    for i in 0..total {
        let name = if i < cell.p {
            format!("{label}: producer {i}")
        } else {
            format!("{label}: consumer {}", i - cell.p)
        };
        match sys::fork().map_err(|e| format!("fork: {e}"))? {
            Forked::Child => sys::child_main_on(&name, s.cpu_of(cell, i), s.timeout, |_| {
                participate(&q, &ctl, cell, i, s.n)
            }),
            Forked::Parent(child) => {
                children.push(child);
                names.push(name);
            }
        }
    }
    let started = start(&ctl, total, || {
        for (ch, name) in children.iter().zip(&names) {
            if let Some(r) = ch.poll_exit() {
                return Err(format!(
                    "{name}: ended before the start ({})",
                    r.err().unwrap_or_else(|| "exit status 0".into())
                ));
            }
        }
        Ok(())
    });
    if let Err(e) = started {
        // Relaxed: a stop request only.
        ctl.abort.store(1, Ordering::Relaxed);
        return Err(e);
    }
    reap_all(children, &ctl, &names)?;
    collect(&ctl, cell, s.n, &s.want)
}

/// The thread rows: one forked child runs P + C threads.
fn measure_threads(s: &Setup, cell: Cell, variant: Variant, label: &str) -> Result<f64, String> {
    let ctl = new_control()?;
    match sys::fork().map_err(|e| format!("fork: {e}"))? {
        Forked::Child => sys::child_main_on(label, None, s.timeout, |_| match variant {
            Variant::ArrayQueue => {
                let q = ArrayQueue::<u64>::new(floor::RING as usize);
                run_threads(&q, &ctl, s, cell)
            }
            Variant::ShmThreads | Variant::ShmProcesses => {
                let q = new_queue(s)?;
                run_threads(&q, &ctl, s, cell)
            }
        }),
        Forked::Parent(child) => {
            reap_all(vec![child], &ctl, &[label.to_string()])?;
            collect(&ctl, cell, s.n, &s.want)
        }
    }
}

/// In the thread rows' child: P + C threads on `q`, started together.
fn run_threads<Q: Lanes>(q: &Q, ctl: &Control, s: &Setup, cell: Cell) -> Result<(), String> {
    let total = cell.p + cell.c;
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..total)
            .map(|i| {
                let cpu = s.cpu_of(cell, i);
                scope.spawn(move || {
                    if let Some(cpu) = cpu {
                        if let Err(e) = sys::pin(cpu) {
                            // Relaxed: a stop request only.
                            ctl.abort.store(1, Ordering::Relaxed);
                            return Err(format!("pinning a thread to CPU {cpu}: {e}"));
                        }
                    }
                    participate(q, ctl, cell, i, s.n)
                })
            })
            .collect();
        let started = start(ctl, total, || Ok(()));
        if started.is_err() {
            // Relaxed: a stop request only.
            ctl.abort.store(1, Ordering::Relaxed);
        }
        let mut first_err = started.err();
        for h in handles {
            let r = h
                .join()
                .unwrap_or_else(|_| Err("a participant thread panicked".into()));
            if let (Err(e), None) = (r, &first_err) {
                first_err = Some(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    })
}

// ---------------------------------------------------------------------------
// The run and its report

/// Each variant's rate per round, for one cell.
struct CellResult {
    cell: Cell,
    pinned: bool,
    /// [variant][round]: messages per second.
    rates: [Vec<f64>; 3],
}

impl CellResult {
    fn median(&self, v: usize) -> f64 {
        Spread::of(&self.rates[v]).map_or(0.0, |s| s.median)
    }

    /// Per round: variant `a`'s rate over variant `b`'s.
    fn ratios(&self, a: usize, b: usize) -> Vec<f64> {
        self.rates[a]
            .iter()
            .zip(&self.rates[b])
            .map(|(x, y)| x / y)
            .collect()
    }
}

fn ratio_text(v: &[f64]) -> String {
    match Spread::of(v) {
        Some(s) if v.len() > 1 => format!("{:.2} ({:.2}–{:.2})", s.median, s.min, s.max),
        Some(s) => format!("{:.2}", s.median),
        None => "-".into(),
    }
}

fn spread_json(v: &[f64]) -> String {
    match Spread::of(v) {
        Some(s) => format!(
            "{{\"median\":{:.4},\"min\":{:.4},\"max\":{:.4}}}",
            s.median, s.min, s.max
        ),
        None => "null".into(),
    }
}

/// A cell's `--json` line.
fn json_line(r: &CellResult, n: u64, repeat: u32) -> String {
    let shm = r.ratios(0, 1);
    let thr = r.ratios(2, 1);
    let mut line = format!(
        "{{\"scaling\":true,\"producers\":{},\"consumers\":{},\"pinned\":{},\"messages\":{n},\
         \"shm_mpmc_msgs_per_s\":{:.1},\"arrayqueue_msgs_per_s\":{:.1},\
         \"shm_mpmc_threads_msgs_per_s\":{:.1},\"shm_over_arrayqueue\":{:.4},\
         \"threads_over_arrayqueue\":{:.4},\"exactly_once\":true",
        r.cell.p,
        r.cell.c,
        r.pinned,
        r.median(0),
        r.median(1),
        r.median(2),
        Spread::of(&shm).map_or(0.0, |s| s.median),
        Spread::of(&thr).map_or(0.0, |s| s.median),
    );
    if repeat > 1 {
        let rounds: Vec<String> = (0..r.rates[0].len())
            .map(|i| {
                format!(
                    "{{\"round\":{i},\"shm_mpmc_msgs_per_s\":{:.1},\"arrayqueue_msgs_per_s\":{:.1},\
                     \"shm_mpmc_threads_msgs_per_s\":{:.1},\"shm_over_arrayqueue\":{:.4},\
                     \"threads_over_arrayqueue\":{:.4}}}",
                    r.rates[0][i], r.rates[1][i], r.rates[2][i], shm[i], thr[i]
                )
            })
            .collect();
        line.push_str(&format!(
            ",\"rounds\":[{}],\"spread\":{{\"shm_mpmc_msgs_per_s\":{},\
             \"arrayqueue_msgs_per_s\":{},\"shm_mpmc_threads_msgs_per_s\":{},\
             \"shm_over_arrayqueue\":{},\"threads_over_arrayqueue\":{}}}",
            rounds.join(","),
            spread_json(&r.rates[0]),
            spread_json(&r.rates[1]),
            spread_json(&r.rates[2]),
            spread_json(&shm),
            spread_json(&thr),
        ));
    }
    line.push('}');
    line
}

/// The table of the grid.
fn table(results: &[CellResult]) -> String {
    let head = [
        "P",
        "C",
        "pinned",
        "shm-mpmc",
        "arrayqueue",
        "shm ÷ arrayqueue",
        "shm-mpmc-threads",
        "threads ÷ arrayqueue",
    ];
    let rows: Vec<[String; 8]> = results
        .iter()
        .map(|r| {
            [
                r.cell.p.to_string(),
                r.cell.c.to_string(),
                if r.pinned { "yes" } else { "no" }.to_string(),
                report::human_rate(r.median(0)),
                report::human_rate(r.median(1)),
                ratio_text(&r.ratios(0, 1)),
                report::human_rate(r.median(2)),
                ratio_text(&r.ratios(2, 1)),
            ]
        })
        .collect();
    let width = |i: usize| {
        rows.iter()
            .map(|r| r[i].chars().count())
            .chain([head[i].chars().count()])
            .max()
            .unwrap_or(0)
    };
    let widths: Vec<usize> = (0..head.len()).map(width).collect();
    // Numbers right-aligned, the `pinned` word left-aligned.
    let line = |cells: &[&str]| report::columns(cells, &widths, |i| i == 2);
    let mut out = line(&head);
    out.push('\n');
    for r in &rows {
        let cells: Vec<&str> = r.iter().map(String::as_str).collect();
        out.push_str(&line(&cells));
        out.push('\n');
    }
    out
}

/// The grid of `list` × `list`: P outer, C inner.
fn grid(list: &[u32]) -> Vec<Cell> {
    let mut l = list.to_vec();
    l.sort_unstable();
    l.dedup();
    l.iter()
        .flat_map(|&p| l.iter().map(move |&c| Cell { p, c }))
        .collect()
}

/// `shmring bench --scaling LIST`.
pub fn run(args: &BenchArgs, list: &[u32]) -> Result<(), Failure> {
    let cpus = sys::allowed_cpus()
        .map_err(|e| Failure::Run(format!("reading this process's CPU affinity: {e}")))?;
    let n = args.iterations.unwrap_or(if args.quick {
        DEFAULT_MESSAGES / 10
    } else {
        DEFAULT_MESSAGES
    });
    let cells = grid(list);
    let setup = Setup {
        n,
        timeout: args.timeout,
        wake: if args.strict {
            WakeMode::Strict
        } else {
            WakeMode::Fast
        },
        want: Tally::of_range(n),
        cpus,
    };
    let repeat = args.repeat;
    sys::install_watchdog().map_err(|e| Failure::Run(format!("installing the watchdog: {e}")))?;

    let jobs = cells.len() as u64 * u64::from(repeat) * VARIANTS.len() as u64;
    let bar = if args.json || !std::io::stderr().is_terminal() {
        ProgressBar::hidden()
    } else {
        // No steady tick: that would start a thread, and participants are
        // forked.
        let b = ProgressBar::with_draw_target(Some(jobs), ProgressDrawTarget::stderr());
        b.set_style(
            ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {elapsed} {msg}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        b.set_prefix("shmring bench --scaling");
        b
    };
    let started = Instant::now();
    let mut results = Vec::new();
    let stdout = std::io::stdout();
    for &cell in &cells {
        let mut r = CellResult {
            cell,
            pinned: setup.pinned(cell),
            rates: [Vec::new(), Vec::new(), Vec::new()],
        };
        for round in 0..repeat {
            for (v, variant) in VARIANTS.iter().enumerate() {
                let label = format!(
                    "{} {}P×{}C{}",
                    variant.name(),
                    cell.p,
                    cell.c,
                    if repeat > 1 {
                        format!(" (round {})", round + 1)
                    } else {
                        String::new()
                    }
                );
                bar.set_message(label.clone());
                sys::set_label(&label);
                sys::alarm(setup.timeout);
                let got = match variant {
                    Variant::ShmProcesses => measure_processes(&setup, cell, &label),
                    _ => measure_threads(&setup, cell, *variant, &label),
                };
                sys::alarm(0);
                match got {
                    Ok(rate) => r.rates[v].push(rate),
                    Err(e) => {
                        bar.abandon();
                        return Err(Failure::Run(format!("{label}: {e}")));
                    }
                }
                bar.inc(1);
            }
        }
        if args.json {
            let mut out = stdout.lock();
            let _ = writeln!(out, "{}", json_line(&r, n, repeat));
            let _ = out.flush();
        }
        results.push(r);
    }
    bar.finish_and_clear();
    let mut notes = vec![format!(
        "exactly-once: every run's {n} messages (0..{n}) were each received once \
         (count, sum, xor and a sum of hashes checked)"
    )];
    let list = report::cpu_list(&setup.cpus);
    if results.iter().any(|r| !r.pinned) {
        notes.push(format!(
            "pinned no: P + C > the {} CPUs this process may use ({list}): those cells run \
             unpinned and oversubscribed (spin, then sched_yield), so they are not scaling \
             figures",
            setup.cpus.len()
        ));
    }
    if results.iter().any(|r| r.pinned) {
        notes.push(format!(
            "pinned yes: producers, then consumers, each on its own CPU of {list} in order"
        ));
    }
    notes.push(format!(
        "shm-mpmc: WakeMode::{} (spin mode: try_send/try_recv loops)",
        if args.strict { "Strict" } else { "Fast" }
    ));
    if args.json {
        for note in &notes {
            eprintln!("note: {note}");
        }
        return Ok(());
    }
    println!(
        "MPMC scaling: {n} messages of 8 bytes per cell, queues of {} slots, spin{}",
        floor::RING,
        if repeat > 1 {
            format!("; medians of {repeat} rounds, ratios as median (min–max) of per-round ratios")
        } else {
            String::new()
        }
    );
    println!("{}", table(&results));
    for note in &notes {
        println!("note: {note}");
    }
    println!(
        "{} measurements in {:.1} s",
        jobs,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{grid, Tally};

    fn tally(values: impl IntoIterator<Item = u64>) -> Tally {
        let mut t = Tally::default();
        for v in values {
            t.add(v);
        }
        t
    }

    #[test]
    fn the_range_passes_in_any_order_and_split_among_consumers() {
        let n = 1000;
        let want = Tally::of_range(n);
        assert_eq!(tally(0..n), want);
        assert_eq!(tally((0..n).rev()), want);
        // Three consumers, interleaved shares, merged.
        let mut all = Tally::default();
        for c in 0..3 {
            all.merge(&tally((0..n).filter(|v| v % 3 == c)));
        }
        assert!(all.check(&want).is_ok());
        for n in 0..9 {
            assert_eq!(tally(0..n), Tally::of_range(n), "n = {n}");
        }
    }

    #[test]
    fn a_lost_message_is_rejected() {
        let want = Tally::of_range(100);
        let e = tally((0..100).filter(|&v| v != 42))
            .check(&want)
            .unwrap_err();
        assert!(e.contains("99 of 100") && e.contains("1 lost"), "{e}");
    }

    #[test]
    fn a_duplicated_message_is_rejected() {
        let want = Tally::of_range(100);
        let e = tally((0..100).chain([7])).check(&want).unwrap_err();
        assert!(e.contains("1 duplicated"), "{e}");
    }

    #[test]
    fn a_loss_hidden_by_a_duplicate_is_rejected() {
        let want = Tally::of_range(100);
        // Same count.
        let e = tally((0..100).map(|v| if v == 10 { 11 } else { v }))
            .check(&want)
            .unwrap_err();
        assert!(e.contains("not 0..100 once each"), "{e}");
        // Same count and sum (1 and 5 lost, 3 twice); then the same count,
        // sum and xor (0 and 3 lost, 1 and 2 twice: 0 + 3 = 1 + 2 and
        // 0 ^ 3 = 1 ^ 2): only the hashes tell.
        for (lost, twice) in [([1, 5], [3, 3]), ([0, 3], [1, 2])] {
            let t = tally((0..100u64).filter(|v| !lost.contains(v)).chain(twice));
            assert_eq!((t.count, t.sum), (want.count, want.sum));
            let e = t.check(&want).unwrap_err();
            assert!(e.contains("not 0..100 once each"), "{e}");
        }
        let t = tally((0..100u64).filter(|v| ![0, 3].contains(v)).chain([1, 2]));
        assert_eq!(t.xor, want.xor);
    }

    #[test]
    fn the_grid_is_every_pair_once() {
        let g: Vec<(u32, u32)> = grid(&[2, 1, 2]).iter().map(|c| (c.p, c.c)).collect();
        assert_eq!(g, [(1, 1), (1, 2), (2, 1), (2, 2)]);
    }
}
