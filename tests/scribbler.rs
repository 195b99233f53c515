//! The scribbler: another process writes random bytes over a live segment
//! (header, indices, stamps, lengths, futex words, peer bitmaps, the
//! endpoint table, intents, slots, payloads) while a victim process sends
//! and receives on it with timed calls. The victim must only ever see `Ok`
//! or a typed error (`Corrupted`, `Full` / `Empty` / `Timeout`,
//! `Disconnected`, and `TooLarge` for its own oversize sends): no panic, no
//! out-of-bounds access (a signal), and no call that runs past its timeout
//! (a hang; see `docs/security.md`).
//!
//! Each case is three processes: the parent creates the named segment and
//! checks both children's exit statuses; `child_victim` opens it, checks
//! that it works, signals that it is ready, then runs worker threads of
//! timed calls for [`DURATION`] while a monitor thread watches every call in
//! flight; `child_scribbler` writes the file with `pwrite` for as long,
//! either anywhere (`whole`) or only the hot words with plausible values
//! (`hot`: head, tail, stamps, lengths, futex `seq` / `waiters`, bitmaps,
//! endpoint entries, intents), now and then "healing" the ring into a
//! consistent state so that the victim also gets through its success paths.
//!
//! The scribbling is random from a seed that every failure prints; set
//! `SHMRING_SCRIBBLE_SEED` to replay one (timing still varies), and
//! `SHMRING_SCRIBBLE_MS` to scribble longer than [`DURATION`] per case.
#![cfg(not(loom))]

mod common;

use common::{child_main, run, spawn_child, wait_ok, Args, Ctx, Rng};
use shmring::{
    Barrier, ByteQueue, ByteSendError, Condition, Event, Flavor, Lock, LockTimeoutError, Queue,
    RLock, Semaphore, Shared, ShmSafe, TryLockError, Value,
};
use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How long the victim works, and the scribbler scribbles, per case
/// (`SHMRING_SCRIBBLE_MS` overrides it).
const DURATION: Duration = Duration::from_millis(1500);

/// How far past its own timeout a call may return before it counts as a
/// hang: generous, since two cores run the victim's threads, the
/// scribbler, and another test's processes at once.
const SLACK: Duration = Duration::from_secs(5);

/// SPSC capacity (8 slots) and MPMC capacity (6 slots, laps of 8: a
/// capacity that is not a power of two exercises the stamp encoding).
const SPSC_CAP: u64 = 8;
const MPMC_CAP: u64 = 6;

/// Byte queues' maximum message size (payload stride 128).
const MSG_MAX: u64 = 100;

/// The timeouts the victim's timed calls draw from (25 ms: longer than a
/// liveness slice, so that sleepers also run the reaper).
const TIMEOUTS: [Duration; 5] = [
    Duration::ZERO,
    Duration::from_micros(100),
    Duration::from_millis(1),
    Duration::from_millis(5),
    Duration::from_millis(25),
];

// ---------------------------------------------------------------------------
// What is scribbled on
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    QueueSpsc,
    QueueMpmc,
    BytesSpsc,
    BytesMpmc,
    /// A `Shared` struct of every primitive.
    Sync,
    /// A `Value<u64>` (its lock and the value).
    Value,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::QueueSpsc => "q-spsc",
            Target::QueueMpmc => "q-mpmc",
            Target::BytesSpsc => "b-spsc",
            Target::BytesMpmc => "b-mpmc",
            Target::Sync => "sync",
            Target::Value => "value",
        }
    }

    fn parse(s: &str) -> Target {
        [
            Target::QueueSpsc,
            Target::QueueMpmc,
            Target::BytesSpsc,
            Target::BytesMpmc,
            Target::Sync,
            Target::Value,
        ]
        .into_iter()
        .find(|t| t.name() == s)
        .unwrap_or_else(|| panic!("unknown target {s:?}"))
    }

    fn flavor(self) -> Flavor {
        match self {
            Target::QueueMpmc | Target::BytesMpmc => Flavor::Mpmc,
            _ => Flavor::Spsc,
        }
    }

    fn capacity(self) -> u64 {
        match self.flavor() {
            Flavor::Spsc => SPSC_CAP,
            Flavor::Mpmc => MPMC_CAP,
        }
    }

    fn is_queue(self) -> bool {
        !matches!(self, Target::Sync | Target::Value)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Random bytes at random offsets anywhere in the file.
    Whole,
    /// Plausible values in the hot words only.
    Hot,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Whole => "whole",
            Mode::Hot => "hot",
        }
    }

    fn parse(s: &str) -> Mode {
        match s {
            "whole" => Mode::Whole,
            "hot" => Mode::Hot,
            _ => panic!("unknown mode {s:?}"),
        }
    }
}

/// Every primitive in one shared struct.
#[repr(C)]
struct SyncSet {
    lock: Lock,
    rlock: RLock,
    cond: Condition,
    event: Event,
    sem: Semaphore,
    barrier: Barrier,
    counter: AtomicU64,
}

// SAFETY: repr(C); shmring primitives and an atomic only: no pointers, and
// every bit pattern is a valid value of each field.
unsafe impl ShmSafe for SyncSet {}

fn sync_set() -> SyncSet {
    SyncSet {
        lock: Lock::new(),
        rlock: RLock::new(),
        cond: Condition::new(),
        event: Event::new(),
        sem: Semaphore::bounded(2),
        barrier: Barrier::new(2),
        counter: AtomicU64::new(0),
    }
}

/// The creating handle the parent keeps while the children run.
enum Held {
    Queue(Queue<u64>),
    Bytes(ByteQueue),
    Sync(Shared<SyncSet>),
    Value(Value<u64>),
}

fn create(target: Target, name: &str) -> Held {
    match target {
        Target::QueueSpsc | Target::QueueMpmc => {
            Held::Queue(Queue::<u64>::create(name, target.flavor(), target.capacity()).unwrap())
        }
        Target::BytesSpsc | Target::BytesMpmc => Held::Bytes(
            ByteQueue::create(name, target.flavor(), target.capacity(), MSG_MAX).unwrap(),
        ),
        Target::Sync => Held::Sync(Shared::create(name, sync_set()).unwrap()),
        Target::Value => Held::Value(Value::<u64>::create(name, 0).unwrap()),
    }
}

fn seed_for(test: &str) -> u64 {
    if let Some(s) = std::env::var("SHMRING_SCRIBBLE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        return s;
    }
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for b in test.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
    }
    t ^ h ^ ((std::process::id() as u64) << 32)
}

// ---------------------------------------------------------------------------
// The parent
// ---------------------------------------------------------------------------

