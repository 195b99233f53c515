"""shmring.Queue, SimpleQueue and JoinableQueue: the seeds' programs under
every start method, Full/Empty, numpy round trips, a killed peer, Ctrl-C,
the GIL."""

import multiprocessing
import os
import queue
import re
import signal
import threading
import time

import numpy as np
import pytest

import shmring
from qhelpers import START_METHODS, Hung, no_shm_left, run_program, watchdog  # noqa: F401


# ---------------------------------------------------------------- the seeds

# seeds/001: a putter and a getter through Queue(2) (the getter's timeout
# is 1 s here instead of 10, so that the test is quick).
SEED_001_QUEUE = """
import os, random
import multiprocessing
import shmring

def getter(name, queue):
    print('subprocess %s : %s' % (name, os.getpid()), flush=True)
    while True:
        try:
            value = queue.get(True, 1)
            print('subprocess %s : get value %f' % (name, value), flush=True)
        except Exception:
            break

def putter(name, queue):
    print('subprocess %s : %s' % (name, os.getpid()), flush=True)
    for i in range(0, 5):
        value = random.random()
        queue.put(value)
        print('subprocess %s : put value %f' % (name, value), flush=True)

if __name__ == '__main__':
    ctx = multiprocessing.get_context(METHOD)
    print('parent process run %s ' % os.getpid(), flush=True)
    queue = shmring.Queue(2)
    getter_process = ctx.Process(target=getter, args=('getter', queue))
    putter_process = ctx.Process(target=putter, args=('putter', queue))
    getter_process.start()
    putter_process.start()
    getter_process.join()
    putter_process.join()
    print('exit codes', getter_process.exitcode, putter_process.exitcode)
"""


@pytest.mark.parametrize("method", START_METHODS)
def test_seed_putter_getter_queue_of_two(method):
    lines = run_program(SEED_001_QUEUE, method)
    assert lines[0].startswith("parent process run ")
    # The children's lines may interleave (two processes, one stdout).
    out = "\n".join(lines)
    put = sorted(re.findall(r"putter : put value (\d\.\d{6})", out))
    got = sorted(re.findall(r"getter : get value (\d\.\d{6})", out))
    assert len(put) == 5
    assert got == put
    assert len(re.findall(r"subprocess (getter|putter) : \d+", out)) == 2
    assert lines[-1] == "exit codes 0 0"


# seeds/003: a worker takes messages until None.
SEED_003_QUEUE = """
import multiprocessing
from multiprocessing import current_process
from shmring import Queue

def worker(queue):
    while True:
        args = queue.get()
        print(f"{current_process().name} 接受到消息到: {args}", flush=True)
        if args is None:
            break

if __name__ == '__main__':
    ctx = multiprocessing.get_context(METHOD)
    q = Queue()
    p = ctx.Process(target=worker, args=(q,))
    p.start()
    for i in range(10):
        print(f"{current_process().name} 发送消息: {i}", flush=True)
        q.put(i)
    q.put(None)
    p.join()
    print("结束")
"""


@pytest.mark.parametrize("method", START_METHODS)
def test_seed_worker_until_none(method):
    lines = run_program(SEED_003_QUEUE, method)
    out = "\n".join(lines)  # two processes' lines may interleave
    sent = re.findall(r"MainProcess 发送消息: (\d+)", out)
    got = re.findall(r"Process-1 接受到消息到: (\d+|None)", out)
    assert sent == [str(i) for i in range(10)]
    assert got == [str(i) for i in range(10)] + ["None"]
    assert lines[-1] == "结束"


# ------------------------------------------------------------ in-process

def test_full_and_empty_with_timeouts():
    q = shmring.Queue(maxsize=2)
    assert q.empty() and not q.full() and q.qsize() == 0
    q.put("a")
    q.put_nowait("b")
    assert q.full() and q.qsize() == 2
    with pytest.raises(queue.Full):
        q.put("c", timeout=0.05)
    with pytest.raises(queue.Full):
        q.put("c", block=False)
    with pytest.raises(shmring.Full):
        q.put_nowait("c")
    assert q.get() == "a"
    assert q.get(timeout=0.05) == "b"
    with pytest.raises(queue.Empty):
        q.get(timeout=0.05)
    with pytest.raises(queue.Empty):
        q.get_nowait()
    with pytest.raises(shmring.Empty):
        q.get(False)
    # A negative timeout is 0, as multiprocessing's.
    with pytest.raises(queue.Empty):
        q.get(timeout=-1)
    with pytest.raises(ValueError):
        q.get(timeout=float("nan"))


