"""Type stubs for shmring.pool: ProcessPoolExecutor, Pool, AsyncResult,
WorkerDied."""

import concurrent.futures
from concurrent.futures.process import BrokenProcessPool as BrokenProcessPool
from multiprocessing.context import BaseContext
from typing import (
    Any,
    Callable,
    Generic,
    Iterable,
    Iterator,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    TypeVar,
)

_T = TypeVar("_T")
_S = TypeVar("_S")

__all__: List[str]

DEFAULT_MAX_MESSAGE_SIZE: int
WORKER_DEPTH: int
MAX_WORKERS: int

class WorkerDied(BrokenProcessPool):
    """The worker running this task died (``kill -9``, a crash,
    ``os._exit``); only this task fails and the pool goes on."""

    pid: Optional[int]
    exitcode: Optional[int]
    def __init__(self, message: str, pid: Optional[int] = ..., exitcode: Optional[int] = ...) -> None: ...

class ProcessPoolExecutor(concurrent.futures.Executor):
    """``concurrent.futures.ProcessPoolExecutor`` over shmring queues."""

    def __init__(
        self,
        max_workers: Optional[int] = ...,
        mp_context: Optional[BaseContext] = ...,
        initializer: Optional[Callable[..., object]] = ...,
        initargs: Tuple[Any, ...] = ...,
        max_tasks_per_child: Optional[int] = ...,
        *,
        max_message_size: Optional[int] = ...,
    ) -> None: ...
    def submit(self, fn: Callable[..., _T], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[_T]:
        """Schedules ``fn(*args, **kwargs)``; returns its Future."""
    def map(
        self, fn: Callable[..., _T], *iterables: Iterable[Any], timeout: Optional[float] = ..., chunksize: int = ...
    ) -> Iterator[_T]:
        """``fn(*args)`` for ``args`` in ``zip(*iterables)``, in order."""
    def shutdown(self, wait: bool = ..., *, cancel_futures: bool = ...) -> None:
        """No more submits; workers exit once every task is done."""

class AsyncResult(Generic[_T]):
    """The result of ``apply_async`` / ``map_async`` / ``starmap_async``."""

    def ready(self) -> bool:
        """Whether the call has completed."""
    def successful(self) -> bool:
        """Whether it completed without raising; ``ValueError`` if not ready."""
    def wait(self, timeout: Optional[float] = ...) -> None:
        """Waits for the result, at most ``timeout`` seconds."""
    def get(self, timeout: Optional[float] = ...) -> _T:
        """The result (or its exception); ``multiprocessing.TimeoutError``."""

class _IMapIterator(Iterator[_T]):
    def __next__(self) -> _T: ...
    def next(self, timeout: Optional[float] = ...) -> _T:
        """The next result; ``multiprocessing.TimeoutError`` on timeout."""

class Pool:
    """``multiprocessing.Pool`` over shmring queues."""

    def __init__(
        self,
        processes: Optional[int] = ...,
        initializer: Optional[Callable[..., object]] = ...,
        initargs: Tuple[Any, ...] = ...,
        maxtasksperchild: Optional[int] = ...,
        context: Optional[BaseContext] = ...,
        *,
        max_message_size: Optional[int] = ...,
    ) -> None: ...
    def __enter__(self) -> "Pool": ...
    def __exit__(self, *exc: Any) -> None: ...
    def apply(self, func: Callable[..., _T], args: Sequence[Any] = ..., kwds: Mapping[str, Any] = ...) -> _T:
        """``func(*args, **kwds)`` in a worker, waited for."""
    def apply_async(
        self,
        func: Callable[..., _T],
        args: Sequence[Any] = ...,
        kwds: Mapping[str, Any] = ...,
        callback: Optional[Callable[[_T], object]] = ...,
        error_callback: Optional[Callable[[BaseException], object]] = ...,
    ) -> AsyncResult[_T]:
        """``func(*args, **kwds)`` in a worker; an AsyncResult."""
    def map(self, func: Callable[[_S], _T], iterable: Iterable[_S], chunksize: Optional[int] = ...) -> List[_T]:
        """``list(map(func, iterable))`` by the workers."""
    def map_async(
        self,
        func: Callable[[_S], _T],
        iterable: Iterable[_S],
        chunksize: Optional[int] = ...,
        callback: Optional[Callable[[List[_T]], object]] = ...,
        error_callback: Optional[Callable[[BaseException], object]] = ...,
    ) -> AsyncResult[List[_T]]:
        """As ``map``, asynchronously."""
    def starmap(
        self, func: Callable[..., _T], iterable: Iterable[Iterable[Any]], chunksize: Optional[int] = ...
    ) -> List[_T]:
        """``[func(*args) for args in iterable]`` by the workers."""
    def starmap_async(
        self,
        func: Callable[..., _T],
        iterable: Iterable[Iterable[Any]],
        chunksize: Optional[int] = ...,
        callback: Optional[Callable[[List[_T]], object]] = ...,
        error_callback: Optional[Callable[[BaseException], object]] = ...,
    ) -> AsyncResult[List[_T]]:
        """As ``starmap``, asynchronously."""
    def imap(self, func: Callable[[_S], _T], iterable: Iterable[_S], chunksize: int = ...) -> _IMapIterator[_T]:
        """Results in order, as they come."""
    def imap_unordered(
        self, func: Callable[[_S], _T], iterable: Iterable[_S], chunksize: int = ...
    ) -> _IMapIterator[_T]:
        """Results in the order they arrive."""
    def close(self) -> None:
        """No more tasks; workers exit once every task is done."""
    def terminate(self) -> None:
        """Stops the workers at once; unfinished tasks fail."""
    def join(self) -> None:
        """Waits for the workers; only after close() or terminate()."""
