"""Process pools over shmring's queues: ``ProcessPoolExecutor`` (the
``concurrent.futures`` API) and ``Pool`` (``multiprocessing.Pool``'s API).

Design (see docs/python.md, "Pool"):

- Each worker is a ``multiprocessing`` process of the chosen context
  (``fork``, ``spawn`` or ``forkserver``) with its **own task queue** (a
  ``shmring.Queue``); every worker puts its results into **one result
  queue** (MPMC), read by a **collector thread** in the parent, which
  completes the futures / results, runs callbacks and hands each worker its
  next task. A **watcher thread** waits on the workers' process sentinels
  and posts a death notice into the result queue, behind every result the
  dead worker put.
- The parent gives a worker at most a few tasks at once and keeps the rest.
  Each worker writes the id of the task it is running into a shared
  ``RawArray`` slot before it runs it. So when a worker dies (``kill -9``,
  ``os._exit``, a crash), the parent knows exactly which task it was
  running: that task fails with :class:`WorkerDied`; the tasks queued
  behind it, which never started, go to other workers; a new worker takes
  the dead one's place. The pool stays usable.
- Tasks and results cross as pickles inside the queue's message, so that a
  task or result that cannot be pickled or unpickled fails that task only,
  with the error, and never loses track of which task it was.

Blocking waits (``Future.result``, ``AsyncResult.get``, iteration of
``map`` / ``imap``) wait on threading primitives, which release the GIL and
are interrupted by Ctrl-C (``KeyboardInterrupt``) in the main thread.
"""

import concurrent.futures as _cf
import itertools
import multiprocessing as _mp
import multiprocessing.connection as _mpc
import multiprocessing.pool as _mppool
import multiprocessing.util as _util
import os
import pickle
import reprlib
import signal
import sys
import threading
import time
import traceback
import warnings
from collections import deque
from concurrent.futures.process import BrokenProcessPool

from .queues import Empty as _Empty
from .queues import Full as _Full
from .queues import Queue as _Queue
from .state import RawArray as _RawArray

__all__ = ["ProcessPoolExecutor", "Pool", "AsyncResult", "WorkerDied", "BrokenProcessPool"]

#: The default ``max_message_size`` of a pool: a task (the function and its
#: arguments) or a result larger than this, pickled, fails (``ValueError``
#: for a task, ``multiprocessing.pool.MaybeEncodingError`` for a result):
#: 4 MiB, as shmring's queues.
DEFAULT_MAX_MESSAGE_SIZE = 4 << 20
#: Tasks handed to one worker at once (the one it runs and those queued
#: behind it); the parent keeps the rest until a worker has room.
WORKER_DEPTH = 2
#: The most workers a pool takes: a shmring queue has 63 endpoints, and the
#: result queue needs one per worker, one for the parent, and room for a
#: replacement while a dead worker's endpoint is reaped.
MAX_WORKERS = 60

_RESULT_QSIZE = 32
_TASK_QSIZE = WORKER_DEPTH + 2
_ENVELOPE = 256
# How long the pool's long waits (a worker's wait for its next task, the
# collector's for the next result) spin before they sleep, in µs: 0, they
# sleep at once (see _Core.__init__).
_WAIT_SPIN_US = 0
# How often an idle worker checks that the pool's process is alive (s).
_PARENT_CHECK_S = 1.0

# Tags of the result queue's control messages (task ids are > 0).
_READY = -1
_INITFAIL = -2
_DIED = -3
_STOP = -4

# Kinds of task.
_CALL = 0
_MAP = 1
_STARMAP = 2

_RUN = 0
_CLOSE = 1
_TERMINATE = 2


class WorkerDied(BrokenProcessPool):
    """The worker process running this task died before it returned: killed
    (``kill -9``, the OOM killer), a crash, or ``os._exit`` in the task.

    Only the task that was running fails; the pool starts a new worker and
    goes on with the other tasks (unlike ``concurrent.futures``, whose pool
    is broken for good, and ``multiprocessing.Pool``, which waits for ever).
    A subclass of ``concurrent.futures.process.BrokenProcessPool``, so code
    written for ``concurrent.futures`` that catches it still does.

    Attributes: ``pid`` (the dead worker's process id) and ``exitcode``
    (as ``multiprocessing.Process.exitcode``: ``-N`` when killed by signal N).
    """

    def __init__(self, message, pid=None, exitcode=None):
        super().__init__(message)
        self.pid = pid
        self.exitcode = exitcode

    def __reduce__(self):
        return (type(self), (self.args[0] if self.args else "", self.pid, self.exitcode))


# ------------------------------------------------------------------ pickles


def _rebuild_exc(exc, tb):
    exc.__cause__ = _mppool.RemoteTraceback(tb)
    return exc