def test_any_picklable_object_keeps_its_value():
    q = shmring.Queue()
    objs = [None, True, 0, -(2**70), 1.5, "héllo", b"\x00" * 100, bytearray(b"ab"),
            (1, [2, {"x": 3}]), {1, 2}, frozenset("ab"), ValueError("boom"), range(3),
            b"x" * 70000]
    for o in objs:
        q.put(o)
    for o in objs:
        got = q.get()
        if isinstance(o, Exception):
            assert type(got) is type(o) and got.args == o.args
        else:
            assert got == o and type(got) is type(o)


DTYPES = ["int8", "uint16", "int32", "int64", "float16", "float32", "float64",
          "complex128", "bool", "datetime64[ns]"]


@pytest.mark.parametrize("dtype", DTYPES)
def test_numpy_round_trip_bit_exact(dtype):
    rng = np.random.default_rng(7)
    raw = rng.integers(0, 256, size=4096 * 8, dtype=np.uint8)
    a = raw.view(dtype)
    q = shmring.Queue(4)
    q.put(a)
    b = q.get()
    assert b.dtype == a.dtype and b.shape == a.shape
    assert b.tobytes() == a.tobytes()  # bit-exact, NaNs included
    assert b.flags.writeable


def test_numpy_layouts_round_trip():
    a = np.arange(2 * 3 * 4 * 5, dtype=np.float64).reshape(2, 3, 4, 5)
    rec = np.zeros(10, dtype=[("x", "<i4"), ("y", "<f8"), ("s", "S3")])
    rec["x"] = np.arange(10)
    rec["s"] = b"abc"
    cases = [a, a[:, ::2], a[..., ::-1], a.T, np.asfortranarray(a), a[1, 2],
             np.float32(3.5), np.empty((0, 3)), rec, [a, a[::2], {"k": a.T}]]
    q = shmring.Queue(16)
    for c in cases:
        q.put(c)
    for c in cases:
        got = q.get()
        if isinstance(c, list):
            for x, y in [(c[0], got[0]), (c[1], got[1]), (c[2]["k"], got[2]["k"])]:
                assert x.tobytes() == y.tobytes() and x.shape == y.shape
        else:
            assert np.asarray(got).tobytes() == np.asarray(c).tobytes()
            assert np.shape(got) == np.shape(c)


def test_message_larger_than_the_maximum_is_a_clear_value_error():
    q = shmring.Queue(2, max_message_size=1 << 16)
    with pytest.raises(ValueError, match="max_message_size"):
        q.put(np.zeros(1 << 17, dtype=np.uint8))
    assert q.empty()
    big = shmring.Queue(2, max_message_size=16 << 20)
    a = np.arange(1 << 21, dtype=np.float64)  # 16 MiB minus the header: too large
    with pytest.raises(ValueError):
        big.put(a)
    a = a[: (1 << 21) - 1024]
    big.put(a)
    assert np.array_equal(big.get(), a)


def test_closed_handle_refuses_puts_and_gets():
    q = shmring.Queue()
    q.put(1)
    with pytest.raises(AssertionError):
        q.join_thread()
    q.close()
    q.join_thread()
    q.cancel_join_thread()
    with pytest.raises(ValueError):
        q.put(2)
    with pytest.raises(ValueError):
        q.get()


def test_simple_queue():
    q = shmring.SimpleQueue()
    assert q.empty()
    q.put([1, 2])
    assert not q.empty()
    assert q.get() == [1, 2]
    q.close()


def test_joinable_queue_counts_tasks():
    q = shmring.JoinableQueue()
    with pytest.raises(ValueError):
        q.task_done()
    q.put(1)
    q.put(2)
    assert q.join(timeout=0.05) is False
    q.get()
    q.task_done()
    q.get()
    assert q.join(timeout=0.05) is False
    q.task_done()
    assert q.join() is True
    with pytest.raises(ValueError):
        q.task_done()


