//! The process pool, with real worker processes (feature `serde`).
//!
//! A `harness = false` target: its `main` calls `shmring::pool::init` first,
//! as every program that makes a pool must, because the workers are this
//! binary re-executed (libtest's `main` would never reach `init`). Then it
//! runs the cases below one after another, each under the watchdog of
//! `tests/common` (a hang is a failure), and takes libtest's usual
//! arguments: a substring filter, `--exact`, `--list` (so `cargo test
//! --test pool NAME` and nextest work). A case that needs a *parent*
//! process to kill (`parent_killed_workers_exit`) re-executes this binary
//! with `POOL_TEST_ROLE=parent`; that parent also calls `init` first.
//!
//! No case asserts a wall-clock bound: sleeps inside tasks only make sure
//! a task is still running when the test acts on it.
#![cfg(feature = "serde")]

mod common;
#[path = "common/harness.rs"]
#[allow(dead_code)] // `filtered` is for tests/transport.rs
mod harness;

use shmring::pool::{self, Task};
use shmring::{Pool, PoolError};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn square(x: u64) -> u64 {
    x * x
}
static SQUARE: Task<u64, u64> = Task::new("square", square);

fn boom(x: u64) -> u64 {
    if x % 2 == 1 {
        panic!("boom {x}");
    }
    x
}
static BOOM: Task<u64, u64> = Task::new("boom", boom);

fn sleep_ms(ms: u64) -> u32 {
    std::thread::sleep(Duration::from_millis(ms));
    std::process::id()
}
static SLEEP: Task<u64, u32> = Task::new("sleep", sleep_ms);

/// Writes this worker's pid to `path` (atomically), then never returns.
fn park(path: String) -> u32 {
    announce(&path);
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}
static PARK: Task<String, u32> = Task::new("park", park);

/// The first run (no file at `path`) announces itself and parks; a second
/// run returns its pid.
fn park_once(path: String) -> u32 {
    if !Path::new(&path).exists() {
        park(path);
    }
    std::process::id()
}
static PARK_ONCE: Task<String, u32> = Task::new("park_once", park_once);

fn echo(v: Vec<u8>) -> Vec<u8> {
    v
}
static ECHO: Task<Vec<u8>, Vec<u8>> = Task::new("echo", echo);

fn make_bytes(n: u64) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}
static MAKE_BYTES: Task<u64, Vec<u8>> = Task::new("make_bytes", make_bytes);

/// Announces itself, then returns `n` bytes.
fn announce_then_bytes((path, n): (String, u64)) -> Vec<u8> {
    announce(&path);
    make_bytes(n)
}
static ANNOUNCE_THEN_BYTES: Task<(String, u64), Vec<u8>> =
    Task::new("announce_then_bytes", announce_then_bytes);

fn sleep_square(x: u64) -> u64 {
    std::thread::sleep(Duration::from_micros(200));
    x * x
}
static SLEEP_SQUARE: Task<u64, u64> = Task::new("sleep_square", sleep_square);

fn pid(_: ()) -> u32 {
    std::process::id()
}
static PID: Task<(), u32> = Task::new("pid", pid);

/// Never registered.
static STRAY: Task<u64, u64> = Task::new("stray", square);

fn announce(path: &str) {
    let tmp = format!("{path}.tmp");
    std::fs::write(&tmp, std::process::id().to_string()).expect("write pid");
    std::fs::rename(&tmp, path).expect("rename pid file");
}

