"""Shared state and synchronisation: multiprocessing's ``Value``, ``Array``,
``Lock``, ``RLock``, ``Condition``, ``Event``, ``Semaphore``,
``BoundedSemaphore``, ``Barrier`` and ``Manager().dict()`` / ``.list()``,
over shmring's shared memory.

Every object lives in an anonymous segment of the Rust library (a sealed
memfd): nothing is ever created in ``/dev/shm``. An object passed to a
``multiprocessing.Process`` travels the way multiprocessing's own objects
do: inherited as is under ``fork``; under ``spawn`` and ``forkserver`` its
descriptor is pickled with ``multiprocessing.reduction.DupFd`` and the
child re-opens the segment with the library's ``from_fd``, which checks its
header, kind and type. (Pickled outside process creation, e.g. into a
queue, the descriptor goes through multiprocessing's resource sharer,
once.)

Locks are robust: when a process (or thread) dies holding a ``Lock`` or
``RLock``, the next ``acquire`` takes the lock over, returns True with the
lock held, and issues an :class:`OwnerDiedWarning`.

Blocking calls release the GIL and wait in slices of 20 ms, running the
signal handlers in between: Ctrl-C interrupts them with
``KeyboardInterrupt``.
"""

import ctypes
import io
import mmap
import os
import pickle
import threading
from multiprocessing.reduction import DupFd

from . import _shmring

__all__ = [
    "OwnerDiedWarning",
    "Value",
    "RawValue",
    "Array",
    "RawArray",
    "Synchronized",
    "SynchronizedArray",
    "SynchronizedString",
    "Lock",
    "RLock",
    "Condition",
    "Event",
    "Semaphore",
    "BoundedSemaphore",
    "Barrier",
    "Manager",
    "SharedDict",
    "SharedList",
]


class OwnerDiedWarning(RuntimeWarning):
    """Issued by ``acquire`` (and ``Condition.wait``, which re-acquires)
    when the previous owner of a shmring ``Lock`` or ``RLock`` died holding
    it: a process killed (even with ``kill -9``) or a thread that ended.

    The lock is held by the caller when the warning is issued, and stays
    held even when warnings are turned into errors (``-W error``): then
    the caller gets the exception with the lock held and should
    ``release()`` it. The data the lock guards may be half-updated: check
    it before going on. ``warnings.catch_warnings(record=True)`` or
    ``pytest.warns(OwnerDiedWarning)`` observe it.
    """


# ---------------------------------------------------------------------------
# Value and Array

_typecode_to_type = {
    "c": ctypes.c_char,
    "u": ctypes.c_wchar,
    "b": ctypes.c_byte,
    "B": ctypes.c_ubyte,
    "h": ctypes.c_short,
    "H": ctypes.c_ushort,
    "i": ctypes.c_int,
    "I": ctypes.c_uint,
    "l": ctypes.c_long,
    "L": ctypes.c_ulong,
    "q": ctypes.c_longlong,
    "Q": ctypes.c_ulonglong,
    "f": ctypes.c_float,
    "d": ctypes.c_double,
    "?": ctypes.c_bool,
}

_SIGNED = "bhilq"
_FLOAT = "fd"
_UNSIGNED = "cuBHILQ?"


def _ctype_of(typecode_or_type):
    """The ctypes simple type of a typecode (``'i'``) or a ctypes type
    (``ctypes.c_int``)."""
    if isinstance(typecode_or_type, str):
        try:
            return _typecode_to_type[typecode_or_type]
        except KeyError:
            raise TypeError(
                "bad typecode %r (must be one of %s)"
                % (typecode_or_type, " ".join(sorted(_typecode_to_type)))
            ) from None
    code = getattr(typecode_or_type, "_type_", None)
    if (
        isinstance(typecode_or_type, type)
        and issubclass(typecode_or_type, ctypes._SimpleCData)
        and isinstance(code, str)
        and code in _SIGNED + _FLOAT + _UNSIGNED
    ):
        return typecode_or_type
    raise TypeError(
        "shmring stores ctypes integer, float, char and bool types, not %r"
        % (typecode_or_type,)
    )


