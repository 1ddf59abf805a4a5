"""Config stores: where the coordinator keeps its state. One interface; the embedded file
store is the default (one coordinator, no other service); an etcd store plugs in behind the
same interface for several coordinators with one fenced leader.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Protocol


class ConfigStore(Protocol):
    def load(self) -> dict | None:
        """The last saved state, or None for a new store."""

    def save(self, state: dict) -> None:
        """Durably replace the state; conditional on holding the fence where a store has one."""

    @property
    def fence(self) -> int:
        """The fencing token of this coordinator's term (the embedded store counts starts)."""


class EmbeddedStore:
    """A JSON file replaced atomically (write, fsync, rename, fsync dir). Each open bumps the
    term counter, which serves as the fence of the single coordinator that owns the file."""

    def __init__(self, directory: Path):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / "coordinator.json"
        saved = self.load()
        self._fence = (saved or {}).get("term", 0) + 1

    @property
    def fence(self) -> int:
        return self._fence

    def load(self) -> dict | None:
        try:
            return json.loads(self.path.read_text())
        except FileNotFoundError:
            return None

    def save(self, state: dict) -> None:
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w") as f:
            json.dump({**state, "term": self._fence}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        fd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
