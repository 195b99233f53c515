"""Producer processes emit batches of float32 embedding vectors; a consumer
aggregates them (a running sum and a count). The same pipeline runs over
``shmring.Queue`` and over ``multiprocessing.Queue``, in one run, and prints
vectors per second for each, and whether both consumers computed the same
aggregate.

    python examples/python/embedding_pipeline.py [--producers 2] [--batches 400]
        [--batch 256] [--dim 384] [--start-method spawn]

Only the import differs between the two pipelines: ``shmring.Queue`` carries
each numpy batch out of band (pickle protocol 5: the array's bytes are copied
once into the queue's shared slot), where ``multiprocessing.Queue`` pickles
it into a byte string and writes that through a pipe. A third run has the
consumer read each batch in place, ``q.get(copy=False)``: the batch is a
read-only view of its slot, summed and dropped, so the producer's copy is
the only one.
"""

import argparse
import multiprocessing
import time

import numpy as np

import shmring


def produce(q, seed, batches, batch, dim):
    rng = np.random.default_rng(seed)
    for _ in range(batches):
        q.put(rng.standard_normal((batch, dim), dtype=np.float32))
    q.put(None)


def consume(q, out, producers, dim, in_place):
    """Aggregates until every producer said it is done; times the stream
    from its first batch (process start-up is not the queue's cost)."""
    total = np.zeros(dim, dtype=np.float64)
    count = 0
    done = 0
    first = None
    while done < producers:
        item = q.get(copy=False) if in_place else q.get()
        if item is None:
            done += 1
            continue
        if first is None:
            first = time.perf_counter()
            first_count = len(item)
        total += item.sum(axis=0, dtype=np.float64)
        count += len(item)
    elapsed = time.perf_counter() - first
    out.put((count, total.tobytes(), (count - first_count) / elapsed))


def run(ctx, make_queue, in_place, args):
    q = make_queue()
    out = ctx.Queue()
    consumer = ctx.Process(target=consume, args=(q, out, args.producers, args.dim, in_place))
    producers = [
        ctx.Process(target=produce, args=(q, seed, args.batches, args.batch, args.dim))
        for seed in range(args.producers)
    ]
    consumer.start()
    for p in producers:
        p.start()
    count, total, rate = out.get()
    for p in producers + [consumer]:
        p.join()
    return count, np.frombuffer(total), rate


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--producers", type=int, default=2)
    ap.add_argument("--batches", type=int, default=400)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--start-method", default="spawn")
    args = ap.parse_args()
    ctx = multiprocessing.get_context(args.start_method)
    # Room for a few batches in flight, as a bounded queue should have.
    depth = 8
    mb = args.batch * args.dim * 4 / 2**20
    print(
        f"{args.producers} producers x {args.batches} batches of {args.batch} x {args.dim} "
        f"float32 ({mb:.2f} MiB each), start method {args.start_method}"
    )
    results = {}
    shm = lambda: shmring.Queue(depth, max_message_size=int(mb * 2**20) + 4096)  # noqa: E731
    for name, make, in_place in [
        ("shmring.Queue", shm, False),
        ("shmring.Queue in place", shm, True),
        ("multiprocessing.Queue", lambda: ctx.Queue(depth), False),
    ]:
        count, total, rate = run(ctx, make, in_place, args)
        results[name] = (count, total, rate)
        print(f"{name:<22} {rate:>12,.0f} vectors/s  ({count} vectors)")
    (c1, t1, r1), (c2, t2, r2), (c3, t3, r3) = results.values()
    same = c1 == c2 == c3 and np.allclose(t1, t2) and np.allclose(t1, t3)
    print(f"shmring.Queue / multiprocessing.Queue: {r1 / r3:.1f}x (this run)")
    print(f"shmring.Queue in place / multiprocessing.Queue: {r2 / r3:.1f}x (this run)")
    print(f"same aggregate: {same}")
    if not same:
        raise SystemExit("the two pipelines disagree")


if __name__ == "__main__":
    main()