def _storage(ctype):
    """The Rust storage type of a ctypes simple type: ``"i4"``, ``"f8"``…"""
    code = ctype._type_
    kind = "f" if code in _FLOAT else "i" if code in _SIGNED else "u"
    return "%s%d" % (kind, ctypes.sizeof(ctype))


_shm_types = {}


def _shm_type(ctype, length):
    """A subclass of ``ctype`` (``length is None``) or of ``ctype * length``
    whose instances live in a shmring segment and pickle as its
    descriptor (cached)."""
    key = (ctype, length)
    cls = _shm_types.get(key)
    if cls is None:
        if length is None:
            base = ctype
            ns = {"__reduce__": _reduce_raw, "__repr__": _repr_raw_value}
        else:
            base = ctype * length
            ns = {"__reduce__": _reduce_raw}
        ns["__module__"] = __name__
        ns["__doc__"] = "A ctypes %s in a shmring shared-memory segment." % base.__name__
        cls = type(base.__name__, (base,), ns)
        _shm_types[key] = cls
    return cls


def _repr_raw_value(self):
    return "%s(%r)" % (type(self).__bases__[0].__name__, self.value)


def _reduce_raw(self):
    seg = self._shmring_segment
    length = None if not isinstance(self, ctypes.Array) else len(self)
    return (_rebuild_raw, (self._shmring_ctype, length, DupFd(seg.fd)))


def _attach(ctype, length, seg):
    """The ctypes object over the elements of segment ``seg``."""
    mm = mmap.mmap(seg.fd, seg.total_len)  # MAP_SHARED, read-write
    obj = _shm_type(ctype, length).from_buffer(mm, seg.offset)
    # from_buffer keeps the mapping alive; the segment keeps the memfd.
    obj._shmring_segment = seg
    obj._shmring_ctype = ctype
    return obj


def _rebuild_raw(ctype, length, dupfd):
    fd = dupfd.detach()
    try:
        seg = _shmring._CellSegment._from_fd(fd, _storage(ctype), 1 if length is None else length)
    finally:
        os.close(fd)
    return _attach(ctype, length, seg)


def RawValue(typecode_or_type, *args):
    """A ctypes object (``c_int``, ``c_double``, …) in shared memory,
    without a lock: multiprocessing's ``RawValue``. ``args`` initialise it
    as the ctypes constructor does (``RawValue('i', 7)``); the default is
    zero. Read and write it through ``.value``; it supports the buffer
    protocol (``memoryview(v)``)."""
    ctype = _ctype_of(typecode_or_type)
    seg = _shmring._CellSegment(_storage(ctype), 1)
    obj = _attach(ctype, None, seg)
    if args:
        obj.__init__(*args)
    return obj


def RawArray(typecode_or_type, size_or_initializer):
    """A ctypes array in shared memory, without a lock: multiprocessing's
    ``RawArray``. ``size_or_initializer`` is a length (zero-filled) or a
    sequence that gives the length and the values (``bytes`` for ``'c'``).

    It indexes, slices, iterates and has ``len`` like a ctypes array, and
    supports the buffer protocol: ``numpy.frombuffer(a, dtype=...)`` or
    ``numpy.asarray(a)`` is a view of the shared memory, no copy."""
    ctype = _ctype_of(typecode_or_type)
    if isinstance(size_or_initializer, int):
        length, init = size_or_initializer, None
    else:
        init = size_or_initializer
        if not isinstance(init, (bytes, bytearray)):
            init = list(init)
        length = len(init)
    if length < 0:
        raise ValueError("array length must be >= 0")
    seg = _shmring._CellSegment(_storage(ctype), length)
    obj = _attach(ctype, length, seg)
    if init is not None and length:
        obj[:] = init
    return obj


