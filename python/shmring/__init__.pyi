"""Type stubs for shmring: the names of shmring.queues, shmring.state and
shmring.pool."""

from ._shmring import __version__ as __version__
from .queues import *
from .state import *
from .pool import *

__all__ = [
    "__version__",
    # shmring.queues
    "Queue",
    "SimpleQueue",
    "JoinableQueue",
    "Pipe",
    "Connection",
    "Full",
    "Empty",
    "CorruptedError",
    # shmring.state
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
    # shmring.pool
    "ProcessPoolExecutor",
    "Pool",
    "AsyncResult",
    "WorkerDied",
    "BrokenProcessPool",
]
