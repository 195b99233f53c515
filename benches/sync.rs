//! Criterion benchmarks: shmring's [`Lock`](shmring::Lock) against
//! `std::sync::Mutex` and a process-shared pthread mutex, uncontended and
//! contended.
//!
//! Before criterion starts, `main` maps a shared control page (which also
//! holds the pthread mutex and its counter), creates the shmring lock and
//! its counter in an anonymous segment, and forks one child process
//! (nothing is created in `/dev/shm`). The parent is pinned to CPU 0 and
//! the child (and the helper thread of the threaded benchmarks) to CPU 1
//! when both exist. For each `iter_custom` call of a two-process benchmark
//! the parent posts a command in the control page; the child wakes, says it
//! is ready, and both start when the parent has read the clock. Between
//! commands the child sleeps on a futex, leaving CPU 1 to the threads.
//!
//! | id | what is timed, per iteration |
//! | --- | --- |
//! | `uncontended/shmring_lock` | `Lock::lock` + dropping the guard, one thread, the lock in a shmring segment |
//! | `uncontended/std_mutex` | `std::sync::Mutex::lock` + dropping the guard, one thread |
//! | `uncontended/pthread_pshared` | `pthread_mutex_lock` + `pthread_mutex_unlock` of a `PTHREAD_PROCESS_SHARED` mutex in a shared anonymous mapping, one thread |
//! | `contended/shmring_lock_procs` | one lock → increment → unlock of a shared counter guarded by a shmring `Lock`, with two processes (CPU 0 and 1) doing half of the iterations each: total time / total pairs |
//! | `contended/pthread_pshared_procs` | the same with the process-shared pthread mutex |
//! | `contended/std_mutex_threads` | the same with a `std::sync::Mutex<u64>` between two threads of the parent (CPU 0 and 1) |
//! | `contended/shmring_lock_threads` | the same with the shmring `Lock` between two threads of the parent, to separate the lock from the process boundary |
//!
//! The counter is incremented with a plain load and store (no atomic
//! read-modify-write), so only mutual exclusion keeps it exact; it is
//! checked against the number of iterations after every contended sample.
//! The lock and its counter share a cache line in every variant.
//!
//! Compare figures only within one run, on one machine.
//!
//! ```sh
//! cargo bench --bench sync                 # everything, under a minute
//! cargo bench --bench sync -- contended    # only the contended benchmarks
//! ```

#[cfg(all(target_os = "linux", not(loom)))]
mod common;

#[cfg(all(target_os = "linux", not(loom)))]
mod imp {
    use crate::common::{
        can_pin, futex_wait, futex_wake, map_zeroed, pin, spin_until, Line, Reply,
    };
    use criterion::{black_box, Criterion};
    use nix::sys::signal::{kill, Signal};
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    use nix::unistd::{fork, getppid, ForkResult, Pid};
    use shmring::{Lock, OwnerDied, Shared, ShmSafe};
    use std::cell::{Cell, UnsafeCell};
    use std::hint::spin_loop;
    use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
    use std::sync::Mutex;
    use std::time::{Duration, Instant};

    const EXIT: u32 = 0;
    const SHMRING: u32 = 1;
    const PTHREAD: u32 = 2;

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

    /// A process-shared pthread mutex and the counter it guards.
    #[repr(C)]
    struct PthreadCounter {
        mutex: UnsafeCell<libc::pthread_mutex_t>,
        count: AtomicU64,
    }

    // SAFETY: the mutex is only used through the pthread functions, which
    // synchronise its accesses; the counter is atomic.
    unsafe impl Sync for PthreadCounter {}

    impl PthreadCounter {
        /// Initialises the mutex as `PTHREAD_PROCESS_SHARED`.
        fn init(&self) {
            // SAFETY: `attr` is initialised before use and destroyed after;
            // the mutex lies in a live mapping and nobody uses it yet.
            unsafe {
                let mut attr: libc::pthread_mutexattr_t = std::mem::zeroed();
                assert_eq!(libc::pthread_mutexattr_init(&mut attr), 0);
                assert_eq!(
                    libc::pthread_mutexattr_setpshared(&mut attr, libc::PTHREAD_PROCESS_SHARED),
                    0
                );
                assert_eq!(libc::pthread_mutex_init(self.mutex.get(), &attr), 0);
                libc::pthread_mutexattr_destroy(&mut attr);
            }
        }