class _ExceptionWithTraceback:
    """An exception raised in a worker, pickled with its formatted traceback,
    which the parent attaches as ``__cause__`` (a
    ``multiprocessing.pool.RemoteTraceback``), as multiprocessing does."""

    def __init__(self, exc, tb_text):
        self.exc = exc
        self.tb = '\n"""\n%s"""' % tb_text

    def __reduce__(self):
        return _rebuild_exc, (self.exc, self.tb)


class _UnpicklableException(Exception):
    """Stands for an exception raised in a worker that could not be pickled:
    its text is ``repr`` of the original."""


def _dump_exception(exc):
    tb_text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    try:
        return pickle.dumps((False, _ExceptionWithTraceback(exc, tb_text)), 5)
    except BaseException as why:  # noqa: BLE001 -- any pickling failure
        stand_in = _UnpicklableException(
            "%s: %s (the exception could not be pickled: %r)" % (type(exc).__qualname__, _safe_repr(exc), why)
        )
        return pickle.dumps((False, _ExceptionWithTraceback(stand_in, tb_text)), 5)


def _safe_repr(obj):
    try:
        return reprlib.repr(obj)
    except BaseException:  # noqa: BLE001
        return "<%s object>" % type(obj).__name__


def _encoding_error(exc, value):
    """``multiprocessing.pool.MaybeEncodingError`` for a result that could
    not be sent (unpicklable, or too large), as multiprocessing raises."""
    err = _mppool.MaybeEncodingError.__new__(_mppool.MaybeEncodingError)
    err.exc = repr(exc)
    err.value = _safe_repr(value)
    Exception.__init__(err, err.exc, err.value)
    return err


def _dump_result(ok, value, limit):
    if not ok:
        return _dump_exception(value)
    try:
        out = pickle.dumps((True, value), 5)
    except BaseException as exc:  # noqa: BLE001
        return _dump_exception(_encoding_error(exc, value))
    if len(out) > limit:
        too_big = ValueError(
            "the result is %d bytes pickled; a pool takes at most %d" % (len(out), limit)
        )
        return _dump_exception(_encoding_error(too_big, value))
    return out


# ------------------------------------------------------------------ worker


def _worker_main(idx, task_q, result_q, slots, initializer, initargs, max_tasks, limit, spin_us=None):
    """A worker process: takes ``(task id, pickled task)`` messages from its
    own queue until ``None`` (or ``max_tasks`` of them), runs them, and puts
    ``(task id, worker index, pickled (ok, value))`` into the result queue."""
    # Ctrl-C in a terminal reaches the whole process group: the parent
    # handles it (and terminates the workers); a worker ignores it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if spin_us is not None:
        task_q._set_spin_us(spin_us)
    if initializer is not None:
        try:
            initializer(*initargs)
        except BaseException as exc:  # noqa: BLE001
            result_q.put((_INITFAIL, idx, _dump_exception(exc)))
            result_q.close()
            sys.exit(1)
    result_q.put((_READY, idx, None))
    parent = _mp.parent_process()
    done = 0
    while max_tasks is None or done < max_tasks:
        try:
            msg = task_q.get(timeout=_PARENT_CHECK_S)
        except _Empty:
            # An orphan (its pool's process died without terminating it).
            if parent is not None and not parent.is_alive():
                break
            continue
        if msg is None:
            break
        tid, payload = msg
        slots[idx] = tid
        try:
            fn, args, kwds, kind = pickle.loads(payload)
            if kind == _CALL:
                value = fn(*args, **kwds)
            elif kind == _MAP:
                value = [fn(x) for x in args]
            else:
                value = [fn(*x) for x in args]
            out = _dump_result(True, value, limit)
        except BaseException as exc:  # noqa: BLE001 -- reported to the caller
            out = _dump_exception(exc)
        fn = args = kwds = value = None
        result_q.put((tid, idx, out))
        done += 1
    task_q.close()
    result_q.close()


# ------------------------------------------------------------------ the core


class _Worker:
    __slots__ = ("process", "pid", "task_q", "outstanding", "sent", "ready", "init_error", "reported")

    def __init__(self, process, task_q):
        self.process = process
        self.pid = process.pid
        self.task_q = task_q
        self.outstanding = {}  # tid -> _Task, in the order sent
        self.sent = 0
        self.ready = False
        self.init_error = None
        self.reported = False


class _Task:
    """One message to a worker: a call, or a chunk of a map. `done(ok,
    value)` completes it (in the collector thread, or where it fails);
    `start()` returns False for a future cancelled before it was sent."""

    __slots__ = ("tid", "payload", "done", "start")

    def __init__(self, payload, done, start=None):
        self.tid = 0
        self.payload = payload
        self.done = done
        self.start = start


def _finish(task, ok, value):
    try:
        task.done(ok, value)
    except BaseException:  # noqa: BLE001 -- a callback's error must not stop the pool
        traceback.print_exc()


