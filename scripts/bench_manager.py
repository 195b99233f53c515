#!/usr/bin/env python3
"""Python multiprocessing.Manager() baselines for `benches/containers.rs`.

Measures the operations per second of a `Manager().dict()` (and of a
`Manager().list()`) from 1 process and from N processes at once (total
ops/s: the sum of every process's operations over the longest process's
time), with the shapes the Rust bench uses: 8-character `str` keys
("k0000042", from a set of 1024) and small `int` values.

  get          v = d[k]                     (the dict holds the 1024 keys)
  insert       d[k] = v                     (a fresh dict; keys cycle: the
                                             first 1024 are new, the rest
                                             replace)
  update       with lock: d[k] = d.get(k, 0) + 1
                                            (a manager.Lock(): Python has no
                                             atomic read-modify-write on a
                                             proxy, `d[k] += 1` is a get and
                                             a set that other processes can
                                             come between; this is the honest
                                             equivalent of shmring's
                                             `update`: four round trips to
                                             the server. The final counts
                                             are checked against the
                                             operations made.)
  list_append  l.append(v)                  (a fresh list)
  list_get     v = l[i]                     (a list of 1024 ints)

Every worker is a process forked from this one (each proxy connects to the
manager's server on first use); they start together at a barrier and each
runs for --seconds. Prints one JSON object:

  {"python": "3.x.y", "seconds": 1.0, "keys": 1024,
   "results": [{"op": "get", "procs": 1, "ops": 123, "elapsed_s": 1.0,
                "ops_per_s": 123.0}, ...]}

Standard library only. Runs on its own:

    python3 scripts/bench_manager.py --seconds 1 --procs 1,4 --ops get,insert,update
"""

import argparse
import json
import multiprocessing
import sys
import time

KEYS = 1024


def key(i):
    return "k%07d" % i


def worker(op, d, l, lock, index, seconds, barrier, results):
    keys = [key(i) for i in range(KEYS)]
    # Each process starts at its own place in the keys, as in the Rust bench.
    n = index * (KEYS // 4)
    start_n = n
    barrier.wait()
    clock = time.perf_counter
    t0 = clock()
    deadline = t0 + seconds
    if op == "get":
        while clock() < deadline:
            d[keys[n % KEYS]]
            n += 1
    elif op == "insert":
        while clock() < deadline:
            d[keys[n % KEYS]] = n
            n += 1
    elif op == "update":
        while clock() < deadline:
            k = keys[n % KEYS]
            with lock:
                d[k] = d.get(k, 0) + 1
            n += 1
    elif op == "list_append":
        while clock() < deadline:
            l.append(n)
            n += 1
    elif op == "list_get":
        while clock() < deadline:
            l[n % KEYS]
            n += 1
    else:
        raise ValueError("unknown op %r" % op)
    results.put((n - start_n, clock() - t0))


def measure(ctx, manager, op, procs, seconds):
    d = manager.dict()
    l = manager.list()
    lock = manager.Lock()
    if op == "get":
        d.update({key(i): i for i in range(KEYS)})
    elif op == "list_get":
        l.extend(range(KEYS))
    barrier = ctx.Barrier(procs)
    results = ctx.Queue()
    workers = [
        ctx.Process(target=worker, args=(op, d, l, lock, i, seconds, barrier, results))
        for i in range(procs)
    ]
    for w in workers:
        w.start()
    got = [results.get(timeout=seconds + 60) for _ in workers]
    for w in workers:
        w.join()
        if w.exitcode != 0:
            raise RuntimeError("%s worker exited with %s" % (op, w.exitcode))
    ops = sum(n for n, _ in got)
    elapsed = max(t for _, t in got)
    if op == "update":
        counted = sum(d.values())
        if counted != ops:
            raise RuntimeError("update: the dict counts %d, the workers made %d" % (counted, ops))
    return {
        "op": op,
        "procs": procs,
        "ops": ops,
        "elapsed_s": elapsed,
        "ops_per_s": ops / elapsed if elapsed > 0 else 0.0,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=1.0, help="per measurement")
    ap.add_argument("--procs", default="1,4", help="process counts, comma-separated")
    ap.add_argument(
        "--ops",
        default="get,insert,update,list_append,list_get",
        help="operations, comma-separated",
    )
    ap.add_argument(
        "--list-procs",
        default="1",
        help="process counts for the list operations (default 1)",
    )
    a = ap.parse_args()
    procs = [int(p) for p in a.procs.split(",") if p]
    list_procs = [int(p) for p in a.list_procs.split(",") if p]
    ctx = multiprocessing.get_context("fork")
    out = []
    with ctx.Manager() as manager:
        for op in [o for o in a.ops.split(",") if o]:
            for p in list_procs if op.startswith("list_") else procs:
                out.append(measure(ctx, manager, op, p, a.seconds))
    json.dump(
        {
            "python": sys.version.split()[0],
            "seconds": a.seconds,
            "keys": KEYS,
            "results": out,
        },
        sys.stdout,
    )
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
