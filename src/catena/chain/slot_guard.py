"""Cluster mode's refusals (docs/sharding.md §2): which commands a member may not serve, with Redis
Cluster's error replies. Pure: the slot table, the command and the owning chains' heads in.

Every member checks a command's keys before anything else (`check_command`): keys in more than
one slot get -CROSSSLOT; a slot its chain's table does not serve gets -MOVED or -TRYAGAIN. The
head checks a write again just before giving it a seq (`check_write`), against the state every
earlier entry left, which is what makes a FREEZE or GIVE a clean cut in the chain's history.
"""

from __future__ import annotations

from typing import Callable

from catena.chain import ops, removal, slot_ops, transactions
from catena.chain.slot_table import FROZEN, GIVEN, IMPORTING, OWNED, SlotTable
from catena.chain.state import op_keys
from catena.chain.strings import FLUSH
from catena.cluster_topology import Shard, Topology
from catena.resp import command_info
from catena.resp.codec import Error
from catena.slots import key_slot
from catena.view import View

CROSSSLOT = Error("CROSSSLOT Keys in request don't hash to the same slot")
MIGRATING = Error("TRYAGAIN Slot is being migrated, retry")
UNSERVED = Error("CLUSTERDOWN Hash slot not served")

HeadOf = Callable[[int | None, int], "str | None"]  # (chain id or None, slot) -> that chain's head (None: owner of the slot)


def slot_of(keys) -> int | None | Error:
    """The one slot of `keys` (None: no keys), or CROSSSLOT."""
    slot = None
    for key in keys:
        s = key_slot(key)
        if slot is None:
            slot = s
        elif s != slot:
            return CROSSSLOT
    return slot


def refusal(table: SlotTable, slot: int, write: bool, head_of: HeadOf) -> Error | None:
    """Why this chain may not serve a read (or a write) of `slot`; None: it may."""
    state = table.states[slot]
    if state == OWNED or (state == FROZEN and not write):
        return None
    if state in (FROZEN, IMPORTING):
        return MIGRATING
    head = head_of(table.peer(slot), slot) if state == GIVEN else None
    if head is None:  # never owned, or given to a chain that has no head now (or was removed since):
        head = head_of(None, slot)  # the chain the pushed map names for the slot
    if head is not None:
        return Error(f"MOVED {slot} {head}")
    return MIGRATING if state == GIVEN else UNSERVED


def command_slot(args: list[bytes]) -> int | None | Error:
    """The one slot of a client's command's keys (as its key specification finds them; None:
    it has none), or CROSSSLOT."""
    name = args[0].upper()
    keys = command_info.keys(name, args)
    if keys is None and name in ops.READS:  # catena's own reads (a transaction of reads)
        keys = ops.read_keys(args)
    return slot_of(keys) if keys else None


def check_command(table: SlotTable, args: list[bytes], head_of: HeadOf) -> Error | None:
    """A client's command at any member: its keys in one slot this chain serves for it."""
    slot = command_slot(args)
    if slot is None or type(slot) is Error:
        return slot
    return refusal(table, slot, ops.is_write(args), head_of)


def check_write(table: SlotTable, op, head_of: HeadOf) -> Error | None:
    """A client's write at the head, just before its seq: every slot it writes (and, for a
    transaction, reads) served for writes. FLUSHDB/FLUSHALL waits while a slot moves (it would
    write to a frozen or half-imported slot) and otherwise leaves given-away keys no worse."""
    if op[0] in slot_ops.KINDS:  # catena's own, moving the slot
        return None
    if op[0] == FLUSH:
        states = table.states
        return MIGRATING if FROZEN in states or IMPORTING in states else None
    keys = op_keys(op)
    if op[0] == transactions.EXEC:
        keys = [*keys, *(k for sub in op[2] if sub[0] == transactions.READ for k in ops.read_keys(list(sub[1])) or ())]
        slot = slot_of(keys)
        if type(slot) is Error:
            return slot
    for slot in {key_slot(k) for k in keys}:
        why = refusal(table, slot, True, head_of)
        if why is not None:
            return why
    return None



class ClusterMode:
    """A member's cluster mode (`--cluster-enabled yes`): the topology it knows (its own chain from
    its views; others' as they are pushed) and the checks, bound to it."""

    def __init__(self):
        self.topology = Topology()
        self.removed: int | None = None  # this member's chain, once the coordinator said it was removed

    def remove(self, chain_id: int) -> None:
        """Chain `chain_id`, this member's, was removed: refuse every client command from now on
        (`removal.refusal`) and leave it out of the topology."""
        self.removed = chain_id

    def on_view(self, view: View) -> None:
        self.topology.put(Shard(view.chain_id, view.epoch, view.members, ()))

    def head_of(self, chain_id: int | None, slot: int) -> str | None:
        return self.topology.head_of(chain_id, slot)

    def check_command(self, table: SlotTable, args: list[bytes]) -> Error | None:
        if self.removed is not None:
            slot = command_slot(args)
            return slot if type(slot) is Error else removal.refusal(self.removed, slot, self.head_of)
        return check_command(table, args, self.head_of)

    def check_write(self, table: SlotTable, op) -> Error | None:
        if self.removed is not None and op[0] not in slot_ops.KINDS:
            return removal.gone(self.removed)
        return check_write(table, op, self.head_of)

    def now(self, view: View | None, table: SlotTable) -> Topology:
        """The topology with this chain's slots as its table has them now."""
        now = Topology(s for s in self.topology.shards.values() if s.chain_id != self.removed)
        if view is not None and self.removed is None:
            now.put(Shard(view.chain_id, view.epoch, view.members, tuple(table.ranges())))
        return now
