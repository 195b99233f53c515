"""What the pool tests' workers run (a small module, so that a spawned
worker imports only this)."""

import os
import sys
import threading
import time


class CustomError(Exception):
    """An exception type of the test's own."""


def square(x):
    return x * x


def add(a, b):
    return a + b


def pid_and_square(x):
    return os.getpid(), x * x


def raise_value_error(x):
    raise ValueError("bad value %r" % (x,))


def raise_custom(x):
    raise CustomError(x)


def fail_on(bad, x):
    if x == bad:
        raise KeyError(x)
    return x


def return_lock(x):
    return threading.Lock()


def return_bytes(n):
    return b"x" * n


def sleep_return(seconds, value):
    time.sleep(seconds)
    return value


def mark_started_and_sleep(started, seconds):
    """Writes this worker's pid into the shared `started` value, then sleeps."""
    started.value = os.getpid()
    time.sleep(seconds)
    return "slept"


def mark_started_and_exit(started, code):
    started.value = os.getpid()
    os._exit(code)


def count_init(counter):
    """An initializer: counts workers started, and marks this one."""
    global INITIALIZED
    with counter.get_lock():
        counter.value += 1
    INITIALIZED = os.getpid()


def initialized(x):
    return globals().get("INITIALIZED") == os.getpid(), x


def failing_init():
    raise RuntimeError("initializer failed on purpose")


def print_started_and_sleep(seconds):
    print("started", os.getpid(), flush=True)
    time.sleep(seconds)
    return seconds


def child_main_guard():
    sys.exit(0)


def sleep_value(seconds):
    time.sleep(seconds)
    return seconds


class UnpicklableError(Exception):
    """An exception that holds a lock, so it cannot be pickled."""

    def __init__(self):
        super().__init__("holds a lock")
        self.lock = threading.Lock()


def raise_unpicklable(x):
    raise UnpicklableError()


def exit_at_init():
    os._exit(1)
