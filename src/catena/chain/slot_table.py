"""The chain's replicated slot table: which hash slots this chain serves (docs/sharding.md).

Each of the 16,384 slots is OWNED, FROZEN (moving out: reads only), GIVEN to another chain,
IMPORTING from another chain, or NONE. The table is part of the chain state: it changes only by
chain entries, so every member agrees where in the history a slot changed hands, and snapshots
carry it. The ops that change it are `catena.chain.slot_ops`'s.
"""

from __future__ import annotations

from catena.slots import SLOTS as SLOT_COUNT

OWNED, FROZEN, GIVEN, IMPORTING, NONE = range(5)
NAMES = ("owned", "frozen", "given", "importing", "none")
WITH_PEER = frozenset((GIVEN, IMPORTING))  # states naming another chain
SERVED = frozenset((OWNED, FROZEN))  # a chain holding the slot in one of these serves its reads

# (from, to): FREEZE, UNFREEZE, GIVE, IMPORT-BEGIN (from given or none), TAKE, ABORT, ASSIGN,
# DISOWN (only an empty slot: checked in `slot_ops`)
MOVES = frozenset(((OWNED, FROZEN), (FROZEN, OWNED), (FROZEN, GIVEN), (GIVEN, IMPORTING), (NONE, IMPORTING),
                   (IMPORTING, OWNED), (IMPORTING, NONE), (NONE, OWNED), (OWNED, NONE)))


class SlotTable:
    """Per slot its state (a bytearray, 0 = OWNED), for GIVEN and IMPORTING the other chain, and
    the newest coordinator fence that changed it (slot ops with an older one are refused)."""

    __slots__ = ("states", "peers", "fences")

    def __init__(self):
        self.states = bytearray(SLOT_COUNT)  # a new chain owns every slot
        self.peers: dict[int, int] = {}
        self.fences: dict[int, int] = {}

    def state(self, slot: int) -> int:
        return self.states[slot]

    def peer(self, slot: int) -> int | None:
        return self.peers.get(slot)

    def ranges(self, states=SERVED) -> list[tuple[int, int]]:
        """The slots in `states` as inclusive (first, last) ranges, in order."""
        out: list[tuple[int, int]] = []
        first = None
        for slot, st in enumerate(self.states):
            if st in states:
                if first is None:
                    first = slot
            elif first is not None:
                out.append((first, slot - 1))
                first = None
        if first is not None:
            out.append((first, SLOT_COUNT - 1))
        return out

    def dump(self) -> list:
        return [bytes(self.states), self.peers, self.fences]

    @classmethod
    def load(cls, raw) -> "SlotTable":
        if type(raw) is not tuple or len(raw) not in (2, 3):
            raise ValueError("a slot table is [16384 state bytes, {slot: chain}, {slot: fence}]")
        states, peers, fences = raw if len(raw) == 3 else (*raw, {})
        if (type(states) is not bytes or len(states) != SLOT_COUNT or max(states) > NONE
                or not all(type(m) is dict and all(type(s) is int and type(v) is int for s, v in m.items())
                           for m in (peers, fences))):
            raise ValueError("a slot table is [16384 state bytes, {slot: chain}, {slot: fence}]")
        table = cls()
        table.states[:] = states
        table.peers, table.fences = dict(peers), dict(fences)
        return table


