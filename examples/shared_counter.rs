//! A counter that outlives every program that uses it: a `Value<u64>` by
//! name, in `/dev/shm`, opened or created by whichever program comes
//! first.
//!
//! ```sh
//! cargo run --release --example shared_counter -- counter <name> <n>  # add 1, n times
//! cargo run --release --example shared_counter -- show <name>         # print the value
//! cargo run --release --example shared_counter -- reset <name>        # remove the name
//! cargo run --release --example shared_counter                        # the self-checking demo
//! ```
//!
//! - `counter` opens the value with `Value::open_or_create(name, 0)`: of
//!   several counters started at once, exactly one creates it and all of
//!   them count on that one value. Each adds 1 `n` times under the value's
//!   lock (`lock()?.update(|x| x + 1)`, Python's `with v.get_lock():
//!   v.value += 1`), then exits.
//! - `show` opens it (`Value::open`: no creating) and prints it. The value
//!   is still there after every counter exited: a name stays until it is
//!   removed, whoever created it.
//! - `reset` removes the name (`Value::unlink`); the next `counter` starts
//!   a new value at 0.
//!
//! The demo starts 4 counters at once as separate processes (this
//! program, re-executed), waits for all of them, runs `show` (which must
//! print 4n), then `reset`, and checks that nothing is left in
//! `/dev/shm`. It exits with status 1 if anything is wrong.

#[cfg(not(loom))]
mod app {
    use shmring::{SegmentError, Value};
    use std::error::Error;
    use std::path::Path;
    use std::process::{Command, Stdio};

    type Res<T> = Result<T, Box<dyn Error>>;

    fn counter(name: &str, n: u64) -> Res<()> {
        let v = Value::<u64>::open_or_create(name, 0)?;
        for _ in 0..n {
            // A process that died holding the lock hands it over
            // (`OwnerDied`): an increment is complete or not made, so the
            // value is consistent either way.
            v.lock()
                .unwrap_or_else(|died| died.into_inner())
                .update(|x| x + 1);
        }
        eprintln!("counter {}: added {n}", std::process::id());
        Ok(())
    }

    fn show(name: &str) -> Res<()> {
        match Value::<u64>::open(name) {
            Ok(v) => {
                println!("{}", v.load());
                Ok(())
            }
            Err(SegmentError::NotFound(_)) => Err(format!("no counter named {name:?}").into()),
            Err(e) => Err(e.into()),
        }
    }

    fn reset(name: &str) -> Res<()> {
        Value::<u64>::unlink(name)?;
        eprintln!("removed {name}");
        Ok(())
    }

    /// Runs this program with `args`; returns its standard output.
    fn run_self(args: &[&str]) -> Res<String> {
        let out = Command::new(std::env::current_exe()?)
            .args(args)
            .stderr(Stdio::inherit())
            .output()?;
        if !out.status.success() {
            return Err(format!("{args:?} failed: {}", out.status).into());
        }
        Ok(String::from_utf8(out.stdout)?)
    }

    fn demo() -> Res<()> {
        let name = format!("shmring-example-counter-{}", std::process::id());
        let n: u64 = 20_000;
        let r = (|| -> Res<()> {
            println!("4 counters at once, {n} each, on {name}");
            let mut counters = Vec::new();
            for _ in 0..4 {
                counters.push(
                    Command::new(std::env::current_exe()?)
                        .args(["counter", &name, &n.to_string()])
                        .spawn()?,
                );
            }
            let mut failed = 0;
            for mut c in counters {
                if !c.wait()?.success() {
                    failed += 1;
                }
            }
            if failed > 0 {
                return Err(format!("{failed} counters failed").into());
            }
            // Every counter has exited; the value has not gone with them.
            let shown: u64 = run_self(&["show", &name])?.trim().parse()?;
            println!("show, after all of them exited: {shown}");
            if shown != 4 * n {
                return Err(format!("expected {}, found {shown}", 4 * n).into());
            }
            run_self(&["reset", &name])?;
            if Path::new("/dev/shm").join(&name).exists() {
                return Err(format!("/dev/shm/{name} is still there after reset").into());
            }
            println!("reset: /dev/shm/{name} is gone");
            Ok(())
        })();
        if r.is_err() {
            let _ = Value::<u64>::unlink(&name); // leave nothing behind
        }
        r?;
        println!("ok");
        Ok(())
    }

    pub fn main() -> Res<()> {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let name = || args.get(1).ok_or("missing <name>");
        match args.first().map(String::as_str) {
            None => demo(),
            Some("counter") => {
                let n = args.get(2).ok_or("missing <n>")?;
                counter(name()?, n.parse().map_err(|_| format!("bad count {n:?}"))?)
            }
            Some("show") => show(name()?),
            Some("reset") => reset(name()?),
            Some(other) => Err(format!(
                "unknown command {other:?}: counter <name> <n> | show <name> | reset <name>"
            )
            .into()),
        }
    }
}

#[cfg(not(loom))]
fn main() {
    if let Err(e) = app::main() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

/// Under `--cfg loom` the crate builds only its lock-free core.
#[cfg(loom)]
fn main() {}
