"""Config stores: where the coordinator keeps its state, and who may write it. One interface;
the embedded file store is the default (one coordinator, no other service, always the leader);
the etcd store (`etcd_store.EtcdStore`) plugs in behind the same interface for several
coordinators with one fenced leader.

The coordinator starts `run(coordinator)` once its listener is up. The store then calls back:
`coordinator.lead(fence, parts | None)` when this coordinator becomes the leader (parts: the
newest saved state in layout.py's parts, None for a new store), `coordinator.step_down(reason)`
when it must stop acting, and `coordinator.follow(parts)` on a follower whenever the saved
state changes.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Protocol

from catena.coordinator import layout
from catena.errors import CatenaError



class NotLeader(CatenaError):
    """This coordinator does not lead (any more); `leader` is who does, if known."""

    def __init__(self, leader: str | None):
        super().__init__(f"not the leader (leader: {leader or 'unknown'})")
        self.leader = leader


class ConfigStore(Protocol):
    @property
    def fence(self) -> int:
        """The fencing token of this coordinator's term (0 while it does not lead)."""

    @property
    def leader(self) -> str | None:
        """The leader's address as far as this coordinator knows (its own while it leads)."""

    def leading(self) -> bool:
        """May this coordinator act as the leader right now (term held, deadline not passed)?"""

    async def save(self, parts: dict) -> None:
        """Durably write `parts` (name -> value; None deletes it) in one write conditional on
        holding the fence, leaving every other part as it was; NotLeader otherwise."""

    async def run(self, coordinator) -> None:
        """Elect / follow for ever, calling the coordinator back (see the module docstring)."""

    def resign(self, reason: str) -> None:
        """Give leadership up to a standby, if there is one (the embedded store has none)."""


class EmbeddedStore:
    """A JSON file replaced atomically (write, fsync, rename, fsync dir). Each open bumps the
    term counter, which serves as the fence of the single coordinator that owns the file; that
    coordinator leads from the start."""

    def __init__(self, directory: Path, advertise: str | None = None, cluster_id: str | None = None):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / "coordinator.json"
        self.advertise = advertise
        raw = self._read()
        if raw is not None and "parts" in raw:
            layout.check_schema(raw.get("schema"), str(self.path))
        self._parts = None if raw is None else layout.check(raw.get("parts", {layout.LEGACY: raw}), str(self.path),
                                                             cluster_id)
        self._fence = (raw or {}).get("term", 0) + 1

    def __str__(self) -> str:
        return str(self.path)

    def resign(self, reason: str) -> None:
        """No standby to hand over to: the only coordinator keeps leading."""

    @property
    def fence(self) -> int:
        return self._fence

    @property
    def leader(self) -> str | None:
        return self.advertise

    def leading(self) -> bool:
        return True

    async def run(self, coordinator) -> None:
        coordinator.lead(self._fence, self.load())
        await asyncio.Future()

    def load(self) -> dict | None:
        """The saved parts (a schema-1 file read as parts), None for a new store."""
        return None if self._parts is None else dict(self._parts)

    def _read(self) -> dict | None:
        try:
            return json.loads(self.path.read_text())
        except FileNotFoundError:
            return None

    async def save(self, parts: dict) -> None:
        self.write(parts)

    def write(self, parts: dict) -> None:
        """Apply `parts` (None deletes one) and replace the file with every part."""
        whole = dict(self._parts or {})
        for name, value in parts.items():
            if value is None:
                whole.pop(name, None)
            else:
                whole[name] = value
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w") as f:
            json.dump({"schema": layout.SCHEMA, "term": self._fence, "parts": whole}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        self._parts = whole
        fd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
