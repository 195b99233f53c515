//! shmring's `Pool` beside Python's `ProcessPoolExecutor`, measured in the
//! same run, the same way: the round trip of one `submit(..).wait()` of an
//! empty-ish task (`square(x) = x * x`), and tasks per second of
//! `map(square, 0..n)`; then the ratios.
//!
//! ```sh
//! cargo run --release --features serde --example pool_bench            # workers = CPUs
//! cargo run --release --features serde --example pool_bench -- 2 20000  # workers, n
//! ```
//!
//! Python runs `scripts/bench_pool.py` (standard library only) with the same
//! worker count; without `python3` only shmring's figures are printed. Each
//! shmring figure is the median of 5 repetitions. Ratios compare figures of
//! this one run only: the machine's speed varies from minute to minute.

use shmring::pool::{self, Task};
use shmring::Pool;
use std::time::Instant;

fn square(x: u64) -> u64 {
    x * x
}
static SQUARE: Task<u64, u64> = Task::new("square", square);

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    pool::init(&[&SQUARE]);
    let mut args = std::env::args().skip(1);
    let workers: usize = match args.next() {
        Some(a) => a.parse()?,
        None => std::thread::available_parallelism()?.get(),
    };
    let n: u64 = match args.next() {
        Some(a) => a.parse()?,
        None => 20_000,
    };
    let rtt_iters = 2_000u32;

    let p = Pool::with_workers(workers)?;
    p.map(&SQUARE, 0..1_000)?; // warm up
    let mut rtts = Vec::new();
    for rep in 0..5 {
        let t0 = Instant::now();
        for i in 0..rtt_iters {
            let y = p.submit(&SQUARE, u64::from(i) + rep)?.wait()?;
            assert_eq!(y, (u64::from(i) + rep).pow(2));
        }
        rtts.push(t0.elapsed().as_nanos() as f64 / f64::from(rtt_iters));
    }
    let mut rates = Vec::new();
    for _ in 0..5 {
        let t0 = Instant::now();
        let ys = p.map(&SQUARE, 0..n)?;
        rates.push(n as f64 / t0.elapsed().as_secs_f64());
        assert_eq!(ys[n as usize - 1], (n - 1) * (n - 1));
    }
    drop(p);
    let (rtt, rate) = (median(rtts), median(rates));
    println!("workers: {workers}, map over {n} inputs");
    println!(
        "shmring Pool:  round trip {:>9.1} µs   map {:>12.0} tasks/s",
        rtt / 1e3,
        rate
    );

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/bench_pool.py");
    let out = std::process::Command::new("python3")
        .arg(script)
        .args(["--workers", &workers.to_string(), "--n", &n.to_string()])
        .output();
    let out = match out {
        Ok(o) if o.status.success() => o,
        Ok(o) => {
            println!("python: {}", String::from_utf8_lossy(&o.stderr));
            return Ok(());
        }
        Err(e) => {
            println!("python3 not run ({e}): shmring's figures only");
            return Ok(());
        }
    };
    let json = String::from_utf8(out.stdout)?;
    let field = |k: &str| -> f64 {
        let at = json
            .find(&format!("\"{k}\": "))
            .expect("field in the script's JSON")
            + k.len()
            + 4;
        json[at..]
            .split([',', '}'])
            .next()
            .and_then(|v| v.trim().parse().ok())
            .expect("a number")
    };
    let py_rtt = field("rtt_median_ns");
    let py_rate1 = field("map_chunk1_tasks_per_s");
    let py_chunked = field("map_chunked_tasks_per_s");
    let chunk = field("chunk");
    println!(
        "ProcessPoolExecutor: round trip {:>9.1} µs   map {:>12.0} tasks/s (chunksize=1), {:.0} tasks/s (chunksize={chunk})",
        py_rtt / 1e3,
        py_rate1,
        py_chunked
    );
    println!(
        "ratios (shmring / Python, this run): round trip {:.1}x faster; map tasks/s {:.1}x (vs chunksize=1), {:.2}x (vs chunksize={chunk})",
        py_rtt / rtt,
        rate / py_rate1,
        rate / py_chunked
    );
    Ok(())
}
