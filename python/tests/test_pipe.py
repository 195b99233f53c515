"""shmring.Pipe: the seeds' programs under every start method, EOF on a
closed or killed peer, the bytes API, Ctrl-C, the GIL."""

import array
import multiprocessing
import os
import re
import signal
import threading
import time

import numpy as np
import pytest

import shmring
from qhelpers import START_METHODS, no_shm_left, run_program, watchdog  # noqa: F401

# seeds/003: the child sends "Hello ~" twice and closes; the parent reads
# both, and (added here) a third recv raises EOFError.
SEED_003_PIPE = """
import multiprocessing
from multiprocessing import current_process
from shmring import Pipe

def child(conn):
    str_send = "Hello ~"
    print(f'{current_process().name} 发送消息:{str_send}', flush=True)
    conn.send(str_send)
    conn.send(str_send)
    conn.close()

if __name__ == '__main__':
    ctx = multiprocessing.get_context(METHOD)
    parent_conn, child_conn = Pipe()
    p = ctx.Process(target=child, args=(child_conn,))
    p.start()
    print(f"{current_process().name} 接受到消息:{parent_conn.recv()}", flush=True)
    print(f"{current_process().name} 接受到消息:{parent_conn.recv()}", flush=True)
    try:
        parent_conn.recv()
    except EOFError:
        print("EOFError", flush=True)
    parent_conn.close()
    p.join()
"""


@pytest.mark.parametrize("method", START_METHODS)
def test_seed_hello_twice_then_eof(method):
    lines = run_program(SEED_003_PIPE, method)
    # The context's process class names the child (ForkProcess-1, ...).
    lines = [re.sub(r"^\w*Process-1 ", "Process-1 ", l) for l in lines]
    assert sorted(lines) == sorted([
        "Process-1 发送消息:Hello ~",
        "MainProcess 接受到消息:Hello ~",
        "MainProcess 接受到消息:Hello ~",
        "EOFError",
    ])
    assert lines[-1] == "EOFError"


# seeds/001: the child gets both ends, closes the input end, reads until
# EOFError; the parent closes the output end, sends 0..9, closes.
SEED_001_PIPE = """
import os
import multiprocessing
from shmring import Pipe

def sub_process(parentid, pipe):
    print('子程序執行 %s 父程序 %s' % (os.getpid(), parentid), flush=True)
    out_pipe, in_pipe = pipe
    in_pipe.close()
    while True:
        try:
            msg = out_pipe.recv()
            print('out pipe : %s' % msg, flush=True)
        except EOFError:
            break

if __name__ == '__main__':
    ctx = multiprocessing.get_context(METHOD)
    print('主程序執行 %s' % os.getpid(), flush=True)
    out_pipt, in_pipe = Pipe(True)
    subprocess = ctx.Process(target=sub_process, args=(os.getpid(), (out_pipt, in_pipe)))
    subprocess.start()
    out_pipt.close()
    for i in range(10):
        in_pipe.send(i)
    in_pipe.close()
    subprocess.join()
    print('主程序結束 %s' % os.getpid(), flush=True)
"""


@pytest.mark.parametrize("method", START_METHODS)
def test_seed_reader_until_eof(method):
    lines = run_program(SEED_001_PIPE, method)
    assert re.fullmatch(r"主程序執行 \d+", lines[0])
    assert re.fullmatch(r"子程序執行 \d+ 父程序 \d+", lines[1])
    assert lines[2:12] == [f"out pipe : {i}" for i in range(10)]
    assert re.fullmatch(r"主程序結束 \d+", lines[12]) and len(lines) == 13


# -------------------------------------------------------------- in-process

def test_duplex_objects_and_bytes():
    a, b = shmring.Pipe()
    assert a.readable and a.writable and b.readable and b.writable
    a.send({"x": [1, 2]})
    assert b.recv() == {"x": [1, 2]}
    b.send_bytes(b"hello world", 6)
    assert a.recv_bytes() == b"world"
    b.send_bytes(bytearray(b"0123456789"), 2, 3)
    assert a.recv_bytes() == b"234"
    arr = array.array("i", [1, 2, 3])
    b.send_bytes(arr)
    assert a.recv_bytes() == arr.tobytes()
    # send() of an object is its pickle, as in multiprocessing.
    b.send("s")
    import pickle
    assert pickle.loads(a.recv_bytes()) == "s"
    b.send_bytes(pickle.dumps(("t", 1)))
    assert a.recv() == ("t", 1)
    with pytest.raises(ValueError):
        b.send_bytes(b"abc", 4)
    with pytest.raises(ValueError):
        b.send_bytes(b"abc", 1, 3)
    with pytest.raises(ValueError):
        b.send_bytes(b"abc", -1)


def test_recv_bytes_into_and_buffer_too_short():
    a, b = shmring.Pipe()
    buf = bytearray(10)
    b.send_bytes(b"abc")
    assert a.recv_bytes_into(buf, 2) == 3
    assert buf[:5] == b"\0\0abc"
    b.send_bytes(b"x" * 20)
    with pytest.raises(multiprocessing.BufferTooShort) as e:
        a.recv_bytes_into(buf)
    assert e.value.args[0] == b"x" * 20
    out = np.zeros(4, dtype=np.int64)
    b.send_bytes(np.arange(4, dtype=np.int64))
    assert a.recv_bytes_into(out) == 32
    assert list(out) == [0, 1, 2, 3]
    with pytest.raises(ValueError):
        a.recv_bytes_into(buf, 11)
    with pytest.raises((TypeError, BufferError)):
        a.recv_bytes_into(b"read-only")


