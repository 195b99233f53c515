//! A child sends "Hello ~" twice through a pipe; the parent receives both,
//! then sees EOF.
//!
//! The Rust version of the classic `multiprocessing.Pipe` tutorial:
//!
//! ```python
//! def child(conn):
//!     conn.send("Hello ~")
//!     conn.send("Hello ~")
//!     conn.close()
//!
//! parent_conn, child_conn = Pipe()
//! p = Process(target=child, args=(child_conn,))
//! p.start()
//! print(parent_conn.recv())   # Hello ~
//! print(parent_conn.recv())   # Hello ~
//! parent_conn.recv()          # EOFError: the child closed its end
//! p.join()
//! ```
//!
//! The pipe is anonymous and duplex (two memfd queues the child inherits
//! through `fork`), so nothing is left in `/dev/shm`. Each process attaches
//! its own end after the fork: the child the right end, the parent the left
//! end. When the child closes its end (or exits, or dies), the parent's
//! `recv` returns what was sent and then `Disconnected`, Python's
//! `EOFError`.
//!
//! ```sh
//! cargo run --example pipe_hello
//! ```
//!
//! The parent exits with status 1 if it did not receive exactly two
//! "Hello ~" followed by EOF, or if the child failed.

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

    const HELLO: &str = "Hello ~";

    /// The child: attaches the right end, sends twice, closes.
    fn child(pipe: &Pipe) -> Res<()> {
        let mut conn = pipe.right()?;
        let me = std::process::id();
        for _ in 0..2 {
            println!("child {me} sends: {HELLO}");
            conn.send(HELLO.as_bytes())?;
        }
        // The parent's next `recv` after these two is EOF.
        conn.close();
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
        // Like Python's `Pipe()`: duplex.
        let pipe = Pipe::anonymous(true)?;
        // Flush before forking, or the child would print our buffered output too.
        std::io::stdout().flush()?;

        // SAFETY: this process is single-threaded here, so the child starts
        // with consistent memory (no lock held by another thread), and it
        // leaves through `std::process::exit`, never returning into our main.
        let child_pid = match unsafe { fork() }? {
            ForkResult::Child => {
                let code = match catch_unwind(AssertUnwindSafe(|| child(&pipe))) {
                    Ok(Ok(())) => 0,
                    Ok(Err(e)) => {
                        eprintln!("child: {e}");
                        1
                    }
                    Err(_) => 1, // the panic message is already printed
                };
                std::process::exit(code);
            }
            ForkResult::Parent { child } => child,
        };

        let conn = pipe.left()?;
        let me = std::process::id();
        let mut status = None;
        let mut received = Vec::new();
        while let Some(msg) = recv_or_eof(&conn, child_pid, &mut status)? {
            let text = String::from_utf8_lossy(&msg).into_owned();
            println!("parent {me} received: {text}");
            received.push(text);
        }
        println!("EOF: the child closed its end");
        drop(conn); // Python's parent_conn.close()

        let status = match status {
            Some(s) => s,
            None => waitpid(child_pid, None)?,
        };
        let child_ok = matches!(status, WaitStatus::Exited(_, 0));
        println!("child exited: {status:?}");
        let ok = received == [HELLO, HELLO] && child_ok;
        if !ok {
            eprintln!("expected two {HELLO:?} then EOF from a child that exits 0");
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
