"""A consumer started on its own: takes ``COUNT`` jobs from the shmring
queue named ``NAME`` (opening it, or creating it if it starts first, then
waiting for a producer), prints each job's number, and with ``--unlink``
removes the queue's name at the end.

    python consumer.py NAME COUNT [--unlink]
"""

import sys

import shmring


def main():
    name, count = sys.argv[1], int(sys.argv[2])
    jobs = shmring.Queue(100, name=name)
    for _ in range(count):
        job = jobs.get(timeout=60)
        print(job["job"], flush=True)
    if "--unlink" in sys.argv[3:]:
        shmring.Queue.unlink(name)


if __name__ == "__main__":
    main()
