//! A producer process streams 1 MiB frames to a consumer through an SPSC
//! byte queue, without copying them: the producer writes each frame in place
//! inside the queue, the consumer reads it in place.
//!
//! The shape of a video or sensor pipeline (one process fills large frames,
//! another inspects them), where a copy per hop would cost as much as the
//! work itself.
//!
//! - The queue is anonymous (a memfd the forked producer inherits): nothing
//!   is left in `/dev/shm`. It holds 4 frames of at most 1 MiB.
//! - The producer (the child) attaches its own sender, and for each frame
//!   [`loan`](shmring::ByteSender::loan)s 1 MiB in the queue, writes it in
//!   place and commits it; then it drops the sender and exits.
//! - Frame `f` is 131 072 little-endian `u64` words; word `k` is `f ^ k`, so
//!   word 0 is the frame number and every word depends on both.
//! - The consumer (the parent) takes each frame with
//!   [`recv_ref`](shmring::ByteReceiver::recv_ref), checks its length,
//!   number and every word in place, and drops it, which hands the slot back
//!   to the producer. It stops when the producer has left and the queue is
//!   drained (`Disconnected`), then reaps the producer.
//!
//! ```sh
//! cargo run --release --example zero_copy_frames        # 2000 frames
//! cargo run --release --example zero_copy_frames -- 500 # 500 frames
//! ```
//!
//! It prints the frames and bytes received, `GB/s: <rate>` (10^9 bytes per
//! second, from the fork to the last frame) and exits with status 1 if a
//! frame is missing, out of order or wrong, or the producer failed.

#[cfg(all(target_os = "linux", not(loom)))]
mod app {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    use nix::unistd::{fork, ForkResult, Pid};
    use shmring::{ByteQueue, Flavor, RecvTimeoutError};
    use std::error::Error;
    use std::io::Write;
    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::time::{Duration, Instant};

    type Res<T> = Result<T, Box<dyn Error>>;

    /// Bytes per frame.
    const FRAME: usize = 1 << 20;
    /// Bytes per pattern word.
    const WORD: usize = 8;
    /// Frames the queue holds.
    const CAPACITY: u64 = 4;

    /// Writes frame `f`'s pattern: word `k` is `f ^ k`, little-endian.
    fn fill(frame: &mut [u8], f: u64) {
        for (k, w) in frame.chunks_exact_mut(WORD).enumerate() {
            w.copy_from_slice(&(f ^ k as u64).to_le_bytes());
        }
    }

    /// Whether `frame` holds frame `f`'s pattern, in full.
    fn check(frame: &[u8], f: u64) -> bool {
        frame.len() == FRAME
            && frame.chunks_exact(WORD).enumerate().all(|(k, w)| {
                let mut b = [0u8; WORD];
                b.copy_from_slice(w);
                u64::from_le_bytes(b) == f ^ k as u64
            })
    }

    /// What the consumer has seen.
    #[derive(Default)]
    struct Tally {
        received: u64,
        bad: u64,
        first_bad: Option<u64>,
    }

    impl Tally {
        /// Checks the next frame in place.
        fn frame(&mut self, frame: &[u8]) {
            if !check(frame, self.received) {
                self.bad += 1;
                self.first_bad.get_or_insert(self.received);
            }
            self.received += 1;
        }
    }

    /// The producer: runs in the child process.
    fn producer(q: &ByteQueue, frames: u64) -> Res<()> {
        // Attach in this process: a sender inherited through `fork` belongs
        // to the parent.
        let mut tx = q.sender()?;
        for f in 0..frames {
            let mut loan = tx.loan(FRAME)?; // waits while all 4 slots are full
            fill(&mut loan, f);
            loan.commit();
        }
        drop(tx); // the consumer sees `Disconnected` once it has drained
        Ok(())
    }

    /// Waits for `pid` without blocking; `Some(ok)` once it has exited.
    fn try_reap(pid: Pid) -> nix::Result<Option<bool>> {
        Ok(match waitpid(pid, Some(WaitPidFlag::WNOHANG))? {
            WaitStatus::StillAlive => None,
            WaitStatus::Exited(_, code) => Some(code == 0),
            _ => Some(false),
        })
    }

    pub fn main() -> Res<i32> {
        let default_frames = if cfg!(debug_assertions) { 200 } else { 2000 };
        let frames: u64 = match std::env::args().nth(1) {
            Some(a) => a
                .parse()
                .map_err(|e| format!("bad frame count {a:?}: {e}"))?,
            None => default_frames,
        };

        let q = ByteQueue::anonymous(Flavor::Spsc, CAPACITY, FRAME as u64)?;
        let mut rx = q.receiver()?;
        std::io::stdout().flush()?;

        let start = Instant::now();
        // SAFETY: this process is single-threaded, and the child leaves
        // through `std::process::exit`, never returning into main.
        let child = match unsafe { fork() }? {
            ForkResult::Child => {
                let code = match catch_unwind(AssertUnwindSafe(|| producer(&q, frames))) {
                    Ok(Ok(())) => 0,
                    Ok(Err(e)) => {
                        eprintln!("producer: {e}");
                        1
                    }
                    Err(_) => 1,
                };
                std::process::exit(code);
            }
            ForkResult::Parent { child } => child,
        };

        // The consumer. A queue reports `Disconnected` only once a sender
        // has attached and left, so while it is empty the consumer also
        // checks that the producer has not died before attaching.
        let mut tally = Tally::default();
        let mut reaped = None;
        loop {
            let timed_out = match rx.recv_ref_timeout(Duration::from_millis(100)) {
                Ok(frame) => {
                    tally.frame(&frame);
                    false
                } // the slot goes back to the producer here
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => true,
                Err(e) => return Err(e.into()),
            };
            if timed_out {
                if let Some(ok) = try_reap(child)? {
                    reaped = Some(ok);
                    // It may have left right after its last commit: drain.
                    while let Ok(frame) = rx.try_recv_ref() {
                        tally.frame(&frame);
                    }
                    break;
                }
            }
        }
        let secs = start.elapsed().as_secs_f64();
        let producer_ok = match reaped {
            Some(ok) => ok,
            None => matches!(waitpid(child, None)?, WaitStatus::Exited(_, 0)),
        };

        let Tally {
            received,
            bad,
            first_bad,
        } = tally;
        let bytes = received * FRAME as u64;
        println!("frames: {received} of {frames} ({} bytes each)", FRAME);
        println!("bytes: {bytes}");
        match first_bad {
            None => println!("check: ok"),
            Some(f) => println!("check: {bad} bad frames, the first at position {f}"),
        }
        println!("GB/s: {:.2}", bytes as f64 / secs / 1e9);
        if !producer_ok {
            eprintln!("the producer process failed");
        }
        Ok(if received == frames && bad == 0 && producer_ok {
            0
        } else {
            1
        })
    }
}

#[cfg(all(target_os = "linux", not(loom)))]
fn main() {
    match app::main() {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}

/// Under `--cfg loom` the crate builds only its lock-free core (and it runs
/// on Linux only).
#[cfg(not(all(target_os = "linux", not(loom))))]
fn main() {}
