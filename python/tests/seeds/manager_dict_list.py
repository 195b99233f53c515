# The seed's Manager program, with shmring in place of multiprocessing's
# Manager. Run: python manager_dict_list.py [start method].
import sys
from multiprocessing import Process, current_process, set_start_method

from shmring import Manager


def f(d, l):
    d[1] = '1'
    d['2'] = 2
    d[0.25] = None
    l.reverse()


if __name__ == '__main__':
    if len(sys.argv) > 1:
        set_start_method(sys.argv[1])
    with Manager() as manager:
        d = manager.dict()
        l = manager.list(range(10))
        print(f"{current_process().name} dict: {d}")
        print(f"{current_process().name} list: {l}")

        p = Process(target=f, args=(d, l))
        p.start()
        p.join()

        print(f"{current_process().name} dict: {d}")
        print(f"{current_process().name} list: {l}")
