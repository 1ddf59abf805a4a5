"""Slot moves during a chaos run with several chains (`catena chaos --chains K`).

A seeded plan of `MASTER.MOVE`s, one slot each: most of them hot (a slot the workload writes at
that moment: a counter's, or a register of the current generation), the others drawn at random;
and, midway, adding a chain (the cluster's spare member starts with `--chain K`), whose first
move goes to it; once it has taken slots, draining it (each of its slots to another chain, as
`catena drain` plans) and removing it (`MASTER.REMOVECHAIN`).
A thread of its own sends them to the coordinator leader one after another while the nemesis
faults the cluster, so faults land mid-move. A move whose call failed (its coordinator killed,
paused or cut off) is left to the next leader, which finishes or undoes its saved intent. Once the
cluster is whole again, each move's outcome is read from the slot map: done (the slot is at its
target) or undone (still at its source); anything else is a problem of the run, and so is a
chain planned to be removed that is still in the map. A drain whose move or removal fails (its
coordinator killed, paused or cut off) reads the map again and goes on, within DRAIN_TIMEOUT_S.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import redis

from catena.reshard import drain_plan
from catena.slots import SLOTS, key_slot, parse_ranges

WARMUP_S = 2.0
MOVE_TIMEOUT_S = 30.0
HOT = 0.7  # the share of moves of a slot the workload writes
REMOVE_AFTER_S = 1.5  # the added chain is drained and removed this long after the move that fed it
DRAIN_TIMEOUT_S = 20.0  # a drain and removal going on through faults gives up after this
RETRY_S = 0.3


@dataclass(frozen=True)
class PlannedMove:
    at: float  # s after the start, at the earliest (after the move before it)
    hot: bool
    pick: int  # which slot (modulo the candidates) and which other chain (modulo their number)
    add: bool = False  # instead of a move: start one more chain (its first move goes to it)
    remove: bool = False  # instead of a move: drain the added chain and remove it


@dataclass
class MoveRecord:
    """One move as it happened (monotonic seconds)."""
    slot: int
    hot: bool
    source: int
    target: int
    start: float
    end: float = 0.0
    reply: str = ""  # MASTER.MOVE's answer, or why the call failed
    outcome: str = ""  # done, undone, or where the slot ended up
    drain: bool = False  # one of a drain's moves

    def line(self) -> str:
        what = " (hot)" if self.hot else " (drain)" if self.drain else ""
        return (f"move slot {self.slot}{what} chain {self.source}->{self.target}: "
                f"{self.outcome or 'unknown'} in {self.end - self.start:.2f} s (MASTER.MOVE: {self.reply})")


@dataclass
class Removal:
    """A chain drained and removed, as it happened (monotonic seconds)."""
    chain: int
    start: float
    drained: float = 0.0  # when the map first gave it no slot (0: never)
    end: float = 0.0  # when MASTER.REMOVECHAIN answered OK (0: never)
    attempts: int = 0  # MASTER.REMOVECHAIN calls
    refusals: list[str] = field(default_factory=list)  # why calls failed (the first few)


def plan(seed: int, duration: float, chains: int, add_chain: bool = False) -> list[PlannedMove]:
    """The moves of a run, from the seed alone (none with one chain); with `add_chain`, the
    move nearest the middle of the run is replaced by adding a chain, and REMOVE_AFTER_S after
    the move following it (which feeds the new chain) the new chain is drained and removed,
    if the run lasts that long."""
    if chains < 2:
        return []
    rng = random.Random(f"catena-chaos-moves-{seed}")
    moves, t = [], WARMUP_S
    while (t := t + rng.uniform(1.0, 3.0)) < duration - 2.0:
        moves.append(PlannedMove(round(t, 3), rng.random() < HOT, rng.randrange(1 << 20)))
    if add_chain and len(moves) > 1:
        middle = min(range(len(moves) - 1), key=lambda i: abs(moves[i].at - duration / 2))
        moves[middle] = PlannedMove(moves[middle].at, False, 0, add=True)
        if (at := moves[middle + 1].at + REMOVE_AFTER_S) < duration - 1.0:
            moves = sorted([*moves, PlannedMove(round(at, 3), False, 0, remove=True)], key=lambda m: m.at)
    return moves


def ranges(reply: list) -> dict[int, list[tuple[int, int]]]:
    """chain -> its slot ranges, from MASTER.SLOTMAP's reply (the version, then each chain and its ranges)."""
    return {int(chain): list(parse_ranges(word.encode() if isinstance(word, str) else word))
            for chain, word in zip(reply[1::2], reply[2::2])}


