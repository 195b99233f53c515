# The seed's program (its second version), with shmring in place of
# multiprocessing: five processes add 1 to a shared Value under a Lock.
# Run: python value_lock.py [start method]; the sleep is shortened.
import sys
import time
from multiprocessing import Process, current_process, set_start_method

from shmring import Lock, Value


def process_with_shared_resource(shared_resource, lock):
    name = current_process().name
    lock.acquire()
    try:
        print(f"{name} 获取当前共享变量: {shared_resource.value}", flush=True)
        shared_resource.value += 1
        time.sleep(0.01)
        print(f"{name} 更新后的共享变量: {shared_resource.value}", flush=True)
    finally:
        lock.release()


if __name__ == "__main__":
    if len(sys.argv) > 1:
        set_start_method(sys.argv[1])
    shared_resource = Value("i", 0)
    lock = Lock()
    processes = []
    for _ in range(5):
        p = Process(target=process_with_shared_resource, args=(shared_resource, lock))
        processes.append(p)
        p.start()
    for p in processes:
        p.join()
    print(f"最终变量值: {shared_resource.value}")