def _lock_for(lock):
    if lock is True or lock is None:
        return RLock()
    if isinstance(lock, (_shmring._Lock, _shmring._RLock)):
        return lock
    raise TypeError("lock must be True, False, or a shmring Lock or RLock, not %r" % (lock,))


def Value(typecode_or_type, *args, lock=True):
    """A value in shared memory with a lock: multiprocessing's ``Value``.

    ``lock=True`` (the default) makes a new shmring ``RLock``; a shmring
    ``Lock`` or ``RLock`` given is used instead; ``lock=False`` returns the
    raw ctypes object (:func:`RawValue`). The wrapper's ``.value`` takes the
    lock for each read and write; ``with v.get_lock(): v.value += 1`` makes
    an update atomic."""
    obj = RawValue(typecode_or_type, *args)
    if lock is False:
        return obj
    return Synchronized(obj, _lock_for(lock))


def Array(typecode_or_type, size_or_initializer, *, lock=True):
    """An array in shared memory with a lock: multiprocessing's ``Array``.

    ``lock`` as for :func:`Value`; ``lock=False`` returns the raw ctypes
    array (:func:`RawArray`). ``get_obj()`` is the ctypes array, which
    supports the buffer protocol: ``numpy.frombuffer(a.get_obj(),
    dtype=...)`` views the shared memory without a copy."""
    obj = RawArray(typecode_or_type, size_or_initializer)
    if lock is False:
        return obj
    lock = _lock_for(lock)
    if isinstance(obj, ctypes.Array) and obj._type_ is ctypes.c_char:
        return SynchronizedString(obj, lock)
    return SynchronizedArray(obj, lock)


class SynchronizedBase:
    """A shared ctypes object with the lock that guards it (what
    :func:`Value` and :func:`Array` return). Accessors take the lock with
    ``self.acquire()`` / ``self.release()`` (bound native methods), as
    multiprocessing's do: cheaper than ``with``."""

    def __init__(self, obj, lock=None):
        self._obj = obj
        self._lock = _lock_for(lock)
        self.acquire = self._lock.acquire
        self.release = self._lock.release

    def __enter__(self):
        return self._lock.__enter__()

    def __exit__(self, *args):
        return self._lock.__exit__(*args)

    def __reduce__(self):
        return (type(self), (self._obj, self._lock))

    def get_obj(self):
        """The raw ctypes object (supports the buffer protocol)."""
        return self._obj

    def get_lock(self):
        """The lock (a shmring ``RLock`` unless another was given)."""
        return self._lock

    def __repr__(self):
        return "<%s wrapper for %s>" % (type(self).__name__, self._obj)


def _locked_property(attr, doc):
    """A property of the wrapped object read and written under the lock
    (with the bound ``acquire`` / ``release``, as multiprocessing's
    accessors)."""

    def get(self):
        self.acquire()
        try:
            return getattr(self._obj, attr)
        finally:
            self.release()

    def set(self, v):
        self.acquire()
        try:
            setattr(self._obj, attr, v)
        finally:
            self.release()

    return property(get, set, doc=doc)


class Synchronized(SynchronizedBase):
    """A shared value with its lock: ``.value`` reads and writes under the
    lock."""

    value = _locked_property("value", "The value (read under the lock).")


class SynchronizedArray(SynchronizedBase):
    """A shared array with its lock: indexing and slicing under the lock."""

    def __len__(self):
        return len(self._obj)

    def __getitem__(self, i):
        self.acquire()
        try:
            return self._obj[i]
        finally:
            self.release()

    def __setitem__(self, i, value):
        self.acquire()
        try:
            self._obj[i] = value
        finally:
            self.release()

    def __iter__(self):
        return iter(self[:])


class SynchronizedString(SynchronizedArray):
    """A shared ``'c'`` array with its lock, with ``.value`` (up to the
    first NUL) and ``.raw`` (every byte) as multiprocessing's."""

    value = _locked_property("value", "The bytes up to the first NUL.")
    raw = _locked_property("raw", "Every byte.")


