"""The peer of bench/slot_move: the same slot moves in a Redis Cluster of three redis-server
masters, done as `redis-cli --cluster reshard` does them (SETSLOT IMPORTING/MIGRATING, MIGRATE
the keys in batches, SETSLOT NODE), with the same writer on the moving slot following -ASK (after
ASKING) and -MOVED."""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import redis

from catena.chaos.runner import Proc
from catena.loopback import HOST, free_ports, wait_until
from catena.slots import key_slot

MIGRATE_BATCH = 100


def start_redis_cluster(root: Path, procs: list) -> list[redis.Redis]:
    ports = free_ports(3)
    for port in ports:
        (root / f"redis-{port}").mkdir(parents=True)
        procs.append(Proc(f"redis-{port}", ["redis-server", "--port", str(port), "--bind", HOST, "--cluster-enabled", "yes",
                                            "--cluster-config-file", "nodes.conf", "--dir", str(root / f"redis-{port}"),
                                            "--save", "", "--appendonly", "no"], root / f"redis-{port}.log"))
    nodes = [redis.Redis(host=HOST, port=p, socket_timeout=10) for p in ports]
    for node in nodes:
        wait_until(node.ping, 30, "redis-server to start")
    subprocess.run(["redis-cli", "--cluster", "create", *[f"{HOST}:{p}" for p in ports], "--cluster-yes"],
                   check=True, capture_output=True, timeout=60)
    for node in nodes:
        wait_until(lambda n=node: b"cluster_state:ok" in n.execute_command("CLUSTER", "INFO"), 30, "cluster ok")
    return nodes


def owner(nodes: list[redis.Redis], slot: int) -> redis.Redis:
    for first, last, master, *_ in nodes[0].execute_command("CLUSTER", "SLOTS"):
        if first <= slot <= last:
            return next(n for n in nodes if n.connection_pool.connection_kwargs["port"] == master[1])
    raise AssertionError(f"nobody serves slot {slot}")


def node_id(node: redis.Redis) -> bytes:
    return node.execute_command("CLUSTER", "MYID")


def move(nodes: list[redis.Redis], slot: int, dst: redis.Redis) -> None:
    """One slot, as redis-cli --cluster reshard moves it."""
    src = owner(nodes, slot)
    dst_port = dst.connection_pool.connection_kwargs["port"]
    dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", node_id(src))
    src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", node_id(dst))
    while keys := src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, MIGRATE_BATCH):
        src.execute_command("MIGRATE", HOST, dst_port, "", 0, 5000, "KEYS", *keys)
    for node in (dst, src, *nodes):
        node.execute_command("CLUSTER", "SETSLOT", slot, "NODE", node_id(dst))


class RedisWriter(threading.Thread):
    """Writes `key` again and again through the slot's owner, following -ASK and -MOVED."""

    def __init__(self, key: str, nodes: list[redis.Redis]):
        super().__init__(daemon=True)
        self.key, self.stop = key, threading.Event()
        self.by_port = {n.connection_pool.connection_kwargs["port"]: n for n in nodes}
        self.target = owner(nodes, key_slot(key.encode()))
        self.acked: list[tuple[float, float, int]] = []

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            started = time.monotonic()
            target, asking = self.target, False
            while True:
                try:
                    if asking:
                        pipe = target.pipeline(transaction=False)
                        pipe.execute_command("ASKING")
                        pipe.set(self.key, n)
                        pipe.execute()
                    else:
                        target.set(self.key, n)
                    break
                except redis.exceptions.AskError as exc:
                    target, asking = self.by_port[exc.port], True
                except redis.exceptions.MovedError as exc:
                    target = self.target = self.by_port[exc.port]
                    asking = False
                except redis.exceptions.TryAgainError:
                    time.sleep(0.001)
            self.acked.append((started, time.monotonic(), n))


def measure(root: Path, procs: list, tags: list[str], keys: int) -> tuple[list[float], list[float]]:
    """(longest write per move, move durations) in seconds."""
    nodes = start_redis_cluster(root, procs)
    for tag in tags:
        src = owner(nodes, key_slot(tag.encode()))
        pipe = src.pipeline(transaction=False)
        for k in range(keys):
            pipe.set(f"{{{tag}}}:{k}", "x" * 100)
        pipe.execute()
    longest, durations = [], []
    for tag in tags:
        slot = key_slot(tag.encode())
        dst = next(n for n in nodes if n is not owner(nodes, slot))
        writer = RedisWriter(f"{{{tag}}}:w", nodes)
        writer.start()
        time.sleep(0.05)
        started = time.monotonic()
        move(nodes, slot, dst)
        durations.append(time.monotonic() - started)
        time.sleep(0.05)
        writer.stop.set()
        writer.join()
        assert int(dst.get(f"{{{tag}}}:w")) == writer.acked[-1][2], "the last acknowledged write is not at the target"
        assert dst.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == keys + 1
        longest.append(max(done - start for start, done, _ in writer.acked))
    return longest, durations
