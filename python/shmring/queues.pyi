"""Type stubs for shmring.queues: Queue, SimpleQueue, JoinableQueue, Pipe."""

import queue as _queue
from typing import Any, Optional

from ._shmring import CorruptedError as CorruptedError

from .connection import Connection as Connection
from .connection import Pipe as Pipe

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

Full = _queue.Full
Empty = _queue.Empty
DEFAULT_MAXSIZE: int
DEFAULT_MAX_MESSAGE_SIZE: int

class Queue:
    """A process-shared FIFO queue, as ``multiprocessing.Queue(maxsize)``."""

    def __new__(
        cls,
        maxsize: int = 0,
        *,
        max_message_size: Optional[int] = None,
        spin: bool = False,
        name: Optional[str] = None,
    ) -> "Queue": ...
    @staticmethod
    def unlink(name: str) -> None:
        """Removes the name of a queue made with ``name=``."""
    @property
    def name(self) -> Optional[str]:
        """The queue's name in ``/dev/shm`` (``None``: anonymous)."""
    def put(self, obj: Any, block: bool = True, timeout: Optional[float] = None) -> None:
        """Puts ``obj``; raises ``queue.Full`` if full (no block, or timeout)."""
    def get(
        self, block: bool = True, timeout: Optional[float] = None, *, copy: bool = True
    ) -> Any:
        """Removes and returns an object; raises ``queue.Empty`` if none comes.

        ``copy=False``: out-of-band buffers (numpy arrays' data) arrive as
        read-only views of the message's slot, claimed until collected."""
    def put_nowait(self, obj: Any) -> None:
        """``put(obj, False)``."""
    def get_nowait(self) -> Any:
        """``get(False)``."""
    def qsize(self) -> int:
        """Objects queued now (a snapshot)."""
    def empty(self) -> bool:
        """Whether the queue is empty now (a snapshot)."""
    def full(self) -> bool:
        """Whether the queue is full now (a snapshot)."""
    def close(self) -> None:
        """This process puts and gets no more through this handle."""
    def join_thread(self) -> None:
        """Returns at once (no feeder thread); only after ``close()``."""
    def cancel_join_thread(self) -> None:
        """Does nothing (no feeder thread)."""
    @property
    def max_message_size(self) -> int:
        """The largest pickled object (with its buffers) taken, in bytes."""

class SimpleQueue(Queue):
    """As ``multiprocessing.SimpleQueue()``."""

    def __new__(
        cls,
        *,
        max_message_size: Optional[int] = None,
        spin: bool = False,
        name: Optional[str] = None,
    ) -> "SimpleQueue": ...

class JoinableQueue(Queue):
    """As ``multiprocessing.JoinableQueue(maxsize)``: counts unfinished tasks."""

    def task_done(self) -> None:
        """Marks one task done; ``ValueError`` if called too many times."""
    def join(self, timeout: Optional[float] = None) -> bool:
        """Waits until every task put is done; ``False`` if ``timeout`` passed."""
