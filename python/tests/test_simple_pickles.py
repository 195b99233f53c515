"""Simple objects (None, bool, int within 64 bits, float, str, bytes) are
pickled and unpickled without the pickle module: the bytes are still a
protocol-5 pickle that pickle.loads reads back, and anything else (other
types, subclasses, pickles made by pickle.dumps, malformed ones) goes
through pickle."""

import math
import pickle

import pytest

import shmring
from qhelpers import Hung, watchdog  # noqa: F401


class MyInt(int):
    pass


class MyStr(str):
    pass


VALUES = [
    None, True, False,
    0, 1, 255, 256, 65535, 65536, -1, -128, -129, -255, -256,
    2**31 - 1, -2**31, 2**31, -2**31 - 1, 2**32, 2**40, -2**40,
    2**63 - 1, -2**63, 2**63, -2**63 - 1, 10**30, -10**30,
    0.0, -0.0, 1.5, -2.25e-300, 1e308, math.inf, -math.inf,
    "", "a", "é" * 100, "x" * 255, "x" * 256, "日本語", "\ud800",
    b"", b"\x00" * 255, b"\xff" * 256, bytes(range(256)) * 400,
    MyInt(7), MyStr("sub"), [1, "two"], (3.0,), {"k": b"v"},
]


def same(a, b):
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return math.copysign(1, a) == math.copysign(1, b) and (a == b or (a != a and b != b))
    return a == b


@pytest.fixture(scope="module")
def pipe():
    return shmring.Pipe(duplex=False, max_message_size=1 << 20)


@pytest.mark.parametrize("value", VALUES + [math.nan], ids=repr)
def test_round_trip_through_queue_and_pipe(pipe, value):
    q = shmring.Queue(4, max_message_size=1 << 20)
    q.put(value)
    assert same(q.get(), value)
    q.put(value)
    assert same(q.get(copy=False), value)
    rx, tx = pipe
    tx.send(value)
    assert same(rx.recv(), value)
    # What `send` sends is a pickle: pickle.loads reads it back.
    tx.send(value)
    assert same(pickle.loads(rx.recv_bytes()), value)


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_pickles_from_pickle_dumps_are_read(pipe, value, protocol):
    rx, tx = pipe
    tx.send_bytes(pickle.dumps(value, protocol))
    assert same(rx.recv(), value)


def test_the_wire_format_is_the_protocol_5_opcodes(pipe):
    rx, tx = pipe
    for value, wire in [
        (None, b"\x80\x05N."),
        (True, b"\x80\x05\x88."),
        (5, b"\x80\x05K\x05."),
        (300, b"\x80\x05M\x2c\x01."),
        (-1, b"\x80\x05J\xff\xff\xff\xff."),
        (2**31, b"\x80\x05\x8a\x05\x00\x00\x00\x80\x00."),
        (1.5, b"\x80\x05G?\xf8\x00\x00\x00\x00\x00\x00."),
        ("hi", b"\x80\x05\x8c\x02hi."),
        (b"hi", b"\x80\x05C\x02hi."),
    ]:
        tx.send(value)
        assert rx.recv_bytes() == wire, value


@pytest.mark.parametrize("wire", [
    b"\x80\x05K.",             # BININT1 without its byte
    b"\x80\x05\x8c\x05hi.",    # a string shorter than its length
    b"\x80\x05\x8c\x02\xff\xfe.",  # not UTF-8
    b"\x80\x05\x8a\x09" + b"\x01" * 9 + b".",  # a 9-byte LONG1 (pickle reads it)
    b"\x80\x05Q.",             # not an opcode of a simple object
])
def test_other_shapes_go_to_pickle(pipe, wire):
    rx, tx = pipe
    tx.send_bytes(wire)
    try:
        expected = ("value", pickle.loads(wire))
    except Exception as e:  # noqa: BLE001
        expected = ("error", type(e))
    try:
        got = ("value", rx.recv())
    except Exception as e:  # noqa: BLE001
        got = ("error", type(e))
    assert got == expected
