"""The seeds' RabbitMQ programs against shmring's bridge, as separate processes.

The seeds' pika producer (``examples/python/rabbitmq/send.py``) publishes
'Hello World!' to the queue ``hello``; ``shmring bridge in`` delivers it into
a local shmring queue; a Rust consumer (``bridge/examples/hello_receive.rs``)
prints it. The other way: a Rust producer (``hello_send.rs``) sends into a
local queue, ``shmring bridge out`` publishes it to ``hello``, and the seeds'
pika consumer (``receive.py``) prints it.

Needs a RabbitMQ broker on localhost (``scripts/rabbitmq start``) and pika
(``scripts/python-env`` installs it). Without a broker the tests are skipped
with a message, except in CI (``CI`` or ``SHMRING_REQUIRE_BROKER`` set),
where they fail.
"""

import os
import socket
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SEND = os.path.join(ROOT, "examples", "python", "rabbitmq", "send.py")
RECEIVE = os.path.join(ROOT, "examples", "python", "rabbitmq", "receive.py")
LIMIT = 90  # seconds: the watchdog of every wait below


def _broker_up():
    try:
        with socket.create_connection(("127.0.0.1", 5672), timeout=5):
            return True
    except OSError:
        return False


def _required():
    return bool(os.environ.get("CI") or os.environ.get("SHMRING_REQUIRE_BROKER"))


@pytest.fixture(scope="module")
def pika():
    try:
        import pika as module
    except ImportError:
        if _required():
            pytest.fail("pika is not installed (scripts/python-env installs it)")
        pytest.skip("pika is not installed: pip install pika (scripts/python-env does)")
    if not _broker_up():
        msg = ("no RabbitMQ broker on 127.0.0.1:5672; start one with "
               "`scripts/rabbitmq start` (apt-get install rabbitmq-server)")
        if _required():
            pytest.fail(msg)
        pytest.skip(msg)
    return module


@pytest.fixture(scope="module")
def binaries():
    """The `shmring` tool and the two Rust hello programs (debug builds)."""
    subprocess.run(
        ["cargo", "build", "-q", "-p", "shmring-cli", "--bin", "shmring",
         "-p", "shmring-bridge", "--example", "hello_send", "--example", "hello_receive"],
        cwd=ROOT, check=True, timeout=1800,
    )
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    debug = os.path.join(target, "debug")
    return {
        "shmring": os.path.join(debug, "shmring"),
        "hello_send": os.path.join(debug, "examples", "hello_send"),
        "hello_receive": os.path.join(debug, "examples", "hello_receive"),
    }


@pytest.fixture
def hello(pika):
    """The seeds' queue `hello`, emptied before and deleted after the test."""
    conn = pika.BlockingConnection(pika.ConnectionParameters("localhost"))
    ch = conn.channel()
    ch.queue_declare(queue="hello")
    ch.queue_purge(queue="hello")
    yield ch
    try:
        ch.queue_delete(queue="hello")
    finally:
        conn.close()


@pytest.fixture
def local_name():
    name = f"shmring-pytest-hello-{os.getpid()}-{time.monotonic_ns()}"
    yield name
    try:
        os.unlink(os.path.join("/dev/shm", name))
    except FileNotFoundError:
        pass


def _start(args):
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)


def _stop(proc):
    """SIGINT (a bridge stops cleanly on it), then SIGKILL if it lingers."""
    if proc.poll() is None:
        proc.send_signal(2)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    out, err = proc.communicate()
    return out, err


def _line_from(proc, wanted):
    """Reads `proc`'s stdout until a line containing `wanted` (watchdog)."""
    deadline = time.monotonic() + LIMIT
    seen = []
    os.set_blocking(proc.stdout.fileno(), False)
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line:
            seen.append(line)
            if wanted in line:
                return line
            continue
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    pytest.fail(f"no line with {wanted!r} within {LIMIT} s; got {seen!r}")


def test_the_seeds_pika_producer_reaches_a_rust_consumer_through_bridge_in(binaries, hello, local_name):
    bridge = _start([binaries["shmring"], "bridge", "in", "--queue", "hello",
                     "--local", local_name])
    consumer = _start([binaries["hello_receive"], local_name, "--count", "1"])
    try:
        sent = subprocess.run([sys.executable, SEND], capture_output=True, text=True,
                              timeout=LIMIT, check=True)
        assert sent.stdout == " [x] Sent 'Hello World!'\n"
        out, err = consumer.communicate(timeout=LIMIT)
        assert consumer.returncode == 0, err
        assert out.splitlines()[-1] == " [x] Received 'Hello World!'", out
    finally:
        if consumer.poll() is None:
            consumer.kill()
            consumer.wait()
        _, berr = _stop(bridge)
    assert bridge.returncode == 0, berr
    assert "acked=1" in berr, berr
    # Acknowledged to the broker only after the local commit: nothing left.
    assert hello.queue_declare(queue="hello", passive=True).method.message_count == 0


def test_a_rust_producer_reaches_the_seeds_pika_consumer_through_bridge_out(binaries, hello, local_name):
    bridge = _start([binaries["shmring"], "bridge", "out", "--local", local_name,
                     "--queue", "hello"])
    consumer = _start([sys.executable, RECEIVE])
    try:
        _line_from(consumer, "Waiting for messages")
        sent = subprocess.run([binaries["hello_send"], local_name], capture_output=True,
                              text=True, timeout=LIMIT, check=True)
        assert sent.stdout == " [x] Sent 'Hello World!'\n"
        line = _line_from(consumer, "Received")
        assert line == " [x] Received b'Hello World!'\n"
    finally:
        consumer.kill()
        consumer.wait()
        _, berr = _stop(bridge)
    assert bridge.returncode == 0, berr
    assert "confirmed=1" in berr, berr


def test_both_ways_in_either_start_order(binaries, hello, local_name):
    """The consumer, the bridge and the producer started in the other order:
    the producer first (its message waits in the local queue), then the
    bridge, then the seeds' consumer."""
    sent = subprocess.run([binaries["hello_send"], local_name], capture_output=True,
                          text=True, timeout=LIMIT, check=True)
    assert sent.stdout == " [x] Sent 'Hello World!'\n"
    bridge = _start([binaries["shmring"], "bridge", "out", "--local", local_name,
                     "--queue", "hello"])
    try:
        consumer = _start([sys.executable, RECEIVE])
        try:
            line = _line_from(consumer, "Received")
            assert line == " [x] Received b'Hello World!'\n"
        finally:
            consumer.kill()
            consumer.wait()
    finally:
        _, berr = _stop(bridge)
    assert bridge.returncode == 0, berr
