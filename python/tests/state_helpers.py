"""Shared pieces of the state-area tests (test_state, test_sync,
test_manager): the watchdog, the start methods, the /dev/shm check, and
the functions child processes run (here, so that a spawned child imports
only this small module)."""

import os
import signal
import sys
import time

import multiprocessing as mp

import pytest

import shmring

METHODS = ["fork", "spawn", "forkserver"]
WATCHDOG_S = int(os.environ.get("SHMRING_TEST_WATCHDOG", "60"))


class Watchdog(Exception):
    """A test ran past its watchdog."""


@pytest.fixture(autouse=True)
def watchdog():
    """Fails a test that runs longer than WATCHDOG_S (a hang, never a
    timing assertion)."""

    def fire(signum, frame):
        raise Watchdog("test ran past the %d s watchdog" % WATCHDOG_S)

    old = signal.signal(signal.SIGALRM, fire)
    signal.alarm(WATCHDOG_S)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.fixture(autouse=True, scope="module")
def no_dev_shm_left():
    """Nothing the module made is left in /dev/shm, nor mapped from it."""
    before = set(os.listdir("/dev/shm"))
    yield
    left = set(os.listdir("/dev/shm")) - before
    assert not left, "left in /dev/shm: %s" % sorted(left)
    with open("/proc/self/maps") as f:
        assert "/dev/shm/" not in f.read()


@pytest.fixture(params=METHODS)
def ctx(request):
    """A multiprocessing context of each start method."""
    return mp.get_context(request.param)


def run(ctx, target, *args, timeout=30):
    """Runs target(*args) in a child of ctx and checks it exited 0."""
    p = ctx.Process(target=target, args=args)
    p.start()
    p.join(timeout)
    if p.is_alive():
        p.kill()
        p.join()
        raise AssertionError("child did not finish in %s s" % timeout)
    assert p.exitcode == 0, "child exit code %s" % p.exitcode


def is_memfd(fd):
    return os.readlink("/proc/self/fd/%d" % fd).startswith("/memfd:")


# --- what children run -------------------------------------------------------


def set_value_and_array(num, arr):
    num.value = 3.1415927
    for i in range(len(arr)):
        arr[i] = -arr[i]


def fill_with_numpy(arr, raw):
    import numpy as np

    a = np.frombuffer(arr.get_obj(), dtype=np.float64)
    a[:] = np.arange(len(a), dtype=np.float64) * 0.5
    r = np.asarray(raw)
    r[:] = np.arange(len(r), dtype=np.int32) * -3


def add_under_lock(counter, lock, times):
    for _ in range(times):
        with lock:
            counter.value += 1


def add_under_get_lock(counter, times):
    for _ in range(times):
        with counter.get_lock():
            counter.value += 1


def hold_lock_forever(lock, ready):
    assert lock.acquire()
    ready.set()
    while True:
        time.sleep(1)


def event_pingpong(ping, pong):
    assert ping.wait(20)
    pong.set()


def condition_child(cond, state):
    with cond:
        assert cond.wait_for(lambda: state.value == 1, 20)
        state.value = 2
        cond.notify_all()


def semaphore_child(sem, lock, inside, peak, rounds):
    for _ in range(rounds):
        with sem:
            with lock:
                inside.value += 1
                peak.value = max(peak.value, inside.value)
            time.sleep(0.005)
            with lock:
                inside.value -= 1


def barrier_child(barrier, indices, slot, rounds):
    for r in range(rounds):
        indices[slot * rounds + r] = barrier.wait(20)


def barrier_action(counter):
    counter.value += 1


def barrier_waits_then_breaks(barrier, out):
    try:
        barrier.wait(20)
        out.value = 1
    except Exception as e:  # threading.BrokenBarrierError
        out.value = 2 if type(e).__name__ == "BrokenBarrierError" else 3


def fill_dict_list(d, l):
    d[1] = "1"
    d["2"] = 2
    d[0.25] = None
    l.reverse()


def append_many(l, tag, n):
    for i in range(n):
        l.append((tag, i))


def dict_writer(d, tag, n):
    for i in range(n):
        d[(tag, i)] = i
    d.setdefault("shared", tag)


def child_main_guard():
    """For completeness: children exit 0 unless an assertion fails."""
    sys.exit(0)


def inherited_lock_not_held(lock, out):
    out.value = int(not lock._is_owned()) + 2 * int(not lock.acquire(timeout=0.05))
