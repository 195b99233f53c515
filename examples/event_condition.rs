//! Worker processes wait for a start [`Event`], then take items that the
//! parent hands them through a [`Condition`] and a small ring.
//!
//! In Python terms:
//!
//! ```python
//! start = Event()
//! cond = Condition()                 # with its lock
//! def worker(k):
//!     start.wait()                   # until the parent says go
//!     while True:
//!         with cond:
//!             cond.wait_for(lambda: ring or closed)
//!             if not ring: break     # closed and drained
//!             item = ring.popleft()
//!             cond.notify_all()      # room for the producer
//!         received[k].append(item)
//! ```
//!
//! Everything the processes share lives in one `#[repr(C)]` struct in one
//! anonymous segment ([`Shared`], a memfd the children inherit through
//! `fork`, so nothing is left in `/dev/shm`): the start event, a [`Lock`]
//! and two conditions (`not_empty` for the workers, `not_full` for the
//! parent), a ring of four slots, and a table where each worker records
//! what it received.
//!
//! The parent checks that no worker got past the event before it was set,
//! hands out 40 items, closes the ring, reaps the workers and prints what
//! each one received.
//!
//! ```sh
//! cargo run --release --example event_condition
//! ```
//!
//! The parent exits with status 1 unless every item was received exactly
//! once, in increasing order within each worker, and every worker exited
//! cleanly.

#[cfg(not(loom))]
mod app {
    use nix::sys::wait::{waitpid, WaitStatus};
    use nix::unistd::{fork, ForkResult, Pid};
    use shmring::{Condition, Event, Lock, Shared, ShmSafe};
    use std::error::Error;
    use std::io::Write;
    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
    use std::time::{Duration, Instant};

    type Res<T> = Result<T, Box<dyn Error>>;

    const WORKERS: usize = 3;
    const ITEMS: u64 = 40;
    const RING: u64 = 4;
    /// How long anyone waits before deciding that something is stuck.
    const PATIENCE: Duration = Duration::from_secs(5);

    /// The state the parent and the workers share. The ring's fields are
    /// atomics only so that the struct is `Sync`; they are read and written
    /// with the lock held (Relaxed suffices: the lock orders them).
    #[repr(C)]
    struct Handoff {
        start: Event,
        lock: Lock,
        /// Signalled when an item is added or the ring is closed.
        not_empty: Condition,
        /// Signalled when an item is taken.
        not_full: Condition,
        /// Workers that have reached `start.wait()`.
        waiting: AtomicU32,
        /// Workers that have got past it.
        started: AtomicU32,
        /// Next position to take.
        head: AtomicU64,
        /// Next position to fill.
        tail: AtomicU64,
        /// No more items will come.
        closed: AtomicBool,
        slots: [AtomicU64; RING as usize],
        /// What each worker received, in order; written by that worker only.
        received: [[AtomicU64; ITEMS as usize]; WORKERS],
        received_len: [AtomicU32; WORKERS],
    }

    // SAFETY: repr(C); shmring primitives and atomics only: no pointers, and
    // any bit pattern (all zeros included) is a valid value.
    unsafe impl ShmSafe for Handoff {}

    impl Handoff {
        fn new() -> Self {
            Handoff {
                start: Event::new(),
                lock: Lock::new(),
                not_empty: Condition::new(),
                not_full: Condition::new(),
                waiting: AtomicU32::new(0),
                started: AtomicU32::new(0),
                head: AtomicU64::new(0),
                tail: AtomicU64::new(0),
                closed: AtomicBool::new(false),
                slots: [const { AtomicU64::new(0) }; RING as usize],
                received: [const { [const { AtomicU64::new(0) }; ITEMS as usize] }; WORKERS],
                received_len: [const { AtomicU32::new(0) }; WORKERS],
            }
        }

        fn is_empty(&self) -> bool {
            self.head.load(Relaxed) == self.tail.load(Relaxed)
        }

        fn is_full(&self) -> bool {
            self.tail.load(Relaxed) - self.head.load(Relaxed) == RING
        }
    }

    const DIED: &str = "a process died holding the lock";

    /// A worker: waits for the start event, then takes items until the ring
    /// is closed and drained.
    fn worker(h: &Handoff, k: usize) -> Res<()> {
        h.waiting.fetch_add(1, Relaxed);
        if !h.start.wait_timeout(PATIENCE) {
            return Err("the start event was never set".into());
        }
        h.started.fetch_add(1, Relaxed);
        loop {
            let guard = h.lock.lock().map_err(|_| DIED)?;
            let (guard, waited) = h
                .not_empty
                .wait_while_timeout(guard, PATIENCE, || h.is_empty() && !h.closed.load(Relaxed))
                .map_err(|_| DIED)?;
            if waited.timed_out() {
                return Err("no item and no close within the time limit".into());
            }
            if h.is_empty() {
                break; // closed and drained
            }
            let head = h.head.load(Relaxed);
            let item = h.slots[(head % RING) as usize].load(Relaxed);
            h.head.store(head + 1, Relaxed);
            drop(guard);
            h.not_full.notify_one();

            let n = h.received_len[k].load(Relaxed) as usize;
            if n == ITEMS as usize {
                return Err("received more items than were sent".into());
            }
            h.received[k][n].store(item, Relaxed);
            h.received_len[k].store(n as u32 + 1, Relaxed);
            // "Process" the item, so that the others get a turn.
            std::thread::sleep(Duration::from_micros(300));
        }
        Ok(())
    }

