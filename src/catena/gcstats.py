"""The cyclic garbage collector's share of a member's pauses: how often each generation ran and
the longest pause, timed through `gc.callbacks` and shown in INFO (`# Catena`), and the
collector settings a member runs with (`tune`).

Why it matters: a full collection walks every tracked object not frozen, so its pause grows
with what the process holds (a window of 100,000 recent entries is several hundred thousand
tuples); a pause holds every client's reply.
"""

from __future__ import annotations

import gc
import time

# The hot path allocates many short-lived tuples and few cycles: collect the young generation
# less often than Python's 700, and the old ones rarely.
THRESHOLDS = (50_000, 20, 100)


class GcStats:
    def __init__(self, clock=time.perf_counter):
        self.clock = clock
        self.collections = [0, 0, 0]  # per generation
        self.longest_s = [0.0, 0.0, 0.0]
        self.total_s = 0.0
        self._started = 0.0

    def __call__(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started = self.clock()
            return
        elapsed = self.clock() - self._started
        generation = info["generation"]
        self.collections[generation] += 1
        self.total_s += elapsed
        if elapsed > self.longest_s[generation]:
            self.longest_s[generation] = elapsed

    def start(self) -> None:
        gc.callbacks.append(self)

    def stop(self) -> None:
        if self in gc.callbacks:
            gc.callbacks.remove(self)

    def info(self) -> list[str]:
        return [f"catena_gc_collections:{','.join(map(str, self.collections))}",
                f"catena_gc_longest_pause_ms:{','.join(f'{s * 1000:.1f}' for s in self.longest_s)}",
                f"catena_gc_total_ms:{self.total_s * 1000:.1f}"]


def tune() -> None:
    """Freeze what the process holds now (the recovered state: never walked again) and collect
    less often."""
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
