"""The coordinator's cluster mode (pure): it keeps the slot map (slot_map.py) next to the chains'
views, makes each chain's replicated slot table match it, and tells every member about the
other chains (docs/sharding.md §1).

- A new store in cluster mode starts with a map splitting the slots evenly between its chains;
  a store of one chain that turns cluster mode on leaves every slot with that chain.
- A chain the map does not know yet (a member registered into a new chain) is added to it with
  no slots.
- A chain whose table does not match the map yet (`synced`) gets, once it has a head, one
  `CATENA.SLOTS first last none` entry per range the map does not give it (committed by the
  chain before it answers; a new chain's slots are empty, so every step is allowed), under the
  leader's fence; then the map is saved with the chain synced, and only from then on is the
  chain announced to the others.
- Every member of every chain is pushed `MEMBER.SHARD` for each other synced chain that has
  members, whenever that chain's view, its ranges or the member's own chain's view changed (a
  restarted member, which forgot what it was pushed, is in a new view), until it acknowledged
  it (retried every PUSH_RETRY_S, like views).
- A chain without slots is removed (`remove`, MASTER.REMOVECHAIN) by one save that drops it
  from the map and deletes its part; from then on every member is pushed, for it, a shard
  with no members under a newer epoch, so that it leaves their CLUSTER SLOTS and NODES.

Every map change is saved (`SaveMap`, fenced) before anything follows from it. Inputs take
`now`; outputs are the effects below, plus `next_deadline()`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from catena.coordinator import layout
from catena.coordinator import slot_map as sm
from catena.coordinator.pushes import PUSH_RETRY_S
from catena.coordinator.requests import watched
from catena.view import View

SYNC_RETRY_S = 0.5


@dataclass(frozen=True)
class SaveMap:
    """Save `slot_map` (the layout's `slots` part) under the term's fence, deleting the parts
    named in `drop` in the same write; report `on_saved`."""
    slot_map: dict
    drop: tuple[str, ...] = ()


@dataclass(frozen=True)
class SyncTable:
    """Run each of `calls` (CATENA.SLOTS words) in order at chain `chain`'s `head`; report
    `on_synced` (ok: every call answered OK)."""
    chain: int
    head: str
    calls: tuple[tuple, ...]


@dataclass(frozen=True)
class PushShard:
    """Call MEMBER.SHARD with `words` on `member`; report `on_pushed` with `chain` and `stamp`."""
    member: str
    chain: int
    stamp: tuple[int, bytes, int]  # (the chain's epoch, its ranges, the epoch of `member`'s own chain)
    words: tuple


@dataclass
class Shards:
    slot_map: dict | None = None  # the saved map (None: not in cluster mode)
    leading: bool = False
    fence: int = 0
    views: dict[int, View] = field(default_factory=dict)  # the chains' saved views, as last seen
    _saving: dict | None = None
    _syncing: set[int] = field(default_factory=set)
    _sync_due: dict[int, float] = field(default_factory=dict)
    _acked: dict[tuple[str, int], tuple[int, int, int]] = field(default_factory=dict)
    _in_flight: set[tuple[str, int]] = field(default_factory=set)
    _due: dict[tuple[str, int], float] = field(default_factory=dict)
    _assign: dict[int, int] = field(default_factory=dict)  # slot -> chain: moved, for the next map save
    _remove: dict[int, int] = field(default_factory=dict)  # chain -> the epoch announcing it gone

    def lead(self, saved: dict | None, create: int, fence: int, views: dict[int, View], now: float,
             new_store: bool = True) -> list:
        """A new term from the saved map (None: none saved; `create` > 0: cluster mode, a new map
        over chains 0..create-1: split evenly in a `new_store`, else all of it with chain 0)."""
        self.step_down()
        self.leading, self.fence, self.slot_map, self.views = True, fence, saved, dict(views)
        if saved is None and create > 0:
            return self._save((sm.even if new_store else sm.whole)(list(range(create))))
        return self._work(now)

    def follow(self, saved: dict | None) -> None:
        if not self.leading:
            self.slot_map = saved

    def step_down(self) -> None:
        self.leading, self._saving = False, None
        self._syncing, self._sync_due = set(), {}
        self._acked, self._in_flight, self._due, self._assign, self._remove = {}, set(), {}, {}, {}

    # -- inputs ------------------------------------------------------------------------------

    def on_views(self, views: dict[int, View], now: float) -> list:
        """The chains' saved views now (the service hands them over after every change)."""
        if views == self.views:
            return []
        self.views = dict(views)
        return self._work(now)

    def assign(self, slot: int, chain: int, now: float) -> list:
        """A slot's move committed at its new chain (migration.py's `map` phase): the map
        addresses it to `chain` from the next map save on."""
        self._assign[slot] = chain
        return self._work(now)

    def remove(self, chain: int, epoch: int, now: float) -> list:
        """Remove chain `chain` (it holds no slots: the caller checked, under the move lock) at
        the next map save; members are told it is gone under `epoch` (newer than its view's)."""
        self._remove[chain] = epoch
        return self._work(now)

    def on_saved(self, ok: bool, now: float) -> list:
        saving, self._saving = self._saving, None
        if not ok or saving is None:
            self.leading = False  # the term is over (the service steps down)
            return []
        self.slot_map = saving
        return self._work(now)

    def on_synced(self, chain: int, ok: bool, now: float) -> list:
        self._syncing.discard(chain)
        if not ok:
            self._sync_due[chain] = now + SYNC_RETRY_S
            return []
        if self.slot_map is None or chain in self.slot_map["synced"] or self._saving is not None:
            return self._work(now)
        return self._save(sm.synced(self.slot_map, chain))

    def on_pushed(self, member: str, chain: int, stamp: tuple[int, bytes, int], ok: bool, now: float) -> list:
        key = (member, chain)
        self._in_flight.discard(key)
        if not ok:
            self._due[key] = now + PUSH_RETRY_S
            return self._work(now)
        self._acked[key] = stamp
        if not self.leading or self.slot_map is None or self._saving is not None:
            return []  # the save's outcome goes on
        return self._pushes(key)  # only this push may be due again (a change meanwhile)

    def on_timer(self, now: float) -> list:
        if not any(due <= now for due in [*self._due.values(), *self._sync_due.values()]):
            return []
        self._due = {k: d for k, d in self._due.items() if d > now}
        self._sync_due = {c: d for c, d in self._sync_due.items() if d > now}
        return self._work(now)

    def next_deadline(self) -> float | None:
        return min([*self._due.values(), *self._sync_due.values()], default=None) if self.leading else None

    # -- what follows from the map and the views ------------------------------------------------

    def _save(self, slot_map: dict, drop: tuple[str, ...] = ()) -> list:
        self._saving = slot_map
        return [SaveMap(slot_map, drop)]

    def _live(self) -> dict[int, View]:
        """The chains' views, but for chains removed (whose machine may not be gone yet)."""
        gone = sm.removed(self.slot_map)
        return {c: v for c, v in self.views.items() if str(c) not in gone}

    def _work(self, now: float) -> list:
        m = self.slot_map
        if not self.leading or m is None or self._saving is not None:
            return []
        for chain in sorted(self._live()):
            if str(chain) not in m["chains"]:
                return self._save(sm.known(m, chain))
        if self._assign:
            for slot, chain in sorted(self._assign.items()):
                m = sm.move(m, slot, chain)
            self._assign = {}
            return self._save(m)
        if self._remove:
            for chain, epoch in sorted(self._remove.items()):
                m = sm.drop(m, chain, epoch)
            drop, self._remove = tuple(layout.chain_part(c) for c in sorted(self._remove)), {}
            return self._save(m, drop)
        return self._syncs() + self._pushes()

    def _syncs(self) -> list[SyncTable]:
        fx = []
        for chain, view in sorted(self._live().items()):
            if (chain in self.slot_map["synced"] or chain in self._syncing or chain in self._sync_due
                    or view.head is None):
                continue
            self._syncing.add(chain)
            calls = tuple((b"CATENA.SLOTS", b"FENCE", b"%d" % self.fence, b"%d" % a, b"%d" % b, b"none")
                          for a, b in sm.complement(sm.ranges(self.slot_map, chain)))
            fx.append(SyncTable(chain, view.head, calls))
        return fx

    def _pushes(self, only: tuple[str, int] | None = None) -> list[PushShard]:
        """Each synced chain with members, and each removed chain (no members, its last epoch),
        to every member of every other chain (`only`: this member, this chain)."""
        m, fx, live = self.slot_map, [], self._live()
        if only is not None:  # just the chain `only` names, and the chain of the member it names
            live = {c: v for c, v in live.items() if c == only[1] or only[0] in v.members or only[0] == v.learner}
        shards = [(chain, (b"MEMBER.SHARD", b"%d" % chain, b"%d" % live[chain].epoch, sm.word(sm.ranges(m, chain)),
                           *(x.encode() for x in live[chain].members)))
                  for chain in m["synced"] if chain in live and live[chain].members]
        shards += [(int(c), (b"MEMBER.SHARD", c.encode(), b"%d" % epoch, b"-"))
                   for c, epoch in sorted(sm.removed(m).items())]
        for chain, words in shards:
            for other, other_view in sorted(live.items()):
                if other == chain:
                    continue
                # Pushed again when the chain's view or ranges change (a move re-pushes its two
                # chains only), or the member's own chain's view (a restarted member forgot).
                stamp = (int(words[2]), words[3], other_view.epoch)
                for member in sorted(watched(other_view)):
                    key = (member, chain)
                    if (only not in (None, key) or key in self._in_flight or key in self._due
                            or self._acked.get(key) == stamp):
                        continue
                    self._in_flight.add(key)
                    fx.append(PushShard(member, chain, stamp, words))
        return fx
