#!/usr/bin/env python3
"""Python multiprocessing baselines for `shmring bench`.

Measures, between two processes pinned to two CPUs, the round-trip latency
(time.perf_counter_ns around each put/get or send/recv pair; percentiles by
nearest rank) and the one-way streaming throughput (child to parent) of

  - multiprocessing.Queue  (transport "python-queue": two queues, one each way)
  - multiprocessing.Pipe   (transport "python-pipe": one duplex Pipe)
  - shmring.Queue          (transport "python-shmring-queue": two queues)
  - shmring.Pipe           (transport "python-shmring-pipe": one duplex Pipe)

carrying `bytes` objects of the given size (pickled, as Python programs send
them). The shmring kinds need the shmring package importable; with --spin
they use `spin=True` queues and pipes (busy-polling while blocked: mode
"spin"), otherwise the defaults (mode "block": spin 20 us, then sleep on a
futex). Their warm-up uses every ring slot at least once, so that the
figures are the steady state, not the first touch of each slot's pages.
Prints one JSON object per line with the keys of `shmring bench --json`
plus "curve" (percentile, ns) pairs for the plot.

`shmring bench` embeds this file and runs it with `python3 -c`; it also runs
on its own:

    python3 scripts/bench_python.py --kinds queue,pipe --sizes 8,1024,65536
    python3 scripts/bench_python.py --kinds shmring-queue,shmring-pipe --spin
"""

import argparse
import json
import math
import multiprocessing
import os
import sys
import time

KINDS = ("queue", "pipe", "shmring-queue", "shmring-pipe")
# Ring slots of shmring.Queue() and shmring.Pipe() (their defaults).
SHMRING_SLOTS = {"shmring-queue": 1024, "shmring-pipe": 64}

CURVE = [50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99, 100.0]


def pin(cpu):
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {cpu})


def percentile(sorted_ns, p):
    """Nearest rank: the smallest value with at least p% of values at or below it."""
    if not sorted_ns:
        return 0
    if p >= 100.0:
        return sorted_ns[-1]
    rank = max(1, math.ceil(p / 100.0 * len(sorted_ns)))
    return sorted_ns[min(rank, len(sorted_ns)) - 1]


def answer(recv, send, payload):
    """The child's command loop (shared with bench_python_queues.py):
    ("rtt", n) sends back each of the next n messages, ("stream", n) sends
    `payload` n times, anything else ends it."""
    while True:
        cmd = recv()
        if cmd[0] == "rtt":
            for _ in range(cmd[1]):
                send(recv())
        elif cmd[0] == "stream":
            for _ in range(cmd[1]):
                send(payload)
        else:
            return


def serve(kind, ends, size, cpu):
    """The child: answers commands until ("exit",)."""
    pin(cpu)
    if kind.endswith("queue"):
        req, resp = ends
        recv, send = req.get, resp.put
    else:
        conn = ends
        recv, send = conn.recv, conn.send
    answer(recv, send, bytes(size))
    if kind == "queue":
        # Let the feeder thread flush before the process exits.
        resp.close()
        resp.join_thread()


def make_ends(ctx, kind, size, spin):
    """(parent's send, parent's recv, the child's ends)."""
    if kind.startswith("shmring"):
        import shmring

        # Room for the largest message (bytes pickle in-band).
        limit = max(4 << 20, size + 4096)
        if kind == "shmring-queue":
            req = shmring.Queue(max_message_size=limit, spin=spin)
            resp = shmring.Queue(max_message_size=limit, spin=spin)
            return req.put, resp.get, (req, resp)
        mine, theirs = shmring.Pipe(duplex=True, max_message_size=limit, spin=spin)
        return mine.send, mine.recv, theirs
    if kind == "queue":
        req, resp = ctx.Queue(), ctx.Queue()
        return req.put, resp.get, (req, resp)
    mine, theirs = ctx.Pipe(duplex=True)
    return mine.send, mine.recv, theirs


