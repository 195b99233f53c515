"""shmring: multiprocessing's Queue, Pipe, Value, Array, locks and process
pools over lock-free ring buffers in shared memory.

Change ``import multiprocessing`` lines and keep the rest of the program.
"""

from ._shmring import __version__
from .queues import *  # noqa: F401,F403
from .queues import __all__ as _queues_all
from .state import *  # noqa: F401,F403
from .state import __all__ as _state_all
from .pool import *  # noqa: F401,F403
from .pool import __all__ as _pool_all

__all__ = ["__version__", *_queues_all, *_state_all, *_pool_all]
