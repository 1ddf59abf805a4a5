"""Flap damping (pure): how long a member the coordinator took out must stay healthy before it
is admitted again.

Each removal by a verdict (a failure, a cut link, a rolled-back add) adds 1 to the member's
penalty, which halves every `half_life_s` (stability earns it back). A member registering
again while it has a penalty is a candidate: the coordinator probes it, and admits it (as a
learner behind the tail, as any registration) once it has answered every probe for
`quiet_s(member)`: `base_s` after one recent removal, doubling with each further one, at most
`max_s`. A member that flaps (up for less than that between cuts) stays out, so its relapses
stop stalling the chain; a member that failed once and healed rejoins `base_s` after its
first answer. The penalties are saved with the view a removal saves, and a new leader starts
from them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

BASE_S = 1.2  # longer than the up-time of a member flapping every few seconds; short enough to rejoin fast
HALF_LIFE_S = 20.0
MAX_S = 60.0
FORGOTTEN = 0.5  # a penalty below this is no penalty


@dataclass
class Damping:
    base_s: float = BASE_S
    half_life_s: float = HALF_LIFE_S
    max_s: float = MAX_S
    _penalty: dict[str, tuple[float, float]] = field(default_factory=dict)  # member -> (penalty, when)

    def penalty(self, member: str, now: float) -> float:
        value, at = self._penalty.get(member, (0.0, now))
        return value * 0.5 ** (max(0.0, now - at) / self.half_life_s)

    def removed(self, member: str, now: float) -> float:
        """`member` was taken out by a verdict: its penalty, one more."""
        value = self.penalty(member, now) + 1.0
        self._penalty[member] = (value, now)
        return value

    def remember(self, penalties: dict[str, float], now: float) -> None:
        """Penalties a former leader saved (as of its last removals): counted from `now` on,
        unless this process knows of higher ones."""
        for member, value in penalties.items():
            if value > self.penalty(member, now):
                self._penalty[member] = (value, now)

    def saved(self, now: float, removed: str | None = None) -> dict[str, float]:
        """The penalties worth saving (not forgotten), `removed` counted one more."""
        out = {m: round(self.penalty(m, now), 3) for m in self._penalty}
        if removed is not None:
            out[removed] = round(out.get(removed, 0.0) + 1.0, 3)
        return {m: p for m, p in out.items() if p >= FORGOTTEN}

    def quiet_s(self, member: str, now: float) -> float:
        """How long `member` must answer every probe before it is admitted again (0: at once)."""
        value = self.penalty(member, now)
        if value < FORGOTTEN or self.base_s <= 0:
            self._penalty.pop(member, None)
            return 0.0
        return min(self.max_s, self.base_s * 2 ** max(0, math.ceil(value - FORGOTTEN) - 1))
