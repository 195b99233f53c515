"""Value, RawValue, Array, RawArray: multiprocessing's semantics over
shmring segments, changed by children under every start method, viewed by
numpy without a copy."""

import ctypes
import os
import pickle
import subprocess
import sys

import pytest

import shmring
from state_helpers import (  # noqa: F401  (fixtures)
    METHODS,
    ctx,
    fill_with_numpy,
    is_memfd,
    no_dev_shm_left,
    run,
    set_value_and_array,
    watchdog,
)

SEEDS = os.path.join(os.path.dirname(__file__), "seeds")

INT_CODES = "bBhHiIlLqQ"
SAMPLES = {
    "b": -128, "B": 255, "h": -32768, "H": 65535, "i": -(2**31), "I": 2**32 - 1,
    "l": -(2**63), "L": 2**64 - 1, "q": -(2**63), "Q": 2**64 - 1,
    "f": 1.5, "d": 0.1, "c": b"z", "?": True,
}


@pytest.mark.parametrize("code", sorted(SAMPLES))
def test_value_every_typecode(code):
    v = shmring.Value(code, SAMPLES[code])
    assert v.value == SAMPLES[code]
    raw = shmring.RawValue(code)
    assert raw.value == (b"\x00" if code == "c" else 0)
    raw.value = SAMPLES[code]
    assert raw.value == SAMPLES[code]
    assert ctypes.sizeof(raw) == ctypes.sizeof(shmring.state._typecode_to_type[code])


@pytest.mark.parametrize(
    "ctype, value",
    [(ctypes.c_int, 7), (ctypes.c_double, 2.5), (ctypes.c_int64, -5), (ctypes.c_char, b"q"),
     (ctypes.c_bool, True), (ctypes.c_uint8, 200)],
)
def test_value_of_ctypes_type(ctype, value):
    v = shmring.Value(ctype, value)
    assert v.value == value
    assert isinstance(v.get_obj(), ctype)


def test_value_wrapper_api():
    v = shmring.Value("i", 5)
    assert isinstance(v, shmring.Synchronized)
    assert isinstance(v.get_lock(), shmring.RLock)
    with v.get_lock():  # an RLock: .value inside takes it again
        v.value += 1
    with v:
        v.value += 1
    assert v.acquire()
    v.release()
    assert v.value == 7
    assert repr(v) == "<Synchronized wrapper for c_int(7)>"
    assert repr(shmring.RawValue("d", 1.5)) == "c_double(1.5)"


def test_lock_argument():
    lock = shmring.Lock()
    v = shmring.Value("i", 0, lock=lock)
    assert v.get_lock() is lock
    r = shmring.RLock()
    a = shmring.Array("i", 3, lock=r)
    assert a.get_lock() is r
    raw = shmring.Value("i", 3, lock=False)
    assert isinstance(raw, ctypes.c_int) and raw.value == 3
    assert isinstance(shmring.Array("d", 2, lock=False), ctypes.Array)
    import threading

    with pytest.raises(TypeError):
        shmring.Value("i", 0, lock=threading.Lock())


def test_bad_typecodes():
    for bad in ("x", "g", ctypes.c_void_p, ctypes.c_longdouble, int):
        with pytest.raises(TypeError):
            shmring.Value(bad)


def test_array_semantics():
    a = shmring.Array("i", range(10))
    assert isinstance(a, shmring.SynchronizedArray)
    assert len(a) == 10
    assert a[:] == list(range(10))
    assert a[2:5] == [2, 3, 4]
    assert a[::3] == [0, 3, 6, 9]
    assert a[-1] == 9
    a[0] = 42
    a[1:3] = [7, 8]
    assert a[:4] == [42, 7, 8, 3]
    assert list(a) == a[:]
    with pytest.raises(IndexError):
        a[10]
    z = shmring.RawArray("d", 4)
    assert z[:] == [0.0] * 4
    assert len(shmring.RawArray(ctypes.c_short, [1, 2, 3])) == 3


def test_char_array_is_a_string():
    s = shmring.Array("c", b"hello")
    assert isinstance(s, shmring.SynchronizedString)
    assert s.value == b"hello" and s.raw == b"hello"
    assert s[0] == b"h" and s[1:3] == b"el"
    s.value = b"hi"
    assert s.value == b"hi" and s.raw == b"hi\x00lo"
    s[0] = b"H"
    assert s.value == b"Hi"
    big = shmring.Array("c", 8)
    assert big.raw == b"\x00" * 8


def test_segments_are_memfds():
    v = shmring.Value("i")
    a = shmring.RawArray("d", 100)
    assert is_memfd(v.get_obj()._shmring_segment.fd)
    assert is_memfd(a._shmring_segment.fd)
    assert is_memfd(v.get_lock()._fd)


def test_pickle_in_process_shares_memory():
    # Outside process creation the descriptor goes through multiprocessing's
    # resource sharer: the copy maps the same memory.
    a = shmring.Array("q", [1, 2, 3])
    b = pickle.loads(pickle.dumps(a))
    b[0] = 100
    assert a[0] == 100
    assert b.get_lock() is not a.get_lock()
    with b.get_lock():  # the same lock: held through either handle
        assert a.get_lock()._is_owned()
    assert not a.get_lock()._is_owned()


def test_opening_checks_type():
    a = shmring.RawArray("i", 4)
    from multiprocessing.reduction import DupFd

    with pytest.raises(ValueError):  # four elements, not five
        shmring.state._rebuild_raw(ctypes.c_int, 5, DupFd(a._shmring_segment.fd))
    with pytest.raises(ValueError):  # i32 elements, not f64
        shmring.state._rebuild_raw(ctypes.c_double, 4, DupFd(a._shmring_segment.fd))


def test_value_and_array_changed_by_child(ctx):
    num = shmring.Value("d", 0.0)
    arr = shmring.Array("i", range(10))
    run(ctx, set_value_and_array, num, arr)
    assert num.value == 3.1415927
    assert arr[:] == [0, -1, -2, -3, -4, -5, -6, -7, -8, -9]


def test_numpy_views_shared_with_child(ctx):
    np = pytest.importorskip("numpy")
    arr = shmring.Array("d", 1000)
    raw = shmring.RawArray("i", 257)
    mine = np.frombuffer(arr.get_obj(), dtype=np.float64)  # a view, before the child
    assert not mine.flags.owndata
    run(ctx, fill_with_numpy, arr, raw)
    want = np.arange(1000, dtype=np.float64) * 0.5
    assert np.array_equal(mine, want)  # seen through the parent's own view
    assert arr[:] == want.tolist()
    r = np.asarray(raw)
    assert r.dtype == np.int32
    assert r.tobytes() == (np.arange(257, dtype=np.int32) * -3).tobytes()
    # and a write through numpy here is seen by the ctypes side
    mine[3] = -1.25
    assert arr[3] == -1.25


@pytest.mark.parametrize("method", METHODS)
def test_seed_value_lock(method):
    out = subprocess.run(
        [sys.executable, os.path.join(SEEDS, "value_lock.py"), method],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout.splitlines()
    assert out[-1] == "最终变量值: 5"
    # every process saw the value before its own increment: 0..4, in turn
    got = [line.split(": ")[1] for line in out[:-1]]
    assert got == ["0", "1", "1", "2", "2", "3", "3", "4", "4", "5"]
