"""Big legal commands under a write load: `KEYS *`, a full `SCAN`, a `DEL` of every key and a
large `SET`, against a 3-member catena chain and against redis-server in the same run.

Starts Debian's redis-server (no persistence) and a coordinator with three members (real
processes on free loopback ports, members registered with `--coordinator`, fsync everysec),
loads `--keys` keys into each (pipelined MSET), then, while a background writer SETs one key
at a time to the head and a pinger per process PINGs it, issues one after the other:

  KEYS *                    at the tail (redis: the server)
  SCAN 0 … COUNT 1000       over everything, at the tail
  DEL <every loaded key>    one command, at the head
  SET big <--value-mb MB>   at the head

and prints each command's latency, the longest write stall the background writer saw during
it, the longest gap between PING replies of each member, and whether the coordinator removed
anyone (its epoch and chain before and after). Expected: nobody removed.

    python bench/big_commands/run.py                     # 200,000 keys, 100 MB value (~60 s)
    python bench/big_commands/run.py --keys 1000000      # the full-size run (slower)

Every process it starts is stopped by PID at the end.
"""

from __future__ import annotations

import argparse
import importlib.util
import multiprocessing
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import redis

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("bench_client", HERE.parent / "client" / "run.py")
bc = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bc)  # its start_chain, and through it the throughput bench's processes
tp = bc.tp
HOST = tp.HOST


def connect(port: int, timeout: float = 120) -> redis.Redis:
    return redis.Redis(host=HOST, port=port, protocol=2, socket_timeout=timeout, socket_connect_timeout=10)


def load(port: int, n: int) -> list[bytes]:
    names = [b"big:%010d" % i for i in range(n)]
    with connect(port) as r:
        pipe = r.pipeline(transaction=False)
        for i in range(0, n, 1000):
            pipe.mset({k: b"v" * 16 for k in names[i:i + 1000]})
            if len(pipe) >= 20:
                pipe.execute()
        pipe.execute()
    return names


class Stamps(threading.Thread):
    """Calls `op` in a loop on its own connection; keeps (sent, answered) of each call."""

    def __init__(self, port: int, op):
        super().__init__(daemon=True)
        self.port, self.op = port, op
        self.calls: list[tuple[float, float]] = []
        self.errors: list[str] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        with connect(self.port, timeout=30) as r:
            i = 0
            while not self.stopping.is_set():
                sent = time.monotonic()
                try:
                    self.op(r, i)
                except redis.RedisError as exc:
                    self.errors.append(str(exc)[:120])
                self.calls.append((sent, time.monotonic()))
                i += 1

    def worst(self, start: float, end: float) -> float:
        """The longest call that overlapped [start, end] (a stall), in seconds."""
        return max((b - a for a, b in self.calls if b >= start and a <= end), default=float("nan"))


def big_commands(head: int, tail: int, names: list[bytes], value_mb: int) -> list[tuple]:
    """Run the four commands; per command (name, latency s, result check, (start, end))."""
    out = []
    with connect(head) as h, connect(tail) as t:
        def scan_all():
            seen, cursor = 0, 0
            while True:
                cursor, page = t.scan(cursor, count=1000)
                seen += len(page)
                if cursor == 0:
                    return seen
        steps = (
            ("KEYS *", lambda: len(t.keys("big:*")), len(names)),
            ("SCAN all", scan_all, None),  # the writer's keys come and go: at least the loaded ones
            (f"DEL {len(names)} keys", lambda: h.delete(*names), len(names)),
            (f"SET {value_mb} MB", lambda: h.set("big:value", b"x" * (value_mb << 20)), True),
        )
        for name, run, want in steps:
            if os.environ.get("CATENA_BENCH_TRACE"):  # to line up with the processes' logs
                print(f"# {time.strftime('%H:%M:%S')}.{int(time.time() * 1000) % 1000:03d} {name}", flush=True)
            started = time.monotonic()
            got = run()
            ended = time.monotonic()
            ok = got == want if want is not None else got >= len(names)
            out.append((name, ended - started, ok, (started, ended)))
    return out


def _write_bg(r, i):
    r.set(b"bg:%d" % (i % 1000), b"w")


def _ping(r, i):
    r.ping()


def _watch(head: int, others: list[int], conn) -> None:
    """The background writer and the pingers, in a process of their own (the big commands'
    client holds its interpreter's lock while it encodes a million arguments): run until told,
    then send back each one's (sent, answered) stamps and errors."""
    watchers = [Stamps(head, _write_bg), *(Stamps(p, _ping) for p in others)]
    for w in watchers:
        w.start()
    conn.send("started")
    conn.recv()
    for w in watchers:
        w.stopping.set()
        w.join(timeout=60)
    conn.send([(w.calls, w.errors) for w in watchers])


