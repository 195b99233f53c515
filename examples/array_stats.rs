//! Four worker processes fill disjoint slices of a shared `Array<f64>`; the
//! parent computes the statistics of the whole and checks them against the
//! closed form.
//!
//! In Python terms:
//!
//! ```python
//! data = Array('d', 1_000_000)            # zeros, in shared memory
//! total = Value('d', 0.0)
//! def fill(k):
//!     lo, hi = k * 250_000, (k + 1) * 250_000
//!     for i in range(lo, hi):
//!         data[i] = i                      # no lock: nobody else writes here
//!     with total.get_lock():
//!         total.value += sum(range(lo, hi))
//! procs = [Process(target=fill, args=(k,)) for k in range(4)]
//! ...
//! print(sum(data), total.value)           # both 499999500000.0
//! ```
//!
//! Element `i` holds `i` as an `f64`. Each worker writes its slice without
//! the array's lock ([`Array::store`]: the slices are disjoint, and each
//! element is written with word-sized atomic stores), then adds its partial
//! sum to a shared [`Value<f64>`] under that value's lock (a float has no
//! `fetch_add`). After reaping the workers, the parent reads the array
//! under its lock and prints the sum, mean, minimum, maximum and standard
//! deviation, each checked against its closed form for `0, 1, …, N-1`:
//! sum `N(N-1)/2`, mean `(N-1)/2`, min 0, max `N-1`, variance
//! `(N²-1)/12`. Every partial sum is an integer below 2^53, so the sums are
//! exact; only the standard deviation is compared with a tolerance.
//!
//! The array and the value are anonymous (memfds the workers inherit
//! through `fork`), so nothing is left in `/dev/shm`.
//!
//! ```sh
//! cargo run --release --example array_stats
//! cargo run --release --example array_stats -- 8 100000   # 8 workers x 100,000
//! ```
//!
//! The parent exits with status 1 if a statistic differs from the expected
//! value, or if a worker failed.

#[cfg(not(loom))]
mod app {
    use nix::sys::wait::{waitpid, WaitStatus};
    use nix::unistd::{fork, ForkResult, Pid};
    use shmring::{Array, Value};
    use std::error::Error;
    use std::io::Write;
    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::time::Instant;

    type Res<T> = Result<T, Box<dyn Error>>;

    /// A worker: fills `data[lo..hi]` with `i as f64`, adds its partial sum
    /// to `total`.
    fn fill(data: &Array<f64>, total: &Value<f64>, lo: usize, hi: usize) -> Res<()> {
        let mut partial = 0.0;
        for i in lo..hi {
            let x = i as f64;
            data.store(i, x);
            partial += x;
        }
        total
            .lock()
            .map_err(|_| "a process died holding the lock")?
            .update(|t| t + partial);
        Ok(())
    }

    fn spawn(work: impl FnOnce() -> Res<()>) -> Res<Pid> {
        // Flush first, or the child would print our buffered output again.
        std::io::stdout().flush()?;
        // SAFETY: this process is single-threaded, so the child starts with
        // consistent memory, and it leaves through `std::process::exit`.
        match unsafe { fork() }? {
            ForkResult::Child => {
                let code = match catch_unwind(AssertUnwindSafe(work)) {
                    Ok(Ok(())) => 0,
                    Ok(Err(e)) => {
                        eprintln!("worker {}: {e}", std::process::id());
                        1
                    }
                    Err(_) => 1,
                };
                std::process::exit(code);
            }
            ForkResult::Parent { child } => Ok(child),
        }
    }

    fn arg(n: usize, default: usize) -> Res<usize> {
        match std::env::args().nth(n) {
            Some(a) => Ok(a.parse().map_err(|e| format!("bad number {a:?}: {e}"))?),
            None => Ok(default),
        }
    }

    /// Prints `what: got` and whether it matches `want` (within `tol`,
    /// relative); returns whether it did.
    fn check(what: &str, got: f64, want: f64, tol: f64) -> bool {
        let ok = (got - want).abs() <= tol * want.abs();
        if ok {
            println!("{what:>8}: {got}");
        } else {
            println!("{what:>8}: {got} (MISMATCH: expected {want})");
        }
        ok
    }

    pub fn main() -> Res<i32> {
        let workers = arg(1, 4)?;
        let per = arg(2, 250_000)?;
        let n = workers * per;
        if workers == 0 || per == 0 || n as u64 > 1 << 26 {
            return Err("want 1 or more workers, 1 or more values each, 2^26 in all".into());
        }

        let t = Instant::now();
        let data = Array::<f64>::anonymous(n)?;
        let total = Value::<f64>::anonymous(0.0)?;
        let mut children = Vec::new();
        for k in 0..workers {
            let (lo, hi) = (k * per, (k + 1) * per);
            children.push(spawn(|| fill(&data, &total, lo, hi))?);
        }
        let mut ok = true;
        for pid in children {
            match waitpid(pid, None)? {
                WaitStatus::Exited(_, 0) => {}
                other => {
                    eprintln!("worker {pid} failed: {other:?}");
                    ok = false;
                }
            }
        }
        let filled = t.elapsed();

        // The workers are gone; the lock makes the copy exclusive anyway.
        // (No guard hands out a slice of shared memory: `to_vec` copies.)
        let (sum, min, max, sq) = {
            let xs = data
                .lock()
                .map_err(|_| "a worker died holding the lock")?
                .to_vec();
            let sum: f64 = xs.iter().sum();
            let mean = sum / n as f64;
            let min = xs.iter().copied().fold(f64::INFINITY, f64::min);
            let max = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let sq: f64 = xs.iter().map(|x| (x - mean) * (x - mean)).sum();
            (sum, min, max, sq)
        };
        let total = total.load();
        let nf = n as f64;
        println!("{workers} workers x {per} values, filled in {filled:.1?}");
        ok &= check("sum", sum, nf * (nf - 1.0) / 2.0, 0.0);
        ok &= check("Value", total, nf * (nf - 1.0) / 2.0, 0.0);
        ok &= check("mean", sum / nf, (nf - 1.0) / 2.0, 0.0);
        ok &= check("min", min, 0.0, 0.0);
        ok &= check("max", max, nf - 1.0, 0.0);
        ok &= check(
            "std dev",
            (sq / nf).sqrt(),
            ((nf * nf - 1.0) / 12.0).sqrt(),
            1e-9,
        );
        if ok {
            println!("all statistics match the closed form: ok");
            Ok(0)
        } else {
            println!("MISMATCH");
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
