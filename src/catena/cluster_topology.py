"""The cluster as Redis Cluster's clients see it: each chain a shard, its head the master, its
other members replicas (docs/sharding.md §4). Pure: fed with chains (members head first, the
slot ranges each serves), it answers CLUSTER SLOTS, SHARDS, NODES and INFO. A member feeds it
its own chain today (its view and its slot table) and every chain it is pushed later.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from catena.slots import SLOTS


def node_id(addr: str) -> str:
    """A member's node id: 40 hex characters derived from its address (stable across restarts)."""
    return hashlib.sha1(addr.encode()).hexdigest()


def _host_port(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    return host.strip("[]"), int(port)


@dataclass(frozen=True)
class Shard:
    chain_id: int
    epoch: int
    members: tuple[str, ...]  # head first
    ranges: tuple[tuple[int, int], ...]  # inclusive slot ranges it serves


class Topology:
    def __init__(self, shards=()):
        self.shards: dict[int, Shard] = {s.chain_id: s for s in shards}

    def put(self, shard: Shard) -> None:
        """Adopt `shard` unless an equal or newer epoch of its chain is known."""
        known = self.shards.get(shard.chain_id)
        if known is None or shard.epoch >= known.epoch:
            self.shards[shard.chain_id] = shard

    def head_of(self, chain_id: int | None, slot: int) -> str | None:
        """The head of chain `chain_id`, or (None) of the chain serving `slot`."""
        if chain_id is None:
            chain_id = next((s.chain_id for s in self.shards.values()
                             if any(a <= slot <= b for a, b in s.ranges)), None)
        shard = self.shards.get(chain_id) if chain_id is not None else None
        return shard.members[0] if shard and shard.members else None

    def _served(self) -> list[Shard]:
        return [s for s in sorted(self.shards.values(), key=lambda s: s.chain_id) if s.members]

    # -- answers -----------------------------------------------------------------------------------

    def slots(self) -> list:
        """CLUSTER SLOTS: [first, last, master, replicas…] per range; a node is [ip, port, id, {}]."""
        out = []
        for shard in self._served():
            nodes = [[h.encode(), p, node_id(m).encode(), []] for m in shard.members for h, p in [_host_port(m)]]
            out += [[a, b, *nodes] for a, b in shard.ranges]
        return sorted(out, key=lambda r: r[0])

    def shards_reply(self) -> list:
        """CLUSTER SHARDS: per shard its slots and its nodes."""
        out = []
        for shard in self._served():
            nodes = []
            for i, member in enumerate(shard.members):
                host, port = _host_port(member)
                nodes.append([b"id", node_id(member).encode(), b"port", port, b"ip", host.encode(),
                              b"endpoint", host.encode(), b"role", b"master" if i == 0 else b"replica",
                              b"replication-offset", 0, b"health", b"online"])
            out.append([b"slots", [n for r in shard.ranges for n in r], b"nodes", nodes])
        return out

    def nodes(self, me: str) -> bytes:
        """CLUSTER NODES: one line per member, Redis's format (the cluster bus port is the port + 10000)."""
        lines = []
        for shard in self._served():
            master = node_id(shard.members[0])
            for i, member in enumerate(shard.members):
                host, port = _host_port(member)
                flags = ("myself," if member == me else "") + ("master" if i == 0 else "slave")
                slots = " ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in shard.ranges) if i == 0 else ""
                line = (f"{node_id(member)} {host}:{port}@{port + 10000} {flags} {'-' if i == 0 else master} "
                        f"0 0 {shard.epoch} connected {slots}")
                lines.append(line.rstrip() + "\n")
        return "".join(lines).encode()

    def info(self, my_epoch: int) -> bytes:
        """CLUSTER INFO."""
        shards = self._served()
        assigned = sum(b - a + 1 for s in shards for a, b in s.ranges)
        epoch = max((s.epoch for s in shards), default=0)
        fields = [("cluster_state", "ok" if assigned == SLOTS else "fail"), ("cluster_slots_assigned", assigned),
                  ("cluster_slots_ok", assigned), ("cluster_slots_pfail", 0), ("cluster_slots_fail", 0),
                  ("cluster_known_nodes", sum(len(s.members) for s in shards)),
                  ("cluster_size", sum(1 for s in shards if s.ranges)), ("cluster_current_epoch", epoch),
                  ("cluster_my_epoch", my_epoch), ("cluster_stats_messages_sent", 0),
                  ("cluster_stats_messages_received", 0), ("total_cluster_links_buffer_limit_exceeded", 0)]
        return "".join(f"{k}:{v}\r\n" for k, v in fields).encode()