class _Core:
    """The pool's machinery, shared by ``Pool`` and ``ProcessPoolExecutor``
    (which own it; its threads hold no reference to them, so that an
    unclosed pool can be garbage-collected and terminated)."""

    def __init__(self, ctx, processes, initializer, initargs, max_tasks, max_message_size):
        self.ctx = ctx
        self.n = processes
        self.initializer = initializer
        self.initargs = tuple(initargs)
        self.max_tasks = max_tasks
        self.max_message_size = max_message_size
        # Room for the message's envelope: (task id, worker index, pickle).
        self.limit = max_message_size - _ENVELOPE
        self.lock = threading.Lock()
        self.state = _RUN
        self.broken = None
        self.stop_sent = False
        self.unfinished = 0
        self.pending = deque()
        self.tids = itertools.count(1)
        self.result_q = _Queue(_RESULT_QSIZE, max_message_size=max_message_size)
        self.spin_us = _WAIT_SPIN_US
        if self.spin_us is not None:
            self.result_q._set_spin_us(self.spin_us)
        self.slots = _RawArray("q", processes)
        self.workers = [None] * processes
        self.wake_r, self.wake_w = os.pipe()
        self.watch_stop = False
        self.collector = threading.Thread(target=_collect, args=(self,), name="shmring-pool-collector", daemon=True)
        self.watcher = threading.Thread(target=_watch, args=(self,), name="shmring-pool-watcher", daemon=True)
        try:
            for i in range(processes):
                self._start_worker(i)
        except BaseException:
            for w in self.workers:
                if w is not None:
                    w.process.kill()
                    w.process.join()
            os.close(self.wake_r)
            os.close(self.wake_w)
            raise
        self.collector.start()
        self.watcher.start()

    # -- workers

    def _start_worker(self, idx):
        self.slots[idx] = 0
        task_q = _Queue(_TASK_QSIZE, max_message_size=self.max_message_size)
        p = self.ctx.Process(
            target=_worker_main,
            args=(idx, task_q, self.result_q, self.slots, self.initializer, self.initargs, self.max_tasks, self.limit,
                  self.spin_us),
            name="ShmringPoolWorker-%d" % idx,
            daemon=True,
        )
        p.start()
        self.workers[idx] = _Worker(p, task_q)
        self._wake_watcher()

    def _wake_watcher(self):
        try:
            os.write(self.wake_w, b"x")
        except OSError:
            pass

    def pids(self):
        with self.lock:
            return [w.pid for w in self.workers if w is not None and not w.reported]

    # -- submitting

    def submit(self, fn, args, kwds, kind, done, start=None):
        """Queues one task; `done(ok, value)` is called when it ends. A task
        that cannot be pickled fails at once (through `done`)."""
        try:
            payload = pickle.dumps((fn, args, kwds, kind), 5)
            if len(payload) > self.limit:
                raise ValueError(
                    "the task is %d bytes pickled; a pool takes at most %d" % (len(payload), self.limit)
                )
        except BaseException as exc:  # noqa: BLE001 -- the task's own failure
            self.check_running()
            if start is None or start():
                _finish(_Task(None, done), False, exc)
            return
        task = _Task(payload, done, start)
        with self.lock:
            self._check_running_locked()
            task.tid = next(self.tids)
            self.unfinished += 1
            self.pending.append(task)
            failed = self._dispatch_locked()
        for t, exc in failed:
            _finish(t, False, exc)

    def check_running(self):
        with self.lock:
            self._check_running_locked()

    def _check_running_locked(self):
        if self.broken is not None:
            raise BrokenProcessPool(str(self.broken)) from self.broken.__cause__
        if self.state != _RUN:
            raise ValueError("Pool not running")

    def _dispatch_locked(self):
        """Sends pending tasks to workers with room; returns [(task, exc)]
        for tasks that could not be sent (to fail outside the lock)."""
        failed = []
        while self.pending:
            best = None
            for w in self.workers:
                if w is None or w.reported or len(w.outstanding) >= WORKER_DEPTH:
                    continue
                if self.max_tasks is not None and w.sent >= self.max_tasks:
                    continue
                if best is None or len(w.outstanding) < len(best.outstanding):
                    best = w
            if best is None:
                break
            task = self.pending.popleft()
            if task.start is not None and not task.start():
                self.unfinished -= 1  # a future cancelled before it was sent
                continue
            try:
                best.task_q.put((task.tid, task.payload), timeout=5)
            except BaseException as exc:  # noqa: BLE001
                self.unfinished -= 1
                failed.append((task, exc))
                continue
            best.outstanding[task.tid] = task
            best.sent += 1
        self._maybe_stop_locked()
        return failed

    def _maybe_stop_locked(self):
        # After close(): once every task is done, tell the workers to exit.
        if self.state == _CLOSE and self.unfinished == 0 and not self.stop_sent:
            self.stop_sent = True
            for w in self.workers:
                if w is not None and not w.reported:
                    try:
                        w.task_q.put(None, timeout=5)
                    except BaseException:  # noqa: BLE001
                        w.process.kill()

    # -- the collector's handlers

    def on_result(self, tid, idx, payload):
        with self.lock:
            w = self.workers[idx]
            task = w.outstanding.pop(tid, None) if w is not None else None
            if task is not None:
                self.unfinished -= 1
            failed = self._dispatch_locked()
        for t, exc in failed:
            _finish(t, False, exc)
        if task is None:
            return
        try:
            ok, value = pickle.loads(payload)
        except BaseException as exc:  # noqa: BLE001
            ok, value = False, exc
        _finish(task, ok, value)

    def on_died(self, idx, pid):
        with self.lock:
            w = self.workers[idx]
            if w is None or w.pid != pid:
                return
            w.process.join()
            exitcode = w.process.exitcode
            running = self.slots[idx]
            dead, requeue = [], []
            for tid, task in w.outstanding.items():
                (dead if tid == running else requeue).append(task)
            w.outstanding.clear()
            self.pending.extendleft(reversed(requeue))
            self.workers[idx] = None
            w.task_q.close()
            self.unfinished -= len(dead)
            failed = [(t, self._death_error(w, exitcode)) for t in dead]
            if not w.ready and self.state != _TERMINATE and self.broken is None:
                failed += self._break_locked(w, exitcode)
            elif self.state == _RUN or (self.state == _CLOSE and self.unfinished > 0):
                try:
                    self._start_worker(idx)
                except BaseException as exc:  # noqa: BLE001
                    failed += self._break_locked(None, exc)
            failed += self._dispatch_locked()
        for t, exc in failed:
            _finish(t, False, exc)

    def _death_error(self, w, exitcode):
        how = "was killed by signal %d" % -exitcode if exitcode < 0 else "exited with code %d" % exitcode
        if exitcode < 0:
            try:
                how += " (%s)" % signal.Signals(-exitcode).name
            except ValueError:
                pass
        return WorkerDied(
            "the pool's worker process %d %s while running this task; the pool has started a new worker"
            % (w.pid, how),
            pid=w.pid,
            exitcode=exitcode,
        )

    def _break_locked(self, w, why):
        """A worker could not start (its initializer raised, or it died
        before it was ready): every task fails with BrokenProcessPool, and
        so does every later submit."""
        if isinstance(why, BaseException):
            err = BrokenProcessPool("a worker process could not be started: %r" % (why,))
            err.__cause__ = why
        elif w.init_error is not None:
            err = BrokenProcessPool("the initializer raised in a worker process; the pool is broken")
            err.__cause__ = w.init_error
        else:
            err = BrokenProcessPool(
                "a worker process exited with code %s before it was ready; the pool is broken" % why
            )
        self.broken = err
        tasks = list(self.pending)
        self.pending.clear()
        for ow in self.workers:
            if ow is not None:
                tasks += ow.outstanding.values()
                ow.outstanding.clear()
        self.unfinished -= len(tasks)
        # Stop the other workers; their deaths come back as notices.
        for ow in self.workers:
            if ow is not None and not ow.reported:
                try:
                    ow.task_q.put(None, timeout=1)
                except BaseException:  # noqa: BLE001
                    ow.process.kill()
        if self.state == _RUN:
            self.state = _CLOSE
        self.stop_sent = True
        return [(t, err) for t in tasks]

    def on_ready(self, idx, payload, ok):
        with self.lock:
            w = self.workers[idx]
            if w is None:
                return
            if ok:
                w.ready = True
            else:
                try:
                    _ok, w.init_error = pickle.loads(payload)
                except BaseException as exc:  # noqa: BLE001
                    w.init_error = exc

    def all_exited_locked(self):
        return all(w is None for w in self.workers)

    # -- closing

    def close(self):
        with self.lock:
            if self.state == _RUN:
                self.state = _CLOSE
            self._maybe_stop_locked()

    def cancel_pending(self):
        """Cancels tasks not yet sent to a worker (their futures)."""
        with self.lock:
            tasks = list(self.pending)
        for t in tasks:
            fut = getattr(t.start, "__self__", None)
            if fut is not None:
                fut.cancel()
        with self.lock:
            self._dispatch_locked()

    def terminate(self):
        """Kills the workers at once (SIGTERM, then SIGKILL), stops the
        threads; tasks not finished fail with BrokenProcessPool."""
        with self.lock:
            if self.state == _TERMINATE:
                procs = None
            else:
                self.state = _TERMINATE
                tasks = list(self.pending)
                self.pending.clear()
                for w in self.workers:
                    if w is not None:
                        tasks += w.outstanding.values()
                        w.outstanding.clear()
                self.unfinished = 0
                procs = [w.process for w in self.workers if w is not None]
        if procs is None:
            self.join_threads()
            return
        for p in procs:
            try:
                p.terminate()
            except BaseException:  # noqa: BLE001
                pass
        for p in procs:
            p.join(2)
            if p.exitcode is None:
                p.kill()
                p.join()
        self._stop_threads()
        err = BrokenProcessPool("the pool was terminated before this task finished")
        for t in tasks:
            _finish(t, False, err)
        self.join_threads()

    def _stop_threads(self):
        self.watch_stop = True
        self._wake_watcher()
        try:
            self.result_q.put((_STOP, 0, None), block=False)
        except _Full:
            pass  # the collector reads on, and sees the state

    def join_threads(self):
        me = threading.current_thread()
        for t in (self.collector, self.watcher):
            if t is not me and t.ident is not None:
                t.join()
        with self.lock:
            fds, self.wake_r, self.wake_w = (self.wake_r, self.wake_w), -1, -1
        if not self.watcher.is_alive():
            for fd in fds:
                if fd >= 0:
                    os.close(fd)
        else:  # terminate() from the watcher itself: it closes them
            with self.lock:
                self.wake_r, self.wake_w = fds

    def join(self):
        """Waits for the collector (which ends once every worker exited
        after close()) and the watcher."""
        self.join_threads()
        for w in list(self.workers):
            if w is not None:
                w.process.join()


