#!/usr/bin/env python3
"""shmring's Python Queue and Pipe against multiprocessing, faster_fifo and iceoryx2, in one run.

Between two processes (pinned to two CPUs when there are two), for three
payloads — a small object (an int), 1 KiB of bytes, a 1 MiB numpy float64
array — it measures, for every transport:

  - round trips: the parent sends, the child sends back what it received;
    time.perf_counter_ns around each pair; p50/p99/p99.9/max (nearest
    rank) and round trips/s (1 / mean);
  - streaming: the child sends N messages as fast as it can, the parent
    receives them; messages/s and, for the array, GB/s (10^9 bytes/s).

Transports, blocking (mode "block": the receiver sleeps when there is
nothing to receive) and busy-polling (mode "spin"):

  shmring.Queue, shmring.Queue(maxsize=16) (1 MiB only), shmring.Pipe: block
      (the default: spin 20 us, then sleep on a futex) and spin (spin=True);
  shmring.Queue in place (1 MiB only): Queue(16), get(copy=False) on both
      sides (the array arrives as a view of its slot: the sender's copy is
      the only one), block and spin;
  multiprocessing.Queue, SimpleQueue, Pipe: block;
  faster_fifo.Queue: block (its get() sleeps on a condition variable);
  iceoryx2 (its Python package: publish-subscribe services of byte slices,
      one each way): block (a notifier/listener event service wakes the
      receiver after every send) and spin (receive() polled in a loop).

A queue transport uses two queues (one each way), a pipe one duplex pipe.
Every transport carries Python objects, so iceoryx2's rows pickle too
(protocol 5, out-of-band buffers written straight into the loaned sample
and copied out once, as shmring does). A transport whose package is not
installed is skipped and reported as such.

--rounds N (default 3) measures the whole matrix N times, round-robin
(every transport once per round, in the same order), together with Rust
rows from `shmring bench` (floor, shm-spsc, shm-mpmc at 8 B, spin and
block) when the binary is there (target/release/shmring, or --shmring-bin).
Each ratio is computed per round, between rows of the same round, and
printed as median (min-max) over the rounds.

    scripts/bench-python                                 # makes target/bench-venv with every package, then runs this
    python3 scripts/bench_python_queues.py               # ~5 minutes (3 rounds)
    python3 scripts/bench_python_queues.py --quick --rounds 1
    python3 scripts/bench_python_queues.py --json out.json

The start method is fork. Numbers from a machine that is running other work
are not comparable with a quiet one's: the load average and the floor of
each round are printed.
"""

import argparse
import ctypes
import json
import multiprocessing
import os
import pickle
import platform
import statistics
import struct
import subprocess
import sys
import time

import numpy as np

# The command loop and percentiles of `shmring bench`'s Python rows, so both
# scripts measure alike.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_python import answer, percentile  # noqa: E402

try:
    import shmring
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "python"))
    import shmring

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))

PAYLOADS = {
    "small": lambda: 12345,
    "1KiB": lambda: bytes(1024),
    "1MiB-numpy": lambda: np.arange(1 << 17, dtype=np.float64),  # 1 MiB
}
PAYLOAD_BYTES = {"small": 0, "1KiB": 1024, "1MiB-numpy": 1 << 20}


def pin(cpu):
    if hasattr(os, "sched_setaffinity"):
        try:
            os.sched_setaffinity(0, {cpu} if cpu is not None else range(os.cpu_count()))
        except OSError:
            pass


# ----------------------------------------------------------------- iceoryx2

IOX_SLOTS = 16  # each subscriber's buffer (the publisher retries when full)
_iox_seq = [0]


def iox_names():
    _iox_seq[0] += 1
    base = f"shmring-bench/{os.getpid()}/{_iox_seq[0]}"
    return base + "/a2b", base + "/b2a"


