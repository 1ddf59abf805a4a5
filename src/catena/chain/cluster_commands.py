"""CLUSTER and READONLY/READWRITE/ASKING at a member (docs/sharding.md §4).

The topology answers (SLOTS, SHARDS, NODES, INFO, MYID) come from `catena.cluster_topology`, fed
with what the member knows (its own view and slot table); the slot answers (KEYSLOT,
COUNTKEYSINSLOT, GETKEYSINSLOT) from its own data. A member without cluster mode answers these
as a Redis without cluster support does.
"""

from __future__ import annotations

import time

from catena.chain import removal
from catena.cluster_topology import Shard, node_id
from catena.resp.codec import OK, Error
from catena.resp.commands import INTERNAL, parse_int
from catena.slots import SLOTS, key_slot, parse_ranges

DISABLED = Error("ERR This instance has cluster support disabled")
_INVALID_SLOT = Error("ERR Invalid slot")
_INVALID_SLOT_OR_COUNT = Error("ERR Invalid slot or number of keys")


def _live_keys(replica, slot: int) -> list[bytes]:
    state, now_ms = replica.state, int(time.time() * 1000)
    return [k for k in state.slot_keys(slot) if state.get(k, now_ms) is not None]


def _count(replica, args):
    slot = parse_int(args[2])
    return _INVALID_SLOT if not 0 <= slot < SLOTS else len(_live_keys(replica, slot))


def _keys_in_slot(replica, args):
    slot, count = parse_int(args[2]), parse_int(args[3])
    if not 0 <= slot < SLOTS or count < 0:
        return _INVALID_SLOT_OR_COUNT
    return sorted(_live_keys(replica, slot))[:count]


def _topology(replica):
    return replica.cluster.now(replica.view, replica.state.table)


# subcommand -> (arity counting CLUSTER and the subcommand, answer(replica, args))
_SUBCOMMANDS = {
    b"KEYSLOT": (3, lambda r, a: key_slot(a[2])),
    b"COUNTKEYSINSLOT": (3, _count),
    b"GETKEYSINSLOT": (4, _keys_in_slot),
    b"MYID": (2, lambda r, a: node_id(r.me).encode()),
    b"SLOTS": (2, lambda r, a: _topology(r).slots()),
    b"SHARDS": (2, lambda r, a: _topology(r).shards_reply()),
    b"NODES": (2, lambda r, a: _topology(r).nodes(r.me)),
    b"INFO": (2, lambda r, a: _topology(r).info(r.epoch)),
}
_FROM_DATA = frozenset((b"COUNTKEYSINSLOT", b"GETKEYSINSLOT"))


def _shard(replica, args):
    """MEMBER.SHARD chain epoch ranges [member…]: another chain, as the coordinator pushes it (the
    heads -MOVED names, the shards CLUSTER SLOTS lists; no members: a removed chain, listed no
    more). Serving stays the slot table's."""
    try:
        shard = Shard(int(args[1]), int(args[2]), tuple(m.decode() for m in args[4:]), parse_ranges(args[3]))
    except (ValueError, UnicodeDecodeError) as exc:
        return Error(f"ERR MEMBER.SHARD chain epoch first-last[,...]|- [member...]: {exc}")
    replica.cluster.topology.put(shard)
    return OK


def register(table, replica_of) -> None:
    """Register the commands on a member's command table; `replica_of()` is its Replica now."""
    def cluster(client, args):
        replica = replica_of()
        if replica.cluster is None:
            return DISABLED
        sub = args[1].upper()
        known = _SUBCOMMANDS.get(sub)
        if known is None or len(args) != known[0]:
            return Error(f"ERR Unknown subcommand or wrong number of arguments for '{args[1].decode(errors='replace')}'. "
                         "Try CLUSTER HELP.")
        if sub in _FROM_DATA and replica.cluster.removed is not None:
            return removal.gone(replica.cluster.removed)  # nothing from the data of a removed chain
        return known[1](replica, args)

    def accepted(client, args):
        """READONLY, READWRITE, ASKING: every member of a chain serves its reads linearizably and
        forwards writes, and slots move with -TRYAGAIN, not -ASK: nothing to change."""
        return OK if replica_of().cluster is not None else DISABLED

    def shard(client, args):
        replica = replica_of()
        return DISABLED if replica.cluster is None else _shard(replica, args)

    table.register(b"CLUSTER", cluster, -2)
    table.register(b"MEMBER.SHARD", shard, -4, role=INTERNAL)
    for name in (b"READONLY", b"READWRITE", b"ASKING"):
        table.register(name, accepted, 1)
