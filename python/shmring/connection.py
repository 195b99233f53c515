"""``Pipe`` and ``Connection``: multiprocessing's pipe over shared memory
(part of the queues area; exported through ``shmring.queues``)."""


from . import _shmring
from ._handles import detach_fd as _detach
from ._handles import dup_fd as _dup

__all__ = ["Pipe", "Connection"]

#: Messages buffered per direction before ``send`` blocks.
DEFAULT_CAPACITY = 64
#: The largest message (a pickle with its out-of-band buffers, or the bytes
#: of ``send_bytes``), in bytes, unless ``Pipe`` is told otherwise: 4 MiB.
DEFAULT_MAX_MESSAGE_SIZE = 4 << 20




def _rebuild_connection(cls, rx, tx, spin):
    return _shmring.ConnectionBase.__new__(cls, spin=spin, _fds=(_detach(rx), _detach(tx)))


class Connection(_shmring.ConnectionBase):
    """One end of a ``Pipe``, as ``multiprocessing.connection.Connection``:
    ``send``, ``recv``, ``send_bytes``, ``recv_bytes``, ``recv_bytes_into``,
    ``poll``, ``close``, ``closed``, ``readable``, ``writable``; usable as a
    context manager (closed on exit).

    ``recv`` raises ``EOFError`` once everything the other end sent has been
    received and the other end is closed, garbage-collected, or its process
    exited or was killed (noticed within about 20 ms). Before the other end
    is first used by any process, ``recv`` waits for it.

    An end is used by one process at a time: a process that used an end
    must close it before another process uses it (multiprocessing lets two
    processes share a pipe end's fd; shmring refuses the second one with
    ``OSError``). There is no ``fileno()``: ``multiprocessing.connection.wait``
    does not take these connections; use ``poll(timeout)``.
    """

    __slots__ = ()

    def __reduce__(self):
        rx, tx, spin = self._reduce_args()
        return (_rebuild_connection, (type(self), _dup(rx), _dup(tx), spin))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def fileno(self):
        """Not available: a shmring connection has no file descriptor to
        wait on. Raises ``OSError``."""
        raise OSError("shmring connections have no file descriptor; use poll(timeout)")

    def __repr__(self):
        state = "closed" if self.closed else (
            "duplex" if self.readable and self.writable else
            "read-only" if self.readable else "write-only")
        return f"<shmring.Connection {state}>"


def Pipe(duplex=True, *, max_message_size=None, capacity=DEFAULT_CAPACITY, spin=False):
    """Returns a pair ``(conn1, conn2)`` of ``Connection`` objects, the two
    ends of a pipe in shared memory, as ``multiprocessing.Pipe(duplex)``.

    With ``duplex`` true, each end sends and receives; otherwise ``conn1``
    only receives and ``conn2`` only sends. Keyword-only extensions:
    ``max_message_size`` (bytes, default 4 MiB: a larger message raises
    ``ValueError``), ``capacity`` (messages buffered per direction before
    ``send`` blocks; default 64), ``spin`` (busy-poll while blocked).
    """
    if max_message_size is None:
        max_message_size = DEFAULT_MAX_MESSAGE_SIZE
    left = Connection(duplex, capacity, max_message_size, spin)
    right = Connection(peer=left)
    return left, right
