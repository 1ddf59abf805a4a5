"""Soak: a 3-member chain under a steady SET load at 80% of its measured peak, for minutes.

Starts a coordinator and three members (`python -m catena coordinator|member`, members joining
with `--coordinator`, fsync everysec) on free loopback ports with data in a temporary directory,
measures the peak SET rate with the same loader running closed-loop (no rate limit) for
`--peak-seconds`, then offers `--load` (default 0.8) of that rate for `--duration` seconds from
one asyncio loader (open loop, see Load). Every `--every` seconds it prints ops/s, p50/p99/max latency and
each member's RSS (quantiles from a histogram of 1% buckets: sorting a window's 200k latencies
held the loader's interpreter lock, and so its schedule, tens of milliseconds); at the end, p99
over time, the seconds with the most requests over 10 ms (with `--keep`, every second's count
in seconds.tsv beside the members' logs, to set against their snapshots) and each member's
memory growth. Then, as the
peer in the same run, the same loader offers the same rate to a redis-server (no persistence)
for `--redis-seconds` (default 15; 0: skip): its p99 is the floor this machine and this loader
give, and the worst window's p99 is printed as a ratio to it.

    python bench/soak/run.py                    # the documented 10-minute soak (600 s)
    python bench/soak/run.py --quick            # 60 s
    python bench/soak/run.py --duration 120

Latency is measured from when a request was *scheduled* (open-loop: a stalled chain delays the
requests behind it, and that delay counts), to its reply. Keys are drawn from `--keys` (default
100,000) names with 16-byte values, so the data set stops growing once every key is written;
the in-memory window of recent entries is bounded too (catena.chain.replica.WINDOW).

Verdict, exit status 1 when any holds:
  * an error reply or a broken connection;
  * the coordinator changed the chain during the soak (a member was removed);
  * the achieved rate falls below 90% of the offered rate over the run;
  * memory that grows without bound: a member's RSS at the end exceeds its RSS at mid-run by
    more than max(--rss-slack-mb (16), 10%) — in the second half the key set is full and the
    entry window has long reached its bound, so a healthy member is flat there.

Every process it starts is stopped by PID at the end (SIGTERM, then SIGKILL after 10 s).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from pathlib import Path
from typing import Callable

import hiredis

from catena.loopback import free_ports, wait_until

try:
    from uvloop import new_event_loop
except ImportError:  # pragma: no cover - uvloop is a dependency; plain asyncio works too
    from asyncio import new_event_loop

HOST = "127.0.0.1"
VALUE = b"v" * 16


# -- processes -----------------------------------------------------------------------------------


class Cluster:
    """A coordinator and members, each a child process we stop by PID."""

    def __init__(self, root: Path):
        self.root = root
        self.procs: dict[str, subprocess.Popen] = {}
        ports = free_ports(4)
        self.coordinator = ports[0]
        self.members = ports[1:]

    def _start(self, name: str, *argv: str) -> None:
        with open(self.root / f"{name}.log", "ab") as log:
            self.procs[name] = subprocess.Popen([sys.executable, "-m", "catena", *argv], stdout=log,
                                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                                start_new_session=True)

    def start(self) -> None:
        coord = f"{HOST}:{self.coordinator}"
        self._start("coordinator", "coordinator", "--listen", coord, "--data-dir", str(self.root / "coordinator"))
        wait_for(lambda: call(self.coordinator, "PING") == b"PONG", 30, "the coordinator")
        want: list[str] = []
        for port in self.members:
            addr = f"{HOST}:{port}"
            self._start(f"member-{port}", "member", "--listen", addr, "--data-dir", str(self.root / f"member-{port}"),
                        "--coordinator", coord, "--fsync", "everysec")
            want.append(addr)
            wait_for(lambda: [m.decode() for m in call(self.coordinator, "MASTER.GET_CHAIN")] == want, 60,
                     f"{addr} to join the chain")
        for port in self.members:
            wait_for(lambda: member_status(port).get(b"members") == ",".join(want).encode(), 60,
                     f"member {port} to act on the chain")

    def pid(self, port: int) -> int:
        return self.procs[f"member-{port}"].pid

    def dead(self) -> list[str]:
        return [name for name, p in self.procs.items() if p.poll() is not None]

    def stop(self) -> None:
        """SIGTERM to every child by PID; SIGKILL to those still there 10 s later."""
        live = [p for p in self.procs.values() if p.poll() is None]
        for p in live:
            os.kill(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while any(p.poll() is None for p in live) and time.monotonic() < deadline:
            time.sleep(0.05)
        for p in live:
            if p.poll() is None:
                print(f"# pid {p.pid} ignored SIGTERM; killing it", file=sys.stderr)
                os.kill(p.pid, signal.SIGKILL)
                p.wait()


def wait_for(predicate, timeout: float, what: str):
    wait_until(predicate, timeout, what, retry_on=(OSError, ValueError))


# -- a minimal RESP client (the loader's hot path stays small) -------------------------------------


def _cmd(*args) -> bytes:
    parts = [a if isinstance(a, bytes) else str(a).encode() for a in args]
    return b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)


def _read_reply(f):
    line = f.readline()
    if not line:
        raise ConnectionError("connection closed")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest
    if kind == b"-":
        raise ValueError(rest.decode(errors="replace"))
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        return None if n < 0 else f.read(n + 2)[:-2]
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [_read_reply(f) for _ in range(n)]
    raise ValueError(f"unexpected reply {line!r}")


def call(port: int, *args):
    with socket.create_connection((HOST, port), timeout=5) as s:
        s.sendall(_cmd(*args))
        return _read_reply(s.makefile("rb"))


def member_status(port: int) -> dict:
    words = call(port, "MEMBER.STATUS")
    return dict(zip(words[0::2], words[1::2]))


def stalls(port: int) -> list[str]:
    """A member's longest loop turn, turns over the budget, and collector pauses (its INFO)."""
    info = call(port, "INFO", "all").decode(errors="replace").splitlines()
    wanted = ("catena_longest_loop_turn_ms", "catena_loop_turns_over", "catena_gc_collections",
              "catena_gc_longest_pause_ms", "catena_gc_total_ms")
    return [line for line in info if line.startswith(wanted)]


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


