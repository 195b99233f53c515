"""What the workers of test_initargs.py run: module-level, so that spawn
and forkserver children import only this small module."""

import shmring

_handles = {}


def keep(q, conn, value, arr, lock, d):
    """Initializer: keep the handles the pool's worker was given."""
    _handles.update(q=q, conn=conn, value=value, arr=arr, lock=lock, d=d)


def work(i):
    """A task: uses every handle the initializer kept."""
    h = _handles
    with h["lock"]:
        h["value"].value += 1
    h["arr"][i] = i * i
    h["d"][i] = "w%d" % i
    h["q"].put(("task", i))
    return i


def send_on_conn(_):
    """A task: one message over the Pipe end the initializer kept."""
    _handles["conn"].send("from the pool")
    return True
