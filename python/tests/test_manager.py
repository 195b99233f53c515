"""Manager().dict() and .list() over the Rust SharedMap / SharedList:
the seed's program under every start method, dict and list semantics,
writers in several processes."""

import os
import pickle
import subprocess
import sys

import pytest

import shmring
from state_helpers import (  # noqa: F401  (fixtures)
    METHODS,
    append_many,
    ctx,
    dict_writer,
    fill_dict_list,
    is_memfd,
    no_dev_shm_left,
    run,
    watchdog,
)

SEEDS = os.path.join(os.path.dirname(__file__), "seeds")

SEED_OUTPUT = """\
MainProcess dict: {}
MainProcess list: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
MainProcess dict: {1: '1', '2': 2, 0.25: None}
MainProcess list: [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]
"""


@pytest.mark.parametrize("method", METHODS)
def test_seed_manager_dict_list(method):
    out = subprocess.run(
        [sys.executable, os.path.join(SEEDS, "manager_dict_list.py"), method],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout
    assert out == SEED_OUTPUT


def test_dict_list_changed_by_child(ctx):
    with shmring.Manager() as manager:
        d = manager.dict()
        l = manager.list(range(10))
        run(ctx, fill_dict_list, d, l)
        assert repr(d) == "{1: '1', '2': 2, 0.25: None}"
        assert str(l) == "[9, 8, 7, 6, 5, 4, 3, 2, 1, 0]"


def test_dict_semantics():
    d = shmring.Manager().dict({"a": 1}, b=2)
    assert d == {"a": 1, "b": 2}
    d["c"] = [1, 2]
    assert d["c"] == [1, 2]
    assert "c" in d and "z" not in d and [] not in d
    assert len(d) == 3
    assert d.keys() == ["a", "b", "c"]
    assert d.values() == [1, 2, [1, 2]]
    assert d.items() == [("a", 1), ("b", 2), ("c", [1, 2])]
    assert list(d) == ["a", "b", "c"]
    assert d.get("z") is None and d.get("z", 5) == 5 and d.get("a") == 1
    d["a"] = 10  # keeps its place
    assert d.keys() == ["a", "b", "c"] and d["a"] == 10
    del d["b"]
    with pytest.raises(KeyError):
        del d["b"]
    with pytest.raises(KeyError):
        d["b"]
    assert d.pop("a") == 10 and d.pop("a", None) is None
    with pytest.raises(KeyError):
        d.pop("a")
    assert d.setdefault("s", 1) == 1 and d.setdefault("s", 2) == 1
    d.update([("x", 1)], y=2)
    d.update({"z": 3})
    assert d.popitem() == ("z", 3)
    c = d.copy()
    assert type(c) is dict and c == {"c": [1, 2], "s": 1, "x": 1, "y": 2}
    assert repr(d) == repr(c)
    d.clear()
    assert len(d) == 0 and repr(d) == "{}"
    with pytest.raises(KeyError):
        d.popitem()
    with pytest.raises(TypeError):
        d[[1]] = 1  # unhashable, as in a dict
    with pytest.raises(TypeError):
        hash(d)


def test_dict_numeric_keys_are_normalised():
    d = shmring.SharedDict()
    d[1.0] = "float first"
    d[1] = "int"
    d[True] = "bool"
    assert len(d) == 1
    assert d.keys() == [1.0] and type(d.keys()[0]) is float  # first key kept, like dict
    assert d[1] == d[1.0] == d[True] == "bool"
    d[0.5] = "half"
    d[2] = "two"
    assert 2.0 in d and d[2.0] == "two"
    plain = {1.0: 0}
    plain[1] = plain[True] = "bool"
    plain[0.5], plain[2] = "half", "two"
    assert repr(d) == repr(plain)


def test_list_semantics():
    l = shmring.SharedList([3, 1, 2])
    assert len(l) == 3 and l[0] == 3 and l[-1] == 2 and l[1:] == [1, 2] and l[::-1] == [2, 1, 3]
    with pytest.raises(IndexError):
        l[3]
    with pytest.raises(IndexError):
        l[-4]
    l.append("x")
    l.extend([None, (1, 2)])
    l += [5]
    assert l == [3, 1, 2, "x", None, (1, 2), 5]
    assert l.pop() == 5 and l.pop(0) == 3 and l.pop(-2) == None  # noqa: E711
    assert l == [1, 2, "x", (1, 2)]
    l.insert(0, "first")
    l.insert(100, "last")
    l.insert(-1, "before last")
    assert l == ["first", 1, 2, "x", (1, 2), "before last", "last"]
    l.remove("x")
    with pytest.raises(ValueError):
        l.remove("x")
    assert l.index(2) == 2 and l.count(1) == 1 and (1, 2) in l
    l[0] = "FIRST"
    del l[-1]
    assert l == ["FIRST", 1, 2, (1, 2), "before last"]
    l.reverse()
    assert l[0] == "before last"
    l.clear()
    with pytest.raises(IndexError):
        l.pop()
    assert repr(l) == "[]" and l + [1] == [1]


def test_list_sort_as_python_objects():
    l = shmring.SharedList([3, -1, 2.5, 10, 0])
    l.sort()
    assert l == [-1, 0, 2.5, 3, 10]  # as numbers, not as pickled bytes
    l.sort(reverse=True)
    assert l == [10, 3, 2.5, 0, -1]
    words = shmring.SharedList(["bb", "a", "ccc", "dd"])
    words.sort(key=len)  # stable
    assert words == ["a", "bb", "dd", "ccc"]
    words.sort(key=len, reverse=True)
    assert words == ["ccc", "bb", "dd", "a"]
    mixed = shmring.SharedList([2, "a", 1])
    with pytest.raises(TypeError):
        mixed.sort()
    assert mixed == [2, "a", 1]  # unchanged after a failed comparison


def test_containers_are_memfds_and_pickle():
    d = shmring.SharedDict({"k": 1})
    l = shmring.SharedList([1])
    assert all(is_memfd(fd) for fd in d._d._fds) and is_memfd(l._l._fd)
    d2 = pickle.loads(pickle.dumps(d))  # through the resource sharer
    l2 = pickle.loads(pickle.dumps(l))
    d2["new"] = 2
    l2.append(2)
    assert d == {"k": 1, "new": 2} and l == [1, 2]


def test_writers_in_several_processes(ctx):
    d = shmring.SharedDict()
    l = shmring.SharedList()
    ps = [ctx.Process(target=append_many, args=(l, t, 50)) for t in range(3)]
    ps += [ctx.Process(target=dict_writer, args=(d, t, 30)) for t in range(3)]
    for p in ps:
        p.start()
    for p in ps:
        p.join(60)
        assert p.exitcode == 0
    items = l[:]
    assert sorted(items) == sorted((t, i) for t in range(3) for i in range(50))
    for t in range(3):  # each writer's appends in its own order
        assert [i for tag, i in items if tag == t] == list(range(50))
    assert len(d) == 3 * 30 + 1
    assert d["shared"] in (0, 1, 2)
    assert all(d[(t, i)] == i for t in range(3) for i in range(30))


def test_manager_factories():
    with shmring.Manager() as m:
        assert m.Value("i", 3).value == 3
        assert m.Array("d", [1.0]).get_obj()[0] == 1.0
        assert isinstance(m.Lock(), shmring.Lock) and isinstance(m.RLock(), shmring.RLock)
        assert isinstance(m.Event(), shmring.Event)
        assert isinstance(m.Condition(), shmring.Condition)
        assert m.Semaphore(2).get_value() == 2
        assert isinstance(m.BoundedSemaphore(), shmring.BoundedSemaphore)
        assert m.Barrier(1).wait() == 0
