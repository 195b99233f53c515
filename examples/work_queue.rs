//! A work queue shared by programs started on their own, in any order:
//! producers and consumers that know nothing of each other but a name.
//!
//! ```sh
//! cargo run --release --example work_queue -- producer <name> <id> <count> [producers]
//! cargo run --release --example work_queue -- consumer <name> <id> [producers]
//! cargo run --release --example work_queue        # the self-checking demo
//! ```
//!
//! Every program opens the queue with `open_or_create` and the same
//! parameters (an MPMC `Queue<Job>`, ending after `producers` closes,
//! default 2): whichever starts first creates it, the others open it.
//!
//! - A **producer** sends `count` jobs and then says it is done
//!   (`Sender::close`). With `close_after(producers)` the stream ends at
//!   the last producer's close, however their lives overlap: one that
//!   finishes before the next starts does not end it early. While no
//!   consumer is attached (none started yet, or the only one was killed)
//!   a send reports `Disconnected` and hands the job back; the producer
//!   sleeps in `wait_connected` until a consumer attaches.
//! - A **consumer** takes jobs until the end of the stream (`Closed`) and
//!   exits 0. `set_wait_for_senders(true)` makes `recv_ref` sleep through
//!   the moments when no producer is attached (before the first, between
//!   two) instead of reporting `Disconnected`. It processes each job —
//!   prints `done <producer> <seq>` — while it still holds the message in
//!   the queue (an in-place read, `recv_ref`), and releases it after.
//! - When the stream has ended, every job was taken and the last program
//!   has left, the library removes the name: nobody unlinks anything.
//!
//! **What a killed consumer costs.** A consumer killed while holding a
//! message loses exactly that message, and the queue counts it in
//! `lost()`; it is never given to another consumer. Whether its `done`
//! line was printed depends on where the kill landed (before or after the
//! print, which happens while the message is held), so the demo checks:
//! no job printed twice, and the jobs printed by nobody are at most the
//! ones `lost()` counts, which is at most one per killed consumer.
//!
//! **Consumers join before the end.** A consumer started after the end of
//! a stream (its name already removed) creates a fresh queue and waits for
//! the next stream's producers: that is what a late consumer should do.
//! So the demo lets every consumer it counts on attach before the last
//! producer starts (each prints `ready` once attached).
//!
//! The demo starts 2 producers and 3 consumers as separate processes (this
//! program, re-executed) in three orders — consumers first; producers
//! first; mixed, with one consumer killed (SIGKILL) mid-run and replaced —
//! and checks every job, every exit status, `lost()`, and that no name is
//! left in `/dev/shm`. It exits with status 1 if anything is wrong.

#[cfg(not(loom))]
mod app {
    use shmring::bytemuck::{Pod, Zeroable};
    use shmring::{Flavor, Queue, RecvError, SegmentError};
    use std::collections::HashMap;
    use std::error::Error;
    use std::io::{BufRead, BufReader, Write};
    use std::path::Path;
    use std::process::{Child, Command, ExitStatus, Stdio};
    use std::sync::mpsc;
    use std::time::Duration;

    type Res<T> = Result<T, Box<dyn Error>>;

    /// One unit of work.
    #[derive(Clone, Copy, Debug, Pod, Zeroable)]
    #[bytemuck(crate = "shmring::bytemuck")]
    #[repr(C)]
    struct Job {
        producer: u64,
        seq: u64,
    }

    const CAPACITY: u64 = 64;

    /// The one way every program opens the queue.
    fn open_queue(name: &str, producers: u64) -> Result<Queue<Job>, SegmentError> {
        Queue::<Job>::builder()
            .flavor(Flavor::Mpmc)
            .capacity(CAPACITY)
            .close_after(producers)
            .open_or_create(name)
    }

    fn producer(name: &str, id: u64, count: u64, producers: u64) -> Res<()> {
        let q = open_queue(name, producers)?;
        let mut tx = q.sender()?;
        // No consumer attached right now (none started yet, or one was
        // killed): `send` sleeps on the queue's futex until one attaches.
        tx.set_wait_for_receivers(true);
        for seq in 0..count {
            tx.send(Job { producer: id, seq })
                .map_err(|e| format!("producer {id}: {e}"))?;
        }
        let ended = tx.close();
        eprintln!(
            "producer {id}: sent {count} jobs{}",
            if ended { "; the stream has ended" } else { "" }
        );
        Ok(())
    }