def _collect(core):
    """The collector thread: reads the result queue until told to stop."""
    rq = core.result_q
    while True:
        try:
            tag, idx, payload = rq.get()
        except BaseException:  # noqa: BLE001 -- a corrupted message: go on
            if core.state == _TERMINATE:
                break
            traceback.print_exc()
            continue
        if tag > 0:
            core.on_result(tag, idx, payload)
        elif tag == _READY:
            core.on_ready(idx, payload, True)
        elif tag == _INITFAIL:
            core.on_ready(idx, payload, False)
        elif tag == _DIED:
            core.on_died(idx, payload)
        if core.state == _TERMINATE:
            break
        if core.state == _CLOSE and core.stop_sent:
            with core.lock:
                done = core.all_exited_locked()
            if done:
                core._stop_threads()
                break


def _watch(core):
    """The watcher thread: waits on the workers' sentinels and posts
    ``(_DIED, index, pid)`` into the result queue for each that exits."""
    while True:
        with core.lock:
            if core.watch_stop:
                break
            wake_r = core.wake_r
            procs = {}
            for i, w in enumerate(core.workers):
                if w is not None and not w.reported:
                    procs[w.process.sentinel] = (i, w)
        try:
            ready = _mpc.wait(list(procs) + [wake_r])
        except OSError:
            break
        for s in ready:
            if s == wake_r:
                try:
                    os.read(wake_r, 4096)
                except OSError:
                    pass
                continue
            i, w = procs[s]
            with core.lock:
                w.reported = True
            try:
                core.result_q.put((_DIED, i, w.pid))
            except BaseException:  # noqa: BLE001
                traceback.print_exc()


