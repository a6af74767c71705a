"""Python's multiprocessing SyncManager on the scale probe of benches/scale.rs.

What idle peers and blocked waiters cost a Python manager process, read
from /proc/PID/status (Threads:, VmRSS:) and /proc/PID/stat (utime +
stime), so that the README can show Python's rows beside ours.

    python3 benches/python/scale_managers.py            # 10,000 idle, 1,000 + 1,000 waiters, 100,000 objects
    python3 benches/python/scale_managers.py --quick    # 500 idle, 100 + 100 waiters, 10,000 objects
    python3 benches/python/scale_managers.py --idle 2000 --waiters 500 --objects 50000 --tsv FILE

The manager is a SyncManager subclass serving a queue.Queue (`get_q`) and
a threading.Lock (`get_l`) over TCP on 127.0.0.1 with an authkey, in a
child process (fork) running `get_server().serve_forever()`; this process
connects to it as a remote client would. Rows:

- idle clients: --idle connections that each made one call (`qsize`),
  then stay idle; the manager's threads at the end of the burst and 5 s
  later, its resident memory per client, its CPU over 5 s of idleness.
  A proxy's connection is per manager address per thread, shared by every
  proxy of that thread, so one process cannot hold 10,000 proxy
  connections without 10,000 threads. Each idle client here is what a
  proxy's connection is on the wire: multiprocessing.connection.Client,
  then `accept_connection` (BaseProxy._connect) and one call
  (BaseProxy._callmethod), to the queue's id (the probe proxy's _token.id).
  The manager sees what 10,000 client processes with one proxy each would
  show it: a thread per connection.
- blocked waiters: --waiters threads block in `q.get()` and as many in
  `lock.acquire()` (the probe holds the lock), each with a proxy created
  in its thread and so a connection of its own (opened by a first call,
  `qsize()` or `acquire(False)`); the manager's threads and CPU over 5 s
  while they wait; then --waiters puts and the release (each acquirer
  releases for the next), and how long after the last put the last
  waiter had its reply. One with no reply within 30 s of the previous
  reply is reported, not waited for. (Dropping a proxy is a connection
  too, its decref: waiters drop theirs CONNECTING at a time.)
- objects: --objects Lock()s created through the manager (`m.Lock()`) by
  a client process (4 threads) that holds their proxies; creation stops
  after 60 s, and the row says how many were made.
- churn, before and after the objects: connect + one call + disconnect
  per second over 2 s. A Python client session (a new
  BaseManager(address, authkey).connect(), get_q(), one qsize(), drop the
  proxy: 6 TCP connections, for connect's dummy, create, incref, the
  temporary decref, the proxy's own connection and the final decref), in a
  fresh client process; and one connection (accept_connection, qsize,
  close), the like of ours, as it is and with TCP_NODELAY on the client
  socket. Then the wall time of 1,000 disconnects: 1,000 idle connections
  closed at once, until the manager's thread count is back.

Two things of Python 3.11 on Linux shape the probe:
- Each new connection's first request waits about 40 ms: the client
  sends its last handshake message and the request back to back, and
  Nagle holds the request until the manager's delayed ACK. Rows use stock
  connections, except the TCP_NODELAY rate and the object-making client
  (whose speed is not measured: only the objects it leaves matter).
- The manager listens with a backlog of 16 and speaks first; a client whose
  handshake ACK is dropped when the accept queue is full stays connected
  on its side, waiting forever. So this probe opens at most 12
  connections at a time (CONNECTING); a burst of 200 concurrent
  `get_q()`s left about half of them hung, and so did 1,000 waiters
  dropping their proxies at once.

Counts are capped by RLIMIT_NOFILE (raised to its hard limit), with a
note. A watchdog (SIGALRM, 20 min) ends a run that hangs; the manager and
every helper process are killed at the end, also on errors.

Output: one line per row, tab-separated (row name, then measurements),
after a header line. --tsv FILE appends one line per row, tab-separated:
`python`, `scale`, the row, then key=value fields:
    idle_clients     requested connected seconds threads_burst threads_after_5s
                     rss_bytes_per_client cpu_pct
    blocked_waiters  waiters blocked arrival_seconds threads_arrived
                     threads_after_5s cpu_pct
    wake_ups         waiters replied last_ms
    objects          requested created seconds
    churn            objects sessions_per_s connections_per_s
                     connections_nodelay_per_s disconnects disconnect_ms
                     (objects=0 first, then objects=created)
Seconds and milliseconds are wall time; cpu_pct is percent of one CPU;
waiters counts both kinds.
"""