    /// The parent's side of the ring: waits for room, adds `item`.
    fn put(h: &Handoff, item: u64) -> Res<()> {
        let guard = h.lock.lock().map_err(|_| DIED)?;
        let (guard, waited) = h
            .not_full
            .wait_while_timeout(guard, PATIENCE, || h.is_full())
            .map_err(|_| DIED)?;
        if waited.timed_out() {
            return Err("the workers took no item within the time limit".into());
        }
        let tail = h.tail.load(Relaxed);
        h.slots[(tail % RING) as usize].store(item, Relaxed);
        h.tail.store(tail + 1, Relaxed);
        drop(guard);
        h.not_empty.notify_one();
        Ok(())
    }

    fn close(h: &Handoff) -> Res<()> {
        let guard = h.lock.lock().map_err(|_| DIED)?;
        h.closed.store(true, Relaxed);
        drop(guard);
        h.not_empty.notify_all();
        Ok(())
    }

    fn spawn(h: &Handoff, k: usize) -> Res<Pid> {
        // Flush first, or the child would print our buffered output again.
        std::io::stdout().flush()?;
        // SAFETY: this process is single-threaded, so the child starts with
        // consistent memory, and it leaves through `std::process::exit`.
        match unsafe { fork() }? {
            ForkResult::Child => {
                let code = match catch_unwind(AssertUnwindSafe(|| worker(h, k))) {
                    Ok(Ok(())) => 0,
                    Ok(Err(e)) => {
                        eprintln!("worker {}: {e}", k + 1);
                        1
                    }
                    Err(_) => 1,
                };
                std::process::exit(code);
            }
            ForkResult::Parent { child } => Ok(child),
        }
    }

    /// Hands out the items; on error, closes the ring so the workers leave.
    fn produce(h: &Handoff) -> Res<()> {
        // Wait until every worker sits in `start.wait()`...
        let deadline = Instant::now() + PATIENCE;
        while h.waiting.load(Relaxed) < WORKERS as u32 {
            if Instant::now() > deadline {
                return Err("the workers did not reach the start event".into());
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        // ... and give them time to (wrongly) get past it.
        std::thread::sleep(Duration::from_millis(20));
        let early = h.started.load(Relaxed);
        println!("{WORKERS} workers waiting; started before the event was set: {early}");
        if early != 0 {
            return Err("a worker got past the event before it was set".into());
        }
        println!("setting the start event");
        h.start.set();
        for item in 0..ITEMS {
            put(h, item)?;
        }
        Ok(())
    }

    pub fn main() -> Res<i32> {
        let h = Shared::anonymous(Handoff::new())?;
        let mut children = Vec::new();
        for k in 0..WORKERS {
            children.push(spawn(&h, k)?);
        }
        let produced = produce(&h);
        if produced.is_err() {
            h.start.set(); // let everyone out
        }
        close(&h)?;

        let mut ok = true;
        if let Err(e) = produced {
            eprintln!("parent: {e}");
            ok = false;
        }
        for (k, pid) in children.into_iter().enumerate() {
            match waitpid(pid, None)? {
                WaitStatus::Exited(_, 0) => {}
                other => {
                    eprintln!("worker {} failed: {other:?}", k + 1);
                    ok = false;
                }
            }
        }

        let mut seen = vec![0u32; ITEMS as usize];
        for k in 0..WORKERS {
            let n = h.received_len[k].load(Relaxed) as usize;
            let items: Vec<u64> = h.received[k][..n].iter().map(|a| a.load(Relaxed)).collect();
            println!("worker {} received {n:2} items: {items:?}", k + 1);
            if items.windows(2).any(|w| w[0] >= w[1]) {
                eprintln!("worker {}: items out of order", k + 1);
                ok = false;
            }
            for &i in &items {
                match seen.get_mut(i as usize) {
                    Some(c) => *c += 1,
                    None => {
                        eprintln!("worker {}: unknown item {i}", k + 1);
                        ok = false;
                    }
                }
            }
        }
        let once = seen.iter().filter(|&&c| c == 1).count();
        let total: u32 = seen.iter().sum();
        if once == ITEMS as usize && total == ITEMS as u32 && ok {
            println!("all {ITEMS} items received exactly once by {WORKERS} workers: ok");
            Ok(0)
        } else {
            println!(
                "MISMATCH: {once} of {ITEMS} items received exactly once ({total} deliveries)"
            );
            Ok(1)
        }
    }
}

#[cfg(not(loom))]
fn main() {
    match app::main() {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}

/// Under `--cfg loom` the crate builds only its lock-free core.
#[cfg(loom)]
fn main() {}
