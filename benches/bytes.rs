//! Criterion benchmarks: byte messages ([`ByteQueue`](shmring::ByteQueue))
//! copied and loaned, between two real processes, against a minimal
//! shared-memory floor and an in-process `memcpy`.
//!
//! The harness is the one of `benches/queue.rs`. Before criterion starts,
//! `main` maps a shared control page, creates the anonymous byte queues and
//! forks one child process (nothing is created in `/dev/shm`). The parent is
//! pinned to CPU 0 and the child to CPU 1 when both exist. For every
//! `iter_custom` call the parent posts a command (what to run, at which
//! size, how many messages, the first sequence number) in the control page;
//! the child wakes, says it is ready, and both sides start when the parent
//! has read the clock, so the child's wake-up is not timed. The child leaves
//! on a final command, on `SIGKILL` from the parent's cleanup, or when the
//! parent dies (`PR_SET_PDEATHSIG`).
//!
//! Every message starts with an 8-byte little-endian sequence number, unique
//! across the whole run; every iteration checks it (and the length) on the
//! receiving side, so nothing can be optimized away and a stale slot can
//! never pass. Sizes: 8 B, 1 KiB, 64 KiB, 1 MiB (`<size>` is `8B`, `1KiB`,
//! `64KiB`, `1MiB`), reported with `Throughput::Bytes(size)`.
//!
//! | id | what is timed, per iteration |
//! | --- | --- |
//! | `floor/rtt` | one round trip of a `u64` through two cache lines: the parent stores `i` in one, the child busy-polls it and stores `i` in the other (as in `benches/queue.rs`, measured again in this run) |
//! | `bytes_copy/rtt/<size>` | one round trip of `size` bytes through two SPSC byte queues (one each way): the parent `send`s, the child `recv_into`s a reused `Vec` and `send`s the same bytes back, the parent `recv_into`s them: four copies of `size` bytes |
//! | `bytes_loan/rtt/<size>` | the same round trip without the copies: each side `loan(size)`s, writes only the 8-byte header in place and commits; the other reads the header in place with `recv_ref` (the child replies before releasing the request) |
//! | `bytes_copy/stream/<size>` | one message of `size` bytes from child to parent: `send` / `recv_into` a reused `Vec` |
//! | `bytes_loan/stream/<size>` | one message of `size` bytes from child to parent: `loan` + header + `commit` / `recv_ref` (only the header is written and read: the figure is what moving the bytes costs once nobody copies them) |
//! | `memcpy/<size>` | one `copy_from_slice` of `size` bytes between two buffers of the parent: the copy floor |
//! | `xcopy/<size>` | one message of `size` bytes from child to parent through the least a copying queue can do: a ring of bare `size`-byte slots (as many as the stream queue's) in shared memory, head and tail on their own lines with cached peer indices; the child copies its buffer in, the parent copies the slot out. The floor of copying across two cores: what `bytes_copy/stream` pays beyond it is shmring's |
//!
//! The queues use `WakeMode::Fast`, as `shmring bench`'s shm rows do
//! (`SHMRING_BENCH_STRICT=1`: the default `Strict`, a fence per message).
//! The round-trip queues hold 4 messages; each streaming queue holds
//! 8 MiB of slots, at most 1024 (8 B: 1024, 1 KiB: 1024, 64 KiB: 128,
//! 1 MiB: 8). Every byte endpoint spins up to 10 ms before sleeping (the
//! default is 20 µs), so that a waiter is still spinning when its peer has
//! finished copying a large message: the figures are the data path, not
//! futex wake-ups. Compare figures only within one run: the floors are
//! measured alongside for that purpose.
//!
//! ```sh
//! cargo bench --bench bytes             # everything, about 70 s
//! cargo bench --bench bytes -- rtt      # only the round trips
//! cargo bench --bench bytes -- 1MiB     # only the 1 MiB messages
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
    use nix::unistd::{fork, getppid, ForkResult, Pid};
    use shmring::{ByteQueue, ByteReceiver, ByteSender, Flavor, WakeMode};
    use std::cell::Cell;
    use std::hint::spin_loop;
    use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
    use std::time::{Duration, Instant};

    /// Message sizes, with the label used in benchmark ids.
    const SIZES: [(usize, &str); 4] = [
        (8, "8B"),
        (1 << 10, "1KiB"),
        (64 << 10, "64KiB"),
        (1 << 20, "1MiB"),
    ];
    /// Capacity of the round-trip queues (at most one message is in flight).
    const RTT_CAPACITY: u64 = 4;
    /// Slot bytes of each streaming queue.
    const STREAM_BYTES: usize = 8 << 20;
    /// At most this many slots in a streaming queue.
    const STREAM_MAX_SLOTS: usize = 1024;
    /// The queues' wake protocol: `Fast`, as `shmring bench`'s shm rows, so
    /// that the figures are the data path; the default `Strict` adds a
    /// `SeqCst` fence per message on each side (`SHMRING_BENCH_STRICT=1`
    /// measures it).
    fn wake() -> WakeMode {
        if std::env::var_os("SHMRING_BENCH_STRICT").is_some() {
            WakeMode::Strict
        } else {
            WakeMode::Fast
        }
    }
    /// How long every byte endpoint spins before sleeping.
    const SPIN: Duration = Duration::from_millis(10);

    const EXIT: u32 = 0;
    const FLOOR_RTT: u32 = 1;
    const COPY_RTT: u32 = 2;
    const LOAN_RTT: u32 = 3;
    const COPY_STREAM: u32 = 4;
    const LOAN_STREAM: u32 = 5;
    const XCOPY_STREAM: u32 = 6;

    fn stream_capacity(size: usize) -> u64 {
        (STREAM_BYTES / size).clamp(1, STREAM_MAX_SLOTS) as u64
    }

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
        /// The sequence number of the first message (streams).
        start: AtomicU64,
    }

    /// The shared page: control words and the floor's ping-pong lines.
    /// Valid when all zero.
    #[repr(C)]
    struct Shm {
        cmd: Line<Command>,
        reply: Line<Reply>,
        ping: Line<AtomicU64>,
        pong: Line<AtomicU64>,
    }

    /// The `xcopy` floor's ring: bare slots, no stamps, no endpoints.
    #[repr(C)]
    struct XRing {
        /// Next position the parent reads (written by the parent).
        head: Line<AtomicU64>,
        /// Next position the child writes (written by the child).
        tail: Line<AtomicU64>,
        /// `stream_capacity(size)` slots of `size` bytes (at most 8 MiB).
        data: std::cell::UnsafeCell<[u8; STREAM_BYTES]>,
    }

    impl XRing {
        /// Slot `pos` of a ring of `size`-byte slots.
        fn slot(&self, pos: u64, size: usize) -> *mut u8 {
            let slots = stream_capacity(size);
            // SAFETY: (pos % slots) * size + size <= slots * size <= STREAM_BYTES.
            unsafe {
                self.data
                    .get()
                    .cast::<u8>()
                    .add((pos % slots) as usize * size)
            }
        }
    }

    /// Maps the `xcopy` ring, shared with the child as `Shm` is.
    fn map_xring() -> &'static XRing {
        // SAFETY: all-zero bytes are a valid `XRing` (atomics and bytes).
        unsafe { map_zeroed::<XRing>() }
    }

    /// Maps `Shm` in a `MAP_SHARED | MAP_ANONYMOUS` region, inherited by
    /// forked children. Never unmapped: it lives as long as the process.
    fn map_shm() -> &'static Shm {
        // SAFETY: all-zero bytes are a valid `Shm` (atomics only); its
        // alignment is at most 128.
        unsafe { map_zeroed::<Shm>() }
    }

    /// The queues of one size, created (anonymous memfds) before the fork.
    struct SizeQueues {
        /// Parent -> child, round trips.
        req: ByteQueue,
        /// Child -> parent, round trips.
        resp: ByteQueue,
        /// Child -> parent, streams.
        stream: ByteQueue,
    }

    fn queues() -> Vec<SizeQueues> {
        let q = |cap: u64, size: usize| {
            ByteQueue::builder()
                .flavor(Flavor::Spsc)
                .capacity(cap)
                .max_message_size(size as u64)
                .wake_mode(wake())
                .create_anonymous()
                .expect("create byte queue")
        };
        SIZES
            .iter()
            .map(|&(size, _)| SizeQueues {
                req: q(RTT_CAPACITY, size),
                resp: q(RTT_CAPACITY, size),
                stream: q(stream_capacity(size), size),
            })
            .collect()
    }

    /// The parent's endpoints for one size.
    struct ParentEnds {
        req: ByteSender,
        resp: ByteReceiver,
        stream: ByteReceiver,
    }

    /// The child's endpoints for one size, attached in the child (a handle
    /// inherited through `fork` belongs to the parent), and its buffers.
    struct ChildEnds {
        req: ByteReceiver,
        resp: ByteSender,
        stream: ByteSender,
        /// What `bytes_copy/stream` sends (header rewritten per message).
        out: Vec<u8>,
        /// What `bytes_copy/rtt` receives into.
        buf: Vec<u8>,
    }

    fn parent_ends(queues: &[SizeQueues]) -> Vec<ParentEnds> {
        queues
            .iter()
            .map(|q| {
                let mut e = ParentEnds {
                    req: q.req.sender().expect("attach"),
                    resp: q.resp.receiver().expect("attach"),
                    stream: q.stream.receiver().expect("attach"),
                };
                e.req.set_spin(SPIN);
                e.resp.set_spin(SPIN);
                e.stream.set_spin(SPIN);
                e
            })
            .collect()
    }

    fn child_ends(queues: &[SizeQueues]) -> Vec<ChildEnds> {
        queues
            .iter()
            .zip(SIZES)
            .map(|(q, (size, _))| {
                let mut e = ChildEnds {
                    req: q.req.receiver().expect("child: attach"),
                    resp: q.resp.sender().expect("child: attach"),
                    stream: q.stream.sender().expect("child: attach"),
                    out: vec![0xa5; size],
                    buf: vec![0; size],
                };
                e.req.set_spin(SPIN);
                e.resp.set_spin(SPIN);
                e.stream.set_spin(SPIN);
                e
            })
            .collect()
    }

    /// Runs one command in the child.
    fn child_run(e: &mut ChildEnds, kind: u32, size: usize, n: u64, start: u64) {
        match kind {
            COPY_RTT => {
                for _ in 0..n {
                    let len = e.req.recv_into(&mut e.buf).expect("child: recv_into");
                    assert_eq!(len, size, "child: request length");
                    e.resp.send(&e.buf).expect("child: send");
                }
            }
            LOAN_RTT => {
                for _ in 0..n {
                    let r = e.req.recv_ref().expect("child: recv_ref");
                    assert_eq!(r.len(), size, "child: request length");
                    let mut l = e.resp.loan(size).expect("child: loan");
                    put_seq(&mut l, get_seq(&r));
                    l.commit();
                    // `r` goes back to the parent's sender here, after the
                    // reply: the release is off the round trip's path.
                }
            }
            COPY_STREAM => {
                for seq in start..start + n {
                    put_seq(&mut e.out, seq);
                    e.stream.send(&e.out).expect("child: send");
                }
            }
            LOAN_STREAM => {
                for seq in start..start + n {
                    let mut l = e.stream.loan(size).expect("child: loan");
                    put_seq(&mut l, seq);
                    l.commit();
                }
            }
            XCOPY_STREAM => {
                let x = xring();
                let slots = stream_capacity(size);
                let mut cached_head = 0u64;
                for (tail, seq) in (start..start + n).enumerate() {
                    let tail = tail as u64;
                    if tail - cached_head == slots {
                        // Acquire: the parent's copy out happens before ours in.
                        spin_until(
                            || {
                                cached_head = x.head.load(Ordering::Acquire);
                                tail - cached_head < slots
                            },
                            &|| {},
                        );
                    }
                    put_seq(&mut e.out, seq);
                    // SAFETY: the slot is free (head > tail - slots) and ours.
                    unsafe {
                        std::ptr::copy_nonoverlapping(e.out.as_ptr(), x.slot(tail, size), size)
                    };
                    // Release: the copy happens before the parent's.
                    x.tail.store(tail + 1, Ordering::Release);
                }
            }
            other => panic!("child: unknown command {other}"),
        }
    }

    /// The child process: serves commands until `EXIT` or the parent's death.
    fn child_main(shm: &'static Shm, queues: &[SizeQueues], parent: Pid, pinned: bool) -> ! {
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
        let mut ends = child_ends(queues);
        let mut seen = 0u32;
        loop {
            // Wait for the next command: spin for a millisecond (criterion
            // calls back quickly between samples), then sleep, so that the
            // child leaves CPU 1 alone during `memcpy`.
            let spin_until_t = Instant::now() + Duration::from_millis(1);
            let seq = loop {
                let s = shm.cmd.seq.load(Ordering::Acquire);
                if s != seen {
                    break s;
                }
                if Instant::now() < spin_until_t {
                    spin_loop();
                } else {
                    futex_wait(&shm.cmd.seq, seen, Duration::from_millis(200));
                    stalled();
                }
            };
            seen = seq;
            let kind = shm.cmd.kind.load(Ordering::Relaxed);
            let size_idx = shm.cmd.size.load(Ordering::Relaxed) as usize;
            let n = shm.cmd.count.load(Ordering::Relaxed);
            let start = shm.cmd.start.load(Ordering::Relaxed);
            if kind == EXIT {
                break;
            }
            shm.reply.ready.store(seq, Ordering::Release);
            spin_until(|| shm.cmd.go.load(Ordering::Acquire) == seq, &stalled);
            if kind == FLOOR_RTT {
                for i in 1..=n {
                    spin_until(|| shm.ping.load(Ordering::Acquire) == i, &stalled);
                    shm.pong.store(i, Ordering::Release);
                }
            } else {
                child_run(&mut ends[size_idx], kind, SIZES[size_idx].0, n, start);
            }
            shm.reply.done.store(seq, Ordering::Release);
        }
        drop(ends);
        std::process::exit(0);
    }

    /// The parent's handle on the child: posts commands, and kills and reaps
    /// the child when dropped (also when a benchmark panics).
    struct Child {
        shm: &'static Shm,
        pid: Pid,
        seq: Cell<u32>,
        reaped: Cell<bool>,
    }

    impl Child {
        fn spawn(shm: &'static Shm, queues: &[SizeQueues], pinned: bool) -> Child {
            let parent = nix::unistd::getpid();
            // SAFETY: called from `main` before criterion starts and before
            // any thread is spawned, so the child starts with consistent
            // memory; it never returns from `child_main`.
            match unsafe { fork() }.expect("fork") {
                ForkResult::Child => {
                    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        child_main(shm, queues, parent, pinned)
                    }));
                    // `child_main` only returns by panicking.
                    let _ = r;
                    std::process::exit(101);
                }
                ForkResult::Parent { child } => Child {
                    shm,
                    pid: child,
                    seq: Cell::new(0),
                    reaped: Cell::new(false),
                },
            }
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
            let seq = self.seq.get().wrapping_add(1);
            self.seq.set(seq);
            self.shm.cmd.kind.store(kind, Ordering::Relaxed);
            self.shm.cmd.size.store(size_idx as u32, Ordering::Relaxed);
            self.shm.cmd.count.store(count, Ordering::Relaxed);
            self.shm.cmd.start.store(start, Ordering::Relaxed);
            // Release: the child reads the fields above after seeing `seq`.
            self.shm.cmd.seq.store(seq, Ordering::Release);
            futex_wake(&self.shm.cmd.seq);
            seq
        }

        /// Posts a command and waits until the child is ready to run it.
        fn prepare(&self, kind: u32, size_idx: usize, count: u64, start: u64) {
            let seq = self.post(kind, size_idx, count, start);
            spin_until(
                || self.shm.reply.ready.load(Ordering::Acquire) == seq,
                &|| self.check_alive(),
            );
        }

        /// Starts the prepared command; returns the start time.
        fn go(&self) -> Instant {
            let t = Instant::now();
            self.shm.cmd.go.store(self.seq.get(), Ordering::Release);
            t
        }

        /// Waits until the child has finished the command.
        fn finish(&self) {
            let seq = self.seq.get();
            spin_until(
                || self.shm.reply.done.load(Ordering::Acquire) == seq,
                &|| self.check_alive(),
            );
        }

        fn stalled(&self) -> impl Fn() + '_ {
            || self.check_alive()
        }
    }

    impl Drop for Child {
        fn drop(&mut self) {
            if self.reaped.get() {
                return;
            }
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
    }

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

    /// `bytes_copy/rtt`, `bytes_loan/rtt`.
    fn rtt(c: &mut Criterion, child: &Child, ends: &mut [ParentEnds], seqs: &mut SeqGen) {
        let mut g = c.benchmark_group("bytes_copy");
        for (idx, (&(size, label), e)) in SIZES.iter().zip(ends.iter_mut()).enumerate() {
            g.throughput(Throughput::Bytes(size as u64));
            let mut msg = vec![0x5a_u8; size];
            let mut back = Vec::with_capacity(size);
            g.bench_function(BenchmarkId::new("rtt", label), |b| {
                b.iter_custom(|iters| {
                    let start = seqs.take(iters);
                    child.prepare(COPY_RTT, idx, iters, start);
                    let t = child.go();
                    for seq in start..start + iters {
                        put_seq(&mut msg, seq);
                        e.req.send(&msg).expect("send");
                        let len = e.resp.recv_into(&mut back).expect("recv_into");
                        assert!(len == size && get_seq(&back) == seq, "bad reply");
                    }
                    let el = t.elapsed();
                    child.finish();
                    el
                })
            });
        }
        g.finish();

        let mut g = c.benchmark_group("bytes_loan");
        for (idx, (&(size, label), e)) in SIZES.iter().zip(ends.iter_mut()).enumerate() {
            g.throughput(Throughput::Bytes(size as u64));
            g.bench_function(BenchmarkId::new("rtt", label), |b| {
                b.iter_custom(|iters| {
                    let start = seqs.take(iters);
                    child.prepare(LOAN_RTT, idx, iters, start);
                    let t = child.go();
                    for seq in start..start + iters {
                        let mut l = e.req.loan(size).expect("loan");
                        put_seq(&mut l, seq);
                        l.commit();
                        let r = e.resp.recv_ref().expect("recv_ref");
                        assert!(r.len() == size && get_seq(&r) == seq, "bad reply");
                    }
                    let el = t.elapsed();
                    child.finish();
                    el
                })
            });
        }
        g.finish();
    }

    /// `bytes_copy/stream`, `bytes_loan/stream`.
    fn stream(c: &mut Criterion, child: &Child, ends: &mut [ParentEnds], seqs: &mut SeqGen) {
        let mut g = c.benchmark_group("bytes_copy");
        for (idx, (&(size, label), e)) in SIZES.iter().zip(ends.iter_mut()).enumerate() {
            g.throughput(Throughput::Bytes(size as u64));
            let mut buf = Vec::with_capacity(size);
            g.bench_function(BenchmarkId::new("stream", label), |b| {
                b.iter_custom(|iters| {
                    let start = seqs.take(iters);
                    child.prepare(COPY_STREAM, idx, iters, start);
                    let t = child.go();
                    for seq in start..start + iters {
                        let len = e.stream.recv_into(&mut buf).expect("recv_into");
                        assert!(len == size && get_seq(&buf) == seq, "bad message");
                    }
                    let el = t.elapsed();
                    child.finish();
                    el
                })
            });
        }
        g.finish();

        let mut g = c.benchmark_group("bytes_loan");
        for (idx, (&(size, label), e)) in SIZES.iter().zip(ends.iter_mut()).enumerate() {
            g.throughput(Throughput::Bytes(size as u64));
            g.bench_function(BenchmarkId::new("stream", label), |b| {
                b.iter_custom(|iters| {
                    let start = seqs.take(iters);
                    child.prepare(LOAN_STREAM, idx, iters, start);
                    let t = child.go();
                    for seq in start..start + iters {
                        let r = e.stream.recv_ref().expect("recv_ref");
                        assert!(r.len() == size && get_seq(&r) == seq, "bad message");
                    }
                    let el = t.elapsed();
                    child.finish();
                    el
                })
            });
        }
        g.finish();
    }

    /// The `xcopy` ring, mapped by `main` before the fork.
    static XRING: std::sync::OnceLock<usize> = std::sync::OnceLock::new();

    fn xring() -> &'static XRing {
        // SAFETY: set once by `main` to a `&'static XRing` before anything
        // reads it (in both processes: the child inherits it).
        unsafe { &*(*XRING.get().expect("xcopy ring mapped") as *const XRing) }
    }

    /// `xcopy/<size>`: the floor of a copying stream across two cores.
    fn xcopy(c: &mut Criterion, child: &Child, seqs: &mut SeqGen) {
        let x = xring();
        let mut g = c.benchmark_group("xcopy");
        for (idx, &(size, label)) in SIZES.iter().enumerate() {
            g.throughput(Throughput::Bytes(size as u64));
            let mut buf = vec![0u8; size];
            g.bench_function(BenchmarkId::from_parameter(label), |b| {
                b.iter_custom(|iters| {
                    x.head.store(0, Ordering::Relaxed);
                    x.tail.store(0, Ordering::Relaxed);
                    let start = seqs.take(iters);
                    child.prepare(XCOPY_STREAM, idx, iters, start);
                    let stalled = child.stalled();
                    let t = child.go();
                    let mut cached_tail = 0u64;
                    for i in 0..iters {
                        if i == cached_tail {
                            // Acquire: the child's copy in happens before ours out.
                            spin_until(
                                || {
                                    cached_tail = x.tail.load(Ordering::Acquire);
                                    i != cached_tail
                                },
                                &stalled,
                            );
                        }
                        // SAFETY: position i is published (tail > i) and not
                        // overwritten before we move head past it.
                        unsafe {
                            std::ptr::copy_nonoverlapping(x.slot(i, size), buf.as_mut_ptr(), size)
                        };
                        assert_eq!(get_seq(&buf), start + i, "bad message");
                        // Release: our copy out happens before the child's next copy in.
                        x.head.store(i + 1, Ordering::Release);
                    }
                    let el = t.elapsed();
                    child.finish();
                    el
                })
            });
        }
        g.finish();
    }

    /// `memcpy/<size>`: the copy floor, in the parent alone.
    fn memcpy(c: &mut Criterion) {
        let mut g = c.benchmark_group("memcpy");
        for &(size, label) in &SIZES {
            g.throughput(Throughput::Bytes(size as u64));
            let mut src = vec![0x5a_u8; size];
            let mut dst = vec![0u8; size];
            let mut seq = 0u64;
            g.bench_function(BenchmarkId::from_parameter(label), |b| {
                b.iter(|| {
                    seq += 1;
                    put_seq(&mut src, seq);
                    dst.copy_from_slice(black_box(&src));
                    assert_eq!(get_seq(black_box(&dst)), seq);
                })
            });
        }
        g.finish();
    }

    pub fn main() {
        let pinned = can_pin();
        if pinned {
            pin(0); // the child inherits this, then moves itself to CPU 1
        } else {
            eprintln!("note: CPUs 0 and 1 are not both available; running unpinned");
        }
        let shm = map_shm();
        XRING
            .set(map_xring() as *const XRing as usize)
            .expect("mapped once");
        let queues = queues();
        let child = Child::spawn(shm, &queues, pinned);
        let mut ends = parent_ends(&queues);
        let mut seqs = SeqGen(1);

        let mut c = Criterion::default()
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2))
            .sample_size(15)
            .nresamples(20_000)
            .configure_from_args();
        floor(&mut c, &child);
        rtt(&mut c, &child, &mut ends, &mut seqs);
        stream(&mut c, &child, &mut ends, &mut seqs);
        xcopy(&mut c, &child, &mut seqs);
        memcpy(&mut c);
        drop(child);
        drop(ends);
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
