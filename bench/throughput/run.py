"""Throughput of a 3-member catena chain against Redis and against RedisRaft, in the same run.

Starts, one system at a time, on free loopback ports:

- Debian's redis-server (no persistence): the speed of one Redis;
- a 3-node RedisRaft cluster (Redis >= 7.2 with the redisraft module, from REDISRAFT_SO and
  REDISRAFT_SERVER; skipped with a note when not given), with log-fsync yes, then no;
- a catena chain (coordinator + 3 members) with --fsync always, then everysec;

and runs `redis-benchmark -c 50 -r 100000 -P 1` and `-P 16`: SET at the head (RedisRaft: the
leader), GET at a middle member (RedisRaft: the leader, quorum reads as configured by default).
A last line per durability runs GETs at all three members at once (every member answers reads),
the 50 clients split among them, beside each peer's GETs at its one process that serves them.
Every line pairs matched durability (catena `always` with RedisRaft `log-fsync yes`, `everysec`
with `no`) and prints `ratio_vs_redisraft=` and `ratio_vs_redis=` (with --rounds N, the medians
of N interleaved rounds and their range). With --memory it then loads M
keys of 16 bytes into Redis and catena over one pipelined connection and prints the resident
memory per key. Every process it starts is stopped by PID at the end.

    python bench/throughput/run.py            # under a minute on 2 cores
    python bench/throughput/run.py --rounds 3 # every system three times, interleaved: medians
    python bench/throughput/run.py --quick    # fewer requests
    python bench/throughput/run.py --memory   # and the memory figure (M=1000000)
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redisraft
from catena.loopback import HOST, free_ports, wait_until

CLIENTS = 50
KEYSPACE = 100_000  # redis-benchmark -r: random keys among this many
TESTS = (("SET", 1), ("SET", 16), ("GET", 1), ("GET", 16))
SPREAD = ("GET*", 1)  # GET -P 1 at every member at once, the clients split among them
VALUE = b"v" * 16


# -- processes -----------------------------------------------------------------------------------


class Procs:
    def __init__(self, root: Path):
        self.root = root
        self.procs: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, argv: list[str]) -> subprocess.Popen:
        log = open(self.root / f"{name}.log", "ab")
        p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             start_new_session=True)
        log.close()
        self.procs.append((name, p))
        return p

    def stop(self, name: str) -> None:
        for n, p in self.procs:
            if n == name and p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.kill(p.pid, signal.SIGKILL)
                    p.wait()

    def stop_all(self) -> None:
        for _, p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        for name, p in reversed(self.procs):
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                print(f"# {name} (pid {p.pid}) ignored SIGTERM; killing it", file=sys.stderr)
                os.kill(p.pid, signal.SIGKILL)
                p.wait()


def free_port(taken: set[int]) -> int:
    """A loopback port free for TCP and UDP (members use the number for both)."""
    return free_ports(1, taken)[0]


def cli(port: int, *args: str, timeout: float = 60) -> str:
    out = subprocess.run(["redis-cli", "-h", HOST, "-p", str(port), *args], capture_output=True, text=True,
                         timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"redis-cli -p {port} {' '.join(args)}: {out.stderr.strip()}")
    return out.stdout.strip()


def wait_for(predicate, timeout: float, what: str):
    return wait_until(predicate, timeout, what, retry_on=(OSError, RuntimeError, subprocess.TimeoutExpired))


def ping(port: int) -> bool:
    return cli(port, "PING", timeout=5) == "PONG"


def info(port: int) -> dict[str, str]:
    out = {}
    for line in cli(port, "INFO").splitlines():
        k, sep, v = line.partition(":")
        if sep:
            out[k.strip()] = v.strip()
    return out


def member_status(port: int) -> dict[str, str]:
    words = cli(port, "MEMBER.STATUS").splitlines()
    return dict(zip(words[0::2], words[1::2]))


def start_redis(procs: Procs, port: int) -> None:
    procs.start("redis", ["redis-server", "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no",
                          "--daemonize", "no", "--dir", str(procs.root)])
    wait_for(lambda: ping(port), 30, "redis-server")


def start_chain(procs: Procs, ports: list[int], fsync: str = "everysec") -> list[int]:
    """Coordinator on ports[0], members on the rest, added in order (head first)."""
    coord, members = ports[0], ports[1:]
    py = [sys.executable, "-m", "catena"]
    procs.start("coordinator", [*py, "coordinator", "--listen", f"{HOST}:{coord}",
                                "--data-dir", str(procs.root / "coordinator")])
    for p in members:
        procs.start(f"member-{p}", [*py, "member", "--listen", f"{HOST}:{p}", "--data-dir",
                                    str(procs.root / f"member-{p}"), "--fsync", fsync])
    for p in [coord, *members]:
        wait_for(lambda: ping(p), 60, f"catena on port {p}")
    for p in members:
        reply = cli(coord, "MASTER.ADD", HOST, str(p))
        if reply != "OK":
            raise RuntimeError(f"MASTER.ADD {p}: {reply}")
    want = [f"{HOST}:{p}" for p in members]
    wait_for(lambda: cli(coord, "MASTER.GET_CHAIN").split() == want, 60, "the chain")
    wait_for(lambda: all(member_status(p)["members"] == ",".join(want) for p in members), 60, "the members' views")
    return members


# -- measurements --------------------------------------------------------------------------------


def benchmark(port: int, n: int, pipeline: int, tests: str = "set,get") -> dict[str, float]:
    """ops/s per test from redis-benchmark's CSV output."""
    out = subprocess.run(["redis-benchmark", "-h", HOST, "-p", str(port), "-t", tests, "-n", str(n),
                          "-c", str(CLIENTS), "-r", str(KEYSPACE), "-P", str(pipeline), "--csv"],
                         capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise RuntimeError(f"redis-benchmark against {port} failed: {out.stderr.strip()}")
    rows = {r["test"]: float(r["rps"]) for r in csv.DictReader(io.StringIO(out.stdout)) if r.get("rps")}
    if not set(tests.upper().split(",")) <= rows.keys():
        raise RuntimeError(f"unexpected redis-benchmark output: {out.stdout!r} {out.stderr!r}")
    return rows


def spread_gets(ports: tuple[int, ...], n: int, pipeline: int) -> float:
    """GETs at every member at once (CRAQ: each answers reads), the clients split among them,
    `n` requests each (the runs overlap for longer than their starts take): all the requests
    over the time the slowest redis-benchmark took."""
    share = [CLIENTS // len(ports) + (i < CLIENTS % len(ports)) for i in range(len(ports))]
    started = time.monotonic()
    runs = [subprocess.Popen(["redis-benchmark", "-h", HOST, "-p", str(port), "-t", "get", "-n", str(n),
                              "-c", str(c), "-r", str(KEYSPACE), "-P", str(pipeline), "-q"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            for port, c in zip(ports, share)]
    for run in runs:
        _, err = run.communicate(timeout=600)
        if run.returncode != 0:
            raise RuntimeError(f"redis-benchmark (spread GETs) failed: {err.strip()}")
    return n * len(ports) / (time.monotonic() - started)


def rss(port: int) -> int:
    return int(info(port)["used_memory_rss"])


def load_keys(port: int, count: int) -> float:
    """SET `count` 16-byte keys (16-byte values), pipelined on one connection (a writer
    thread sends, this thread counts the +OK replies); returns seconds.

    (Not `redis-cli --pipe`: it sends an empty line before its closing ECHO, which catena
    refuses as a protocol error when it shares a read with a command.)"""
    import threading

    sock = socket.create_connection((HOST, port), timeout=120)
    errors: list[BaseException] = []

    def send():
        try:
            batch = []
            for i in range(count):
                batch.append(b"*3\r\n$3\r\nSET\r\n$16\r\nm:%014d\r\n$16\r\n%s\r\n" % (i, VALUE))
                if len(batch) == 5000:
                    sock.sendall(b"".join(batch))
                    batch.clear()
            sock.sendall(b"".join(batch))
        except OSError as exc:
            errors.append(exc)

    started = time.monotonic()
    writer = threading.Thread(target=send, daemon=True)
    writer.start()
    replies, buf = 0, b""
    try:
        while replies < count:
            data = sock.recv(1 << 20)
            if not data:
                raise RuntimeError(f"connection closed after {replies} replies")
            buf += data
            lines = buf.split(b"\r\n")
            buf = lines.pop()
            for line in lines:
                if line != b"+OK":
                    raise RuntimeError(f"unexpected reply {line[:100]!r} after {replies} replies")
            replies += len(lines)
    finally:
        writer.join(timeout=120)
        sock.close()
    if errors:
        raise RuntimeError(f"sending keys failed: {errors[0]}")
    return time.monotonic() - started


# Requests per redis-benchmark run: about 2 s at catena's rate on 2 cores (SET -P 1 ~20k/s, SET -P 16
# ~50k/s, GET -P 1 ~60k/s, GET -P 16 ~150k/s). A GET run sized like a SET run lasted 0.13-0.25 s:
# redis-benchmark's start and one scheduling hiccup were a visible part of its rate.
REQUESTS = {("set", 1): 40_000, ("set", 16): 100_000, ("get", 1): 120_000, ("get", 16): 300_000}


def requests(test: str, pipeline: int, quick: bool, n: int | None) -> int:
    """Requests per redis-benchmark run (`--quick`: a quarter; `-n`: that many for every run)."""
    if n:
        return n
    return REQUESTS[test, pipeline] // (4 if quick else 1)


def measure(port_set: int, port_get: int, quick: bool, n: int | None,
            readers: tuple[int, ...] = ()) -> dict[tuple[str, int], float]:
    """ops/s per (test, pipeline): SET at `port_set`, then GET (of the keys just set) at `port_get`;
    with several `readers`, also GET -P 1 at all of them at once (SPREAD)."""
    out = {}
    for pipeline in (1, 16):
        out["SET", pipeline] = benchmark(port_set, requests("set", pipeline, quick, n), pipeline, "set")["SET"]
        out["GET", pipeline] = benchmark(port_get, requests("get", pipeline, quick, n), pipeline, "get")["GET"]
    if len(readers) > 1:
        out[SPREAD] = spread_gets(readers, requests("get", 1, quick, n) // len(readers), 1)
    return out


def run_system(root: Path, name: str, taken: set[int], start, quick: bool, n: int | None) -> dict[tuple[str, int], float]:
    """Start one system (`start(procs, taken) -> (SET port, GET port, every port serving reads)`),
    measure it, stop it."""
    (root / name).mkdir()
    procs = Procs(root / name)
    try:
        port_set, port_get, readers = start(procs, taken)
        return measure(port_set, port_get, quick, n, readers)
    finally:
        procs.stop_all()


def start_redis_peer(procs: Procs, taken: set[int]) -> tuple[int, int, tuple[int, ...]]:
    port = free_port(taken)
    start_redis(procs, port)
    return port, port, (port,)


def start_catena(fsync: str):
    def start(procs: Procs, taken: set[int]) -> tuple[int, int, tuple[int, ...]]:
        members = start_chain(procs, [free_port(taken) for _ in range(4)], fsync)
        return members[0], members[1], tuple(members)
    return start


def start_redisraft(so: str, server: str, fsync: bool):
    def start(procs: Procs, taken: set[int]) -> tuple[int, int, tuple[int, ...]]:
        leader = redisraft.start(procs, [free_port(taken) for _ in range(3)], so, server, fsync, cli, wait_for, HOST)
        return leader, leader, (leader,)  # (reads at the leader: linearizable only there)
    return start


def report(rounds: list[dict[str, dict]], raft_note: str | None) -> None:
    """One line per test and durability: each system's median over the rounds, and the median
    of the rounds' ratios (each round measures every system once, back to back), with their
    range when there are several rounds. Then catena's GETs at all three members at once beside
    each peer's GETs at its one process that serves them (RedisRaft: the leader)."""
    def ratio(ours: str, peer: str, key, peer_key=None) -> str:
        values = sorted(r[ours][key] / r[peer][peer_key or key] for r in rounds)
        spread = f" ({values[0]:.2f}-{values[-1]:.2f})" if len(values) > 1 else ""
        return f"{statistics.median(values):.2f}{spread}"

    def median(system: str, key) -> float:
        return statistics.median(r[system][key] for r in rounds)

    for catena, raft, durability in (("catena-always", "redisraft-fsync", "fsync=always/log-fsync=yes"),
                                     ("catena-everysec", "redisraft-nofsync", "fsync=everysec/log-fsync=no")):
        for key in (*TESTS, SPREAD):
            name = f"{key[0]:<4} -P {key[1]:<2}" if key != SPREAD else "GET  -P 1 at all 3 members"
            line = f"{name:<26} {durability:<28} catena={median(catena, key):>8.0f}"
            peer_key = ("GET", 1) if key == SPREAD else key
            if raft in rounds[0]:
                line += f"  redisraft={median(raft, peer_key):>8.0f}"
            line += f"  redis={median('redis', peer_key):>8.0f}"
            if raft in rounds[0]:
                line += f"  ratio_vs_redisraft={ratio(catena, raft, key, peer_key)}"
            print(f"{line}  ratio_vs_redis={ratio(catena, 'redis', key, peer_key)}", flush=True)
    if raft_note:
        print(f"# {raft_note}")


def memory(root: Path, taken: set[int], keys: int) -> None:
    """Resident growth per key while loading `keys` 16-byte keys into Redis and a catena chain."""
    (root / "memory").mkdir()
    procs = Procs(root / "memory")
    try:
        redis_port = free_port(taken)
        start_redis(procs, redis_port)
        members = start_chain(procs, [free_port(taken) for _ in range(4)])
        head, tail = members[0], members[-1]
        before_r, before_used = rss(redis_port), int(info(redis_port)["used_memory"])
        load_keys(redis_port, keys)
        after_r, after_used = rss(redis_port), int(info(redis_port)["used_memory"])
        before_c = {p: rss(p) for p in members}
        secs = load_keys(head, keys)
        last = member_status(head)["last_seq"]
        wait_for(lambda: member_status(tail)["last_seq"] == last and member_status(tail)["keys"] == member_status(head)["keys"],
                 120, "the tail to hold every key")
        after_c = {p: rss(p) for p in members}
        if int(cli(tail, "DBSIZE")) < keys:
            raise RuntimeError("catena holds fewer keys than loaded")
        redis_per_key = (after_r - before_r) / keys
        per_member = {p: (after_c[p] - before_c[p]) / keys for p in members}
        catena_per_key = max(per_member.values())
        print(f"# {keys} keys of 16 bytes (16-byte values); catena loaded them in {secs:.1f} s "
              f"({keys / secs:.0f} keys/s, pipelined on one connection)")
        print(f"bytes_per_key redis={redis_per_key:.0f} (used_memory {(after_used - before_used) / keys:.0f}) "
              f"catena={catena_per_key:.0f} (per member: "
              f"{', '.join(f'{p}={v:.0f}' for p, v in per_member.items())}) "
              f"ratio_vs_redis={catena_per_key / redis_per_key:.2f}")
    finally:
        procs.stop_all()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer requests")
    ap.add_argument("-n", "--requests", type=int, default=None, help="requests per redis-benchmark run")
    ap.add_argument("--rounds", type=int, default=1, help="measure every system this many times, interleaved, "
                    "and print medians (the ratios of one round swing by 2x on shared cores)")
    ap.add_argument("--memory", action="store_true", help="also measure resident memory per key")
    ap.add_argument("--keys", type=int, default=1_000_000, help="keys loaded for the memory figure")
    args = ap.parse_args(argv)
    for tool in ("redis-server", "redis-benchmark", "redis-cli"):
        if shutil.which(tool) is None:
            print(f"{tool} is not installed (Debian: apt-get install redis-server redis-tools)", file=sys.stderr)
            return 2
    raft = redisraft.peer_paths()
    raft_note = raft if isinstance(raft, str) else None
    if raft_note:
        print(f"# {raft_note}", flush=True)

    root = Path(tempfile.mkdtemp(prefix="catena-bench-"))
    taken: set[int] = set()
    try:
        version = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout.split()[2]
        print(f"# redis-benchmark -c {CLIENTS} -r {KEYSPACE}; {os.cpu_count()} CPUs. redis-server {version[2:]} "
              "(no persistence); RedisRaft: 3 nodes, SET and GET at the leader; catena: 3 members and a "
              "coordinator, SET at the head, GET at the middle member", flush=True)
        systems = [("redis", start_redis_peer)]
        if not raft_note:
            so, server = raft
            systems += [("redisraft-fsync", start_redisraft(so, server, True)),
                        ("redisraft-nofsync", start_redisraft(so, server, False))]
        systems += [("catena-always", start_catena("always")), ("catena-everysec", start_catena("everysec"))]
        rounds = []
        for n in range(args.rounds):
            results = {}
            for name, start in systems:
                results[name] = run_system(root, f"{name}-{n}", taken, start, args.quick, args.requests)
                print(f"# {name}: " + "  ".join(f"{t} -P {p}={v:.0f}" for (t, p), v in results[name].items()), flush=True)
            rounds.append(results)
        report(rounds, raft_note)
        if args.memory:
            memory(root, taken, args.keys)
        return 0
    except (RuntimeError, TimeoutError) as exc:
        print(f"bench failed: {exc}; logs in {root}", file=sys.stderr)
        return 1
    finally:
        if not os.environ.get("CATENA_BENCH_KEEP"):
            shutil.rmtree(root, ignore_errors=True)

if __name__ == "__main__":
    sys.exit(main())
