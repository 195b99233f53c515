"""shmring.ProcessPoolExecutor and shmring.Pool: the seed's program under
every start method, the concurrent.futures and multiprocessing.Pool APIs
against the builtin map, exceptions, initializers, maxtasksperchild, a
worker's death, Ctrl-C, terminate and clean shutdown."""

import concurrent.futures as cf
import gc
import multiprocessing as mp
import multiprocessing.pool as mppool
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import threading
import time
import warnings

import pytest

import shmring
from pool_helpers import (
    CustomError,
    add,
    count_init,
    fail_on,
    failing_init,
    initialized,
    mark_started_and_exit,
    mark_started_and_sleep,
    pid_and_square,
    exit_at_init,
    raise_custom,
    raise_unpicklable,
    raise_value_error,
    return_bytes,
    return_lock,
    sleep_return,
    sleep_value,
    square,
)
from state_helpers import METHODS, ctx, no_dev_shm_left, watchdog  # noqa: F401  (fixtures)

SEEDS = os.path.join(os.path.dirname(__file__), "seeds")
HERE = os.path.dirname(os.path.abspath(__file__))
N = 300


def alive(pid):
    """Whether `pid` is a live process (a zombie counts as gone)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def pool_threads():
    return [t for t in threading.enumerate() if t.name.startswith("shmring-pool")]


def wait_for(predicate):
    """Polls until `predicate()` holds (the watchdog bounds a hang)."""
    while not predicate():
        time.sleep(0.01)


def run_script(source, *args, timeout=60):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([HERE] + [p for p in sys.path if p])
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(source), *args],
        capture_output=True, text=True, timeout=timeout, env=env,
    )


# ---------------------------------------------------------------- the seed


@pytest.mark.parametrize("method", METHODS)
def test_seed_pool_executor(method):
    r = subprocess.run(
        [sys.executable, os.path.join(SEEDS, "pool_executor.py"), method],
        capture_output=True, text=True, timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout == "[1, 4, 9, 16, 25]\n"


# ---------------------------------------------------------------- Pool API


@pytest.mark.parametrize("chunksize", [1, 7])
def test_pool_maps_match_builtin_map(ctx, chunksize):
    xs = list(range(N))
    pairs = [(i, -2 * i) for i in range(N)]
    with shmring.Pool(2, context=ctx) as pool:
        assert pool.map(square, xs, chunksize) == list(map(square, xs))
        assert list(pool.imap(square, xs, chunksize)) == list(map(square, xs))
        assert sorted(pool.imap_unordered(square, xs, chunksize)) == sorted(map(square, xs))
        assert pool.starmap(add, pairs, chunksize) == [add(*p) for p in pairs]
        assert pool.map_async(square, xs, chunksize).get() == list(map(square, xs))
        assert pool.starmap_async(add, pairs, chunksize).get() == [add(*p) for p in pairs]
        results = [pool.apply_async(add, (i,), {"b": 1}) for i in range(N)]
        assert [r.get() for r in results] == [i + 1 for i in range(N)]
        assert pool.apply(square, (12,)) == 144
        assert pool.map(square, []) == [] and list(pool.imap(square, [])) == []
        assert pool.map(square, iter(range(5))) == [0, 1, 4, 9, 16]  # any iterable
        pool.close()
        pool.join()


def test_pool_default_chunksize_and_generator():
    with shmring.Pool(2) as pool:
        assert pool.map(square, (x for x in range(N))) == [x * x for x in range(N)]


def test_async_result_api():
    with shmring.Pool(1) as pool:
        r = pool.apply_async(sleep_return, (0.3, "v"))
        with pytest.raises(ValueError):
            r.successful()  # not ready yet
        with pytest.raises(mp.TimeoutError):
            r.get(timeout=0.01)
        r.wait()
        assert r.ready() and r.successful() and r.get() == "v"
        it = pool.imap(sleep_value, [0.3])
        it2 = pool.imap_unordered(sleep_value, [0.3])
        with pytest.raises(mp.TimeoutError):
            it2.next(timeout=0.01)
        assert list(it) == [0.3] and it2.next() == 0.3
        e = pool.apply_async(raise_value_error, (1,))
        e.wait()
        assert e.ready() and not e.successful()


def test_callbacks(ctx):
    got, errors, lists = [], [], []
    done = threading.Event()
    with shmring.Pool(2, context=ctx) as pool:
        names = set()
        for i in range(20):
            pool.apply_async(square, (i,), callback=got.append, error_callback=errors.append)
        pool.apply_async(square, (1,), callback=lambda _: names.add(threading.current_thread().name)).wait()
        assert names == {"shmring-pool-collector"}
        pool.apply_async(raise_custom, ("x",), callback=got.append, error_callback=errors.append)
        pool.map_async(square, range(10), callback=lists.append).wait()
        pool.starmap_async(add, [(1, 2)], callback=lists.append).wait()
        pool.map_async(raise_value_error, [1], error_callback=lambda e: (errors.append(e), done.set())).wait()
        pool.close()
        pool.join()
    assert sorted(got) == [i * i for i in range(20)]
    assert lists == [[x * x for x in range(10)], [3]]
    assert sorted(type(e).__name__ for e in errors) == ["CustomError", "ValueError"]
    assert done.is_set()


# ---------------------------------------------------------------- executor API


def test_executor_api(ctx):
    xs = list(range(N))
    with shmring.ProcessPoolExecutor(max_workers=2, mp_context=ctx) as ex:
        assert isinstance(ex, cf.Executor)
        futures = [ex.submit(add, i, b=10) for i in xs]
        assert all(isinstance(f, cf.Future) for f in futures)
        assert [f.result() for f in futures] == [i + 10 for i in xs]
        assert list(ex.map(square, xs)) == list(map(square, xs))
        assert list(ex.map(add, xs, xs, chunksize=13)) == list(map(add, xs, xs))
        done = set(cf.as_completed(ex.submit(square, i) for i in range(10)))
        assert sorted(f.result() for f in done) == [i * i for i in range(10)]
        it = ex.map(sleep_return, [5], [1], timeout=0.05)
        with pytest.raises((TimeoutError, cf.TimeoutError)):
            next(it)
    with pytest.raises(RuntimeError):
        ex.submit(square, 1)  # after shutdown


def test_executor_shutdown_cancel_futures():
    ex = shmring.ProcessPoolExecutor(1)
    first = ex.submit(sleep_return, 0.5, "first")
    rest = [ex.submit(square, i) for i in range(20)]
    ex.shutdown(wait=True, cancel_futures=True)
    assert first.result() == "first"
    assert any(f.cancelled() for f in rest)  # those not yet sent to the worker
    assert all(f.result() == i * i for i, f in enumerate(rest) if not f.cancelled())
    assert not pool_threads()


# ---------------------------------------------------------------- exceptions


def test_exceptions_keep_their_type_and_remote_traceback(ctx):
    with shmring.Pool(2, context=ctx) as pool:
        with pytest.raises(ValueError, match="bad value 3") as info:
            pool.apply(raise_value_error, (3,))
        cause = info.value.__cause__
        assert isinstance(cause, mppool.RemoteTraceback)
        assert "raise_value_error" in str(cause) and "Traceback" in str(cause)
        with pytest.raises(CustomError):
            pool.apply_async(raise_custom, (1,)).get()
        with pytest.raises(KeyError):
            pool.starmap(fail_on, [(5, i) for i in range(10)])
        it = pool.imap(square, ["a", 2])  # "a" * "a" raises TypeError
        with pytest.raises(TypeError):
            next(it)
        assert next(it) == 4
        assert pool.apply(square, (3,)) == 9  # the pool goes on
    with shmring.ProcessPoolExecutor(2, mp_context=ctx) as ex:
        exc = ex.submit(raise_custom, "c").exception()
        assert type(exc) is CustomError and isinstance(exc.__cause__, mppool.RemoteTraceback)
        with pytest.raises(ValueError):
            list(ex.map(raise_value_error, [1, 2]))


def test_unpicklable_result_fails_that_task_only():
    with shmring.Pool(2) as pool:
        r = pool.apply_async(return_lock, (1,))
        ok = pool.apply_async(square, (4,))
        with pytest.raises(mppool.MaybeEncodingError, match="lock"):
            r.get()
        assert ok.get() == 16
    with shmring.ProcessPoolExecutor(1, max_message_size=64 * 1024) as ex:
        assert len(ex.submit(return_bytes, 1000).result()) == 1000
        with pytest.raises(mppool.MaybeEncodingError, match="at most"):
            ex.submit(return_bytes, 100 * 1024).result()
        with pytest.raises(ValueError, match="at most"):
            ex.submit(len, b"y" * (100 * 1024)).result()  # the task itself is too large
        with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
            ex.submit(square, lambda: 1).result()  # an argument that cannot be pickled
        assert ex.submit(square, 5).result() == 25
        exc = ex.submit(raise_unpicklable, 1).exception()  # an exception that cannot be pickled
        assert isinstance(exc, Exception) and "UnpicklableError" in str(exc)
        assert "raise_unpicklable" in str(exc.__cause__)


# ---------------------------------------------------------------- workers


def test_initializer_runs_in_every_worker(ctx):
    counter = shmring.Value("i", 0)
    with shmring.Pool(3, initializer=count_init, initargs=(counter,), context=ctx) as pool:
        assert all(flag for flag, _ in pool.map(initialized, range(30), 1))
        assert counter.value == 3
    counter.value = 0
    with shmring.ProcessPoolExecutor(2, mp_context=ctx, initializer=count_init, initargs=(counter,)) as ex:
        assert all(flag for flag, _ in ex.map(initialized, range(10)))
    assert counter.value == 2


def test_failing_initializer_breaks_the_pool():
    with shmring.ProcessPoolExecutor(2, initializer=failing_init) as ex:
        with pytest.raises(cf.process.BrokenProcessPool) as info:
            ex.submit(square, 1).result()
        assert not isinstance(info.value, shmring.WorkerDied)
        with pytest.raises(cf.process.BrokenProcessPool):
            ex.submit(square, 1)
    with shmring.Pool(1, initializer=failing_init) as pool:
        with pytest.raises(shmring.BrokenProcessPool):
            pool.apply(square, (1,))
    with shmring.Pool(1, initializer=exit_at_init) as pool:  # exits before it is ready
        with pytest.raises(shmring.BrokenProcessPool, match="before it was ready"):
            pool.apply(square, (1,))


@pytest.mark.parametrize("method", METHODS)
def test_maxtasksperchild_replaces_workers(method):
    ctx = mp.get_context(method)
    with shmring.Pool(2, maxtasksperchild=3, context=ctx) as pool:
        out = pool.map(pid_and_square, range(60), 1)
        assert [sq for _, sq in out] == [x * x for x in range(60)]
        assert len({pid for pid, _ in out}) >= 20  # at most 3 tasks each
        wait_for(lambda: len(pool._worker_pids()) == 2)  # retired workers are replaced
    with shmring.ProcessPoolExecutor(2, mp_context=ctx, max_tasks_per_child=5) as ex:
        out = list(ex.map(pid_and_square, range(40)))
        assert [sq for _, sq in out] == [x * x for x in range(40)]
        assert len({pid for pid, _ in out}) >= 8


def test_worker_killed_mid_task(ctx):
    started = shmring.Value("q", 0)
    with shmring.Pool(1, context=ctx) as pool:
        victim = pool.apply_async(mark_started_and_sleep, (started, 60))
        behind = [pool.apply_async(square, (i,)) for i in range(5)]  # queued behind it
        wait_for(lambda: started.value != 0)
        pid = started.value
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(shmring.WorkerDied) as info:
            victim.get()
        assert isinstance(info.value, cf.process.BrokenProcessPool)
        assert info.value.pid == pid and info.value.exitcode == -signal.SIGKILL
        assert "SIGKILL" in str(info.value)
        assert [r.get() for r in behind] == [i * i for i in range(5)]  # never started: run elsewhere
        assert pool.map(square, range(50)) == [x * x for x in range(50)]
        pids = pool._worker_pids()
        assert len(pids) == 1 and pid not in pids  # the worker was replaced
    assert not alive(pid)


def test_worker_exits_mid_task_executor(ctx):
    started = shmring.Value("q", 0)
    with shmring.ProcessPoolExecutor(2, mp_context=ctx) as ex:
        f = ex.submit(mark_started_and_exit, started, 3)
        with pytest.raises(shmring.WorkerDied) as info:
            f.result()
        assert info.value.exitcode == 3 and info.value.pid == started.value
        assert list(ex.map(square, range(100))) == [x * x for x in range(100)]
        wait_for(lambda: len(ex._worker_pids()) == 2)
        started.value = 0
        f = ex.submit(mark_started_and_sleep, started, 60)
        wait_for(lambda: started.value != 0)
        os.kill(started.value, signal.SIGKILL)
        with pytest.raises(cf.process.BrokenProcessPool):  # as concurrent.futures code catches it
            f.result()
        assert ex.submit(square, 7).result() == 49


def test_worker_died_pickles():
    e = pickle.loads(pickle.dumps(shmring.WorkerDied("gone", pid=5, exitcode=-9)))
    assert type(e) is shmring.WorkerDied and e.pid == 5 and e.exitcode == -9 and str(e) == "gone"


# ---------------------------------------------------------------- blocking


def test_blocking_map_releases_the_gil():
    ticks = []
    stop = threading.Event()

    def tick():
        while not stop.is_set():
            ticks.append(1)
            time.sleep(0.001)

    t = threading.Thread(target=tick)
    with shmring.Pool(2) as pool:
        pool.apply(square, (1,))
        t.start()
        before = len(ticks)
        pool.starmap(sleep_return, [(0.2, 0)] * 4)
        after = len(ticks)
    stop.set()
    t.join()
    assert after > before


SIGINT_SCRIPT = """
import os, sys, multiprocessing as mp
import shmring
from pool_helpers import print_started_and_sleep
if __name__ == "__main__":
    ctx = mp.get_context(sys.argv[1])
    with shmring.Pool(2, context=ctx) as pool:
        print("pids", *pool._worker_pids(), flush=True)
        try:
            pool.map(print_started_and_sleep, [60] * 4, 1)
        except KeyboardInterrupt:
            print("interrupted", flush=True)
    print("exited", flush=True)