# ---------------------------------------------------------------------------
# Locks and primitives


def _rebuild_native(cls, dupfd, *args):
    fd = dupfd.detach()
    try:
        return cls(*args, _fd=fd)
    finally:
        os.close(fd)


class Lock(_shmring._Lock):
    """A lock shared by processes: multiprocessing's ``Lock``.

    ``acquire(block=True, timeout=None)`` → bool, ``release()``, and the
    context manager. Unlike multiprocessing's, the lock belongs to the
    thread that took it: only that thread releases it (another gets
    ``RuntimeError``), which is what lets a dead owner be detected: the
    next acquirer takes the lock over and gets an
    :class:`OwnerDiedWarning`.
    """

    def __reduce__(self):
        return (_rebuild_native, (type(self), DupFd(self._fd)))

    def __repr__(self):
        state = "locked" if self._is_locked() else "unlocked"
        return "<shmring.Lock(%s)>" % state


class RLock(_shmring._RLock):
    """A re-entrant lock shared by processes: multiprocessing's ``RLock``.

    The thread that holds it may take it again; it is free once every
    ``acquire`` has been matched by a ``release``. A dead owner is handled
    as for :class:`Lock`.
    """

    def __reduce__(self):
        return (_rebuild_native, (type(self), DupFd(self._fd)))

    def __repr__(self):
        return "<shmring.RLock(count=%d, owned=%s)>" % (self._depth(), self._is_owned())


class Event(_shmring._Event):
    """An event shared by processes: multiprocessing's ``Event``:
    ``set()``, ``clear()``, ``is_set()``, ``wait(timeout=None)`` → the
    flag."""

    def __reduce__(self):
        return (_rebuild_native, (type(self), DupFd(self._fd)))

    def __repr__(self):
        return "<shmring.Event(%s)>" % ("set" if self.is_set() else "unset")


class Semaphore(_shmring._Semaphore):
    """A counting semaphore shared by processes: multiprocessing's
    ``Semaphore(value=1)``: ``acquire(block=True, timeout=None)`` → bool,
    ``release()``, ``get_value()``, the context manager. Permits are not
    owned: a process that dies holding some does not give them back."""

    def __new__(cls, value=1, *, _fd=None):
        return super().__new__(cls, value, False, _fd=_fd)

    def __reduce__(self):
        return (_rebuild_native, (type(self), DupFd(self._fd)))

    def __repr__(self):
        return "<shmring.%s(value=%d)>" % (type(self).__name__, self.get_value())


class BoundedSemaphore(_shmring._Semaphore):
    """A semaphore that refuses to be released above its start value
    (``ValueError``): multiprocessing's ``BoundedSemaphore(value=1)``."""

    def __new__(cls, value=1, *, _fd=None):
        return super().__new__(cls, value, True, _fd=_fd)

    def __reduce__(self):
        return (_rebuild_native, (type(self), DupFd(self._fd)))

    def __repr__(self):
        return "<shmring.BoundedSemaphore(value=%d)>" % self.get_value()


def _rebuild_condition(lock, dupfd):
    fd = dupfd.detach()
    try:
        native = _shmring._Condition(_fd=fd)
    finally:
        os.close(fd)
    return Condition(lock, _native=native)


