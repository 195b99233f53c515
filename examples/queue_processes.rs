//! Putter and getter in two processes, through a queue of capacity 2.
//!
//! The Rust version of the classic `multiprocessing` tutorial:
//!
//! ```python
//! q = Queue(2)                       # a queue of size 2
//! Process(target=putter, args=(q,))  # puts values, printing "put value ..."
//! Process(target=getter, args=(q,))  # gets them,   printing "get value ..."
//! ```
//!
//! Here the parent is the getter and a child made with `fork` is the putter.
//! The queue is anonymous (a memfd the child inherits), so nothing is left in
//! `/dev/shm`. With room for only two values, the putter blocks in `send`
//! whenever it is two ahead, and the lines of the two processes interleave.
//!
//! ```sh
//! cargo run --example queue_processes        # 10 values
//! cargo run --example queue_processes -- 50  # 50 values
//! ```
//!
//! The parent ends with `received N of N` and exits with status 1 if a value
//! is missing or out of order, or if the child failed.

#[cfg(not(loom))]
mod app {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    use nix::unistd::{fork, ForkResult};
    use shmring::{Flavor, Queue, RecvTimeoutError};
    use std::error::Error;
    use std::io::Write;
    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::time::Duration;

    type Res<T> = Result<T, Box<dyn Error>>;

    /// The putter: runs in the child. It attaches its own sender (a handle
    /// inherited through `fork` stays the parent's) and drops it at the end,
    /// which tells the getter that no more values are coming.
    fn putter(q: &Queue<u64>, n: u64) -> Res<()> {
        let tx = q.sender()?;
        for i in 0..n {
            tx.send(i)?; // blocks while the queue holds 2 values
            println!("put {i}");
        }
        drop(tx);
        Ok(())
    }

    pub fn main() -> Res<i32> {
        let n: u64 = match std::env::args().nth(1) {
            Some(a) => a.parse().map_err(|e| format!("bad count {a:?}: {e}"))?,
            None => 10,
        };

        // Like Python's `Queue(2)`: at most two values in flight.
        let q = Queue::<u64>::anonymous(Flavor::Spsc, 2)?;
        // The getter attaches before the child exists. Until a sender has
        // attached, an empty queue makes `recv` wait (not report a disconnect),
        // so the order in which the two processes start does not matter.
        let rx = q.receiver()?;
        // Flush before forking, or the child would print our buffered output too.
        std::io::stdout().flush()?;

        // SAFETY: this process is single-threaded here, so the child starts
        // with consistent memory (no lock held by another thread), and it
        // leaves through `std::process::exit`, never returning into our main.
        let child = match unsafe { fork() }? {
            ForkResult::Child => {
                let code = match catch_unwind(AssertUnwindSafe(|| putter(&q, n))) {
                    Ok(Ok(())) => 0,
                    Ok(Err(e)) => {
                        eprintln!("putter: {e}");
                        1
                    }
                    Err(_) => 1, // the panic message is already printed
                };
                std::process::exit(code);
            }
            ForkResult::Parent { child } => child,
        };

        // The getter: receive until the putter's sender is gone and the queue
        // is drained (`Disconnected`, Python's `EOFError`). A putter that
        // dies without dropping its sender is detected too, within ~20 ms.
        // Like the Python getter's `get(True, timeout)`, wait with a timeout:
        // on each one, check that the child still runs, in case it died
        // before it could even attach its sender.
        let mut received = 0u64;
        let mut in_order = true;
        let mut status = None;
        loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(v) => {
                    println!("got {v}");
                    if v != received {
                        eprintln!("expected {received}, got {v}");
                        in_order = false;
                    }
                    received += 1;
                }
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {
                    if status.is_none() {
                        match waitpid(child, Some(WaitPidFlag::WNOHANG))? {
                            WaitStatus::StillAlive => {}
                            exited => status = Some(exited),
                        }
                    } else if rx.is_empty() {
                        break; // gone without ever attaching a sender
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }

        let status = match status {
            Some(s) => s,
            None => waitpid(child, None)?,
        };
        let child_ok = matches!(status, WaitStatus::Exited(_, 0));
        println!("received {received} of {n}");
        if !child_ok {
            eprintln!("the putter process failed");
        }
        Ok(if received == n && in_order && child_ok {
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