import argparse
import os
import queue
import resource
import signal
import socket
import sys
import threading
import time
import multiprocessing as mp
import multiprocessing.managers as managers
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Client
from multiprocessing.managers import AcquirerProxy, SyncManager, dispatch

KEY = b"5ca1ab1e5ca1ab1e5ca1ab1e5ca1ab1e"
CONNECTING = 12  # connections opened at a time: below the backlog of 16
IDLE_SECONDS = 5.0
CHURN_SECONDS = 2.0
OBJECT_SECONDS = 60.0
OBJECT_THREADS = 4
DISCONNECTS = 1000
REPLY_TIMEOUT = 30.0
WATCHDOG_SECONDS = 20 * 60

# The manager's published objects. They live in the manager process: this
# module's copies there are the ones its clients reach.
_queue = queue.Queue()
_lock = threading.Lock()


def get_queue():
    return _queue


def get_lock():
    return _lock


class ScaleManager(SyncManager):
    """A SyncManager that also publishes one queue and one lock."""


ScaleManager.register("get_q", callable=get_queue)
ScaleManager.register("get_l", callable=get_lock, proxytype=AcquirerProxy)


# --- /proc ------------------------------------------------------------------


def status(pid, name):
    """Field `name` of /proc/PID/status as a number (kB for memory); 0 if gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(name):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def threads(pid):
    return status(pid, "Threads:")


def rss_kb(pid):
    return status(pid, "VmRSS:")


def cpu_seconds(pid):
    """User + system CPU time of process pid (fields 14 and 15 of stat)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            rest = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(rest[11]) + int(rest[12])) / os.sysconf("SC_CLK_TCK")


def cpu_share(pid, seconds):
    """The share of one CPU process pid uses over `seconds` from now."""
    before = cpu_seconds(pid)
    time.sleep(seconds)
    return (cpu_seconds(pid) - before) / seconds


def wait_threads(pid, done, timeout):
    """Polls pid's thread count until done(count) or the timeout; the count."""
    deadline = time.monotonic() + timeout
    n = threads(pid)
    while not done(n) and time.monotonic() < deadline:
        time.sleep(0.001)
        n = threads(pid)
    return n


# --- the manager and its clients ---------------------------------------------


def serve(conn):
    """The manager process: serves until killed."""
    server = ScaleManager(address=("127.0.0.1", 0), authkey=KEY).get_server()
    conn.send(server.address)
    conn.close()
    server.serve_forever()


