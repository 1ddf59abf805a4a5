"""The coordinator's recent events (removals, joins, restarts, leader changes): a bounded ring
in memory, newest last, for the status page. Lost when the process restarts; the logs keep them."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import asdict, dataclass

RING_SIZE = 200


@dataclass(frozen=True, slots=True)
class ClusterEvent:
    at: float  # wall-clock seconds
    kind: str  # removed, joined, restarted, add_rolled_back, view, leader, follower
    member: str  # the member it is about ("" for a leader change: then the coordinator)
    epoch: int
    text: str


class EventRing:
    def __init__(self, size: int = RING_SIZE, clock=time.time):
        self.events: deque[ClusterEvent] = deque(maxlen=size)
        self.clock = clock

    def add(self, kind: str, member: str, epoch: int, text: str) -> None:
        self.events.append(ClusterEvent(self.clock(), kind, member, epoch, text))

    def recent(self, n: int = 50) -> list[dict]:
        """The newest `n`, newest first."""
        return [asdict(e) for e in list(self.events)[-n:][::-1]]
