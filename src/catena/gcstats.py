"""The cyclic garbage collector's share of a member's pauses: how often each generation ran and
the longest pause, timed through `gc.callbacks` and shown in INFO (`# Catena`), and when a
member collects (`tune`, `Schedule`).

Why it matters: a collection walks every tracked object of its generations, so its pause grows
with what they hold; a pause holds every client's reply. A full collection walks everything not
frozen (a window of 100,000 recent entries is several hundred thousand tuples).

Why on a schedule: Python collects the young generation when its count (allocations minus
deallocations of tracked objects) passes a threshold. A chain member's steady state churns: each
write allocates an entry and its op (two tuples, young until a collection untracks them) while
the window lets an older pair go, so the count barely moves while the young list grows two
objects a write. Under a steady SET load a member went 50,000 writes between collections, and
each walked 100,000+ objects: 9-30 ms. Collected every tick instead, the young generation holds
what one tick allocated (about 0.2 ms to walk at 8,000 writes/s).

Why the middle generation too, every tick: a collection untracks a tuple whose items are all
untracked, checking the young objects in the order they were made. msgpack makes an entry's
tuple before the op inside it, so a decoded entry (every entry a middle or a tail receives) is
checked while its op is still tracked and survives into the middle generation; there the next
collection of that generation untracks it. Collected once a second, that generation held a
second's entries: 5-8 ms (up to 23 ms) every second. Collected right after the young one each
tick, it holds that tick's.
"""

from __future__ import annotations

import gc
import time

# Python's own triggers, left as a backstop for a burst between two ticks: the young generation
# past 50,000 (Python's 700 would run it every few writes), the older ones as Python does.
THRESHOLDS = (50_000, 20, 100)
OLD_EVERY = 1000  # ticks per full collection (100 s)


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


class Schedule:
    """The collections a member runs on its ticker (`tick`, every TICK_S): the young generation
    and then the middle one each tick (see the module's docstring), everything every OLD_EVERY
    ticks."""

    def __init__(self, collect=gc.collect):
        self.collect = collect
        self.ticks = 0

    def tick(self) -> None:
        self.ticks += 1
        if self.ticks % OLD_EVERY == 0:
            self.collect(2)
            return
        self.collect(0)
        self.collect(1)