def _check_context(ctx):
    if ctx is None:
        return _mp.get_context()
    if not hasattr(ctx, "Process") or not hasattr(ctx, "get_start_method"):
        raise TypeError("expected a multiprocessing context, got %r" % (ctx,))
    return ctx


def _check_processes(n, name):
    if n is None:
        if hasattr(os, "sched_getaffinity"):
            n = len(os.sched_getaffinity(0))
        else:
            n = os.cpu_count() or 1
        return min(n, MAX_WORKERS)
    if not isinstance(n, int) or isinstance(n, bool):
        raise TypeError("%s must be an int, got %r" % (name, n))
    if n < 1:
        raise ValueError("%s must be at least 1, got %d" % (name, n))
    if n > MAX_WORKERS:
        raise ValueError("%s must be at most %d (a shmring queue has 63 endpoints), got %d" % (name, MAX_WORKERS, n))
    return n


def _check_max_tasks(m, name):
    if m is None:
        return None
    if not isinstance(m, int) or isinstance(m, bool):
        raise TypeError("%s must be an int or None, got %r" % (name, m))
    if m < 1:
        raise ValueError("%s must be at least 1, got %d" % (name, m))
    return m


def _check_message_size(size):
    if size is None:
        return DEFAULT_MAX_MESSAGE_SIZE
    if not isinstance(size, int) or isinstance(size, bool):
        raise TypeError("max_message_size must be an int or None, got %r" % (size,))
    if size < 4096:
        raise ValueError("max_message_size must be at least 4096 bytes, got %d" % size)
    return size


def _check_initializer(initializer):
    if initializer is not None and not callable(initializer):
        raise TypeError("initializer must be a callable")


def _start(owner, processes, processes_name, context, initializer, initargs, max_tasks, max_tasks_name,
           max_message_size):
    """Checks a pool's arguments (named as the caller's API names them),
    starts its core and ties its termination to ``owner``'s collection and
    to interpreter exit; returns (worker count, core)."""
    n = _check_processes(processes, processes_name)
    size = _check_message_size(max_message_size)
    ctx = _check_context(context)
    _check_initializer(initializer)
    max_tasks = _check_max_tasks(max_tasks, max_tasks_name)
    core = _Core(ctx, n, initializer, initargs, max_tasks, size)
    owner._finalizer = _util.Finalize(owner, _Core.terminate, args=(core,), exitpriority=15)
    return n, core


