"""The queues area of shmring: ``Queue``, ``SimpleQueue``, ``JoinableQueue``
and ``Pipe`` with multiprocessing's names and semantics, over lock-free
rings in shared memory (see docs/python.md).

Every queue and pipe lives in anonymous shared memory (a memfd): nothing
is created in ``/dev/shm``, and the memory goes with the last process that
maps it. Handles travel to child processes as multiprocessing's do (as
``Process`` arguments under ``fork``, ``spawn`` and ``forkserver``): pickling
one carries its memfd (through ``multiprocessing.reduction.DupFd``) and the
child maps it again. Each process attaches its own endpoints on first use.
"""

import queue as _queue

from . import _shmring
from ._handles import detach_fd as _detach
from ._handles import dup_fd as _dup
from ._shmring import CorruptedError

__all__ = [
    "Queue",
    "SimpleQueue",
    "JoinableQueue",
    "Pipe",
    "Connection",
    "Full",
    "Empty",
    "CorruptedError",
]

#: Raised by ``put(block=False)`` / ``put(timeout=...)`` on a full queue
#: (the standard library's ``queue.Full``, as multiprocessing raises).
Full = _queue.Full
#: Raised by ``get(block=False)`` / ``get(timeout=...)`` on an empty queue
#: (the standard library's ``queue.Empty``).
Empty = _queue.Empty

#: Objects a queue created with ``maxsize=0`` holds before ``put`` blocks.
DEFAULT_MAXSIZE = 1024
#: The largest pickled object (pickle plus out-of-band buffers), in bytes,
#: that a queue or pipe takes unless told otherwise: 4 MiB.
DEFAULT_MAX_MESSAGE_SIZE = 4 << 20




def _rebuild_queue(cls, maxsize, max_message_size, spin, dup, jdup, name=None):
    if name is not None:
        return _shmring.QueueBase.__new__(
            cls, 0, max_message_size=None, spin=spin, joinable=cls._joinable, name=name
        )
    return cls._attach(maxsize, max_message_size, spin, (_detach(dup), _detach(jdup)))


class Queue(_shmring.QueueBase):
    """A process-shared FIFO queue, as ``multiprocessing.Queue(maxsize)``.

    ``Queue(maxsize=0, *, max_message_size=4 MiB, spin=False)``

    - ``maxsize``: the most objects queued at once; ``0`` (or less) means
      ``DEFAULT_MAXSIZE`` (1024). ``put`` blocks (or raises ``queue.Full``)
      while the queue is full.
    - ``max_message_size``: the largest object, pickled (protocol 5, its
      out-of-band buffers such as numpy arrays' data included), in bytes;
      a larger one raises ``ValueError``. Shared memory of ``maxsize x
      max_message_size`` is reserved (virtual memory; pages are used only
      as messages fill them; messages of 2 MiB or more whose slots would
      keep over 256 MiB resident give their pages back once read).
    - ``spin``: while blocked, busy-poll instead of sleeping (lowest
      latency, one CPU busy per blocked caller).
    - ``name`` (a shmring extension): a queue that separately started
      programs share, ``/dev/shm/<name>``. The first program creates it
      (with its ``maxsize`` and ``max_message_size``), the others open it,
      in any order; one that gives ``maxsize`` or ``max_message_size``
      explicitly must match the queue (``ValueError``). The name stays
      until ``Queue.unlink(name)`` (or ``shmring rm``), across restarts of
      every program: what was put and not taken waits in it.

    Any picklable object can be put; it is pickled at once (mutating it
    after ``put`` does not change what is received, unlike
    multiprocessing's feeder thread). Producers and consumers in any number
    of processes (up to 63 attached endpoints per queue). A queue never
    ends: when every producer has exited (or was killed) ``get`` waits (and
    times out, raising ``queue.Empty``); when every consumer has gone,
    ``put`` still fills the queue up to ``maxsize``.
    """

    __slots__ = ()

    def __new__(cls, maxsize=0, *, max_message_size=None, spin=False, name=None):
        # A named queue that exists already is taken as it is unless a size
        # is given: keep None for "not given".
        if max_message_size is None and name is None:
            max_message_size = DEFAULT_MAX_MESSAGE_SIZE
        return super().__new__(
            cls,
            maxsize,
            max_message_size=max_message_size,
            spin=spin,
            joinable=cls._joinable,
            name=name,
        )

    @staticmethod
    def unlink(name):
        """Removes the name of the queue created with ``name=name`` (a
        shmring extension); programs that have it open keep using it, and
        the memory goes with the last of them. ``FileNotFoundError`` when
        there is no such queue; a name that is not a shmring queue is left
        alone (the error opening it gives)."""
        _shmring.QueueBase._unlink(name)

    _joinable = False

    @classmethod
    def _attach(cls, maxsize, max_message_size, spin, fds):
        """Re-opens a pickled queue in this process (from its memfds)."""
        return _shmring.QueueBase.__new__(
            cls,
            maxsize,
            max_message_size=max_message_size,
            spin=spin,
            joinable=cls._joinable,
            _fds=fds,
        )

    def __reduce__(self):
        maxsize, max_message_size, spin, _joinable, fd, jfd, name = self._reduce_args()
        if name is not None:
            return (_rebuild_queue, (type(self), maxsize, max_message_size, spin, None, None, name))
        return (
            _rebuild_queue,
            (type(self), maxsize, max_message_size, spin, _dup(fd), _dup(jfd)),
        )

    def __repr__(self):
        named = "" if self.name is None else f" name={self.name!r}"
        return (
            f"<shmring.{type(self).__name__}{named} maxsize={self._capacity} qsize={self.qsize()}>"
        )


class SimpleQueue(Queue):
    """As ``multiprocessing.SimpleQueue()``: ``put(obj)``, ``get()``,
    ``empty()``, ``close()``; a ``Queue`` of the default size underneath
    (its other methods work too)."""

    __slots__ = ()

    def __new__(cls, *, max_message_size=None, spin=False, name=None):
        return super().__new__(cls, 0, max_message_size=max_message_size, spin=spin, name=name)


class JoinableQueue(Queue):
    """As ``multiprocessing.JoinableQueue(maxsize)``: a ``Queue`` that counts
    unfinished tasks, in shared memory, across every process: ``put`` adds
    one, ``task_done()`` removes one, ``join()`` waits for none to be left.
    """

    __slots__ = ()
    _joinable = True

    def task_done(self):
        """Marks one task taken with ``get`` as done. Raises ``ValueError``
        if called more times than objects were put."""
        self._task_done()

    def join(self, timeout=None):
        """Blocks until every object put has been taken and marked done
        with ``task_done()``. ``timeout`` (seconds, a shmring extension):
        returns ``False`` if it passed first, else ``True``."""
        return self._join(timeout)


from .connection import Connection, Pipe  # noqa: E402  (uses the names above)
