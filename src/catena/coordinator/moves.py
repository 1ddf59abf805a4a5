"""Slot moves driven by the coordinator leader (shell): MASTER.MOVE runs migration.py's moves one
slot at a time through move_runner.py, under the leader's fence. Each phase of a move is saved
in the store first (the layout's `moves/<slot>` part, a fenced write) and the part is deleted
when the move is done or undone, so a new leader finds every unfinished move at the start of
its term and resumes or undoes it (`resume`). When a slot's move has committed at its new
chain, the slot map addresses it there (saved and pushed by shards.py) before the source drops
its copy. One move at a time per coordinator.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import asdict

from catena.coordinator import layout
from catena.coordinator import slot_map as sm
from catena.coordinator.migration import FINAL, Move
from catena.coordinator.move_runner import run_move
from catena.coordinator.store import NotLeader

log = logging.getLogger(__name__)


def encode(move: Move) -> dict:
    """A move's intent as its JSON part (keys as latin-1 text: one character per byte)."""
    return {**asdict(move), "copied": [k.decode("latin-1") for k in move.copied]}


def decode(raw: dict) -> Move:
    fields = {k: raw[k] for k in ("slot", "source", "target", "phase", "since", "fence") if k in raw}
    return Move(**fields, copied=tuple(k.encode("latin-1") for k in raw.get("copied", [])))


def intents(parts: dict | None) -> list[Move]:
    """The unfinished moves a store holds, in slot order."""
    found = [decode(v) for name, v in (parts or {}).items() if name.startswith("moves/")]
    return sorted(found, key=lambda m: m.slot)


class Mover:
    def __init__(self, coord):
        self.c = coord
        self.lock = asyncio.Lock()  # one move at a time (and no chain removed during one)
        self.map_saved = asyncio.Event()  # set by the shell after each map save
        self._pending: list[Move] = []  # a new term's unfinished moves, until resumed

    def busy(self) -> bool:
        """Is a move (or a chain's removal) under way, or an unfinished one waiting to resume?"""
        return self.lock.locked() or bool(self._pending)

    def resume(self, moves: list[Move]):
        """A new term: finish or undo the moves the last one left (the coroutine is a leader
        task; they count as under way from now on)."""
        self._pending = list(moves)
        return self._resume()

    async def _resume(self) -> None:
        try:
            async with self.lock:
                for move in self._pending:
                    log.info("resuming the move of slot %d from chain %d to chain %d at phase %s",
                             move.slot, move.source, move.target, move.phase)
                    try:
                        await self._run(resume=move)
                    except NotLeader:
                        return
        finally:
            self._pending = []

    async def move(self, first: int, last: int, target: int) -> int | str:
        """Move slots first..last to chain `target`, one at a time: how many moved, or why
        one was undone (an error line)."""
        async with self.lock:
            moved = 0
            for slot in range(first, last + 1):
                source = sm.owner(self.c.shards.slot_map, slot)
                if source is None or source == target:
                    continue
                final = await self._run(slot, source, target)
                if final.phase != "done":
                    return (f"ERR the move of slot {slot} from chain {source} to chain {target} was undone "
                            f"(a chain refused a step; {moved} slots moved before it)")
                moved += 1
            return moved

    async def _run(self, slot: int = 0, source: int = 0, target: int = 0, resume: Move | None = None) -> Move:
        def head(chain: int) -> str | None:
            m = self.c.machines.get(chain)
            return None if m is None else m.view.head

        return await run_move(head, slot, source, target, resume=resume, save=self._save, save_map=self._save_map,
                              auth=self.c.auth, fence=self.c.store.fence)

    async def _save(self, move: Move) -> None:
        """The intent at its new phase (deleted once final), fenced: NotLeader if the term ended."""
        part = None if move.phase in FINAL else encode(move)
        if not await self.c.calls.save({layout.move_part(move.slot): part}):
            raise NotLeader(self.c.store.leader)

    async def _save_map(self, slot: int, chain: int) -> None:
        """The map addresses `slot` to `chain` (saved by shards.py): returns once it is saved."""
        self.c.execute_shards(self.c.shards.assign(slot, chain, time.monotonic()))
        await self.map_reaches(lambda m: sm.owner(m, slot) == chain)

    async def map_reaches(self, saved) -> None:
        """Returns once the saved map satisfies `saved(map)`; NotLeader if the term ends first."""
        while not saved(self.c.shards.slot_map):
            if not self.c.shards.leading:
                raise NotLeader(self.c.store.leader)
            self.map_saved.clear()
            await self.map_saved.wait()
