#!/usr/bin/env python3
"""shmring's Python Queue and Pipe against multiprocessing's, in one run.

Between two processes (pinned to two CPUs when there are two), for three
payloads — a small object (an int), 1 KiB of bytes, a 1 MiB numpy array —
it measures, for every transport:

  - round trips: the parent sends, the child sends back what it received;
    time.perf_counter_ns around each pair; p50/p99/p99.9/max (nearest
    rank) and round trips/s (1 / mean);
  - streaming: the child sends N messages as fast as it can, the parent
    receives them; messages/s and, for the array, GB/s (10^9 bytes/s).

Transports: shmring.Queue (blocking, and spin=True), shmring.Pipe,
multiprocessing.Queue, multiprocessing.SimpleQueue, multiprocessing.Pipe,
and faster_fifo.Queue and iceoryx2 when importable (otherwise reported as
"skipped: not installed"). A queue transport uses two queues (one each
way), a pipe one duplex pipe. Ratios against multiprocessing come from
this same run.

    python3 scripts/bench_python_queues.py            # ~1-2 minutes
    python3 scripts/bench_python_queues.py --quick    # ~20 s, noisier
    python3 scripts/bench_python_queues.py --json out.json

The start method is fork (the cheapest to start; it does not change what
is measured). Numbers from a machine that is running other work are not
comparable with a quiet one's: the load average is printed.
"""

import argparse
import json
import math
import multiprocessing
import os
import platform
import sys
import time

import numpy as np

try:
    import shmring
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "python"))
    import shmring

PAYLOADS = {
    "small": lambda: 12345,
    "1KiB": lambda: bytes(1024),
    "1MiB-numpy": lambda: np.arange(1 << 17, dtype=np.float64),  # 1 MiB
}
PAYLOAD_BYTES = {"small": 0, "1KiB": 1024, "1MiB-numpy": 1 << 20}


def pin(cpu):
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        try:
            os.sched_setaffinity(0, {cpu})
        except OSError:
            pass


def percentile(sorted_ns, p):
    if not sorted_ns:
        return 0
    if p >= 100.0:
        return sorted_ns[-1]
    rank = max(1, math.ceil(p / 100.0 * len(sorted_ns)))
    return sorted_ns[min(rank, len(sorted_ns)) - 1]


# ------------------------------------------------------------- transports
# Each maker returns a pair of handles: (request queue, response queue) or
# a pipe's two ends; each process builds its (send, recv) from them.

def queue_pair(make):
    return make(), make()


def parent_ops(kind, handles):
    if "Pipe" in kind:
        a, _b = handles
        return a.send, a.recv, lambda: a.close()
    req, resp = handles
    return req.put, resp.get, lambda: None


def child_ops(kind, handles):
    if "Pipe" in kind:
        _a, b = handles
        return b.send, b.recv, lambda: b.close()
    req, resp = handles

    def done():
        if hasattr(resp, "close") and hasattr(resp, "join_thread"):
            resp.close()
            resp.join_thread()

    return resp.put, req.get, done


def makers():
    """name -> (maker, skip reason or None)."""
    ctx = multiprocessing.get_context("fork")
    m = {
        "shmring.Queue": (lambda: queue_pair(shmring.Queue), None),
        "shmring.Queue(maxsize=16)": (lambda: queue_pair(lambda: shmring.Queue(16)), None),
        "shmring.Queue spin": (lambda: queue_pair(lambda: shmring.Queue(spin=True)), None),
        "shmring.Pipe": (lambda: shmring.Pipe(), None),
        "shmring.Pipe spin": (lambda: shmring.Pipe(spin=True), None),
        "mp.Queue": (lambda: queue_pair(ctx.Queue), None),
        "mp.SimpleQueue": (lambda: queue_pair(ctx.SimpleQueue), None),
        "mp.Pipe": (lambda: ctx.Pipe(), None),
    }
    try:
        import faster_fifo  # noqa: F401

        def ff():
            import faster_fifo
            return queue_pair(lambda: faster_fifo.Queue(max_size_bytes=64 << 20))

        m["faster_fifo.Queue"] = (ff, None)
    except ImportError:
        m["faster_fifo.Queue"] = (None, "skipped: not installed")
    try:
        import iceoryx2  # noqa: F401
        # Its Python API (a node, services, publishers and subscribers) has
        # no drop-in put/get shape; not wired in yet.
        m["iceoryx2"] = (None, "skipped: installed, but not wired into this script")
    except ImportError:
        m["iceoryx2"] = (None, "skipped: not installed")
    return m


def serve(kind, handles, payload, cpu):
    pin(cpu)
    send, recv, done = child_ops(kind, handles)
    obj = PAYLOADS[payload]()
    while True:
        cmd = recv()
        if cmd[0] == "rtt":
            for _ in range(cmd[1]):
                send(recv())
        elif cmd[0] == "stream":
            for _ in range(cmd[1]):
                send(obj)
        else:
            break
    done()


