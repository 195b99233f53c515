//! Criterion benchmarks: shmring's queues against a minimal shared-memory
//! floor, between two real processes.
//!
//! Before criterion starts, `main` maps a shared control page, creates the
//! anonymous queues and forks one child process (nothing is created in
//! `/dev/shm`). The parent is pinned to CPU 0 and the child to CPU 1 when
//! both exist. For every `iter_custom` call the parent posts a command (what
//! to run, how many messages) in the control page; the child wakes, says it
//! is ready, and both sides start when the parent has read the clock, so the
//! child's wake-up is not timed. The child leaves on a final command, on
//! `SIGKILL` from the parent's cleanup, or when the parent dies
//! (`PR_SET_PDEATHSIG`).
//!
//! | id | what is timed, per iteration |
//! | --- | --- |
//! | `floor/rtt` | one round trip of a `u64` through two cache lines: the parent stores `i` in one, the child busy-polls it and stores `i` in the other |
//! | `spsc/rtt`, `mpmc/rtt` | one round trip of a `u64` through two shmring queues (one each way), `send` + `recv` (default spin) |
//! | `floor/stream` | one `u64` from child to parent through a minimal SPSC ring in shared memory (head and tail on their own 128-byte lines, cached peer index) |
//! | `spsc/stream`, `mpmc/stream` | one `u64` from child to parent through a shmring queue, `send` / `recv` |
//! | `spsc/stream_slice`, `mpmc/stream_slice` | as `spsc/stream`, `mpmc/stream` with `send_slice` / `recv_slice` in batches of 64 (MPMC: one CAS claims a whole run of slots) |
//! | `arrayqueue/stream` | one `u64` between two threads of the parent (CPU 0 and 1) through crossbeam's `ArrayQueue`, the in-process MPMC reference |
//!
//! Every streaming queue holds 1024 messages. Compare figures only within
//! one run: the floors are measured alongside for that purpose.
//!
//! ```sh
//! cargo bench --bench queue                # everything, about a minute
//! cargo bench --bench queue -- stream      # only the streaming benchmarks
//! ```

#[cfg(not(loom))]
mod common;

#[cfg(not(loom))]
mod imp {
    use crate::common::{
        can_pin, futex_wait, futex_wake, map_zeroed, pin, spin_until, Line, Reply,
    };
    use criterion::{black_box, Criterion, Throughput};
    use crossbeam_queue::ArrayQueue;
    use nix::sys::signal::{kill, Signal};
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    use nix::unistd::{fork, getppid, ForkResult, Pid};
    use shmring::{Flavor, Queue, Receiver, Sender};
    use std::cell::Cell;
    use std::hint::spin_loop;
    use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
    use std::time::{Duration, Instant};

    /// Capacity of every streaming queue (and of the floor ring).
    const RING: usize = 1024;
    /// Capacity of the round-trip queues (at most one message is in flight).
    const RTT_CAPACITY: u64 = 64;
    /// Batch size of `spsc/stream_slice`.
    const BATCH: usize = 64;

    const EXIT: u32 = 0;
    const FLOOR_RTT: u32 = 1;
    const SPSC_RTT: u32 = 2;
    const MPMC_RTT: u32 = 3;
    const FLOOR_STREAM: u32 = 4;
    const SPSC_STREAM: u32 = 5;
    const MPMC_STREAM: u32 = 6;
    const SPSC_STREAM_SLICE: u32 = 7;
    const MPMC_STREAM_SLICE: u32 = 8;

    /// Written by the parent.
    #[repr(C)]
    struct Command {
        /// Bumped for each command; the child sleeps on it (futex word).
        seq: AtomicU32,
        /// The `seq` of the command the child may start.
        go: AtomicU32,
        kind: AtomicU32,
        count: AtomicU64,
    }

    /// The shared page(s): control words, the floor's ping-pong lines and
    /// the floor's streaming ring. Valid when all zero.
    #[repr(C)]
    struct Shm {
        cmd: Line<Command>,
        reply: Line<Reply>,
        ping: Line<AtomicU64>,
        pong: Line<AtomicU64>,
        /// Floor ring: next position to read (written by the consumer only).
        head: Line<AtomicU64>,
        /// Floor ring: next position to write (written by the producer only).
        tail: Line<AtomicU64>,
        slots: [AtomicU64; RING],
    }

