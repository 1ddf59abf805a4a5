"""Slot moves between two chains under a write load: how long each moving slot refuses writes.

Two single-chain deployments in cluster mode (a coordinator and `--members` members each, on
127.0.0.1) stand for chains A and B (B starts owning no slot). `--slots` slots, each preloaded
with `--keys` keys, are moved from A to B one after the other by the slot-move driver
(`catena.coordinator.move_runner`, the pure machine of docs/sharding.md §3), while a writer
keeps writing one key of the slot being moved: to A's head, retrying -TRYAGAIN at once and
following -MOVED to B's head, as a cluster client does. Per move it measures the refused window
(from the first refused write to the next acknowledged one) and the longest single write (first
attempt to acknowledgement); after each move the slot's keys at B are checked against what was
written (every acknowledged write there, nothing left at A).

    python bench/slot_move/run.py [--slots 20] [--keys 100] [--members 2]

The peer, in the same run (`redis_peer.py`, skipped with `--no-peer`): the same moves in a Redis
Cluster of three redis-server masters, as `redis-cli --cluster reshard` does them (MIGRATE while
the slot keeps serving, clients following -ASK), with the same writer. Redis has no refused
window; both have a longest single write per move and a move duration, printed side by side
with their ratio. The target here is a p99 refused window of at most 100 ms per slot.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import redis

from catena.chaos.runner import Proc, stop_all
from catena.coordinator.move_runner import run_move
from catena.loopback import HOST, free_ports, wait_until
from catena.slots import key_slot

sys.path.insert(0, str(Path(__file__).parent))
import redis_peer  # noqa: E402 (bench/slot_move is not a package)

TARGET_P99_S = 0.100


def start_chain(root: Path, name: str, members: int, procs: list) -> tuple[str, list[str]]:
    ports = free_ports(members + 1)
    coordinator, addrs = f"{HOST}:{ports[0]}", [f"{HOST}:{p}" for p in ports[1:]]
    (root / name).mkdir(parents=True)
    procs.append(Proc(f"{name}-coordinator", [sys.executable, "-m", "catena", "coordinator", "--listen", coordinator,
                                              "--data-dir", str(root / name / "coordinator")], root / f"{name}-c.log"))
    c = redis.Redis(host=HOST, port=ports[0], socket_timeout=5)
    wait_until(lambda: _answers(c), 30, f"{name}'s coordinator")
    for i, addr in enumerate(addrs):
        procs.append(Proc(f"{name}-member{i}", [sys.executable, "-m", "catena", "member", "--listen", addr,
                                                "--data-dir", str(root / name / f"m{i}"), "--coordinator", coordinator,
                                                "--cluster-enabled", "yes"], root / f"{name}-m{i}.log"))
        wait_until(lambda: [a.decode() for a in c.execute_command("MASTER.GET_CHAIN")] == addrs[:i + 1], 60,
                   f"{addr} in {name}")
    return coordinator, addrs


def _answers(c) -> bool:
    try:
        return c.ping()
    except redis.RedisError:
        return False


class Writer(threading.Thread):
    """Writes `key` again and again, each value once acknowledged recorded with its timings."""

    def __init__(self, key: str, a_head: str, b_head: str):
        super().__init__(daemon=True)
        self.key, self.stop = key, threading.Event()
        self.conns = {addr: redis.Redis(host=HOST, port=int(addr.rsplit(":", 1)[1]), socket_timeout=5)
                      for addr in (a_head, b_head)}
        self.target = a_head
        self.acked: list[tuple[float, float, int]] = []  # (first attempt, ack, value)
        self.refused_at: float | None = None
        self.windows: list[float] = []

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            started = time.monotonic()
            while True:
                try:
                    self.conns[self.target].set(self.key, n)
                    break
                except redis.exceptions.MovedError as exc:
                    self.refused_at = self.refused_at or time.monotonic()
                    self.target = f"{exc.host}:{exc.port}"
                except redis.exceptions.TryAgainError:
                    self.refused_at = self.refused_at or time.monotonic()
                    time.sleep(0.001)
            done = time.monotonic()
            self.acked.append((started, done, n))
            if self.refused_at is not None:
                self.windows.append(done - self.refused_at)
                self.refused_at = None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slots", type=int, default=20)
    parser.add_argument("--keys", type=int, default=100)
    parser.add_argument("--members", type=int, default=2)
    parser.add_argument("--no-peer", action="store_true", help="skip the Redis Cluster run")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="catena-slot-move-"))
    procs: list = []
    ok = False
    try:
        _, a = start_chain(root, "a", args.members, procs)
        _, b = start_chain(root, "b", args.members, procs)
        a_head = redis.Redis(host=HOST, port=int(a[0].rsplit(":", 1)[1]), socket_timeout=10)
        b_head = redis.Redis(host=HOST, port=int(b[0].rsplit(":", 1)[1]), socket_timeout=10)
        b_head.execute_command("CATENA.SLOTS", 0, 16383, "none")  # B: created to receive slots
        for addr in a:
            redis.Redis(host=HOST, port=int(addr.rsplit(":", 1)[1])).execute_command(
                "MEMBER.SHARD", 1, 1, "-", *b)
        tags = []
        i = 0
        while len(tags) < args.slots:
            tag = f"t{i}"
            if key_slot(tag.encode()) not in {key_slot(t.encode()) for t in tags}:
                tags.append(tag)
            i += 1
        pipe = a_head.pipeline(transaction=False)
        for tag in tags:
            for k in range(args.keys):
                pipe.set(f"{{{tag}}}:{k}", "x" * 100)
        pipe.execute()
        windows, longest, durations = [], [], []
        heads = {0: a[0], 1: b[0]}.__getitem__
        for tag in tags:
            slot = key_slot(tag.encode())
            writer = Writer(f"{{{tag}}}:w", a[0], b[0])
            writer.start()
            time.sleep(0.05)
            started = time.monotonic()
            final = asyncio.run(run_move(heads, slot, 0, 1))
            durations.append(time.monotonic() - started)
            time.sleep(0.05)
            writer.stop.set()
            writer.join()
            assert final.phase == "done", final
            last = writer.acked[-1][2]
            assert int(b_head.get(f"{{{tag}}}:w")) == last, "the last acknowledged write is not at B"
            assert b_head.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == args.keys + 1
            assert a_head.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == 0
            windows += writer.windows or [0.0]
            longest.append(max(done - start for start, done, _ in writer.acked))
        q = statistics.quantiles
        p99 = q(windows, n=100, method="inclusive")[98] if len(windows) > 1 else windows[0]
        print(f"moves={len(tags)} keys_per_slot={args.keys} members_per_chain={args.members}")
        print(f"refused_window_ms p50={statistics.median(windows) * 1000:.1f} p99={p99 * 1000:.1f} "
              f"max={max(windows) * 1000:.1f} (target p99 <= {TARGET_P99_S * 1000:.0f})")
        print(f"longest_write_ms p50={statistics.median(longest) * 1000:.1f} "
              f"p99={q(longest, n=100, method='inclusive')[98] * 1000:.1f}")
        print(f"move_duration_ms p50={statistics.median(durations) * 1000:.1f} max={max(durations) * 1000:.1f}")
        print("lost_writes=0 (the last acknowledged write of every slot was at B; nothing left at A)")
        if not args.no_peer:
            r_longest, r_durations = redis_peer.measure(root / "redis", procs, tags, args.keys)
            c99, r99 = (q(x, n=100, method="inclusive")[98] for x in (longest, r_longest))
            print(f"redis_cluster longest_write_ms p50={statistics.median(r_longest) * 1000:.1f} "
                  f"p99={r99 * 1000:.1f} move_duration_ms p50={statistics.median(r_durations) * 1000:.1f}")
            print(f"ratio_vs_redis longest_write_p99={c99 / r99:.2f}x "
                  f"move_duration_p50={statistics.median(durations) / statistics.median(r_durations):.2f}x")
        ok = True
        return 0
    finally:
        stop_all(procs)
        if ok:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"logs kept in {root}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