class Condition:
    """A condition variable shared by processes: multiprocessing's
    ``Condition(lock=None)``; the lock is a shmring ``Lock`` or ``RLock``
    (a new ``RLock`` by default).

    ``wait(timeout=None)`` releases the lock, waits for a notify, takes the
    lock back and returns False only on timeout; ``wait_for(predicate,
    timeout=None)``, ``notify(n=1)``, ``notify_all()``, ``acquire``,
    ``release`` and the context manager are as in ``threading``.
    """

    def __init__(self, lock=None, *, _native=None):
        if lock is None:
            lock = RLock()
        if not isinstance(lock, (_shmring._Lock, _shmring._RLock)):
            raise TypeError("a shmring Condition needs a shmring Lock or RLock, not %r" % (lock,))
        self._lock = lock
        self._cond = _native if _native is not None else _shmring._Condition()
        self.acquire = lock.acquire
        self.release = lock.release

    def __enter__(self):
        return self._lock.__enter__()

    def __exit__(self, *args):
        return self._lock.__exit__(*args)

    def __reduce__(self):
        return (_rebuild_condition, (self._lock, DupFd(self._cond._fd)))

    def __repr__(self):
        return "<shmring.Condition(%r)>" % (self._lock,)

    def wait(self, timeout=None):
        """Releases the lock (every level of an RLock), waits until
        notified or ``timeout`` seconds pass, takes the lock back; False on
        timeout."""
        return self._cond.wait(self._lock, timeout)

    def wait_for(self, predicate, timeout=None):
        """Waits until ``predicate()`` is true (checked under the lock);
        returns its last value (false on timeout)."""
        endtime = None
        waittime = timeout
        result = predicate()
        while not result:
            if waittime is not None:
                if endtime is None:
                    endtime = _monotonic() + waittime
                else:
                    waittime = endtime - _monotonic()
                    if waittime <= 0:
                        break
            self.wait(waittime)
            result = predicate()
        return result

    def notify(self, n=1):
        """Wakes up to ``n`` waiters; the caller must hold the lock."""
        self._cond.notify(self._lock, n)

    def notify_all(self):
        """Wakes every waiter; the caller must hold the lock."""
        self._cond.notify_all(self._lock)


def _monotonic():
    import time

    return time.monotonic()


class Barrier(threading.Barrier):
    """A barrier for ``parties`` processes: multiprocessing's
    ``Barrier(parties, action=None, timeout=None)``, with every part of
    ``threading.Barrier``: ``wait(timeout=None)`` → an index in
    ``range(parties)``, ``abort()``, ``reset()``, ``parties``,
    ``n_waiting``, ``broken``, and ``threading.BrokenBarrierError`` when
    the barrier is broken (a timeout, an abort, a reset, a failing
    action).

    As multiprocessing does, it is ``threading.Barrier``'s algorithm over a
    shared :class:`Condition` and two shared integers (the Rust ``Barrier``
    has no broken state, so abort, reset and breaking on timeout would not
    map). ``action`` runs in the process whose arrival trips the barrier;
    under ``spawn`` and ``forkserver`` it must be picklable.
    """

    def __init__(self, parties, action=None, timeout=None):
        if parties < 1:
            raise ValueError("parties must be >= 1")
        state = RawArray("i", 2)
        self.__setstate__((parties, action, timeout, Condition(), state))
        self._state = 0
        self._count = 0

    def __setstate__(self, state):
        (self._parties, self._action, self._timeout, self._cond, self._array) = state

    def __getstate__(self):
        return (self._parties, self._action, self._timeout, self._cond, self._array)

    @property
    def _state(self):
        return self._array[0]

    @_state.setter
    def _state(self, value):
        self._array[0] = value

    @property
    def _count(self):
        return self._array[1]

    @_count.setter
    def _count(self, value):
        self._array[1] = value

    def __repr__(self):
        return "<shmring.Barrier(parties=%d, n_waiting=%d, broken=%s)>" % (
            self.parties,
            self.n_waiting,
            self.broken,
        )


# ---------------------------------------------------------------------------
# Manager: dict and list without a server

_KEY_PROTOCOL = 4
_VALUE_PROTOCOL = 5 if pickle.HIGHEST_PROTOCOL >= 5 else 4


def _dumps_key(obj):
    f = io.BytesIO()
    p = pickle.Pickler(f, _KEY_PROTOCOL)
    # No memo: equal keys pickle to equal bytes whether or not their parts
    # are shared objects.
    p.fast = True
    p.dump(obj)
    return f.getvalue()


