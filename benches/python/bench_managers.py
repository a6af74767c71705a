"""Python's multiprocessing.managers on the workloads of benches/calls.rs.

A SyncManager serves the built-ins (dict, Value, Lock, Queue, list) and a
BaseManager serves a registered custom class, Counter, the twin of the
bench's #[shared] Counter. Each runs over a Unix domain socket (Python's
default on Linux) and over TCP loopback.

    python3 benches/python/bench_managers.py [--quick] [--tsv FILE]
    taskset -c 0 python3 benches/python/bench_managers.py   # the pinned rows

Pinned to one CPU it measures one client; unpinned it also measures 2 and 4
client processes (aggregate calls/s). Rows use the operation names of the
Rust summary so benches/run.sh can put them side by side; --tsv appends
them to FILE as: condition, socket, operation, what, calls per operation,
us per operation, calls per second.

Where Python has no equivalent, the closest thing a Python user writes:
- ValueProxy::fetch_add: `v.value += 1`, a get and a set (two round trips);
- 64-deep deferred incr: 64 plain incr calls (Python cannot pipeline).
"""

import argparse
import multiprocessing as mp
import os
import statistics
import sys
import time
from multiprocessing.managers import BaseManager, SyncManager

BIG = 8 << 20
DEPTH = 64
DICT_ENTRIES = 100_000
BATCH = 500


class Counter:
    """The twin of the bench's #[shared] Counter."""

    def __init__(self, start=0):
        self.value = start

    def get(self):
        return self.value

    def incr(self, by):
        self.value += by
        return self.value

    def size(self, data):
        return len(data)


class CounterManager(BaseManager):
    pass


CounterManager.register("Counter", Counter)


def address(transport):
    """None is a fresh Unix domain socket on Linux."""
    return None if transport == "uds" else ("127.0.0.1", 0)


def per_op(op, seconds, repeats):
    """Median seconds per call of op() over `repeats` timed batches."""
    n = 1
    while True:
        t = time.perf_counter()
        for _ in range(n):
            op()
        dt = time.perf_counter() - t
        if dt >= seconds / 5 or n >= 1 << 20:
            break
        n *= 2
    n = max(1, int(n * seconds / max(dt, 1e-9)))
    samples = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(n):
            op()
        samples.append((time.perf_counter() - t) / n)
    return statistics.median(samples)


def client_process(counter, cpu, barrier, seconds, results):
    """One of the multi-client rows' client processes."""
    try:
        os.sched_setaffinity(0, {cpu})
    except (AttributeError, OSError):
        pass
    for _ in range(2000):
        counter.get()
    barrier.wait()
    n = 0
    t = time.perf_counter()
    deadline = t + seconds
    while True:
        for _ in range(100):
            counter.get()
        n += 100
        now = time.perf_counter()
        if now >= deadline:
            break
    results.put(n / (now - t))


def aggregate(counter, clients, seconds, rounds):
    """Median over `rounds` fresh sets of processes of their summed calls/s."""
    cpus = len(os.sched_getaffinity(0))
    rates = []
    for _ in range(rounds):
        barrier = mp.Barrier(clients)
        results = mp.Queue()
        procs = [
            mp.Process(
                target=client_process,
                args=(counter, i % cpus, barrier, seconds, results),
            )
            for i in range(clients)
        ]
        for p in procs:
            p.start()
        total = sum(results.get(timeout=120) for _ in procs)
        for p in procs:
            p.join()
        rates.append(total)
    return statistics.median(rates)


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def dict_memory(m):
    """Server memory per entry of a dict of short str keys to ints."""
    d = m.dict()
    d.update({f"warm{i}": 0 for i in range(BATCH)})
    d.clear()
    pid = m._process.pid
    before = rss_bytes(pid)
    for start in range(0, DICT_ENTRIES, BATCH):
        d.update({f"key{i}": i for i in range(start, start + BATCH)})
    after = rss_bytes(pid)
    assert len(d) == DICT_ENTRIES
    return max(0, after - before) / DICT_ENTRIES


