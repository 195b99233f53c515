"""Shared pieces of test_queues.py and test_pipe.py: a watchdog, the
/dev/shm check, and the seed programs run as scripts."""

import faulthandler
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time

import pytest

START_METHODS = ["fork", "spawn", "forkserver"]

# No test asserts a wall-clock bound: this only turns a hang into a failure.
WATCHDOG_S = 120


class Hung(Exception):
    """Raised in the main thread by the watchdog's SIGALRM."""


@pytest.fixture(autouse=True)
def watchdog():
    """Fails a test that hangs: SIGALRM raises `Hung` in the main thread
    (a blocked shmring call checks signals every 50 ms), and faulthandler
    dumps every thread's stack and exits if even that does not end it."""

    def on_alarm(signum, frame):
        raise Hung(f"test still running after {WATCHDOG_S} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(WATCHDOG_S)
    faulthandler.dump_traceback_later(WATCHDOG_S + 30, exit=True)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def shm_entries():
    try:
        return set(os.listdir("/dev/shm"))
    except FileNotFoundError:
        return set()


@pytest.fixture(scope="module", autouse=True)
def no_shm_left():
    """Everything here uses anonymous memfds: nothing may appear in
    /dev/shm. (Entries other programs create meanwhile and remove within a
    second are forgiven; the check looks again before failing.)"""
    before = shm_entries()
    yield
    new = shm_entries() - before
    for _ in range(10):
        if not new:
            break
        time.sleep(0.1)
        new &= shm_entries()
    assert not new, f"left in /dev/shm: {sorted(new)}"


def run_program(source, method, timeout=90):
    """Runs `source` (a complete program; `METHOD` in it names the start
    method) as a script with this interpreter (a file: `spawn` children
    import their target functions from it); returns its stdout lines."""
    src = textwrap.dedent(source).replace("METHOD", repr(method))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "seed_program.py")
        with open(path, "w") as f:
            f.write(src)
        r = subprocess.run(
            [sys.executable, path],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
        )
    assert r.returncode == 0, f"exit {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    return r.stdout.splitlines()