fn scribble_case(ctx: &Ctx, target: Target, mode: Mode) {
    let seed = seed_for(ctx.test());
    eprintln!(
        "{}: target {} mode {} seed {seed}",
        ctx.test(),
        target.name(),
        mode.name()
    );
    let name = ctx.name("seg");
    let held = create(target, &name);
    let dir = tempfile::tempdir().unwrap();
    let ready = dir.path().join("ready");
    let dir_arg = dir.path().to_str().unwrap().to_string();
    let seed_arg = seed.to_string();
    let ms = std::env::var("SHMRING_SCRIBBLE_MS")
        .ok()
        .and_then(|m| m.parse::<u64>().ok())
        .unwrap_or(DURATION.as_millis() as u64)
        .to_string();
    let mut victim = spawn_child(
        "child_victim",
        &[target.name(), &name, &seed_arg, &dir_arg, &ms],
    );
    // The scribbler starts once the victim has opened the segment and seen
    // it work (it would otherwise only ever meet a scribbled header).
    while !ready.exists() {
        if victim.try_wait().expect("try_wait").is_some() {
            wait_ok(&mut victim);
            panic!("the victim exited before it was ready (seed {seed})");
        }
        thread::sleep(Duration::from_millis(2));
    }
    let mut scribbler = spawn_child(
        "child_scribbler",
        &[target.name(), mode.name(), &name, &seed_arg, &ms],
    );
    wait_ok(&mut scribbler);
    wait_ok(&mut victim);
    let stats = std::fs::read_to_string(dir.path().join("stats")).unwrap_or_default();
    eprintln!("{}: seed {seed}: {stats}", ctx.test());
    let calls: u64 = stats
        .split_whitespace()
        .skip_while(|w| *w != "calls")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(
        calls > 0,
        "the victim made no calls (seed {seed}): {stats:?}"
    );
    after_the_fact(&held, seed);
    drop(held);
}

/// The parent, a third process, on what the scribbler left: the victim's
/// endpoints are dead now (reaped), and every call is `Ok` or typed.
fn after_the_fact(held: &Held, seed: u64) {
    let t = Duration::from_millis(1);
    match held {
        Held::Queue(q) => {
            assert!(q.len() <= q.capacity(), "seed {seed}");
            q.reap_dead();
            let _ = (q.endpoints(), q.lost(), q.reaped());
            if let (Ok(tx), Ok(rx)) = (q.sender(), q.receiver()) {
                let _ = (tx.try_send(1), tx.send_timeout(2, t));
                let _ = (rx.try_recv(), rx.recv_timeout(t));
            }
        }
        Held::Bytes(q) => {
            assert!(q.len() <= q.capacity(), "seed {seed}");
            q.reap_dead();
            let _ = (q.endpoints(), q.lost());
            if let (Ok(tx), Ok(rx)) = (q.sender(), q.receiver()) {
                let _ = (tx.try_send(b"x"), tx.send_timeout(b"y", t));
                if let Ok(m) = rx.recv_timeout(t) {
                    assert!(m.len() <= MSG_MAX as usize, "seed {seed}");
                }
            }
        }
        Held::Sync(s) => {
            drop(s.lock.lock_timeout(t));
            let _ = (s.sem.try_acquire(), s.barrier.wait_timeout(t));
        }
        Held::Value(v) => {
            drop(v.lock_timeout(t));
            let _ = v.fetch_add(1);
        }
    }
}

macro_rules! scribble_tests {
    ($($test:ident: $target:ident, $mode:ident;)*) => { $(
        #[test]
        fn $test() {
            run(stringify!($test), |ctx| {
                scribble_case(ctx, Target::$target, Mode::$mode)
            });
        }
    )* };
}

scribble_tests! {
    scribble_queue_spsc_whole: QueueSpsc, Whole;
    scribble_queue_spsc_hot: QueueSpsc, Hot;
    scribble_queue_mpmc_whole: QueueMpmc, Whole;
    scribble_queue_mpmc_hot: QueueMpmc, Hot;
    scribble_bytes_spsc_whole: BytesSpsc, Whole;
    scribble_bytes_spsc_hot: BytesSpsc, Hot;
    scribble_bytes_mpmc_whole: BytesMpmc, Whole;
    scribble_bytes_mpmc_hot: BytesMpmc, Hot;
    scribble_sync_whole: Sync, Whole;
    scribble_value_whole: Value, Whole;
}

// ---------------------------------------------------------------------------
// The victim: every call timed and watched
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
struct Call {
    what: &'static str,
    since: Instant,
    limit: Duration,
}

/// One worker's call in flight, watched by the monitor thread.
#[derive(Default)]
struct Slot(Mutex<Option<Call>>);

/// Marks a call in flight; on drop, checks that it returned in time.
struct InFlight<'a>(&'a Slot);

impl Slot {
    fn enter(&self, what: &'static str, limit: Duration) -> InFlight<'_> {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(Call {
            what,
            since: Instant::now(),
            limit,
        });
        InFlight(self)
    }

    fn current(&self) -> Option<Call> {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let call = self.0 .0.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(c) = call {
            let took = c.since.elapsed();
            if took > c.limit + SLACK && !thread::panicking() {
                panic!(
                    "victim: `{}` took {took:?}, past its timeout of {:?}",
                    c.what, c.limit
                );
            }
        }
    }
}

/// Times `f` as the call `what` with timeout `limit`.
fn timed<R>(slot: &Slot, what: &'static str, limit: Duration, f: impl FnOnce() -> R) -> R {
    let _in_flight = slot.enter(what, limit);
    f()
}

#[derive(Default)]
struct Stats {
    calls: AtomicU64,
    ok: AtomicU64,
    corrupted: AtomicU64,
    disconnected: AtomicU64,
    /// Full, Empty, Timeout, WouldBlock, false from a timed wait.
    soft: AtomicU64,
    too_large: AtomicU64,
    attach_err: AtomicU64,
    role_taken: AtomicU64,
    reopen_ok: AtomicU64,
    reopen_err: AtomicU64,
}

impl Stats {
    fn add(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a result by its error's name (every error here is typed: the
    /// compiler already says so; this only tells the report what happened).
    fn note<T, E: Debug>(&self, r: &Result<T, E>) {
        Self::add(&self.calls);
        match r {
            Ok(_) => Self::add(&self.ok),
            Err(e) => {
                let s = format!("{e:?}");
                if s.contains("Corrupted") {
                    Self::add(&self.corrupted)
                } else if s.contains("Disconnected") {
                    Self::add(&self.disconnected)
                } else if s.contains("TooLarge") {
                    Self::add(&self.too_large)
                } else {
                    Self::add(&self.soft)
                }
            }
        }
    }

    fn attach_failed(&self, e: &shmring::SegmentError) {
        Self::add(&self.attach_err);
        if matches!(e, shmring::SegmentError::RoleTaken { .. }) {
            Self::add(&self.role_taken);
        }
    }

    fn note_bool(&self, ok: bool) {
        Self::add(&self.calls);
        Self::add(if ok { &self.ok } else { &self.soft });
    }

    fn report(&self) -> String {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        format!(
            "calls {} ok {} corrupted {} disconnected {} full/empty/timeout {} too_large {} \
             attach_err {} (role taken {}) reopen ok {} err {}",
            g(&self.calls),
            g(&self.ok),
            g(&self.corrupted),
            g(&self.disconnected),
            g(&self.soft),
            g(&self.too_large),
            g(&self.attach_err),
            g(&self.role_taken),
            g(&self.reopen_ok),
            g(&self.reopen_err),
        )
    }
}

/// What every worker shares.
struct Env<'a> {
    stats: &'a Stats,
    end: Instant,
    seed: u64,
    name: &'a str,
}

impl Env<'_> {
    fn rng(&self, worker: u64) -> Rng {
        Rng::new(self.seed ^ (worker + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15))
    }

    fn running(&self) -> bool {
        Instant::now() < self.end
    }
}