/// A fresh path for a pid file.
fn pid_file(tag: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let p = std::env::temp_dir().join(format!(
        "shmring-pool-test-{}-{}-{tag}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_file(&p);
    p
}

/// Waits for the pid written to `path`, removes the file.
fn read_pid(path: &Path) -> u32 {
    common::wait_until("a task's pid file", || path.exists());
    let pid = std::fs::read_to_string(path)
        .expect("read")
        .trim()
        .parse()
        .expect("a pid");
    let _ = std::fs::remove_file(path);
    pid
}

fn kill9(pid: u32) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill -9");
}

/// (state, start time) of a process, from `/proc/<pid>/stat`.
fn proc_stat(pid: u32) -> Option<(char, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_ascii_whitespace().collect();
    Some((f[0].chars().next()?, f.get(19)?.parse().ok()?))
}

/// Whether the process `pid` that started at `start` still runs (a zombie
/// or a pid reused by another process does not).
fn running(pid: u32, start: u64) -> bool {
    matches!(proc_stat(pid), Some((s, t)) if t == start && s != 'Z' && s != 'X')
}

fn start_times(pids: &[u32]) -> Vec<(u32, u64)> {
    pids.iter()
        .map(|&p| (p, proc_stat(p).expect("a live worker").1))
        .collect()
}

fn pool(n: usize) -> Pool {
    Pool::with_workers(n).expect("a pool")
}

// ---------------------------------------------------------------------------
// Cases
// ---------------------------------------------------------------------------

fn map_keeps_input_order() {
    let p = pool(3);
    let xs: Vec<u64> = (0..20_000).collect();
    let ys = p.map(&SQUARE, xs.iter().copied()).expect("map");
    assert_eq!(ys.len(), xs.len());
    for (x, y) in xs.iter().zip(&ys) {
        assert_eq!(*y, x * x, "result of input {x}");
    }
    assert_eq!(
        p.map(&SQUARE, Vec::<u64>::new()).unwrap(),
        Vec::<u64>::new()
    );
    // The seed.
    assert_eq!(p.map(&SQUARE, [1, 2, 3, 4, 5]).unwrap(), [1, 4, 9, 16, 25]);
}

fn imap_unordered_yields_each_once() {
    let p = pool(2);
    let n = 5_000u64;
    let mut got: Vec<u64> = p
        .imap_unordered(&SQUARE, 0..n)
        .map(|r| r.expect("a result"))
        .collect();
    got.sort_unstable();
    let want: Vec<u64> = (0..n).map(|x| x * x).collect();
    assert_eq!(got, want, "each result exactly once");
    // An endless input: the iterator takes inputs as workers need them;
    // dropping it after 100 results leaves the pool usable.
    let first: Vec<u64> = p
        .imap_unordered(&SQUARE, 0..)
        .take(100)
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(first.len(), 100);
    assert_eq!(p.map(&SQUARE, [7]).unwrap(), [49]);
    // Errors come as items.
    let errs = p
        .imap_unordered(&BOOM, 0..10u64)
        .filter(|r| matches!(r, Err(PoolError::Panicked(_))))
        .count();
    assert_eq!(errs, 5);
}

fn submit_wait_and_poll() {
    let p = pool(2);
    let h = p.submit(&SQUARE, 12).unwrap();
    assert_eq!(h.wait().unwrap(), 144);

    let mut h = p.submit(&SLEEP, 300).unwrap();
    // The task sleeps 300 ms: 1 ms cannot be enough.
    assert!(matches!(
        h.wait_timeout(Duration::from_millis(1)),
        Err(PoolError::Timeout)
    ));
    assert!(h.try_result().is_none(), "not finished yet");
    common::wait_until("the task to finish", || h.is_done());
    let pid = h.try_result().expect("done").expect("ok");
    assert!(p.worker_pids().contains(&pid), "ran in a worker");
    assert!(matches!(h.try_result(), Some(Err(PoolError::ResultTaken))));
    assert!(matches!(
        h.wait_timeout(Duration::from_secs(1)),
        Err(PoolError::ResultTaken)
    ));

    // Many handles, waited in reverse order.
    let hs: Vec<_> = (0..200u64).map(|i| p.submit(&SQUARE, i).unwrap()).collect();
    for (i, h) in hs.into_iter().enumerate().rev() {
        assert_eq!(h.wait().unwrap(), (i * i) as u64);
    }
    // A dropped handle does not disturb the others.
    drop(p.submit(&SLEEP, 10).unwrap());
    assert_eq!(p.submit(&SQUARE, 3).unwrap().wait().unwrap(), 9);
}

fn panic_is_an_error_and_the_worker_survives() {
    let p = pool(2);
    let pids = p.worker_pids();
    match p.submit(&BOOM, 3).unwrap().wait() {
        Err(PoolError::Panicked(msg)) => assert!(msg.contains("boom 3"), "message: {msg:?}"),
        other => panic!("expected Panicked, got {other:?}"),
    }
    assert_eq!(p.submit(&BOOM, 4).unwrap().wait().unwrap(), 4);
    match p.map(&BOOM, [0, 2, 4, 5, 6]) {
        Err(PoolError::Panicked(msg)) => assert!(msg.contains("boom 5"), "message: {msg:?}"),
        other => panic!("expected Panicked from map, got {other:?}"),
    }
    assert_eq!(p.map(&SQUARE, 0..100u64).unwrap().len(), 100);
    assert_eq!(p.worker_pids(), pids, "no worker was replaced");
    assert_eq!(p.replacements(), 0);
}

fn killed_worker_fails_exactly_its_task() {
    let p = pool(2);
    let file = pid_file("kill");
    let parked = p.submit(&PARK, file.display().to_string()).unwrap();
    let victim = read_pid(&file);
    assert!(p.worker_pids().contains(&victim));
    // Other tasks, queued and running, around the kill.
    let others: Vec<_> = (0..300u64).map(|i| p.submit(&SQUARE, i).unwrap()).collect();
    kill9(victim);
    match parked.wait() {
        Err(PoolError::WorkerDied { pid, status }) => {
            assert_eq!(pid, victim);
            assert!(status.contains("SIGKILL"), "status: {status}");
        }
        other => panic!("expected WorkerDied, got {other:?}"),
    }
    for (i, h) in others.into_iter().enumerate() {
        assert_eq!(h.wait().expect("unaffected"), (i * i) as u64);
    }
    common::wait_until("a replacement worker", || {
        let pids = p.worker_pids();
        pids.len() == 2 && !pids.contains(&victim)
    });
    assert_eq!(p.replacements(), 1);
    // Later tasks succeed, on both workers.
    let ys = p.map(&SQUARE, 0..2_000u64).unwrap();
    assert_eq!(ys[1999], 1999 * 1999);
    let ran: std::collections::HashSet<u32> =
        p.map(&SLEEP, vec![20; 8]).unwrap().into_iter().collect();
    let pids: std::collections::HashSet<u32> = p.worker_pids().into_iter().collect();
    assert!(ran.is_subset(&pids), "{ran:?} ran outside {pids:?}");
}

fn killed_worker_idle_between_tasks() {
    // A worker killed while it runs nothing fails no task.
    let p = pool(2);
    assert_eq!(p.map(&SQUARE, 0..10u64).unwrap().len(), 10);
    let victim = p.worker_pids()[0];
    kill9(victim);
    common::wait_until("a replacement", || !p.worker_pids().contains(&victim));
    let ys = p.map(&SQUARE, 0..1000u64).unwrap();
    assert_eq!(ys[999], 999 * 999);
}

fn retry_once_runs_it_again() {
    let p = Pool::builder().workers(2).retry_once(true).build().unwrap();
    let file = pid_file("retry");
    let h = p.submit(&PARK_ONCE, file.display().to_string()).unwrap();
    let victim = read_pid(&file);
    // The second run finds the file and returns.
    std::fs::write(&file, "retry").unwrap();
    kill9(victim);
    let second = h.wait().expect("retried once");
    assert_ne!(second, victim);
    let _ = std::fs::remove_file(&file);
    // A task whose both runs lose their worker fails.
    let file = pid_file("retry2");
    let h = p.submit(&PARK, file.display().to_string()).unwrap();
    kill9(read_pid(&file));
    kill9(read_pid(&file));
    assert!(matches!(h.wait(), Err(PoolError::WorkerDied { .. })));
}

fn shutdown_wait_drains() {
    let p = pool(2);
    let hs: Vec<_> = (0..20).map(|_| p.submit(&SLEEP, 20).unwrap()).collect();
    let pids = start_times(&p.worker_pids());
    p.shutdown(true);
    for h in hs {
        h.wait().expect("drained, not cancelled");
    }
    assert!(matches!(p.submit(&SQUARE, 1), Err(PoolError::ShutDown)));
    assert!(matches!(p.map(&SQUARE, [1]), Err(PoolError::ShutDown)));
    for (pid, t) in pids {
        assert!(!running(pid, t), "worker {pid} still runs after shutdown");
    }
    p.shutdown(true); // again: nothing more
}

fn shutdown_no_wait_cancels() {
    let p = pool(2);
    let pids = start_times(&p.worker_pids());
    let file = pid_file("hang");
    let hung = p.submit(&PARK, file.display().to_string()).unwrap();
    read_pid(&file);
    let queued: Vec<_> = (0..50).map(|_| p.submit(&SLEEP, 1_000).unwrap()).collect();
    // A task that never returns cannot hold it up.
    p.shutdown(false);
    assert!(matches!(hung.wait(), Err(PoolError::Cancelled)));
    for h in queued {
        assert!(matches!(h.wait(), Err(PoolError::Cancelled)));
    }
    for (pid, t) in pids {
        assert!(
            !running(pid, t),
            "worker {pid} still runs after shutdown(false)"
        );
    }
    assert!(matches!(p.submit(&SQUARE, 1), Err(PoolError::ShutDown)));
}

fn bad_configuration_is_refused() {
    assert!(matches!(Pool::with_workers(0), Err(PoolError::NoWorkers)));
    assert!(matches!(
        Pool::builder().workers(0).build(),
        Err(PoolError::NoWorkers)
    ));
    let p = pool(1);
    match p.map(&STRAY, [1]) {
        Err(PoolError::Unregistered { name }) => assert_eq!(name, "stray"),
        other => panic!("expected Unregistered, got {other:?}"),
    }
    assert!(matches!(
        p.submit(&STRAY, 1),
        Err(PoolError::Unregistered { .. })
    ));
    // Another task under a registered name, with other types.
    static IMPOSTOR: Task<String, u64> = Task::new("square", |s: String| s.len() as u64);
    assert!(matches!(
        p.submit(&IMPOSTOR, "x".into()),
        Err(PoolError::Unregistered { .. })
    ));
    assert!(matches!(
        p.imap_unordered(&STRAY, [1]).next(),
        Some(Err(PoolError::Unregistered { .. }))
    ));
    assert_eq!(
        Pool::new().unwrap().workers(),
        std::thread::available_parallelism().unwrap().get()
    );
}

fn starts_from_a_multithreaded_process() {
    // Threads that hold locks and allocate while the pool starts workers:
    // a fork without exec could deadlock on them; an exec cannot.
    let stop = Arc::new(AtomicBool::new(false));
    let lock = Arc::new(std::sync::Mutex::new(Vec::<u64>::new()));
    let busy: Vec<_> = (0..4)
        .map(|i| {
            let (stop, lock) = (stop.clone(), lock.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let mut g = lock.lock().unwrap();
                    g.push(i);
                    g.truncate(16);
                    drop(g);
                    let _v: Vec<u8> = vec![0; 4096];
                }
            })
        })
        .collect();
    // The pool is made on yet another thread, which then ends: workers
    // must outlive the thread that made the pool.
    let p = std::thread::spawn(|| pool(2)).join().unwrap();
    // And used from several threads at once.
    let p = Arc::new(p);
    let users: Vec<_> = (0..4u64)
        .map(|t| {
            let p = p.clone();
            std::thread::spawn(move || {
                let ys = p.map(&SQUARE, (0..1_000u64).map(|x| x + t)).unwrap();
                assert_eq!(ys[999], (999 + t) * (999 + t));
                p.submit(&PID, ()).unwrap().wait().unwrap()
            })
        })
        .collect();
    for u in users {
        let pid = u.join().unwrap();
        assert!(p.worker_pids().contains(&pid));
    }
    stop.store(true, Ordering::Relaxed);
    for b in busy {
        b.join().unwrap();
    }
}