def _key(k):
    """(lookup bytes, original-key bytes or None) of a dict key."""
    hash(k)  # unhashable keys are refused as by dict
    t = type(k)
    if t is bool:
        norm = int(k)
    elif t is float and k.is_integer():
        norm = int(k)
    else:
        norm = k
    kb = _dumps_key(norm)
    if norm is k:
        return kb, None
    return kb, _dumps_key(k)


def _dumps(v):
    return pickle.dumps(v, _VALUE_PROTOCOL)


_loads = pickle.loads

_MISSING = object()


def _rebuild_dict(map_fd, tickets_fd):
    fds = (map_fd.detach(), tickets_fd.detach())
    try:
        native = _shmring._SharedDict(_fds=fds)
    finally:
        for fd in fds:
            os.close(fd)
    return SharedDict(_native=native)


class SharedDict:
    """A dict in shared memory, what ``Manager().dict()`` returns; no
    server process: every process that has it reads and writes the shared
    memory itself (the Rust ``SharedMap``).

    Keys and values are pickled. Keys are found by their pickled bytes,
    after normalising numbers: ``1``, ``1.0`` and ``True`` are one key, as
    in a dict (the first one stored is kept). Other keys that are equal in
    Python but pickle differently are different keys here: ``(1, 2)`` and
    ``(1.0, 2)``, ``frozenset``s built in different orders, instances of
    ``int`` subclasses. Iteration is in insertion order.

    Each call is one atomic step across processes (``d[k] = v``,
    ``setdefault``, ``pop``, ``popitem``, ``clear``; ``len``, ``items``,
    ``copy`` see one consistent snapshot); ``update`` stores its keys one
    by one. As with a manager's proxy, values come back as copies:
    ``d[k].append(x)`` changes a copy.
    """

    def __init__(self, *args, _native=None, **kwargs):
        self._d = _native if _native is not None else _shmring._SharedDict()
        if args or kwargs:
            self.update(*args, **kwargs)

    def __reduce__(self):
        mfd, tfd = self._d._fds
        return (_rebuild_dict, (DupFd(mfd), DupFd(tfd)))

    def __getitem__(self, key):
        r = self._d.get(_key(key)[0])
        if r is None:
            raise KeyError(key)
        return _loads(r[1])

    def __setitem__(self, key, value):
        kb, orig = _key(key)
        self._d.set(kb, orig, _dumps(value))

    def __delitem__(self, key):
        if self._d.pop(_key(key)[0]) is None:
            raise KeyError(key)

    def __contains__(self, key):
        try:
            kb = _key(key)[0]
        except TypeError:
            return False
        return self._d.contains(kb)

    def __len__(self):
        return len(self._d)

    def __iter__(self):
        return iter(self.keys())

    def _items(self):
        return [
            (_loads(o if o is not None else k), v) for k, o, v in self._d.items()
        ]

    def keys(self):
        """The keys, in insertion order (a list: a snapshot)."""
        return [k for k, _ in self._items()]

    def values(self):
        """The values, in insertion order (a list: a snapshot)."""
        return [_loads(v) for _, v in self._items()]

    def items(self):
        """The (key, value) pairs, in insertion order (a list: a
        snapshot)."""
        return [(k, _loads(v)) for k, v in self._items()]

    def get(self, key, default=None):
        """``d[key]`` if there, else ``default``."""
        r = self._d.get(_key(key)[0])
        return default if r is None else _loads(r[1])

    def pop(self, key, default=_MISSING):
        """Removes ``key`` and returns its value (``default``, or
        ``KeyError``, when absent)."""
        v = self._d.pop(_key(key)[0])
        if v is None:
            if default is _MISSING:
                raise KeyError(key)
            return default
        return _loads(v)

    def popitem(self):
        """Removes and returns the last inserted (key, value) pair
        (``KeyError`` when empty)."""
        r = self._d.popitem()
        if r is None:
            raise KeyError("popitem(): dictionary is empty")
        k, o, v = r
        return _loads(o if o is not None else k), _loads(v)

    def setdefault(self, key, default=None):
        """``d[key]``, storing ``default`` first if absent (one atomic
        step)."""
        kb, orig = _key(key)
        return _loads(self._d.setdefault(kb, orig, _dumps(default)))

    def update(self, other=(), **kwargs):
        """Stores every pair of ``other`` (a mapping or pairs) and of the
        keyword arguments, one by one."""
        if hasattr(other, "keys"):
            for k in other.keys():
                self[k] = other[k]
        else:
            for k, v in other:
                self[k] = v
        for k, v in kwargs.items():
            self[k] = v

    def clear(self):
        """Removes every key (one atomic step)."""
        self._d.clear()

    def copy(self):
        """A plain ``dict`` of one consistent snapshot."""
        return dict(self.items())

    def __eq__(self, other):
        if isinstance(other, SharedDict):
            other = other.copy()
        return self.copy() == other

    __hash__ = None

    def __repr__(self):
        return repr(self.copy())


