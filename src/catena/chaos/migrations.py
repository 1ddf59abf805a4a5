"""Slot moves during a chaos run with several chains (`catena chaos --chains K`).

A seeded plan of `MASTER.MOVE`s, one slot each: most of them hot (a slot the workload writes at
that moment: a counter's, or a register of the current generation), the others drawn at random;
and, midway, adding a chain (the cluster's spare member starts with `--chain K`), whose first
move goes to it.
A thread of its own sends them to the coordinator leader one after another while the nemesis
faults the cluster, so faults land mid-move. A move whose call failed (its coordinator killed,
paused or cut off) is left to the next leader, which finishes or undoes its saved intent. Once the
cluster is whole again, each move's outcome is read from the slot map: done (the slot is at its
target) or undone (still at its source); anything else is a problem of the run.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass
from typing import Callable

import redis

from catena.slots import SLOTS, key_slot, parse_ranges

WARMUP_S = 2.0
MOVE_TIMEOUT_S = 30.0
HOT = 0.7  # the share of moves of a slot the workload writes


@dataclass(frozen=True)
class PlannedMove:
    at: float  # s after the start, at the earliest (after the move before it)
    hot: bool
    pick: int  # which slot (modulo the candidates) and which other chain (modulo their number)
    add: bool = False  # instead of a move: start one more chain (its first move goes to it)


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

    def line(self) -> str:
        return (f"move slot {self.slot}{' (hot)' if self.hot else ''} chain {self.source}->{self.target}: "
                f"{self.outcome or 'unknown'} in {self.end - self.start:.2f} s (MASTER.MOVE: {self.reply})")


def plan(seed: int, duration: float, chains: int, add_chain: bool = False) -> list[PlannedMove]:
    """The moves of a run, from the seed alone (none with one chain); with `add_chain`, the
    move nearest the middle of the run is replaced by adding a chain."""
    if chains < 2:
        return []
    rng = random.Random(f"catena-chaos-moves-{seed}")
    moves, t = [], WARMUP_S
    while (t := t + rng.uniform(1.0, 3.0)) < duration - 2.0:
        moves.append(PlannedMove(round(t, 3), rng.random() < HOT, rng.randrange(1 << 20)))
    if add_chain and len(moves) > 1:
        middle = min(range(len(moves) - 1), key=lambda i: abs(moves[i].at - duration / 2))
        moves[middle] = PlannedMove(moves[middle].at, False, 0, add=True)
    return moves


def owners(reply: list) -> dict[int, int]:
    """slot -> chain, from MASTER.SLOTMAP's reply (the version, then each chain and its ranges)."""
    out = {}
    for chain, word in zip(reply[1::2], reply[2::2]):
        for first, last in parse_ranges(word.encode() if isinstance(word, str) else word):
            out.update(dict.fromkeys(range(first, last + 1), int(chain)))
    return out


class Migrations:
    """Applies the planned moves to `cluster` (a LocalCluster) in a thread; `hot()` names the keys
    written now; `admin(addr, *words, timeout=…)` sends MASTER.MOVE."""

    def __init__(self, cluster, planned: list[PlannedMove], t0: float, hot: Callable[[], list[str]], admin):
        self.cluster, self.planned, self.t0, self.hot, self.admin = cluster, planned, t0, hot, admin
        self.records: list[MoveRecord] = []
        self.added: list[str] = []  # how each chain added went
        self._fresh: int | None = None  # a chain just added: the next move goes there
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos-migrations", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """No move starts any more; the one under way ends (bounded by its call's timeout)."""
        self._stop.set()
        self._thread.join(timeout=MOVE_TIMEOUT_S + 5)

    def _run(self) -> None:
        for move in self.planned:
            if self._stop.wait(max(0.0, self.t0 + move.at - time.monotonic())):
                return
            if move.add:
                self._add_chain()
                continue
            try:
                where = owners(self.cluster.slot_map())
            except (redis.RedisError, OSError):
                continue  # no leader to ask now: this move is skipped
            keys = self.hot()
            slot = key_slot(keys[move.pick % len(keys)].encode()) if move.hot and keys else move.pick % SLOTS
            source = where[slot]
            others = [c for c in range(self.cluster.chains) if c != source]
            target = self._fresh if self._fresh not in (None, source) else others[move.pick % len(others)]
            self._fresh = None
            record = MoveRecord(slot, move.hot, source, target, time.monotonic())
            self.records.append(record)
            try:
                record.reply = str(self.admin(self.cluster.leading(), "MASTER.MOVE", slot, record.target,
                                              timeout=MOVE_TIMEOUT_S))
            except (redis.RedisError, OSError) as exc:
                record.reply = f"{type(exc).__name__}: {exc}"[:80]
            record.end = time.monotonic()

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
            where = owners(self.cluster.slot_map())
        except (redis.RedisError, OSError) as exc:
            return [f"the slot map could not be read to judge the moves: {exc}"]
        problems = [a for a in self.added if a.startswith("adding a chain failed")]
        for i, r in enumerate(self.records):
            after = next((n.source for n in self.records[i + 1:] if n.slot == r.slot), where[r.slot])
            r.outcome = "done" if after == r.target else "undone" if after == r.source else f"at chain {after}"
            if r.outcome == "undone" and "not the leader" in r.reply:
                r.outcome = "not started"  # a follower (or a leader stepping down) refused it
            if r.outcome.startswith("at chain"):
                problems.append(f"slot {r.slot}, moved from chain {r.source} to {r.target}, ended {r.outcome}")
        return problems

    def lines(self, samples) -> list[str]:
        """Per move: its outcome and what the workload saw of its slot meanwhile (the writes to
        it begun during the move, the slowest acknowledged, those not acknowledged)."""
        out = list(self.added)
        for r in self.records:
            writes = [s for s in samples if s.write and s.key and r.start <= s.start <= r.end
                      and key_slot(s.key.encode()) == r.slot]
            acked = [s.end - s.start for s in writes if s.outcome == "ok"]
            out.append(r.line() + f"; writes to the slot meanwhile {len(writes)}, slowest acknowledged "
                       f"{max(acked, default=0) * 1000:.0f} ms, not acknowledged {len(writes) - len(acked)}")
        count = {o: sum(r.outcome == o for r in self.records) for o in ("done", "undone", "not started")}
        planned = sum(not m.add for m in self.planned)
        out.append(f"slot moves {len(self.records)} (of {planned} planned; none is sent while no leader "
                   f"answers): done {count['done']}, undone {count['undone']}, not started {count['not started']}")
        return out