class IoxEnd:
    """One process's end of an iceoryx2 duplex channel: a publisher on
    `out`, a subscriber on `inp` (byte-slice publish-subscribe services),
    and for blocking, a notifier on out's event service and a listener on
    inp's. Objects are pickled (protocol 5); the frame is one byte (the
    number of out-of-band buffers), then, with buffers, their lengths and
    the pickle's (u64 each), the pickle and the buffers."""

    def __init__(self, out, inp, spin, max_bytes, create):
        import iceoryx2 as iox2

        self.iox2 = iox2
        self.node = iox2.NodeBuilder.new().create(iox2.ServiceType.Ipc)

        def retry(f):
            # The other process may be creating the service this moment.
            deadline = time.monotonic() + 10
            while True:
                try:
                    return f()
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.002)

        def ps(name):
            b = (self.node.service_builder(iox2.ServiceName.new(name))
                 .publish_subscribe(iox2.Slice[ctypes.c_uint8])
                 .enable_safe_overflow(False)
                 .subscriber_max_buffer_size(IOX_SLOTS)
                 .history_size(0))
            return retry(b.create if create else b.open)

        def ev(name):
            b = self.node.service_builder(iox2.ServiceName.new(name + "/ev")).event()
            return retry(b.create if create else b.open)

        self.services = [ps(out), ps(inp)]
        self.pub = (self.services[0].publisher_builder()
                    .initial_max_slice_len(max_bytes)
                    .allocation_strategy(iox2.AllocationStrategy.PowerOfTwo)
                    .backpressure_strategy(iox2.BackpressureStrategy.RetryUntilDelivered)
                    .create())
        self.sub = self.services[1].subscriber_builder().create()
        self.notifier = self.listener = None
        if not spin:
            evs = [ev(out), ev(inp)]
            self.services += evs
            self.notifier = evs[0].notifier_builder().create()
            self.listener = evs[1].listener_builder().create()
        # A sample sent before the peer's subscriber exists is lost
        # (history 0): wait for it.
        deadline = time.monotonic() + 10
        while self.services[0].dynamic_config.number_of_subscribers < 1:
            if time.monotonic() > deadline:
                raise RuntimeError("iceoryx2: the peer's subscriber did not appear within 10 s")
            time.sleep(0.001)

    def send(self, obj):
        bufs = []
        head = pickle.dumps(obj, 5, buffer_callback=bufs.append)
        if not bufs:
            # The fastest path its Python API offers: one memmove to the
            # sample's address (payload() builds a ctypes array type per
            # call, which costs microseconds).
            n = 1 + len(head)
            s = self.pub.loan_slice_uninit(n)
            ctypes.memmove(s.payload_ptr, b"\0" + head, n)
        else:
            raws = [b.raw() for b in bufs]
            lens = [len(head)] + [r.nbytes for r in raws]
            hdr = bytes([len(raws)]) + struct.pack(f"<{len(lens)}Q", *lens)
            n = len(hdr) + sum(lens)
            s = self.pub.loan_slice_uninit(n)
            mv = s.payload().as_memory_view().cast("B")
            at = len(hdr)
            mv[:at] = hdr
            for part in [head] + raws:
                mv[at:at + len(part)] = part
                at += len(part)
        s.assume_init().send()
        if self.notifier is not None:
            self.notifier.notify()

    def recv(self):
        receive = self.sub.receive
        s = receive()
        while s is None:
            if self.listener is not None:
                self.listener.blocking_wait()
            s = receive()
        ptr = s.payload_ptr
        k = ctypes.c_uint8.from_address(ptr).value
        if k == 0:
            obj = pickle.loads(ctypes.string_at(ptr + 1, s.header.number_of_elements - 1))
            s.delete()
            return obj
        else:
            mv = s.payload().as_memory_view().cast("B")
            lens = struct.unpack_from(f"<{k + 1}Q", mv, 1)
            at = 1 + 8 * (k + 1)
            head = bytes(mv[at:at + lens[0]])
            at += lens[0]
            bufs = []
            for n in lens[1:]:
                bufs.append(bytearray(mv[at:at + n]))
                at += n
            obj = pickle.loads(head, buffers=bufs)
            del mv
        s.delete()
        return obj

    def close(self):
        for x in (self.sub, self.pub, self.notifier, self.listener):
            if x is not None:
                x.delete()
        self.services.clear()
        del self.node