fn pick_timeout(rng: &mut Rng) -> Duration {
    TIMEOUTS[rng.range(0, TIMEOUTS.len() as u64 - 1) as usize]
}

#[test]
#[ignore = "child process entry point"]
fn child_victim() {
    child_main("child_victim", |a: Args| {
        let target = Target::parse(a.str(0));
        let name = a.str(1).to_string();
        let seed: u64 = a.get(2);
        let dir = PathBuf::from(a.str(3));
        let duration = Duration::from_millis(a.get(4));
        victim(target, &name, seed, &dir, duration);
    });
}

fn victim(target: Target, name: &str, seed: u64, dir: &Path, duration: Duration) {
    eprintln!("victim: {} on {name}, seed {seed}", target.name());
    let stats = Stats::default();
    let workers = match target.flavor() {
        Flavor::Spsc => 2,
        Flavor::Mpmc => 4,
    };
    // One slot per worker, and one for the victim's main thread.
    let slots: Vec<Arc<Slot>> = (0..=workers).map(|_| Arc::default()).collect();
    let done = Arc::new(AtomicBool::new(false));
    let monitor = {
        let slots = slots.clone();
        let done = done.clone();
        let give_up = Instant::now() + duration + SLACK * 4;
        thread::spawn(move || monitor(&slots, &done, seed, give_up))
    };
    let open = || -> Result<(), String> {
        match target {
            Target::QueueSpsc | Target::QueueMpmc => Queue::<u64>::open(name).map(|_| ()),
            Target::BytesSpsc | Target::BytesMpmc => ByteQueue::open(name).map(|_| ()),
            Target::Sync => Shared::<SyncSet>::open(name).map(|_| ()),
            Target::Value => Value::<u64>::open(name).map(|_| ()),
        }
        .map_err(|e| e.to_string())
    };
    open().expect("the victim opens the intact segment");
    let ready = |end: Instant| {
        std::fs::write(dir.join("ready"), b"ready").unwrap();
        Env {
            stats: &stats,
            end,
            seed,
            name,
        }
    };
    match target {
        Target::QueueSpsc | Target::QueueMpmc => {
            let q = Queue::<u64>::open(name).unwrap();
            {
                let (tx, rx) = (q.sender().unwrap(), q.receiver().unwrap());
                for i in 0..3 {
                    tx.send(i).unwrap();
                    assert_eq!(rx.recv(), Ok(i));
                }
            }
            let env = ready(Instant::now() + duration);
            thread::scope(|s| {
                for (w, slot) in slots[..workers].iter().enumerate() {
                    let (q, env, slot) = (&q, &env, &**slot);
                    s.spawn(move || {
                        if w % 2 == 0 {
                            queue_producer(q, env, slot, w as u64)
                        } else {
                            queue_consumer(q, env, slot, w as u64)
                        }
                    });
                }
                main_checks(target, &env, &slots[workers], || {
                    note_len(&env, q.len(), q.capacity());
                    let _ = (q.endpoints(), q.lost(), q.reaped());
                    q.reap_dead();
                });
            });
        }
        Target::BytesSpsc | Target::BytesMpmc => {
            let q = ByteQueue::open(name).unwrap();
            {
                let (tx, rx) = (q.sender().unwrap(), q.receiver().unwrap());
                tx.send(b"before the scribbler").unwrap();
                assert_eq!(rx.recv().unwrap(), b"before the scribbler");
            }
            let env = ready(Instant::now() + duration);
            thread::scope(|s| {
                for (w, slot) in slots[..workers].iter().enumerate() {
                    let (q, env, slot) = (&q, &env, &**slot);
                    s.spawn(move || {
                        if w % 2 == 0 {
                            bytes_producer(q, env, slot, w as u64)
                        } else {
                            bytes_consumer(q, env, slot, w as u64)
                        }
                    });
                }
                main_checks(target, &env, &slots[workers], || {
                    note_len(&env, q.len(), q.capacity());
                    let _ = (q.endpoints(), q.lost());
                    q.reap_dead();
                });
            });
        }
        Target::Sync => {
            let set = Shared::<SyncSet>::open(name).unwrap();
            drop(set.lock.lock_timeout(Duration::from_secs(5)).unwrap());
            // The lock's owner word: the first field of the value, at the
            // slots offset, read before the scribbler starts.
            let path = set.path().unwrap();
            let mut h = [0u8; 256];
            File::open(&path).unwrap().read_exact_at(&mut h, 0).unwrap();
            let owner = Some((path.as_path(), u64_at(&h, 96)));
            let env = ready(Instant::now() + duration);
            thread::scope(|s| {
                for (w, slot) in slots[..workers].iter().enumerate() {
                    let (set, env, slot) = (&set, &env, &**slot);
                    s.spawn(move || sync_worker(set, env, slot, w as u64));
                }
                let workers = &slots[..workers];
                main_checks(target, &env, &slots[workers.len()], || {
                    let _ = (set.lock.is_locked(), set.rlock.depth(), set.sem.value());
                    let _ = (set.barrier.n_waiting(), set.barrier.parties());
                    release_a_forged_holder(owner, &set.lock, workers);
                });
                // A worker may still wait behind a holder forged just
                // before the end: release it too, until every worker is out
                // of its condition wait (the monitor bounds this).
                while workers
                    .iter()
                    .any(|w| w.current().is_some_and(|c| c.what == "cond.wait_timeout"))
                {
                    release_a_forged_holder(owner, &set.lock, workers);
                    thread::sleep(Duration::from_millis(10));
                }
            });
        }
        Target::Value => {
            let v = Value::<u64>::open(name).unwrap();
            v.store(1);
            assert_eq!(v.load(), 1);
            let env = ready(Instant::now() + duration);
            thread::scope(|s| {
                for (w, slot) in slots[..workers].iter().enumerate() {
                    let (v, env, slot) = (&v, &env, &**slot);
                    s.spawn(move || value_worker(v, env, slot, w as u64));
                }
                main_checks(target, &env, &slots[workers], || {
                    let _ = (v.load(), v.get_lock().is_locked());
                });
            });
        }
    }
    done.store(true, Ordering::Relaxed);
    monitor.join().unwrap();
    let report = stats.report();
    eprintln!("victim: {report}");
    std::fs::write(dir.join("stats"), report).unwrap();
}

/// `Condition::wait_timeout` takes the lock back however long that takes,
/// as Python's does: a live thread holding the lock delays its return (its
/// rustdoc says so). A scribble can make the lock's owner word name a live
/// thread of this process that does not hold it (a few bytes of a worker's
/// own identity changed into a sibling's: threads started in the same clock
/// tick differ only in their tid), and that forged holder never releases.
/// When a worker has been back in its condition wait for well past its
/// timeout while the lock reads as held, this plays the holder's release:
/// it zeroes the owner word, as a real holder's unlock would. The worker
/// then returns; a wait that stays stuck with the lock free is still the
/// monitor's hang.
fn release_a_forged_holder(owner: Option<(&Path, u64)>, lock: &Lock, workers: &[Arc<Slot>]) {
    let stuck = workers.iter().any(|w| {
        w.current().is_some_and(|c| {
            c.what == "cond.wait_timeout" && c.since.elapsed() > c.limit + SLACK / 2
        })
    });
    let Some((path, off)) = owner.filter(|_| stuck && lock.is_locked()) else {
        return;
    };
    if let Ok(f) = OpenOptions::new().write(true).open(path) {
        eprintln!(
            "victim: a condition wait behind a forged holder: releasing the lock's owner word"
        );
        let _ = f.write_all_at(&0u64.to_le_bytes(), off);
    }
}

