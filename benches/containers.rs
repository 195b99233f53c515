//! The shared containers against Python's `multiprocessing.Manager()`:
//! [`SharedMap`](shmring::SharedMap) get / insert / update operations per
//! second from 1 process and from 4 processes at once, beside
//! `Manager().dict()` measured in the same run by `scripts/bench_manager.py`;
//! also [`SharedList`](shmring::SharedList) push / get beside
//! `Manager().list()` append / index, and (feature `serde`)
//! [`TypedMap`](shmring::TypedMap) get / insert.
//!
//! A plain `main` (no criterion): each figure is a count of operations in
//! a fixed time, as the Python script measures, so the two sides are the
//! same measurement.
//!
//! | op | shmring, per operation | Python, per operation |
//! | --- | --- | --- |
//! | `get` | `m.get(k)` (the map holds the 1024 keys) | `d[k]` |
//! | `insert` | `m.set(k, v)` (`insert` without copying out the replaced value; a fresh map; keys cycle: the first 1024 are new, the rest replace) | `d[k] = v` |
//! | `update` | `m.update(k, \|old\| old + 1)`: atomic across processes | `with lock: d[k] = d.get(k, 0) + 1` (a `manager.Lock()`: Python has no atomic read-modify-write on a proxy) |
//! | `list push` | `l.push(v)` (a fresh list) | `l.append(v)` |
//! | `list get` | `l.get(i)` (a list of 1024) | `l[i]` |
//! | `typed get` / `typed insert` | `TypedMap<String, u64>`: `get(&k)`, `insert(&k, &v)` | — |
//!
//! Keys are 8 bytes (`b"k0000042"`; Python: the 8-character `str`), values
//! 8 bytes (a `u64`; Python: a small `int`). Every worker is a separate
//! process: `main` forks them (it has no other thread, which it checks
//! first) for every measurement, 1 or 4, each starting at its own place in
//! the keys; they start together and each runs for `--seconds`. Total ops/s
//! = the sum of the workers' operations / the longest worker's time. After
//! the 4-process updates, the map's counts are checked against the
//! operations made. The containers are anonymous (memfds inherited across
//! `fork`): nothing is created in `/dev/shm`.
//!
//! The rounds interleave: shmring's measurements, then the Python script's,
//! then shmring's again, and so on (`--rounds`, default 3), so that a
//! machine whose speed changes minute to minute (a shared VM, builds
//! beside) weighs on both; each ratio is taken within one round, and the
//! table gives the median ratio (and the range).
//!
//! ```sh
//! cargo bench --bench containers --features serde            # ~1 min
//! cargo bench --bench containers -- --seconds 0.3 --rounds 2 # quicker
//! cargo bench --bench containers -- --no-python              # shmring only
//! cargo bench --bench containers -- update get               # only the rows whose op contains a word
//! ```
//!
//! python3 is found on the `PATH` (or named by `SHMRING_PYTHON`); without
//! it the Python columns are left out.

#[cfg(all(target_os = "linux", not(loom)))]
mod common;

#[cfg(all(target_os = "linux", not(loom)))]
mod imp {
    use crate::common::{futex_wait, futex_wake, map_zeroed};
    use nix::sys::wait::{waitpid, WaitStatus};
    use nix::unistd::{fork, ForkResult, Pid};
    use shmring::{SharedList, SharedMap};
    use std::hint::black_box;
    use std::process::{Command, Stdio};
    use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
    use std::time::{Duration, Instant};

    /// Keys in a map (and items in the list of `list get`).
    const KEYS: usize = 1024;

    /// The most worker processes of one measurement.
    const MAX_PROCS: usize = 4;

    /// Operations between two looks at the clock.
    const CHECK_EVERY: u64 = 32;

    /// The most pushes in one `list push` measurement (about 100 MB of
    /// list), however fast it goes.
    const MAX_PUSHES: u64 = 1 << 22;

    /// The script, as in the repository.
    const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/bench_manager.py");

