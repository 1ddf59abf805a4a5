"""Tail latency during a member join: p50/p99/max per second before, during and after the
MASTER.ADD of a 4th member to a 3-member chain holding `--keys` (1M) small keys, whose state
the tail sends to it (state transfer).

Starts a coordinator and three members (the soak's processes: `--coordinator`, fsync everysec)
on free loopback ports, loads the keys with pipelined MSETs, starts a 4th member without a
coordinator, then runs an open-loop load (SETs at the head and GETs at the tail, `--rate` in
all, latency counted from each request's scheduled send time) for `--before` seconds, issues
MASTER.ADD of the 4th member, and keeps the load `--after` seconds past its answer. Prints one
line per second, each phase's p50/p99/max, how long the add took, and `join_p99_ratio`: the
join's p99 over the steady (before) p99 (target ≤ 2).

    python bench/join/run.py                  # 1,000,000 keys (about 50 s)
    python bench/join/run.py --keys 200000

Every process it starts is stopped by PID at the end.
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import shutil
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import redis

from catena.loopback import HOST, free_ports

_spec = importlib.util.spec_from_file_location("bench_soak", Path(__file__).resolve().parents[1] / "soak" / "run.py")
soak = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(soak)  # its Cluster (processes by PID), wait_for and pct

VALUE = b"v" * 16
PER_MSET = 8


def load_keys(port: int, n: int) -> None:
    """`n` keys, `PER_MSET` to an MSET: with a million keys, more entries than a member's window
    (catena.chain.replica.WINDOW), so a joining member gets the state as a Snapshot."""
    r = redis.Redis(host=HOST, port=port, protocol=2, socket_timeout=120)
    pipe = r.pipeline(transaction=False)
    for i in range(0, n, PER_MSET):
        pipe.mset({b"join:%08d" % k: VALUE for k in range(i, min(n, i + PER_MSET))})
        if len(pipe) >= 500:
            pipe.execute()
    pipe.execute()
    r.close()


class Load:
    """Threads each sending one command at a time on a fixed schedule (open loop): SETs to
    `set_port` and GETs to `get_port` over keys the load put there, `rate` commands/s in all.
    Samples are (scheduled send time, latency s, whether a SET)."""

    def __init__(self, set_port: int, get_port: int, threads: int, rate: float, keys: int):
        self.samples: list[tuple[float, float, bool]] = []
        self.errors: list[str] = []
        self.stopping = threading.Event()
        period = threads / rate
        self.workers = [threading.Thread(target=self._run, args=(i, set_port if i % 2 == 0 else get_port, i % 2 == 0,
                                                                 period, keys), daemon=True)
                        for i in range(threads)]

    def start(self) -> None:
        for w in self.workers:
            w.start()

    def stop(self) -> None:
        self.stopping.set()
        for w in self.workers:
            w.join(timeout=30)

    def _run(self, i: int, port: int, writes: bool, period: float, keys: int) -> None:
        rng, clock = random.Random(i), time.perf_counter
        try:
            sock = socket.create_connection((HOST, port), timeout=60)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError as exc:
            self.errors.append(f"connect: {exc}")
            return
        next_at = clock() + rng.random() * period
        try:
            while not self.stopping.is_set():
                delay = next_at - clock()
                if delay > 0:
                    time.sleep(delay)
                sent, next_at = next_at, next_at + period
                key = b"join:%08d" % int(rng.random() * keys)
                if writes:
                    sock.sendall(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$16\r\n%s\r\n" % (len(key), key, VALUE))
                    want = b"+OK\r\n"
                else:
                    sock.sendall(b"*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n" % (len(key), key))
                    want = b"$16\r\n" + VALUE + b"\r\n"
                reply = sock.recv(256)
                while len(reply) < len(want) and not reply.startswith(b"-") or not reply.endswith(b"\r\n"):
                    more = sock.recv(256)
                    if not more:
                        raise ConnectionError("connection closed")
                    reply += more
                if reply != want:
                    self.errors.append(f"reply {reply[:100]!r}")
                    continue
                self.samples.append((sent, clock() - sent, writes))
        except OSError as exc:
            if not self.stopping.is_set():
                self.errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            sock.close()


def summary(lat: list[float]) -> str:
    return (f"n={len(lat):>6}  p50_ms={soak.pct(lat, 0.5) * 1000:7.2f}  p99_ms={soak.pct(lat, 0.99) * 1000:7.2f}  "
            f"max_ms={max(lat, default=float('nan')) * 1000:7.1f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--keys", type=int, default=1_000_000)
    ap.add_argument("--rate", type=float, default=2000.0, help="commands/s in all, half SET, half GET")
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--before", type=float, default=8.0, help="seconds of steady load before the add")
    ap.add_argument("--after", type=float, default=5.0, help="seconds of load after the add answered")
    ap.add_argument("--keep", action="store_true", help="keep the data directory and logs")
    args = ap.parse_args()

    root = Path(tempfile.mkdtemp(prefix="catena-join-"))
    cluster = soak.Cluster(root)
    ok = True
    try:
        t0 = time.monotonic()
        cluster.start()
        head, tail = cluster.members[0], cluster.members[-1]
        learner = free_ports(1, set(cluster.members) | {cluster.coordinator})[0]
        cluster._start(f"member-{learner}", "member", "--listen", f"{HOST}:{learner}", "--data-dir",
                       str(root / f"member-{learner}"), "--fsync", "everysec")
        t1 = time.monotonic()
        load_keys(head, args.keys)
        print(f"# chain up in {t1 - t0:.1f} s; {args.keys:,} keys loaded in {time.monotonic() - t1:.1f} s; "
              f"data in {root}", flush=True)
        soak.wait_for(lambda: soak.call(learner, "PING") == b"PONG", 30, "the 4th member")
        coord = redis.Redis(host=HOST, port=cluster.coordinator, protocol=2, socket_timeout=120)

        load = Load(head, tail, args.threads, args.rate, args.keys)
        load.start()
        start = time.monotonic()
        time.sleep(args.before)
        added: dict = {}

        def add() -> None:
            t = time.perf_counter()
            try:
                added["reply"] = coord.execute_command("MASTER.ADD", HOST, learner)
            except redis.RedisError as exc:
                added["reply"] = exc
            added["took"] = time.perf_counter() - t
            added["at"] = t

        join_from = time.perf_counter()
        adder = threading.Thread(target=add, daemon=True)
        adder.start()
        adder.join(timeout=120)
        join_to = time.perf_counter()
        time.sleep(args.after)
        load.stop()
        print(f"# MASTER.ADD answered {added.get('reply')!r} after {added.get('took', float('nan')):.2f} s; "
              f"chain now {[m.decode() for m in coord.execute_command('MASTER.GET_CHAIN')]}")
        ok = added.get("reply") in (b"OK", "OK", True)

        samples = sorted(load.samples)
        base = samples[0][0] if samples else 0.0
        print("   t_s  phase    " + "   ".join(["n", "p50_ms", "p99_ms", "max_ms"]))
        second: dict[int, list[float]] = {}
        for sent, lat, _ in samples:
            second.setdefault(int(sent - base), []).append(lat)
        for s, lat in sorted(second.items()):
            at = base + s + 0.5
            phase = "before" if at < join_from else "join" if at < join_to else "after"
            print(f"{s:>6}  {phase:<7}  {summary(lat)}")
        phases: dict[str, list[float]] = {"before": [], "join": [], "after": []}
        kinds: dict[tuple[str, bool], list[float]] = {}
        for sent, lat, writes in samples:
            phase = "before" if sent < join_from else "join" if sent < join_to else "after"
            phases[phase].append(lat)
            kinds.setdefault((phase, writes), []).append(lat)
        for name, lat in phases.items():
            print(f"# {name:<6}  {summary(lat)}   SET p99_ms={soak.pct(kinds.get((name, True), []), 0.99) * 1000:.2f}"
                  f"  GET p99_ms={soak.pct(kinds.get((name, False), []), 0.99) * 1000:.2f}")
        ratio = soak.pct(phases["join"], 0.99) / soak.pct(phases["before"], 0.99)
        print(f"add_s={join_to - join_from:.2f}  join_p99_ratio={ratio:.2f}  (target <= 2)")
        if load.errors:
            print(f"# errors: {len(load.errors)}, first {load.errors[:5]}")
            ok = False
        if cluster.dead():
            print(f"# processes exited: {cluster.dead()}")
            ok = False
        print(f"# whole run {time.monotonic() - t0:.1f} s (load {time.monotonic() - start:.1f} s)")
        return 0 if ok else 1
    finally:
        cluster.stop()
        if args.keep:
            print(f"# kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
