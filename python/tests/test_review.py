"""Regression tests for behaviours found broken by probing shmring's
Python API from outside: each test fails on the code before its fix."""

import queue

import pytest

import shmring
from qhelpers import Hung, no_shm_left, watchdog  # noqa: F401


# ------------------------------------------------------------ timeouts


def test_negative_timeout_is_zero_as_in_multiprocessing():
    """multiprocessing treats a negative timeout as 0: `get` takes what
    is there (or raises Empty), `put` puts if there is room, `poll`
    only looks. shmring raised ValueError."""
    q = shmring.Queue(1)
    with pytest.raises(queue.Empty):
        q.get(timeout=-1)
    q.put("a", timeout=-1)
    with pytest.raises(queue.Full):
        q.put("b", timeout=-0.5)
    assert q.get(True, -1) == "a"
    with pytest.raises(ValueError):
        q.get(timeout=float("nan"))

    a, b = shmring.Pipe()
    assert a.poll(-1) is False
    b.send(1)
    assert a.poll(-1) is True
    assert a.recv() == 1

    j = shmring.JoinableQueue()
    j.put(1)
    assert j.join(-1) is False
    j.get()
    j.task_done()
    assert j.join(-1) is True

