"""Named queues: programs started separately (as from a shell or a service
manager), in either order, restarted, share a queue by its name
(``examples/python/named_queue``); the name lives until ``Queue.unlink``."""

import os
import subprocess
import sys
from pathlib import Path

import multiprocessing as mp

import pytest

import shmring
from state_helpers import no_dev_shm_left, watchdog  # noqa: F401 (fixtures)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples/python/named_queue"


def unique(what):
    return "shmring-pytest-%s-%d" % (what, os.getpid())


def start(script, *args):
    return subprocess.Popen(
        [sys.executable, str(EXAMPLE / script), *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(p, timeout=60):
    out, err = p.communicate(timeout=timeout)
    assert p.returncode == 0, err
    return out


def python(code, *args, **kw):
    """Starts ``python -c code args`` (a separately started program)."""
    return subprocess.Popen([sys.executable, "-c", code, *args], text=True, **kw)


def numbers(out):
    return [int(line) for line in out.split()]


@pytest.fixture
def name(request):
    n = unique(request.node.name[:20])
    yield n
    try:
        shmring.Queue.unlink(n)
    except FileNotFoundError:
        pass


def test_producer_first_then_consumer(name):
    assert "put 50 jobs" in finish(start("producer.py", name, 50))
    # The producer has exited: its jobs wait in the named queue.
    assert os.path.exists("/dev/shm/" + name)
    assert numbers(finish(start("consumer.py", name, 50, "--unlink"))) == list(range(50))
    assert not os.path.exists("/dev/shm/" + name)


def test_consumer_first_then_producer(name):
    consumer = start("consumer.py", name, 300)
    producer = start("producer.py", name, 300)  # more than the queue holds
    assert "put 300 jobs" in finish(producer)
    assert numbers(finish(consumer)) == list(range(300))


def test_restarted_consumers_and_producers_lose_nothing(name):
    finish(start("producer.py", name, 40, 0))
    assert numbers(finish(start("consumer.py", name, 25))) == list(range(25))
    # A second producer run while nobody consumes, then a new consumer.
    finish(start("producer.py", name, 40, 40))
    assert numbers(finish(start("consumer.py", name, 55))) == list(range(25, 80))
    q = shmring.Queue(name=name)
    assert q.empty()


def test_a_killed_consumer_loses_only_what_it_took(name):
    q = shmring.Queue(100, name=name)
    for i in range(60):
        q.put(i)
    victim = python(
        "import shmring, sys, time\n"
        "q = shmring.Queue(name=sys.argv[1])\n"
        "for _ in range(10): print(q.get(timeout=30), flush=True)\n"
        "time.sleep(60)\n",
        name,
        stdout=subprocess.PIPE,
    )
    taken = [int(victim.stdout.readline()) for _ in range(10)]
    victim.kill()
    victim.wait()
    assert taken == list(range(10))
    assert [q.get(timeout=5) for _ in range(50)] == list(range(10, 60))


def test_explicit_sizes_must_match_the_queue(name):
    q = shmring.Queue(5, name=name, max_message_size=4096)
    assert q.name == name and q._capacity == 5
    other = shmring.Queue(name=name)  # takes the queue as it is
    assert other._capacity == 5 and other.max_message_size == 4096
    with pytest.raises(ValueError, match="holds 5 objects"):
        shmring.Queue(7, name=name)
    with pytest.raises(ValueError, match="at most 4096 bytes"):
        shmring.Queue(name=name, max_message_size=8192)
    other.put("through the other handle")
    assert q.get(timeout=5) == "through the other handle"
    assert "name=%r" % name in repr(q)


def test_a_named_joinable_queue_joins_across_programs(name):
    q = shmring.JoinableQueue(10, name=name)
    for i in range(5):
        q.put(i)
    worker = python(
        "import shmring, sys\n"
        "q = shmring.JoinableQueue(name=sys.argv[1])\n"
        "for _ in range(5):\n"
        "    q.get(timeout=30)\n"
        "    q.task_done()\n",
        name,
        stderr=subprocess.PIPE,
    )
    finish(worker)
    assert q.join(timeout=30)
    assert os.path.exists("/dev/shm/%s.tasks" % name)
    shmring.JoinableQueue.unlink(name)
    assert not os.path.exists("/dev/shm/%s.tasks" % name)


def _child_puts(q, n):
    for i in range(n):
        q.put(("child", i))


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_a_named_queue_crosses_to_child_processes_by_name(name, method):
    q = shmring.Queue(16, name=name)
    p = mp.get_context(method).Process(target=_child_puts, args=(q, 20))
    p.start()
    got = [q.get(timeout=30) for _ in range(20)]
    p.join(30)
    assert p.exitcode == 0
    assert got == [("child", i) for i in range(20)]


def test_unlink_of_a_missing_queue_is_file_not_found(name):
    with pytest.raises(FileNotFoundError):
        shmring.Queue.unlink(name)


def test_unlink_leaves_a_name_that_is_not_a_queue(name):
    path = "/dev/shm/" + name
    with open(path, "wb") as f:
        f.write(b"not a shmring segment" * 100)
    try:
        with pytest.raises((TypeError, ValueError, shmring.CorruptedError)):
            shmring.Queue.unlink(name)
        assert os.path.exists(path)
    finally:
        os.unlink(path)
