"""catena.Client's pipelined throughput against redis-py's against Redis, measured in the same run.

Starts Debian's redis-server (no persistence) and a 3-member catena chain (a coordinator and
three members that register with it through `--coordinator`, fsync everysec) on free loopback
ports. Then, single-threaded, with pipelines of 100 commands:

  - redis-py -> redis-server        (the peer)
  - catena.Client -> catena chain   (the figure: writes at the head, through the chain)
  - redis-py -> catena head         (the same server without catena's client library, and so
                                      without request ids: what the library and its ids cost)

each SET N keys (16-byte values), then GET them back, and prints ops/s per line with
`ratio_vs_redis_py=` (against redis-py on Redis). Every process it starts is stopped by PID.

    python bench/client/run.py            # N=100000 per test, best of 3 rounds (about a minute on 2 cores)
    python bench/client/run.py --quick    # N=30000, one round (about 10 s)
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import redis

import catena
from catena.client import ClientError

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("bench_throughput", HERE.parent / "throughput" / "run.py")
tp = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tp)  # processes, ports and redis-server from the throughput bench

HOST = tp.HOST
PIPELINE = 100
VALUE = b"v" * 16


def start_chain(procs, coord: int, members: list[int]) -> list[str]:
    """A coordinator and members that register with it (the chain forms in registration order)."""
    py = [sys.executable, "-m", "catena"]
    procs.start("coordinator", [*py, "coordinator", "--listen", f"{HOST}:{coord}",
                                "--data-dir", str(procs.root / "coordinator")])
    tp.wait_for(lambda: tp.ping(coord), 60, "the coordinator")
    for p in members:
        procs.start(f"member-{p}", [*py, "member", "--listen", f"{HOST}:{p}", "--data-dir",
                                    str(procs.root / f"member-{p}"), "--fsync", "everysec",
                                    "--coordinator", f"{HOST}:{coord}"])
    tp.wait_for(lambda: len(tp.cli(coord, "MASTER.GET_CHAIN").split()) == len(members), 90, "the chain of three")
    chain = tp.cli(coord, "MASTER.GET_CHAIN").split()
    tp.wait_for(lambda: all(tp.member_status(int(a.rsplit(":", 1)[1]))["members"] == ",".join(chain)
                            for a in chain), 60, "the members' views")
    return chain


def keys(n: int) -> list[bytes]:
    return [b"bench:%012d" % i for i in range(n)]


def run_batches(names: list[bytes], batch) -> float:
    """ops/s of `batch(chunk)` over `names` in chunks of PIPELINE."""
    started = time.perf_counter()
    for i in range(0, len(names), PIPELINE):
        batch(names[i:i + PIPELINE])
    return len(names) / (time.perf_counter() - started)


def redis_py(port: int, names: list[bytes]) -> dict[str, float]:
    with redis.Redis(host=HOST, port=port, protocol=2, socket_timeout=30) as r:
        def sets(chunk):
            p = r.pipeline(transaction=False)
            for k in chunk:
                p.set(k, VALUE)
            assert all(p.execute())

        def gets(chunk):
            p = r.pipeline(transaction=False)
            for k in chunk:
                p.get(k)
            assert p.execute()[-1] == VALUE

        return {"SET": run_batches(names, sets), "GET": run_batches(names, gets)}


def catena_client(coordinator: str, names: list[bytes]) -> dict[str, float]:
    with catena.Client(coordinator, timeout=30) as c:
        c.set("warm", 1)  # learns the view, opens the connection

        def sets(chunk):
            p = c.pipeline()
            for k in chunk:
                p.set(k, VALUE)
            assert p.execute()[-1] == b"OK"

        def gets(chunk):
            p = c.pipeline()
            for k in chunk:
                p.get(k)
            assert p.execute()[-1] == VALUE

        return {"SET": run_batches(names, sets), "GET": run_batches(names, gets)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer operations (about 20 s)")
    ap.add_argument("-n", "--ops", type=int, default=None, help="operations per test (SET, then GET)")
    ap.add_argument("--rounds", type=int, default=None, help="interleaved rounds; the best of each is printed")
    args = ap.parse_args(argv)
    n = args.ops or (30_000 if args.quick else 100_000)
    rounds = args.rounds or (1 if args.quick else 3)
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        print("redis-server is not installed (Debian: apt-get install redis-server redis-tools)", file=sys.stderr)
        return 2

    root = Path(tempfile.mkdtemp(prefix="catena-bench-client-"))
    procs = tp.Procs(root)
    taken: set[int] = set()
    failed = True
    try:
        redis_port = tp.free_port(taken)
        coord, *member_ports = [tp.free_port(taken) for _ in range(4)]
        tp.start_redis(procs, redis_port)
        chain = start_chain(procs, coord, member_ports)
        head = int(chain[0].rsplit(":", 1)[1])
        version = tp.cli(redis_port, "INFO", "server").split("redis_version:")[1].split()[0]
        print(f"# redis-server {version} (no persistence) on {redis_port}; catena chain {','.join(chain)} "
              f"(fsync everysec); {n} SETs then {n} GETs, pipelines of {PIPELINE}, one thread, best of {rounds} "
              f"interleaved rounds; {os.cpu_count()} CPUs; redis-py {redis.__version__}")
        names = keys(n)
        theirs, ours, raw = {}, {}, {}
        for _ in range(rounds):
            for best, got in ((theirs, redis_py(redis_port, names)), (ours, catena_client(f"{HOST}:{coord}", names)),
                              (raw, redis_py(head, names))):
                for test, ops in got.items():
                    best[test] = max(best.get(test, 0.0), ops)
        for test in ("SET", "GET"):
            print(f"{test:<3} redis-py->redis={theirs[test]:>8.0f} ops/s  catena.Client->catena={ours[test]:>8.0f} ops/s  "
                  f"ratio_vs_redis_py={ours[test] / theirs[test]:.2f}  "
                  f"(redis-py->catena head, no request ids={raw[test]:.0f} ops/s; "
                  f"catena.Client/that={ours[test] / raw[test]:.2f})", flush=True)
        failed = False
    except (RuntimeError, TimeoutError, redis.RedisError, ClientError, AssertionError) as exc:
        print(f"bench failed: {exc!r}; logs kept in {root}", file=sys.stderr)
    finally:
        procs.stop_all()  # by PID, on every way out
    if failed or os.environ.get("CATENA_BENCH_KEEP"):
        return int(failed)
    shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