def _chunks(iterable, size):
    it = iter(iterable)
    while True:
        chunk = list(itertools.islice(it, size))
        if not chunk:
            return
        yield chunk


# ------------------------------------------------------------------ executor


class ProcessPoolExecutor(_cf.Executor):
    """``concurrent.futures.ProcessPoolExecutor`` over shmring queues.

    ``ProcessPoolExecutor(max_workers=None, mp_context=None, initializer=None,
    initargs=(), max_tasks_per_child=None)``

    - ``max_workers``: worker processes (default: the CPUs this process may
      run on; at most ``MAX_WORKERS``, 60). They start at once.
    - ``mp_context``: a ``multiprocessing`` context (``fork``, ``spawn`` or
      ``forkserver``); default ``multiprocessing.get_context()``.
    - ``initializer(*initargs)`` runs in each worker when it starts; if it
      raises, the pool is broken (every task and later ``submit`` raises
      ``BrokenProcessPool``), as in ``concurrent.futures``.
    - ``max_tasks_per_child``: a worker exits after this many tasks (a
      ``map`` chunk is one task) and a new one takes its place (allowed
      under every start method).
    - ``max_message_size`` (keyword, a shmring extension): the largest task
      (function and arguments) or result, pickled, in bytes (default
      4 MiB); a larger task fails with ``ValueError``, a larger result
      with ``multiprocessing.pool.MaybeEncodingError``.

    ``submit`` returns a ``concurrent.futures.Future``. A worker that dies
    while running a task fails that task's future with :class:`WorkerDied`;
    unlike ``concurrent.futures``, the pool is not broken: a new worker
    replaces the dead one and the other tasks go on.
    """

    def __init__(
        self,
        max_workers=None,
        mp_context=None,
        initializer=None,
        initargs=(),
        max_tasks_per_child=None,
        *,
        max_message_size=None,
    ):
        self._max_workers, self._core = _start(
            self, max_workers, "max_workers", mp_context, initializer, initargs,
            max_tasks_per_child, "max_tasks_per_child", max_message_size,
        )

    def submit(self, fn, /, *args, **kwargs):
        """Schedules ``fn(*args, **kwargs)`` in a worker; returns a
        ``concurrent.futures.Future``. Raises ``RuntimeError`` after
        ``shutdown()``, ``BrokenProcessPool`` if the pool is broken."""
        fut = _cf.Future()
        self._submit(fut, fn, args, kwargs, _CALL)
        return fut

    def _submit(self, fut, fn, args, kwargs, kind):
        def done(ok, value):
            if fut.done():
                return
            try:
                if ok:
                    fut.set_result(value)
                else:
                    fut.set_exception(value)
            except _cf.InvalidStateError:
                pass

        try:
            self._core.submit(fn, args, kwargs, kind, done, fut.set_running_or_notify_cancel)
        except ValueError:
            raise RuntimeError("cannot schedule new futures after shutdown") from None

    def map(self, fn, *iterables, timeout=None, chunksize=1):
        """As ``concurrent.futures.Executor.map``: an iterator of
        ``fn(*args)`` for ``args`` in ``zip(*iterables)``, in order.
        ``chunksize`` items travel as one task. ``timeout`` (seconds, from
        this call) raises ``TimeoutError`` from ``next`` when passed; the
        remaining tasks are then cancelled, as they are when the iterator
        is closed."""
        if chunksize < 1:
            raise ValueError("chunksize must be >= 1.")
        end = None if timeout is None else timeout + time.monotonic()
        futures = []
        if len(iterables) == 1:  # items as they are, not 1-tuples
            chunks, kind = _chunks(iterables[0], chunksize), _MAP
        else:
            chunks, kind = _chunks(zip(*iterables), chunksize), _STARMAP
        for chunk in chunks:
            fut = _cf.Future()
            self._submit(fut, fn, chunk, {}, kind)
            futures.append(fut)

        def results():
            try:
                futures.reverse()
                while futures:
                    fut = futures[-1]
                    left = None if end is None else end - time.monotonic()
                    chunk = fut.result(left)
                    futures.pop()
                    yield from chunk
            finally:
                for f in futures:
                    f.cancel()

        return results()

    def shutdown(self, wait=True, *, cancel_futures=False):
        """No more ``submit``; the workers exit once every task is done.
        ``wait``: block until then (workers and threads gone).
        ``cancel_futures``: cancel the tasks not yet sent to a worker."""
        core = self._core
        core.close()
        if cancel_futures:
            core.cancel_pending()
        if wait:
            core.join()

    def _worker_pids(self):
        return self._core.pids()


# ------------------------------------------------------------------ Pool