fn dropped_pool_reaps_every_worker() {
    let p = pool(3);
    let pids = start_times(&p.worker_pids());
    assert_eq!(pids.len(), 3);
    for &(pid, t) in &pids {
        assert!(running(pid, t));
    }
    // Dropped while tasks run: they finish first (handles get results).
    let hs: Vec<_> = (0..6).map(|_| p.submit(&SLEEP, 30).unwrap()).collect();
    drop(p);
    for h in hs {
        h.wait().expect("finished before the pool went");
    }
    for (pid, t) in pids {
        // Reaped: no process and no zombie (the pid may be reused, by
        // another process with another start time).
        assert!(!running(pid, t), "worker {pid} still runs");
        assert!(
            !matches!(proc_stat(pid), Some((_, s)) if s == t),
            "worker {pid} is a zombie: not reaped"
        );
    }
}

fn nothing_in_dev_shm() {
    let p = pool(2);
    let pids = p.worker_pids();
    for who in pids
        .iter()
        .map(|p| p.to_string())
        .chain(["self".to_string()])
    {
        let maps = std::fs::read_to_string(format!("/proc/{who}/maps")).unwrap();
        assert!(
            !maps.contains("/dev/shm/"),
            "process {who} maps a /dev/shm segment:\n{maps}"
        );
        if who != "self" {
            assert!(maps.contains("memfd:"), "worker {who} maps no memfd");
        }
    }
    drop(p);
}

