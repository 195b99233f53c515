"""shmring objects handed to the workers of the standard library's pools
as initializer arguments, the way multiprocessing's own objects travel:
multiprocessing.Pool and concurrent.futures.ProcessPoolExecutor, under
every start method. Each worker re-attaches what it was given."""

import concurrent.futures
import multiprocessing as mp

import pytest

import shmring
from pool_init_helpers import keep, send_on_conn, work
from state_helpers import METHODS, no_dev_shm_left, watchdog  # noqa: F401

N = 12


def _objects():
    q = shmring.Queue()
    parent, child = shmring.Pipe()
    value = shmring.Value("i", 0)
    arr = shmring.Array("q", N)
    lock = shmring.Lock()
    d = shmring.Manager().dict()
    return q, parent, child, value, arr, lock, d


def _check(q, value, arr, d):
    got = sorted(q.get(timeout=30) for _ in range(N))
    assert got == [("task", i) for i in range(N)]
    assert value.value == N
    assert list(arr) == [i * i for i in range(N)]
    assert dict(d) == {i: "w%d" % i for i in range(N)}


@pytest.mark.parametrize("method", METHODS)
def test_multiprocessing_pool_initargs(method):
    q, parent, child, value, arr, lock, d = _objects()
    ctx = mp.get_context(method)
    with ctx.Pool(2, initializer=keep, initargs=(q, child, value, arr, lock, d)) as pool:
        assert sorted(pool.map(work, range(N))) == list(range(N))
        assert pool.apply(send_on_conn, (0,)) is True
    assert parent.recv() == "from the pool"
    _check(q, value, arr, d)


@pytest.mark.parametrize("method", METHODS)
def test_process_pool_executor_initargs(method):
    q, parent, child, value, arr, lock, d = _objects()
    ctx = mp.get_context(method)
    with concurrent.futures.ProcessPoolExecutor(
        2, mp_context=ctx, initializer=keep, initargs=(q, child, value, arr, lock, d)
    ) as ex:
        assert sorted(ex.map(work, range(N))) == list(range(N))
        assert ex.submit(send_on_conn, 0).result(timeout=30) is True
    assert parent.recv() == "from the pool"
    _check(q, value, arr, d)
