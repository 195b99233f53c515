//! Criterion benchmarks: every [`Transport`](shmring::transport::Transport)
//! between two real processes, and the ring algorithms alone between two
//! threads of one process against the usual in-process queues.
//!
//! The harness is the one of `benches/queue.rs` and `benches/bytes.rs`.
//! Before criterion starts, `main` maps a shared control page and forks:
//!
//! * a watchdog process (unpinned, asleep but for a check every 100 ms): if
//!   the benchmark makes no progress for 60 s (a hung transport, a child that
//!   stopped answering), it kills the benchmark and its children; if the
//!   benchmark dies (a panic, Ctrl-C), it removes the FIFOs' temporary
//!   directory;
//! * then, for every [`TransportKind`](shmring::transport::TransportKind) in
//!   turn, makes a [`Link`](shmring::transport::Link) of that kind and forks
//!   one child that takes [`Link::right`](shmring::transport::Link::right)
//!   while the parent takes `left` (for `fifo` and `tcp` the two meet in
//!   `open(2)` / `accept(2)`). The FIFOs are made in a temporary directory of
//!   this run, which is gone at the end (nothing is created in `/dev/shm`:
//!   the shared-memory transports use anonymous segments).
//!
//! The parent is pinned to CPU 0 and every child to CPU 1 when both exist.
//! For every `iter_custom` call the parent posts a command (what to run, at
//! which size, how many messages, the first sequence number) in the child's
//! control block; the child wakes, says it is ready, and both sides start
//! when the parent has read the clock, so the child's wake-up is not timed.
//! A child sleeps on a futex between commands, so the five that are not
//! being measured leave CPU 1 alone. A child leaves on a final command (the
//! parent then reaps it, killing it after 2 s), or when the parent dies
//! (`PR_SET_PDEATHSIG`).
//!
//! Every message starts with an 8-byte little-endian sequence number, unique
//! across the whole run; both sides check it (and the length) for every
//! message, so nothing can be optimized away and a stale or lost message
//! fails the run. Sizes: 8 B, 1 KiB, 64 KiB (`<size>` is `8B`, `1KiB`,
//! `64KiB`), reported with `Throughput::Bytes(size)`. `<kind>` is one of
//! `shm-spsc`, `shm-mpmc`, `pipe`, `fifo`, `unix`, `tcp`.
//!
//! | id | what is timed, per iteration |
//! | --- | --- |
//! | `floor/rtt` | one round trip of a `u64` through two cache lines between the parent and the `shm-spsc` child (as in `benches/queue.rs`, measured again in this run: the hardware's floor) |
//! | `transport/<kind>/rtt/<size>` | one round trip of `size` bytes through the link: the parent `send`s, the child `recv`s into a reused `Vec`, checks and `send`s the same bytes back, the parent `recv`s and checks them |
//! | `transport/<kind>/stream/<size>` | one message of `size` bytes from child to parent: the child `send`s back to back, the parent `recv`s into a reused `Vec` and checks |
//! | `inproc/rtrb` | one `u64` from a thread on CPU 1 to one on CPU 0 through `rtrb`'s SPSC ring buffer (`push` / `pop`, busy-polling: it has no blocking calls) |
//! | `inproc/crossbeam_channel_bounded` | the same through `crossbeam_channel::bounded` (blocking `send` / `recv`) |
//! | `inproc/std_sync_channel` | the same through `std::sync::mpsc::sync_channel` (blocking `send` / `recv`) |
//! | `inproc/shmring_spsc` | the same through a `shmring::Queue::<u64>::anonymous(Flavor::Spsc, ..)` whose sender and receiver live in two threads of this process (blocking `send` / `recv`, default spin) |
//! | `inproc/shmring_mpmc` | as `inproc/shmring_spsc` with `Flavor::Mpmc` |
//!
//! The `inproc` queues hold 1024 messages and report
//! `Throughput::Elements(1)`; the receiving thread checks every value
//! against its expected sequence number. The links are made with
//! `LinkOptions { max_message_size: 64 KiB, capacity: 64, .. }` and the
//! transports' default settings (the shared-memory ones spin 20 µs before
//! sleeping on a futex, as a program would get them); the kernel transports
//! frame each message with a 4-byte length. Compare figures only within one
//! run: `floor/rtt` is measured alongside for that purpose.
//!
//! ```sh
//! cargo bench --bench transport                 # everything, about 2 min
//! cargo bench --bench transport -- 'rtt/8B'     # the small round trips
//! cargo bench --bench transport -- inproc       # only the in-process rings
//! ```