# -- the load -----------------------------------------------------------------------------------


def set_request(keys: int) -> Callable[[random.Random], bytes]:
    """A SET of one of `keys` names (the soak's keyspace) to a 16-byte value."""
    def make(rng: random.Random) -> bytes:
        key = b"soak:%06d" % int(rng.random() * keys)
        return b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$16\r\n%s\r\n" % (len(key), key, VALUE)
    return make


class Load:
    """One connection per target (port, request maker, the reply each request must get, as hiredis
    parses it), driven by one asyncio loop (uvloop where present) in a thread of its own. With
    `rate` None each keeps one request in flight (closed loop: the peak). Else the k-th request
    is due at start + k / rate, on connection k mod the number of targets, and is sent when due
    whether or not earlier replies came (open loop): a stalled server delays nothing in the
    schedule, and each latency counts from the request's scheduled time, so the stall's backlog
    shows. A ticker sends what is due every TICK_S; the loader's own lateness is at most that.
    `samples`, when asked for: (scheduled time, latency, target index) of every reply."""

    TICK_S = 0.001

    def __init__(self, targets: list[tuple[int, Callable[[random.Random], bytes], bytes]], rate: float | None,
                 samples: bool = False):
        self.targets, self.rate = targets, rate
        self.window = Histogram()  # swapped out by take()
        self.epoch = time.perf_counter()
        self.seconds: dict[int, list] = {}  # second since epoch -> [requests, slow ones, max latency]
        self.samples: list[tuple[float, float, int]] | None = [] if samples else None
        self.errors: list[str] = []
        self._loop = new_event_loop()
        self._stopping = False
        self._thread = threading.Thread(target=self._loop.run_until_complete, args=(self._run(),), daemon=True)

    @classmethod
    def sets(cls, port: int, conns: int, keys: int, rate: float | None) -> "Load":
        """The soak's load: SETs to `port` over `conns` connections."""
        return cls([(port, set_request(keys), b"OK")] * conns, rate)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping = True
        self._thread.join(timeout=10)

    def take(self) -> "Histogram":
        """The latencies since the last call."""
        window, self.window = self.window, Histogram()
        return window

    def record(self, scheduled: float, latency: float) -> None:
        self.window.add(latency)
        second = self.seconds.setdefault(int(scheduled - self.epoch), [0, 0, 0.0])
        second[0] += 1
        second[1] += latency > SLOW_S
        second[2] = max(second[2], latency)

    def worst_seconds(self, n: int) -> list[tuple[int, int, int, float]]:
        """The n seconds (since start) whose requests most often took over SLOW_S: (second,
        requests, slow ones, max latency)."""
        rows = [(s, *v) for s, v in self.seconds.items()]
        return sorted(rows, key=lambda r: (r[2], r[3]), reverse=True)[:n]

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            links = [(await loop.create_connection(lambda i=i, want=want: _Conn(self, i, want), HOST, port))[1]
                     for i, (port, _, want) in enumerate(self.targets)]
        except OSError as exc:
            self.errors.append(f"connect: {exc}")
            return
        rng = random.Random(1)
        makers = [make for _, make, _ in self.targets]
        clock = time.perf_counter
        if self.rate is None:
            for link, make in zip(links, makers):
                link.closed_loop = lambda make=make: make(rng)
                link.send(make(rng), clock())
            while not self._stopping and not self.errors:
                await asyncio.sleep(0.05)
        else:
            start, sent, n = clock(), 0, len(links)
            while not self._stopping and len(self.errors) <= 100:
                due = int((clock() - start) * self.rate)
                while sent < due:
                    links[sent % n].send(makers[sent % n](rng), start + sent / self.rate)
                    sent += 1
                await asyncio.sleep(self.TICK_S)
        for link in links:
            link.transport.close()


