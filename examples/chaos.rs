//! Chaos harness: processes on an MPMC queue and on the shared locks,
//! SIGKILLed at random moments and restarted, with an exact ledger.
//!
//! A supervisor process forks
//!
//! - 4 **producers** sending `Msg { producer, seq, payload, checksum }` into
//!   one anonymous MPMC `Queue` of 64 slots (so claims wrap often), half with
//!   `send_timeout`, half by filling a `loan` in place field by field; now
//!   and then (every 5–40 ms) a producer keeps its loan open for 0.5–4 ms;
//! - 4 **consumers** taking each message in place (two block in
//!   `recv_ref_timeout`, two never block and poll `try_recv_ref`),
//!   checking it and recording it in a shared delivery bitmap (a bit already
//!   set is a duplicate), then releasing the slot; now and then one holds
//!   the slot for 0.5–4 ms, before or after recording;
//! - 3 **sync workers** sharing one `Lock` (guarding an invariant `a == b`
//!   updated in two steps with a sleep in between: a recoverer gets
//!   `OwnerDied` and repairs it), a `Condition` (wait for another worker's
//!   update), a bounded `Semaphore` of 2 permits (at most 2 holders), and a
//!   `Barrier` of 3 parties (`wait_timeout`: a killed party leaves the others
//!   to time out, as documented);
//!
//! then, every 5–100 ms, SIGKILLs one child chosen at random, reaps it and
//! starts a replacement with the same role and id (a producer resumes after
//! its last attempted sequence number). Some kills wait up to 100 ms for a
//! busy child of the drawn role and kill that one: half of the sync-worker
//! kills take the lock holder (or a permit holder), a third of the queue
//! kills a producer or consumer holding its slot open. Permits that killed
//! holders took are given back by the supervisor (they are not owned, as in
//! Python). At the end it stops killing, lets the producers finish, and lets
//! the consumers drain the queue until `Disconnected`.
//!
//! # The ledger
//!
//! A producer stores `attempt = seq + 1` before each send and `done = seq +
//! 1` after it returns, so the supervisor knows, for each producer it kills,
//! the one message that may have been in flight. A consumer stores the id of
//! the message in hand before recording it and clears it after releasing the
//! slot. Before each kill the supervisor reaps dead endpoints
//! (`Queue::reap_dead`) and waits for `Queue::lost()` to settle, so every
//! increase of `lost()` is attributed to the previous kill. Then:
//!
//! - a message in flight at a producer kill was *sent* if it was delivered
//!   or if that kill lost a message (its claim was repaired into a skip
//!   record); otherwise it was never claimed: not sent;
//! - a consumer killed after recording its message and before releasing the
//!   slot makes that message both delivered and counted lost: the *overlap*;
//! - the identity checked is `sent = delivered + lost - overlap`, with no
//!   duplicates and no corrupted message.
//!
//! # Targets (exit status 1 if one fails)
//!
//! - duplicated = 0, corrupted = 0, the identity above, overlap <= consumer
//!   kills;
//! - every survivor call (send or loan, receive, lock, condition wait,
//!   semaphore acquire, barrier wait) that was blocked across a kill returned
//!   within 1 s of it (queue, lock, condition and semaphore calls wait up to
//!   2 s, so a survivor that misses a dead peer shows; barrier waits 100 ms);
//! - a lock whose owner was killed is recovered (`OwnerDied`) within 100 ms
//!   at p99, measured from the later of the kill and the start of the
//!   waiter's call;
//! - no invariant violation, no semaphore over-admission or over-release, no
//!   unexpected error or exit in any child, every endpoint gone at the end.
//!
//! ```sh
//! cargo run --release --example chaos                    # CI: 20 s of kills
//! cargo run --release --example chaos -- --seconds 600   # a long run
//! cargo run --release --example chaos -- --json          # one JSON line instead of the table
//! cargo run --release --example chaos -- --seed 7        # the supervisor's random choices
//! CHAOS_DEBUG=200 cargo run --release --example chaos    # trace calls blocked > 200 ms past a kill
//! ```
//!
//! Only anonymous segments are used (nothing in `/dev/shm`); every child is
//! reaped, children die with the supervisor (`PR_SET_PDEATHSIG`), and a
//! watchdog (`alarm`) kills everything and fails the run if it hangs. The
//! delivery bitmap holds 2^30 sequence numbers per producer (a lazily
//! allocated shared mapping); a producer that reaches the end pauses.

