//! Five processes increment a shared counter under its lock; then the same
//! with a plain variable, which every process only changes in its own copy.
//!
//! The Rust version of the classic `multiprocessing.Value` tutorial:
//!
//! ```python
//! def work(shared, lock):
//!     with lock:
//!         print(f"{name} got shared value: {shared.value}")
//!         shared.value += 1
//!         time.sleep(0.1)
//!         print(f"{name} updated shared value: {shared.value}")
//!
//! shared = Value('i', 0)                  # in shared memory
//! for _ in range(5): Process(target=work, args=(shared, lock)).start()
//! ...
//! print(f"final value: {shared.value}")   # 5
//! ```
//!
//! and the variant without shared memory, where `shared_resource = 0` is a
//! plain integer: each child increments its own copy (every child prints
//! 0 → 1) and the parent's stays 0.
//!
//! The processes are made with `fork`; the [`Value`] is anonymous (a memfd
//! the children inherit), so nothing is left in `/dev/shm`. Part three
//! runs five processes × 10,000 increments, once under the value's lock
//! (`guard.update(|x| x + 1)`, a read-modify-write that would lose updates
//! without it), once with the lock-free `fetch_add`, and once with both on
//! one value: they must end at 50,000, 50,000 and 100,000.
//!
//! ```sh
//! cargo run --release --example value_lock
//! ```
//!
//! The parent exits with status 1 if any total differs from the expected
//! one, or if a child failed.

#[cfg(not(loom))]
mod app {
    use nix::sys::wait::{waitpid, WaitStatus};
    use nix::unistd::{fork, ForkResult, Pid};
    use shmring::{Lock, Shared, Value};
    use std::error::Error;
    use std::io::Write;
    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::time::Duration;

    type Res<T> = Result<T, Box<dyn Error>>;

    const PROCESSES: usize = 5;
    const MANY: i64 = 10_000;

    /// Forks a child that runs `work` and exits: status 0 if it returned
    /// `Ok`, 1 otherwise.
    fn spawn(work: impl FnOnce() -> Res<()>) -> Res<Pid> {
        // Flush first, or the child would print our buffered output again.
        std::io::stdout().flush()?;
        // SAFETY: this process is single-threaded, so the child starts with
        // consistent memory (no lock held by another thread), and it leaves
        // through `std::process::exit`, never returning into our main.
        match unsafe { fork() }? {
            ForkResult::Child => {
                let code = match catch_unwind(AssertUnwindSafe(work)) {
                    Ok(Ok(())) => 0,
                    Ok(Err(e)) => {
                        eprintln!("child {}: {e}", std::process::id());
                        1
                    }
                    Err(_) => 1, // the panic message is already printed
                };
                std::process::exit(code);
            }
            ForkResult::Parent { child } => Ok(child),
        }
    }

    /// Waits for every child; whether all exited with status 0.
    fn reap(children: Vec<Pid>) -> Res<bool> {
        let mut ok = true;
        for pid in children {
            match waitpid(pid, None)? {
                WaitStatus::Exited(_, 0) => {}
                other => {
                    eprintln!("child {pid} failed: {other:?}");
                    ok = false;
                }
            }
        }
        Ok(ok)
    }

    /// Prints the check and returns whether it passed.
    fn check(what: &str, got: i64, want: i64) -> bool {
        if got == want {
            println!("{what}: {got}");
            true
        } else {
            eprintln!("{what}: {got}, expected {want}");
            println!("{what}: {got} (MISMATCH: expected {want})");
            false
        }
    }

    /// Part one, the tutorial: each process prints the value, increments
    /// it, sleeps a little (still holding the lock, so the others wait) and
    /// prints it again.
    fn shared_counter() -> Res<bool> {
        let counter = Value::<i32>::anonymous(0)?;
        let mut children = Vec::new();
        for n in 1..=PROCESSES {
            let counter = counter.clone();
            children.push(spawn(move || {
                let v = counter
                    .lock()
                    .map_err(|_| "a process died holding the lock")?;
                println!("Process-{n} got shared value: {}", v.get());
                v.update(|x| x + 1);
                std::thread::sleep(Duration::from_millis(10));
                println!("Process-{n} updated shared value: {}", v.get());
                Ok(())
            })?);
        }
        let children_ok = reap(children)?;
        let value = counter
            .lock()
            .map_err(|_| "a child died holding the lock")?
            .get();
        Ok(check("final value", value.into(), PROCESSES as i64) && children_ok)
    }

    /// Part two, the tutorial's first attempt: a plain variable, guarded by
    /// a lock that *is* shared. The lock works (the lines do not
    /// interleave), but each child increments its own copy of the variable,
    /// made by `fork`, so every child sees 0 and the parent's stays 0.
    fn plain_variable() -> Res<bool> {
        let lock = Shared::anonymous(Lock::new())?;
        let mut plain: i32 = 0;
        let mut children = Vec::new();
        for n in 1..=PROCESSES {
            // The closure borrows the parent's `plain`; after the fork, the
            // child writes to that address in its own copy of the memory.
            children.push(spawn(|| {
                let _held = lock.lock().map_err(|_| "a process died holding the lock")?;
                println!("Process-{n} got plain value: {plain}");
                plain += 1;
                std::thread::sleep(Duration::from_millis(10));
                println!("Process-{n} updated plain value: {plain}");
                if plain != 1 {
                    return Err(format!("the child's copy is {plain}, expected 1").into());
                }
                Ok(())
            })?);
        }
        let children_ok = reap(children)?;
        Ok(check("final value without shared memory", plain.into(), 0) && children_ok)
    }

    /// Part three: many increments from every process, under the lock,
    /// with `fetch_add`, and both at once on one value.
    fn many_increments() -> Res<bool> {
        let locked = Value::<i64>::anonymous(0)?;
        let atomic = Value::<i64>::anonymous(0)?;
        let mixed = Value::<i64>::anonymous(0)?;
        let mut children = Vec::new();
        for _ in 0..PROCESSES {
            let (locked, atomic, mixed) = (locked.clone(), atomic.clone(), mixed.clone());
            children.push(spawn(move || {
                for _ in 0..MANY {
                    // A read-modify-write, made exclusive by the lock.
                    locked
                        .lock()
                        .map_err(|_| "a process died holding the lock")?
                        .update(|x| x + 1);
                    // One atomic instruction: no lock needed.
                    atomic.fetch_add(1);
                    // Both on one value: the guard's update is atomic too,
                    // so neither loses the other's increments.
                    mixed
                        .lock()
                        .map_err(|_| "a process died holding the lock")?
                        .update(|x| x + 1);
                    mixed.fetch_add(1);
                }
                Ok(())
            })?);
        }
        let children_ok = reap(children)?;
        let want = PROCESSES as i64 * MANY;
        let a = check(
            &format!("{PROCESSES} x {MANY} increments under the lock"),
            locked.load(),
            want,
        );
        let b = check(
            &format!("{PROCESSES} x {MANY} increments with fetch_add"),
            atomic.load_atomic(),
            want,
        );
        let c = check(
            &format!("{PROCESSES} x {MANY} x 2 increments, locked and fetch_add mixed"),
            mixed.load(),
            2 * want,
        );
        Ok(a && b && c && children_ok)
    }

    pub fn main() -> Res<i32> {
        println!("-- a counter in shared memory (Value), under its lock --");
        let a = shared_counter()?;
        println!();
        println!("-- a plain variable: each process has its own copy --");
        let b = plain_variable()?;
        println!();
        println!("-- many increments --");
        let c = many_increments()?;
        Ok(if a && b && c { 0 } else { 1 })
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