fn long_inputs_and_results() {
    let p = Pool::builder().workers(2).slot_size(1024).build().unwrap();
    // Many slots long, both ways.
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
    assert_eq!(p.submit(&ECHO, big.clone()).unwrap().wait().unwrap(), big);
    let made = p.submit(&MAKE_BYTES, 2_000_000).unwrap().wait().unwrap();
    assert_eq!(made, make_bytes(2_000_000));
    // Long ones mixed with short ones, on every worker.
    let inputs: Vec<Vec<u8>> = (0..40).map(|i| vec![i as u8; (i % 5) * 5000 + 1]).collect();
    assert_eq!(p.map(&ECHO, inputs.clone()).unwrap(), inputs);
    drop(p);

    // Beyond the maximum payload: a clear error, nothing hangs.
    let p = Pool::builder()
        .workers(1)
        .max_payload(10_000)
        .build()
        .unwrap();
    match p.submit(&ECHO, vec![0; 20_000]) {
        Err(PoolError::TooLarge { len, max }) => assert!(len >= 20_000 && max < 10_000),
        other => panic!("expected TooLarge, got {other:?}"),
    }
    match p.submit(&MAKE_BYTES, 50_000).unwrap().wait() {
        Err(PoolError::Worker(msg)) => assert!(msg.contains("maximum payload"), "{msg}"),
        other => panic!("expected Worker(too large), got {other:?}"),
    }
    assert_eq!(p.submit(&MAKE_BYTES, 10).unwrap().wait().unwrap().len(), 10);
}