    fn consumer(name: &str, id: u64, producers: u64) -> Res<()> {
        let q = open_queue(name, producers)?;
        let mut rx = q.receiver()?;
        rx.set_wait_for_senders(true);
        let mut out = std::io::stdout().lock();
        writeln!(out, "ready")?;
        let mut done = 0u64;
        loop {
            let job = match rx.recv_ref() {
                Ok(job) => job,
                Err(RecvError::Closed) => break,
                Err(e) => return Err(format!("consumer {id}: {e}").into()),
            };
            // The work, done while the message is held: a little time, and
            // one line (one write: stdout flushes at each newline).
            std::thread::sleep(Duration::from_micros(50));
            writeln!(out, "done {} {}", job.producer, job.seq)?;
            drop(job); // releases the slot
            done += 1;
        }
        eprintln!("consumer {id}: {done} jobs, end of stream");
        Ok(())
    }

    // -----------------------------------------------------------------
    // The self-checking demo
    // -----------------------------------------------------------------

    const PRODUCERS: u64 = 2;
    const JOBS: u64 = 2_000;

    /// A line a child printed, or its end of output.
    enum Line {
        Text(usize, String),
        Eof,
    }

    struct Round {
        name: String,
        children: Vec<(String, Child)>,
        lines: mpsc::Receiver<Line>,
        tx: mpsc::Sender<Line>,
        /// Jobs printed done: (producer, seq) -> times.
        done: HashMap<(u64, u64), u32>,
        /// Child index -> lines "done" it printed.
        per_child: HashMap<usize, u64>,
        ready: Vec<bool>,
        open: usize,
        /// A handle (no endpoint) to read `lost()` at the end.
        watch: Option<Queue<Job>>,
    }

    impl Round {
        fn new(name: String) -> Self {
            let (tx, lines) = mpsc::channel();
            Round {
                name,
                children: Vec::new(),
                lines,
                tx,
                done: HashMap::new(),
                per_child: HashMap::new(),
                ready: Vec::new(),
                open: 0,
                watch: None,
            }
        }