def test_recv_bytes_maxlength():
    a, b = shmring.Pipe()
    b.send_bytes(b"x" * 100)
    with pytest.raises(OSError, match="bad message length"):
        a.recv_bytes(10)
    assert a.closed


def test_poll():
    a, b = shmring.Pipe()
    assert a.poll() is False
    assert a.poll(0.05) is False
    b.send(1)
    assert a.poll() is True
    assert a.poll(None) is True
    assert a.recv() == 1
    b.close()
    assert a.poll(1) is True  # at EOF: recv raises at once
    with pytest.raises(EOFError):
        a.recv()


def test_one_way_pipe():
    r, w = shmring.Pipe(duplex=False)
    assert r.readable and not r.writable
    assert w.writable and not w.readable
    w.send("one way")
    assert r.recv() == "one way"
    with pytest.raises(OSError):
        r.send(1)
    with pytest.raises(OSError):
        w.recv()


def test_close_and_eof_and_broken_pipe():
    a, b = shmring.Pipe()
    b.send(1)
    b.send(2)
    b.close()
    assert b.closed
    with pytest.raises(OSError):
        b.send(3)
    assert a.recv() == 1 and a.recv() == 2
    with pytest.raises(EOFError):
        a.recv()
    with pytest.raises(EOFError):
        a.recv_bytes()
    with pytest.raises(BrokenPipeError):
        a.send("nobody")
    a.close()
    a.close()  # twice is fine


def test_context_manager_and_gc_close():
    a, b = shmring.Pipe()
    with b:
        b.send("x")
    assert b.closed
    assert a.recv() == "x"
    with pytest.raises(EOFError):
        a.recv()
    c, d = shmring.Pipe()
    d.send("y")
    del d  # garbage-collected: closed, as a multiprocessing connection
    assert c.recv() == "y"
    with pytest.raises(EOFError):
        c.recv()


def test_message_too_large():
    a, b = shmring.Pipe(max_message_size=1024)
    with pytest.raises(ValueError, match="max_message_size"):
        a.send_bytes(b"x" * 2000)
    a.send_bytes(b"x" * 1024)
    assert b.recv_bytes() == b"x" * 1024


def test_full_buffer_blocks_then_ctrl_c():
    a, b = shmring.Pipe(capacity=2)
    a.send(1)
    a.send(2)
    pid = os.getpid()
    t = threading.Timer(0.2, lambda: os.kill(pid, signal.SIGINT))
    t.start()
    with pytest.raises(KeyboardInterrupt):
        a.send(3)
    t.join()
    assert b.recv() == 1


def test_ctrl_c_interrupts_a_blocked_recv():
    a, b = shmring.Pipe()
    b.send("warm")  # the peer is attached: recv would wait for ever
    assert a.recv() == "warm"
    pid = os.getpid()
    t = threading.Timer(0.2, lambda: os.kill(pid, signal.SIGINT))
    t.start()
    with pytest.raises(KeyboardInterrupt):
        a.recv()
    t.join()
    b.send("after")
    assert a.recv() == "after"


def test_gil_released_while_recv_blocks():
    a, b = shmring.Pipe()
    got = []
    t = threading.Thread(target=lambda: got.append(a.recv()))
    t.start()
    count = 0
    end = time.monotonic() + 0.3
    while time.monotonic() < end:
        count += 1
    b.send("x")
    t.join()
    assert got == ["x"] and count > 1000


def test_spin_pipe():
    a, b = shmring.Pipe(spin=True)
    for i in range(100):
        a.send(i)
        assert b.recv() == i
        b.send_bytes(b"r")
        assert a.recv_bytes() == b"r"


# -------------------------------------------------------- across processes

def streamer(conn):
    i = 0
    while True:
        conn.send(i)
        i += 1
        if i % 100 == 0:
            time.sleep(0.001)


@pytest.mark.parametrize("method", START_METHODS)
def test_peer_killed_mid_stream_gives_eof(method):
    ctx = multiprocessing.get_context(method)
    parent, child = shmring.Pipe(capacity=16)
    p = ctx.Process(target=streamer, args=(child,))
    p.start()
    child.close()
    for i in range(200):
        assert parent.recv() == i
    os.kill(p.pid, signal.SIGKILL)
    p.join(60)
    expect = 200
    with pytest.raises(EOFError):
        while True:  # what it sent before dying, in order, then EOF
            assert parent.recv() == expect
            expect += 1


def sleeper(conn):
    conn.send("attached")
    time.sleep(600)


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_blocked_recv_sees_a_killed_peer(method):
    ctx = multiprocessing.get_context(method)
    parent, child = shmring.Pipe()
    p = ctx.Process(target=sleeper, args=(child,))
    p.start()
    assert parent.recv() == "attached"
    threading.Timer(0.3, lambda: os.kill(p.pid, signal.SIGKILL)).start()
    with pytest.raises(EOFError):
        parent.recv()  # blocked when the peer dies
    p.join(60)


def echo(conn):
    while True:
        try:
            x = conn.recv()
        except EOFError:
            break
        conn.send(x)


@pytest.mark.parametrize("method", START_METHODS)
def test_numpy_echo_across_processes(method):
    ctx = multiprocessing.get_context(method)
    a, b = shmring.Pipe()
    p = ctx.Process(target=echo, args=(b,))
    p.start()
    b.close()
    arrays = [np.arange(1 << 20, dtype=np.uint8),
              np.linspace(0, 1, 1000)[::7],
              np.array([np.nan, -0.0, np.inf], dtype=np.float64)]
    for x in arrays:
        a.send(x)
        y = a.recv()
        assert y.tobytes() == x.tobytes() and y.dtype == x.dtype and y.shape == x.shape
    a.close()
    p.join(60)
    assert p.exitcode == 0
