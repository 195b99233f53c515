"""Handles inherited into a new pid namespace (a child forked after
``unshare(CLONE_NEWPID)``) are refused there with ``OSError``, every kind
alike (docs/python.md): their lock owners are pids, which mean nothing from
another namespace. Values and arrays (plain memory) keep working. Needs
root (``CAP_SYS_ADMIN``) for ``unshare``; skipped without it."""

import ctypes
import json
import os

import pytest

import shmring

CLONE_NEWPID = 0x20000000


def _in_new_pid_namespace(body):
    """Runs ``body()`` in a grandchild forked into a new pid namespace and
    returns what it returned (JSON), or skips when ``unshare`` is refused."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            os.close(r)
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.unshare(CLONE_NEWPID) != 0:
                os.write(w, json.dumps({"skip": os.strerror(ctypes.get_errno())}).encode())
            else:
                inner = os.fork()
                if inner == 0:
                    try:
                        out = json.dumps({"out": body()}).encode()
                    except BaseException as e:  # noqa: BLE001 - reported to the parent
                        out = json.dumps({"error": repr(e)}).encode()
                    os.write(w, out)
                    os._exit(0)
                _, status = os.waitpid(inner, 0)
                code = os.waitstatus_to_exitcode(status)
        except BaseException:  # noqa: BLE001
            code = 3
        finally:
            os._exit(code)
    os.close(w)
    chunks = []
    while True:
        b = os.read(r, 65536)
        if not b:
            break
        chunks.append(b)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    got = json.loads(b"".join(chunks) or b"{}")
    if "skip" in got:
        pytest.skip("unshare(CLONE_NEWPID) refused: " + got["skip"])
    assert "error" not in got, got
    return got["out"]


def _outcome(call):
    """What a call did: "ok", or the exception's type name."""
    try:
        call()
    except BaseException as e:  # noqa: BLE001 - PanicException is a BaseException
        return type(e).__name__
    return "ok"


def test_inherited_handles_are_refused_with_oserror_in_a_new_pid_namespace():
    lock, rlock = shmring.Lock(), shmring.RLock()
    cond = shmring.Condition()
    event = shmring.Event()
    sem, bsem = shmring.Semaphore(2), shmring.BoundedSemaphore(1)
    barrier = shmring.Barrier(1)
    queue, simple = shmring.Queue(), shmring.SimpleQueue()
    a, b = shmring.Pipe()
    manager = shmring.Manager()
    d, lst = manager.dict(), manager.list()
    d["k"] = 1
    lst.append(1)
    value = shmring.RawValue("i", 7)
    array = shmring.RawArray("d", 4)
    locked_value = shmring.Value("i", 1)

    def body():
        calls = {
            "Lock.acquire": lambda: lock.acquire(timeout=0.1),
            "Lock.release": lock.release,
            "RLock.acquire": lambda: rlock.acquire(False),
            "Condition.notify": lambda: cond.notify(),
            "Condition.wait": lambda: cond.wait(0.01),
            "Event.set": event.set,
            "Event.is_set": event.is_set,
            "Event.wait": lambda: event.wait(0.01),
            "Semaphore.acquire": lambda: sem.acquire(timeout=0.01),
            "Semaphore.release": sem.release,
            "BoundedSemaphore.acquire": lambda: bsem.acquire(False),
            "Barrier.wait": lambda: barrier.wait(0.1),
            "Queue.put": lambda: queue.put(1),
            "Queue.get": lambda: queue.get(timeout=0.1),
            "Queue.get(copy=False)": lambda: queue.get(timeout=0.1, copy=False),
            "SimpleQueue.put": lambda: simple.put(1),
            "Pipe.send": lambda: a.send(1),
            "dict.__getitem__": lambda: d["k"],
            "dict.__setitem__": lambda: d.__setitem__("j", 2),
            "list.append": lambda: lst.append(2),
            "list.__len__": lambda: len(lst),
            "Value.get_lock": lambda: locked_value.get_lock().acquire(timeout=0.1),
        }
        got = {name: _outcome(call) for name, call in calls.items()}
        # Plain memory keeps working.
        value.value += 1
        array[1] = 2.5
        got["RawValue"] = value.value
        got["RawArray"] = array[1]
        return got

    got = _in_new_pid_namespace(body)
    plain = {"RawValue": got.pop("RawValue"), "RawArray": got.pop("RawArray")}
    refused = {name: kind for name, kind in got.items() if kind != "OSError"}
    assert refused == {}, "not refused with OSError: %r" % refused
    assert plain == {"RawValue": 8, "RawArray": 2.5}
    # Seen here too (shared memory), and the parent's handles still work.
    assert value.value == 8 and array[1] == 2.5
    assert lock.acquire(timeout=1)
    lock.release()
    assert d["k"] == 1 and len(lst) == 1
    queue.put("here")
    assert queue.get(timeout=5) == "here"
