"""Memory and speed of the collection types: a 3-member catena chain against Redis, same run.

Starts redis-server (no persistence) and a catena chain (coordinator + 3 members, fsync
everysec) on free loopback ports with bench/throughput's helpers, then

  * loads one list (RPUSH), sorted set (ZADD, scores 0..M-1), hash (HSET, 16-byte values) and
    set (SADD) of M 16-byte elements each, 1,000 per command, into each, pipelined, and prints
    the resident-memory growth per element (catena: the largest of its members);
  * runs `redis-benchmark -t lpush,zadd,hset,sadd -n N -c 50 -P 1` against Redis and the
    chain's head and prints ops/s with ratio_vs_redis.

    python bench/types/run.py             # M=1000000, N=50000
    python bench/types/run.py --quick     # M=100000,  N=20000

Every process it starts is stopped by PID at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import importlib.util
import io
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from catena.loopback import HOST

_spec = importlib.util.spec_from_file_location("throughput", Path(__file__).parent.parent / "throughput" / "run.py")
tp = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tp)

PER_COMMAND = 1000
WINDOW = 10  # commands in flight


def _command(*words: bytes) -> bytes:
    return b"*%d\r\n" % len(words) + b"".join(b"$%d\r\n%s\r\n" % (len(w), w) for w in words)


def load(port: int, kind: str, count: int) -> None:
    """One list, zset, hash or set (`kind`) of `count` 16-byte elements at key `kind`,
    WINDOW commands of PER_COMMAND elements in flight at a time (a whole 1M-element pipeline in
    one read would hold a member's loop for seconds)."""
    sock = socket.create_connection((HOST, port), timeout=300)
    try:
        starts = list(range(0, count, PER_COMMAND))
        for w in range(0, len(starts), WINDOW):
            batch = []
            for start in starts[w:w + WINDOW]:
                ids = range(start, min(count, start + PER_COMMAND))
                if kind == "list":
                    words = [b"RPUSH", b"list", *(b"e:%014d" % i for i in ids)]
                elif kind == "zset":
                    words = [b"ZADD", b"zset", *(w for i in ids for w in (b"%d" % i, b"m:%014d" % i))]
                elif kind == "hash":
                    words = [b"HSET", b"hash", *(w for i in ids for w in (b"f:%014d" % i, b"v" * 16))]
                else:
                    words = [b"SADD", b"set", *(b"s:%014d" % i for i in ids)]
                batch.append(_command(*words))
            sock.sendall(b"".join(batch))
            _replies(sock, len(batch))
    finally:
        sock.close()


def _replies(sock, n: int) -> None:
    got, buf = 0, b""
    while got < n:
        data = sock.recv(1 << 16)
        if not data:
            raise RuntimeError(f"connection closed after {got} replies")
        buf += data
        lines = buf.split(b"\r\n")
        buf = lines.pop()
        for line in lines:
            if not line.startswith(b":"):
                raise RuntimeError(f"unexpected reply {line[:100]!r}")
        got += len(lines)


def bench(port: int, n: int) -> dict[str, float]:
    out = subprocess.run(["redis-benchmark", "-h", HOST, "-p", str(port), "-t", "lpush,zadd,hset,sadd", "-n", str(n),
                          "-c", str(tp.CLIENTS), "-P", "1", "--csv"], capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise RuntimeError(f"redis-benchmark against {port} failed: {out.stderr.strip()}")
    return {r["test"]: float(r["rps"]) for r in csv.DictReader(io.StringIO(out.stdout)) if r.get("rps")}


@contextlib.contextmanager
def _processes():
    """A temporary directory for the processes started meanwhile, all stopped (by PID) at the end."""
    root = Path(tempfile.mkdtemp(prefix="catena-bench-types-"))
    procs = tp.Procs(root)
    try:
        yield procs
    finally:
        procs.stop_all()
        if not os.environ.get("CATENA_BENCH_KEEP"):
            shutil.rmtree(root, ignore_errors=True)


def measure(procs, elements: int, n: int) -> None:
    taken: set[int] = set()
    redis_port = tp.free_port(taken)
    ports = [tp.free_port(taken) for _ in range(4)]
    tp.start_redis(procs, redis_port)
    members = tp.start_chain(procs, ports)
    head, tail = members[0], members[-1]
    print(f"# redis-server on {redis_port}; catena chain {members}; {os.cpu_count()} CPUs")
    for kind in ("list", "zset", "hash", "set"):
        before = tp.rss(redis_port)
        load(redis_port, kind, elements)
        theirs = (tp.rss(redis_port) - before) / elements
        before_c = {p: tp.rss(p) for p in members}
        load(head, kind, elements)
        last = tp.member_status(head)["last_seq"]
        tp.wait_for(lambda: tp.member_status(tail)["last_seq"] == last, 120, "the tail to hold it all")
        per_member = {p: (tp.rss(p) - before_c[p]) / elements for p in members}
        ours = max(per_member.values())
        card = tp.cli(tail, {"list": "LLEN", "zset": "ZCARD", "hash": "HLEN", "set": "SCARD"}[kind], kind)
        if int(card) != elements:
            raise RuntimeError(f"the tail holds {card} elements of {kind}, not {elements}")
        print(f"bytes_per_element {kind} ({elements} elements of 16 bytes): redis={theirs:.0f} "
              f"catena={ours:.0f} (per member: {', '.join(f'{p}={v:.0f}' for p, v in per_member.items())}) "
              f"ratio_vs_redis={ours / theirs:.2f}", flush=True)
    theirs, ours = bench(redis_port, n), bench(head, n)
    for test in sorted(theirs):
        print(f"{test:<6} -P 1  redis={theirs[test]:>9.0f} ops/s  catena={ours.get(test, 0):>9.0f} ops/s  "
              f"ratio_vs_redis={ours.get(test, 0) / theirs[test]:.2f}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="100,000 elements, 20,000 requests")
    args = ap.parse_args(argv)
    elements, n = (100_000, 20_000) if args.quick else (1_000_000, 50_000)
    try:
        with _processes() as procs:
            measure(procs, elements, n)
    except (RuntimeError, TimeoutError) as exc:
        print(f"bench failed: {exc} (CATENA_BENCH_KEEP=1 keeps the logs)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
