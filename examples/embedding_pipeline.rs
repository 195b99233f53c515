//! Four worker processes stream 384-dimensional `f32` embeddings through one
//! MPMC queue to a consumer that sums them.
//!
//! The shape of a typical `multiprocessing` job (workers compute vectors, one
//! process collects them), without pickling: each vector is a plain
//! `#[repr(C)]` struct of 1536 bytes, copied into a queue slot by the worker
//! and out of it by the consumer.
//!
//! - The queue is anonymous (a memfd the forked workers inherit): nothing is
//!   left in `/dev/shm`.
//! - Each worker attaches its own sender, sends `M` vectors with blocking
//!   `send`, and drops the sender. The consumer (the parent) receives with
//!   blocking `recv` until every sender is gone and the queue is drained
//!   (`Disconnected`).
//! - Worker `w`'s vector `i` has element `j` equal to `(w*M + i + j) % 7`, so
//!   every sum is a small integer: the consumer checks the element-wise sum
//!   exactly against a closed-form expectation.
//!
//! ```sh
//! cargo run --release --example embedding_pipeline          # M = 400 000 per worker
//! cargo run --release --example embedding_pipeline -- 10000 # M = 10 000
//! ```
//!
//! It prints the count, `vectors/s: <rate>`, and exits with status 1 if the
//! count or the sum is wrong or a worker failed.

#[cfg(not(loom))]
mod app {
    use nix::sys::wait::{waitpid, WaitStatus};
    use nix::unistd::{fork, ForkResult, Pid};
    use shmring::bytemuck::{Pod, Zeroable};
    use shmring::{Flavor, Queue, RecvError, Sender};
    use std::error::Error;
    use std::io::Write;
    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::time::Instant;

    type Res<T> = Result<T, Box<dyn Error>>;

    const DIM: usize = 384;
    const WORKERS: u64 = 4;
    const PERIOD: usize = 7;
    /// Slots in the queue: 256 × 1.5 KiB.
    const CAPACITY: u64 = 256;

    /// One embedding: 384 `f32`, no padding, so it is `Pod`.
    #[repr(C)]
    #[derive(Clone, Copy, Pod, Zeroable)]
    struct Embedding {
        v: [f32; DIM],
    }

    /// `0, 1, …, 6, 0, 1, …` long enough that any window of `DIM` starting
    /// at `0..PERIOD` exists: vector `g` is the window starting at `g % 7`.
    fn pattern() -> Vec<f32> {
        (0..DIM + PERIOD).map(|k| (k % PERIOD) as f32).collect()
    }

    /// The vector with global index `g = w*M + i`: element `j` is `(g + j) % 7`.
    fn embedding(pattern: &[f32], g: u64) -> Embedding {
        let start = (g % PERIOD as u64) as usize;
        let mut e = Embedding::zeroed();
        e.v.copy_from_slice(&pattern[start..start + DIM]);
        e
    }

    /// The worker: runs in a child process.
    fn worker(q: &Queue<Embedding>, w: u64, m: u64) -> Res<()> {
        // Attach in this process: a sender inherited through `fork` belongs
        // to the parent, so dropping it here would not count as leaving.
        let tx = q.sender()?;
        let pattern = pattern();
        for i in 0..m {
            tx.send(embedding(&pattern, w * m + i))?;
        }
        drop(tx); // the last sender to leave disconnects the queue
        Ok(())
    }

    /// Sum element `j` of all `total` vectors must have: each residue
    /// `r = g % 7` occurs `count[r]` times and contributes `(r + j) % 7`.
    fn expected_sum(total: u64) -> Vec<f64> {
        let p = PERIOD as u64;
        let count: Vec<u64> = (0..p)
            .map(|r| total / p + u64::from(r < total % p))
            .collect();
        (0..DIM as u64)
            .map(|j| {
                (0..p)
                    .map(|r| count[r as usize] * ((r + j) % p))
                    .sum::<u64>() as f64
            })
            .collect()
    }

    fn exited_ok(pid: Pid) -> nix::Result<bool> {
        Ok(matches!(waitpid(pid, None)?, WaitStatus::Exited(_, 0)))
    }

    pub fn main() -> Res<i32> {
        let default_m = if cfg!(debug_assertions) {
            20_000
        } else {
            400_000
        };
        let m: u64 = match std::env::args().nth(1) {
            Some(a) => a.parse().map_err(|e| format!("bad count {a:?}: {e}"))?,
            None => default_m,
        };
        let total = WORKERS * m;

        let q = Queue::<Embedding>::anonymous(Flavor::Mpmc, CAPACITY)?;
        let rx = q.receiver()?;
        // A queue is disconnected once every sender that ever attached has
        // left. A fast worker could finish and leave before a slow one has
        // even attached, so the parent holds a sender of its own until every
        // worker has exited; a thread drops it then (below).
        let guard: Sender<Embedding> = q.sender()?;
        std::io::stdout().flush()?;

        let start = Instant::now();
        let mut workers = Vec::new();
        for w in 0..WORKERS {
            // SAFETY: this process is single-threaded while it forks (the
            // thread below starts after the last fork), and each child
            // leaves through `std::process::exit`, never returning into main.
            match unsafe { fork() }? {
                ForkResult::Child => {
                    let code = match catch_unwind(AssertUnwindSafe(|| worker(&q, w, m))) {
                        Ok(Ok(())) => 0,
                        Ok(Err(e)) => {
                            eprintln!("worker {w}: {e}");
                            1
                        }
                        Err(_) => 1,
                    };
                    std::process::exit(code);
                }
                ForkResult::Parent { child } => workers.push(child),
            }
        }

        // Reap the workers; once all are gone, drop the guard, which lets the
        // consumer's `recv` report `Disconnected` after the last vector. This
        // also ends the run if a worker dies before it could attach.
        let reaper = std::thread::spawn(move || -> nix::Result<bool> {
            let mut all_ok = true;
            for pid in workers {
                all_ok &= exited_ok(pid)?;
            }
            drop(guard);
            Ok(all_ok)
        });

        // The consumer: element-wise sum in f64, exact for integers < 2^53.
        let mut sum = vec![0f64; DIM];
        let mut count = 0u64;
        loop {
            match rx.recv() {
                Ok(e) => {
                    for (s, x) in sum.iter_mut().zip(e.v.iter()) {
                        *s += f64::from(*x);
                    }
                    count += 1;
                }
                Err(RecvError::Disconnected) => break,
                Err(e) => return Err(e.into()),
            }
        }
        let secs = start.elapsed().as_secs_f64();
        let workers_ok = reaper.join().map_err(|_| "reaper thread panicked")??;

        let sum_ok = sum == expected_sum(total);
        println!("received {count} of {total} vectors ({WORKERS} workers x {m}, {DIM} x f32)");
        println!("sum: {}", if sum_ok { "ok" } else { "MISMATCH" });
        println!("vectors/s: {:.0}", count as f64 / secs);
        println!(
            "MB/s: {:.0}",
            count as f64 * std::mem::size_of::<Embedding>() as f64 / secs / 1e6
        );
        if !workers_ok {
            eprintln!("a worker process failed");
        }
        Ok(if count == total && sum_ok && workers_ok {
            0
        } else {
            1
        })
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