#[cfg(all(target_os = "linux", not(loom)))]
mod common;

#[cfg(all(target_os = "linux", not(loom)))]
mod imp {
    use crate::common::{
        can_pin, futex_wait, futex_wake, get_seq, map_zeroed, pin, put_seq, spin_until, Line, Reply,
    };
    use criterion::{black_box, BenchmarkId, Criterion, Throughput};
    use nix::sys::signal::{kill, Signal};
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    use nix::unistd::{fork, getpid, getppid, ForkResult, Pid};
    use shmring::transport::{BoxedTransport, Link, LinkOptions, TransportKind};
    use shmring::{Flavor, Queue};
    use std::cell::Cell;
    use std::hint::spin_loop;
    use std::path::Path;
    use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, Ordering};
    use std::time::{Duration, Instant};

    /// Message sizes, with the label used in benchmark ids.
    const SIZES: [(usize, &str); 3] = [(8, "8B"), (1 << 10, "1KiB"), (64 << 10, "64KiB")];
    /// The links' largest message.
    const MAX_MESSAGE: usize = 64 << 10;
    /// Messages buffered per direction by the shared-memory links.
    const SHM_CAPACITY: u64 = 64;
    /// Capacity of the in-process queues.
    const RING: usize = 1024;
    /// Number of transports (one child each).
    const KINDS: usize = TransportKind::ALL.len();
    /// The watchdog kills the run after this long without progress.
    const STALL: Duration = Duration::from_secs(60);

    const EXIT: u32 = 0;
    const FLOOR_RTT: u32 = 1;
    const RTT: u32 = 2;
    const STREAM: u32 = 3;

    /// Written by the parent.
    #[repr(C)]
    struct Command {
        /// Bumped for each command; the child sleeps on it (futex word).
        seq: AtomicU32,
        /// The `seq` of the command the child may start.
        go: AtomicU32,
        kind: AtomicU32,
        /// Index into `SIZES`.
        size: AtomicU32,
        count: AtomicU64,
        /// The sequence number of the first message.
        start: AtomicU64,
    }

    /// One child's control block.
    #[repr(C)]
    struct Control {
        cmd: Line<Command>,
        reply: Line<Reply>,
    }

    /// What the watchdog watches.
    #[repr(C)]
    struct Watch {
        /// Bumped by the parent whenever it makes progress.
        beat: AtomicU64,
        /// Set by the parent when it is done: the watchdog leaves.
        quit: AtomicBool,
        /// The children's pids (0: none yet).
        pids: [AtomicI32; KINDS],
    }

    /// The shared page(s). Valid when all zero.
    #[repr(C)]
    struct Shm {
        watch: Line<Watch>,
        ctl: [Control; KINDS],
        ping: Line<AtomicU64>,
        pong: Line<AtomicU64>,
    }

    /// Maps `Shm` in a `MAP_SHARED | MAP_ANONYMOUS` region, inherited by
    /// forked children. Never unmapped: it lives as long as the process.
    fn map_shm() -> &'static Shm {
        // SAFETY: all-zero bytes are a valid `Shm` (atomics only); its
        // alignment is at most 128.
        unsafe { map_zeroed::<Shm>() }
    }

    /// Tells the watchdog that the run is making progress.
    fn beat(shm: &Shm) {
        // Relaxed: a counter whose changes alone matter.
        shm.watch.beat.fetch_add(1, Ordering::Relaxed);
    }

    /// Forks the watchdog process; returns its pid.
    fn spawn_watchdog(shm: &'static Shm, dir: &Path) -> Pid {
        let parent = getpid();
        // SAFETY: called from `main` before any thread is spawned, so the
        // child starts with consistent memory; it never returns.
        match unsafe { fork() }.expect("fork the watchdog") {
            ForkResult::Child => {
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    watchdog_main(shm, parent, dir)
                }));
                let _ = r;
                std::process::exit(101);
            }
            ForkResult::Parent { child } => child,
        }
    }

    /// The watchdog: see the module docs.
    fn watchdog_main(shm: &'static Shm, parent: Pid, dir: &Path) -> ! {
        let kill_children = || {
            for p in &shm.watch.pids {
                let pid = p.load(Ordering::Acquire);
                if pid > 0 {
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
            }
        };
        let mut last = shm.watch.beat.load(Ordering::Relaxed);
        let mut since = Instant::now();
        loop {
            std::thread::sleep(Duration::from_millis(100));
            if shm.watch.quit.load(Ordering::Acquire) {
                std::process::exit(0);
            }
            if getppid() != parent {
                // The benchmark died: its children die with it (PDEATHSIG);
                // what it left in the temporary directory goes here.
                kill_children();
                let _ = std::fs::remove_dir_all(dir);
                std::process::exit(0);
            }
            let now = shm.watch.beat.load(Ordering::Relaxed);
            if now != last {
                last = now;
                since = Instant::now();
            } else if since.elapsed() > STALL {
                eprintln!(
                    "transport bench watchdog: no progress for {STALL:?}; killing the benchmark"
                );
                kill_children();
                let _ = kill(parent, Signal::SIGKILL);
                let _ = std::fs::remove_dir_all(dir);
                std::process::exit(1);
            }
        }
    }

    /// A child's buffers: one outgoing message per size, one receive buffer.
    struct ChildBufs {
        out: Vec<Vec<u8>>,
        buf: Vec<u8>,
    }

    /// Runs one command in the child.
    fn child_run(
        t: &mut BoxedTransport,
        b: &mut ChildBufs,
        kind: u32,
        idx: usize,
        n: u64,
        start: u64,
    ) {
        let size = SIZES[idx].0;
        match kind {
            RTT => {
                for seq in start..start + n {
                    let len = t.recv(&mut b.buf).expect("child: recv");
                    assert!(
                        len == size && b.buf.len() == size && get_seq(&b.buf) == seq,
                        "child: bad request (length {len}, expected {size} bytes, seq {seq})"
                    );
                    t.send(&b.buf).expect("child: send");
                }
            }
            STREAM => {
                let out = &mut b.out[idx];
                for seq in start..start + n {
                    put_seq(out, seq);
                    t.send(out).expect("child: send");
                }
            }
            other => panic!("child: unknown command {other}"),
        }
    }

    /// A child process: takes the right end of `link` and serves commands
    /// until `EXIT` or the parent's death.
    fn child_main(shm: &'static Shm, idx: usize, link: Link, parent: Pid, pinned: bool) -> ! {
        // SAFETY: prctl(PR_SET_PDEATHSIG) takes plain integers.
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
        let orphaned = || getppid() != parent;
        if orphaned() {
            std::process::exit(1); // the parent died before the prctl
        }
        if pinned {
            pin(1);
        }
        let stalled = || {
            if orphaned() {
                std::process::exit(1);
            }
        };
        let ctl = &shm.ctl[idx];
        let mut t = link.right().expect("child: take the right end");
        let mut bufs = ChildBufs {
            out: SIZES.iter().map(|&(size, _)| vec![0xa5; size]).collect(),
            buf: Vec::with_capacity(MAX_MESSAGE),
        };
        let mut seen = 0u32;
        loop {
            // Wait for the next command: spin for a millisecond (criterion
            // calls back quickly between samples), then sleep, so that idle
            // children leave CPU 1 alone.
            let spin_until_t = Instant::now() + Duration::from_millis(1);
            let seq = loop {
                let s = ctl.cmd.seq.load(Ordering::Acquire);
                if s != seen {
                    break s;
                }
                if Instant::now() < spin_until_t {
                    spin_loop();
                } else {
                    futex_wait(&ctl.cmd.seq, seen, Duration::from_millis(200));
                    stalled();
                }
            };
            seen = seq;
            let kind = ctl.cmd.kind.load(Ordering::Relaxed);
            let size_idx = ctl.cmd.size.load(Ordering::Relaxed) as usize;
            let n = ctl.cmd.count.load(Ordering::Relaxed);
            let start = ctl.cmd.start.load(Ordering::Relaxed);
            if kind == EXIT {
                break;
            }
            ctl.reply.ready.store(seq, Ordering::Release);
            spin_until(|| ctl.cmd.go.load(Ordering::Acquire) == seq, &stalled);
            if kind == FLOOR_RTT {
                for i in 1..=n {
                    spin_until(|| shm.ping.load(Ordering::Acquire) == i, &stalled);
                    shm.pong.store(i, Ordering::Release);
                }
            } else {
                child_run(&mut t, &mut bufs, kind, size_idx, n, start);
            }
            ctl.reply.done.store(seq, Ordering::Release);
        }
        drop(t);
        std::process::exit(0);
    }

    /// The parent's handle on one child: posts commands, and ends and reaps
    /// the child when dropped (also when a benchmark panics).
    struct Child {
        shm: &'static Shm,
        idx: usize,
        pid: Pid,
        seq: Cell<u32>,
        reaped: Cell<bool>,
    }

    impl Child {
        /// Makes a link of `kind` and forks its child (the child of
        /// `TransportKind::ALL[idx]`); returns the child's handle and the
        /// parent's end of the link.
        fn spawn(
            shm: &'static Shm,
            idx: usize,
            kind: TransportKind,
            opts: LinkOptions,
            pinned: bool,
        ) -> (Child, BoxedTransport) {
            let link = Link::new(kind, &opts).unwrap_or_else(|e| panic!("make a {kind} link: {e}"));
            let parent = getpid();
            // SAFETY: called from `main` before criterion starts and before
            // any thread is spawned, so the child starts with consistent
            // memory; it never returns from `child_main`.
            match unsafe { fork() }.expect("fork") {
                ForkResult::Child => {
                    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        child_main(shm, idx, link, parent, pinned)
                    }));
                    // `child_main` only returns by panicking.
                    let _ = r;
                    std::process::exit(101);
                }
                ForkResult::Parent { child } => {
                    shm.watch.pids[idx].store(child.as_raw(), Ordering::Release);
                    let handle = Child {
                        shm,
                        idx,
                        pid: child,
                        seq: Cell::new(0),
                        reaped: Cell::new(false),
                    };
                    // If this fails, `handle` drops: the child is reaped.
                    let end = link
                        .left()
                        .unwrap_or_else(|e| panic!("take the left end of a {kind} link: {e}"));
                    beat(shm);
                    (handle, end)
                }
            }
        }

        fn ctl(&self) -> &'static Control {
            &self.shm.ctl[self.idx]
        }

        /// Panics if the child has exited (called when a wait stalls).
        fn check_alive(&self) {
            if self.reaped.get() {
                panic!("the child process is gone");
            }
            match waitpid(self.pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => {}
                other => {
                    self.reaped.set(true);
                    panic!("the child process exited: {other:?}");
                }
            }
        }

        fn post(&self, kind: u32, size_idx: usize, count: u64, start: u64) -> u32 {
            let ctl = self.ctl();
            let seq = self.seq.get().wrapping_add(1);
            self.seq.set(seq);
            ctl.cmd.kind.store(kind, Ordering::Relaxed);
            ctl.cmd.size.store(size_idx as u32, Ordering::Relaxed);
            ctl.cmd.count.store(count, Ordering::Relaxed);
            ctl.cmd.start.store(start, Ordering::Relaxed);
            // Release: the child reads the fields above after seeing `seq`.
            ctl.cmd.seq.store(seq, Ordering::Release);
            futex_wake(&ctl.cmd.seq);
            seq
        }

        /// Posts a command and waits until the child is ready to run it.
        fn prepare(&self, kind: u32, size_idx: usize, count: u64, start: u64) {
            beat(self.shm);
            let seq = self.post(kind, size_idx, count, start);
            spin_until(
                || self.ctl().reply.ready.load(Ordering::Acquire) == seq,
                &|| self.check_alive(),
            );
        }

        /// Starts the prepared command; returns the start time.
        fn go(&self) -> Instant {
            let t = Instant::now();
            self.ctl().cmd.go.store(self.seq.get(), Ordering::Release);
            t
        }

        /// Waits until the child has finished the command.
        fn finish(&self) {
            let seq = self.seq.get();
            spin_until(
                || self.ctl().reply.done.load(Ordering::Acquire) == seq,
                &|| self.check_alive(),
            );
        }

        fn stalled(&self) -> impl Fn() + '_ {
            || self.check_alive()
        }
    }

    impl Drop for Child {
        fn drop(&mut self) {
            if !self.reaped.get() {
                self.post(EXIT, 0, 0, 0);
                let deadline = Instant::now() + Duration::from_secs(2);
                loop {
                    match waitpid(self.pid, Some(WaitPidFlag::WNOHANG)) {
                        Ok(WaitStatus::StillAlive) if Instant::now() < deadline => {
                            std::thread::sleep(Duration::from_millis(1));
                        }
                        Ok(WaitStatus::StillAlive) => {
                            let _ = kill(self.pid, Signal::SIGKILL);
                            let _ = waitpid(self.pid, None);
                            break;
                        }
                        _ => break,
                    }
                }
                self.reaped.set(true);
            }
            self.shm.watch.pids[self.idx].store(0, Ordering::Release);
        }
    }

    /// The next unused sequence number, across the whole run.
    struct SeqGen(u64);

    impl SeqGen {
        /// Reserves `n` numbers; returns the first.
        fn take(&mut self, n: u64) -> u64 {
            let s = self.0;
            self.0 += n;
            s
        }
    }

    /// `floor/rtt`, with the first child.
    fn floor(c: &mut Criterion, child: &Child) {
        let shm = child.shm;
        let mut g = c.benchmark_group("floor");
        g.bench_function("rtt", |b| {
            b.iter_custom(|iters| {
                shm.ping.store(0, Ordering::Relaxed);
                shm.pong.store(0, Ordering::Relaxed);
                child.prepare(FLOOR_RTT, 0, iters, 0);
                let stalled = child.stalled();
                let t = child.go();
                for i in 1..=iters {
                    shm.ping.store(i, Ordering::Release);
                    spin_until(|| shm.pong.load(Ordering::Acquire) == i, &stalled);
                }
                let e = t.elapsed();
                child.finish();
                e
            })
        });
        g.finish();
    }

    /// `transport/<kind>/rtt/<size>` and `transport/<kind>/stream/<size>`.
    fn transport(c: &mut Criterion, child: &Child, end: &mut BoxedTransport, seqs: &mut SeqGen) {
        let kind = TransportKind::ALL[child.idx];
        let mut g = c.benchmark_group(format!("transport/{kind}"));
        let mut back = Vec::with_capacity(MAX_MESSAGE);
        for (idx, &(size, label)) in SIZES.iter().enumerate() {
            g.throughput(Throughput::Bytes(size as u64));
            let mut msg = vec![0x5a_u8; size];
            g.bench_function(BenchmarkId::new("rtt", label), |b| {
                b.iter_custom(|iters| {
                    let start = seqs.take(iters);
                    child.prepare(RTT, idx, iters, start);
                    let t = child.go();
                    for seq in start..start + iters {
                        put_seq(&mut msg, seq);
                        end.send(&msg).expect("send");
                        let len = end.recv(&mut back).expect("recv");
                        assert!(
                            len == size && back.len() == size && get_seq(&back) == seq,
                            "bad reply"
                        );
                    }
                    let el = t.elapsed();
                    child.finish();
                    el
                })
            });
        }
        for (idx, &(size, label)) in SIZES.iter().enumerate() {
            g.throughput(Throughput::Bytes(size as u64));
            g.bench_function(BenchmarkId::new("stream", label), |b| {
                b.iter_custom(|iters| {
                    let start = seqs.take(iters);
                    child.prepare(STREAM, idx, iters, start);
                    let t = child.go();
                    for seq in start..start + iters {
                        let len = end.recv(&mut back).expect("recv");
                        assert!(
                            len == size && back.len() == size && get_seq(&back) == seq,
                            "bad message"
                        );
                    }
                    let el = t.elapsed();
                    child.finish();
                    el
                })
            });
        }
        g.finish();
    }

    /// Times `consume` (on this thread, CPU 0) receiving `iters` values that
    /// `produce` (on a scoped thread, CPU 1) sends; both start together.
    fn two_threads<P, C>(shm: &Shm, pinned: bool, iters: u64, produce: P, consume: C) -> Duration
    where
        P: FnOnce(u64) + Send,
        C: FnOnce(u64),
    {
        beat(shm);
        let ready = AtomicBool::new(false);
        let go = AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                if pinned {
                    pin(1);
                }
                ready.store(true, Ordering::Release);
                spin_until(|| go.load(Ordering::Acquire), &|| {});
                produce(iters);
            });
            spin_until(|| ready.load(Ordering::Acquire), &|| {});
            let t = Instant::now();
            go.store(true, Ordering::Release);
            consume(iters);
            t.elapsed()
        })
    }

    /// Checks a received value against its sequence number.
    #[inline(always)]
    fn check(v: u64, i: u64) {
        assert!(black_box(v) == i, "got {v}, expected {i}");
    }

    /// `inproc/*`.
    fn inproc(c: &mut Criterion, shm: &Shm, pinned: bool) {
        let mut g = c.benchmark_group("inproc");
        g.throughput(Throughput::Elements(1));

        let (mut tx, mut rx) = rtrb::RingBuffer::<u64>::new(RING);
        g.bench_function("rtrb", |b| {
            b.iter_custom(|iters| {
                let (tx, rx) = (&mut tx, &mut rx);
                two_threads(
                    shm,
                    pinned,
                    iters,
                    move |n| {
                        for i in 0..n {
                            spin_until(|| tx.push(i).is_ok(), &|| {});
                        }
                    },
                    move |n| {
                        for i in 0..n {
                            let mut v = Err(rtrb::PopError::Empty);
                            spin_until(
                                || {
                                    v = rx.pop();
                                    v.is_ok()
                                },
                                &|| {},
                            );
                            check(v.unwrap_or(u64::MAX), i);
                        }
                    },
                )
            })
        });

        let (tx, rx) = crossbeam_channel::bounded::<u64>(RING);
        g.bench_function("crossbeam_channel_bounded", |b| {
            b.iter_custom(|iters| {
                two_threads(
                    shm,
                    pinned,
                    iters,
                    |n| {
                        for i in 0..n {
                            tx.send(i).expect("send");
                        }
                    },
                    |n| {
                        for i in 0..n {
                            check(rx.recv().expect("recv"), i);
                        }
                    },
                )
            })
        });

        let (tx, rx) = std::sync::mpsc::sync_channel::<u64>(RING);
        g.bench_function("std_sync_channel", |b| {
            b.iter_custom(|iters| {
                two_threads(
                    shm,
                    pinned,
                    iters,
                    |n| {
                        for i in 0..n {
                            tx.send(i).expect("send");
                        }
                    },
                    |n| {
                        for i in 0..n {
                            check(rx.recv().expect("recv"), i);
                        }
                    },
                )
            })
        });

        for (name, flavor) in [
            ("shmring_spsc", Flavor::Spsc),
            ("shmring_mpmc", Flavor::Mpmc),
        ] {
            let q = Queue::<u64>::anonymous(flavor, RING as u64).expect("create queue");
            let mut tx = q.sender().expect("attach a sender");
            let rx = q.receiver().expect("attach a receiver");
            g.bench_function(name, |b| {
                b.iter_custom(|iters| {
                    let tx = &mut tx;
                    two_threads(
                        shm,
                        pinned,
                        iters,
                        move |n| {
                            for i in 0..n {
                                tx.send(i).expect("send");
                            }
                        },
                        |n| {
                            for i in 0..n {
                                check(rx.recv().expect("recv"), i);
                            }
                        },
                    )
                })
            });
        }
        g.finish();
    }

    pub fn main() {
        let shm = map_shm();
        let dir = tempfile::Builder::new()
            .prefix("shmring-transport-bench-")
            .tempdir()
            .expect("make a temporary directory");
        // Forked first and unpinned: it sleeps but for a look every 100 ms.
        let watchdog = spawn_watchdog(shm, dir.path());

        let pinned = can_pin();
        if pinned {
            pin(0); // the children inherit this, then move themselves to CPU 1
        } else {
            eprintln!("note: CPUs 0 and 1 are not both available; running unpinned");
        }
        let mut children = Vec::with_capacity(KINDS);
        let mut ends = Vec::with_capacity(KINDS);
        for (idx, &kind) in TransportKind::ALL.iter().enumerate() {
            let opts = LinkOptions {
                max_message_size: MAX_MESSAGE,
                capacity: SHM_CAPACITY,
                fifo_dir: Some(dir.path().to_path_buf()),
                wake_mode: shmring::WakeMode::Fast,
            };
            let (child, end) = Child::spawn(shm, idx, kind, opts, pinned);
            children.push(child);
            ends.push(end);
        }
        let mut seqs = SeqGen(1);

        let mut c = Criterion::default()
            .warm_up_time(Duration::from_millis(400))
            .measurement_time(Duration::from_millis(1500))
            .sample_size(10)
            .nresamples(10_000)
            .configure_from_args();
        floor(&mut c, &children[0]);
        for (child, end) in children.iter().zip(ends.iter_mut()) {
            transport(&mut c, child, end, &mut seqs);
        }
        inproc(&mut c, shm, pinned);

        drop(children);
        drop(ends);
        shm.watch.quit.store(true, Ordering::Release);
        let _ = waitpid(watchdog, None);
        drop(dir);
        c.final_summary();
    }
}

#[cfg(all(target_os = "linux", not(loom)))]
fn main() {
    imp::main();
}

/// Under `--cfg loom` the crate builds only its lock-free core (and it runs
/// on Linux only).
#[cfg(not(all(target_os = "linux", not(loom))))]
fn main() {}