def _rebuild_list(dupfd):
    return SharedList(_native=_rebuild_native(_shmring._SharedList, dupfd))


class SharedList:
    """A list in shared memory, what ``Manager().list()`` returns; no
    server process (the Rust ``SharedList``). Items are pickled.

    ``append``, ``extend`` (all items at once), ``insert``, ``pop``,
    ``reverse``, ``sort``, ``clear``, ``l[i] = v`` and ``del l[i]`` are
    each one atomic step across processes; ``sort`` compares the items as
    Python objects (with ``key`` and ``reverse`` as ``list.sort``) under
    the list's writer lock. ``remove(x)`` and negative indices first look
    at the list, then act on a position: atomic only if nobody changes the
    list in between. Values come back as copies, as from a manager's
    proxy.
    """

    def __init__(self, sequence=(), *, _native=None):
        self._l = _native if _native is not None else _shmring._SharedList()
        if sequence:
            self.extend(sequence)

    def __reduce__(self):
        return (_rebuild_list, (DupFd(self._l._fd),))

    def __len__(self):
        return len(self._l)

    def _index(self, i, n=None):
        if not isinstance(i, int):
            i = i.__index__()
        if i < 0:
            i += len(self._l) if n is None else n
            if i < 0:
                raise IndexError("list index out of range")
        return i

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [_loads(b) for b in self._l.to_list()[i]]
        b = self._l.get(self._index(i))
        if b is None:
            raise IndexError("list index out of range")
        return _loads(b)

    def __setitem__(self, i, value):
        if isinstance(i, slice):
            raise TypeError("shmring.SharedList does not support slice assignment")
        self._l.set(self._index(i), _dumps(value))

    def __delitem__(self, i):
        if isinstance(i, slice):
            raise TypeError("shmring.SharedList does not support slice deletion")
        self._l.remove_at(self._index(i))

    def __iter__(self):
        return iter(self[:])

    def __contains__(self, x):
        return x in self[:]

    def append(self, x):
        """Appends ``x``."""
        self._l.append(_dumps(x))

    def extend(self, iterable):
        """Appends every item, as one atomic step."""
        self._l.extend([_dumps(x) for x in iterable])

    def __iadd__(self, iterable):
        self.extend(iterable)
        return self

    def __add__(self, other):
        return self[:] + list(other)

    def insert(self, i, x):
        """Inserts ``x`` before position ``i`` (clamped as by
        ``list.insert``)."""
        n = len(self._l)
        if i < 0:
            i = max(0, i + n)
        self._l.insert(min(i, n), _dumps(x))

    def pop(self, i=-1):
        """Removes and returns the item at ``i`` (the last by default)."""
        if i == -1:
            b = self._l.pop_last()
            if b is None:
                raise IndexError("pop from empty list")
            return _loads(b)
        return _loads(self._l.remove_at(self._index(i)))

    def remove(self, x):
        """Removes the first item equal to ``x`` (``ValueError`` if none)."""
        self._l.remove_at(self.index(x))

    def index(self, x, start=0, stop=None):
        """The position of the first item equal to ``x``."""
        return self[:].index(x, start, *(() if stop is None else (stop,)))

    def count(self, x):
        """How many items equal ``x``."""
        return self[:].count(x)

    def reverse(self):
        """Reverses the list, as one atomic step."""
        self._l.reverse()

    def sort(self, *, key=None, reverse=False):
        """Sorts the list (stable), as one atomic step under the list's
        writer lock; items compare as Python objects. Changing this list
        from ``key`` or a comparison raises ``ValueError`` (the list is
        left as it was)."""
        self._l.sort(_loads, key, reverse)

    def clear(self):
        """Removes every item (one atomic step)."""
        self._l.clear()

    def copy(self):
        """A plain ``list`` of one consistent snapshot."""
        return self[:]

    def __eq__(self, other):
        if isinstance(other, SharedList):
            other = other[:]
        return self[:] == other

    __hash__ = None

    def __repr__(self):
        return repr(self[:])