        #[inline(always)]
        fn lock(&self) {
            // SAFETY: an initialised mutex (`init`) in a live mapping.
            let rc = unsafe { libc::pthread_mutex_lock(self.mutex.get()) };
            debug_assert_eq!(rc, 0);
        }

        #[inline(always)]
        fn unlock(&self) {
            // SAFETY: as in `lock`; this thread holds the mutex.
            let rc = unsafe { libc::pthread_mutex_unlock(self.mutex.get()) };
            debug_assert_eq!(rc, 0);
        }

        /// `n` times: lock, increment the counter, unlock.
        fn pairs(&self, n: u64) {
            for _ in 0..n {
                self.lock();
                // A plain load and store: only the mutex keeps it exact.
                let v = self.count.load(Ordering::Relaxed);
                self.count.store(v + 1, Ordering::Relaxed);
                self.unlock();
            }
        }
    }

    /// The shared page: control words and the pthread mutex with its
    /// counter. Valid when all zero, apart from the mutex (`init`).
    #[repr(C)]
    struct Shm {
        cmd: Line<Command>,
        reply: Line<Reply>,
        pthread: Line<PthreadCounter>,
    }

    /// The shmring lock and the counter it guards, in a shmring segment.
    #[repr(C)]
    struct LockedCounter {
        lock: Lock,
        count: AtomicU64,
    }

    // SAFETY: repr(C); a shmring Lock and an atomic: no pointers, any bits
    // valid.
    unsafe impl ShmSafe for LockedCounter {}

    impl LockedCounter {
        /// `n` times: lock, increment the counter, unlock.
        fn pairs(&self, n: u64) {
            for _ in 0..n {
                let g = self.lock.lock().unwrap_or_else(OwnerDied::into_inner);
                // A plain load and store: only the lock keeps it exact.
                let v = self.count.load(Ordering::Relaxed);
                self.count.store(v + 1, Ordering::Relaxed);
                drop(g);
            }
        }
    }

    /// `n` times: lock, increment, unlock a `std::sync::Mutex<u64>`.
    fn std_pairs(m: &Mutex<u64>, n: u64) {
        for _ in 0..n {
            *m.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        }
    }