/// Fails the victim (exit status 3) as soon as one call has been in flight
/// for longer than its timeout plus [`SLACK`]: the call hangs, so it would
/// never return to be checked by [`InFlight`].
fn monitor(slots: &[Arc<Slot>], done: &AtomicBool, seed: u64, give_up: Instant) {
    while !done.load(Ordering::Relaxed) {
        for (i, slot) in slots.iter().enumerate() {
            if let Some(c) = slot.current() {
                let took = c.since.elapsed();
                if took > c.limit + SLACK {
                    eprintln!(
                        "victim: HANG: worker {i}'s `{}` has run for {took:?}, past its \
                         timeout of {:?} (seed {seed})",
                        c.what, c.limit
                    );
                    std::process::exit(3);
                }
            }
        }
        if Instant::now() > give_up {
            eprintln!("victim: HANG: still running long after its deadline (seed {seed})");
            std::process::exit(3);
        }
        thread::sleep(Duration::from_millis(20));
    }
}

fn note_len(env: &Env<'_>, len: usize, cap: usize) {
    assert!(
        len <= cap,
        "len {len} beyond the capacity {cap} (seed {})",
        env.seed
    );
}

/// The victim's main thread: reopens the segment now and then (the header
/// may be scribbled: `Ok` or a typed `SegmentError`), and runs `extra`
/// (snapshots, reaping) until the end.
fn main_checks(target: Target, env: &Env<'_>, slot: &Slot, extra: impl Fn()) {
    let mut rng = env.rng(1000);
    while env.running() {
        let r = timed(slot, "reopen", Duration::ZERO, || match target {
            Target::QueueSpsc | Target::QueueMpmc => Queue::<u64>::builder()
                .init_timeout(Duration::ZERO)
                .open(env.name)
                .map(|q| q.capacity() as u64),
            Target::BytesSpsc | Target::BytesMpmc => ByteQueue::builder()
                .init_timeout(Duration::ZERO)
                .open(env.name)
                .map(|q| q.max_message_size() as u64),
            Target::Sync => Shared::<SyncSet>::builder()
                .init_timeout(Duration::ZERO)
                .open(env.name)
                .map(|_| 0),
            Target::Value => Value::<u64>::open(env.name).map(|v| v.load()),
        });
        match &r {
            Ok(n) => {
                Stats::add(&env.stats.reopen_ok);
                // A header that opens is the one the creator wrote.
                match target {
                    Target::QueueSpsc | Target::QueueMpmc => {
                        assert_eq!(*n, target.capacity(), "seed {}", env.seed)
                    }
                    Target::BytesSpsc | Target::BytesMpmc => {
                        assert_eq!(*n, MSG_MAX, "seed {}", env.seed)
                    }
                    _ => {}
                }
            }
            Err(_) => Stats::add(&env.stats.reopen_err),
        }
        timed(slot, "snapshots and reaping", Duration::ZERO, &extra);
        thread::sleep(Duration::from_millis(rng.range(5, 30)));
    }
}

fn queue_producer(q: &Queue<u64>, env: &Env<'_>, slot: &Slot, w: u64) {
    let st = env.stats;
    let mut rng = env.rng(w);
    let mut tx = None;
    let mut v = w << 48;
    while env.running() {
        if tx.is_none() || rng.range(0, 63) == 0 {
            tx = None;
            match timed(slot, "sender()", Duration::ZERO, || q.sender()) {
                Ok(t) => tx = Some(t),
                Err(e) => {
                    st.attach_failed(&e);
                    thread::sleep(Duration::from_micros(500));
                    continue;
                }
            }
        }
        let Some(t) = tx.as_mut() else { continue };
        let timeout = pick_timeout(&mut rng);
        v += 1;
        match rng.range(0, 6) {
            0 => st.note(&timed(slot, "try_send", Duration::ZERO, || t.try_send(v))),
            1 => st.note(&timed(slot, "send_timeout", timeout, || {
                t.send_timeout(v, timeout)
            })),
            2 => {
                let vals = [v; 5];
                let n = rng.range(1, 5) as usize;
                let r = timed(slot, "try_send_slice", Duration::ZERO, || {
                    t.try_send_slice(&vals[..n])
                });
                if let Ok(k) = r {
                    assert!((1..=n).contains(&k), "sent {k} of {n} (seed {})", env.seed);
                }
                st.note(&r);
            }
            3 => {
                let commit = rng.range(0, 3) != 0;
                let r = {
                    let _c = slot.enter("try_loan", Duration::ZERO);
                    t.try_loan()
                };
                st.note(&r);
                if let Ok(mut loan) = r {
                    *loan = v;
                    let _c = slot.enter("loan commit/drop", Duration::ZERO);
                    if commit {
                        loan.commit();
                    } else {
                        drop(loan);
                    }
                }
            }
            4 => {
                let r = {
                    let _c = slot.enter("loan_timeout", timeout);
                    t.loan_timeout(timeout)
                };
                st.note(&r);
                if let Ok(mut loan) = r {
                    *loan = v;
                    let _c = slot.enter("loan commit", Duration::ZERO);
                    loan.commit();
                }
            }
            5 => {
                let (len, cap) = timed(slot, "len", Duration::ZERO, || (t.len(), t.capacity()));
                note_len(env, len, cap);
                let _ = timed(slot, "snapshots", Duration::ZERO, || {
                    (t.is_full(), t.is_empty(), t.is_connected())
                });
            }
            _ => {
                let _c = slot.enter("sender drop", Duration::ZERO);
                tx = None;
            }
        }
    }
    let _c = slot.enter("sender drop", Duration::ZERO);
    drop(tx);
}

