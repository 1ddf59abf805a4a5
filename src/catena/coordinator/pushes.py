"""View pushes (pure): which epoch each member acknowledged, which MEMBER.VIEW calls are in
flight, and when a failed one is tried again. A member is pushed the newest saved view until it
acknowledged it; one no longer watched is told once (it may be gone for good)."""

from __future__ import annotations

from dataclasses import dataclass, field

from catena.coordinator.effects import Push
from catena.view import View

PUSH_RETRY_S = 0.5


@dataclass
class Pushes:
    acked: dict[str, int] = field(default_factory=dict)  # member -> newest epoch it acknowledged
    in_flight: set[str] = field(default_factory=set)
    due: dict[str, float] = field(default_factory=dict)  # member -> when a failed push is tried again

    def push(self, member: str, view: View) -> list[Push]:
        """Push `view` to `member` unless it has it or a push to it is under way (whose answer
        brings the newest view after it)."""
        if member in self.in_flight or self.acked.get(member, -1) >= view.epoch:
            return []
        self.due.pop(member, None)
        self.in_flight.add(member)
        return [Push(member, view)]

    def on_pushed(self, member: str, epoch: int, ok: bool, view: View, watched: set[str], now: float) -> list[Push]:
        """The push of `epoch` to `member` answered (`ok`) or failed; `view` is the newest saved."""
        if member not in self.in_flight:
            return []
        self.in_flight.discard(member)
        if ok:
            self.acked[member] = max(self.acked.get(member, -1), epoch)
            return self.push(member, view)  # a newer view was saved meanwhile
        if member in watched:
            self.due[member] = now + PUSH_RETRY_S
        return []

    def on_timer(self, view: View, now: float) -> list[Push]:
        fx = []
        for member in sorted(m for m, due in self.due.items() if due <= now):
            del self.due[member]
            fx += self.push(member, view)
        return fx

    def next_deadline(self) -> float | None:
        return min(self.due.values(), default=None)
