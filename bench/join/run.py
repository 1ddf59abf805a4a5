"""Tail latency during a member join: p50/p99/max per second before, during and after the
MASTER.ADD of a 4th member to a 3-member chain holding `--keys` (1M) small keys, whose state
the tail sends to it (state transfer).

Starts a coordinator and three members (the soak's processes: `--coordinator`, fsync everysec)
on free loopback ports, loads the keys with pipelined MSETs, starts a 4th member without a
coordinator, waits until no member is taking a snapshot (INFO's `rdb_bgsave_in_progress`: the
load makes each snapshot the whole state, and a steady phase with those in it is not steady),
then runs an open-loop load (SETs at the head and GETs at the tail, `--rate` in all, latency
counted from each request's scheduled send time) for `--before` seconds, issues MASTER.ADD of
the 4th member, and keeps the load `--after` seconds past its answer. Prints one
line per second, each phase's p50/p99/max, how long the add took, and `join_p99_ratio`: the
join's p99 over the steady (before) p99 (target ≤ 2).

    python bench/join/run.py                  # 1,000,000 keys (about 50 s)
    python bench/join/run.py --keys 200000

Every process it starts is stopped by PID at the end.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
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


def mixed_load(set_port: int, get_port: int, conns: int, rate: float, keys: int) -> "soak.Load":
    """The soak's open-loop loader (one asyncio loop): `conns` connections, SETs to `set_port` on
    the even ones and GETs to `get_port` on the odd ones, over keys the load put there, `rate`
    commands/s in all. Its samples are (scheduled send time, latency s, connection index)."""
    def get(rng):
        key = b"join:%08d" % int(rng.random() * keys)
        return b"*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n" % (len(key), key)

    def set_(rng):
        key = b"join:%08d" % int(rng.random() * keys)
        return b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$16\r\n%s\r\n" % (len(key), key, VALUE)

    targets = [(set_port, set_, b"OK") if i % 2 == 0 else (get_port, get, VALUE) for i in range(conns)]
    return soak.Load(targets, rate, samples=True)


def summary(lat: list[float]) -> str:
    return (f"n={len(lat):>6}  p50_ms={soak.pct(lat, 0.5) * 1000:7.2f}  p99_ms={soak.pct(lat, 0.99) * 1000:7.2f}  "
            f"max_ms={max(lat, default=float('nan')) * 1000:7.1f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--keys", type=int, default=1_000_000)
    ap.add_argument("--rate", type=float, default=2000.0, help="commands/s in all, half SET, half GET")
    ap.add_argument("--connections", type=int, default=8)
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
        t2 = time.monotonic()  # the load's log makes every member snapshot: the steady phase is after
        soak.wait_for(lambda: not any(b"rdb_bgsave_in_progress:1" in soak.call(m, "INFO", "persistence")
                                      for m in cluster.members), 300, "the members' snapshots of the load")
        print(f"# the members' snapshots of the loaded keys done {time.monotonic() - t2:.1f} s later", flush=True)
        coord = redis.Redis(host=HOST, port=cluster.coordinator, protocol=2, socket_timeout=120)

        load = mixed_load(head, tail, args.connections, args.rate, args.keys)
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
        for sent, lat, index in samples:
            writes = index % 2 == 0
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
