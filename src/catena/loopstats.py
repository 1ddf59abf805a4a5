"""How long the event loop's turns take: a heartbeat task that sleeps a short interval and
measures how late it wakes. A turn that holds the loop (a big command, a snapshot) delays the
wake-up by about its length, so the worst lateness is the longest turn, to within the interval.
Exported in INFO (`# Stats`); costs one wake-up per interval. Its beat count and the time of
its last beat tell another thread whether the loop still turns (chain/liveness.py).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

INTERVAL_S = 0.01
WINDOW_S = 10  # the recent value: the longest turn over the last this many seconds
SLOW_TURN_S = 0.05  # the turn budget: turns longer than this are counted


class LoopMonitor:
    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self.longest_s = 0.0  # since start
        self.slow_turns = 0
        self.beats = 0  # heartbeats so far: advances only while the loop turns
        self.last_beat = clock()  # when the last one ran (monotonic)
        self._seconds: deque = deque(maxlen=WINDOW_S)  # [second, longest turn in it]

    def record(self, lag_s: float, now: float) -> None:
        """The heartbeat woke `lag_s` late at `now`."""
        if lag_s > self.longest_s:
            self.longest_s = lag_s
        if lag_s > SLOW_TURN_S:
            self.slow_turns += 1
        second = int(now)
        seconds = self._seconds
        if seconds and seconds[-1][0] == second:
            if lag_s > seconds[-1][1]:
                seconds[-1][1] = lag_s
        else:
            seconds.append([second, lag_s])

    def recent_s(self, now: float, window_s: int = WINDOW_S) -> float:
        """The longest turn over the last `window_s` seconds (whole seconds)."""
        return max((lag for second, lag in self._seconds if second > now - window_s), default=0.0)

    def info(self) -> list[str]:
        now = self.clock()
        return [f"catena_longest_loop_turn_ms:{self.longest_s * 1000:.1f}",
                f"catena_longest_loop_turn_recent_ms:{self.recent_s(now) * 1000:.1f}",
                f"catena_loop_turns_over_{int(SLOW_TURN_S * 1000)}ms:{self.slow_turns}"]

    async def run(self) -> None:
        clock = self.clock
        while True:
            start = clock()
            await asyncio.sleep(INTERVAL_S)
            now = clock()
            self.beats += 1
            self.last_beat = now
            self.record(max(0.0, now - start - INTERVAL_S), now)