# --------------------------------------------------------------- transports
# name -> (mode, make(payload) -> handles, or None and the reason it is
# skipped). Each process builds its (send, recv, close) from the handles.

# Rows measured with the 1 MiB array only.
ONLY_1MIB = ("shmring.Queue(maxsize=16)", "shmring.Queue in place", "shmring.Queue spin in place")


def transports():
    ctx = multiprocessing.get_context("fork")
    two = lambda make: (lambda p: ("queue", make(p), make(p), False))  # noqa: E731
    limit = lambda p: max(4 << 20, PAYLOAD_BYTES[p] * 2)  # noqa: E731
    t = {
        "shmring.Queue": ("block", two(lambda p: shmring.Queue(max_message_size=limit(p)))),
        "shmring.Queue(maxsize=16)": (
            "block", two(lambda p: shmring.Queue(16, max_message_size=limit(p)))),
        "shmring.Pipe": ("block", lambda p: ("pipe",) + shmring.Pipe(max_message_size=limit(p))),
        "mp.Queue": ("block", two(lambda p: ctx.Queue())),
        "mp.SimpleQueue": ("block", two(lambda p: ctx.SimpleQueue())),
        "mp.Pipe": ("block", lambda p: ("pipe",) + ctx.Pipe()),
    }
    try:
        import faster_fifo

        t["faster_fifo.Queue"] = (
            "block", two(lambda p: faster_fifo.Queue(max_size_bytes=64 << 20)))
    except ImportError:
        t["faster_fifo.Queue"] = ("block", None, "skipped: not installed (pip install faster-fifo)")
    try:
        import iceoryx2  # noqa: F401

        iceoryx2.set_log_level(iceoryx2.LogLevel.Error)
        t["iceoryx2"] = ("block", lambda p: ("iox", False, *iox_names()))
    except ImportError:
        t["iceoryx2"] = ("block", None, "skipped: not installed (pip install iceoryx2)")
    # Busy-polling.
    t["shmring.Queue spin"] = (
        "spin", two(lambda p: shmring.Queue(max_message_size=limit(p), spin=True)))
    # get(copy=False): arrays arrive as views of the slot (1 MiB only).
    t["shmring.Queue in place"] = (
        "block", lambda p: ("queue", shmring.Queue(16, max_message_size=limit(p)),
                            shmring.Queue(16, max_message_size=limit(p)), True))
    t["shmring.Queue spin in place"] = (
        "spin", lambda p: ("queue", shmring.Queue(16, max_message_size=limit(p), spin=True),
                           shmring.Queue(16, max_message_size=limit(p), spin=True), True))
    t["shmring.Pipe spin"] = (
        "spin", lambda p: ("pipe",) + shmring.Pipe(max_message_size=limit(p), spin=True))
    if t["iceoryx2"][1] is None:
        t["iceoryx2 spin"] = ("spin", None, t["iceoryx2"][2])
    else:
        t["iceoryx2 spin"] = ("spin", lambda p: ("iox", True, *iox_names()))
    return t


def ends(handles, payload, parent):
    """(send, recv, close) of one process."""
    kind = handles[0]
    if kind == "pipe":
        c = handles[1] if parent else handles[2]
        return c.send, c.recv, c.close
    if kind == "iox":
        _, spin, a2b, b2a = handles
        out, inp = (a2b, b2a) if parent else (b2a, a2b)
        e = IoxEnd(out, inp, spin, max(4096, 2 * PAYLOAD_BYTES[payload] + 4096), create=parent)
        return e.send, e.recv, e.close
    _, req, resp, in_place = handles
    if in_place:
        def get(q):
            return lambda: q.get(copy=False)
    else:
        def get(q):
            return q.get
    if parent:
        return req.put, get(resp), lambda: None

    def done():
        if hasattr(resp, "join_thread"):  # multiprocessing's feeder thread
            resp.close()
            resp.join_thread()

    return resp.put, get(req), done


def serve(handles, payload, cpu, ready):
    pin(cpu)
    send, recv, close = ends(handles, payload, parent=False)
    ready.set()
    answer(recv, send, PAYLOADS[payload]())
    close()