fn queue_consumer(q: &Queue<u64>, env: &Env<'_>, slot: &Slot, w: u64) {
    let st = env.stats;
    let mut rng = env.rng(w);
    let mut rx = None;
    let mut buf = [0u64; 6];
    while env.running() {
        if rx.is_none() || rng.range(0, 63) == 0 {
            rx = None;
            match timed(slot, "receiver()", Duration::ZERO, || q.receiver()) {
                Ok(r) => rx = Some(r),
                Err(e) => {
                    st.attach_failed(&e);
                    thread::sleep(Duration::from_micros(500));
                    continue;
                }
            }
        }
        let Some(r) = rx.as_mut() else { continue };
        let timeout = pick_timeout(&mut rng);
        let n = rng.range(1, buf.len() as u64) as usize;
        match rng.range(0, 7) {
            0 => st.note(&timed(slot, "try_recv", Duration::ZERO, || r.try_recv())),
            1 => st.note(&timed(slot, "recv_timeout", timeout, || {
                r.recv_timeout(timeout)
            })),
            2 => {
                let got = timed(slot, "try_recv_slice", Duration::ZERO, || {
                    r.try_recv_slice(&mut buf[..n])
                });
                if let Ok(k) = got {
                    assert!((1..=n).contains(&k), "took {k} of {n} (seed {})", env.seed);
                }
                st.note(&got);
            }
            3 => {
                let got = timed(slot, "recv_slice_timeout", timeout, || {
                    r.recv_slice_timeout(&mut buf[..n], timeout)
                });
                if let Ok(k) = got {
                    assert!((1..=n).contains(&k), "took {k} of {n} (seed {})", env.seed);
                }
                st.note(&got);
            }
            4 => {
                let got = {
                    let _c = slot.enter("try_recv_ref", Duration::ZERO);
                    r.try_recv_ref()
                };
                st.note(&got);
                if let Ok(m) = got {
                    let _ = *m;
                    let _c = slot.enter("ref drop", Duration::ZERO);
                    drop(m);
                }
            }
            5 => {
                let got = {
                    let _c = slot.enter("recv_ref_timeout", timeout);
                    r.recv_ref_timeout(timeout)
                };
                st.note(&got);
                if let Ok(m) = got {
                    let _ = *m;
                    let _c = slot.enter("ref drop", Duration::ZERO);
                    drop(m);
                }
            }
            6 => {
                let k = timed(slot, "try_iter", Duration::ZERO, || {
                    r.try_iter().take(n).count()
                });
                assert!(k <= n);
                let (len, cap) = timed(slot, "len", Duration::ZERO, || (r.len(), r.capacity()));
                note_len(env, len, cap);
                let _ = timed(slot, "snapshots", Duration::ZERO, || {
                    (r.is_full(), r.is_empty(), r.is_connected())
                });
            }
            _ => {
                let _c = slot.enter("receiver drop", Duration::ZERO);
                rx = None;
            }
        }
    }
    let _c = slot.enter("receiver drop", Duration::ZERO);
    drop(rx);
}

/// A byte send of `len` bytes: `TooLarge` exactly when it is too large,
/// whatever the segment holds (the length is checked first).
fn check_send(env: &Env<'_>, r: &Result<(), ByteSendError>, len: usize) {
    let max = MSG_MAX as usize;
    match r {
        Err(ByteSendError::TooLarge { len: l, max: m }) => assert!(
            len > max && *l == len && *m == max,
            "TooLarge {{ len: {l}, max: {m} }} for a message of {len} bytes (seed {})",
            env.seed
        ),
        _ => assert!(
            len <= max,
            "a message of {len} bytes > {max}: {r:?} (seed {})",
            env.seed
        ),
    }
    env.stats.note(r);
}

fn bytes_producer(q: &ByteQueue, env: &Env<'_>, slot: &Slot, w: u64) {
    let st = env.stats;
    let mut rng = env.rng(w);
    let mut tx = None;
    let big = vec![0xa5u8; MSG_MAX as usize + 1 + w as usize];
    while env.running() {
        if tx.is_none() || rng.range(0, 63) == 0 {
            tx = None;
            match timed(slot, "sender()", Duration::ZERO, || q.sender()) {
                Ok(t) => tx = Some(t),
                Err(e) => {
                    st.attach_failed(&e);
                    thread::sleep(Duration::from_micros(500));
                    continue;
                }
            }
        }
        let Some(t) = tx.as_mut() else { continue };
        let timeout = pick_timeout(&mut rng);
        let len = rng.range(0, MSG_MAX) as usize;
        let msg = rng.bytes(len);
        match rng.range(0, 6) {
            0 => {
                let r = timed(slot, "try_send", Duration::ZERO, || t.try_send(&msg));
                check_send(env, &r, len);
            }
            1 => {
                let r = timed(slot, "send_timeout", timeout, || {
                    t.send_timeout(&msg, timeout)
                });
                check_send(env, &r, len);
            }
            2 => {
                // Oversize, by every route: always TooLarge.
                let r = timed(slot, "try_send (oversize)", Duration::ZERO, || {
                    t.try_send(&big)
                });
                check_send(env, &r, big.len());
                let r = timed(slot, "send_timeout (oversize)", timeout, || {
                    t.send_timeout(&big, timeout)
                });
                check_send(env, &r, big.len());
                let r = timed(slot, "try_loan (oversize)", Duration::ZERO, || {
                    t.try_loan(big.len()).map(drop)
                });
                check_send(env, &r, big.len());
            }
            3 | 4 => {
                let r = {
                    let _c = slot.enter("try_loan / loan_timeout", timeout);
                    if rng.range(0, 1) == 0 {
                        t.try_loan(len)
                    } else {
                        t.loan_timeout(len, timeout)
                    }
                };
                check_send(env, &r.as_ref().map(|_| ()).map_err(|e| *e), len);
                if let Ok(mut loan) = r {
                    loan.copy_from_slice(&msg);
                    assert_eq!(loan.max_len(), MSG_MAX as usize);
                    let too_long = loan.set_len(MSG_MAX as usize + 1);
                    assert!(
                        matches!(too_long, Err(ByteSendError::TooLarge { .. })),
                        "set_len beyond the maximum: {too_long:?} (seed {})",
                        env.seed
                    );
                    let _c = slot.enter("loan commit/drop", Duration::ZERO);
                    match rng.range(0, 2) {
                        0 => loan.commit(),
                        1 => {
                            let short = rng.range(0, len as u64) as usize;
                            loan.set_len(short).unwrap();
                            loan.commit();
                        }
                        _ => drop(loan),
                    }
                }
            }
            5 => {
                let (len, cap) = timed(slot, "len", Duration::ZERO, || (t.len(), t.capacity()));
                note_len(env, len, cap);
                let _ = timed(slot, "snapshots", Duration::ZERO, || {
                    (t.is_full(), t.is_empty(), t.is_connected())
                });
            }
            _ => {
                let _c = slot.enter("sender drop", Duration::ZERO);
                tx = None;
            }
        }
    }
    let _c = slot.enter("sender drop", Duration::ZERO);
    drop(tx);
}