def nodelay_client(address, family=None, authkey=None):
    """multiprocessing.connection.Client, then TCP_NODELAY on its socket:
    the first request no longer waits for the manager's delayed ACK."""
    c = Client(address, family, authkey)
    with socket.fromfd(c.fileno(), socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return c


class Peer:
    """One client connection to the manager, as a proxy's own connection is:
    accept_connection (BaseProxy._connect), then calls on object `ident`
    (BaseProxy._callmethod)."""

    def __init__(self, address, ident, nodelay=False):
        self.conn = (nodelay_client if nodelay else Client)(address, authkey=KEY)
        dispatch(self.conn, None, "accept_connection", ("scale-peer",))
        self.ident = ident

    def call(self, method, *args):
        self.conn.send((self.ident, method, args, {}))
        kind, result = self.conn.recv()
        if kind != "#RETURN":
            raise RuntimeError(f"{method}: {kind} {result}")
        return result

    def close(self):
        self.conn.close()


def connect_peers(address, ident, n):
    """n peers that each made one call, CONNECTING at a time; those that
    succeeded (failures are counted on stderr)."""

    def one(_):
        try:
            p = Peer(address, ident)
            p.call("qsize")
            return p
        except Exception as e:
            return e

    with ThreadPoolExecutor(CONNECTING) as pool:
        results = list(pool.map(one, range(n)))
    peers = [r for r in results if isinstance(r, Peer)]
    errors = [r for r in results if not isinstance(r, Peer)]
    if errors:
        e = errors[0]
        print(f"scale: {len(errors)} of {n} clients failed, the first with"
              f" {type(e).__name__}: {e}", file=sys.stderr)
    return peers


def session_churn(address, seconds, out):
    """Client process: Python client sessions (connect, get_q, one call,
    drop) for `seconds`; sends (sessions, elapsed, error)."""
    n, error = 0, ""
    t = time.monotonic()
    try:
        while time.monotonic() - t < seconds:
            m = ScaleManager(address=address, authkey=KEY)
            m.connect()
            q = m.get_q()
            q.qsize()
            # The process's last proxy to this manager: the decref, and this
            # thread's connection closes.
            del q, m
            n += 1
    except Exception as e:
        error = f"{type(e).__name__}: {e}"
    out.send((n, time.monotonic() - t, error))
    out.close()


def connection_churn(address, ident, seconds, nodelay):
    """One connection, one call, close, for `seconds`; per second."""
    n = 0
    t = time.monotonic()
    while time.monotonic() - t < seconds:
        p = Peer(address, ident, nodelay)
        p.call("qsize")
        p.close()
        n += 1
    return n / (time.monotonic() - t)


def hold_objects(address, n, seconds, out):
    """Client process: creates up to n Lock()s through the manager within
    `seconds` (OBJECT_THREADS threads, TCP_NODELAY connections), reports
    (created, elapsed, error), and holds their proxies until it is killed."""
    listener, _ = managers.listener_client["pickle"]
    managers.listener_client["pickle"] = (listener, nodelay_client)
    m = ScaleManager(address=address, authkey=KEY)
    held, errors = [], []
    t = time.monotonic()

    slots = iter(range(n))  # next() on it is atomic: no more than n in all

    def make():
        try:
            while next(slots, None) is not None and time.monotonic() - t < seconds:
                held.append(m.Lock())
        except Exception as e:
            errors.append(f"{type(e).__name__}: {e}")

    try:
        m.connect()
        makers = [threading.Thread(target=make, daemon=True) for _ in range(OBJECT_THREADS)]
        for h in makers:
            h.start()
        for h in makers:
            h.join(seconds + 60)
    except Exception as e:
        errors.append(f"{type(e).__name__}: {e}")
    out.send((len(held), time.monotonic() - t, "; ".join(errors[:2])))
    out.close()
    while True:
        time.sleep(3600)


# --- the rows ----------------------------------------------------------------


class Probe:
    def __init__(self, address, pid, emit):
        self.address, self.pid, self.emit = address, pid, emit
        self.helpers = []
        self.m = ScaleManager(address=address, authkey=KEY)
        self.m.connect()
        self.q = self.m.get_q()
        self.l = self.m.get_l()
        self.q.qsize()  # this thread's connection
        self.ident = self.q._token.id

    def idle_clients(self, n):
        pid = self.pid
        rest = threads(pid)
        rss0 = rss_kb(pid)
        t = time.monotonic()
        peers = connect_peers(self.address, self.ident, n)
        took = time.monotonic() - t
        busy = threads(pid)
        share = cpu_share(pid, IDLE_SECONDS)
        after = threads(pid)
        per = max(0, rss_kb(pid) - rss0) * 1024 // max(1, len(peers))
        print(
            f"idle clients\t{len(peers)} of {n} connected in {took:.1f} s ({CONNECTING} at a time)"
            f"\tmanager threads {busy} at the end of the burst, {after} after 5 s"
            f"\tRSS {per} B/client\tCPU {share * 100:.2f}% of one over 5 s",
            flush=True,
        )
        self.emit("idle_clients", requested=n, connected=len(peers), seconds=f"{took:.2f}",
                  threads_burst=busy, threads_after_5s=after, rss_bytes_per_client=per,
                  cpu_pct=f"{share * 100:.2f}")
        for p in peers:
            p.close()
        wait_threads(pid, lambda k: k <= rest, 60)

    def blocked_waiters(self, n):
        pid, m = self.pid, self.m
        rest = threads(pid)
        self.l.acquire()
        replies = queue.Queue()
        connecting = threading.BoundedSemaphore(CONNECTING)
        arrived = []  # list.append is atomic
        failures = []

        def waiter(kind):
            try:
                if kind == "get":
                    with connecting:
                        p = m.get_q()
                        p.qsize()  # opens this thread's connection
                    arrived.append(1)
                    p.get()
                    replies.put(time.monotonic())
                else:
                    with connecting:
                        p = m.get_l()
                        p.acquire(False)  # opens it; the probe holds the lock
                    arrived.append(1)
                    p.acquire()
                    replies.put(time.monotonic())
                    p.release()
                with connecting:
                    del p  # its decref is a connection too
            except Exception as e:
                failures.append(f"{kind}: {type(e).__name__}: {e}")

        t = time.monotonic()
        handles = []
        for i in range(2 * n):
            h = threading.Thread(target=waiter, args=("get" if i % 2 == 0 else "acquire",),
                                 daemon=True)
            h.start()
            handles.append(h)
        deadline = time.monotonic() + 300
        while len(arrived) + len(failures) < 2 * n and time.monotonic() < deadline:
            time.sleep(0.01)
        # The short-lived create/incref/decref threads come and go; the
        # waiters' connections stay.
        busy = wait_threads(pid, lambda k: k <= rest + len(arrived), 10)
        took = time.monotonic() - t
        time.sleep(0.5)
        blocked = min(len(arrived), max(0, threads(pid) - rest))
        share = cpu_share(pid, IDLE_SECONDS)
        after = threads(pid)
        print(
            f"blocked waiters\t{blocked} blocked ({n} get + {n} acquire) in {took:.1f} s"
            f" ({CONNECTING} connecting at a time)"
            f"\tmanager threads {busy} as they arrived, {after} after 5 s"
            f"\tCPU {share * 100:.2f}% of one over 5 s while they wait",
            flush=True,
        )
        self.emit("blocked_waiters", waiters=2 * n, blocked=blocked,
                  arrival_seconds=f"{took:.2f}", threads_arrived=busy,
                  threads_after_5s=after, cpu_pct=f"{share * 100:.2f}")

        for i in range(n):
            self.q.put(i)
        last_put = time.monotonic()
        self.l.release()  # each acquirer releases for the next
        last, got = last_put, 0
        while got < 2 * n:
            try:
                at = replies.get(timeout=REPLY_TIMEOUT)
            except queue.Empty:
                break
            got += 1
            last = max(last, at)
        ms = (last - last_put) * 1000
        print(
            f"wake-ups\t{got} of {2 * n} waiters had their reply, the last {ms:.0f} ms after"
            f" the last put (lock waiters woken in turn, each releasing for the next)",
            flush=True,
        )
        self.emit("wake_ups", waiters=2 * n, replied=got, last_ms=f"{ms:.0f}")
        for f in failures[:5]:
            print(f"scale: waiter failed: {f}", file=sys.stderr)
        deadline = time.monotonic() + 30
        for h in handles:
            h.join(timeout=max(0.0, deadline - time.monotonic()))
        wait_threads(pid, lambda k: k <= rest, 30)

    def start_helper(self, target, *args):
        # Spawned, not forked: a forked child would inherit this process's
        # proxies, which incref themselves there and keep its connection
        # to the manager open (a proxy connection closes with the process's
        # last proxy).
        ctx = mp.get_context("spawn")
        ours, theirs = ctx.Pipe(duplex=False)
        p = ctx.Process(target=target, args=(*args, theirs), daemon=True)
        p.start()
        theirs.close()
        self.helpers.append(p)
        return p, ours

    def churn(self, objects):
        pid = self.pid
        p, results = self.start_helper(session_churn, self.address, CHURN_SECONDS)
        if results.poll(CHURN_SECONDS + 60):
            sessions, elapsed, error = results.recv()
        else:
            sessions, elapsed, error = 0, 1.0, "no answer in 60 s"
        p.join(timeout=10)
        if error:
            print(f"scale: session churn: {error}", file=sys.stderr)
        session_rate = sessions / elapsed
        conn_rate = connection_churn(self.address, self.ident, CHURN_SECONDS, False)
        nodelay_rate = connection_churn(self.address, self.ident, CHURN_SECONDS, True)

        rest = wait_threads(pid, lambda k: False, 0.2)
        peers = connect_peers(self.address, self.ident, DISCONNECTS)
        wait_threads(pid, lambda k: k >= rest + len(peers), 30)
        t = time.monotonic()
        for c in peers:
            c.close()
        wait_threads(pid, lambda k: k <= rest, 60)
        ms = (time.monotonic() - t) * 1000
        print(
            f"churn, {objects} objects\t{session_rate:.0f} sessions/s (BaseManager.connect(),"
            f" get_q(), one call, drop: 6 TCP connections)\t{conn_rate:.0f} connect + one call"
            f" + disconnect/s on one connection, {nodelay_rate:.0f}/s with TCP_NODELAY"
            f"\t{len(peers)} disconnects in {ms:.0f} ms",
            flush=True,
        )
        self.emit("churn", objects=objects, sessions_per_s=f"{session_rate:.0f}",
                  connections_per_s=f"{conn_rate:.0f}",
                  connections_nodelay_per_s=f"{nodelay_rate:.0f}", disconnects=len(peers),
                  disconnect_ms=f"{ms:.0f}")

    def objects(self, n):
        """Starts the process holding n Lock()s; how many it made."""
        p, results = self.start_helper(hold_objects, self.address, n, OBJECT_SECONDS)
        if results.poll(OBJECT_SECONDS + 120):
            made, elapsed, error = results.recv()
        else:
            made, elapsed, error = 0, 0.0, "no answer"
        if error:
            print(f"scale: creating objects: {error}", file=sys.stderr)
        capped = f" (of {n} asked; creation stops after {OBJECT_SECONDS:.0f} s)" if made < n else ""
        print(
            f"objects\t{made} Lock()s created through the manager in {elapsed:.1f} s"
            f" ({made / max(elapsed, 1e-9):.0f}/s){capped}, held by a client process",
            flush=True,
        )
        self.emit("objects", requested=n, created=made, seconds=f"{elapsed:.1f}")
        return made


def raise_fd_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    return soft if soft != resource.RLIM_INFINITY else hard


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--idle", type=int, help="idle clients (default 10000)")
    ap.add_argument("--waiters", type=int, help="waiters of each kind (default 1000)")
    ap.add_argument("--objects", type=int, help="objects alive for churn (default 100000)")
    ap.add_argument("--quick", action="store_true", help="idle 500, waiters 100, objects 10000")
    ap.add_argument("--tsv", help="append machine-readable rows to this file")
    args = ap.parse_args()
    idle = args.idle if args.idle is not None else (500 if args.quick else 10_000)
    waiters = args.waiters if args.waiters is not None else (100 if args.quick else 1_000)
    objects = args.objects if args.objects is not None else (10_000 if args.quick else 100_000)

    # Each connection is a descriptor here and one in the manager, which
    # inherits this limit.
    limit = raise_fd_limit()
    if idle > limit - 200:
        print(f"note: --idle {idle} capped at {limit - 200} (RLIMIT_NOFILE {limit})")
        idle = limit - 200
    if waiters > (limit - 200) // 2:
        print(f"note: --waiters {waiters} capped at {(limit - 200) // 2} (RLIMIT_NOFILE {limit})")
        waiters = (limit - 200) // 2

    def emit(row, **fields):
        if args.tsv:
            with open(args.tsv, "a") as f:
                f.write("\t".join(["python", "scale", row]
                                  + [f"{k}={v}" for k, v in fields.items()]) + "\n")

    def watchdog(signum, frame):
        raise TimeoutError(f"the probe ran over {WATCHDOG_SECONDS} s")

    signal.signal(signal.SIGALRM, watchdog)
    signal.alarm(WATCHDOG_SECONDS)

    ours, theirs = mp.Pipe(duplex=False)
    manager = mp.Process(target=serve, args=(theirs,), daemon=True)
    manager.start()
    theirs.close()
    probe = None
    try:
        if not ours.poll(30):
            raise RuntimeError("the manager process did not listen within 30 s")
        address = ours.recv()
        pid = manager.pid
        probe = Probe(address, pid, emit)
        time.sleep(0.5)
        print(
            f"== Python SyncManager scale probe (manager pid {pid}, TCP, {os.cpu_count()} vCPUs);"
            f" Python {sys.version.split()[0]}; manager at rest: {threads(pid)} threads,"
            f" {rss_kb(pid)} kB",
            flush=True,
        )
        probe.idle_clients(idle)
        probe.blocked_waiters(waiters)
        probe.churn(0)
        probe.churn(probe.objects(objects))
    finally:
        signal.alarm(0)
        for p in ([] if probe is None else probe.helpers) + [manager]:
            if p.is_alive():
                p.kill()
            p.join(timeout=10)


if __name__ == "__main__":
    main()