    /// Maps `Shm` in a `MAP_SHARED | MAP_ANONYMOUS` region, inherited by
    /// forked children, and initialises the pthread mutex. Never unmapped:
    /// it lives as long as the process.
    fn map_shm() -> &'static Shm {
        // SAFETY: all-zero bytes are a valid `Shm` until the mutex is
        // used, and `init` runs before that; its alignment is 128.
        let shm = unsafe { map_zeroed::<Shm>() };
        shm.pthread.init();
        shm
    }

    /// The child process: runs commands until told to exit.
    fn child_main(shm: &'static Shm, counter: &LockedCounter, parent: Pid, pinned: bool) -> ! {
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
        let mut seen = 0u32;
        loop {
            // Wait for the next command: spin for a millisecond (criterion
            // calls back quickly between samples), then sleep, so that the
            // child leaves CPU 1 to the threaded benchmarks.
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
                SHMRING => counter.pairs(n),
                PTHREAD => shm.pthread.pairs(n),
                other => panic!("child: unknown command {other}"),
            }
            shm.reply.done.store(seq, Ordering::Release);
        }
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
        fn spawn(shm: &'static Shm, counter: &LockedCounter, pinned: bool) -> Child {
            let parent = nix::unistd::getpid();
            // SAFETY: called from `main` before criterion starts and before
            // any thread is spawned, so the child starts with consistent
            // memory; it never returns from `child_main`.
            match unsafe { fork() }.expect("fork") {
                ForkResult::Child => {
                    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        child_main(shm, counter, parent, pinned)
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

    fn uncontended(c: &mut Criterion, counter: &LockedCounter, shm: &Shm) {
        let mut g = c.benchmark_group("uncontended");
        g.bench_function("shmring_lock", |b| {
            b.iter(|| {
                let guard = counter.lock.lock().unwrap_or_else(OwnerDied::into_inner);
                drop(black_box(guard));
            })
        });
        let m = Mutex::new(0u64);
        g.bench_function("std_mutex", |b| {
            b.iter(|| {
                let guard = m.lock().unwrap_or_else(|p| p.into_inner());
                drop(black_box(guard));
            })
        });
        let p = &shm.pthread;
        g.bench_function("pthread_pshared", |b| {
            b.iter(|| {
                p.lock();
                p.unlock();
            })
        });
        g.finish();
    }

    /// One contended sample between the parent and the child: `iters`
    /// lock/unlock pairs in all, half each. `reset`, `run` and `count` act
    /// on the counter under test.
    fn two_processes(
        child: &Child,
        kind: u32,
        iters: u64,
        reset: impl Fn(),
        run: impl Fn(u64),
        count: impl Fn() -> u64,
    ) -> Duration {
        let theirs = iters / 2;
        reset(); // the child is idle: nobody else touches the counter
        child.prepare(kind, theirs);
        let t = child.go();
        run(iters - theirs);
        child.finish();
        let e = t.elapsed();
        let got = count();
        assert_eq!(got, iters, "lost updates: mutual exclusion failed");
        e
    }

    /// One contended sample between this thread and a helper thread (on
    /// CPU 1 when `pinned`): `iters` pairs in all, half each.
    fn two_threads<S: Sync>(
        state: &S,
        pinned: bool,
        iters: u64,
        run: impl Fn(&S, u64) + Sync,
    ) -> Duration {
        let theirs = iters / 2;
        let ready = AtomicBool::new(false);
        let go = AtomicBool::new(false);
        let done = AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                if pinned {
                    pin(1);
                }
                ready.store(true, Ordering::Release);
                spin_until(|| go.load(Ordering::Acquire), &|| {});
                run(state, theirs);
                done.store(true, Ordering::Release);
            });
            spin_until(|| ready.load(Ordering::Acquire), &|| {});
            let t = Instant::now();
            go.store(true, Ordering::Release);
            run(state, iters - theirs);
            spin_until(|| done.load(Ordering::Acquire), &|| {});
            t.elapsed()
        })
    }

    fn contended(c: &mut Criterion, child: &Child, counter: &LockedCounter, pinned: bool) {
        let shm = child.shm;
        let mut g = c.benchmark_group("contended");
        g.bench_function("shmring_lock_procs", |b| {
            b.iter_custom(|iters| {
                two_processes(
                    child,
                    SHMRING,
                    iters,
                    || counter.count.store(0, Ordering::Relaxed),
                    |n| counter.pairs(n),
                    || counter.count.load(Ordering::Relaxed),
                )
            })
        });
        g.bench_function("pthread_pshared_procs", |b| {
            b.iter_custom(|iters| {
                two_processes(
                    child,
                    PTHREAD,
                    iters,
                    || shm.pthread.count.store(0, Ordering::Relaxed),
                    |n| shm.pthread.pairs(n),
                    || shm.pthread.count.load(Ordering::Relaxed),
                )
            })
        });
        g.bench_function("std_mutex_threads", |b| {
            b.iter_custom(|iters| {
                let m = Mutex::new(0u64);
                let e = two_threads(&m, pinned, iters, std_pairs);
                let got = m.into_inner().unwrap_or_else(|p| p.into_inner());
                assert_eq!(got, iters, "lost updates: mutual exclusion failed");
                e
            })
        });
        g.bench_function("shmring_lock_threads", |b| {
            b.iter_custom(|iters| {
                counter.count.store(0, Ordering::Relaxed);
                let e = two_threads(counter, pinned, iters, LockedCounter::pairs);
                let got = counter.count.load(Ordering::Relaxed);
                assert_eq!(got, iters, "lost updates: mutual exclusion failed");
                e
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
        let counter = Shared::anonymous(LockedCounter {
            lock: Lock::new(),
            count: AtomicU64::new(0),
        })
        .expect("create the shmring lock");
        let child = Child::spawn(shm, &counter, pinned);

        let mut c = Criterion::default()
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(3))
            .sample_size(20)
            .configure_from_args();
        uncontended(&mut c, &counter, shm);
        contended(&mut c, &child, &counter, pinned);
        drop(child);
        c.final_summary();
    }
}

#[cfg(all(target_os = "linux", not(loom)))]
fn main() {
    imp::main();
}

/// Elsewhere (and under `--cfg loom`, where the crate builds only its
/// lock-free core) there is nothing to measure.
#[cfg(not(all(target_os = "linux", not(loom))))]
fn main() {}