fn bytes_consumer(q: &ByteQueue, env: &Env<'_>, slot: &Slot, w: u64) {
    let st = env.stats;
    let mut rng = env.rng(w);
    let mut rx = None;
    let mut buf = Vec::new();
    let max = MSG_MAX as usize;
    let seed = env.seed;
    let check_len = |n: usize, what: &str| {
        assert!(
            n <= max,
            "{what} returned a message of {n} bytes > {max} (seed {seed})"
        )
    };
    while env.running() {
        if rx.is_none() || rng.range(0, 63) == 0 {
            rx = None;
            match timed(slot, "receiver()", Duration::ZERO, || q.receiver()) {
                Ok(r) => rx = Some(r),
                Err(e) => {
                    st.attach_failed(&e);
                    thread::sleep(Duration::from_micros(500));
                    continue;
                }
            }
        }
        let Some(r) = rx.as_mut() else { continue };
        let timeout = pick_timeout(&mut rng);
        match rng.range(0, 7) {
            0 => {
                let got = timed(slot, "try_recv_into", Duration::ZERO, || {
                    r.try_recv_into(&mut buf)
                });
                if let Ok(n) = got {
                    check_len(n, "try_recv_into");
                    assert_eq!(buf.len(), n);
                }
                st.note(&got);
            }
            1 => {
                let got = timed(slot, "recv_into_timeout", timeout, || {
                    r.recv_into_timeout(&mut buf, timeout)
                });
                if let Ok(n) = got {
                    check_len(n, "recv_into_timeout");
                    assert_eq!(buf.len(), n);
                }
                st.note(&got);
            }
            2 => {
                let got = timed(slot, "recv_timeout", timeout, || r.recv_timeout(timeout));
                if let Ok(m) = &got {
                    check_len(m.len(), "recv_timeout");
                }
                st.note(&got);
            }
            3 => {
                let got = {
                    let _c = slot.enter("try_recv_ref", Duration::ZERO);
                    r.try_recv_ref()
                };
                if let Ok(m) = &got {
                    check_len(m.len(), "try_recv_ref");
                    let _ = m.iter().map(|&b| b as u64).sum::<u64>();
                }
                st.note(&got);
                let _c = slot.enter("ref drop", Duration::ZERO);
                drop(got);
            }
            4 => {
                let got = {
                    let _c = slot.enter("recv_ref_timeout", timeout);
                    r.recv_ref_timeout(timeout)
                };
                if let Ok(m) = &got {
                    check_len(m.len(), "recv_ref_timeout");
                }
                st.note(&got);
                let _c = slot.enter("ref drop", Duration::ZERO);
                drop(got);
            }
            5 => {
                let got = timed(slot, "poll", timeout, || r.poll(timeout));
                st.note(&got);
                let got = timed(slot, "try_recv", Duration::ZERO, || r.try_recv());
                if let Ok(m) = &got {
                    check_len(m.len(), "try_recv");
                }
                st.note(&got);
            }
            6 => {
                let k = timed(slot, "try_iter", Duration::ZERO, || {
                    r.try_iter().take(3).map(|m| m.len()).max()
                });
                if let Some(n) = k {
                    check_len(n, "try_iter");
                }
                let (len, cap) = timed(slot, "len", Duration::ZERO, || (r.len(), r.capacity()));
                note_len(env, len, cap);
                let _ = timed(slot, "snapshots", Duration::ZERO, || {
                    (r.is_full(), r.is_empty(), r.is_connected())
                });
            }
            _ => {
                let _c = slot.enter("receiver drop", Duration::ZERO);
                rx = None;
            }
        }
    }
    let _c = slot.enter("receiver drop", Duration::ZERO);
    drop(rx);
}

fn sync_worker(set: &SyncSet, env: &Env<'_>, slot: &Slot, w: u64) {
    let st = env.stats;
    let mut rng = env.rng(w);
    while env.running() {
        let timeout = pick_timeout(&mut rng);
        match rng.range(0, 9) {
            0 => {
                let r = {
                    let _c = slot.enter("lock_timeout", timeout);
                    set.lock.lock_timeout(timeout)
                };
                let guard = match r {
                    Ok(g) | Err(LockTimeoutError::OwnerDied(g)) => Some(g),
                    Err(LockTimeoutError::Timeout) => None,
                };
                st.note_bool(guard.is_some());
                if let Some(g) = guard {
                    set.counter.fetch_add(1, Ordering::Relaxed);
                    if rng.range(0, 1) == 0 {
                        // The timeout bounds the wait; the lock is taken
                        // again afterwards (see the ignored test below).
                        let _c = slot.enter("cond.wait_timeout", timeout);
                        let r = set.cond.wait_timeout(g, timeout);
                        st.note_bool(r.is_ok());
                    } else {
                        let _c = slot.enter("unlock", Duration::ZERO);
                        drop(g);
                    }
                }
            }
            1 => {
                let r = timed(slot, "try_lock", Duration::ZERO, || {
                    set.lock.try_lock().map(drop)
                });
                st.note_bool(!matches!(r, Err(TryLockError::WouldBlock)));
            }
            2 => {
                let _c = slot.enter("rlock", timeout);
                let outer = set.rlock.lock_timeout(timeout);
                let inner = set.rlock.try_lock();
                st.note_bool(outer.is_ok() && inner.is_ok());
                drop(inner);
                drop(outer);
            }
            3 => {
                let _c = slot.enter("event", timeout);
                match rng.range(0, 2) {
                    0 => set.event.set(),
                    1 => set.event.clear(),
                    _ => st.note_bool(set.event.wait_timeout(timeout)),
                }
                let _ = set.event.is_set();
            }
            4 => {
                let got = {
                    let _c = slot.enter("sem.acquire_timeout", timeout);
                    set.sem.acquire_timeout(timeout)
                };
                st.note_bool(got);
                if got {
                    let r = timed(slot, "sem.release", Duration::ZERO, || set.sem.release());
                    st.note(&r);
                }
            }
            5 => {
                let got = timed(slot, "sem.try_acquire", Duration::ZERO, || {
                    set.sem.try_acquire()
                });
                st.note_bool(got);
                if got || rng.range(0, 3) == 0 {
                    let r = timed(slot, "sem.release", Duration::ZERO, || set.sem.release());
                    st.note(&r);
                }
            }
            6 => {
                let r = timed(slot, "barrier.wait_timeout", timeout, || {
                    set.barrier.wait_timeout(timeout)
                });
                st.note(&r);
            }
            7 => {
                let _c = slot.enter("cond.notify", Duration::ZERO);
                if rng.range(0, 1) == 0 {
                    set.cond.notify_one();
                } else {
                    set.cond.notify_all();
                }
            }
            _ => {
                let _ = timed(slot, "snapshots", Duration::ZERO, || {
                    (
                        set.lock.is_locked(),
                        set.rlock.depth(),
                        set.sem.value(),
                        set.barrier.n_waiting(),
                    )
                });
            }
        }
    }
}

