"""Config stores: where the coordinator keeps its state, and who may write it. One interface;
the embedded file store is the default (one coordinator, no other service, always the leader);
the etcd store (`etcd_store.EtcdStore`) plugs in behind the same interface for several
coordinators with one fenced leader.

The coordinator starts `run(coordinator)` once its listener is up. The store then calls back:
`coordinator.lead(fence, state | None)` when this coordinator becomes the leader (state: the
newest saved, None for a new store), `coordinator.step_down(reason)` when it must stop acting,
and `coordinator.follow(state)` on a follower whenever the saved state changes.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Protocol

from catena.errors import CatenaError

SCHEMA = 1  # version of the saved state's layout; a store with a newer one is refused


class NotLeader(CatenaError):
    """This coordinator does not lead (any more); `leader` is who does, if known."""

    def __init__(self, leader: str | None):
        super().__init__(f"not the leader (leader: {leader or 'unknown'})")
        self.leader = leader


def check_state(state: dict, where: str, cluster_id: str | None = None) -> None:
    """Refuse a saved state this coordinator must not use: an unknown schema version, or
    another cluster's state when the operator named the cluster."""
    if not isinstance(state, dict) or "views" not in state:
        raise CatenaError(f"{where} does not hold catena coordinator state; refusing to use it")
    schema = state.get("schema", 1)
    if not isinstance(schema, int) or schema > SCHEMA:
        raise CatenaError(f"{where} has state schema version {schema!r}; this catena knows versions up to {SCHEMA}: "
                          "refusing to start (upgrade catena, or use another store)")
    found = state.get("cluster_id", "")
    if cluster_id and found and found != cluster_id:
        raise CatenaError(f"{where} holds the state of cluster {found}, not of cluster {cluster_id} "
                          "(--cluster-id): refusing to start")


class ConfigStore(Protocol):
    @property
    def fence(self) -> int:
        """The fencing token of this coordinator's term (0 while it does not lead)."""

    @property
    def leader(self) -> str | None:
        """The leader's address as far as this coordinator knows (its own while it leads)."""

    def leading(self) -> bool:
        """May this coordinator act as the leader right now (term held, deadline not passed)?"""

    async def save(self, state: dict) -> None:
        """Durably replace the state, conditional on holding the fence; NotLeader otherwise."""

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
        saved = self.load()
        if saved is not None:
            check_state(saved, str(self.path), cluster_id)
        self._fence = (saved or {}).get("term", 0) + 1

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
        try:
            return json.loads(self.path.read_text())
        except FileNotFoundError:
            return None

    async def save(self, state: dict) -> None:
        self.write(state)

    def write(self, state: dict) -> None:
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w") as f:
            json.dump({**state, "schema": SCHEMA, "term": self._fence}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        fd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