class AsyncResult:
    """The result of ``Pool.apply_async`` / ``map_async`` /
    ``starmap_async``, as ``multiprocessing.pool.AsyncResult``."""

    def __init__(self, callback=None, error_callback=None):
        self._event = threading.Event()
        self._callback = callback
        self._error_callback = error_callback
        self._success = None
        self._value = None

    def ready(self):
        """Whether the call has completed."""
        return self._event.is_set()

    def successful(self):
        """Whether the call completed without raising; ``ValueError`` if it
        has not completed."""
        if not self.ready():
            raise ValueError("%r not ready" % self)
        return self._success

    def wait(self, timeout=None):
        """Waits until the result is available or ``timeout`` seconds pass."""
        self._event.wait(timeout)

    def get(self, timeout=None):
        """The result; raises the call's exception if it raised, and
        ``multiprocessing.TimeoutError`` if ``timeout`` seconds pass first."""
        if not self._event.wait(timeout):
            raise _mp.TimeoutError
        if self._success:
            return self._value
        raise self._value

    def _set(self, ok, value):
        self._success, self._value = ok, value
        cb = self._callback if ok else self._error_callback
        if cb is not None:
            try:
                cb(value)
            except BaseException:  # noqa: BLE001
                traceback.print_exc()
        self._event.set()
        self._callback = self._error_callback = None


class _MapResult(AsyncResult):
    """``map_async``'s result: one chunk task after another completes it."""

    def __init__(self, nchunks, chunksize, length, callback, error_callback):
        super().__init__(callback, error_callback)
        self._lock = threading.Lock()
        self._chunksize = chunksize
        self._left = nchunks
        self._items = [None] * length
        self._error = None
        if nchunks == 0:
            self._set(True, [])

    def _chunk_done(self, i, ok, value):
        with self._lock:
            self._left -= 1
            if ok:
                self._items[i * self._chunksize : i * self._chunksize + len(value)] = value
            elif self._error is None:
                self._error = value
            last = self._left == 0
        if last:
            if self._error is None:
                self._set(True, self._items)
            else:
                self._items = None
                self._set(False, self._error)


class _IMapIterator:
    """``imap`` / ``imap_unordered``'s iterator: ``next(timeout=None)``
    raises ``multiprocessing.TimeoutError`` when ``timeout`` passes."""

    def __init__(self, nchunks, ordered):
        self._cond = threading.Condition(threading.Lock())
        self._ordered = ordered
        self._left = nchunks
        self._chunks = {}  # ordered: chunk index -> (ok, value)
        self._arrived = deque()  # unordered: (ok, value)
        self._next_chunk = 0
        self._items = deque()

    def _chunk_done(self, i, ok, value):
        with self._cond:
            if self._ordered:
                self._chunks[i] = (ok, value)
            else:
                self._arrived.append((ok, value))
            self._cond.notify()

    def __iter__(self):
        return self

    def next(self, timeout=None):
        """The next result, waiting at most ``timeout`` seconds."""
        while not self._items:
            with self._cond:
                if self._left == 0:
                    raise StopIteration
                if self._ordered:
                    key = self._next_chunk
                    ready = lambda: key in self._chunks  # noqa: E731
                else:
                    ready = lambda: bool(self._arrived)  # noqa: E731
                if not self._cond.wait_for(ready, timeout):
                    raise _mp.TimeoutError
                if self._ordered:
                    ok, value = self._chunks.pop(key)
                    self._next_chunk += 1
                else:
                    ok, value = self._arrived.popleft()
                self._left -= 1
            if not ok:
                raise value
            self._items.extend(value)
        return self._items.popleft()

    __next__ = next


