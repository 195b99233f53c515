# The seed program, with shmring in place of concurrent.futures.
# Run: python pool_executor.py [start method].
import sys
from multiprocessing import set_start_method

import shmring


def worker(data):
    return data * data


if __name__ == '__main__':
    if len(sys.argv) > 1:
        set_start_method(sys.argv[1])
    with shmring.ProcessPoolExecutor() as executor:
        results = list(executor.map(worker, [1, 2, 3, 4, 5]))
    print(results)          # [1, 4, 9, 16, 25]
