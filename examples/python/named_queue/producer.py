"""A producer started on its own (a shell, a service manager): puts
``COUNT`` numbered jobs into the shmring queue named ``NAME``, creating it
if no program has yet. Start it before or after ``consumer.py``, restart
either: jobs not taken wait in the queue.

    python producer.py NAME COUNT [FIRST]
"""

import sys

import shmring


def main():
    name, count = sys.argv[1], int(sys.argv[2])
    first = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    jobs = shmring.Queue(100, name=name)
    for i in range(first, first + count):
        jobs.put({"job": i, "payload": "x" * (i % 7)})
    print("put %d jobs into %s" % (count, name), flush=True)


if __name__ == "__main__":
    main()