def measure(kind, size, rtt, warmup, calibrate, target_ms, cpus, spin=False):
    ctx = multiprocessing.get_context("fork")
    parent_cpu, child_cpu = cpus if cpus else (None, None)
    pin(parent_cpu)
    send, recv, child_ends = make_ends(ctx, kind, size, spin)
    if kind in SHMRING_SLOTS:
        warmup = max(warmup, SHMRING_SLOTS[kind] + 16)
    child = ctx.Process(target=serve, args=(kind, child_ends, size, child_cpu), daemon=True)
    child.start()

    msg = bytes(size)
    clock = time.perf_counter_ns
    samples = []
    append = samples.append
    send(("rtt", warmup + rtt))
    for i in range(warmup + rtt):
        t0 = clock()
        send(msg)
        got = recv()
        t1 = clock()
        if i >= warmup:
            append(t1 - t0)
        if len(got) != size:
            raise RuntimeError(f"round trip {i}: {len(got)} bytes came back, expected {size}")
    samples.sort()

    def stream(count):
        send(("stream", count))
        t0 = clock()
        for i in range(count):
            got = recv()
            if len(got) != size:
                raise RuntimeError(f"stream message {i}: {len(got)} bytes, expected {size}")
        return clock() - t0

    d0 = max(stream(calibrate), 1)
    count = int(target_ms * 1e6 / (d0 / calibrate))
    count = max(calibrate, min(count, 50_000_000))
    d = max(stream(count), 1)
    send(("exit",))
    child.join(10)
    if child.exitcode != 0:
        raise RuntimeError(f"the child process ended with exit code {child.exitcode}")

    msgs_per_s = count / (d / 1e9)
    return {
        "transport": "python-" + kind,
        "mode": "spin" if spin else "block",
        "size": size,
        "rtt_p50_ns": percentile(samples, 50.0),
        "rtt_p99_ns": percentile(samples, 99.0),
        "rtt_p999_ns": percentile(samples, 99.9),
        "rtt_max_ns": samples[-1] if samples else 0,
        "msgs_per_s": msgs_per_s,
        "bytes_per_s": msgs_per_s * size,
        "count": len(samples),
        "curve": [[p, percentile(samples, p)] for p in CURVE],
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kinds", default="queue,pipe", help=", ".join(KINDS) + " (comma-separated)")
    ap.add_argument("--sizes", default="8,1024,65536", help="message sizes in bytes")
    ap.add_argument("--rtt", type=int, default=20000, help="timed round trips")
    ap.add_argument("--warmup", type=int, default=2000, help="untimed round trips first")
    ap.add_argument("--calibrate", type=int, default=1000, help="messages of the calibration stream")
    ap.add_argument("--target-ms", type=float, default=200.0, help="length of the timed stream")
    ap.add_argument("--cpus", default=None, help="parent,child CPUs (default: 0,1 if allowed)")
    ap.add_argument("--spin", action="store_true",
                    help="shmring kinds only: spin=True (busy-poll while blocked), mode spin")
    a = ap.parse_args()

    cpus = None
    if a.cpus:
        cpus = tuple(int(c) for c in a.cpus.split(","))
    elif hasattr(os, "sched_getaffinity"):
        allowed = sorted(os.sched_getaffinity(0))
        if len(allowed) >= 2:
            cpus = (allowed[0], allowed[1])
    for kind in a.kinds.split(","):
        if kind not in KINDS:
            sys.exit(f"unknown kind {kind!r} ({', '.join(KINDS)})")
        if a.spin and not kind.startswith("shmring"):
            sys.exit(f"--spin: multiprocessing has no busy-polling mode ({kind!r})")
        for size in (int(s) for s in a.sizes.split(",")):
            row = measure(kind, size, a.rtt, a.warmup, a.calibrate, a.target_ms, cpus, a.spin)
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