    /// Shared with the workers (a `MAP_SHARED` anonymous page): the start
    /// signal and what each worker measured.
    #[repr(C)]
    struct Ctl {
        /// Workers at the start line.
        ready: AtomicU32,
        /// 1: go.
        go: AtomicU32,
        /// Operations each worker made.
        ops: [AtomicU64; MAX_PROCS],
        /// Nanoseconds each worker ran.
        ns: [AtomicU64; MAX_PROCS],
    }

    impl Ctl {
        fn reset(&self) {
            self.ready.store(0, Ordering::SeqCst);
            self.go.store(0, Ordering::SeqCst);
            for i in 0..MAX_PROCS {
                self.ops[i].store(0, Ordering::SeqCst);
                self.ns[i].store(0, Ordering::SeqCst);
            }
        }
    }

    /// One measurement: total operations, the longest worker's time.
    #[derive(Clone, Copy, Debug)]
    struct Sample {
        ops: u64,
        secs: f64,
    }

    impl Sample {
        fn rate(self) -> f64 {
            if self.secs > 0.0 {
                self.ops as f64 / self.secs
            } else {
                0.0
            }
        }
    }

    fn key(i: usize) -> [u8; 8] {
        let mut k = [0u8; 8];
        k.copy_from_slice(format!("k{:07}", i % KEYS).as_bytes());
        k
    }

    fn keys() -> Vec<[u8; 8]> {
        (0..KEYS).map(key).collect()
    }

    fn threads() -> usize {
        std::fs::read_dir("/proc/self/task").map_or(0, |d| d.count())
    }