def test_gil_released_while_blocked():
    q = shmring.Queue()
    done = []
    t = threading.Thread(target=lambda: done.append(q.get(timeout=30)))
    t.start()
    count = 0
    end = time.monotonic() + 0.3
    while time.monotonic() < end:
        count += 1  # runs only while the blocked get has released the GIL
    q.put("x")
    t.join()
    assert done == ["x"]
    assert count > 1000


def sigint_soon(delay=0.2):
    pid = os.getpid()
    t = threading.Timer(delay, lambda: os.kill(pid, signal.SIGINT))
    t.start()
    return t


def test_ctrl_c_interrupts_a_blocked_get():
    q = shmring.Queue()
    t = sigint_soon()
    with pytest.raises(KeyboardInterrupt):
        q.get()
    t.join()
    # The queue still works afterwards.
    q.put(5)
    assert q.get() == 5


def test_ctrl_c_interrupts_a_blocked_put_and_join():
    q = shmring.JoinableQueue(1)
    q.put(1)
    t = sigint_soon()
    with pytest.raises(KeyboardInterrupt):
        q.put(2)
    t.join()
    t = sigint_soon()
    with pytest.raises(KeyboardInterrupt):
        q.join()
    t.join()
    assert q.get() == 1
    q.task_done()
    assert q.join(timeout=1)


def test_spin_mode_round_trip():
    q = shmring.Queue(8, spin=True)
    for i in range(100):
        q.put(i)
        assert q.get() == i
    with pytest.raises(queue.Empty):
        q.get(timeout=0.05)


# ------------------------------------------------------- across processes

def echo_arrays(inq, outq):
    while True:
        a = inq.get()
        if a is None:
            break
        outq.put(a)


@pytest.mark.parametrize("method", START_METHODS)
def test_numpy_across_processes(method):
    ctx = multiprocessing.get_context(method)
    inq, outq = shmring.Queue(4), shmring.Queue(4)
    p = ctx.Process(target=echo_arrays, args=(inq, outq))
    p.start()
    rng = np.random.default_rng(1)
    arrays = [rng.standard_normal(1000).astype(np.float32),
              rng.integers(-5, 5, size=(64, 64), dtype=np.int16)[::3, 1::2],
              np.arange(1 << 18, dtype=np.float64).reshape(512, 512).T]
    for a in arrays:
        inq.put(a)
        b = outq.get(timeout=60)
        assert b.tobytes() == a.tobytes() and b.shape == a.shape and b.dtype == a.dtype
    inq.put(None)
    p.join(60)
    assert p.exitcode == 0


def joinable_worker(q):
    while True:
        item = q.get()
        q.task_done()
        if item is None:
            break


@pytest.mark.parametrize("method", START_METHODS)
def test_joinable_queue_across_processes(method):
    ctx = multiprocessing.get_context(method)
    q = shmring.JoinableQueue()
    workers = [ctx.Process(target=joinable_worker, args=(q,)) for _ in range(2)]
    for w in workers:
        w.start()
    for i in range(50):
        q.put(i)
    for _ in workers:
        q.put(None)
    assert q.join(timeout=60)
    for w in workers:
        w.join(60)
        assert w.exitcode == 0


def many_putters(q, base, n):
    for i in range(n):
        q.put((base, i))


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_many_producers_every_message_once(method):
    ctx = multiprocessing.get_context(method)
    q = shmring.Queue(16)
    ps = [ctx.Process(target=many_putters, args=(q, k, 500)) for k in range(4)]
    for p in ps:
        p.start()
    got = [q.get(timeout=60) for _ in range(4 * 500)]
    for p in ps:
        p.join(60)
    assert sorted(got) == sorted((k, i) for k in range(4) for i in range(500))
    # Per producer, FIFO.
    for k in range(4):
        assert [i for (b, i) in got if b == k] == list(range(500))


def endless_putter(q):
    i = 0
    while True:
        q.put(i)
        i += 1


