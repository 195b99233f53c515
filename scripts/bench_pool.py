#!/usr/bin/env python3
"""Process pools compared in one run: concurrent.futures.ProcessPoolExecutor,
shmring.ProcessPoolExecutor, multiprocessing.Pool and shmring.Pool (as
`benches/pool.rs` and `examples/pool_bench.rs` measure shmring's Rust Pool).

Three figures, with the same small task (`square(x) = x * x` on an int):

  - rtt: the round trip of one `executor.submit(square, x).result()` (for a
    Pool: `pool.apply(square, (x,))`), repeated (after a warm-up that starts
    every worker); mean and median in ns;
  - map: tasks per second of `list(executor.map(square, range(n)))` (for a
    Pool: `pool.map`), with `chunksize=1` (one pickled call per task) and
    with a large chunk (`n / (4 * workers)`, the heuristic of
    multiprocessing.Pool.map), which batches many calls into one message.

Every pool is started first; then `--rounds` rounds measure each pool in
turn (interleaved, so that the machine's load changes touch all alike).
The ratios are taken within each round, against
concurrent.futures.ProcessPoolExecutor ("vs_cf") and multiprocessing.Pool
("vs_mp"), and their median over the rounds is reported (rtt: the baseline's
time over the pool's, so > 1 means faster; map: tasks/s over the
baseline's).

Prints one JSON object: the concurrent.futures figures at the top level, as
earlier versions of this script did ({"workers", "rtt_mean_ns",
"rtt_median_ns", "rtt_iters", "map_n", "map_chunk1_tasks_per_s",
"map_chunked_tasks_per_s", "chunk", "python"}), then "pools" (each pool's
medians over the rounds) and "ratios". shmring's pools are skipped, with a
message, if shmring cannot be imported.

    python3 scripts/bench_pool.py --workers 2 --n 20000 --rtt-iters 2000 --rounds 5
"""

import argparse
import concurrent.futures
import json
import multiprocessing
import os
import platform
import statistics
import sys
import time


def square(x):
    return x * x


def default_workers():
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


class Executor:
    """concurrent.futures-shaped pools."""

    def __init__(self, ex):
        self.ex = ex

    def call(self, x):
        return self.ex.submit(square, x).result()

    def map(self, n, chunk):
        return list(self.ex.map(square, range(n), chunksize=chunk))

    def close(self):
        self.ex.shutdown()


class MpPool:
    """multiprocessing.Pool-shaped pools."""

    def __init__(self, pool):
        self.pool = pool

    def call(self, x):
        return self.pool.apply(square, (x,))

    def map(self, n, chunk):
        return self.pool.map(square, range(n), chunk)

    def close(self):
        self.pool.close()
        self.pool.join()


def measure(p, n, chunk, rtt_iters):
    samples = []
    for i in range(rtt_iters):
        t0 = time.perf_counter_ns()
        r = p.call(i)
        samples.append(time.perf_counter_ns() - t0)
        assert r == i * i
    t0 = time.perf_counter()
    out = p.map(n, 1)
    chunk1 = n / (time.perf_counter() - t0)
    assert out[-1] == (n - 1) * (n - 1) and len(out) == n
    t0 = time.perf_counter()
    out = p.map(n, chunk)
    chunked = n / (time.perf_counter() - t0)
    assert out[-1] == (n - 1) * (n - 1) and len(out) == n
    return {
        "rtt_mean_ns": statistics.mean(samples),
        "rtt_median_ns": statistics.median(samples),
        "map_chunk1_tasks_per_s": chunk1,
        "map_chunked_tasks_per_s": chunked,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", type=int, default=default_workers())
    ap.add_argument("--n", type=int, default=20000, help="inputs per map")
    ap.add_argument("--rtt-iters", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    w, n = args.workers, args.n
    chunk = max(1, n // (4 * w))
    pools = {
        "cf.ProcessPoolExecutor": lambda: Executor(concurrent.futures.ProcessPoolExecutor(max_workers=w)),
        "mp.Pool": lambda: MpPool(multiprocessing.Pool(w)),
    }
    try:
        import shmring
    except ImportError as e:
        print("shmring pools skipped: shmring is not importable (%s)" % e, file=sys.stderr)
    else:
        pools["shmring.ProcessPoolExecutor"] = lambda: Executor(shmring.ProcessPoolExecutor(max_workers=w))
        pools["shmring.Pool"] = lambda: MpPool(shmring.Pool(w))
    started = {}
    try:
        for name, make in pools.items():
            p = make()
            p.map(w * 8, 1)  # warm up: start every worker (some start lazily)
            started[name] = p
        rounds = []
        for _ in range(args.rounds):
            rounds.append({name: measure(p, n, chunk, args.rtt_iters) for name, p in started.items()})
    finally:
        for p in started.values():
            p.close()

    def median(name, key):
        return statistics.median(r[name][key] for r in rounds)

    def ratio(name, base):
        return {
            "rtt": statistics.median(r[base]["rtt_median_ns"] / r[name]["rtt_median_ns"] for r in rounds),
            "map_chunk1": statistics.median(
                r[name]["map_chunk1_tasks_per_s"] / r[base]["map_chunk1_tasks_per_s"] for r in rounds
            ),
            "map_chunked": statistics.median(
                r[name]["map_chunked_tasks_per_s"] / r[base]["map_chunked_tasks_per_s"] for r in rounds
            ),
        }

    keys = ["rtt_mean_ns", "rtt_median_ns", "map_chunk1_tasks_per_s", "map_chunked_tasks_per_s"]
    summary = {name: {k: round(median(name, k), 1) for k in keys} for name in started}
    cf = summary["cf.ProcessPoolExecutor"]
    out = {
        "workers": w,
        "rtt_mean_ns": int(cf["rtt_mean_ns"]),
        "rtt_median_ns": int(cf["rtt_median_ns"]),
        "rtt_iters": args.rtt_iters,
        "map_n": n,
        "map_chunk1_tasks_per_s": cf["map_chunk1_tasks_per_s"],
        "map_chunked_tasks_per_s": cf["map_chunked_tasks_per_s"],
        "chunk": chunk,
        "rounds": args.rounds,
        "python": platform.python_version(),
        "pools": summary,
        "ratios": {
            name: {
                "vs_cf": {k: round(v, 2) for k, v in ratio(name, "cf.ProcessPoolExecutor").items()},
                "vs_mp": {k: round(v, 2) for k, v in ratio(name, "mp.Pool").items()},
            }
            for name in started
            if name.startswith("shmring")
        },
    }
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