class _Conn(asyncio.Protocol):
    """One connection of a Load: its requests' scheduled times in order, matched to replies."""

    def __init__(self, load: Load, index: int, want: bytes):
        self.load, self.index, self.want = load, index, want
        self.reader = hiredis.Reader()
        self.pending: deque[float] = deque()
        self.closed_loop = None  # the next request's maker, in the closed loop
        self.transport = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def send(self, request: bytes, scheduled: float) -> None:
        self.pending.append(scheduled)
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        load, clock, samples = self.load, time.perf_counter, self.load.samples
        while (reply := self.reader.gets()) is not False:
            scheduled = self.pending.popleft()
            if reply != self.want:
                load.errors.append(f"reply {reply!r:.100}")
            else:
                latency = clock() - scheduled
                load.record(scheduled, latency)
                if samples is not None:
                    samples.append((scheduled, latency, self.index))
            if self.closed_loop is not None and not load._stopping:
                self.send(self.closed_loop(), clock())

    def connection_lost(self, exc) -> None:
        if not self.load._stopping:
            self.load.errors.append(f"connection lost: {exc}")


SLOW_S = 0.010  # a request slower than this counts as slow in the per-second record


class Histogram:
    """Latencies in log buckets 1% wide, from 10 µs up: adding one is O(1) and a quantile never
    sorts, so reading a window's p99 does not hold the interpreter lock (and the loader) for the
    tens of milliseconds sorting 200k floats takes. Quantiles are exact to 1%; the max is exact."""

    FLOOR, STEP = 1e-5, math.log(1.01)

    def __init__(self):
        self.counts: list[int] = []
        self.count, self.max = 0, 0.0

    def add(self, latency: float) -> None:
        i = int(math.log(latency / self.FLOOR) / self.STEP) if latency > self.FLOOR else 0
        counts = self.counts
        if i >= len(counts):
            counts.extend([0] * (i + 1 - len(counts)))
        counts[i] += 1
        self.count += 1
        if latency > self.max:
            self.max = latency

    def quantile(self, q: float) -> float:
        """The upper edge of the bucket holding the q-quantile (nan when empty)."""
        if not self.count:
            return float("nan")
        rank, seen = min(self.count - 1, int(q * self.count)), 0
        for i, n in enumerate(self.counts):
            seen += n
            if seen > rank:
                return min(self.max, self.FLOOR * math.exp((i + 1) * self.STEP))
        return self.max


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def redis_p99(root: Path, rate: float, args) -> float:
    """The p99 of the same open-loop load against a redis-server of our own (stopped by PID)."""
    port = free_ports(1)[0]
    with open(root / "redis.log", "ab") as log:
        server = subprocess.Popen(["redis-server", "--port", str(port), "--bind", HOST, "--save", "",
                                   "--appendonly", "no"], stdout=log, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for(lambda: call(port, "PING") == b"PONG", 30, "redis-server")
        load = Load.sets(port, args.connections, args.keys, rate)
        load.start()
        time.sleep(args.redis_seconds)
        lat = load.take()
        load.stop()
        return lat.quantile(0.99)
    finally:
        os.kill(server.pid, signal.SIGTERM)
        server.wait(timeout=10)


# -- the run ------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=600.0, help="seconds of soak (default 600)")
    ap.add_argument("--quick", action="store_true", help="60 s")
    ap.add_argument("--load", type=float, default=0.8, help="fraction of the measured peak to offer")
    ap.add_argument("--rate", type=float, default=None,
                    help="offer this many SET/s instead (compares two builds at the same load)")
    ap.add_argument("--peak-seconds", type=float, default=10.0)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--keys", type=int, default=100_000)
    ap.add_argument("--every", type=float, default=30.0, help="seconds between report lines")
    ap.add_argument("--rss-slack-mb", type=float, default=16.0)
    ap.add_argument("--keep", action="store_true", help="keep the data directory and logs")
    ap.add_argument("--redis-seconds", type=float, default=15.0,
                    help="then offer the same rate to redis-server this long, as the peer (0: skip)")
    args = ap.parse_args()
    duration = 60.0 if args.quick else args.duration

    root = Path(tempfile.mkdtemp(prefix="catena-soak-"))
    cluster = Cluster(root)
    ok = True
    try:
        cluster.start()
        head = cluster.members[0]
        print(f"# chain {','.join(str(p) for p in cluster.members)} (head {head}), coordinator "
              f"{cluster.coordinator}; data in {root}", flush=True)

        # peak: the same loader, closed-loop; the first 2 s warm up and are not counted
        peak_load = Load.sets(head, args.connections, args.keys, None)
        peak_load.start()
        time.sleep(2.0)
        peak_load.take()
        t = time.monotonic()
        time.sleep(args.peak_seconds)
        lat = peak_load.take()
        peak = lat.count / (time.monotonic() - t)
        peak_load.stop()
        if peak_load.errors:
            print(f"# errors while measuring the peak: {peak_load.errors[:5]}")
            return 1
        rate = args.rate or args.load * peak
        offered = "the given rate" if args.rate else f"{args.load:.0%}"
        print(f"peak_set_ops_s={peak:,.0f} (closed loop, {args.connections} connections, p99 "
              f"{lat.quantile(0.99) * 1000:.1f} ms); offering {offered}: {rate:,.0f} ops/s for {duration:.0f} s",
              flush=True)

        load = Load.sets(head, args.connections, args.keys, rate)
        chain_before = call(cluster.coordinator, "MASTER.GET_CHAIN")
        pids = {port: cluster.pid(port) for port in cluster.members}
        rss0 = {port: rss_mb(pid) for port, pid in pids.items()}
        print("   t_s     ops_s  p50_ms  p99_ms  max_ms  " + "  ".join(f"rss_{p}_mb" for p in cluster.members))
        print("     0         -       -       -       -  " + "  ".join(f"{rss0[p]:>11.1f}" for p in cluster.members),
              flush=True)
        rows = []
        load.start()
        start = time.monotonic()
        total_done = 0
        next_report = start + args.every
        while True:
            end = min(next_report, start + duration)
            time.sleep(max(0.0, end - time.monotonic()))
            lat = load.take()
            done = lat.count
            now = time.monotonic()
            total_done += done
            since = rows[-1][0] if rows else 0.0
            elapsed = now - start
            rss = {port: rss_mb(pid) for port, pid in pids.items()}
            rows.append((elapsed, done / (elapsed - since), lat.quantile(0.5), lat.quantile(0.99), lat.max, rss))
            r = rows[-1]
            print(f"{elapsed:>6.0f}  {r[1]:>8,.0f}  {r[2] * 1000:>6.2f}  {r[3] * 1000:>6.2f}  {r[4] * 1000:>6.1f}  "
                  + "  ".join(f"{rss[p]:>11.1f}" for p in cluster.members), flush=True)
            if cluster.dead():
                print(f"# processes exited: {cluster.dead()}")
                ok = False
                break
            if elapsed >= duration - 0.01:
                break
            next_report += args.every
        load.stop()
        elapsed = time.monotonic() - start

        chain_after = call(cluster.coordinator, "MASTER.GET_CHAIN")
        if chain_after != chain_before:  # a removal stalls writes: say so beside the latencies
            print(f"# the coordinator changed the chain during the soak: {chain_before} -> {chain_after}")
            ok = False
        else:
            print("# chain unchanged during the soak: nobody removed")
        print("\n# p99 latency over time (ms): " + " ".join(f"{r[3] * 1000:.1f}@{r[0]:.0f}s" for r in rows))
        worst = load.worst_seconds(8)
        print(f"# seconds with the most requests over {SLOW_S * 1000:.0f} ms (t_s: slow/requests, max): "
              + ", ".join(f"{t}: {slow}/{n} {top * 1000:.0f} ms" for t, n, slow, top in worst if slow))
        if args.keep:  # every second's requests, slow ones and max, to set beside the members' logs
            with open(root / "seconds.tsv", "w") as f:
                f.write(f"# second since {time.strftime('%H:%M:%S', time.localtime(time.time() - (time.perf_counter() - load.epoch)))}"
                        "\trequests\tslow\tmax_ms\n")
                for t, (n, slow, top) in sorted(load.seconds.items()):
                    f.write(f"{t}\t{n}\t{slow}\t{top * 1000:.1f}\n")
        achieved = total_done / elapsed
        print(f"# achieved {achieved:,.0f} ops/s of {rate:,.0f} offered ({achieved / rate:.0%}); "
              f"{total_done:,} SETs; errors={len(load.errors)}")
        if load.errors:
            print(f"# first errors: {load.errors[:5]}")
            ok = False
        if achieved < 0.9 * rate:
            print("# FAIL: the chain did not keep up with the offered rate")
            ok = False
        mid = min(rows, key=lambda r: abs(r[0] - elapsed / 2))
        for port in cluster.members:
            end_mb, mid_mb, peak_mb = rows[-1][5][port], mid[5][port], max(r[5][port] for r in rows)
            bound = max(args.rss_slack_mb, 0.10 * mid_mb)
            grows = end_mb - mid_mb > bound
            ok &= not grows
            print(f"member {port}: rss start {rss0[port]:.1f} MB, mid ({mid[0]:.0f} s) {mid_mb:.1f} MB, "
                  f"end {end_mb:.1f} MB, peak {peak_mb:.1f} MB; growth total {end_mb - rss0[port]:+.1f} MB, "
                  f"second half {end_mb - mid_mb:+.1f} MB (bound {bound:.1f} MB) {'GROWS' if grows else 'flat'}")
        sizes = {p: sum(f.stat().st_size for f in (root / f"member-{p}").rglob("*") if f.is_file())
                 for p in cluster.members}
        print("# data dir sizes: " + ", ".join(f"{p}: {s / 2**20:.0f} MB" for p, s in sizes.items()))
        for port in cluster.members:  # where a tail can come from inside a member: its loop, its collector
            print(f"# member {port}: " + "  ".join(stalls(port)))
        if args.redis_seconds > 0 and shutil.which("redis-server"):
            worst = max(r[3] for r in rows)
            p99 = redis_p99(root, rate, args)
            print(f"# redis-server at the same {rate:,.0f} ops/s, same loader, {args.redis_seconds:.0f} s: p99 "
                  f"{p99 * 1000:.2f} ms; catena's worst window p99 {worst * 1000:.1f} ms: ratio_vs_redis={worst / p99:.0f}")
        print(f"verdict={'ok' if ok else 'FAIL'}")
        return 0 if ok else 1
    finally:
        cluster.stop()
        if args.keep:
            print(f"# kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
