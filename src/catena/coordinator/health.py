"""The coordinator's own confirmation that a member is dead (pure).

Heartbeats from the membership layer only raise suspicion; the coordinator repairs a chain
after its own probes (a RESP probe with a short deadline) fail `misses_to_fail` times in a
row (RAMCloud: the coordinator confirms with its own ping before declaring a crash). A port
that refuses connections `refused_to_fail` times in a row has no process behind it, which
confirms sooner. A probe that answers resets the count, so one slow reply never removes a
member.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class HealthCheck:
    misses_to_fail: int = 3
    refused_to_fail: int = 2
    interval_s: float = 0.1
    timeout_s: float = 0.5
    misses: dict[str, int] = field(default_factory=dict)
    refused: dict[str, int] = field(default_factory=dict)  # refused connections in a row

    def result(self, addr: str, ok: bool, refused: bool = False, wedged: bool = False) -> bool:
        """Record one probe; True exactly once per failure: when this probe confirms it. A
        `wedged` process (alive, but its event loop stuck) confirms it at once."""
        if ok:
            self.misses[addr] = self.refused[addr] = 0
            return False
        before = self._confirmed(addr)
        self.misses[addr] = max(self.misses.get(addr, 0) + 1, self.misses_to_fail if wedged else 0)
        self.refused[addr] = self.refused.get(addr, 0) + 1 if refused else 0
        return self._confirmed(addr) and not before

    def _confirmed(self, addr: str) -> bool:
        return (self.misses.get(addr, 0) >= self.misses_to_fail
                or self.refused.get(addr, 0) >= self.refused_to_fail)

    def forget(self, addr: str) -> None:
        self.misses.pop(addr, None)
        self.refused.pop(addr, None)