fn kills_mid_long_messages() {
    let p = Pool::builder().workers(2).slot_size(1024).build().unwrap();
    // A worker killed while it sends a long result (or computes it).
    let file = pid_file("long");
    let h = p
        .submit(
            &ANNOUNCE_THEN_BYTES,
            (file.display().to_string(), 50_000_000),
        )
        .unwrap();
    kill9(read_pid(&file));
    match h.wait() {
        Err(PoolError::WorkerDied { .. }) => {}
        Ok(v) => assert_eq!(v.len(), 50_000_000, "delivered whole or not at all"),
        Err(e) => panic!("unexpected {e:?}"),
    }
    // Workers killed while they take a long input in parts: a task that
    // never started runs elsewhere; one that started fails. Never torn.
    let big: Vec<u8> = (0..20_000_000u32).map(|i| (i % 249) as u8).collect();
    let h = p.submit(&ECHO, big.clone()).unwrap();
    for pid in p.worker_pids() {
        kill9(pid);
    }
    match h.wait() {
        Ok(v) => assert!(v == big, "an echo came back torn"),
        Err(PoolError::WorkerDied { .. }) => {}
        Err(e) => panic!("unexpected {e:?}"),
    }
    assert_eq!(p.map(&SQUARE, 0..500u64).unwrap()[499], 499 * 499);
}

fn chaos_kills_fail_at_most_one_task_each() {
    let p = pool(3);
    let hs: Vec<_> = (0..1_500u64)
        .map(|i| (i, p.submit(&SLEEP_SQUARE, i).unwrap()))
        .collect();
    let mut rng = common::Rng::new(0x5eed);
    let mut kills = 0;
    for _ in 0..12 {
        std::thread::sleep(Duration::from_millis(rng.range(1, 15)));
        let pids = p.worker_pids();
        if let Some(&victim) = pids.get(rng.range(0, pids.len() as u64 - 1) as usize) {
            if nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(victim as i32),
                nix::sys::signal::Signal::SIGKILL,
            )
            .is_ok()
            {
                kills += 1;
            }
        }
    }
    let mut died = 0;
    for (i, h) in hs {
        match h.wait() {
            Ok(y) => assert_eq!(y, i * i),
            Err(PoolError::WorkerDied { .. }) => died += 1,
            Err(e) => panic!("task {i}: unexpected {e:?}"),
        }
    }
    assert!(died <= kills, "{died} tasks failed for {kills} kills");
    assert_eq!(p.map(&SQUARE, 0..100u64).unwrap()[99], 99 * 99);
}