def blocked_getter(q, ready):
    ready.put("ready")
    q.get()


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_killed_putter_leaves_a_working_queue(method):
    """A producer killed with SIGKILL mid-stream: the consumer gets what it
    sent, then its timed get raises queue.Empty (a Queue has no EOF), and
    the queue keeps working for other processes."""
    ctx = multiprocessing.get_context(method)
    q = shmring.Queue(8)
    p = ctx.Process(target=endless_putter, args=(q,))
    p.start()
    first = [q.get(timeout=60) for _ in range(100)]
    assert first == list(range(100))
    os.kill(p.pid, signal.SIGKILL)
    p.join(60)
    last = first[-1]
    while True:
        try:
            v = q.get(timeout=0.5)
        except queue.Empty:
            break
        assert v == last + 1
        last = v
    q.put("after")
    assert q.get(timeout=5) == "after"


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_killed_getter_leaves_a_working_queue(method):
    """A consumer killed while blocked in get: puts go on until the queue is
    full (then queue.Full on timeout); a new consumer gets everything."""
    ctx = multiprocessing.get_context(method)
    q, ready = shmring.Queue(4), shmring.Queue()
    p = ctx.Process(target=blocked_getter, args=(q, ready))
    p.start()
    assert ready.get(timeout=60) == "ready"
    time.sleep(0.1)  # let it block
    os.kill(p.pid, signal.SIGKILL)
    p.join(60)
    for i in range(4):
        q.put(i, timeout=5)
    with pytest.raises(queue.Full):
        q.put(4, timeout=0.1)
    assert [q.get(timeout=5) for _ in range(4)] == [0, 1, 2, 3]


def test_queue_handles_travel_through_a_pipe():
    """A queue pickled outside process start-up (through a Pipe): its fd
    goes through multiprocessing's resource sharer."""
    q = shmring.Queue()
    a, b = shmring.Pipe()
    a.send(q)
    q2 = b.recv()
    q2.put("via pipe")
    assert q.get(timeout=5) == "via pipe"


def test_watchdog_interrupts_a_hang():
    """The suite's watchdog (SIGALRM) gets a blocked get out, as Ctrl-C."""
    q = shmring.Queue()
    signal.setitimer(signal.ITIMER_REAL, 0.2)
    with pytest.raises(Hung):
        q.get()


def test_a_queue_uses_memory_only_for_the_slots_messages_reach():
    """A default Queue reserves 1024 slots of 4 MiB (4 GiB of address
    space), as docs/python.md says, but commits memory only as messages
    land: its memfd has allocated little at creation, and about a message's
    size per 1 MiB message put."""

    def allocated(q):
        fd = q._reduce_args()[4]
        return os.fstat(fd).st_blocks * 512

    q = shmring.Queue()
    before = allocated(q)
    assert before < 64 << 20, before
    for _ in range(4):
        q.put(bytes(1 << 20))
    after = allocated(q)
    assert (3 << 20) <= after - before < (16 << 20), (before, after)
    for _ in range(4):
        assert len(q.get()) == 1 << 20
    q.close()


@pytest.mark.parametrize("case", ["get", "put", "recv", "poll"])
def test_close_from_another_thread_stops_a_blocked_call(case):
    """close() by another thread ends a call blocked on the same handle
    with the handle's closed error; the call does not re-attach and go on
    waiting."""
    import threading

    if case == "get":
        h = shmring.Queue()
        block, exc = h.get, ValueError
    elif case == "put":
        h = shmring.Queue(1)
        h.put(0)
        block, exc = (lambda: h.put(1)), ValueError
    else:
        h, _other = shmring.Pipe()
        block, exc = (h.recv if case == "recv" else (lambda: h.poll(None))), OSError
    started = threading.Event()
    errors = []

    def run():
        started.set()
        try:
            block()
        except BaseException as e:  # noqa: BLE001 (recorded, checked below)
            errors.append(e)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    started.wait()
    time.sleep(0.1)  # let it block (not a timing assertion)
    h.close()
    t.join(20)
    assert not t.is_alive(), "the blocked call went on after close()"
    assert len(errors) == 1 and isinstance(errors[0], exc), errors