def measure(name, make, payload, n_rtt, n_stream, cpus):
    ctx = multiprocessing.get_context("fork")
    handles = make(payload)
    pin(cpus[0])
    ready = ctx.Event()
    p = ctx.Process(target=serve, args=(handles, payload, cpus[1], ready))
    p.start()
    send, recv, close = ends(handles, payload, parent=True)
    if not ready.wait(30):
        p.kill()
        raise RuntimeError(f"{name}: the child did not start within 30 s")
    obj = PAYLOADS[payload]()
    # Warm up (attach, caches) and use every ring slot once: a slot's pages
    # are touched (page faults) the first time a message lands in it, and
    # this measures the steady state (see docs/python.md, "First pass").
    warm = max(10, n_rtt // 10)
    if name.startswith("shmring"):
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
        got = recv()
    stream_ns = clock() - t0
    if payload == "1MiB-numpy" and not np.array_equal(got, obj):
        raise RuntimeError(f"{name}: the array came back changed")
    send(("exit",))
    p.join(30)
    close()
    pin(None)
    if p.exitcode != 0:
        raise RuntimeError(f"{name}: the child ended with exit code {p.exitcode}")
    lat.sort()
    mean = sum(lat) / len(lat)
    row = {
        "p50_us": percentile(lat, 50) / 1e3,
        "p99_us": percentile(lat, 99) / 1e3,
        "p999_us": percentile(lat, 99.9) / 1e3,
        "max_us": lat[-1] / 1e3,
        "rtt_per_s": 1e9 / mean,
        "msgs_per_s": n_stream / (stream_ns / 1e9),
        "round_trips": n_rtt,
        "streamed": n_stream,
    }
    if PAYLOAD_BYTES[payload]:
        row["GB_per_s"] = row["msgs_per_s"] * PAYLOAD_BYTES[payload] / 1e9
    return row


def counts(payload, name, quick):
    scale = 0.2 if quick else 1.0
    fast = name.startswith(("shmring", "iceoryx2", "faster_fifo"))
    if payload == "1MiB-numpy":
        n = (300, 600)
    elif fast:
        n = (20000, 200000)
    else:
        n = (5000, 100000)
    return tuple(max(20, int(x * scale)) for x in n)


def rust_rows(binary, cpus, quick):
    """`shmring bench` 8-byte rows (floor, shm-spsc, shm-mpmc; spin and
    block) of this moment: {"shm-mpmc block": row, ...}."""
    cmd = [binary, "bench", "--json", "--transports", "shm-spsc,shm-mpmc", "--sizes", "8",
           "--iterations", "2000" if quick else "20000"]
    if cpus[0] is not None:
        cmd += ["--cpus", f"{cpus[0]},{cpus[1]}"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stderr}")
    rows = {}
    for line in out.stdout.splitlines():
        r = json.loads(line)
        rows[f"{r['transport']} {r['mode']}"] = {
            "p50_us": r["rtt_p50_ns"] / 1e3, "p99_us": r["rtt_p99_ns"] / 1e3,
            "msgs_per_s": r["msgs_per_s"]}
    return rows


def spread(values):
    v = [x for x in values if x is not None]
    if not v:
        return None
    return statistics.median(v), min(v), max(v)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer messages (noisier)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds, round-robin (default 3)")
    ap.add_argument("--json", metavar="FILE", help="also write every round's rows as JSON")
    ap.add_argument("--payloads", default=",".join(PAYLOADS))
    ap.add_argument("--only", default="", help="comma-separated transports to run")
    ap.add_argument("--shmring-bin", default=os.path.join(ROOT, "target/release/shmring"),
                    help="`shmring` binary for the Rust rows (skipped if absent)")
    args = ap.parse_args()
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    pair = (cpus[0], cpus[1]) if len(cpus) >= 2 else (None, None)
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    print(f"# python {platform.python_version()}, numpy {np.__version__}, "
          f"shmring {shmring.__version__}, {model}, {os.cpu_count()} CPUs, pinned to {pair}, "
          f"kernel {platform.release()}, load average {os.getloadavg()[0]:.2f} at start")
    shm_before = set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()
    try:
        run(args, pair)
    finally:
        if os.path.isdir("/dev/shm"):
            # iceoryx2 keeps a per-user management segment (iox2_*global_mgmt)
            # after its last node has gone, and a run that failed may leave a
            # service's: remove the iox2_ entries this run added.
            for n in set(os.listdir("/dev/shm")) - shm_before:
                if n.startswith("iox2_"):
                    try:
                        os.unlink(os.path.join("/dev/shm", n))
                    except OSError:
                        pass


def run(args, pair):
    only = {s for s in args.only.split(",") if s}
    payloads = args.payloads.split(",")
    table = transports()
    rust = os.access(args.shmring_bin, os.X_OK)
    if not rust:
        print(f"# Rust rows skipped: {args.shmring_bin} not found (cargo build --release)")
    # rows[(name, payload)] = [row of round 0, row of round 1, ...]
    rows = {}
    skipped = {}
    for rnd in range(args.rounds):
        print(f"\n# round {rnd + 1} of {args.rounds}", flush=True)
        if rust:
            for k, r in rust_rows(args.shmring_bin, pair, args.quick).items():
                rows.setdefault(("rust " + k, "small"), []).append(r)
            fl = rows[("rust floor spin", "small")][-1], rows[("rust floor block", "small")][-1]
            print(f"#   floor (shmring bench): spin {fl[0]['p50_us'] * 1e3:.0f} ns, "
                  f"block (futex) {fl[1]['p50_us']:.1f} us", flush=True)
        for payload in payloads:
            for name, entry in table.items():
                if only and name not in only:
                    continue
                if name in ONLY_1MIB and payload != "1MiB-numpy":
                    continue
                if entry[1] is None:
                    skipped[name] = entry[2]
                    continue
                n_rtt, n_stream = counts(payload, name, args.quick)
                r = measure(name, entry[1], payload, n_rtt, n_stream, pair)
                r["mode"] = entry[0]
                rows.setdefault((name, payload), []).append(r)
                print(f"#   {payload:11} {name:27} p50 {r['p50_us']:8.2f} us  "
                      f"{r['msgs_per_s']:11,.0f} msgs/s", flush=True)
    load_end = os.getloadavg()[0]

    def med(name, payload, key):
        rs = rows.get((name, payload))
        return statistics.median(r[key] for r in rs) if rs else None

    for payload in payloads:
        print(f"\n## {payload}: median of {args.rounds} round(s)")
        print(f"{'transport':27} {'mode':5} {'p50 µs':>9} {'p99 µs':>9} {'p99.9 µs':>9} "
              f"{'max µs':>9} {'rtt/s':>10} {'msgs/s':>11} {'GB/s':>7}")
        for name in list(table) + sorted(k[0] for k in rows if k[0].startswith("rust ")):
            if (name, payload) not in rows:
                if name in skipped and payload == payloads[0]:
                    print(f"{name:27} {skipped[name]}")
                continue
            rs = rows[(name, payload)]
            if name.startswith("rust "):
                if name.startswith("rust floor"):
                    continue
                print(f"{name:27} {name.split()[-1]:5} {med(name, payload, 'p50_us'):9.2f} "
                      f"{med(name, payload, 'p99_us'):9.2f} {'':9} {'':9} {'':10} "
                      f"{med(name, payload, 'msgs_per_s'):11,.0f}")
                continue
            gb = f"{med(name, payload, 'GB_per_s'):7.2f}" if "GB_per_s" in rs[0] else ""
            print(f"{name:27} {rs[0]['mode']:5} {med(name, payload, 'p50_us'):9.2f} "
                  f"{med(name, payload, 'p99_us'):9.2f} {med(name, payload, 'p999_us'):9.2f} "
                  f"{med(name, payload, 'max_us'):9.1f} {med(name, payload, 'rtt_per_s'):10,.0f} "
                  f"{med(name, payload, 'msgs_per_s'):11,.0f} {gb:>7}")
    if rust:
        fs = spread([r["p50_us"] * 1e3 for r in rows[("rust floor spin", "small")]])
        fb = spread([r["p50_us"] for r in rows[("rust floor block", "small")]])
        print(f"\n# machine state: floor spin p50 {fs[0]:.0f} ns ({fs[1]:.0f}-{fs[2]:.0f}), "
              f"futex floor {fb[0]:.1f} us ({fb[1]:.1f}-{fb[2]:.1f}) over the rounds; "
              f"load average {load_end:.2f} at end")
    else:
        print(f"\n# load average {load_end:.2f} at end")

    def per_round(a, pa, b, pb, key, invert=False):
        """Median (min, max) over rounds of a[key] / b[key] (b / a with invert)."""
        ra, rb = rows.get((a, pa)), rows.get((b, pb))
        if not ra or not rb:
            return None
        v = [(y[key] / x[key]) if invert else (x[key] / y[key]) for x, y in zip(ra, rb)]
        return spread(v)

    print("\n## targets: per-round ratios, median (min-max) over the rounds")
    checks = []

    def check(text, s, ok, unit="×"):
        if s is None:
            print(f"n/a     {text}: not measured")
            checks.append({"target": text, "measured": None})
            return
        verdict = "MET    " if ok(s[0]) else "NOT MET"
        print(f"{verdict} {text}: {s[0]:,.2f}{unit} ({s[1]:,.2f}-{s[2]:,.2f})")
        checks.append({"target": text, "median": s[0], "min": s[1], "max": s[2], "met": ok(s[0])})

    check("small round trip p50: mp.Queue / shmring.Queue (target >= 10)",
          per_round("mp.Queue", "small", "shmring.Queue", "small", "p50_us"), lambda r: r >= 10)
    for a in ("shmring.Queue spin", "shmring.Pipe spin"):
        check(f"busy-poll small round trip p50: {a} / iceoryx2 spin (target <= 0.5)",
              per_round(a, "small", "iceoryx2 spin", "small", "p50_us"), lambda r: r <= 0.5)
    for a, b in (("shmring.Queue", "rust shm-mpmc block"), ("shmring.Pipe", "rust shm-spsc block"),
                 ("shmring.Queue spin", "rust shm-mpmc spin"),
                 ("shmring.Pipe spin", "rust shm-spsc spin")):
        check(f"small round trip p50: {a} / {b} (target <= 1.3)",
              per_round(a, "small", b, "small", "p50_us"), lambda r: r <= 1.3)
    q = rows.get(("shmring.Queue", "small"))
    check("small msgs/s, shmring.Queue (target >= 1 M/s)",
          spread([r["msgs_per_s"] / 1e6 for r in q]) if q else None, lambda r: r >= 1, " M/s")
    for b in ("mp.Queue", "iceoryx2", "faster_fifo.Queue"):
        check(f"small msgs/s: shmring.Queue / {b} (target >= 5)",
              per_round("shmring.Queue", "small", b, "small", "msgs_per_s"), lambda r: r >= 5)
    check("small msgs/s: shmring.Queue spin / iceoryx2 spin (target >= 5)",
          per_round("shmring.Queue spin", "small", "iceoryx2 spin", "small", "msgs_per_s"),
          lambda r: r >= 5)
    for a in ("shmring.Queue", "shmring.Queue(maxsize=16)", "shmring.Queue in place"):
        g = rows.get((a, "1MiB-numpy"))
        check(f"1 MiB numpy GB/s, {a} (target >= 5 GB/s)",
              spread([r["GB_per_s"] for r in g]) if g else None, lambda r: r >= 5, " GB/s")
    for a in ("shmring.Queue", "shmring.Queue(maxsize=16)", "shmring.Pipe", "shmring.Queue spin",
              "shmring.Queue in place", "shmring.Queue spin in place"):
        check(f"1 MiB numpy round trips/s: {a} / mp.Pipe (target >= 10)",
              per_round(a, "1MiB-numpy", "mp.Pipe", "1MiB-numpy", "rtt_per_s"), lambda r: r >= 10)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({
                "rounds": args.rounds, "load_end": load_end, "skipped": skipped,
                "rows": [{"transport": k[0], "payload": k[1], "rounds": v}
                         for k, v in rows.items()],
                "checks": checks}, f, indent=1)


if __name__ == "__main__":
    main()