"""


@pytest.mark.parametrize("method", METHODS)
def test_sigint_interrupts_a_blocked_map(method, tmp_path):
    script = tmp_path / "sigint_pool.py"
    script.write_text(textwrap.dedent(SIGINT_SCRIPT))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([HERE] + [p for p in sys.path if p])
    p = subprocess.Popen(
        [sys.executable, str(script), method], stdout=subprocess.PIPE, text=True, env=env,
    )
    try:
        pids = [int(x) for x in p.stdout.readline().split()[1:]]
        assert len(pids) == 2
        assert p.stdout.readline().startswith("started")  # a worker runs a task
        p.send_signal(signal.SIGINT)
        rest = p.stdout.read()
        assert p.wait(30) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert "interrupted" in rest and rest.rstrip().endswith("exited")
    assert not any(alive(pid) for pid in pids)


def test_terminate_during_a_long_map(ctx):
    started = shmring.Value("q", 0)
    pool = shmring.Pool(2, context=ctx)
    pids = pool._worker_pids()
    r = pool.starmap_async(mark_started_and_sleep, [(started, 60)] * 6, 1)
    wait_for(lambda: started.value != 0)
    pool.terminate()
    pool.join()
    assert not any(alive(pid) for pid in pids)
    with pytest.raises(cf.process.BrokenProcessPool):
        r.get()
    assert not pool_threads()
    with pytest.raises(ValueError):
        pool.apply(square, (1,))


# ---------------------------------------------------------------- shutdown


def test_close_join_leaves_nothing(ctx):
    pool = shmring.Pool(2, context=ctx)
    pids = pool._worker_pids()
    with pytest.raises(ValueError):
        pool.join()  # still running
    r = pool.starmap_async(sleep_return, [(0.1, 1)] * 4)
    pool.close()
    with pytest.raises(ValueError):
        pool.apply_async(square, (1,))
    pool.join()
    assert r.get() == [1] * 4  # close() lets the tasks finish
    assert not any(alive(pid) for pid in pids)
    assert not pool_threads()
    ex = shmring.ProcessPoolExecutor(2, mp_context=ctx)
    pids = ex._worker_pids()
    ex.submit(square, 2).result()
    ex.shutdown()
    assert not any(alive(pid) for pid in pids) and not pool_threads()


def test_garbage_collected_pool_is_terminated():
    pool = shmring.Pool(2)
    pids = pool._worker_pids()
    assert pool.apply(square, (3,)) == 9
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del pool
        gc.collect()
    assert any(issubclass(w.category, ResourceWarning) for w in caught)
    assert not any(alive(pid) for pid in pids)
    assert not pool_threads()
    ex = shmring.ProcessPoolExecutor(2)
    pids = ex._worker_pids()
    del ex
    gc.collect()
    assert not any(alive(pid) for pid in pids) and not pool_threads()


def test_interpreter_exit_with_a_live_pool():
    r = run_script(
        """
        import shmring
        from pool_helpers import sleep_return
        if __name__ == "__main__":
            pool = shmring.Pool(2)
            ex = shmring.ProcessPoolExecutor(2)
            r = pool.apply_async(sleep_return, (60, 1))
            f = ex.submit(sleep_return, 60, 1)
            print(*pool._worker_pids(), *ex._worker_pids(), flush=True)
        """
    )
    assert r.returncode == 0, r.stderr
    assert not any(alive(int(pid)) for pid in r.stdout.split())


# ---------------------------------------------------------------- bad input


def test_bad_arguments():
    with pytest.raises(ValueError):
        shmring.Pool(0)
    with pytest.raises(TypeError):
        shmring.Pool("2")
    with pytest.raises(ValueError):
        shmring.Pool(shmring.pool.MAX_WORKERS + 1)
    with pytest.raises(ValueError):
        shmring.Pool(1, maxtasksperchild=0)
    with pytest.raises(TypeError):
        shmring.Pool(1, initializer=3)
    with pytest.raises(TypeError):
        shmring.Pool(1, context="fork")
    with pytest.raises(ValueError):
        shmring.ProcessPoolExecutor(0)
    with pytest.raises(TypeError):
        shmring.ProcessPoolExecutor(1, max_tasks_per_child=1.5)
    with pytest.raises(ValueError):
        shmring.ProcessPoolExecutor(1, max_message_size=10)
    with shmring.Pool(1) as pool:
        with pytest.raises(ValueError):
            pool.map(square, [1], chunksize=0)
        with pytest.raises(ValueError):
            pool.imap(square, [1], chunksize=0)
        with pytest.raises(NotImplementedError):
            pickle.dumps(pool)
    with shmring.ProcessPoolExecutor(1) as ex:
        with pytest.raises(ValueError):
            ex.map(square, [1], chunksize=0)
    assert not pool_threads()


def test_public_names_have_docstrings_and_stubs():
    import shmring.pool as pool_module

    stub = open(os.path.join(os.path.dirname(pool_module.__file__), "pool.pyi")).read()
    for name in pool_module.__all__:
        obj = getattr(shmring, name)
        assert obj.__doc__, name
        assert name in stub, name
    for cls in (shmring.Pool, shmring.ProcessPoolExecutor, shmring.AsyncResult):
        for attr, member in vars(cls).items():
            if callable(member) and not attr.startswith("_"):
                assert member.__doc__, "%s.%s" % (cls.__name__, attr)
                assert "def %s(" % attr in stub, "%s.%s" % (cls.__name__, attr)


def test_orphaned_workers_exit():
    r = run_script(
        """
        import os, shmring
        if __name__ == "__main__":
            pool = shmring.Pool(2)
            print(*pool._worker_pids(), flush=True)
            os._exit(0)  # no atexit, no terminate: the workers are orphans
        """
    )
    assert r.returncode == 0, r.stderr
    pids = [int(pid) for pid in r.stdout.split()]
    assert len(pids) == 2
    wait_for(lambda: not any(alive(pid) for pid in pids))


def _cpu_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def test_idle_pool_uses_no_cpu():
    # The pool's long waits (the workers' for a task, the collector's for a
    # result) sleep at once: an idle pool spins nowhere, before and after a
    # burst of round trips.
    with shmring.Pool(2) as pool:
        for i in range(200):
            assert pool.apply(square, (i,)) == i * i
        pids = pool._worker_pids()
        time.sleep(0.1)
        before = [_cpu_ticks(pid) for pid in pids] + [_cpu_ticks(os.getpid())]
        t0 = time.process_time()
        time.sleep(1.0)
        used = time.process_time() - t0
        after = [_cpu_ticks(pid) for pid in pids] + [_cpu_ticks(os.getpid())]
    assert used < 0.1, used
    hz = os.sysconf("SC_CLK_TCK")
    assert all(a - b <= 0.1 * hz for a, b in zip(after, before)), (before, after)


def test_queue_set_spin_us():
    q = shmring.Queue(4)
    q._set_spin_us(0)
    t0 = time.monotonic()
    with pytest.raises(shmring.Empty):
        q.get(timeout=0.05)
    assert time.monotonic() - t0 >= 0.04
    threading.Timer(0.05, q.put, ("x",)).start()
    assert q.get(timeout=10) == "x"
    q._set_spin_us(20)
    q.put(1)
    assert q.get() == 1
    q.close()
