"""No system call per message while nobody sleeps (the Python side of
tests/syscalls.rs).

A child interpreter sets up every kind of queue and pipe (and a few shared
cells and locks), warms them up, then calls the extension's test hook
``_shmring._forbid_syscalls``: from then on its main thread may make no
system call but ``exit_group`` (a seccomp filter; anything else ends the
process with ``1 + nr % 250`` and writes the call's number to a report
fd). It then moves thousands of messages through the blocking and
non-blocking calls, with room and data always there, so that nobody ever
sleeps, and ends with ``os._exit(0)``. A second thread, idle on an
``Event``, shows that another thread's mere existence changes nothing.
"""

import os
import platform
import re
import subprocess
import sys
import textwrap

import pytest

from qhelpers import no_shm_left, watchdog  # noqa: F401

pytestmark = pytest.mark.skipif(
    sys.platform != "linux" or platform.machine() not in ("x86_64", "aarch64"),
    reason="seccomp test hook: Linux x86_64 / aarch64 only",
)

#: Exit status of a child whose kernel refused the seccomp filter.
NO_SECCOMP = 251

#: Names of the system calls most likely to show up, by machine.
SYSCALL_NAMES = {
    "x86_64": {
        0: "read", 1: "write", 3: "close", 7: "poll", 9: "mmap", 10: "mprotect",
        11: "munmap", 12: "brk", 13: "rt_sigaction", 14: "rt_sigprocmask",
        24: "sched_yield", 25: "mremap", 28: "madvise", 35: "nanosleep",
        39: "getpid", 72: "fcntl", 96: "gettimeofday", 186: "gettid",
        201: "time", 202: "futex", 228: "clock_gettime", 230: "clock_nanosleep",
        232: "epoll_wait", 281: "epoll_pwait", 318: "getrandom", 324: "membarrier",
        334: "rseq",
    },
    "aarch64": {
        29: "ioctl", 57: "close", 63: "read", 64: "write", 98: "futex",
        101: "nanosleep", 113: "clock_gettime", 115: "clock_nanosleep",
        124: "sched_yield", 172: "getpid", 178: "gettid", 214: "brk",
        215: "munmap", 216: "mremap", 222: "mmap", 226: "mprotect",
        233: "madvise", 278: "getrandom", 283: "membarrier",
    },
}

PRELUDE = """
import os, sys, threading
import numpy as np
import shmring
from shmring import _shmring

REPORT = os.dup(2)
NO_SECCOMP = %d

def forbid():
    try:
        _shmring._forbid_syscalls(REPORT)
    except OSError as e:
        print(f"seccomp unavailable: {e}", file=sys.stderr, flush=True)
        os._exit(NO_SECCOMP)
""" % NO_SECCOMP

# Every queue kind and both pipe kinds, driven by one thread, in bursts
# below every capacity (so no call waits), with small objects, 1 KiB bytes
# and a small numpy array (pickled with an out-of-band buffer).
HOT_PATHS = """
# A second thread, parked on an Event for good (it never wants the GIL).
idle, parked = threading.Event(), threading.Event()
def park():
    parked.set()
    idle.wait()
threading.Thread(target=park, daemon=True).start()
parked.wait()

queues = [shmring.Queue(64), shmring.SimpleQueue(), shmring.JoinableQueue(64)]
jq = queues[2]
a, b = shmring.Pipe()
r, w = shmring.Pipe(duplex=False)
value = shmring.Value("i", 0)
array = shmring.Array("d", 8)
lock = shmring.Lock()
rlock = shmring.RLock()
sem = shmring.Semaphore(2)
event = shmring.Event()

kib = b"k" * 1024
vec = np.arange(16, dtype=np.float64)
objs = [None, 7, 2.5, "text", ("tuple", 1), {"k": [1, 2]}, kib, vec]
into = bytearray(2048)
BURST = 8

def same(x, y):
    return (x == y).all() if isinstance(x, np.ndarray) else x == y

def rounds(n):
    for i in range(n):
        for q in queues:
            for o in objs:
                q.put(o)
                assert same(q.get(), o)
            for _ in range(BURST):
                q.put_nowait(i)
            for _ in range(BURST):
                assert q.get_nowait() == i
            for _ in range(BURST):
                q.put(kib)
            for _ in range(BURST):
                assert q.get() == kib
            assert q.empty() and q.qsize() == 0
        for _ in range(len(objs) + 2 * BURST):
            jq.task_done()
        jq.join()
        for x, y in ((a, b), (b, a), (w, r)):
            # (Not poll(0) on an empty pipe: a poll that finds nothing
            # checks that the peer lives, once per 10 ms at most.)
            for o in objs:
                x.send(o)
            assert y.poll(0) and y.poll() and y.poll(None)
            for o in objs:
                assert same(y.recv(), o)
            for _ in range(BURST):
                x.send_bytes(kib)
                x.send_bytes(kib, 512, 16)
            for _ in range(BURST):
                assert y.recv_bytes() == kib
                assert y.recv_bytes_into(into, 8) == 16
        with lock:
            value.value += 1
        with rlock:
            with rlock:
                array[i % 8] = float(i)
        assert lock.acquire(False)
        lock.release()
        with value.get_lock():
            value.value += 1
        with sem:
            assert sem.acquire(False)
            sem.release()
        assert not event.is_set()

rounds(200)
"""


def run_child(body, timeout=300):
    """Runs a child interpreter; returns (status, stderr)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    r = subprocess.run(
        [sys.executable, "-c", PRELUDE + textwrap.dedent(body)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    if r.returncode == NO_SECCOMP:
        pytest.skip(r.stderr.strip())
    return r.returncode, r.stderr


def forbidden(stderr):
    """The system calls the child's trap handler reported, named."""
    names = SYSCALL_NAMES.get(platform.machine(), {})
    nrs = [int(n) for n in re.findall(r"forbidden system call (-?\d+)", stderr)]
    return [f"{n} ({names.get(n, '?')})" for n in nrs]


def test_hook_traps_a_system_call():
    """The harness can fail: a plain system call after the hook ends the
    child with its number."""
    status, err = run_child(
        """
        forbid()
        os.getpid()
        os._exit(0)
        """
    )
    names = SYSCALL_NAMES.get(platform.machine(), {})
    getpid = next(n for n, name in names.items() if name == "getpid")
    assert status == 1 + getpid % 250, err
    assert forbidden(err) == [f"{getpid} (getpid)"], err


def test_no_system_call_per_message():
    status, err = run_child(
        HOT_PATHS
        + """
forbid()
rounds(2000)
os._exit(0)
"""
    )
    assert status == 0, (
        f"the child made a system call on a hot path (status {status}): "
        f"{forbidden(err) or 'not reported'}\n{err}"
    )
