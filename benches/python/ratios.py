"""The workloads of `cargo bench --bench ratios`, through Python's
multiprocessing managers (a SyncManager, and a BaseManager with a registered
custom class). Prints one JSON object: workload -> calls per second.

Run by benches/ratios.rs when python3 is on the machine; on its own:
    python3 benches/python/ratios.py
One-client workloads run with this process and its manager pinned to CPU 0,
as ours are.
"""

import json
import os
import sys
import time
from multiprocessing import Process, Queue as MpQueue
from multiprocessing.managers import BaseManager, SyncManager

N = int(os.environ.get("BENCH_N", "20000"))
N_MULTI = int(os.environ.get("BENCH_N_MULTI", "20000"))


class Counter:
    def __init__(self):
        self.value = 0

    def get(self):
        return self.value

    def incr(self, by):
        self.value += by
        return self.value


class CounterManager(BaseManager):
    pass


CounterManager.register("Counter", Counter)


def rate(n, f):
    start = time.perf_counter()
    for _ in range(n):
        f()
    return n / (time.perf_counter() - start)


def client(address, authkey, n, out):
    m = CounterManager(address=address, authkey=authkey)
    m.connect()
    c = m.Counter()
    start = time.perf_counter()
    for _ in range(n):
        c.get()
    out.put(time.perf_counter() - start)


def main():
    results = {}
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {0})
    with CounterManager() as cm, SyncManager() as sm:
        c = cm.Counter()
        results["small call"] = rate(N, c.get)
        results["mut call"] = rate(N, lambda: c.incr(1))
        d = sm.dict()

        def dict_insert_get():
            d["key"] = 1
            d["key"]

        results["dict insert+get"] = rate(N // 2, dict_insert_get) * 2
        v = sm.Value("q", 0)

        def value_add():
            v.value = v.value + 1

        results["value fetch_add"] = rate(N // 2, value_add)
        lock = sm.Lock()

        def lock_cycle():
            lock.acquire()
            lock.release()

        results["lock acquire+release"] = rate(N // 2, lock_cycle) * 2
        q = sm.Queue()

        def queue_cycle():
            q.put(1)
            q.get()

        results["queue put+get"] = rate(N // 2, queue_cycle) * 2
        results["create+drop"] = rate(N // 10, lambda: sm.list())
        big = bytes(8 << 20)
        start = time.perf_counter()
        for _ in range(5):
            sm.list([big])
        results["8 MiB argument ms"] = (time.perf_counter() - start) * 1e3 / 5

    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
    for clients in (2, 4):
        with CounterManager() as cm:
            out = MpQueue()
            procs = [
                Process(target=client, args=(cm.address, cm._authkey, N_MULTI, out))
                for _ in range(clients)
            ]
            start = time.perf_counter()
            for p in procs:
                p.start()
            for p in procs:
                p.join()
            results[f"{clients} clients"] = clients * N_MULTI / (time.perf_counter() - start)
    json.dump(results, sys.stdout)
    print()


if __name__ == "__main__":
    main()
