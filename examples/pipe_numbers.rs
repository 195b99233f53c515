//! Numbers 0..9 through a one-way pipe: the child writes, the parent reads
//! until EOF.
//!
//! The Rust version of the classic `multiprocessing.Pipe(duplex=False)`
//! tutorial (here the child writes and the parent reads):
//!
//! ```python
//! reader, writer = Pipe(duplex=False)
//! # in the child:
//! for i in range(10):
//!     writer.send(i)
//! writer.close()
//! # in the parent:
//! while True:
//!     try:
//!         print(reader.recv())
//!     except EOFError:
//!         break
//! ```
//!
//! Like Python's `Pipe(False)`, the left end only receives and the right
//! end only sends (`readable()` / `writable()` say which). The numbers
//! travel as 8 little-endian bytes each. The pipe is anonymous (a memfd the
//! child inherits through `fork`), so nothing is left in `/dev/shm`.
//!
//! ```sh
//! cargo run --example pipe_numbers
//! ```
//!
//! The parent ends with `EOF after 10 numbers` and exits with status 1 if a
//! number is missing or out of order, or if the child failed.

#[cfg(not(loom))]
mod app {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    use nix::unistd::{fork, ForkResult, Pid};
    use shmring::{Connection, Pipe, RecvTimeoutError, TryRecvError};
    use std::error::Error;
    use std::io::Write;
    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::time::Duration;

    type Res<T> = Result<T, Box<dyn Error>>;

    const COUNT: u64 = 10;

    /// The child: attaches the sending (right) end, writes the numbers,
    /// closes it.
    fn writer(pipe: &Pipe) -> Res<()> {
        let mut w = pipe.right()?;
        assert!(w.writable() && !w.readable());
        for i in 0..COUNT {
            w.send(&i.to_le_bytes())?;
        }
        w.close(); // the reader's EOF
        Ok(())
    }

    /// Receives the next message, or `None` at EOF. Waits in slices so that
    /// a child that died before attaching its end is noticed too: it never
    /// connected, so no EOF could report it.
    fn recv_or_eof(
        conn: &Connection,
        child: Pid,
        status: &mut Option<WaitStatus>,
    ) -> Res<Option<Vec<u8>>> {
        loop {
            match conn.recv_timeout(Duration::from_millis(100)) {
                Ok(msg) => return Ok(Some(msg)),
                Err(RecvTimeoutError::Disconnected) => return Ok(None),
                Err(RecvTimeoutError::Timeout) if status.is_none() => {
                    match waitpid(child, Some(WaitPidFlag::WNOHANG))? {
                        WaitStatus::StillAlive => {}
                        exited => *status = Some(exited),
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    // The child is gone: whatever it sent is here by now.
                    return match conn.try_recv() {
                        Ok(msg) => Ok(Some(msg)),
                        Err(TryRecvError::Disconnected) => Ok(None),
                        Err(TryRecvError::Empty) => {
                            Err("the child exited without attaching its end".into())
                        }
                        Err(e) => Err(e.into()),
                    };
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    pub fn main() -> Res<i32> {
        // Like Python's `Pipe(duplex=False)`: left reads, right writes.
        let pipe = Pipe::anonymous(false)?;
        // Flush before forking, or the child would print our buffered output too.
        std::io::stdout().flush()?;

        // SAFETY: this process is single-threaded here, so the child starts
        // with consistent memory (no lock held by another thread), and it
        // leaves through `std::process::exit`, never returning into our main.
        let child = match unsafe { fork() }? {
            ForkResult::Child => {
                let code = match catch_unwind(AssertUnwindSafe(|| writer(&pipe))) {
                    Ok(Ok(())) => 0,
                    Ok(Err(e)) => {
                        eprintln!("writer: {e}");
                        1
                    }
                    Err(_) => 1, // the panic message is already printed
                };
                std::process::exit(code);
            }
            ForkResult::Parent { child } => child,
        };

        let reader = pipe.left()?;
        let mut ok = reader.readable() && !reader.writable();
        let mut status = None;
        let mut received = 0u64;
        while let Some(msg) = recv_or_eof(&reader, child, &mut status)? {
            match <[u8; 8]>::try_from(msg.as_slice()) {
                Ok(bytes) => {
                    let n = u64::from_le_bytes(bytes);
                    println!("received {n}");
                    if n != received {
                        eprintln!("expected {received}, got {n}");
                        ok = false;
                    }
                }
                Err(_) => {
                    eprintln!("a message of {} bytes is not a number", msg.len());
                    ok = false;
                }
            }
            received += 1;
        }
        println!("EOF after {received} numbers");

        let status = match status {
            Some(s) => s,
            None => waitpid(child, None)?,
        };
        if !matches!(status, WaitStatus::Exited(_, 0)) {
            eprintln!("the writer process failed: {status:?}");
            ok = false;
        }
        if received != COUNT {
            eprintln!("expected {COUNT} numbers");
            ok = false;
        }
        Ok(if ok { 0 } else { 1 })
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
