"""Throughput with K = 1, 2, 3 chains, side by side with a Redis Cluster of K masters, in one run.

For each K, on free loopback ports: `catena up --chains K --members N` (K chains of N members
and a coordinator; K = 1 is one chain without a slot map), then a Redis Cluster of K masters
(Debian's redis-server with --cluster-enabled yes, no replicas, no persistence). Each is loaded
with redis-benchmark: SET then GET, -P 1 and -P 16; with K >= 2 through `redis-benchmark
--cluster` (which needs at least two masters), with K = 1 plain redis-benchmark at the head.
Printed per K: ops/s, the ratio to K = 1 and the ratio to the Redis Cluster of the same K.

`redis-cli --cluster create` refuses fewer than 3 masters, so the peer is made the way it would
do it by hand: CLUSTER ADDSLOTSRANGE (an even split in contiguous ranges, as catena's map), then
CLUSTER MEET. Every process started is stopped by PID at the end.

All K chains share this machine's cores (and so do the clients): the figures say what one
host does with more chains, not what K hosts do (bench/README.md).

    python bench/chains/run.py                 # K = 1, 2, 3; about 2 minutes on 2 cores
    python bench/chains/run.py --chains 1,2 -n 5000
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

from catena.loopback import HOST, free_ports, port_is_free, stop_processes, wait_until
from catena.slots import SLOTS

CLIENTS = 50
KEYSPACE = 100_000
BUS_OFFSET = 10_000
REDIS_MORE = 5  # Redis gets this many times the requests: a run of a fraction of a second measures its start
TESTS = (("SET", 1), ("SET", 16), ("GET", 1), ("GET", 16))


class Procs:
    """The processes this run started, stopped by PID."""

    def __init__(self):
        self.procs: list[subprocess.Popen] = []

    def start(self, argv: list[str], log: Path) -> subprocess.Popen:
        with open(log, "ab") as out:
            p = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 start_new_session=True)
        self.procs.append(p)
        return p

    def stop_all(self) -> None:
        stop_processes(self.procs, timeout=15)
        self.procs = []


def _answers(port: int) -> bool:
    try:
        return redis.Redis(host=HOST, port=port, socket_timeout=2).ping()
    except redis.RedisError:
        return False


def start_catena(procs: Procs, root: Path, chains: int, members: int) -> int:
    """`catena up` with K chains; the port of chain 0's head."""
    total = chains * members
    base = free_ports(1, set())[0]
    while not all(port_is_free(base + i) for i in range(total + 1)):
        base = free_ports(1, set())[0]
    log = root / f"up-{chains}.log"
    procs.start([sys.executable, "-m", "catena", "up", "--chains", str(chains), "--members", str(members),
                 "--port", str(base), "--data-dir", str(root / f"catena-{chains}")], log)
    wait_until(lambda: b"Ctrl-C stops everything" in log.read_bytes(), 180, f"catena up --chains {chains}")
    return base + 1