fn parent_killed_workers_exit() {
    let file = pid_file("parent");
    let mut parent = Command::new(std::env::current_exe().unwrap())
        .env("POOL_TEST_ROLE", "parent")
        .env("POOL_TEST_FILE", &file)
        .spawn()
        .expect("spawn the parent");
    common::wait_until("the parent's worker pids", || file.exists());
    let text = std::fs::read_to_string(&file).unwrap();
    let _ = std::fs::remove_file(&file);
    let pids: Vec<u32> = text
        .split_whitespace()
        .map(|s| s.parse().unwrap())
        .collect();
    assert_eq!(pids.len(), 2);
    let pids = start_times(&pids);
    parent.kill().expect("kill -9 the parent");
    parent.wait().unwrap();
    for (pid, t) in pids {
        // One of them runs a task that never returns: it must go too.
        common::wait_until("the orphaned worker to exit", || !running(pid, t));
    }
}

/// The parent of `parent_killed_workers_exit`: a pool of 2, one worker
/// busy for ever, the pids written out; then it waits to be killed.
fn parent_role() {
    let file = std::env::var("POOL_TEST_FILE").unwrap();
    let p = pool(2);
    let park_file = format!("{file}.park");
    let _h = p.submit(&PARK, park_file.clone()).unwrap();
    read_pid(Path::new(&park_file));
    let pids: Vec<String> = p.worker_pids().iter().map(|p| p.to_string()).collect();
    announce_text(&file, &pids.join(" "));
    common::sleep_forever();
}

fn announce_text(path: &str, text: &str) {
    let tmp = format!("{path}.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

// ---------------------------------------------------------------------------
// The runner
// ---------------------------------------------------------------------------

fn main() {
    pool::init(&[
        &SQUARE,
        &BOOM,
        &SLEEP,
        &PARK,
        &PARK_ONCE,
        &ECHO,
        &MAKE_BYTES,
        &PID,
        &ANNOUNCE_THEN_BYTES,
        &SLEEP_SQUARE,
    ]);
    if std::env::var("POOL_TEST_ROLE").as_deref() == Ok("parent") {
        parent_role();
        return;
    }
    let cases: &[(&str, fn())] = &[
        ("map_keeps_input_order", map_keeps_input_order),
        (
            "imap_unordered_yields_each_once",
            imap_unordered_yields_each_once,
        ),
        ("submit_wait_and_poll", submit_wait_and_poll),
        (
            "panic_is_an_error_and_the_worker_survives",
            panic_is_an_error_and_the_worker_survives,
        ),
        (
            "killed_worker_fails_exactly_its_task",
            killed_worker_fails_exactly_its_task,
        ),
        (
            "killed_worker_idle_between_tasks",
            killed_worker_idle_between_tasks,
        ),
        ("retry_once_runs_it_again", retry_once_runs_it_again),
        ("shutdown_wait_drains", shutdown_wait_drains),
        ("shutdown_no_wait_cancels", shutdown_no_wait_cancels),
        ("bad_configuration_is_refused", bad_configuration_is_refused),
        (
            "starts_from_a_multithreaded_process",
            starts_from_a_multithreaded_process,
        ),
        (
            "dropped_pool_reaps_every_worker",
            dropped_pool_reaps_every_worker,
        ),
        ("nothing_in_dev_shm", nothing_in_dev_shm),
        ("long_inputs_and_results", long_inputs_and_results),
        ("kills_mid_long_messages", kills_mid_long_messages),
        (
            "chaos_kills_fail_at_most_one_task_each",
            chaos_kills_fail_at_most_one_task_each,
        ),
        ("parent_killed_workers_exit", parent_killed_workers_exit),
    ];
    let args = harness::HarnessArgs::from_env();
    let listing = args.flag("--list");
    for (name, _) in cases.iter().filter(|(n, _)| args.selected(n)) {
        args.listed(name);
    }
    if listing {
        return;
    }
    let mut failed = Vec::new();
    let mut passed = 0;
    for &(name, f) in cases.iter().filter(|(n, _)| args.selected(n)) {
        println!("test {name} ... ");
        let r = std::panic::catch_unwind(|| common::watchdog(name, common::LIMIT, f));
        match r {
            Ok(()) => {
                println!("test {name} ... ok");
                passed += 1;
            }
            Err(_) => {
                println!("test {name} ... FAILED");
                failed.push(name);
            }
        }
    }
    println!(
        "\ntest result: {}. {passed} passed; {} failed",
        if failed.is_empty() { "ok" } else { "FAILED" },
        failed.len()
    );
    if !failed.is_empty() {
        println!("failures: {failed:?}");
        std::process::exit(101);
    }
}