class Watched:
    """What the watcher process recorded, with Stamps' `worst`."""

    def __init__(self, calls):
        self.calls = calls

    worst = Stamps.worst


def measure(head: int, tail: int, others: list[int], n: int, value_mb: int) -> list[tuple]:
    names = load(head, n)
    ours, theirs = multiprocessing.get_context("fork").Pipe()
    watcher = multiprocessing.get_context("fork").Process(target=_watch, args=(head, others, theirs), daemon=True)
    watcher.start()
    stamps = []
    try:
        ours.recv()
        time.sleep(1.0)  # the load runs before the first big command
        timings = big_commands(head, tail, names, value_mb)
    finally:
        ours.send("stop")
        if ours.poll(90):
            stamps = ours.recv()
        watcher.join(timeout=10)
        if watcher.is_alive():
            watcher.kill()
    errors = [e for _, errs in stamps for e in errs]
    if errors:
        print(f"# {len(errors)} error replies during the run, first: {errors[0]}", flush=True)
    watched = [Watched(calls) for calls, _ in stamps]
    return [(name, took, ok, [w.worst(a, b) for w in watched]) for name, took, ok, (a, b) in timings]


def chain_state(coord: int) -> tuple[int, str]:
    status = tp.cli(coord, "MASTER.STATUS").splitlines()
    fields = dict(zip(status[0::2], status[1::2]))
    return int(fields.get("epoch", -1)), ",".join(tp.cli(coord, "MASTER.GET_CHAIN").split())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keys", type=int, default=200_000, help="keys loaded before the big commands")
    ap.add_argument("--value-mb", type=int, default=100, help="size of the big SET's value")
    args = ap.parse_args(argv)
    if shutil.which("redis-server") is None:
        print("redis-server is not installed (Debian: apt-get install redis-server redis-tools)", file=sys.stderr)
        return 2
    root = Path(tempfile.mkdtemp(prefix="catena-bench-big-"))
    procs = tp.Procs(root)
    taken: set[int] = set()
    failed = True
    try:
        redis_port = tp.free_port(taken)
        coord, *member_ports = [tp.free_port(taken) for _ in range(4)]
        tp.start_redis(procs, redis_port)
        chain = bc.start_chain(procs, coord, member_ports)
        ports = [int(a.rsplit(":", 1)[1]) for a in chain]
        print(f"# {args.keys} keys, {args.value_mb} MB value; redis-server on {redis_port}; catena chain "
              f"{','.join(chain)} (fsync everysec); {os.cpu_count()} CPUs", flush=True)
        theirs = measure(redis_port, redis_port, [redis_port], args.keys, args.value_mb)
        before = chain_state(coord)
        ours = measure(ports[0], ports[-1], ports, args.keys, args.value_mb)
        time.sleep(2.0)  # a removal decided late would show here
        after = chain_state(coord)
        roles = ("head", "middle", "tail")
        for (name, t_redis, ok_r, stalls_r), (_, t_ours, ok_o, stalls_o) in zip(theirs, ours):
            pings = "  ".join(f"{r} {s * 1000:.0f}" for r, s in zip(roles, stalls_o[1:]))
            print(f"{name:<16} redis {t_redis * 1000:7.0f} ms (write stall {stalls_r[0] * 1000:5.0f} ms)   "
                  f"catena {t_ours * 1000:7.0f} ms (write stall {stalls_o[0] * 1000:5.0f} ms; longest PING "
                  f"ms: {pings})   ratio_vs_redis={t_ours / t_redis:.1f}{'' if ok_r and ok_o else '  WRONG RESULT'}",
                  flush=True)
        removed = before != after
        print(f"coordinator: epoch {before[0]} -> {after[0]}, chain {before[1]} -> {after[1]}: "
              f"{'A MEMBER WAS REMOVED' if removed else 'nobody removed'}")
        failed = removed or not all(ok for *_, ok, _ in theirs + ours)
    except (RuntimeError, TimeoutError, redis.RedisError, AssertionError) as exc:
        print(f"bench failed: {exc!r}; logs kept in {root}", file=sys.stderr)
    finally:
        procs.stop_all()  # by PID, on every way out
    if failed or os.environ.get("CATENA_BENCH_KEEP"):
        print(f"# logs in {root}", file=sys.stderr)
        return 1
    shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