fn value_worker(v: &Value<u64>, env: &Env<'_>, slot: &Slot, w: u64) {
    let st = env.stats;
    let mut rng = env.rng(w);
    while env.running() {
        let timeout = pick_timeout(&mut rng);
        match rng.range(0, 4) {
            0 => {
                let r = {
                    let _c = slot.enter("lock_timeout", timeout);
                    v.lock_timeout(timeout)
                };
                let guard = match r {
                    Ok(g) | Err(LockTimeoutError::OwnerDied(g)) => Some(g),
                    Err(LockTimeoutError::Timeout) => None,
                };
                st.note_bool(guard.is_some());
                if let Some(g) = guard {
                    g.update(|x| x.wrapping_add(1));
                    let _c = slot.enter("unlock", Duration::ZERO);
                    drop(g);
                }
            }
            1 => {
                let _c = slot.enter("try_lock", Duration::ZERO);
                let r = v.try_lock();
                st.note_bool(!matches!(r, Err(TryLockError::WouldBlock)));
            }
            2 => {
                let _c = slot.enter("atomics", Duration::ZERO);
                let x = rng.next_u64();
                v.store(x);
                let _ = v.load();
                let _ = v.fetch_add(1);
                let _ = v.swap(x);
                let _ = v.compare_exchange(x, x ^ 1);
                let _ = v.fetch_max(x);
                let _ = v.fetch_min(x);
                let _ = v.load_atomic();
                st.note_bool(true);
            }
            _ => {
                let _ = timed(slot, "is_locked", Duration::ZERO, || {
                    v.get_lock().is_locked()
                });
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The scribbler
// ---------------------------------------------------------------------------

/// Where things are, from the intact header (read once, before scribbling).
#[derive(Clone, Copy, Debug)]
struct Geometry {
    len: u64,
    capacity: u64,
    slot_count: u64,
    slot_stride: u64,
    control: u64,
    endpoints: u64,
    slots: u64,
    msg_max: u64,
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
}

fn geometry(h: &[u8; 256], f: &File) -> Geometry {
    Geometry {
        len: f.metadata().unwrap().len(),
        capacity: u64_at(h, 48),
        slot_count: u64_at(h, 56),
        slot_stride: u64_at(h, 64),
        control: u64_at(h, 72),
        endpoints: u64_at(h, 80),
        slots: u64_at(h, 96),
        msg_max: u64_at(h, 152),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hot {
    /// head or tail.
    Index,
    /// A wait cell's futex word.
    Seq,
    /// A wait cell's waiter count (bit 31: WOKEN).
    Waiters,
    /// senders, receivers, ever.
    Bitmap,
    /// An endpoint-table entry.
    Entry,
    /// An intent record's start or end.
    Intent,
    /// An MPMC slot's stamp.
    Stamp,
    /// A byte message's stored length.
    Len,
}

#[derive(Clone, Copy, Debug)]
struct Word {
    off: u64,
    size: usize,
    kind: Hot,
}

/// The hot words of a queue segment (offsets from `docs/design.md`).
fn hot_words(target: Target, g: &Geometry) -> Vec<(Word, u64)> {
    let mut v = Vec::new();
    let mut add = |off: u64, size: usize, kind: Hot, weight: u64| {
        v.push((Word { off, size, kind }, weight));
    };
    let c = g.control;
    add(c, 8, Hot::Index, 60);
    add(c + 128, 8, Hot::Index, 60);
    for cell in [c + 256, c + 384] {
        add(cell, 4, Hot::Seq, 12);
        add(cell + 4, 4, Hot::Waiters, 12);
    }
    for off in [c + 512, c + 520, c + 536] {
        add(off, 8, Hot::Bitmap, 4);
    }
    for i in 0..64 {
        add(g.endpoints + 8 * i, 8, Hot::Entry, 1);
    }
    let intents = g.endpoints + 512;
    for i in 0..64 {
        add(intents + 64 * i, 8, Hot::Intent, 1);
        add(intents + 64 * i + 8, 8, Hot::Intent, 1);
    }
    for i in 0..g.slot_count {
        let slot = g.slots + i * g.slot_stride;
        match target {
            Target::QueueMpmc => add(slot, 8, Hot::Stamp, 20),
            Target::BytesMpmc => {
                add(slot, 8, Hot::Stamp, 20);
                add(slot + 8, 4, Hot::Len, 20);
            }
            Target::BytesSpsc => add(slot, 4, Hot::Len, 20),
            _ => {}
        }
    }
    v
}

struct Scribbler {
    f: File,
    g: Geometry,
    target: Target,
    rng: Rng,
    words: Vec<(Word, u64)>,
    total_weight: u64,
    me: shmring::__internal::ProcId,
    writes: u64,
    /// The intact header, written back when healing.
    header: [u8; 256],
}

const LIVE: u64 = 1 << 63;
const RECEIVER: u64 = 1 << 62;
const START_MASK: u64 = (1 << 39) - 1;

fn entry(receiver: bool, pid: u32, start: u64) -> u64 {
    let role = if receiver { RECEIVER } else { 0 };
    LIVE | role | ((pid as u64 & ((1 << 23) - 1)) << 39) | (start & START_MASK)
}

impl Scribbler {
    fn read(&self, off: u64, size: usize) -> u64 {
        let mut b = [0u8; 8];
        self.f.read_exact_at(&mut b[..size], off).unwrap();
        u64::from_le_bytes(b)
    }

    fn write(&mut self, off: u64, bytes: &[u8]) {
        let n = bytes.len().min((self.g.len - off) as usize);
        self.f.write_all_at(&bytes[..n], off).unwrap();
        self.writes += 1;
    }

    fn write_word(&mut self, w: Word, value: u64) {
        let b = value.to_le_bytes();
        self.write(w.off, &b[..w.size]);
    }

    fn one_lap(&self) -> u64 {
        (self.g.capacity + 1).next_power_of_two()
    }

    /// Random bytes, 1 to 16 of them, anywhere (biased towards the
    /// control block and the slots, where they matter most).
    fn scribble_anywhere(&mut self) {
        let len = self.g.len;
        let (lo, hi) = match self.rng.range(0, 9) {
            0..=3 => (0, self.g.slots.min(len)),
            4..=6 if self.g.slots < len => (
                self.g.slots,
                (self.g.slots + self.g.slot_count * self.g.slot_stride).min(len),
            ),
            _ => (0, len),
        };
        let off = self.rng.range(lo, hi.max(lo + 1) - 1);
        let n = self.rng.range(1, 16) as usize;
        let bytes = self.rng.bytes(n);
        self.write(off, &bytes);
    }

    /// A plausible value in one hot word.
    fn scribble_hot(&mut self) {
        let mut pick = self.rng.range(0, self.total_weight - 1);
        let mut w = self.words[0].0;
        for &(word, weight) in &self.words {
            if pick < weight {
                w = word;
                break;
            }
            pick -= weight;
        }
        let cur = self.read(w.off, w.size);
        let cap = self.g.capacity;
        let one_lap = self.one_lap();
        let bits = 8 * w.size as u64;
        let value = match self.rng.range(0, 9) {
            0 => self.rng.next_u64(),
            1 => cur.wrapping_add(self.rng.range(1, 2 * cap + 2)),
            2 => cur.wrapping_sub(self.rng.range(1, 2 * cap + 2)),
            3 => cur ^ (1 << self.rng.range(0, bits - 1)),
            4 => 0,
            5 => u64::MAX,
            6 => {
                // Another word of the same kind (head <-> tail, one slot's
                // stamp in another).
                let same: Vec<Word> = self
                    .words
                    .iter()
                    .map(|&(x, _)| x)
                    .filter(|x| x.kind == w.kind)
                    .collect();
                let other = same[self.rng.range(0, same.len() as u64 - 1) as usize];
                self.read(other.off, other.size)
            }
            _ => match w.kind {
                Hot::Len => match self.rng.range(0, 3) {
                    0 => self.g.msg_max,
                    1 => self.g.msg_max + 1,
                    2 => u32::MAX as u64,
                    _ => self.rng.range(0, self.g.msg_max),
                },
                Hot::Stamp | Hot::Index | Hot::Intent => match self.rng.range(0, 4) {
                    0 => cur.wrapping_add(one_lap),
                    1 => cur.wrapping_sub(one_lap),
                    2 => cur | (1 << 63),
                    3 => cur.wrapping_add(1) | (1 << 63),
                    // Any lap, any index (possibly beyond the capacity).
                    _ => self.rng.range(0, 1 << 20) * one_lap + self.rng.range(0, one_lap - 1),
                },
                Hot::Waiters => match self.rng.range(0, 2) {
                    0 => (1 << 31) | self.rng.range(0, 3),
                    1 => 0x7fff_ffff,
                    _ => self.rng.range(1, 5),
                },
                Hot::Seq => cur.wrapping_add(1),
                Hot::Bitmap => 1 << self.rng.range(0, 63),
                Hot::Entry => {
                    let receiver = self.rng.range(0, 1) == 1;
                    match self.rng.range(0, 3) {
                        // Alive: this scribbler (until it exits).
                        0 => entry(receiver, self.me.pid, self.me.start),
                        // Dead: a pid reused by another start time.
                        1 => entry(receiver, self.me.pid, self.me.start + 1),
                        // Dead: a pid beyond pid_max.
                        2 => entry(receiver, (1 << 23) - 1, 1),
                        // The live bit or the role bit flipped.
                        _ => {
                            cur ^ if self.rng.range(0, 1) == 0 {
                                LIVE
                            } else {
                                RECEIVER
                            }
                        }
                    }
                }
            },
        };
        self.write_word(w, value);
    }

    /// Makes the segment consistent again: the ring empty at a random
    /// position (MPMC stamps to match), the endpoint entries this scribbler
    /// forged freed, the peer bitmaps those of the live endpoint entries,
    /// the header intact; so that the victim also gets
    /// through its success paths, and reopens a header being scribbled.
    fn heal(&mut self) {
        let c = self.g.control;
        let cap = self.g.capacity;
        match self.target {
            Target::QueueSpsc | Target::BytesSpsc => {
                let t = self.read(c + 128, 8);
                let t = if self.rng.range(0, 3) == 0 {
                    self.rng.next_u64()
                } else {
                    t
                };
                self.write(c, &t.to_le_bytes());
                self.write(c + 128, &t.to_le_bytes());
            }
            Target::QueueMpmc | Target::BytesMpmc => {
                let one_lap = self.one_lap();
                let lap = self.rng.range(0, 1 << 20) * one_lap;
                let index = self.rng.range(0, cap - 1);
                let t = lap | index;
                for i in 0..cap {
                    let stamp = if i >= index {
                        lap | i
                    } else {
                        (lap + one_lap) | i
                    };
                    let off = self.g.slots + i * self.g.slot_stride;
                    self.write(off, &stamp.to_le_bytes());
                }
                self.write(c, &t.to_le_bytes());
                self.write(c + 128, &t.to_le_bytes());
            }
            Target::Sync | Target::Value => {
                let header = self.header;
                self.write(0, &header);
                return;
            }
        }
        // Entries: garbage without the live bit is freed; bitmaps: exactly
        // the live entries' bits (a stray bit would hold an SPSC role, or
        // hide a disconnect, for ever).
        let (mut senders, mut receivers) = (0u64, 0u64);
        for i in 0..64 {
            let off = self.g.endpoints + 8 * i;
            let e = self.read(off, 8);
            let forged_by_me = (e >> 39) & ((1 << 23) - 1) == self.me.pid as u64;
            if e & LIVE == 0 || forged_by_me {
                self.write(off, &0u64.to_le_bytes());
            } else if e & RECEIVER == 0 {
                senders |= 1 << i;
            } else {
                receivers |= 1 << i;
            }
        }
        self.write(c + 512, &senders.to_le_bytes());
        self.write(c + 520, &receivers.to_le_bytes());
        let header = self.header;
        self.write(0, &header);
    }
}

#[test]
#[ignore = "child process entry point"]
fn child_scribbler() {
    child_main("child_scribbler", |a: Args| {
        let target = Target::parse(a.str(0));
        let mode = Mode::parse(a.str(1));
        let path = Path::new(common::SHM_DIR).join(a.str(2));
        let seed: u64 = a.get(3);
        let duration = Duration::from_millis(a.get(4));
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        assert_eq!(
            f.metadata().unwrap().permissions().mode() & 0o777,
            0o600,
            "segments are created private"
        );
        let mut header = [0u8; 256];
        f.read_exact_at(&mut header, 0).unwrap();
        let g = geometry(&header, &f);
        let words = if target.is_queue() {
            hot_words(target, &g)
        } else {
            Vec::new()
        };
        let total_weight = words.iter().map(|&(_, w)| w).sum();
        let mut s = Scribbler {
            f,
            g,
            target,
            rng: Rng::new(seed ^ 0x5c81_bb1e),
            words,
            total_weight,
            me: shmring::__internal::current(),
            writes: 0,
            header,
        };
        let end = Instant::now() + duration;
        let mut bursts = 0u64;
        while Instant::now() < end {
            for _ in 0..s.rng.range(1, 8) {
                if mode == Mode::Hot && target.is_queue() {
                    s.scribble_hot();
                } else {
                    s.scribble_anywhere();
                }
            }
            bursts += 1;
            if s.rng.range(0, 40) == 0 {
                s.heal();
            }
            thread::sleep(Duration::from_micros(s.rng.range(0, 2000)));
        }
        eprintln!(
            "scribbler: {} writes in {bursts} bursts on {} ({:?})",
            s.writes,
            path.display(),
            s.g
        );
        assert!(s.writes > 0);
    });
}

// ---------------------------------------------------------------------------
// A condition wait whose lock stays taken
// ---------------------------------------------------------------------------

#[repr(C)]
struct CondPair {
    lock: Lock,
    cond: Condition,
}

// SAFETY: repr(C), shmring primitives only.
unsafe impl ShmSafe for CondPair {}

/// The owner word of the calling thread, as `docs/design.md` defines it:
/// `tid | (start_time & (2^40 - 1)) << 23`.
fn this_thread_owner_word() -> u64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
    let tid: u64 = stat.split(' ').next().unwrap().parse().unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 1..];
    let start: u64 = rest
        .split_ascii_whitespace()
        .nth(19)
        .unwrap()
        .parse()
        .unwrap();
    ((start & ((1 << 40) - 1)) << 23) | (tid & ((1 << 23) - 1))
}

/// A peer writes the waiting thread's own identity into the lock's owner
/// word while it sleeps in `Condition::wait_timeout`. The first version then
/// never returned (the re-acquisition refused an owner equal to the caller
/// and had no deadline); now a forged own identity counts as taken, and the
/// call returns. (A live *other* thread's identity delays the re-acquisition
/// for as long as that thread lives, as a live holder would: documented on
/// `wait_timeout`, as in Python.)
#[test]
fn condition_wait_timeout_returns_although_the_owner_word_is_forged() {
    run("scribble_cond_forged_owner", |ctx| {
        let name = ctx.name("cond");
        let pair = Shared::create(
            &name,
            CondPair {
                lock: Lock::new(),
                cond: Condition::new(),
            },
        )
        .unwrap();
        let path = pair.path().unwrap();
        // The lock's owner word: first field of the value, at the slots offset.
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let mut h = [0u8; 256];
        f.read_exact_at(&mut h, 0).unwrap();
        let owner_off = u64_at(&h, 96);
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = {
            let pair = pair.clone();
            thread::spawn(move || {
                let g = pair.lock.lock().unwrap();
                tx.send(this_thread_owner_word()).unwrap();
                let t0 = Instant::now();
                let r = pair.cond.wait_timeout(g, Duration::from_millis(200));
                let took = t0.elapsed();
                drop(r);
                took
            })
        };
        let me = rx.recv().unwrap();
        // Forge the owner while the waiter sleeps (the lock is free then).
        thread::sleep(Duration::from_millis(50));
        f.write_all_at(&me.to_le_bytes(), owner_off).unwrap();
        // It must return on its own: a hang is the `run` watchdog's failure,
        // not a wall-clock bound here.
        let took = waiter.join().unwrap();
        assert!(
            took >= Duration::from_millis(200),
            "wait_timeout returned before its timeout: {took:?}"
        );
        drop(pair);
    });
}