def measure(kind, maker, payload, n_rtt, n_stream, cpus):
    ctx = multiprocessing.get_context("fork")
    handles = maker()
    pin(cpus[0])
    p = ctx.Process(target=serve, args=(kind, handles, payload, cpus[1]))
    p.start()
    send, recv, done = parent_ops(kind, handles)
    obj = PAYLOADS[payload]()
    # Warm up (attach, caches) and, for shmring, use every slot of the
    # rings once: a slot's pages are touched (page faults, zeroing by the
    # kernel) the first time a message lands in it, and this measures the
    # steady state. That first pass costs about one page fault per 4 KiB
    # of message (see docs/python.md).
    warm = max(10, n_rtt // 10)
    if kind.startswith("shmring"):
        warm = max(warm, 1024 + 16)
    send(("rtt", warm))
    for _ in range(warm):
        send(obj)
        recv()
    send(("rtt", n_rtt))
    lat = []
    clock = time.perf_counter_ns
    for _ in range(n_rtt):
        t0 = clock()
        send(obj)
        recv()
        lat.append(clock() - t0)
    send(("stream", n_stream))
    t0 = clock()
    for _ in range(n_stream):
        recv()
    stream_ns = clock() - t0
    send(("exit",))
    p.join()
    done()
    pin(None)
    lat.sort()
    mean = sum(lat) / len(lat)
    row = {
        "transport": kind,
        "payload": payload,
        "round_trips": n_rtt,
        "p50_us": percentile(lat, 50) / 1e3,
        "p99_us": percentile(lat, 99) / 1e3,
        "p999_us": percentile(lat, 99.9) / 1e3,
        "max_us": lat[-1] / 1e3,
        "rtt_per_s": 1e9 / mean,
        "streamed": n_stream,
        "msgs_per_s": n_stream / (stream_ns / 1e9),
    }
    if PAYLOAD_BYTES[payload]:
        row["GB_per_s"] = row["msgs_per_s"] * PAYLOAD_BYTES[payload] / 1e9
    return row


def counts(payload, kind, quick):
    scale = 0.2 if quick else 1.0
    if payload == "1MiB-numpy":
        n = (300, 600)
    elif kind.startswith("shmring"):
        n = (20000, 300000)
    else:
        n = (5000, 100000)
    return tuple(max(20, int(x * scale)) for x in n)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer messages (noisier)")
    ap.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    ap.add_argument("--payloads", default=",".join(PAYLOADS))
    ap.add_argument("--only", default="", help="comma-separated transports to run")
    args = ap.parse_args()
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    pair = (cpus[0], cpus[1]) if len(cpus) >= 2 else (None, None)
    print(f"# python {platform.python_version()}, numpy {np.__version__}, "
          f"shmring {shmring.__version__}, {os.cpu_count()} CPUs, pinned to {pair}, "
          f"load average {os.getloadavg()[0]:.2f} at start")
    rows = []
    only = {s for s in args.only.split(",") if s}
    for payload in args.payloads.split(","):
        print(f"\n## {payload}")
        print(f"{'transport':28} {'p50 µs':>9} {'p99 µs':>9} {'p99.9 µs':>9} {'max µs':>9} "
              f"{'rtt/s':>10} {'msgs/s':>11} {'GB/s':>7}")
        for kind, (maker, skip) in makers().items():
            if only and kind not in only:
                continue
            if kind == "shmring.Queue(maxsize=16)" and payload != "1MiB-numpy":
                continue
            if maker is None:
                print(f"{kind:28} {skip}")
                rows.append({"transport": kind, "payload": payload, "skipped": skip})
                continue
            n_rtt, n_stream = counts(payload, kind, args.quick)
            r = measure(kind, maker, payload, n_rtt, n_stream, pair)
            rows.append(r)
            gb = f"{r['GB_per_s']:7.2f}" if "GB_per_s" in r else f"{'':7}"
            print(f"{kind:28} {r['p50_us']:9.2f} {r['p99_us']:9.2f} {r['p999_us']:9.2f} "
                  f"{r['max_us']:9.1f} {r['rtt_per_s']:10.0f} {r['msgs_per_s']:11.0f} {gb}",
                  flush=True)
    print(f"\n# load average {os.getloadavg()[0]:.2f} at end")

    def get(kind, payload):
        for r in rows:
            if r["transport"] == kind and r["payload"] == payload and "skipped" not in r:
                return r
        return None

    print("\n## ratios (same run)")
    checks = []
    q, mq = get("shmring.Queue", "small"), get("mp.Queue", "small")
    if q and mq:
        ratio = mq["p50_us"] / q["p50_us"]
        checks.append(("small round trip p50, shmring.Queue vs mp.Queue (target >= 10x)",
                       ratio, ratio >= 10))
        checks.append(("small msgs/s, shmring.Queue (target >= 1 M/s)",
                       q["msgs_per_s"], q["msgs_per_s"] >= 1e6))
        ratio = q["msgs_per_s"] / mq["msgs_per_s"]
        checks.append(("small msgs/s, shmring.Queue vs mp.Queue (target >= 5x)", ratio, ratio >= 5))
    for kind in ("shmring.Queue", "shmring.Queue(maxsize=16)"):
        a, mp_pipe = get(kind, "1MiB-numpy"), get("mp.Pipe", "1MiB-numpy")
        if a and mp_pipe:
            checks.append((f"1 MiB numpy GB/s, {kind} (target >= 5 GB/s)",
                           a["GB_per_s"], a["GB_per_s"] >= 5))
            ratio = a["rtt_per_s"] / mp_pipe["rtt_per_s"]
            checks.append((f"1 MiB numpy round trips/s, {kind} vs mp.Pipe (target >= 10x)",
                           ratio, ratio >= 10))
    for text, value, ok in checks:
        print(f"{'MET    ' if ok else 'NOT MET'} {text}: {value:,.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "checks": [list(c) for c in checks]}, f, indent=1)


if __name__ == "__main__":
    main()