        fn start(&mut self, label: String, args: &[String]) -> Res<usize> {
            let mut child = Command::new(std::env::current_exe()?)
                .args(args)
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()?;
            let idx = self.children.len();
            let stdout = child.stdout.take().ok_or("no stdout")?;
            let tx = self.tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    match line {
                        Ok(l) => {
                            let _ = tx.send(Line::Text(idx, l));
                        }
                        Err(_) => break,
                    }
                }
                let _ = tx.send(Line::Eof);
            });
            self.children.push((label, child));
            self.ready.push(false);
            self.open += 1;
            if self.watch.is_none() {
                // Races the child to the name, as the programs do among
                // themselves: one creates, the other opens.
                self.watch = Some(open_queue(&self.name, PRODUCERS)?);
            }
            Ok(idx)
        }

        fn producer(&mut self, id: u64) -> Res<usize> {
            let args = ["producer", &self.name, &id.to_string(), &JOBS.to_string()];
            let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
            self.start(format!("producer {id}"), &args)
        }

        fn consumer(&mut self, id: u64) -> Res<usize> {
            let args = ["consumer", &self.name, &id.to_string()];
            let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
            self.start(format!("consumer {id}"), &args)
        }

        /// Handles lines until `until` holds (or every child's output
        /// ended: then an error).
        fn follow(&mut self, mut until: impl FnMut(&Round) -> bool) -> Res<()> {
            while !until(self) {
                if self.open == 0 {
                    return Err("every child ended before the round got there".into());
                }
                match self.lines.recv()? {
                    Line::Eof => self.open -= 1,
                    Line::Text(i, l) if l == "ready" => self.ready[i] = true,
                    Line::Text(i, l) => {
                        let f: Vec<&str> = l.split(' ').collect();
                        match (f.first(), f.get(1), f.get(2)) {
                            (Some(&"done"), Some(p), Some(s)) => {
                                *self.done.entry((p.parse()?, s.parse()?)).or_default() += 1;
                                *self.per_child.entry(i).or_default() += 1;
                            }
                            _ => return Err(format!("unexpected line {l:?}").into()),
                        }
                    }
                }
            }
            Ok(())
        }

        fn consumer_ready(&mut self, id: u64) -> Res<usize> {
            let i = self.consumer(id)?;
            self.follow(|r| r.ready[i])?;
            Ok(i)
        }

        /// Waits for every child and checks the round; `killed`: how many
        /// consumers were killed.
        fn finish(mut self, killed: &[usize]) -> Res<()> {
            self.follow(|r| r.open == 0)?;
            let mut failed = Vec::new();
            for (i, (label, child)) in self.children.iter_mut().enumerate() {
                let status: ExitStatus = child.wait()?;
                let want_killed = killed.contains(&i);
                use std::os::unix::process::ExitStatusExt;
                let ok = if want_killed {
                    status.signal() == Some(libc::SIGKILL)
                } else {
                    status.success()
                };
                if !ok {
                    failed.push(format!("{label}: {status}"));
                }
            }
            if !failed.is_empty() {
                return Err(format!("programs failed: {failed:?}").into());
            }
            let twice = self.done.values().filter(|&&n| n > 1).count();
            let missing = (0..PRODUCERS)
                .flat_map(|p| (0..JOBS).map(move |s| (p, s)))
                .filter(|j| !self.done.contains_key(j))
                .count() as u64;
            let q = self.watch.take().ok_or("no queue")?;
            let lost = q.lost();
            println!(
                "  {} jobs processed, {twice} twice, {missing} never; lost() = {lost}; \
                 per consumer: {:?}",
                self.done.len(),
                self.consumer_counts()
            );
            if twice > 0 {
                return Err(format!("{twice} jobs processed twice").into());
            }
            if missing > lost || lost > killed.len() as u64 {
                return Err(format!(
                    "{missing} jobs never processed, lost() = {lost}, {} killed",
                    killed.len()
                )
                .into());
            }
            if !q.is_closed() {
                return Err("the stream did not end".into());
            }
            if Path::new("/dev/shm").join(&self.name).exists() {
                return Err(format!("/dev/shm/{} is still there", self.name).into());
            }
            println!("  the stream ended; /dev/shm/{} is gone", self.name);
            Ok(())
        }

        fn consumer_counts(&self) -> Vec<(String, u64)> {
            let mut v: Vec<(String, u64)> = self
                .per_child
                .iter()
                .map(|(&i, &n)| (self.children[i].0.clone(), n))
                .collect();
            v.sort();
            v
        }

        /// After a failure: stop the children, remove the name.
        fn abandon(mut self) {
            for (_, c) in &mut self.children {
                let _ = c.kill();
                let _ = c.wait();
            }
            let _ = Queue::<Job>::unlink(&self.name);
        }
    }

    fn run_round(
        title: &str,
        name: String,
        body: impl FnOnce(&mut Round) -> Res<Vec<usize>>,
    ) -> Res<()> {
        println!("{title}");
        let mut round = Round::new(name);
        match body(&mut round) {
            Ok(killed) => round.finish(&killed),
            Err(e) => {
                round.abandon();
                Err(e)
            }
        }
    }

    fn demo() -> Res<()> {
        let pid = std::process::id();
        let name = |round: &str| format!("shmring-example-work-{pid}-{round}");

        run_round(
            "consumers first: 3 consumers, then 2 producers",
            name("consumers-first"),
            |r| {
                for id in 0..3 {
                    r.consumer_ready(id)?;
                }
                r.producer(0)?;
                r.producer(1)?;
                Ok(vec![])
            },
        )?;

        run_round(
            "producers first: 2 producers (waiting for a consumer), then 3 consumers",
            name("producers-first"),
            |r| {
                r.producer(0)?;
                r.producer(1)?;
                // Thousands of jobs of work each: all three consumers are
                // attached long before the first could finish alone.
                for id in 0..3 {
                    r.consumer(id)?;
                }
                Ok(vec![])
            },
        )?;

        run_round(
            "mixed: consumer, producer, consumer; one consumer killed mid-run and replaced; \
             then a consumer and the last producer",
            name("mixed"),
            |r| {
                let victim = r.consumer_ready(0)?;
                r.producer(0)?;
                r.consumer_ready(1)?;
                r.follow(|r| r.per_child.get(&victim).copied().unwrap_or(0) >= 100)?;
                r.children[victim].1.kill()?; // SIGKILL, most likely holding a job
                println!("  killed consumer 0 after {} jobs", r.per_child[&victim]);
                r.consumer_ready(3)?; // its replacement
                r.consumer_ready(2)?;
                r.producer(1)?;
                Ok(vec![victim])
            },
        )?;
        println!("ok");
        Ok(())
    }

    fn arg<T: std::str::FromStr>(args: &[String], i: usize, what: &str) -> Res<T> {
        let s = args.get(i).ok_or_else(|| format!("missing {what}"))?;
        s.parse().map_err(|_| format!("bad {what}: {s:?}").into())
    }

    pub fn main() -> Res<()> {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let producers = |i: usize| -> Res<u64> {
            if args.len() > i {
                arg(&args, i, "producers")
            } else {
                Ok(PRODUCERS)
            }
        };
        match args.first().map(String::as_str) {
            None => demo(),
            Some("producer") => producer(
                &arg::<String>(&args, 1, "name")?,
                arg(&args, 2, "id")?,
                arg(&args, 3, "count")?,
                producers(4)?,
            ),
            Some("consumer") => consumer(
                &arg::<String>(&args, 1, "name")?,
                arg(&args, 2, "id")?,
                producers(3)?,
            ),
            Some(other) => Err(format!(
                "unknown command {other:?}: producer <name> <id> <count> [producers] | \
                 consumer <name> <id> [producers]"
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