def run(transport, condition, args, emit):
    seconds, repeats = (0.05, 3) if args.quick else (0.2, 5)
    sync = SyncManager(address=address(transport))
    sync.start()
    custom = CounterManager(address=address(transport))
    custom.start()
    try:
        c = custom.Counter(0)
        d = sync.dict()
        v = sync.Value("q", 0)
        lock = sync.Lock()
        q = sync.Queue()

        def timed(op, what, calls, fn, secs=seconds):
            emit(condition, transport, op, what, calls, per_op(fn, secs, repeats) * 1e6)

        def dict_insert_get():
            d["key"] = 1
            return d["key"]

        def value_add():
            v.value += 1

        def lock_pair():
            lock.acquire()
            lock.release()

        def queue_pair():
            q.put(1)
            return q.get()

        def incr64():
            for _ in range(DEPTH):
                c.incr(1)

        data = bytes(BIG)

        timed("get", "c.get() [BaseManager]", 1, c.get)
        timed("incr", "c.incr(1) [BaseManager]", 1, lambda: c.incr(1))
        timed("dict_insert_get", "d[k] = 1; d[k]", 2, dict_insert_get)
        timed("value_fetch_add", "v.value += 1 (get + set)", 1, value_add)
        timed("lock_acquire_release", "acquire(); release()", 2, lock_pair)
        timed("queue_put_get", "q.put(1); q.get()", 2, queue_pair)
        timed("create_drop_list", "m.list(), dropped", 1, lambda: sync.list())
        timed("create_drop_counter", "m.Counter(0), dropped", 1, lambda: custom.Counter(0))
        timed("deferred64_incr", "64 plain incr calls", DEPTH, incr64)
        timed("arg_8MiB", "c.size(8 MiB bytes)", 1, lambda: c.size(data), secs=max(seconds, 0.5))
        if condition == "unpinned":
            secs = 0.3 if args.quick else 1.0
            for n in (2, 4):
                rate = aggregate(c, n, secs, 1 if args.quick else 3)
                emit(condition, transport, f"get_{n}clients",
                     f"c.get(), {n} client processes", 1, 1e6 / rate)
        if transport == "uds":
            emit(condition, transport, "dict_memory",
                 f"dict of {DICT_ENTRIES} str->int: server memory", 0, dict_memory(sync),
                 memory=True)
    finally:
        custom.shutdown()
        sync.shutdown()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="shorter measurements")
    p.add_argument("--tsv", help="append the rows to this file")
    p.add_argument("--transport", choices=["uds", "tcp"], action="append",
                   help="only this socket (repeatable); default both")
    args = p.parse_args()
    if mp.get_start_method(allow_none=True) is None:
        # fork: client processes inherit the proxy, as the Rust bench's
        # inherit a token.
        mp.set_start_method("fork")
    pinned = len(os.sched_getaffinity(0)) == 1
    condition = "pinned" if pinned else "unpinned"
    print(f"Python {sys.version.split()[0]} multiprocessing.managers, {condition}"
          + (" (1 client only)" if pinned else ""))
    print(f"{'sock':<4} {'operation':<22} {'what':<34} {'us/op':>10} {'calls/s':>10}")
    rows = []

    def emit(condition, transport, op, what, calls, value, memory=False):
        if memory:
            shown, rate = f"{value:.0f} B/entry", "-"
        else:
            shown, rate = f"{value:.2f}", f"{calls * 1e6 / value:.0f}"
        print(f"{transport:<4} {op:<22} {what:<34} {shown:>10} {rate:>10}", flush=True)
        rows.append("\t".join([condition, transport, op, what, str(calls),
                               f"{value:.3f}" if not memory else f"{value:.1f}", rate]))

    for transport in args.transport or ["uds", "tcp"]:
        run(transport, condition, args, emit)
    if args.tsv:
        with open(args.tsv, "a") as f:
            f.write("".join(r + "\n" for r in rows))


if __name__ == "__main__":
    main()