    /// Maps `Shm` in a `MAP_SHARED | MAP_ANONYMOUS` region, inherited by
    /// forked children. Never unmapped: it lives as long as the process.
    fn map_shm() -> &'static Shm {
        // SAFETY: all-zero bytes are a valid `Shm` (atomics only); its
        // alignment is at most 128.
        unsafe { map_zeroed::<Shm>() }
    }

    /// The queues, created (anonymous memfds) before the fork.
    struct Queues {
        spsc_req: Queue<u64>,
        spsc_resp: Queue<u64>,
        mpmc_req: Queue<u64>,
        mpmc_resp: Queue<u64>,
        spsc_stream: Queue<u64>,
        mpmc_stream: Queue<u64>,
        spsc_slice: Queue<u64>,
        mpmc_slice: Queue<u64>,
    }

    impl Queues {
        fn new() -> Self {
            let q = |flavor, cap| Queue::<u64>::anonymous(flavor, cap).expect("create queue");
            Queues {
                spsc_req: q(Flavor::Spsc, RTT_CAPACITY),
                spsc_resp: q(Flavor::Spsc, RTT_CAPACITY),
                mpmc_req: q(Flavor::Mpmc, RTT_CAPACITY),
                mpmc_resp: q(Flavor::Mpmc, RTT_CAPACITY),
                spsc_stream: q(Flavor::Spsc, RING as u64),
                mpmc_stream: q(Flavor::Mpmc, RING as u64),
                spsc_slice: q(Flavor::Spsc, RING as u64),
                mpmc_slice: q(Flavor::Mpmc, RING as u64),
            }
        }
    }

    /// The parent's endpoints.
    struct ParentEnds {
        spsc_req: Sender<u64>,
        spsc_resp: Receiver<u64>,
        mpmc_req: Sender<u64>,
        mpmc_resp: Receiver<u64>,
        spsc_stream: Receiver<u64>,
        mpmc_stream: Receiver<u64>,
        spsc_slice: Receiver<u64>,
        mpmc_slice: Receiver<u64>,
    }

    /// The child's endpoints, attached in the child (a handle inherited
    /// through `fork` belongs to the parent).
    struct ChildEnds {
        spsc_req: Receiver<u64>,
        spsc_resp: Sender<u64>,
        mpmc_req: Receiver<u64>,
        mpmc_resp: Sender<u64>,
        spsc_stream: Sender<u64>,
        mpmc_stream: Sender<u64>,
        spsc_slice: Sender<u64>,
        mpmc_slice: Sender<u64>,
    }

    fn rtt_server(req: &Receiver<u64>, resp: &Sender<u64>, n: u64) {
        for _ in 0..n {
            let v = req.recv().expect("child: recv request");
            resp.send(v).expect("child: send response");
        }
    }

    fn rtt_client(req: &Sender<u64>, resp: &Receiver<u64>, n: u64) {
        for i in 0..n {
            req.send(i).expect("send request");
            let v = resp.recv().expect("recv response");
            debug_assert_eq!(v, i);
        }
    }

    fn stream_consume(rx: &Receiver<u64>, n: u64) -> u64 {
        let mut sum = 0u64;
        for _ in 0..n {
            sum = sum.wrapping_add(rx.recv().expect("recv"));
        }
        sum
    }

    /// Sum of `0..n`, wrapping: what a stream of `0..n` must add up to.
    fn stream_sum(n: u64) -> u64 {
        let (a, b) = if n.is_multiple_of(2) {
            (n / 2, n.wrapping_sub(1))
        } else {
            (n, (n - 1) / 2)
        };
        a.wrapping_mul(b)
    }

    /// The child process: serves commands until `EXIT` or the parent's death.
    fn child_main(shm: &'static Shm, queues: &Queues, parent: Pid, pinned: bool) -> ! {
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
        let ends = ChildEnds {
            spsc_req: queues.spsc_req.receiver().expect("child: attach"),
            spsc_resp: queues.spsc_resp.sender().expect("child: attach"),
            mpmc_req: queues.mpmc_req.receiver().expect("child: attach"),
            mpmc_resp: queues.mpmc_resp.sender().expect("child: attach"),
            spsc_stream: queues.spsc_stream.sender().expect("child: attach"),
            mpmc_stream: queues.mpmc_stream.sender().expect("child: attach"),
            spsc_slice: queues.spsc_slice.sender().expect("child: attach"),
            mpmc_slice: queues.mpmc_slice.sender().expect("child: attach"),
        };
        let mut buf = [0u64; BATCH];
        let mut seen = 0u32;
        loop {
            // Wait for the next command: spin for a millisecond (criterion
            // calls back quickly between samples), then sleep, so that the
            // child leaves CPU 1 to the `arrayqueue` threads.
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
            let n = shm.cmd.count.load(Ordering::Relaxed);
            if kind == EXIT {
                break;
            }
            shm.reply.ready.store(seq, Ordering::Release);
            spin_until(|| shm.cmd.go.load(Ordering::Acquire) == seq, &stalled);
            match kind {
                FLOOR_RTT => {
                    for i in 1..=n {
                        spin_until(|| shm.ping.load(Ordering::Acquire) == i, &stalled);
                        shm.pong.store(i, Ordering::Release);
                    }
                }
                SPSC_RTT => rtt_server(&ends.spsc_req, &ends.spsc_resp, n),
                MPMC_RTT => rtt_server(&ends.mpmc_req, &ends.mpmc_resp, n),
                FLOOR_STREAM => {
                    // The minimal producer: write the slot, publish the tail;
                    // read the consumer's head only when the cached copy
                    // says the ring is full.
                    let mut cached_head = 0u64;
                    for i in 0..n {
                        if i - cached_head == RING as u64 {
                            spin_until(
                                || {
                                    cached_head = shm.head.load(Ordering::Acquire);
                                    i - cached_head < RING as u64
                                },
                                &stalled,
                            );
                        }
                        shm.slots[i as usize % RING].store(i, Ordering::Relaxed);
                        shm.tail.store(i + 1, Ordering::Release);
                    }
                }
                SPSC_STREAM => {
                    for i in 0..n {
                        ends.spsc_stream.send(i).expect("child: send");
                    }
                }
                MPMC_STREAM => {
                    for i in 0..n {
                        ends.mpmc_stream.send(i).expect("child: send");
                    }
                }
                SPSC_STREAM_SLICE | MPMC_STREAM_SLICE => {
                    let tx = if kind == SPSC_STREAM_SLICE {
                        &ends.spsc_slice
                    } else {
                        &ends.mpmc_slice
                    };
                    let mut sent = 0u64;
                    while sent < n {
                        let k = (n - sent).min(BATCH as u64) as usize;
                        for (b, v) in buf[..k].iter_mut().zip(sent..) {
                            *b = v;
                        }
                        tx.send_slice(&buf[..k]).expect("child: send");
                        sent += k as u64;
                    }
                }
                other => panic!("child: unknown command {other}"),
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
        ends: ParentEnds,
    }

    impl Child {
        fn spawn(shm: &'static Shm, queues: &Queues, pinned: bool) -> Child {
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
                ForkResult::Parent { child } => {
                    let ends = ParentEnds {
                        spsc_req: queues.spsc_req.sender().expect("attach"),
                        spsc_resp: queues.spsc_resp.receiver().expect("attach"),
                        mpmc_req: queues.mpmc_req.sender().expect("attach"),
                        mpmc_resp: queues.mpmc_resp.receiver().expect("attach"),
                        spsc_stream: queues.spsc_stream.receiver().expect("attach"),
                        mpmc_stream: queues.mpmc_stream.receiver().expect("attach"),
                        spsc_slice: queues.spsc_slice.receiver().expect("attach"),
                        mpmc_slice: queues.mpmc_slice.receiver().expect("attach"),
                    };
                    Child {
                        shm,
                        pid: child,
                        seq: Cell::new(0),
                        reaped: Cell::new(false),
                        ends,
                    }
                }
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

        fn post(&self, kind: u32, count: u64) -> u32 {
            let seq = self.seq.get().wrapping_add(1);
            self.seq.set(seq);
            self.shm.cmd.kind.store(kind, Ordering::Relaxed);
            self.shm.cmd.count.store(count, Ordering::Relaxed);
            // Release: the child reads kind and count after seeing `seq`.
            self.shm.cmd.seq.store(seq, Ordering::Release);
            futex_wake(&self.shm.cmd.seq);
            seq
        }

        /// Posts a command and waits until the child is ready to run it.
        fn prepare(&self, kind: u32, count: u64) {
            let seq = self.post(kind, count);
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
            self.post(EXIT, 0);
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
                child.prepare(FLOOR_RTT, iters);
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
        g.throughput(Throughput::Elements(1));
        g.bench_function("stream", |b| {
            b.iter_custom(|iters| {
                shm.head.store(0, Ordering::Relaxed);
                shm.tail.store(0, Ordering::Relaxed);
                child.prepare(FLOOR_STREAM, iters);
                let stalled = child.stalled();
                let t = child.go();
                // The minimal consumer: read the producer's tail only when
                // the cached copy says the ring is empty.
                let mut sum = 0u64;
                let mut cached_tail = 0u64;
                for i in 0..iters {
                    if i == cached_tail {
                        spin_until(
                            || {
                                cached_tail = shm.tail.load(Ordering::Acquire);
                                i != cached_tail
                            },
                            &stalled,
                        );
                    }
                    sum = sum.wrapping_add(shm.slots[i as usize % RING].load(Ordering::Relaxed));
                    shm.head.store(i + 1, Ordering::Release);
                }
                let e = t.elapsed();
                child.finish();
                assert_eq!(black_box(sum), stream_sum(iters));
                e
            })
        });
        g.finish();
    }

    fn shmring_queues(c: &mut Criterion, child: &Child, name: &str) {
        let (req, resp, stream, rtt_kind, stream_kind) = match name {
            "spsc" => (
                &child.ends.spsc_req,
                &child.ends.spsc_resp,
                &child.ends.spsc_stream,
                SPSC_RTT,
                SPSC_STREAM,
            ),
            _ => (
                &child.ends.mpmc_req,
                &child.ends.mpmc_resp,
                &child.ends.mpmc_stream,
                MPMC_RTT,
                MPMC_STREAM,
            ),
        };
        let mut g = c.benchmark_group(name);
        g.bench_function("rtt", |b| {
            b.iter_custom(|iters| {
                child.prepare(rtt_kind, iters);
                let t = child.go();
                rtt_client(req, resp, iters);
                let e = t.elapsed();
                child.finish();
                e
            })
        });
        g.throughput(Throughput::Elements(1));
        g.bench_function("stream", |b| {
            b.iter_custom(|iters| {
                child.prepare(stream_kind, iters);
                let t = child.go();
                let sum = stream_consume(stream, iters);
                let e = t.elapsed();
                child.finish();
                assert_eq!(black_box(sum), stream_sum(iters));
                e
            })
        });
        {
            let (rx, kind) = if name == "spsc" {
                (&child.ends.spsc_slice, SPSC_STREAM_SLICE)
            } else {
                (&child.ends.mpmc_slice, MPMC_STREAM_SLICE)
            };
            g.bench_function("stream_slice", |b| {
                let mut buf = vec![0u64; BATCH];
                b.iter_custom(|iters| {
                    child.prepare(kind, iters);
                    let t = child.go();
                    let mut sum = 0u64;
                    let mut got = 0u64;
                    while got < iters {
                        let want = (iters - got).min(BATCH as u64) as usize;
                        let k = rx.recv_slice(&mut buf[..want]).expect("recv_slice");
                        sum = buf[..k].iter().fold(sum, |s, &v| s.wrapping_add(v));
                        got += k as u64;
                    }
                    let e = t.elapsed();
                    child.finish();
                    assert_eq!(black_box(sum), stream_sum(iters));
                    e
                })
            });
        }
        g.finish();
    }

    fn arrayqueue(c: &mut Criterion, pinned: bool) {
        let q = ArrayQueue::<u64>::new(RING);
        let mut g = c.benchmark_group("arrayqueue");
        g.throughput(Throughput::Elements(1));
        g.bench_function("stream", |b| {
            b.iter_custom(|iters| {
                let ready = AtomicBool::new(false);
                let go = AtomicBool::new(false);
                std::thread::scope(|s| {
                    s.spawn(|| {
                        if pinned {
                            pin(1);
                        }
                        ready.store(true, Ordering::Release);
                        spin_until(|| go.load(Ordering::Acquire), &|| {});
                        for i in 0..iters {
                            spin_until(|| q.push(i).is_ok(), &|| {});
                        }
                    });
                    spin_until(|| ready.load(Ordering::Acquire), &|| {});
                    let t = Instant::now();
                    go.store(true, Ordering::Release);
                    let mut sum = 0u64;
                    for _ in 0..iters {
                        let mut v = None;
                        spin_until(
                            || {
                                v = q.pop();
                                v.is_some()
                            },
                            &|| {},
                        );
                        sum = sum.wrapping_add(v.unwrap_or(0));
                    }
                    let e = t.elapsed();
                    assert_eq!(black_box(sum), stream_sum(iters));
                    e
                })
            })
        });
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
        let queues = Queues::new();
        let child = Child::spawn(shm, &queues, pinned);

        let mut c = Criterion::default()
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(3))
            .sample_size(20)
            .configure_from_args();
        floor(&mut c, &child);
        shmring_queues(&mut c, &child, "spsc");
        shmring_queues(&mut c, &child, "mpmc");
        arrayqueue(&mut c, pinned);
        drop(child);
        c.final_summary();
    }
}

#[cfg(not(loom))]
fn main() {
    imp::main();
}

/// Under `--cfg loom` the crate builds only its lock-free core.
#[cfg(loom)]
fn main() {}