def start_redis_cluster(procs: Procs, root: Path, masters: int) -> int:
    """K redis-server masters splitting the slots evenly; the port of the first."""
    ports: list[int] = []
    while len(ports) < masters:  # a cluster node also binds its port + 10000 (the cluster bus)
        p = free_ports(1, set(ports))[0]
        if p + BUS_OFFSET < 65536 and port_is_free(p + BUS_OFFSET):
            ports.append(p)
    for p in ports:
        (root / f"redis-{p}").mkdir()
        procs.start(["redis-server", "--port", str(p), "--bind", HOST, "--cluster-enabled", "yes",
                     "--cluster-config-file", "nodes.conf", "--dir", str(root / f"redis-{p}"), "--save", "",
                     "--appendonly", "no"], root / f"redis-{p}.log")
    nodes = [redis.Redis(host=HOST, port=p, socket_timeout=10) for p in ports]
    for p in ports:
        wait_until(lambda p=p: _answers(p), 30, f"redis-server on {p}")
    for i, node in enumerate(nodes):
        node.execute_command("CLUSTER", "ADDSLOTSRANGE", i * SLOTS // masters, (i + 1) * SLOTS // masters - 1)
        for p in ports[:i]:
            node.execute_command("CLUSTER", "MEET", HOST, p)
    for node in nodes:
        wait_until(lambda n=node: (b"cluster_state:ok" in n.execute_command("CLUSTER", "INFO")
                                   and len(n.execute_command("CLUSTER", "NODES").splitlines()) == masters),
                   60, "the Redis Cluster to agree")
    return ports[0]


def benchmark(port: int, n: int, pipeline: int, test: str, cluster: bool) -> float:
    """ops/s of one redis-benchmark run (CSV)."""
    argv = ["redis-benchmark", "-h", HOST, "-p", str(port), "-t", test, "-n", str(n), "-c", str(CLIENTS),
            "-r", str(KEYSPACE), "-P", str(pipeline), "--csv", *(["--cluster"] if cluster else [])]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    table = out.stdout[out.stdout.find('"test"'):]  # --cluster prints the masters first
    rows = {r["test"]: float(r["rps"]) for r in csv.DictReader(io.StringIO(table)) if r.get("rps")}
    if out.returncode != 0 or test.upper() not in rows:
        raise RuntimeError(f"{' '.join(argv)}: {out.stderr.strip() or out.stdout.strip()}")
    return rows[test.upper()]


def measure(port: int, cluster: bool, n: int) -> dict[tuple[str, int], float]:
    return {(test, p): benchmark(port, n * (5 if p > 1 else 1), p, test.lower(), cluster) for test, p in TESTS}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chains", default="1,2,3", help="the K to measure, comma-separated")
    ap.add_argument("--members", type=int, default=3, help="members per chain")
    ap.add_argument("-n", "--requests", type=int, default=8000, help="requests per -P 1 run (5x for -P 16)")
    args = ap.parse_args(argv)
    ks = [int(k) for k in args.chains.split(",")]
    for tool in ("redis-server", "redis-benchmark", "redis-cli"):
        if shutil.which(tool) is None:
            print(f"{tool} is not installed (Debian: apt-get install redis-server redis-tools)", file=sys.stderr)
            return 2
    root = Path(tempfile.mkdtemp(prefix="catena-bench-chains-"))
    print(f"# redis-benchmark -c {CLIENTS} -r {KEYSPACE}, -n {args.requests} (x5 at -P 16, x{REDIS_MORE} for Redis); "
          f"{os.cpu_count()} CPUs "
          f"shared by every chain and the client; catena: K chains of {args.members} members, SET and GET "
          "through redis-benchmark --cluster (K = 1: at the head); peer: a Redis Cluster of K masters", flush=True)
    results: dict[int, dict] = {}
    started = time.monotonic()
    try:
        for k in ks:
            procs = Procs()
            try:
                catena = measure(start_catena(procs, root, k, args.members), k > 1, args.requests)
            finally:
                procs.stop_all()
            try:
                (root / f"redis-{k}").mkdir()
                peer = measure(start_redis_cluster(procs, root / f"redis-{k}", k), k > 1, args.requests * REDIS_MORE)
            finally:
                procs.stop_all()
            results[k] = {"catena": catena, "redis": peer}
            for key in TESTS:
                ours, base = catena[key], results[ks[0]]["catena"][key]
                print(f"K={k}  {key[0]:<4} -P {key[1]:<2}  catena={ours:>8.0f}  redis_cluster={peer[key]:>8.0f}  "
                      f"ratio_vs_k{ks[0]}={ours / base:.2f}  "
                      f"redis_ratio_vs_k{ks[0]}={peer[key] / results[ks[0]]['redis'][key]:.2f}  "
                      f"ratio_vs_redis_cluster={ours / peer[key]:.2f}", flush=True)
    finally:
        print(f"# {time.monotonic() - started:.0f} s; data and logs in {root}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