class Pool:
    """``multiprocessing.Pool`` over shmring queues.

    ``Pool(processes=None, initializer=None, initargs=(),
    maxtasksperchild=None, context=None)``

    - ``processes``: worker processes (default: the CPUs this process may
      run on; at most ``MAX_WORKERS``, 60).
    - ``initializer(*initargs)`` runs in each worker when it starts; if it
      raises, the pool is broken: tasks fail with ``BrokenProcessPool``
      (multiprocessing would start workers again and again).
    - ``maxtasksperchild``: a worker exits after this many tasks (a chunk
      of a map is one task) and a new one takes its place.
    - ``context``: a ``multiprocessing`` context; default
      ``multiprocessing.get_context()``.
    - ``max_message_size`` (keyword, a shmring extension): the largest task
      or result, pickled, in bytes (default 4 MiB); a larger task fails with
      ``ValueError``, a larger result with
      ``multiprocessing.pool.MaybeEncodingError``.

    A worker that dies while running a task fails that task with
    :class:`WorkerDied` (multiprocessing's pool waits for ever); the pool
    starts a new worker and goes on. ``with Pool() as pool:`` terminates
    the pool on exit, as multiprocessing does. Callbacks run in the pool's
    collector thread; they should not block.
    """

    def __init__(
        self, processes=None, initializer=None, initargs=(), maxtasksperchild=None, context=None, *, max_message_size=None
    ):
        self._processes, self._core = _start(
            self, processes, "processes", context, initializer, initargs,
            maxtasksperchild, "maxtasksperchild", max_message_size,
        )

    def __repr__(self):
        state = {_RUN: "RUN", _CLOSE: "CLOSE", _TERMINATE: "TERMINATE"}[self._core.state]
        return "<shmring.Pool state=%s pool_size=%d>" % (state, self._processes)

    def __reduce__(self):
        raise NotImplementedError("pool objects cannot be passed between processes or pickled")

    def __del__(self):
        core = getattr(self, "_core", None)
        if core is not None and core.state == _RUN:
            # (no ``source=self``: a recorded warning would keep the pool alive)
            warnings.warn("unclosed running shmring pool %r" % (self,), ResourceWarning)

    def __enter__(self):
        self._core.check_running()
        return self

    def __exit__(self, *exc):
        self.terminate()

    def _worker_pids(self):
        return self._core.pids()

    # -- one call

    def apply(self, func, args=(), kwds={}):
        """``func(*args, **kwds)`` in a worker; blocks for the result."""
        return self.apply_async(func, args, kwds).get()

    def apply_async(self, func, args=(), kwds={}, callback=None, error_callback=None):
        """``func(*args, **kwds)`` in a worker; returns an :class:`AsyncResult`.
        ``callback(result)`` / ``error_callback(exception)`` run in the
        pool's collector thread when it completes."""
        self._core.check_running()
        result = AsyncResult(callback, error_callback)
        self._core.submit(func, tuple(args), dict(kwds), _CALL, result._set)
        return result

    # -- maps

    def _chunksize(self, n, chunksize):
        if chunksize is None:
            chunksize, extra = divmod(n, self._processes * 4)
            if extra:
                chunksize += 1
            return max(1, chunksize)
        if not isinstance(chunksize, int) or chunksize < 1:
            raise ValueError("Chunksize must be 1+, not %r" % (chunksize,))
        return chunksize

    def _map_async(self, func, iterable, kind, chunksize, callback, error_callback):
        self._core.check_running()
        items = list(iterable)
        cs = self._chunksize(len(items), chunksize)
        chunks = [items[i : i + cs] for i in range(0, len(items), cs)]
        result = _MapResult(len(chunks), cs, len(items), callback, error_callback)
        for i, chunk in enumerate(chunks):
            self._core.submit(func, chunk, {}, kind, lambda ok, v, i=i: result._chunk_done(i, ok, v))
        return result

    def map(self, func, iterable, chunksize=None):
        """``list(map(func, iterable))``, computed by the workers in chunks
        (default chunk size: ``len / (4 * processes)``, rounded up)."""
        return self._map_async(func, iterable, _MAP, chunksize, None, None).get()

    def map_async(self, func, iterable, chunksize=None, callback=None, error_callback=None):
        """As ``map``, returning an :class:`AsyncResult` of the list."""
        return self._map_async(func, iterable, _MAP, chunksize, callback, error_callback)

    def starmap(self, func, iterable, chunksize=None):
        """``[func(*args) for args in iterable]``, computed by the workers."""
        return self._map_async(func, iterable, _STARMAP, chunksize, None, None).get()

    def starmap_async(self, func, iterable, chunksize=None, callback=None, error_callback=None):
        """As ``starmap``, returning an :class:`AsyncResult` of the list."""
        return self._map_async(func, iterable, _STARMAP, chunksize, callback, error_callback)

    def _imap(self, func, iterable, chunksize, ordered):
        self._core.check_running()
        if not isinstance(chunksize, int) or chunksize < 1:
            raise ValueError("Chunksize must be 1+, not %r" % (chunksize,))
        chunks = list(_chunks(iterable, chunksize))
        it = _IMapIterator(len(chunks), ordered)
        for i, chunk in enumerate(chunks):
            self._core.submit(func, chunk, {}, _MAP, lambda ok, v, i=i: it._chunk_done(i, ok, v))
        return it

    def imap(self, func, iterable, chunksize=1):
        """An iterator of ``func(x)`` for ``x`` in ``iterable``, in order, as
        the workers produce them. The iterable is read when called."""
        return self._imap(func, iterable, chunksize, True)

    def imap_unordered(self, func, iterable, chunksize=1):
        """As ``imap``, in the order the results arrive."""
        return self._imap(func, iterable, chunksize, False)

    # -- ending

    def close(self):
        """No more tasks; the workers exit once every task is done."""
        self._core.close()

    def terminate(self):
        """Stops the workers at once (SIGTERM, then SIGKILL if need be);
        unfinished tasks fail with ``BrokenProcessPool``."""
        self._finalizer()

    def join(self):
        """Waits for the workers to exit; only after ``close()`` or
        ``terminate()`` (else ``ValueError``)."""
        if self._core.state == _RUN:
            raise ValueError("Pool is still running")
        self._core.join()
