"""Queue.get(copy=False): out-of-band buffers read in place, as read-only
views of the slot, claimed while any view lives; fork, kill -9 and a clean
exit with views alive."""

import gc
import multiprocessing
import os
import queue
import signal

import numpy as np
import pytest

import shmring
from shmring import _shmring
from qhelpers import Hung, no_shm_left, watchdog  # noqa: F401

MIB = 1 << 20


def held():
    gc.collect()
    return _shmring._held_count()


def arrays(n, size=MIB // 8):
    return [np.arange(size, dtype=np.float64) + i for i in range(n)]


def test_numpy_round_trip_in_place_bit_exact_and_read_only():
    q = shmring.Queue(4)
    a = np.random.default_rng(7).standard_normal(MIB // 8)
    q.put(a)
    b = q.get(copy=False)
    assert b.dtype == a.dtype and b.shape == a.shape
    assert a.tobytes() == b.tobytes()
    assert not b.flags.writeable
    with pytest.raises(ValueError):
        b[0] = 1.0
    assert held() == 1
    c = b.copy()  # a writable copy, independent of the slot
    c[0] = 1.0
    del b
    assert held() == 0
    assert q._lost == 0


def test_held_slot_is_not_reused_until_its_array_is_collected():
    q = shmring.Queue(2)
    x0, x1, x2 = arrays(3, size=1024)
    q.put(x0)
    b = q.get(copy=False)  # holds slot 0
    q.put(x1)  # slot 1
    # Position 2 is slot 0 again: still claimed, so the queue is full for
    # senders although it holds one object.
    assert q.qsize() == 1
    with pytest.raises(queue.Full):
        q.put(x2, timeout=0.2)
    assert np.array_equal(b, x0)  # untouched meanwhile
    # A view derived from the array keeps the slot too.
    part = memoryview(b)[8:16]
    del b
    assert held() == 1
    with pytest.raises(queue.Full):
        q.put_nowait(x2)
    del part
    assert held() == 0
    q.put(x2, timeout=5)
    assert np.array_equal(q.get(), x1)
    assert np.array_equal(q.get(copy=False), x2)


def test_past_eight_held_it_copies():
    q = shmring.Queue(32)
    src = arrays(10, size=256)
    for a in src:
        q.put(a)
    got = [q.get(copy=False) for _ in src]
    assert held() == 8
    assert [g.flags.writeable for g in got] == [False] * 8 + [True] * 2
    for a, g in zip(src, got):
        assert np.array_equal(a, g)
    del got
    assert held() == 0
    # The receivers are reused: eight more are held again.
    for a in src:
        q.put(a)
    again = [q.get(copy=False) for _ in src]
    assert held() == 8
    del again
    assert held() == 0


def test_objects_without_buffers_are_copied_and_released():
    q = shmring.Queue(4)
    for obj in [1, "two", {"three": [3, 3.0]}, b"four" * 1000, None]:
        q.put(obj)
        assert q.get(copy=False) == obj
        assert held() == 0


def test_one_claim_for_all_the_buffers_of_an_object():
    q = shmring.Queue(2)
    a, b = arrays(2, size=4096)
    q.put({"a": a, "b": b})
    got = q.get(copy=False)
    ga, gb = got["a"], got["b"]
    del got
    assert held() == 1
    del ga
    assert held() == 1
    assert np.array_equal(gb, b)
    del gb
    assert held() == 0


def test_a_forked_child_does_not_release_its_parents_claim():
    q = shmring.Queue(2)
    x0, x1, x2 = arrays(3, size=1024)
    q.put(x0)
    b = q.get(copy=False)
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            # The child's copy of the array dies here, and its process
            # exits through the exit handlers.
            del b
            gc.collect()
            _shmring._release_held_at_exit()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert held() == 1
    q.put(x1)
    with pytest.raises(queue.Full):
        q.put_nowait(x2)  # slot 0 is still the parent's
    assert np.array_equal(b, x0)
    del b
    assert held() == 0
    q.put_nowait(x2)


def _hold_and_report(q, ready, keep):
    kept = q.get(copy=False)
    globals()["KEPT"] = kept  # alive at exit
    ready.put(float(kept[1]))
    if keep == "forever":
        signal.pause()


def _holder_ends(method, keep, end):
    """A child takes the first of three arrays in place and holds it;
    `end(p)` ends it. Then a lap of sends (two more arrays through a
    queue of two) must go through: returns the queue's lost count."""
    ctx = multiprocessing.get_context(method)
    q = shmring.Queue(2)
    ready = shmring.Queue(2)
    x0, x1, x2 = arrays(3, size=1024)
    q.put(x0)
    p = ctx.Process(target=_hold_and_report, args=(q, ready, keep))
    p.start()
    assert ready.get(timeout=60) == 1.0
    end(p)
    q.put(x1, timeout=60)
    # Slot 0 again: free once the child's slot is given back (by its exit,
    # or by the reaper, which a blocked send runs).
    q.put(x2, timeout=60)
    assert np.array_equal(q.get(), x1)
    assert np.array_equal(q.get(), x2)
    return q._lost


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_a_clean_exit_releases_what_it_held(method):
    def exits(p):
        p.join(60)
        assert p.exitcode == 0

    # Given back by its exit: nothing was reaped as lost.
    assert _holder_ends(method, "exit", exits) == 0


def test_a_killed_holder_is_reaped_and_its_message_counted_lost():
    def killed(p):
        os.kill(p.pid, signal.SIGKILL)
        p.join(60)

    assert _holder_ends("fork", "forever", killed) == 1


def _echo_in_place(a, b, n):
    for _ in range(n):
        b.put(a.get(copy=False))


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_echo_in_place_between_processes(method):
    ctx = multiprocessing.get_context(method)
    a, b = shmring.Queue(4), shmring.Queue(4)
    n = 50
    p = ctx.Process(target=_echo_in_place, args=(a, b, n))
    p.start()
    rng = np.random.default_rng(3)
    for i in range(n):
        x = rng.standard_normal(MIB // 8 + i)
        a.put(x)
        y = b.get(copy=False)
        assert x.tobytes() == y.tobytes()
    p.join(60)
    assert p.exitcode == 0
    del y
    assert held() == 0
    assert a._lost == 0 and b._lost == 0


def test_closing_the_handle_keeps_held_arrays_readable():
    q = shmring.Queue(2)
    x = arrays(1, size=4096)[0]
    q.put(x)
    y = q.get(copy=False)
    q.close()
    assert np.array_equal(y, x)
    del q
    gc.collect()
    assert np.array_equal(y, x)  # the mapping lives as long as the view
    del y
    assert held() == 0


class _Reviver:
    """Brings a view back from the garbage in its finalizer."""

    saved = []

    def __del__(self):
        _Reviver.saved.append(self.view)


def test_a_view_revived_by_a_finalizer_keeps_its_slot():
    # The collector calls weak-reference callbacks before finalizers; the
    # slot must outlast a view that a finalizer brings back.
    q = shmring.Queue(1)
    q.put(np.full(1024, 1.0))
    arr = q.get(copy=False)
    r = _Reviver()
    r.view = arr.base.base  # the memoryview over the slot
    del arr
    r.cycle = r  # only the collector frees it
    del r
    gc.collect()
    view = np.frombuffer(_Reviver.saved[0], dtype=np.float64)
    assert held() == 1
    with pytest.raises(queue.Full):
        q.put(np.full(1024, 2.0), timeout=0.2)
    q.close()
    del q
    gc.collect()
    assert np.all(view == 1.0)  # still mapped, still the message
    _Reviver.saved.clear()
    del view
    assert held() == 0


def test_idle_receivers_are_detached():
    q = shmring.Queue(32)
    for a in arrays(8, size=256):
        q.put(a)
    got = [q.get(copy=False) for _ in range(8)]
    assert held() == 8
    assert q._endpoints == (1, 8)  # one sender; eight receivers lent
    del got
    assert held() == 0
    assert q._endpoints == (1, 2)  # two idle ones stay attached


EXIT_ORDER = """
import atexit, sys
def late_reader():  # registered first: runs after shmring's handlers
    print("held during atexit:", _shmring._held_count(), float(arr[1]), flush=True)
atexit.register(late_reader)
import numpy as np
import shmring
from shmring import _shmring
q = shmring.Queue(1, name=sys.argv[1])
q.put(np.arange(1024, dtype=np.float64))
arr = q.get(copy=False)  # alive through the exit
"""


def test_exit_gives_slots_back_after_atexit_handlers(tmp_path):
    import subprocess
    import sys
    import uuid

    name = f"shmring-test-zc-{uuid.uuid4().hex[:12]}"
    script = tmp_path / "exit_order.py"
    script.write_text(EXIT_ORDER)
    try:
        out = subprocess.run([sys.executable, str(script), name], capture_output=True,
                             text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        # Still held (and unchanged) while atexit handlers run...
        assert "held during atexit: 1 1.0" in out.stdout
        # ... and given back afterwards, not reaped.
        q = shmring.Queue(1, name=name)
        q.put_nowait(np.zeros(4))
        assert q._lost == 0
    finally:
        shmring.Queue.unlink(name)


def test_several_consumers_that_drop_each_array_get_everything_once():
    import threading

    q = shmring.Queue(16)
    n, consumers = 3000, 4
    got = [[] for _ in range(consumers)]

    def consume(i):
        while True:
            v = q.get(timeout=60, copy=False)
            if v is None:
                return
            got[i].append(int(v[0]) if isinstance(v, np.ndarray) else v)
            del v  # before the next get (see docs/python.md)

    threads = [threading.Thread(target=consume, args=(i,)) for i in range(consumers)]
    for t in threads:
        t.start()
    for i in range(n):
        q.put(np.full(1000, i) if i % 3 == 0 else i)
    for _ in threads:
        q.put(None)
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads)
    assert sorted(v for g in got for v in g) == list(range(n))
    assert held() == 0
