#!/usr/bin/env python3
"""concurrent.futures.ProcessPoolExecutor, measured as `benches/pool.rs` and
`examples/pool_bench.rs` measure shmring's Pool.

Two figures, with the same small task (`square(x) = x * x` on an int):

  - rtt: the round trip of one `executor.submit(square, x).result()`, repeated
    (after a warm-up that starts every worker); mean and median in ns;
  - map: tasks per second of `list(executor.map(square, range(n)))`, with
    `chunksize=1` (ProcessPoolExecutor's default: one pickled call per
    task, as shmring sends them) and with a large chunk (`n / (4 * workers)`,
    the heuristic of multiprocessing.Pool.map), which batches many calls
    into one message.

Prints one JSON object:
  {"workers": W, "rtt_mean_ns": .., "rtt_median_ns": .., "rtt_iters": ..,
   "map_n": n, "map_chunk1_tasks_per_s": .., "map_chunked_tasks_per_s": ..,
   "chunk": c, "python": "3.x.y"}

Standard library only:

    python3 scripts/bench_pool.py --workers 2 --n 20000 --rtt-iters 2000
"""

import argparse
import concurrent.futures
import json
import os
import platform
import statistics
import time


def square(x):
    return x * x


def default_workers():
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", type=int, default=default_workers())
    ap.add_argument("--n", type=int, default=20000, help="inputs per map")
    ap.add_argument("--rtt-iters", type=int, default=2000)
    args = ap.parse_args()
    w = args.workers
    with concurrent.futures.ProcessPoolExecutor(max_workers=w) as ex:
        # Warm up: start every worker (they start lazily) and import.
        list(ex.map(square, range(w * 8)))
        samples = []
        for i in range(args.rtt_iters):
            t0 = time.perf_counter_ns()
            r = ex.submit(square, i).result()
            samples.append(time.perf_counter_ns() - t0)
            assert r == i * i
        n = args.n
        t0 = time.perf_counter()
        out = list(ex.map(square, range(n), chunksize=1))
        chunk1 = n / (time.perf_counter() - t0)
        assert out[-1] == (n - 1) * (n - 1)
        chunk = max(1, n // (4 * w))
        t0 = time.perf_counter()
        out = list(ex.map(square, range(n), chunksize=chunk))
        chunked = n / (time.perf_counter() - t0)
        assert out[-1] == (n - 1) * (n - 1)
    print(
        json.dumps(
            {
                "workers": w,
                "rtt_mean_ns": int(statistics.mean(samples)),
                "rtt_median_ns": int(statistics.median(samples)),
                "rtt_iters": len(samples),
                "map_n": n,
                "map_chunk1_tasks_per_s": round(chunk1, 1),
                "map_chunked_tasks_per_s": round(chunked, 1),
                "chunk": chunk,
                "python": platform.python_version(),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
