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


# ------------------------------------------------------------ SharedList.sort


def test_list_changed_from_its_own_sort_key_raises_valueerror():
    """`sort` holds the list's writer lock while Python compares; a change
    to the same list from `key` (through any handle) reached the Rust
    list's re-entrance panic: a pyo3 PanicException (a BaseException)
    out of `sort`. Now ValueError, as `list.sort` says of a list
    modified during the sort, and the list is left as it was."""
    import pickle

    lst = shmring.Manager().list([3, 1, 2])
    other = pickle.loads(pickle.dumps(lst))  # a second handle, another mapping
    changes = [
        lambda: lst.append(9),
        lambda: other.append(9),
        lambda: lst.insert(0, 9),
        lambda: lst.__setitem__(0, 9),
        lambda: lst.__delitem__(0),
        lambda: lst.pop(),
        lambda: lst.extend([9]),
        lambda: lst.reverse(),
        lambda: lst.clear(),
        lambda: lst.sort(),
    ]
    for change in changes:
        def key(x, change=change):
            change()
            return x

        with pytest.raises(ValueError, match="modified during sort"):
            lst.sort(key=key)
        assert lst[:] == [3, 1, 2]
    # Reading from the key is fine, and the list works afterwards.
    lst.sort(key=lambda x: (len(lst), lst[0], x)[-1])
    assert lst[:] == [1, 2, 3]
    lst.append(4)
    other.sort(reverse=True)
    assert lst[:] == [4, 3, 2, 1]


# ------------------------------------------------------------ huge arrays


def test_array_larger_than_memory_raises_memoryerror():
    """`RawArray('d', 10**12)` (8 TB) preallocated its memfd until the
    machine ran out of memory: the kernel's OOM killer then killed this
    process, or another one. Now MemoryError, before anything is
    allocated. The check runs in a child whose file size limit
    (RLIMIT_FSIZE, which a memfd's allocation obeys) keeps a build
    without it from filling memory: there it fails with OSError."""
    import subprocess
    import sys
    import textwrap

    prog = textwrap.dedent(
        """
        import resource, signal
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 << 20, 64 << 20))
        import shmring
        for make in (lambda: shmring.RawArray('d', 10**12),
                     lambda: shmring.Array('b', 2**50),
                     lambda: shmring.RawArray('i', 2**59)):
            try:
                make()
            except MemoryError:
                print("MemoryError")
            except BaseException as e:
                print("other", type(e).__name__, e)
        print(len(shmring.RawArray('d', 1000)))
        """
    )
    r = subprocess.run([sys.executable, "-c", prog], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["MemoryError"] * 3 + ["1000"], r.stdout + r.stderr
