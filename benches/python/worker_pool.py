"""The worker pool of examples/worker_pool.rs, with Python's multiprocessing
manager: worker processes take jobs from a shared JoinableQueue, write each
result into a shared dict, and count the jobs done in a shared Value guarded
by a shared Lock. The parent waits with join() until every job is done.

    python3 benches/python/worker_pool.py
"""

import multiprocessing as mp
import sys
import time

WORKERS = 4
JOBS = 2_000


def count_primes(n):
    """The number of primes in 2..=n, the slow way: a job worth sending."""
    count = 0
    for k in range(2, n + 1):
        d = 2
        while d * d <= k:
            if k % d == 0:
                break
            d += 1
        else:
            count += 1
    return count


def worker(me, jobs, results, lock, counter):
    """Takes jobs until told to stop (None)."""
    while True:
        n = jobs.get()
        if n is None:
            jobs.task_done()
            return
        results[n] = (me, count_primes(n))
        with lock:  # a read-modify-write that only the lock makes safe
            counter.value = counter.value + 1
        jobs.task_done()


def main():
    started = time.perf_counter()
    with mp.Manager() as mgr:  # the manager runs as its own process
        jobs = mgr.JoinableQueue(64)
        results = mgr.dict()
        lock = mgr.Lock()
        counter = mgr.Value("Q", 0)
        children = [
            mp.Process(target=worker, args=(me, jobs, results, lock, counter))
            for me in range(WORKERS)
        ]
        for c in children:
            c.start()
        for n in range(1, JOBS + 1):
            jobs.put(n)  # waits while the queue is full
        jobs.join()  # returns once every job is marked done
        elapsed = time.perf_counter() - started
        for _ in range(WORKERS):
            jobs.put(None)
        for c in children:
            c.join()
            if c.exitcode != 0:
                sys.exit(f"a worker failed: {c.exitcode}")

        per_worker = [0] * WORKERS
        wrong = 0
        for n, (who, primes) in results.items():
            if primes != count_primes(n):
                wrong += 1
            per_worker[who] += 1
        for who, count in enumerate(per_worker):
            print(f"worker {who} did {count} jobs")
        print(f"primes up to {JOBS}: {results[JOBS][1]}")
        done = counter.value
        print(f"{done} jobs counted, {len(results)} results, {wrong} wrong, "
              f"in {elapsed * 1000:.0f}ms")
        if done != JOBS or sum(per_worker) != JOBS or wrong != 0:
            sys.exit("the pool lost, repeated or miscomputed a job")


if __name__ == "__main__":
    mp.set_start_method("spawn")  # as the Rust version: fresh processes
    main()
