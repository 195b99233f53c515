//! Criterion benchmarks of the process pool (`shmring::Pool`, feature
//! `serde`), with real worker processes: this bench binary re-executed, so
//! its `main` calls `shmring::pool::init` before criterion starts.
//!
//! | id | what is timed, per iteration |
//! | --- | --- |
//! | `pool/rtt` | one `submit(&SQUARE, x)?.wait()?`: the input goes to a worker, `x * x` comes back |
//! | `pool/map/1000` | one `map(&SQUARE, 0..1000)` (reported per task with `Throughput::Elements(1000)`) |
//! | `pool/imap_unordered/1000` | 1000 results of `imap_unordered(&SQUARE, 0..1000)` |
//! | `pool/submit_wait/1000` | 1000 `submit`s, then 1000 `wait`s |
//!
//! The pool has one worker per CPU this process may use. Python's
//! `ProcessPoolExecutor`, measured the same way, is `scripts/bench_pool.py`;
//! `examples/pool_bench.rs` runs both in one run and prints the ratios.
//!
//! ```sh
//! cargo bench --features serde --bench pool
//! ```

use criterion::{black_box, Criterion, Throughput};
use shmring::pool::{self, Task};
use shmring::Pool;
use std::time::Duration;

fn square(x: u64) -> u64 {
    x * x
}
static SQUARE: Task<u64, u64> = Task::new("square", square);

fn main() {
    pool::init(&[&SQUARE]);
    let p = Pool::new().expect("a pool");
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(15)
        .configure_from_args();

    let mut g = c.benchmark_group("pool");
    let mut x = 0u64;
    g.bench_function("rtt", |b| {
        b.iter(|| {
            x += 1;
            let y = p.submit(&SQUARE, black_box(x)).unwrap().wait().unwrap();
            assert_eq!(y, x * x);
        })
    });
    g.throughput(Throughput::Elements(1000));
    g.bench_function("map/1000", |b| {
        b.iter(|| {
            let ys = p.map(&SQUARE, 0..1000u64).unwrap();
            assert_eq!(ys[999], 999 * 999);
        })
    });
    g.bench_function("imap_unordered/1000", |b| {
        b.iter(|| {
            let sum: u64 = p
                .imap_unordered(&SQUARE, 0..1000u64)
                .map(|r| r.unwrap())
                .sum();
            assert_eq!(sum, (0..1000u64).map(|x| x * x).sum::<u64>());
        })
    });
    g.bench_function("submit_wait/1000", |b| {
        b.iter(|| {
            let hs: Vec<_> = (0..1000u64)
                .map(|i| p.submit(&SQUARE, i).unwrap())
                .collect();
            for (i, h) in hs.into_iter().enumerate() {
                assert_eq!(h.wait().unwrap(), (i * i) as u64);
            }
        })
    });
    g.finish();
    drop(p);
    c.final_summary();
}
