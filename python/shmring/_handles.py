"""How shmring's queue and pipe handles carry their shared memory to other
processes: the memfd of each segment, through
``multiprocessing.reduction.DupFd``, as multiprocessing sends its own
pipes' fds (works under ``fork``, ``spawn`` and ``forkserver``, and,
outside process start-up, through multiprocessing's resource sharer)."""

import os

from multiprocessing import context as _context
from multiprocessing import reduction as _reduction
from multiprocessing import util as _util


def dup_fd(fd):
    """A picklable stand-in for `fd` (or None). While a process is being
    started, a private duplicate is passed instead (closed when the start's
    Popen object goes): the two ends of a pipe share memfds, and a
    ``spawn`` start refuses the same fd twice."""
    if fd is None:
        return None
    popen = _context.get_spawning_popen()
    if popen is not None:
        fd = os.dup(fd)
        _util.Finalize(popen, os.close, (fd,))
    return _reduction.DupFd(fd)


def detach_fd(dup):
    """The fd a `dup_fd` stand-in carried, now owned by the caller."""
    return None if dup is None else dup.detach()
