"""The coordinator's own confirmation that a member is dead (pure).

Heartbeats from the membership layer only raise suspicion; the coordinator repairs a chain
after its own probes (a RESP PING with a short deadline) fail `misses_to_fail` times in a
row (RAMCloud: the coordinator confirms with its own ping before declaring a crash). A probe
that answers resets the count, so one slow reply never removes a member.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class HealthCheck:
    misses_to_fail: int = 3
    interval_s: float = 0.1
    timeout_s: float = 0.5
    misses: dict[str, int] = field(default_factory=dict)

    def result(self, addr: str, ok: bool) -> bool:
        """Record one probe; True exactly when this probe confirms the failure."""
        if ok:
            self.misses[addr] = 0
            return False
        n = self.misses.get(addr, 0) + 1
        self.misses[addr] = n
        return n == self.misses_to_fail

    def forget(self, addr: str) -> None:
        self.misses.pop(addr, None)