#[cfg(not(loom))]
mod app {
    use nix::sys::signal::{kill, Signal};
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    use nix::unistd::{fork, ForkResult, Pid};
    use shmring::bytemuck::{self, Pod, Zeroable};
    use shmring::{
        Barrier, BarrierError, Condition, Deadline, Flavor, Lock, LockTimeoutError, Queue,
        RecvTimeoutError, Semaphore, Shared, ShmSafe, TryRecvError,
    };
    use std::error::Error;
    use std::io::Write;
    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, Ordering::SeqCst};
    use std::time::{Duration, Instant};

    type Res<T> = Result<T, Box<dyn Error>>;

    const PRODUCERS: usize = 4;
    const CONSUMERS: usize = 4;
    const SYNC_WORKERS: usize = 3;
    const CHILDREN_MAX: usize = PRODUCERS + CONSUMERS + SYNC_WORKERS;
    /// Queue slots: small, so that claims wrap often.
    const CAPACITY: u64 = 64;
    /// Sequence numbers per producer the delivery bitmap can hold.
    const MAX_SEQ: u64 = 1 << 30;
    const WORDS_PER_PRODUCER: usize = (MAX_SEQ / 64) as usize;
    /// Queue, lock, condition and semaphore calls wait this long: longer
    /// than the 1 s target, so a survivor that misses a dead peer shows.
    const CALL_TIMEOUT: Duration = Duration::from_secs(2);
    /// Barrier waits: a killed party leaves the others to time out.
    const BARRIER_TIMEOUT: Duration = Duration::from_millis(100);
    const SEM_PERMITS: u32 = 2;
    /// Kill timestamps kept for the survivors (a ring).
    const KILL_RING: usize = 1024;
    /// Owner-death latency samples kept.
    const SAMPLES: usize = 16384;
    /// Default length of the kill phase (the CI run).
    const DEFAULT_SECONDS: u64 = 20;
    const BLOCK_TARGET_NS: u64 = 1_000_000_000;
    const DETECT_TARGET_NS: u64 = 100_000_000;

    /// Kinds of survivor call whose blocking past a kill is measured.
    const CALLS: [&str; 6] = [
        "send",
        "recv_ref",
        "lock",
        "condition",
        "semaphore",
        "barrier",
    ];
    const C_SEND: usize = 0;
    const C_RECV: usize = 1;
    const C_LOCK: usize = 2;
    const C_COND: usize = 3;
    const C_SEM: usize = 4;
    const C_BARRIER: usize = 5;

    /// What a sync worker is doing (diagnostics).
    const PHASES: [&str; 6] = [
        "start",
        "lock",
        "locked",
        "condition",
        "semaphore",
        "barrier",
    ];

    /// `CHAOS_DEBUG=<ms>` (default 300): trace survivor calls that return
    /// that long past a kill, with what the sync workers are doing.
    fn debug_threshold_ns() -> Option<u64> {
        static T: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
        *T.get_or_init(|| {
            std::env::var("CHAOS_DEBUG")
                .ok()
                .map(|v| v.parse::<u64>().unwrap_or(300) * 1_000_000)
        })
    }

    fn now_ns() -> u64 {
        Deadline::now().as_nanos()
    }

    fn ms(ns: u64) -> f64 {
        ns as f64 / 1e6
    }

    /// splitmix64.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            mix(self.0)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
        fn range(&mut self, lo: u64, hi: u64) -> u64 {
            lo + self.below(hi - lo + 1)
        }
    }

    fn mix(mut z: u64) -> u64 {
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// One message: who sent it, its sequence number, a payload derived
    /// from both, and a checksum over everything.
    #[repr(C)]
    #[derive(Clone, Copy, Pod, Zeroable)]
    struct Msg {
        producer: u64,
        seq: u64,
        payload: [u64; 5],
        checksum: u64,
    }

    impl Msg {
        fn payload_word(p: u64, seq: u64, i: usize) -> u64 {
            mix((p << 56) ^ (seq << 3) ^ i as u64)
        }

        fn sum(&self) -> u64 {
            let mut h = 0xcbf2_9ce4_8422_2325u64;
            for w in [self.producer, self.seq].iter().chain(self.payload.iter()) {
                h = mix(h ^ w);
            }
            h
        }

        fn new(p: u64, seq: u64) -> Msg {
            let mut m = Msg::zeroed();
            m.fill(p, seq);
            m
        }

        /// Writes every field in place (a loan is filled this way).
        fn fill(&mut self, p: u64, seq: u64) {
            self.producer = p;
            self.seq = seq;
            for (i, w) in self.payload.iter_mut().enumerate() {
                *w = Msg::payload_word(p, seq, i);
            }
            self.checksum = self.sum();
        }

        fn valid(&self) -> bool {
            self.producer < PRODUCERS as u64
                && self.seq < MAX_SEQ
                && bytemuck::bytes_of(self)
                    == bytemuck::bytes_of(&Msg::new(self.producer, self.seq))
        }
    }

    /// What a consumer has in hand: `(producer + 1) << 40 | seq`, 0 for none.
    fn hand_code(p: u64, seq: u64) -> u64 {
        ((p + 1) << 40) | seq
    }

    fn hand_decode(code: u64) -> Option<(usize, u64)> {
        (code != 0).then(|| (((code >> 40) - 1) as usize, code & ((1 << 40) - 1)))
    }

    fn zeros<const N: usize>() -> [AtomicU64; N] {
        std::array::from_fn(|_| AtomicU64::new(0))
    }

    /// Everything the processes share besides the queue and the bitmap.
    #[repr(C)]
    struct Stats {
        lock: Lock,
        cond: Condition,
        sem: Semaphore,
        barrier: Barrier,
        // Guarded by `lock`: the invariant a == b, an update counter, and
        // which sync worker holds the lock (id + 1; 0 for none or unknown).
        inv_a: AtomicU64,
        inv_b: AtomicU64,
        gen: AtomicU64,
        holder: AtomicU64,
        // Control.
        stop_producers: AtomicU32,
        stop_sync: AtomicU32,
        sem_pause: AtomicU32,
        /// Per sync worker: 0 idle, 1 acquiring, 2 holding, 3 releasing.
        sem_state: [AtomicU32; SYNC_WORKERS],
        /// Per sync worker, what it is doing (diagnostics): see `PHASES`.
        phase: [AtomicU32; SYNC_WORKERS],
        kill_count: AtomicU64,
        kill_ts: [AtomicU64; KILL_RING],
        sync_kill_ns: [AtomicU64; SYNC_WORKERS],
        // Producers.
        attempt: [AtomicU64; PRODUCERS],
        done: [AtomicU64; PRODUCERS],
        resume: [AtomicU64; PRODUCERS],
        /// Per producer: 1 while it holds a loan on purpose for a while.
        slow_loan: [AtomicU64; PRODUCERS],
        send_timeouts: AtomicU64,
        ledger_full: AtomicU64,
        // Consumers.
        inhand: [AtomicU64; CONSUMERS],
        /// Per consumer: 1 while it holds a claimed message on purpose.
        slow_ref: [AtomicU64; CONSUMERS],
        slow_claims: AtomicU64,
        received: AtomicU64,
        duplicated: AtomicU64,
        corrupted: AtomicU64,
        recv_timeouts: AtomicU64,
        /// Unexpected errors in any child (Corrupted, Disconnected mid-run...).
        errors: AtomicU64,
        // Survivor calls blocked across a kill.
        blocked_max: [AtomicU64; CALLS.len()],
        straddled: [AtomicU64; CALLS.len()],
        over_target: [AtomicU64; CALLS.len()],
        // Lock owner deaths.
        died: AtomicU64,
        died_unknown: AtomicU64,
        died_in_cond: AtomicU64,
        died_ns: [AtomicU64; SAMPLES],
        // Sync counters.
        lock_ops: AtomicU64,
        lock_timeouts: AtomicU64,
        inv_repaired: AtomicU64,
        inv_violations: AtomicU64,
        cond_waits: AtomicU64,
        cond_timeouts: AtomicU64,
        sem_acquired: AtomicU64,
        sem_timeouts: AtomicU64,
        sem_over_admission: AtomicU64,
        sem_overflow: AtomicU64,
        barrier_passes: AtomicU64,
        barrier_trips: AtomicU64,
        barrier_timeouts: AtomicU64,
        barrier_errors: AtomicU64,
    }

    // SAFETY: repr(C), no pointers; atomics, arrays of atomics and shmring's
    // primitives only, for which every bit pattern is valid.
    unsafe impl ShmSafe for Stats {}

    impl Stats {
        fn new() -> Stats {
            Stats {
                lock: Lock::new(),
                cond: Condition::new(),
                sem: Semaphore::bounded(SEM_PERMITS),
                barrier: Barrier::new(SYNC_WORKERS as u32),
                inv_a: AtomicU64::new(0),
                inv_b: AtomicU64::new(0),
                gen: AtomicU64::new(0),
                holder: AtomicU64::new(0),
                stop_producers: AtomicU32::new(0),
                stop_sync: AtomicU32::new(0),
                sem_pause: AtomicU32::new(0),
                sem_state: std::array::from_fn(|_| AtomicU32::new(0)),
                phase: std::array::from_fn(|_| AtomicU32::new(0)),
                kill_count: AtomicU64::new(0),
                kill_ts: zeros(),
                sync_kill_ns: zeros(),
                attempt: zeros(),
                done: zeros(),
                resume: zeros(),
                slow_loan: zeros(),
                send_timeouts: AtomicU64::new(0),
                ledger_full: AtomicU64::new(0),
                inhand: zeros(),
                slow_ref: zeros(),
                slow_claims: AtomicU64::new(0),
                received: AtomicU64::new(0),
                duplicated: AtomicU64::new(0),
                corrupted: AtomicU64::new(0),
                recv_timeouts: AtomicU64::new(0),
                errors: AtomicU64::new(0),
                blocked_max: zeros(),
                straddled: zeros(),
                over_target: zeros(),
                died: AtomicU64::new(0),
                died_unknown: AtomicU64::new(0),
                died_in_cond: AtomicU64::new(0),
                died_ns: zeros(),
                lock_ops: AtomicU64::new(0),
                lock_timeouts: AtomicU64::new(0),
                inv_repaired: AtomicU64::new(0),
                inv_violations: AtomicU64::new(0),
                cond_waits: AtomicU64::new(0),
                cond_timeouts: AtomicU64::new(0),
                sem_acquired: AtomicU64::new(0),
                sem_timeouts: AtomicU64::new(0),
                sem_over_admission: AtomicU64::new(0),
                sem_overflow: AtomicU64::new(0),
                barrier_passes: AtomicU64::new(0),
                barrier_trips: AtomicU64::new(0),
                barrier_timeouts: AtomicU64::new(0),
                barrier_errors: AtomicU64::new(0),
            }
        }

        fn inc(c: &AtomicU64) {
            c.fetch_add(1, SeqCst);
        }

        /// A call of kind `call` ran from `t0` to `t1`: if a kill happened
        /// meanwhile, records how long after the first such kill it returned.
        fn note_call(&self, call: usize, t0: u64, t1: u64) {
            let n = self.kill_count.load(SeqCst);
            let mut first = None;
            let mut i = n;
            while i > 0 && n - i < KILL_RING as u64 {
                i -= 1;
                let ts = self.kill_ts[i as usize % KILL_RING].load(SeqCst);
                if ts <= t0 {
                    break;
                }
                if ts <= t1 {
                    first = Some(ts);
                }
            }
            if let Some(k) = first {
                let past = t1 - k;
                Stats::inc(&self.straddled[call]);
                self.blocked_max[call].fetch_max(past, SeqCst);
                if past >= BLOCK_TARGET_NS {
                    Stats::inc(&self.over_target[call]);
                }
                if debug_threshold_ns().is_some_and(|d| past >= d) {
                    eprintln!(
                        "chaos debug: pid {} {} call {:.1} ms, returned {:.1} ms after a kill \
                         (kill {:.1} ms into it); gen {} holder {} sem {:?} barrier waiting {} phases {:?}",
                        std::process::id(),
                        CALLS[call],
                        ms(t1 - t0),
                        ms(past),
                        ms(k - t0),
                        self.gen.load(SeqCst),
                        self.holder.load(SeqCst),
                        self.sem_state.iter().map(|s| s.load(SeqCst)).collect::<Vec<_>>(),
                        self.barrier.n_waiting(),
                        self.phase
                            .iter()
                            .map(|s| PHASES[s.load(SeqCst) as usize % PHASES.len()])
                            .collect::<Vec<_>>(),
                    );
                }
            }
        }

        /// An acquirer got `OwnerDied` after waiting from `t0` to `t1`.
        fn owner_died(&self, t0: u64, t1: u64, in_cond: bool) {
            Stats::inc(&self.died);
            // The dead owner's id, stored while it held the lock.
            let h = self.holder.load(SeqCst);
            if in_cond {
                // The waiter slept on the condition first: no latency sample.
                Stats::inc(&self.died_in_cond);
            } else if h == 0 || h > SYNC_WORKERS as u64 {
                Stats::inc(&self.died_unknown);
            } else {
                let killed = self.sync_kill_ns[h as usize - 1].load(SeqCst);
                let lat = t1.saturating_sub(killed.max(t0));
                let i = self.died_ns_count();
                if i < SAMPLES {
                    self.died_ns[i].store(lat + 1, SeqCst);
                }
            }
            // The guarded state may be half-updated: repair it.
            let a = self.inv_a.load(SeqCst);
            if self.inv_b.load(SeqCst) != a {
                self.inv_b.store(a, SeqCst);
                Stats::inc(&self.inv_repaired);
            }
        }

        fn died_ns_count(&self) -> usize {
            self.died_ns
                .iter()
                .position(|s| s.load(SeqCst) == 0)
                .unwrap_or(SAMPLES)
        }
    }

    /// The delivery bitmap: one bit per (producer, sequence number), in a
    /// shared anonymous mapping inherited by every child (pages are
    /// allocated only where touched).
    struct Ledger {
        words: &'static [AtomicU64],
    }

    impl Ledger {
        fn new() -> Res<Ledger> {
            let n = PRODUCERS * WORDS_PER_PRODUCER;
            let len = n * 8;
            // SAFETY: a fresh anonymous shared mapping; no existing memory
            // is affected.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_SHARED | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                    -1,
                    0,
                )
            };
            if p == libc::MAP_FAILED {
                return Err(format!("mmap: {}", std::io::Error::last_os_error()).into());
            }
            // SAFETY: `len` bytes, zero-filled, page-aligned, mapped for the
            // life of the process (never unmapped), and AtomicU64 is valid
            // for any bits.
            let words = unsafe { std::slice::from_raw_parts(p.cast::<AtomicU64>(), n) };
            Ok(Ledger { words })
        }

        fn word(&self, p: usize, seq: u64) -> (&AtomicU64, u64) {
            (
                &self.words[p * WORDS_PER_PRODUCER + (seq / 64) as usize],
                1 << (seq % 64),
            )
        }

        /// Marks a delivery; whether it was already marked (a duplicate).
        fn mark(&self, p: usize, seq: u64) -> bool {
            let (w, bit) = self.word(p, seq);
            w.fetch_or(bit, SeqCst) & bit != 0
        }

        fn is_set(&self, p: usize, seq: u64) -> bool {
            let (w, bit) = self.word(p, seq);
            w.load(SeqCst) & bit != 0
        }

        /// Deliveries of producer `p` below `end`, and any at or above it
        /// (in the same last word: a message never sent).
        fn count(&self, p: usize, end: u64) -> (u64, u64) {
            let base = p * WORDS_PER_PRODUCER;
            let full = (end / 64) as usize;
            let mut n: u64 = self.words[base..base + full]
                .iter()
                .map(|w| u64::from(w.load(SeqCst).count_ones()))
                .sum();
            let mut beyond = 0;
            if full < WORDS_PER_PRODUCER {
                let w = self.words[base + full].load(SeqCst);
                let low = (1u64 << (end % 64)) - 1;
                n += u64::from((w & low).count_ones());
                beyond = u64::from((w & !low).count_ones());
                if full + 1 < WORDS_PER_PRODUCER {
                    beyond += u64::from(self.words[base + full + 1].load(SeqCst).count_ones());
                }
            }
            (n, beyond)
        }
    }

    struct Ctx {
        q: Queue<Msg>,
        st: Shared<Stats>,
        ledger: Ledger,
    }

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Role {
        Producer,
        Consumer,
        Sync,
    }

    impl Role {
        fn name(self) -> &'static str {
            match self {
                Role::Producer => "producer",
                Role::Consumer => "consumer",
                Role::Sync => "sync worker",
            }
        }
    }

    // ---------------------------------------------------------------- children

    fn producer(ctx: &Ctx, p: usize, seed: u64) -> i32 {
        let st = &*ctx.st;
        let mut tx = match ctx.q.sender() {
            Ok(t) => t,
            Err(e) => {
                eprintln!("producer {p}: attach: {e}");
                Stats::inc(&st.errors);
                return 2;
            }
        };
        let mut seq = st.resume[p].load(SeqCst);
        let mut code = 0;
        let mut rng = Rng(seed);
        let mut next_slow = now_ns() + rng.range(5, 40) * 1_000_000;
        while st.stop_producers.load(SeqCst) == 0 {
            if seq >= MAX_SEQ {
                Stats::inc(&st.ledger_full);
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            st.attempt[p].store(seq + 1, SeqCst);
            let t0 = now_ns();
            // Odd messages are built in place in a loaned slot, field by
            // field; even ones are copied in by send_timeout.
            let r = if seq % 2 == 1 {
                let r = tx.loan_timeout(CALL_TIMEOUT);
                st.note_call(C_SEND, t0, now_ns());
                match r {
                    Ok(mut loan) => {
                        loan.fill(p as u64, seq);
                        // Now and then a slow writer: the claim stays open
                        // (and the consumers wait behind it) for a while.
                        if now_ns() > next_slow {
                            st.slow_loan[p].store(1, SeqCst);
                            Stats::inc(&st.slow_claims);
                            std::thread::sleep(Duration::from_micros(rng.range(500, 4000)));
                            st.slow_loan[p].store(0, SeqCst);
                            next_slow = now_ns() + rng.range(5, 40) * 1_000_000;
                        }
                        loan.commit();
                        Ok(())
                    }
                    Err(e) => Err(e.is_timeout()),
                }
            } else {
                let r = tx.send_timeout(Msg::new(p as u64, seq), CALL_TIMEOUT);
                st.note_call(C_SEND, t0, now_ns());
                r.map_err(|e| e.is_timeout())
            };
            match r {
                Ok(()) => {
                    st.done[p].store(seq + 1, SeqCst);
                    seq += 1;
                }
                Err(true) => Stats::inc(&st.send_timeouts),
                Err(false) => {
                    eprintln!("producer {p}: send failed (disconnected or corrupted)");
                    Stats::inc(&st.errors);
                    code = 3;
                    break;
                }
            }
        }
        // Nothing in flight any more.
        st.attempt[p].store(st.done[p].load(SeqCst), SeqCst);
        drop(tx);
        code
    }

    fn consumer(ctx: &Ctx, c: usize, seed: u64) -> i32 {
        let st = &*ctx.st;
        let mut rx = match ctx.q.receiver() {
            Ok(r) => r,
            Err(e) => {
                eprintln!("consumer {c}: attach: {e}");
                Stats::inc(&st.errors);
                return 2;
            }
        };
        let mut rng = Rng(seed);
        let mut next_slow = now_ns() + rng.range(5, 40) * 1_000_000;
        // Odd consumers never block: they poll `try_recv_ref`, yielding
        // between polls, so only the library's idle-poll checks can find a
        // dead producer's claim or the last sender gone. A run of polls
        // counts as one call, timed out after CALL_TIMEOUT like the others.
        let polling = c % 2 == 1;
        let mut poll_since: Option<u64> = None;
        loop {
            let r = if polling {
                let t0 = *poll_since.get_or_insert_with(now_ns);
                match rx.try_recv_ref() {
                    Err(TryRecvError::Empty) => {
                        if now_ns() - t0 > CALL_TIMEOUT.as_nanos() as u64 {
                            st.note_call(C_RECV, t0, now_ns());
                            Stats::inc(&st.recv_timeouts);
                            poll_since = None;
                        }
                        std::thread::yield_now();
                        continue;
                    }
                    r => {
                        st.note_call(C_RECV, t0, now_ns());
                        poll_since = None;
                        r.map_err(|e| match e {
                            TryRecvError::Disconnected => RecvTimeoutError::Disconnected,
                            TryRecvError::Closed => RecvTimeoutError::Closed,
                            TryRecvError::Corrupted => RecvTimeoutError::Corrupted,
                            TryRecvError::Empty => unreachable!("handled above"),
                        })
                    }
                }
            } else {
                let t0 = now_ns();
                let r = rx.recv_ref_timeout(CALL_TIMEOUT);
                st.note_call(C_RECV, t0, now_ns());
                r
            };
            match r {
                Ok(slot) => {
                    let m: Msg = *slot;
                    if !m.valid() {
                        Stats::inc(&st.corrupted);
                        drop(slot);
                        continue;
                    }
                    st.inhand[c].store(hand_code(m.producer, m.seq), SeqCst);
                    // Now and then a slow reader holds the slot for a while,
                    // before or after recording the message.
                    let slow = now_ns() > next_slow;
                    let slow_after = slow && rng.below(2) == 0;
                    let hold_us = rng.range(500, 4000);
                    let hold = || {
                        st.slow_ref[c].store(1, SeqCst);
                        Stats::inc(&st.slow_claims);
                        std::thread::sleep(Duration::from_micros(hold_us));
                        st.slow_ref[c].store(0, SeqCst);
                    };
                    if slow && !slow_after {
                        hold();
                    }
                    if ctx.ledger.mark(m.producer as usize, m.seq) {
                        Stats::inc(&st.duplicated);
                    }
                    Stats::inc(&st.received);
                    if slow_after {
                        hold();
                    }
                    if slow {
                        next_slow = now_ns() + rng.range(5, 40) * 1_000_000;
                    }
                    drop(slot); // releases the slot
                    st.inhand[c].store(0, SeqCst);
                }
                Err(RecvTimeoutError::Timeout) => Stats::inc(&st.recv_timeouts),
                Err(RecvTimeoutError::Disconnected | RecvTimeoutError::Closed) => break,
                Err(RecvTimeoutError::Corrupted) => {
                    eprintln!("consumer {c}: queue reported Corrupted");
                    Stats::inc(&st.errors);
                    return 3;
                }
            }
        }
        drop(rx);
        0
    }

    fn sync_worker(ctx: &Ctx, w: usize, seed: u64) -> i32 {
        let st = &*ctx.st;
        let mut rng = Rng(seed);
        let me = w as u64 + 1;
        while st.stop_sync.load(SeqCst) == 0 {
            // Lock: a two-step update of a == b, sometimes sleeping between.
            st.phase[w].store(1, SeqCst);
            let t0 = now_ns();
            let r = st.lock.lock_timeout(CALL_TIMEOUT);
            let t1 = now_ns();
            st.note_call(C_LOCK, t0, t1);
            let guard = match r {
                Ok(g) => {
                    if st.inv_a.load(SeqCst) != st.inv_b.load(SeqCst) {
                        Stats::inc(&st.inv_violations);
                    }
                    g
                }
                Err(LockTimeoutError::OwnerDied(g)) => {
                    st.owner_died(t0, t1, false);
                    g
                }
                Err(LockTimeoutError::Timeout) => {
                    Stats::inc(&st.lock_timeouts);
                    continue;
                }
            };
            st.holder.store(me, SeqCst);
            st.phase[w].store(2, SeqCst);
            Stats::inc(&st.lock_ops);
            st.inv_a.fetch_add(1, SeqCst);
            // Hold the lock a while, half-way through the update.
            std::thread::sleep(Duration::from_micros(rng.range(200, 3000)));
            st.inv_b.fetch_add(1, SeqCst);
            st.gen.fetch_add(1, SeqCst);
            st.cond.notify_all();
            // Condition: now and then, wait for another worker's update.
            // (Not when a worker already waits at the barrier: it would
            // make no update until the barrier times out.)
            let guard = if rng.below(3) == 0 && st.barrier.n_waiting() == 0 {
                let seen = st.gen.load(SeqCst);
                st.holder.store(0, SeqCst);
                st.phase[w].store(3, SeqCst);
                let t0 = now_ns();
                let r = st.cond.wait_while_timeout(guard, CALL_TIMEOUT, || {
                    st.gen.load(SeqCst) == seen && st.stop_sync.load(SeqCst) == 0
                });
                let t1 = now_ns();
                st.note_call(C_COND, t0, t1);
                let g = match r {
                    Ok((g, res)) => {
                        Stats::inc(&st.cond_waits);
                        if res.timed_out() {
                            Stats::inc(&st.cond_timeouts);
                            if debug_threshold_ns().is_some() {
                                eprintln!(
                                    "chaos debug: pid {} condition timed out: seen {seen}, gen now {}",
                                    std::process::id(),
                                    st.gen.load(SeqCst)
                                );
                            }
                        }
                        if st.inv_a.load(SeqCst) != st.inv_b.load(SeqCst) {
                            Stats::inc(&st.inv_violations);
                        }
                        g
                    }
                    Err(died) => {
                        st.owner_died(t0, t1, true);
                        died.into_inner()
                    }
                };
                st.holder.store(me, SeqCst);
                g
            } else {
                guard
            };
            st.holder.store(0, SeqCst);
            drop(guard);

            // Semaphore: at most SEM_PERMITS holders. The supervisor pauses
            // this section to restore permits that killed holders took.
            st.phase[w].store(4, SeqCst);
            st.sem_state[w].store(1, SeqCst);
            if st.sem_pause.load(SeqCst) != 0 {
                st.sem_state[w].store(0, SeqCst);
                std::thread::sleep(Duration::from_millis(1));
            } else {
                let t0 = now_ns();
                let ok = st.sem.acquire_timeout(CALL_TIMEOUT);
                st.note_call(C_SEM, t0, now_ns());
                if ok {
                    st.sem_state[w].store(2, SeqCst);
                    Stats::inc(&st.sem_acquired);
                    let holders = st.sem_state.iter().filter(|s| s.load(SeqCst) == 2).count();
                    if holders > SEM_PERMITS as usize {
                        Stats::inc(&st.sem_over_admission);
                    }
                    std::thread::sleep(Duration::from_micros(rng.range(200, 2000)));
                    st.sem_state[w].store(3, SeqCst);
                    if st.sem.release().is_err() {
                        Stats::inc(&st.sem_overflow);
                    }
                } else {
                    Stats::inc(&st.sem_timeouts);
                }
                st.sem_state[w].store(0, SeqCst);
            }

            // Barrier.
            st.phase[w].store(5, SeqCst);
            let t0 = now_ns();
            let r = st.barrier.wait_timeout(BARRIER_TIMEOUT);
            st.note_call(C_BARRIER, t0, now_ns());
            match r {
                Ok(res) => {
                    Stats::inc(&st.barrier_passes);
                    if res.is_leader() {
                        Stats::inc(&st.barrier_trips);
                    }
                }
                Err(BarrierError::Timeout) => Stats::inc(&st.barrier_timeouts),
                Err(BarrierError::Corrupted) => {
                    Stats::inc(&st.barrier_errors);
                    return 3;
                }
            }
        }
        0
    }

    // -------------------------------------------------------------- supervisor

    /// Children's pids, for the watchdog (a signal handler can read these).
    static CHILDREN: [AtomicI32; CHILDREN_MAX] = [const { AtomicI32::new(0) }; CHILDREN_MAX];

    extern "C" fn watchdog(_: libc::c_int) {
        for c in &CHILDREN {
            let pid = c.load(SeqCst);
            if pid > 0 {
                // SAFETY: kill is async-signal-safe.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        let msg = b"chaos: FAIL: watchdog expired (a hang); every child killed\n";
        // SAFETY: write and _exit are async-signal-safe; the buffer is valid.
        unsafe {
            libc::write(2, msg.as_ptr().cast(), msg.len());
            libc::_exit(2);
        }
    }

    fn spawn(ctx: &Ctx, role: Role, id: usize, seed: u64) -> Res<Pid> {
        let parent = std::process::id();
        std::io::stdout().flush()?;
        std::io::stderr().flush()?;
        // SAFETY: the supervisor is single-threaded; the child leaves through
        // `std::process::exit` and never returns into the supervisor's loop.
        match unsafe { fork() }? {
            ForkResult::Child => {
                // SAFETY: plain prctl call: die with the supervisor.
                unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
                if std::os::unix::process::parent_id() != parent {
                    std::process::exit(9);
                }
                let code = catch_unwind(AssertUnwindSafe(|| match role {
                    Role::Producer => producer(ctx, id, seed),
                    Role::Consumer => consumer(ctx, id, seed),
                    Role::Sync => sync_worker(ctx, id, seed),
                }))
                .unwrap_or(101);
                std::process::exit(code);
            }
            ForkResult::Parent { child } => Ok(child),
        }
    }

    struct Slot {
        role: Role,
        id: usize,
        pid: Pid,
    }

    /// One kill and what the victim left.
    struct Kill {
        role: Role,
        /// The victim's id within its role.
        id: usize,
        /// Producer: the sequence number in flight.
        inflight: Option<u64>,
        /// Consumer: the message in hand (producer, seq).
        inhand: Option<(usize, u64)>,
        /// Increase of `lost()` attributed to this kill.
        lost: u64,
    }

    /// What a targeted kill waits for.
    #[derive(Clone, Copy)]
    enum Busy {
        /// A claim held open on purpose (producers, consumers).
        Claim,
        /// The lock (sync workers).
        Lock,
        /// A semaphore permit (sync workers).
        Permit,
    }

    /// Waits up to 100 ms for a child of `role` busy with `what` (see the
    /// kill loop); its index in `slots`.
    fn wait_busy(st: &Stats, slots: &[Slot], role: Role, what: Busy) -> Option<usize> {
        let deadline = Instant::now() + Duration::from_millis(100);
        while Instant::now() < deadline {
            let busy = slots.iter().position(|s| {
                s.role == role
                    && match (role, what) {
                        (Role::Producer, _) => st.slow_loan[s.id].load(SeqCst) != 0,
                        (Role::Consumer, _) => st.slow_ref[s.id].load(SeqCst) != 0,
                        (Role::Sync, Busy::Permit) => st.sem_state[s.id].load(SeqCst) == 2,
                        (Role::Sync, _) => st.holder.load(SeqCst) == s.id as u64 + 1,
                    }
            });
            if busy.is_some() {
                return busy;
            }
            std::thread::sleep(Duration::from_micros(100));
        }
        None
    }

    /// Reaps dead endpoints and waits for `lost()` to stop moving (a
    /// survivor may be in the middle of a repair).
    fn settle(q: &Queue<Msg>) -> u64 {
        q.reap_dead();
        let mut last = q.lost();
        let mut stable = 0;
        for _ in 0..100 {
            std::thread::sleep(Duration::from_millis(1));
            let l = q.lost();
            if l == last {
                stable += 1;
                if stable >= 3 {
                    break;
                }
            } else {
                last = l;
                stable = 0;
            }
        }
        last
    }

    /// Restores the semaphore permits that killed holders took: pauses the
    /// semaphore section, waits until no live worker is acquiring or holding,
    /// then releases up to the bound. Returns the permits restored.
    fn reconcile_sem(st: &Stats) -> Option<u64> {
        st.sem_pause.store(1, SeqCst);
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut ok = true;
        while st.sem_state.iter().any(|s| s.load(SeqCst) != 0) {
            if Instant::now() > deadline {
                ok = false;
                break;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        let mut n = 0;
        if ok {
            while st.sem.release().is_ok() {
                n += 1;
            }
        }
        st.sem_pause.store(0, SeqCst);
        ok.then_some(n)
    }

    /// Waits for `pid` to exit, at most `limit`; kills it after that.
    fn wait_exit(pid: Pid, limit: Duration) -> Res<Option<i32>> {
        let deadline = Instant::now() + limit;
        loop {
            match waitpid(pid, Some(WaitPidFlag::WNOHANG))? {
                WaitStatus::StillAlive => {}
                WaitStatus::Exited(_, code) => return Ok(Some(code)),
                WaitStatus::Signaled(_, sig, _) => return Ok(Some(128 + sig as i32)),
                _ => {}
            }
            if Instant::now() > deadline {
                let _ = kill(pid, Signal::SIGKILL);
                let _ = waitpid(pid, None);
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    struct Args {
        seconds: u64,
        json: bool,
        seed: u64,
    }

    fn parse_args() -> Res<Option<Args>> {
        let mut a = Args {
            seconds: DEFAULT_SECONDS,
            json: false,
            seed: now_ns() ^ u64::from(std::process::id()),
        };
        let mut it = std::env::args().skip(1);
        while let Some(arg) = it.next() {
            match arg.as_str() {
                "--seconds" => {
                    let v = it.next().ok_or("--seconds needs a value")?;
                    a.seconds = v.parse().map_err(|e| format!("bad --seconds {v:?}: {e}"))?;
                }
                "--seed" => {
                    let v = it.next().ok_or("--seed needs a value")?;
                    a.seed = v.parse().map_err(|e| format!("bad --seed {v:?}: {e}"))?;
                }
                "--json" => a.json = true,
                "-h" | "--help" => {
                    println!(
                        "usage: chaos [--seconds N] [--seed S] [--json]\n\
                         SIGKILLs random producers, consumers and lock users for N seconds\n\
                         (default {DEFAULT_SECONDS}), then checks the ledger and the targets;\n\
                         exit status 1 if a target fails."
                    );
                    return Ok(None);
                }
                other => return Err(format!("unknown argument {other:?} (try --help)").into()),
            }
        }
        Ok(Some(a))
    }

    fn percentile(sorted: &[u64], p: f64) -> u64 {
        if sorted.is_empty() {
            return 0;
        }
        let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
        sorted[rank.clamp(1, sorted.len()) - 1]
    }

    pub fn main() -> Res<i32> {
        let Some(args) = parse_args()? else {
            return Ok(0);
        };
        let ctx = Ctx {
            q: Queue::<Msg>::anonymous(Flavor::Mpmc, CAPACITY)?,
            st: Shared::anonymous(Stats::new())?,
            ledger: Ledger::new()?,
        };
        let st = &*ctx.st;
        let q = &ctx.q;
        // The queue counts as disconnected once every sender that ever
        // attached is gone: hold one until the producers have finished.
        let guard = q.sender()?;

        // Watchdog: the whole run, plus a generous margin for the drain
        // (each child gets 10 s to finish, see `finish` below).
        let budget = args.seconds + 30 + 10 * CHILDREN_MAX as u64;
        // SAFETY: installs an async-signal-safe handler, then arms the alarm.
        unsafe {
            libc::signal(libc::SIGALRM, watchdog as *const () as libc::sighandler_t);
            libc::alarm(u32::try_from(budget).unwrap_or(u32::MAX));
        }

        let mut rng = Rng(args.seed);
        if !args.json {
            println!(
                "chaos: {PRODUCERS} producers, {CONSUMERS} consumers (MPMC queue of {CAPACITY}), \
                 {SYNC_WORKERS} lock/condition/semaphore/barrier workers; \
                 killing for {} s, seed {}",
                args.seconds, args.seed
            );
        }
        let start = Instant::now();
        let mut slots = Vec::new();
        let roles = [
            (Role::Producer, PRODUCERS),
            (Role::Consumer, CONSUMERS),
            (Role::Sync, SYNC_WORKERS),
        ];
        for (role, n) in roles {
            for id in 0..n {
                let pid = spawn(&ctx, role, id, rng.next())?;
                CHILDREN[slots.len()].store(pid.as_raw(), SeqCst);
                slots.push(Slot { role, id, pid });
            }
        }

        let mut kills: Vec<Kill> = Vec::new();
        let mut unexpected_exits = 0u64;
        let mut restarts = 0u64;
        let mut killed_holding_lock = 0u64;
        let mut sem_restored = 0u64;
        let mut sem_reconcile_failed = 0u64;
        let mut sem_reconciles = 0u64;
        let mut targeted = 0u64;
        let mut targeted_tries = 0u64;
        let mut last_lost = 0u64;
        let mut lost_before_kills = 0u64;
        let chaos_end = start + Duration::from_secs(args.seconds);

        while Instant::now() < chaos_end {
            std::thread::sleep(Duration::from_millis(rng.range(5, 100)));

            // A child that exited by itself is a failure; restart it.
            for (v, s) in slots.iter_mut().enumerate() {
                let code = match waitpid(s.pid, Some(WaitPidFlag::WNOHANG))? {
                    WaitStatus::Exited(_, code) => code,
                    WaitStatus::Signaled(_, sig, _) => 128 + sig as i32,
                    _ => continue,
                };
                eprintln!(
                    "chaos: {} {} exited by itself ({code})",
                    s.role.name(),
                    s.id
                );
                unexpected_exits += 1;
                s.pid = spawn(&ctx, s.role, s.id, rng.next())?;
                CHILDREN[v].store(s.pid.as_raw(), SeqCst);
            }

            // Attribute the losses since the last kill to it.
            let l = settle(q);
            match kills.last_mut() {
                Some(k) => k.lost += l - last_lost,
                None => lost_before_kills += l - last_lost,
            }
            last_lost = l;

            // Kill one child at random. One time in three, wait a little for
            // a child of the drawn role to be busy (holding the lock, or a
            // claim it keeps open on purpose) and kill that one instead.
            let mut v = rng.below(slots.len() as u64) as usize;
            let busy = match slots[v].role {
                // Sync workers: half the kills go to the lock holder (2/3) or
                // a permit holder (1/3), so that OwnerDied is well sampled.
                Role::Sync if rng.below(2) == 0 => Some(if rng.below(3) == 0 {
                    Busy::Permit
                } else {
                    Busy::Lock
                }),
                Role::Producer | Role::Consumer if rng.below(3) == 0 => Some(Busy::Claim),
                _ => None,
            };
            if let Some(what) = busy {
                targeted_tries += 1;
                if let Some(b) = wait_busy(st, &slots, slots[v].role, what) {
                    v = b;
                    targeted += 1;
                }
            }
            let (role, id, pid) = (slots[v].role, slots[v].id, slots[v].pid);
            let t = now_ns();
            if role == Role::Sync {
                st.sync_kill_ns[id].store(t, SeqCst);
            }
            let n = st.kill_count.load(SeqCst);
            st.kill_ts[n as usize % KILL_RING].store(t, SeqCst);
            st.kill_count.store(n + 1, SeqCst);
            kill(pid, Signal::SIGKILL)?;
            match waitpid(pid, None)? {
                WaitStatus::Signaled(_, Signal::SIGKILL, _) => {}
                other => {
                    eprintln!(
                        "chaos: {} {id} had ended by itself ({other:?})",
                        role.name()
                    );
                    unexpected_exits += 1;
                }
            }
            CHILDREN[v].store(0, SeqCst);

            let mut k = Kill {
                role,
                id,
                inflight: None,
                inhand: None,
                lost: 0,
            };
            match role {
                Role::Producer => {
                    let (a, d) = (st.attempt[id].load(SeqCst), st.done[id].load(SeqCst));
                    let resume = if a > d {
                        k.inflight = Some(a - 1);
                        a
                    } else {
                        d
                    };
                    st.resume[id].store(resume, SeqCst);
                    st.slow_loan[id].store(0, SeqCst);
                    st.attempt[id].store(resume, SeqCst);
                    st.done[id].store(resume, SeqCst);
                }
                Role::Consumer => {
                    k.inhand = hand_decode(st.inhand[id].swap(0, SeqCst));
                    st.slow_ref[id].store(0, SeqCst);
                }
                Role::Sync => {
                    if st.holder.load(SeqCst) == id as u64 + 1 {
                        killed_holding_lock += 1;
                    }
                    match st.sem_state[id].swap(0, SeqCst) {
                        0 => {}
                        2 => {
                            // It held a permit: give it back.
                            if st.sem.release().is_ok() {
                                sem_restored += 1;
                            }
                        }
                        _ => {
                            sem_reconciles += 1;
                            match reconcile_sem(st) {
                                Some(n) => sem_restored += n,
                                None => sem_reconcile_failed += 1,
                            }
                        }
                    }
                }
            }
            kills.push(k);

            let pid = spawn(&ctx, role, id, rng.next())?;
            CHILDREN[v].store(pid.as_raw(), SeqCst);
            slots[v].pid = pid;
            restarts += 1;
        }
        let chaos_secs = start.elapsed().as_secs_f64();

        // The last kill's losses.
        let l = settle(q);
        match kills.last_mut() {
            Some(k) => k.lost += l - last_lost,
            None => lost_before_kills += l - last_lost,
        }
        last_lost = l;

        // Stop: producers finish their current send and leave; then the
        // consumers drain to Disconnected; then the sync workers stop.
        let drain_start = Instant::now();
        let mut hung = 0u64;
        let mut bad_exits = 0u64;
        let mut finish = |slots: &[Slot], role: Role| -> Res<()> {
            for (v, s) in slots.iter().enumerate().filter(|(_, s)| s.role == role) {
                match wait_exit(s.pid, Duration::from_secs(10))? {
                    Some(0) => {}
                    Some(code) => {
                        eprintln!("chaos: {} {} exited with {code}", role.name(), s.id);
                        bad_exits += 1;
                    }
                    None => {
                        eprintln!("chaos: {} {} did not finish: killed", role.name(), s.id);
                        hung += 1;
                    }
                }
                CHILDREN[v].store(0, SeqCst);
            }
            Ok(())
        };
        st.stop_producers.store(1, SeqCst);
        finish(&slots, Role::Producer)?;
        drop(guard);
        finish(&slots, Role::Consumer)?;
        st.stop_sync.store(1, SeqCst);
        // Wake condition waiters: the workers that would update `gen` leave.
        st.cond.notify_all();
        finish(&slots, Role::Sync)?;
        let drain_secs = drain_start.elapsed().as_secs_f64();
        // SAFETY: disarms the alarm.
        unsafe { libc::alarm(0) };

        q.reap_dead();
        let lost = q.lost();
        let lost_after_kills = lost - last_lost;
        let endpoints_left = q.endpoints();

        // ------------------------------------------------------------ ledger
        let ledger = &ctx.ledger;
        let mut finals = [0u64; PRODUCERS];
        let mut delivered = 0u64;
        let mut never_sent_delivered = 0u64;
        for (p, f) in finals.iter_mut().enumerate() {
            *f = st.done[p].load(SeqCst);
            let (n, beyond) = ledger.count(p, *f);
            delivered += n;
            never_sent_delivered += beyond;
        }
        // Per-kill classification.
        let mut producer_kills = 0u64;
        let mut consumer_kills = 0u64;
        let mut sync_kills = 0u64;
        let mut inflight_total = 0u64;
        let mut inflight_delivered = 0u64;
        let mut inflight_lost = 0u64;
        let mut inflight_unclaimed = 0u64;
        let mut overlap = 0u64;
        let mut overlap_candidates = 0u64;
        let mut consumer_lost_unrecorded = 0u64;
        let mut anomalies = Vec::new();
        // Messages a consumer kill lost before recording them.
        let lost_in_hand: Vec<(usize, u64)> = kills
            .iter()
            .filter(|k| k.role == Role::Consumer && k.lost > 0)
            .filter_map(|k| k.inhand)
            .filter(|&(p, s)| !ledger.is_set(p, s))
            .collect();
        for (i, k) in kills.iter().enumerate() {
            match k.role {
                Role::Producer => {
                    producer_kills += 1;
                    let Some(seq) = k.inflight else {
                        if k.lost > 0 {
                            anomalies.push(format!(
                                "kill {i} (producer, nothing in flight) lost {}",
                                k.lost
                            ));
                        }
                        continue;
                    };
                    let p = k.id;
                    inflight_total += 1;
                    if ledger.is_set(p, seq) {
                        inflight_delivered += 1;
                        if k.lost > 0 {
                            anomalies.push(format!(
                                "kill {i} (producer, in-flight message delivered) lost {}",
                                k.lost
                            ));
                        }
                    } else if k.lost > 0 || lost_in_hand.contains(&(p, seq)) {
                        inflight_lost += 1;
                        if k.lost > 1 {
                            anomalies.push(format!("kill {i} (producer) lost {}", k.lost));
                        }
                    } else {
                        inflight_unclaimed += 1;
                    }
                }
                Role::Consumer => {
                    consumer_kills += 1;
                    match k.inhand {
                        Some((p, s)) if ledger.is_set(p, s) => {
                            overlap_candidates += 1;
                            if k.lost > 0 {
                                overlap += 1;
                            }
                        }
                        _ => {
                            if k.lost > 0 {
                                consumer_lost_unrecorded += 1;
                            }
                        }
                    }
                    if k.lost > 1 {
                        anomalies.push(format!("kill {i} (consumer) lost {}", k.lost));
                    }
                }
                Role::Sync => {
                    sync_kills += 1;
                    if k.lost > 0 {
                        anomalies.push(format!("kill {i} (sync worker) lost {}", k.lost));
                    }
                }
            }
        }
        if lost_before_kills > 0 {
            anomalies.push(format!("{lost_before_kills} lost before the first kill"));
        }
        if lost_after_kills > 0 {
            anomalies.push(format!("{lost_after_kills} lost after the last kill"));
        }
        let attempted: u64 = finals.iter().sum();
        let confirmed = attempted - inflight_total;
        let sent = confirmed + inflight_delivered + inflight_lost;
        let missing = sent.saturating_sub(delivered);
        let duplicated = st.duplicated.load(SeqCst);
        let corrupted = st.corrupted.load(SeqCst);

        // ------------------------------------------------------------ timing
        let blocked: Vec<u64> = st.blocked_max.iter().map(|a| a.load(SeqCst)).collect();
        let straddled: Vec<u64> = st.straddled.iter().map(|a| a.load(SeqCst)).collect();
        let longest_blocked = blocked.iter().copied().max().unwrap_or(0);
        let over_target: u64 = st.over_target.iter().map(|a| a.load(SeqCst)).sum();
        let mut died: Vec<u64> = st
            .died_ns
            .iter()
            .map(|a| a.load(SeqCst))
            .take_while(|&v| v != 0)
            .map(|v| v - 1)
            .collect();
        died.sort_unstable();
        let (d50, d99, dmax) = (
            percentile(&died, 50.0),
            percentile(&died, 99.0),
            died.last().copied().unwrap_or(0),
        );

        // ----------------------------------------------------------- targets
        let ld = |a: &AtomicU64| a.load(SeqCst);
        let sync_errors = ld(&st.inv_violations)
            + ld(&st.sem_over_admission)
            + ld(&st.sem_overflow)
            + ld(&st.barrier_errors)
            + sem_reconcile_failed;
        let child_errors = ld(&st.errors) + unexpected_exits + bad_exits + hung;
        let targets: Vec<(&str, bool, String)> = vec![
            ("duplicated = 0", duplicated == 0, format!("{duplicated}")),
            (
                "corrupted = 0",
                corrupted == 0 && never_sent_delivered == 0,
                format!("{corrupted} (+{never_sent_delivered} delivered never sent)"),
            ),
            (
                "sent = delivered + lost - overlap",
                sent + overlap == delivered + lost
                    && missing + overlap == lost
                    && overlap <= consumer_kills,
                format!("{sent} = {delivered} + {lost} - {overlap}"),
            ),
            (
                "survivor calls return within 1 s of a kill",
                longest_blocked < BLOCK_TARGET_NS && over_target == 0,
                format!("longest {:.1} ms", ms(longest_blocked)),
            ),
            (
                "dead lock owner detected within 100 ms (p99)",
                // No sample is a failure unless the run was too short to
                // expect one.
                if died.is_empty() {
                    sync_kills < 10
                } else {
                    d99 < DETECT_TARGET_NS
                },
                if died.is_empty() {
                    format!("n/a: no sample in {sync_kills} sync-worker kills")
                } else {
                    format!("p99 {:.1} ms over {} samples", ms(d99), died.len())
                },
            ),
            (
                "sync invariants hold",
                sync_errors == 0,
                format!("{sync_errors} violations"),
            ),
            (
                "no child error, hang or unexpected exit",
                child_errors == 0,
                format!("{child_errors}"),
            ),
            (
                "every endpoint gone at the end",
                endpoints_left == (0, 0),
                format!("{endpoints_left:?}"),
            ),
        ];
        let pass = targets.iter().all(|t| t.1);

        // ------------------------------------------------------------ report
        let kills_n = kills.len() as u64;
        let rows: Vec<(String, String)> = vec![
            (
                "kill phase".into(),
                format!("{chaos_secs:.1} s (seed {})", args.seed),
            ),
            ("drain".into(), format!("{drain_secs:.2} s")),
            (
                "kills".into(),
                format!(
                    "{kills_n} ({producer_kills} producers, {consumer_kills} consumers, \
                     {sync_kills} sync workers; {targeted} of {targeted_tries} tries chosen busy); \
                     {restarts} restarts"
                ),
            ),
            ("messages sent".into(), sent.to_string()),
            ("  confirmed (send returned)".into(), confirmed.to_string()),
            (
                "  in flight at a producer kill".into(),
                format!(
                    "{inflight_total}: {inflight_delivered} delivered, {inflight_lost} lost, \
                     {inflight_unclaimed} never claimed (not sent)"
                ),
            ),
            ("delivered".into(), delivered.to_string()),
            ("reported lost (Queue::lost)".into(), lost.to_string()),
            (
                "delivered and counted lost".into(),
                format!(
                    "{overlap} (consumer killed between record and release; \
                     {overlap_candidates} killed after recording)"
                ),
            ),
            (
                "missing (sent, never delivered)".into(),
                format!(
                    "{missing} ({consumer_lost_unrecorded} consumer kills lost one unrecorded)"
                ),
            ),
            ("duplicated".into(), duplicated.to_string()),
            ("corrupted".into(), corrupted.to_string()),
            (
                "queue timeouts".into(),
                format!(
                    "{} send, {} recv; endpoints reaped {}; slow claims {}",
                    ld(&st.send_timeouts),
                    ld(&st.recv_timeouts),
                    q.reaped(),
                    ld(&st.slow_claims)
                ),
            ),
            (
                "producer pauses (ledger full)".into(),
                ld(&st.ledger_full).to_string(),
            ),
            (
                "longest blocked past a kill".into(),
                format!("{:.1} ms", ms(longest_blocked)),
            ),
        ];
        let mut rows = rows;
        for (i, name) in CALLS.iter().enumerate() {
            rows.push((
                format!("  {name}"),
                format!(
                    "{:.1} ms ({} calls across a kill)",
                    ms(blocked[i]),
                    straddled[i]
                ),
            ));
        }
        rows.extend([
            (
                "lock owner died (OwnerDied)".into(),
                format!(
                    "{} ({} killed holding it; {} seen in a condition wait, {} owner unknown)",
                    ld(&st.died),
                    killed_holding_lock,
                    ld(&st.died_in_cond),
                    ld(&st.died_unknown)
                ),
            ),
            (
                "  detection latency".into(),
                format!(
                    "p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} samples)",
                    ms(d50),
                    ms(d99),
                    ms(dmax),
                    died.len()
                ),
            ),
            (
                "lock".into(),
                format!(
                    "{} ops, {} timeouts, invariant repaired {}, violated {}",
                    ld(&st.lock_ops),
                    ld(&st.lock_timeouts),
                    ld(&st.inv_repaired),
                    ld(&st.inv_violations)
                ),
            ),
            (
                "condition".into(),
                format!(
                    "{} waits, {} timed out",
                    ld(&st.cond_waits),
                    ld(&st.cond_timeouts)
                ),
            ),
            (
                "semaphore".into(),
                format!(
                    "{} acquired, {} timeouts, over-admitted {}, over-released {}, \
                     {} permits of killed holders restored ({} by a pause)",
                    ld(&st.sem_acquired),
                    ld(&st.sem_timeouts),
                    ld(&st.sem_over_admission),
                    ld(&st.sem_overflow),
                    sem_restored,
                    sem_reconciles
                ),
            ),
            (
                "barrier".into(),
                format!(
                    "{} generations, {} passes, {} timeouts, {} errors",
                    ld(&st.barrier_trips),
                    ld(&st.barrier_passes),
                    ld(&st.barrier_timeouts),
                    ld(&st.barrier_errors)
                ),
            ),
        ]);

        if !args.json {
            let w = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
            println!();
            for (k, v) in &rows {
                println!("{k:<w$}  {v}");
            }
            println!();
            let tw = targets.iter().map(|t| t.0.len()).max().unwrap_or(0);
            for (name, ok, detail) in &targets {
                println!(
                    "{}  {name:<tw$}  {detail}",
                    if *ok { "PASS" } else { "FAIL" }
                );
            }
            for a in &anomalies {
                println!("note: loss attribution: {a}");
            }
            println!("chaos: {}", if pass { "ok" } else { "FAILED" });
        } else {
            let json = serde_json::json!({
                "seconds": chaos_secs,
                "seed": args.seed,
                "kills": kills_n,
                "kills_producer": producer_kills,
                "kills_consumer": consumer_kills,
                "kills_sync": sync_kills,
                "sent": sent,
                "confirmed": confirmed,
                "inflight": inflight_total,
                "inflight_delivered": inflight_delivered,
                "inflight_lost": inflight_lost,
                "inflight_unclaimed": inflight_unclaimed,
                "delivered": delivered,
                "lost": lost,
                "delivered_and_lost": overlap,
                "missing": missing,
                "duplicated": duplicated,
                "corrupted": corrupted,
                "longest_blocked_ms": ms(longest_blocked),
                "blocked_ms": CALLS.iter().zip(&blocked)
                    .map(|(n, b)| (n.to_string(), serde_json::json!(ms(*b))))
                    .collect::<serde_json::Map<_, _>>(),
                "owner_died": ld(&st.died),
                "detect_samples": died.len(),
                "detect_p50_ms": ms(d50),
                "detect_p99_ms": ms(d99),
                "detect_max_ms": ms(dmax),
                "barrier_generations": ld(&st.barrier_trips),
                "barrier_timeouts": ld(&st.barrier_timeouts),
                "sem_restored": sem_restored,
                "sync_violations": sync_errors,
                "child_errors": child_errors,
                "attribution_notes": anomalies.len(),
                "targets": targets.iter()
                    .map(|(n, ok, _)| (n.to_string(), serde_json::json!(ok)))
                    .collect::<serde_json::Map<_, _>>(),
                "pass": pass,
            });
            println!("{json}");
        }
        Ok(if pass { 0 } else { 1 })
    }
}

#[cfg(not(loom))]
fn main() {
    match app::main() {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("chaos: error: {e}");
            std::process::exit(1);
        }
    }
}

/// Under `--cfg loom` the crate builds only its lock-free core.
#[cfg(loom)]
fn main() {}
