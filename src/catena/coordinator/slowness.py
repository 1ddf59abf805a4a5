"""Fail-slow members (pure): a member that keeps reporting slow fsyncs or long event-loop turns
with its probe answers (control.Slowness) is taken out, when its chain has enough others.

A report is slow when its slowest fsync took `fsync_s` or more, or its longest recent loop turn
`turn_s` or more (well past the ~50 ms a turn may take, and past the 0.6 s turns of a member
merely busy with big commands; a turn of the wedge bound is a failure already). A member whose
every report has been slow for `for_s` is fail-slow: removed, with the reason, unless that would
leave its chain fewer than two members (never the last: a slow copy beats none).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from catena.control import Slowness

FSYNC_S = 1.0
TURN_S = 2.0
FOR_S = 5.0


@dataclass
class SlowWatch:
    fsync_s: float = FSYNC_S
    turn_s: float = TURN_S
    for_s: float = FOR_S
    _since: dict[str, float] = field(default_factory=dict)  # member -> its first slow report of this streak
    _worst: dict[str, Slowness] = field(default_factory=dict)  # member -> its worst report of the streak

    def report(self, member: str, slow: Slowness, now: float) -> str | None:
        """`member`'s report at `now`: why it is fail-slow (once its streak is long enough), or None."""
        if slow.fsync_ms < self.fsync_s * 1000 and slow.turn_ms < self.turn_s * 1000:
            self.forget(member)
            return None
        since = self._since.setdefault(member, now)
        worst = self._worst.get(member, Slowness())
        worst = self._worst[member] = Slowness(max(worst.turn_ms, slow.turn_ms), max(worst.fsync_ms, slow.fsync_ms))
        if now - since < self.for_s:
            return None
        parts = ([f"fsyncs up to {worst.fsync_ms / 1000:.1f} s"] if worst.fsync_ms >= self.fsync_s * 1000 else []) + (
            [f"event-loop turns up to {worst.turn_ms / 1000:.1f} s"] if worst.turn_ms >= self.turn_s * 1000 else [])
        return f"{' and '.join(parts)} for {now - since:.1f} s"

    def forget(self, member: str) -> None:
        self._since.pop(member, None)
        self._worst.pop(member, None)