    /// Runs `op(n)` (n = the worker's operation count, starting at its own
    /// place in the keys) in `procs` forked worker processes for `secs`
    /// each, or `max_ops` operations; they start together.
    fn measure(ctl: &Ctl, procs: usize, secs: f64, max_ops: u64, op: &dyn Fn(u64)) -> Sample {
        assert!((1..=MAX_PROCS).contains(&procs));
        ctl.reset();
        let limit = Duration::from_secs_f64(secs);
        let mut pids = Vec::new();
        for w in 0..procs {
            // SAFETY: this process has one thread (checked in `main`, and
            // nothing here starts one), so the child may run any code.
            match unsafe { fork() }.expect("fork") {
                ForkResult::Child => {
                    let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        let first = (w * KEYS / MAX_PROCS) as u64;
                        ctl.ready.fetch_add(1, Ordering::SeqCst);
                        while ctl.go.load(Ordering::SeqCst) == 0 {
                            futex_wait(&ctl.go, 0, Duration::from_millis(100));
                        }
                        let t0 = Instant::now();
                        let mut n = 0u64;
                        'run: loop {
                            for _ in 0..CHECK_EVERY {
                                op(first + n);
                                n += 1;
                            }
                            if n >= max_ops || t0.elapsed() >= limit {
                                break 'run;
                            }
                        }
                        ctl.ns[w].store(t0.elapsed().as_nanos() as u64, Ordering::SeqCst);
                        ctl.ops[w].store(n, Ordering::SeqCst);
                    }))
                    .is_ok();
                    // SAFETY: _exit ends this forked child without running
                    // the parent's destructors or atexit handlers twice.
                    unsafe { libc::_exit(if ok { 0 } else { 1 }) };
                }
                ForkResult::Parent { child } => pids.push(child),
            }
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while ctl.ready.load(Ordering::SeqCst) < procs as u32 {
            assert!(Instant::now() < deadline, "workers did not start");
            std::thread::sleep(Duration::from_millis(1));
        }
        ctl.go.store(1, Ordering::SeqCst);
        futex_wake(&ctl.go);
        for pid in pids {
            reap(pid);
        }
        let ops = (0..procs).map(|w| ctl.ops[w].load(Ordering::SeqCst)).sum();
        let ns = (0..procs)
            .map(|w| ctl.ns[w].load(Ordering::SeqCst))
            .max()
            .unwrap_or(0);
        Sample {
            ops,
            secs: ns as f64 / 1e9,
        }
    }

    fn reap(pid: Pid) {
        match waitpid(pid, None).expect("waitpid") {
            WaitStatus::Exited(_, 0) => {}
            other => panic!("a worker failed: {other:?}"),
        }
    }

    fn counter(v: Option<&[u8]>) -> u64 {
        v.map_or(0, |b| {
            u64::from_le_bytes(b.try_into().expect("an 8-byte counter"))
        })
    }

    /// The rows, in order: (op, processes).
    const ROWS: [(&str, usize); 8] = [
        ("get", 1),
        ("get", 4),
        ("insert", 1),
        ("insert", 4),
        ("update", 1),
        ("update", 4),
        ("list push", 1),
        ("list get", 1),
    ];

    /// The typed rows (feature `serde`), shmring only.
    const TYPED_ROWS: [(&str, usize); 2] = [("typed get", 1), ("typed insert", 1)];

    /// The Python script's name for a row's op.
    fn python_op(op: &str) -> &str {
        match op {
            "list push" => "list_append",
            "list get" => "list_get",
            other => other,
        }
    }

    /// One shmring measurement of a row.
    fn shmring_row(ctl: &Ctl, op: &str, procs: usize, secs: f64) -> Sample {
        let keys = keys();
        match op {
            "get" => {
                let m = SharedMap::anonymous().expect("map");
                for (i, k) in keys.iter().enumerate() {
                    m.insert(k, &(i as u64).to_le_bytes()).expect("insert");
                }
                measure(ctl, procs, secs, u64::MAX, &|n| {
                    let v = m.get(&keys[n as usize % KEYS]).expect("get");
                    assert!(v.is_some(), "a key is missing");
                    black_box(v);
                })
            }
            "insert" => {
                let m = SharedMap::anonymous().expect("map");
                measure(ctl, procs, secs, u64::MAX, &|n| {
                    // `d[k] = v` returns nothing: `set`, which does not copy
                    // out the value it replaces (`insert` does).
                    m.set(&keys[n as usize % KEYS], &n.to_le_bytes())
                        .expect("set");
                })
            }
            "update" => {
                let m = SharedMap::anonymous().expect("map");
                let s = measure(ctl, procs, secs, u64::MAX, &|n| {
                    black_box(
                        m.update(&keys[n as usize % KEYS], |old| {
                            Some((counter(old) + 1).to_le_bytes().to_vec())
                        })
                        .expect("update"),
                    );
                });
                let counted: u64 = m
                    .entries()
                    .expect("entries")
                    .iter()
                    .map(|(_, v)| counter(Some(v)))
                    .sum();
                assert_eq!(counted, s.ops, "update lost or doubled operations");
                s
            }
            "list push" => {
                let l = SharedList::anonymous().expect("list");
                let s = measure(ctl, procs, secs, MAX_PUSHES, &|n| {
                    l.push(&n.to_le_bytes()).expect("push");
                });
                assert_eq!(l.len() as u64, s.ops, "pushes lost or doubled");
                s
            }
            "list get" => {
                let l = SharedList::anonymous().expect("list");
                l.extend(
                    (0..KEYS as u64)
                        .map(u64::to_le_bytes)
                        .collect::<Vec<_>>()
                        .iter()
                        .map(|b| &b[..]),
                )
                .expect("extend");
                measure(ctl, procs, secs, u64::MAX, &|n| {
                    let v = l.get(n as usize % KEYS).expect("get");
                    assert!(v.is_some(), "an item is missing");
                    black_box(v);
                })
            }
            #[cfg(feature = "serde")]
            "typed get" | "typed insert" => {
                let m = shmring::TypedMap::<String, u64>::anonymous().expect("typed map");
                let skeys: Vec<String> = keys
                    .iter()
                    .map(|k| String::from_utf8(k.to_vec()).expect("ascii"))
                    .collect();
                if op == "typed get" {
                    for (i, k) in skeys.iter().enumerate() {
                        m.insert(k, &(i as u64)).expect("insert");
                    }
                    measure(ctl, procs, secs, u64::MAX, &|n| {
                        let v = m.get(&skeys[n as usize % KEYS]).expect("get");
                        assert!(v.is_some(), "a key is missing");
                        black_box(v);
                    })
                } else {
                    measure(ctl, procs, secs, u64::MAX, &|n| {
                        black_box(m.insert(&skeys[n as usize % KEYS], &n).expect("insert"));
                    })
                }
            }
            other => panic!("unknown op {other}"),
        }
    }

    /// `python3` on the PATH, or `SHMRING_PYTHON`.
    fn find_python() -> Option<std::path::PathBuf> {
        if let Some(p) = std::env::var_os("SHMRING_PYTHON") {
            return Some(p.into());
        }
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path)
            .map(|d| d.join("python3"))
            .find(|p| p.is_file())
    }

    /// One run of the script: ops/s per (op, processes).
    fn python_round(
        python: &std::path::Path,
        secs: f64,
        ops: &str,
    ) -> Result<Vec<(String, usize, f64)>, String> {
        let mut child = Command::new(python)
            .arg(SCRIPT)
            .args([
                "--seconds",
                &secs.to_string(),
                "--ops",
                ops,
                "--procs",
                "1,4",
                "--list-procs",
                "1",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("starting {}: {e}", python.display()))?;
        // Small output (one line): reading it to the end does not block the
        // script; the script bounds its own waits.
        let mut out = String::new();
        std::io::Read::read_to_string(child.stdout.as_mut().expect("piped"), &mut out)
            .map_err(|e| e.to_string())?;
        let status = child.wait().map_err(|e| e.to_string())?;
        if !status.success() {
            return Err(format!("the script failed: {status}"));
        }
        let v: serde_json::Value =
            serde_json::from_str(out.trim()).map_err(|e| format!("bad JSON ({e}): {out}"))?;
        let rows = v["results"].as_array().ok_or("no results")?;
        rows.iter()
            .map(|r| {
                Ok((
                    r["op"].as_str().ok_or("no op")?.to_string(),
                    r["procs"].as_u64().ok_or("no procs")? as usize,
                    r["ops_per_s"].as_f64().ok_or("no ops_per_s")?,
                ))
            })
            .collect()
    }

    fn median(mut v: Vec<f64>) -> f64 {
        if v.is_empty() {
            return f64::NAN;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        }
    }

    fn human(x: f64) -> String {
        if !x.is_finite() {
            "-".into()
        } else if x >= 1e6 {
            format!("{:.2} M", x / 1e6)
        } else if x >= 1e3 {
            format!("{:.1} k", x / 1e3)
        } else {
            format!("{x:.0}")
        }
    }

    fn loadavg() -> String {
        std::fs::read_to_string("/proc/loadavg")
            .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_else(|_| "?".into())
    }

    struct Args {
        seconds: f64,
        rounds: usize,
        python: bool,
        filter: Vec<String>,
    }

    fn args() -> Args {
        let mut a = Args {
            seconds: 1.0,
            rounds: 3,
            python: true,
            filter: Vec::new(),
        };
        let mut it = std::env::args().skip(1);
        while let Some(x) = it.next() {
            match x.as_str() {
                "--seconds" => {
                    a.seconds = it.next().and_then(|s| s.parse().ok()).expect("--seconds S")
                }
                "--rounds" => {
                    a.rounds = it.next().and_then(|s| s.parse().ok()).expect("--rounds N")
                }
                "--no-python" => a.python = false,
                // What cargo bench passes.
                f if f.starts_with('-') => {}
                // A filter: only the rows whose op contains it.
                f => a.filter.push(f.to_string()),
            }
        }
        assert!(
            a.seconds > 0.0 && a.rounds > 0,
            "--seconds and --rounds must be positive"
        );
        a
    }

    pub fn main() {
        let a = args();
        assert_eq!(threads(), 1, "the bench forks: it must have one thread");
        // SAFETY: `Ctl` is atomics only (all-zero is valid), align 8.
        let ctl: &Ctl = unsafe { map_zeroed::<Ctl>() };
        let python = if a.python { find_python() } else { None };
        if a.python && python.is_none() {
            println!("python3 not found (PATH, SHMRING_PYTHON): no Python columns, no ratios");
        }
        let mut rows: Vec<(&str, usize)> = ROWS.to_vec();
        if cfg!(feature = "serde") {
            rows.extend(TYPED_ROWS);
        }
        if !a.filter.is_empty() {
            rows.retain(|(op, _)| a.filter.iter().any(|f| op.contains(f.as_str())));
        }
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split(':').nth(1))
                    .map(|m| m.trim().to_string())
            })
            .unwrap_or_default();
        println!(
            "containers: {} CPUs ({cpu}), {} s per measurement, {} rounds, load average {} at the start",
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            a.seconds,
            a.rounds,
            loadavg()
        );
        // The script's operations for these rows (the typed rows have none).
        let mut py_ops: Vec<&str> = Vec::new();
        for &(op, _) in &rows {
            if !op.starts_with("typed") && !py_ops.contains(&python_op(op)) {
                py_ops.push(python_op(op));
            }
        }
        // shm[row][round], py[row][round] (ops/s).
        let mut shm = vec![Vec::new(); rows.len()];
        let mut py = vec![Vec::new(); rows.len()];
        for round in 0..a.rounds {
            for (i, &(op, procs)) in rows.iter().enumerate() {
                let s = shmring_row(ctl, op, procs, a.seconds);
                eprintln!(
                    "round {round}: shmring {op} x{procs}: {} ops/s",
                    human(s.rate())
                );
                shm[i].push(s.rate());
            }
            assert_eq!(threads(), 1, "a thread appeared");
            if let (Some(p), false) = (&python, py_ops.is_empty()) {
                match python_round(p, a.seconds, &py_ops.join(",")) {
                    Ok(res) => {
                        for (i, &(op, procs)) in rows.iter().enumerate() {
                            let r = res
                                .iter()
                                .find(|(o, n, _)| o == python_op(op) && *n == procs)
                                .map_or(f64::NAN, |r| r.2);
                            if r.is_finite() {
                                eprintln!(
                                    "round {round}: python {op} x{procs}: {} ops/s",
                                    human(r)
                                );
                            }
                            py[i].push(r);
                        }
                    }
                    Err(e) => println!("round {round}: Python failed: {e}"),
                }
            }
        }
        println!(
            "load average {} at the end; ratios are shmring / Python within each round \
             (median, min-max over rounds)",
            loadavg()
        );
        println!();
        println!(
            "| op | processes | shmring ops/s | Python Manager ops/s | ratio (median, min-max) |"
        );
        println!("| --- | --- | --- | --- | --- |");
        for (i, &(op, procs)) in rows.iter().enumerate() {
            let ratios: Vec<f64> = shm[i]
                .iter()
                .zip(&py[i])
                .map(|(s, p)| s / p)
                .filter(|r| r.is_finite())
                .collect();
            let ratio = if ratios.is_empty() {
                "-".to_string()
            } else {
                let lo = ratios.iter().copied().fold(f64::INFINITY, f64::min);
                let hi = ratios.iter().copied().fold(0.0, f64::max);
                format!("{:.0}x ({:.0}-{:.0})", median(ratios.clone()), lo, hi)
            };
            let p: Vec<f64> = py[i].iter().copied().filter(|x| x.is_finite()).collect();
            println!(
                "| {op} | {procs} | {} | {} | {ratio} |",
                human(median(shm[i].clone())),
                human(median(p)),
            );
        }
    }
}

#[cfg(all(target_os = "linux", not(loom)))]
fn main() {
    imp::main();
}

/// Elsewhere (and under `--cfg loom`, where the crate builds only its
/// lock-free core) there is nothing to measure.
#[cfg(not(all(target_os = "linux", not(loom))))]
fn main() {}