def owners(reply: list) -> dict[int, int]:
    """slot -> chain, from MASTER.SLOTMAP's reply."""
    return {slot: chain for chain, spans in ranges(reply).items() for a, b in spans for slot in range(a, b + 1)}


class Migrations:
    """Applies the planned moves to `cluster` (a LocalCluster) in a thread; `hot()` names the keys
    written now; `admin(addr, *words, timeout=…)` sends MASTER.MOVE."""

    def __init__(self, cluster, planned: list[PlannedMove], t0: float, hot: Callable[[], list[str]], admin):
        self.cluster, self.planned, self.t0, self.hot, self.admin = cluster, planned, t0, hot, admin
        self.records: list[MoveRecord] = []
        self.added: list[str] = []  # how each chain added went
        self.removals: list[Removal] = []
        self._fresh: int | None = None  # a chain just added: the next move goes there
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos-migrations", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """No move starts any more; the one under way ends (bounded by its call's timeout), and
        so does a drain and removal under way (bounded by DRAIN_TIMEOUT_S): the run judges it."""
        self._stop.set()
        self._thread.join(timeout=DRAIN_TIMEOUT_S + MOVE_TIMEOUT_S + 5)

    def _run(self) -> None:
        for move in self.planned:
            if self._stop.wait(max(0.0, self.t0 + move.at - time.monotonic())):
                return
            if move.add:
                self._add_chain()
                continue
            if move.remove:
                self._drain_and_remove()
                continue
            try:
                where = owners(self.cluster.slot_map())
            except (redis.RedisError, OSError):
                continue  # no leader to ask now: this move is skipped
            keys = self.hot()
            slot = key_slot(keys[move.pick % len(keys)].encode()) if move.hot and keys else move.pick % SLOTS
            source = where[slot]
            others = [c for c in self.cluster.live_chains() if c != source]
            target = self._fresh if self._fresh not in (None, source) else others[move.pick % len(others)]
            self._fresh = None
            self._move(MoveRecord(slot, move.hot, source, target, time.monotonic()))

    def _move(self, record: MoveRecord) -> None:
        """One MASTER.MOVE. A chain just added is in the map (MASTER.SLOTMAP lists it) before its
        table is synced, and until then the coordinator answers TRYAGAIN: sent again, as an
        operator would, for up to MOVE_TIMEOUT_S."""
        self.records.append(record)
        unsynced = f"chain {record.target} is joining the slot map"
        while True:
            try:
                record.reply = str(self.admin(self.cluster.leading(), "MASTER.MOVE", record.slot, record.target,
                                              timeout=MOVE_TIMEOUT_S))
            except (redis.RedisError, OSError) as exc:
                record.reply = f"{type(exc).__name__}: {exc}"[:80]
            if (unsynced not in record.reply or time.monotonic() - record.start >= MOVE_TIMEOUT_S
                    or self._stop.wait(RETRY_S)):
                break
        record.end = time.monotonic()

    def _drain_and_remove(self) -> None:
        """Move every slot of the chain added last to the others (as `catena drain` plans), one
        slot per MASTER.MOVE, then MASTER.REMOVECHAIN; through faults: after a failed call the
        map is read again and the drain goes on (a slot the next leader undid moves again)."""
        chain = self.cluster.founded + len(self.removals)
        if chain not in self.cluster.live_chains():
            return  # it was never added
        removal = Removal(chain, time.monotonic())
        self.removals.append(removal)
        passes = 0
        while time.monotonic() - removal.start < DRAIN_TIMEOUT_S:
            try:
                held = ranges(self.cluster.slot_map())
                if held.get(chain):
                    passes += 1
                    if passes > 1:  # moves of the last pass failed (no leader, or a follower asked)
                        time.sleep(RETRY_S)
                    for a, b, target in drain_plan(held, chain):
                        for slot in range(a, b + 1):
                            self._move(MoveRecord(slot, False, chain, target, time.monotonic(), drain=True))
                    continue
                removal.drained = removal.drained or time.monotonic()
                removal.attempts += 1
                self.admin(self.cluster.leading(), "MASTER.REMOVECHAIN", chain, timeout=MOVE_TIMEOUT_S)
            except (redis.RedisError, OSError) as exc:
                if len(removal.refusals) < 3:
                    removal.refusals.append(f"{type(exc).__name__}: {exc}"[:80])
                time.sleep(RETRY_S)
                continue
            removal.end = time.monotonic()
            self.cluster.retire_chain(chain)
            return

    def _add_chain(self) -> None:
        start = time.monotonic()
        try:
            self._fresh = self.cluster.add_chain()
        except (redis.RedisError, OSError, TimeoutError) as exc:
            self.added.append(f"adding a chain failed: {exc}")
            return
        self.added.append(f"chain {self._fresh} added {start - self.t0:.1f} s into the run, in the slot map "
                          f"{time.monotonic() - start:.2f} s later")

    def judge(self) -> list[str]:
        """Each move's outcome, once the cluster is whole again: where the next move of its slot
        found it, or for its slot's last move the map now. Problems, if any."""
        try:
            raw = self.cluster.slot_map()
        except (redis.RedisError, OSError) as exc:
            return [f"the slot map could not be read to judge the moves: {exc}"]
        where = owners(raw)
        problems = [a for a in self.added if a.startswith("adding a chain failed")]
        for i, r in enumerate(self.records):
            after = next((n.source for n in self.records[i + 1:] if n.slot == r.slot), where[r.slot])
            r.outcome = "done" if after == r.target else "undone" if after == r.source else f"at chain {after}"
            if r.outcome == "undone" and "not the leader" in r.reply:
                r.outcome = "not started"  # a follower (or a leader stepping down) refused it
            if r.outcome.startswith("at chain"):
                problems.append(f"slot {r.slot}, moved from chain {r.source} to {r.target}, ended {r.outcome}")
        for removal in self.removals:
            if not removal.end or str(removal.chain) in map(str, raw[1::2]):
                problems.append(f"chain {removal.chain} was not removed within {DRAIN_TIMEOUT_S:g} s: "
                                + ("; ".join(removal.refusals) or "no slot map read"))
        return problems

    def lines(self, samples) -> list[str]:
        """Per move: its outcome and what the workload saw of its slot meanwhile (the writes to
        it begun during the move, the slowest acknowledged, those not acknowledged)."""
        out = list(self.added)
        for r in self.records:
            writes, acked = _writes(r, samples)
            out.append(r.line() + f"; writes to the slot meanwhile {len(writes)}, slowest acknowledged "
                       f"{max(acked, default=0) * 1000:.0f} ms, not acknowledged {len(writes) - len(acked)}")
        out += [self._removal_line(removal, samples) for removal in self.removals]
        count = {o: sum(r.outcome == o for r in self.records) for o in ("done", "undone", "not started")}
        planned = sum(not (m.add or m.remove) for m in self.planned)
        drained = sum(r.drain for r in self.records)
        out.append(f"slot moves {len(self.records)} (of {planned} planned, and {drained} draining a chain; none is "
                   f"sent while no leader answers): done {count['done']}, undone {count['undone']}, "
                   f"not started {count['not started']}")
        return out

    def _removal_line(self, removal: Removal, samples) -> str:
        """When the chain was drained and removed, how long each part took, and the per-slot
        unavailability its drain caused (the slowest acknowledged write to a drained slot
        begun during that slot's move: the client retries through -TRYAGAIN meanwhile)."""
        moves = [r for r in self.records if r.drain and r.source == removal.chain]
        writes = [_writes(r, samples) for r in moves]
        start = f"chain {removal.chain}: drain began {removal.start - self.t0:.1f} s into the run"
        if not removal.end:
            return start + f", not removed ({removal.attempts} MASTER.REMOVECHAIN calls)"
        slots = len({r.slot for r in moves})
        unavailable = (f"slowest acknowledged write {max(max(acked, default=0.0) for _, acked in writes) * 1000:.0f} ms"
                       if any(w for w, _ in writes) else "no writes to them during their moves")
        return (start + f"; {slots} slot{'s' if slots != 1 else ''} drained in "
                f"{removal.drained - removal.start:.2f} s ({len(moves)} moves), removed "
                f"{removal.end - removal.start:.2f} s after the drain began (MASTER.REMOVECHAIN calls "
                f"{removal.attempts}); per-slot unavailability: {unavailable}")


def _writes(r: MoveRecord, samples) -> tuple[list, list[float]]:
    """The writes to `r`'s slot begun during its move, and the durations of those acknowledged."""
    writes = [s for s in samples if s.write and s.key and r.start <= s.start <= r.end
              and key_slot(s.key.encode()) == r.slot]
    return writes, [s.end - s.start for s in writes if s.outcome == "ok"]
