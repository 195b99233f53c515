//! Separately started programs that meet on a name: producers and
//! consumers of a work queue started in any order (consumers first,
//! producers first, interleaved, one consumer killed and replaced), and
//! counters racing to `open_or_create` one `Value` or `Array`.
//!
//! Every program here is its own process (the test binary re-executed,
//! see `tests/common`), knows only the name, and does what a user's
//! program would: `open_or_create`, then work. Nothing coordinates them
//! but the library: no control block of the application, no `persist` or
//! `unlink` choreography, no polling for `Disconnected`. The examples
//! `work_queue` and `shared_counter` are these programs for users; the
//! logic lives here too because tests cannot rely on example binaries.
#![cfg(not(loom))]

mod common;

use bytemuck::{Pod, Zeroable};
use common::{child_main, kill_child, run, spawn_child, wait_ok, wait_until, Args, Ctx, ShmName};
use shmring::{Array, Barrier, Flavor, Queue, RecvError, SegmentError, Shared, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Child;

// ---------------------------------------------------------------------------
// The work queue programs
// ---------------------------------------------------------------------------

/// One unit of work: which producer made it, and its number there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Pod, Zeroable)]
#[repr(C)]
struct Job {
    producer: u64,
    seq: u64,
}

/// Small on purpose: producers block on a full queue and wake as
/// consumers take, and the ring wraps many times.
const CAPACITY: u64 = 16;

/// Opens the work queue `name`, or creates it: whichever program comes
/// first. Every program passes the same parameters; the stream ends at
/// the `producers`-th close, however the producers' lives overlap.
fn work_queue(name: &str, producers: u64) -> Result<Queue<Job>, SegmentError> {
    Queue::<Job>::builder()
        .flavor(Flavor::Mpmc)
        .capacity(CAPACITY)
        .close_after(producers)
        .open_or_create(name)
}

/// The producer program: sends jobs `0..count` as producer `id`, then
/// says it is done. The last of the `producers` closes ends the stream.
fn produce(name: &str, producers: u64, id: u64, count: u64) {
    let q = work_queue(name, producers).unwrap();
    let mut tx = q.sender().unwrap();
    // While no consumer is attached (none started yet, or the only one was
    // killed), sends sleep on the queue's futex until one attaches.
    tx.set_wait_for_receivers(true);
    for seq in 0..count {
        tx.send(Job { producer: id, seq }).unwrap();
    }
    tx.close();
}

/// The consumer program: takes jobs until the stream ends (`Closed`),
/// and processes each — writes `done <producer> <seq>` to `ledger` —
/// while it still holds the message in the queue (an in-place read):
/// killed before the line is written, it loses exactly that message, and
/// the queue counts it in `lost()`.
///
/// With `hold_after = Some(k)`: after `k` jobs it takes one more, writes
/// `hold <producer> <seq>` and waits to be killed holding it.
fn consume(name: &str, producers: u64, ledger: &Path, hold_after: Option<usize>) {
    let q = work_queue(name, producers).unwrap();
    let mut rx = q.receiver().unwrap();
    // Producers come and go: sleep through "none attached right now"
    // until the stream ends.
    rx.set_wait_for_senders(true);
    let mut out = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(ledger)
        .unwrap();
    let mut done = 0;
    loop {
        let job = match rx.recv_ref() {
            Ok(job) => job,
            Err(RecvError::Closed) => return,
            Err(e) => panic!("consumer: {e:?} before the end of the stream"),
        };
        if hold_after == Some(done) {
            // One write(2) per line: a kill leaves whole lines only.
            out.write_all(format!("hold {} {}\n", job.producer, job.seq).as_bytes())
                .unwrap();
            common::sleep_forever();
        }
        out.write_all(format!("done {} {}\n", job.producer, job.seq).as_bytes())
            .unwrap();
        done += 1;
        drop(job);
    }
}

#[test]
#[ignore = "child process entry point"]
fn child_producer() {
    child_main("child_producer", |a: Args| {
        produce(a.str(0), a.get(1), a.get(2), a.get(3));
    });
}

#[test]
#[ignore = "child process entry point"]
fn child_consumer() {
    child_main("child_consumer", |a: Args| {
        let hold = match a.str(3) {
            "-" => None,
            k => Some(k.parse().unwrap()),
        };
        consume(a.str(0), a.get(1), Path::new(a.str(2)), hold);
    });
}

/// One run of the work queue: names, ledgers, the programs it started.
struct WorkRun {
    name: ShmName,
    producers: u64,
    dir: tempfile::TempDir,
    ledgers: Vec<PathBuf>,
    /// Ledgers made so far (their file names).
    made: usize,
    /// A handle to read `lost()` at the end (no endpoint: it does not keep
    /// the name).
    monitor: Option<Queue<Job>>,
}

impl WorkRun {
    fn new(ctx: &Ctx, producers: u64) -> Self {
        WorkRun {
            name: ctx.removed_name("work"),
            producers,
            dir: tempfile::tempdir().unwrap(),
            ledgers: Vec::new(),
            made: 0,
            monitor: None,
        }
    }

    fn producer(&self, id: u64, count: u64) -> Child {
        let p = self.producers.to_string();
        let (id, count) = (id.to_string(), count.to_string());
        spawn_child("child_producer", &[&self.name, &p, &id, &count])
    }

    fn consumer(&mut self, hold_after: Option<usize>) -> (Child, PathBuf) {
        self.made += 1;
        let ledger = self.dir.path().join(format!("consumer-{}.log", self.made));
        self.ledgers.push(ledger.clone());
        let hold = hold_after.map_or("-".to_string(), |k| k.to_string());
        let p = self.producers.to_string();
        let child = spawn_child(
            "child_consumer",
            &[&self.name, &p, ledger.to_str().unwrap(), &hold],
        );
        (child, ledger)
    }

    /// Starts a consumer and waits until it has attached (its ledger
    /// appears once it has): a consumer that came after the end of the
    /// stream would find the name gone and wait on a fresh queue for the
    /// next stream, so every order below lets the consumers it counts on
    /// join before the last producer starts.
    fn consumer_joined(&mut self, hold_after: Option<usize>) -> (Child, PathBuf) {
        let (child, ledger) = self.consumer(hold_after);
        wait_until("a consumer to attach", || ledger.exists());
        (child, ledger)
    }

    /// Once the first program has created the queue: opens it to read
    /// `lost()` at the end.
    fn watch(&mut self) {
        wait_until("the first program to create the queue", || {
            self.name.exists()
        });
        self.monitor = Some(Queue::<Job>::open(&self.name).unwrap());
    }

    /// Every ledger line, as (kind, job).
    fn lines(&self) -> Vec<(String, Job)> {
        let mut v = Vec::new();
        for l in &self.ledgers {
            for line in fs::read_to_string(l).unwrap_or_default().lines() {
                let f: Vec<&str> = line.split(' ').collect();
                assert_eq!(f.len(), 3, "ledger line {line:?}");
                let job = Job {
                    producer: f[1].parse().unwrap(),
                    seq: f[2].parse().unwrap(),
                };
                v.push((f[0].to_string(), job));
            }
        }
        v
    }

    /// The end: every job of `counts[p]` per producer `p` was processed
    /// exactly once, except those held by a killed consumer (`hold`
    /// lines), which were processed by nobody and are counted in
    /// `lost()`; the stream ended and its name is gone.
    fn check(&self, counts: &[u64]) {
        let mut done: BTreeMap<Job, usize> = BTreeMap::new();
        let mut held = BTreeSet::new();
        for (kind, job) in self.lines() {
            match kind.as_str() {
                "done" => *done.entry(job).or_default() += 1,
                "hold" => assert!(held.insert(job), "{job:?} held twice"),
                k => panic!("ledger kind {k}"),
            }
        }
        let twice: Vec<_> = done.iter().filter(|(_, &n)| n > 1).collect();
        assert!(twice.is_empty(), "processed more than once: {twice:?}");
        for (p, &count) in counts.iter().enumerate() {
            for seq in 0..count {
                let job = Job {
                    producer: p as u64,
                    seq,
                };
                assert!(
                    done.contains_key(&job) != held.contains(&job),
                    "{job:?}: processed {} times, held by a killed consumer: {}",
                    done.get(&job).copied().unwrap_or(0),
                    held.contains(&job)
                );
            }
        }
        let total: u64 = counts.iter().sum();
        assert_eq!(
            done.len() as u64 + held.len() as u64,
            total,
            "jobs nobody sent"
        );
        if let Some(q) = &self.monitor {
            assert!(q.is_closed(), "the stream ended");
            assert_eq!(
                q.lost(),
                held.len() as u64,
                "lost() counts exactly the messages killed consumers held"
            );
            assert_eq!(q.endpoints(), (0, 0), "every endpoint left or was reaped");
        }
        assert!(
            !self.name.exists(),
            "the ended stream's name is removed by the last program to leave"
        );
    }
}

fn wait_all(children: &mut [Child]) {
    for c in children {
        wait_ok(c);
    }
}

/// Sends `signal` to a child.
fn signal(child: &Child, signal: libc::c_int) {
    // SAFETY: kill takes plain integers; the pid is our own unreaped child.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, signal) }, 0);
}

/// Three consumers start, then two producers: the consumers wait (no
/// sender yet), take everything, and all exit at the end of the stream.
#[test]
fn work_queue_consumers_first() {
    run("sep_consumers_first", |ctx| {
        let mut w = WorkRun::new(ctx, 2);
        let mut kids = vec![w.consumer_joined(None).0];
        w.watch();
        kids.push(w.consumer_joined(None).0);
        kids.push(w.consumer_joined(None).0);
        kids.push(w.producer(0, 300));
        kids.push(w.producer(1, 300));
        wait_all(&mut kids);
        w.check(&[300, 300]);
    });
}

/// Two producers start first, with nobody to take their jobs: one of
/// them creates the queue, and both wait for a consumer (asleep on the
/// futex). They are paused (SIGSTOP: paused is not dead) while three
/// consumers join, so that the first consumer cannot finish the stream
/// before the third has joined; then they go on, and all five programs
/// exit at the end of the stream.
#[test]
fn work_queue_producers_first() {
    run("sep_producers_first", |ctx| {
        let mut w = WorkRun::new(ctx, 2);
        let mut producers = vec![w.producer(0, 300)];
        w.watch();
        producers.push(w.producer(1, 300));
        let q = w.monitor.clone().unwrap();
        wait_until("both producers to attach", || q.endpoints() == (2, 0));
        for p in &producers {
            signal(p, libc::SIGSTOP);
        }
        let mut kids: Vec<Child> = (0..3).map(|_| w.consumer_joined(None).0).collect();
        for p in &producers {
            signal(p, libc::SIGCONT);
        }
        kids.extend(producers);
        wait_all(&mut kids);
        w.check(&[300, 300]);
    });
}

/// Interleaved, with a consumer killed holding a message and replaced:
/// C1 starts, then the first producer; C1 takes 5 jobs and holds the 6th;
/// it is SIGKILLed while the producer waits for room; its replacement and
/// two more consumers join, then the second producer starts. The held
/// job is lost — counted once in `lost()`, processed by nobody — and
/// every other job is processed exactly once.
#[test]
fn work_queue_interleaved_with_a_consumer_killed_and_replaced() {
    run("sep_interleaved_kill", |ctx| {
        let mut w = WorkRun::new(ctx, 2);
        let (mut victim, victim_ledger) = w.consumer_joined(Some(5));
        w.watch();
        let mut kids = vec![w.producer(0, 200)];
        wait_until("the first consumer to hold a job", || {
            fs::read_to_string(&victim_ledger)
                .unwrap_or_default()
                .contains("hold")
        });
        kill_child(&mut victim);
        kids.push(w.consumer_joined(None).0); // the replacement
        kids.push(w.consumer_joined(None).0);
        kids.push(w.consumer_joined(None).0);
        kids.push(w.producer(1, 200));
        wait_all(&mut kids);
        w.check(&[200, 200]);
        assert_eq!(w.monitor.as_ref().unwrap().lost(), 1);
    });
}

/// A consumer killed while nobody has to wait for it — the queue never
/// fills, so no producer blocks and reclaims it — still does not keep the
/// name: the last program to leave the ended stream reclaims the dead
/// endpoint (and counts the job it held) before removing the name.
#[test]
fn a_consumer_killed_where_nobody_waits_for_it_does_not_keep_the_name() {
    run("sep_killed_idle", |ctx| {
        let mut w = WorkRun::new(ctx, 2);
        let (mut victim, victim_ledger) = w.consumer_joined(Some(2));
        w.watch();
        // 5 + 5 jobs in a queue of 16: no send ever waits for room.
        let mut kids = vec![w.producer(0, 5)];
        wait_until("the first consumer to hold a job", || {
            fs::read_to_string(&victim_ledger)
                .unwrap_or_default()
                .contains("hold")
        });
        kill_child(&mut victim);
        kids.push(w.consumer_joined(None).0);
        kids.push(w.consumer_joined(None).0);
        kids.push(w.producer(1, 5));
        wait_all(&mut kids);
        w.check(&[5, 5]);
    });
}

/// A producer that finishes — sends everything and closes — before the
/// second one starts does not end the stream: it ends at the second
/// close (`close_after(2)`). Without the count, the consumers would
/// stop at `Closed` early and the second producer could not attach.
#[test]
fn a_producer_done_before_the_next_starts_does_not_end_the_stream() {
    run("sep_close_after", |ctx| {
        let mut w = WorkRun::new(ctx, 2);
        let mut kids = vec![w.consumer_joined(None).0];
        w.watch();
        kids.push(w.consumer_joined(None).0);
        let mut first = w.producer(0, 100);
        wait_ok(&mut first);
        let q = w.monitor.as_ref().unwrap();
        assert!(!q.is_closed(), "one close of two does not end the stream");
        assert!(w.name.exists());
        kids.push(w.producer(1, 100));
        wait_all(&mut kids);
        w.check(&[100, 100]);
    });
}

/// After a full shutdown — the stream ended, every program left, the
/// name removed — a late producer's `open_or_create` makes a fresh queue
/// (it does not find the ended one and fail, nor wait for ever), and a
/// late consumer joins it.
#[test]
fn a_late_producer_after_a_full_shutdown_gets_a_fresh_queue() {
    run("sep_late_producer", |ctx| {
        let mut w = WorkRun::new(ctx, 1);
        let mut kids = vec![w.consumer_joined(None).0];
        w.watch();
        kids.push(w.producer(0, 50));
        wait_all(&mut kids);
        w.check(&[50]);
        let old = w.monitor.take().unwrap();
        assert!(old.is_closed());

        // The same name, later: a fresh stream.
        w.ledgers.clear();
        let mut late = vec![w.producer(0, 20)];
        w.watch();
        assert!(!w.monitor.as_ref().unwrap().is_closed(), "a new stream");
        late.push(w.consumer(None).0);
        wait_all(&mut late);
        w.check(&[20]);
    });
}

/// The one case where the end of a stream finds nobody to remove its
/// name: its last consumer was killed after the end, attached, holding
/// the last message. The next `open_or_create` finds that ended stream
/// with only dead endpoints, reclaims them (counting the held message),
/// removes the name and makes a new stream, which then runs to its end.
#[test]
fn an_ended_stream_whose_last_consumer_died_is_replaced_by_open_or_create() {
    run("sep_stale_end", |ctx| {
        let mut w = WorkRun::new(ctx, 1);
        let (mut victim, ledger) = w.consumer_joined(Some(0));
        w.watch();
        let old = w.monitor.take().unwrap();
        let tx = old.sender().unwrap(); // this test is the producer
        tx.send(Job {
            producer: 0,
            seq: 0,
        })
        .unwrap();
        wait_until("the consumer to hold the job", || {
            fs::read_to_string(&ledger)
                .unwrap_or_default()
                .contains("hold")
        });
        assert!(tx.close(), "the stream ends");
        kill_child(&mut victim);
        assert!(w.name.exists(), "nobody left after the dead consumer");
        assert_eq!(old.lost(), 0, "not reclaimed yet");

        let fresh = work_queue(&w.name, 1).unwrap();
        assert!(!fresh.is_closed(), "a new stream, not the ended one");
        assert_eq!(old.lost(), 1, "the dead consumer's job, counted once");
        assert_eq!(old.endpoints(), (0, 0));
        w.ledgers.clear();
        w.monitor = Some(fresh);
        let mut kids = vec![w.consumer_joined(None).0, w.producer(0, 10)];
        wait_all(&mut kids);
        w.check(&[10]);
    });
}

// ---------------------------------------------------------------------------
// Counters: Value and Array by name
// ---------------------------------------------------------------------------

/// Waits at the test's start gate until all four counters are there, so
/// that they race into `open_or_create` together.
fn at_the_gate(gate: &str) {
    Shared::<Barrier>::open(gate).unwrap().wait().unwrap();
}

/// The counter program: opens or creates the `Value<u64>` `name` and
/// adds 1 to it `n` times under its lock.
fn count_value(name: &str, n: u64) {
    let v = Value::<u64>::open_or_create(name, 0).unwrap();
    for _ in 0..n {
        v.lock()
            .unwrap_or_else(|died| died.into_inner())
            .update(|x| x + 1);
    }
}

/// Array length of the counter tests.
const BINS: usize = 8;

/// The array counter program: opens or creates the `Array<u64>` `name`
/// of `BINS` elements and adds 1 to element `i % BINS`, and to the
/// element `id`, for `i` in `0..n`, under its lock.
fn count_array(name: &str, id: usize, n: u64) {
    let a = Array::<u64>::open_or_create(name, BINS).unwrap();
    for i in 0..n as usize {
        let g = a.lock().unwrap_or_else(|died| died.into_inner());
        g.update(i % BINS, |x| x + 1);
        g.update(id % BINS, |x| x + 1);
    }
}

#[test]
#[ignore = "child process entry point"]
fn child_counter() {
    child_main("child_counter", |a: Args| {
        at_the_gate(a.str(0));
        match a.str(1) {
            "value" => count_value(a.str(2), a.get(4)),
            "array" => count_array(a.str(2), a.get(3), a.get(4)),
            k => panic!("kind {k}"),
        }
    });
}

/// The show program: the value, read by a process that starts after every
/// counter exited.
#[test]
#[ignore = "child process entry point"]
fn child_show() {
    child_main("child_show", |a: Args| match a.str(0) {
        "value" => assert_eq!(Value::<u64>::open(a.str(1)).unwrap().load(), a.get(2)),
        "array" => {
            let want: Vec<u64> = a.str(2).split(',').map(|x| x.parse().unwrap()).collect();
            assert_eq!(
                Array::<u64>::open_len(a.str(1), BINS).unwrap().to_vec(),
                want
            );
        }
        k => panic!("kind {k}"),
    });
}

/// Starts four counters of `kind` on `name`, lets them race, waits.
fn race_counters(ctx: &Ctx, kind: &str, name: &str, n: u64) {
    let gate_name = ctx.name("gate");
    let gate = Shared::create(&gate_name, Barrier::new(4)).unwrap();
    let n = n.to_string();
    let mut kids: Vec<Child> = (0..4)
        .map(|id| {
            let id = id.to_string();
            spawn_child("child_counter", &[&gate_name, kind, name, &id, &n])
        })
        .collect();
    wait_all(&mut kids);
    drop(gate);
    Shared::<Barrier>::unlink(&gate_name).unwrap();
}

/// Four processes racing `Value::open_or_create` meet on one value
/// (exactly one of them created it): 4n at the end. A process started
/// after all of them exited reads 4n: the name outlives every process.
#[test]
fn four_processes_racing_value_open_or_create_share_one_value() {
    run("sep_value_race", |ctx| {
        let name = ctx.removed_name("counter");
        let n = 2_000;
        race_counters(ctx, "value", &name, n);
        assert!(name.exists(), "the name stays after every process exited");
        let mut show = spawn_child("child_show", &["value", &name, &(4 * n).to_string()]);
        wait_ok(&mut show);
        Value::<u64>::unlink(&name).unwrap();
        assert!(!name.exists());
    });
}

/// The same with `Array::open_or_create`, which also checks the length
/// of an existing array.
#[test]
fn four_processes_racing_array_open_or_create_share_one_array() {
    run("sep_array_race", |ctx| {
        let name = ctx.removed_name("bins");
        let n = 400u64;
        race_counters(ctx, "array", &name, n);
        assert!(name.exists(), "the name stays after every process exited");
        // Every counter added n spread over the bins, and n to bin `id`.
        let want: Vec<u64> = (0..BINS)
            .map(|b| 4 * (n / BINS as u64) + if b < 4 { n } else { 0 })
            .collect();
        assert_eq!(want.iter().sum::<u64>(), 8 * n);
        let arg = want
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let mut show = spawn_child("child_show", &["array", &name, &arg]);
        wait_ok(&mut show);
        assert!(matches!(
            Array::<u64>::open_or_create(&name, BINS + 1),
            Err(SegmentError::LengthMismatch { expected, found })
                if expected == BINS as u64 + 1 && found == BINS as u64
        ));
        Array::<u64>::unlink(&name).unwrap();
        assert!(!name.exists());
    });
}