class Manager:
    """multiprocessing's ``Manager()``, without a server process:
    ``dict()`` and ``list()`` make :class:`SharedDict` and
    :class:`SharedList` in shared memory, and the other factories make the
    module's own objects (``Value``, ``Array``, ``Lock``, ``RLock``,
    ``Condition``, ``Event``, ``Semaphore``, ``BoundedSemaphore``,
    ``Barrier``, and ``Queue`` / ``JoinableQueue`` when the queues area
    has them). ``start()``, ``shutdown()`` and the context manager exist so
    that ``with Manager() as manager:`` works; they do nothing, and objects
    outlive the manager (each lives as long as a process holds it).
    ``Namespace`` and ``register`` are not provided.
    """

    def __init__(self, *args, **kwargs):
        pass

    def start(self, *args, **kwargs):
        """Does nothing: there is no server to start."""

    def shutdown(self):
        """Does nothing: there is no server to stop."""

    def join(self, timeout=None):
        """Does nothing: there is no server to wait for."""

    def __enter__(self):
        return self

    def __exit__(self, *args):
        self.shutdown()

    def dict(self, *args, **kwargs):
        """A new :class:`SharedDict`, filled as ``dict(*args, **kwargs)``."""
        return SharedDict(*args, **kwargs)

    def list(self, sequence=()):
        """A new :class:`SharedList` holding ``sequence``'s items."""
        return SharedList(sequence)

    def Value(self, typecode, value, lock=True):
        """As :func:`shmring.Value`."""
        return Value(typecode, value, lock=lock)

    def Array(self, typecode, sequence, lock=True):
        """As :func:`shmring.Array`."""
        return Array(typecode, sequence, lock=lock)

    def Lock(self):
        """A new :class:`Lock`."""
        return Lock()

    def RLock(self):
        """A new :class:`RLock`."""
        return RLock()

    def Condition(self, lock=None):
        """A new :class:`Condition`."""
        return Condition(lock)

    def Event(self):
        """A new :class:`Event`."""
        return Event()

    def Semaphore(self, value=1):
        """A new :class:`Semaphore`."""
        return Semaphore(value)

    def BoundedSemaphore(self, value=1):
        """A new :class:`BoundedSemaphore`."""
        return BoundedSemaphore(value)

    def Barrier(self, parties, action=None, timeout=None):
        """A new :class:`Barrier`."""
        return Barrier(parties, action, timeout)

    def Queue(self, maxsize=0):
        """``shmring.Queue(maxsize)`` (from the queues area)."""
        from . import queues

        return queues.Queue(maxsize)

    def JoinableQueue(self, maxsize=0):
        """``shmring.JoinableQueue(maxsize)`` (from the queues area)."""
        from . import queues

        return queues.JoinableQueue(maxsize)
