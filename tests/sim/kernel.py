"""The simulation kernel shared by the chain, cluster and membership simulators: one seeded
random source, virtual time, one event queue, and who can reach whom.

A run is a function of its seed: every random choice comes from `rng` (or from generators
seeded from it), and events at the same virtual time run in the order they were scheduled.
Processes crash and restart in the simulators built on this (each keeps an incarnation, and an
event scheduled for an incarnation that is gone is dropped there).
"""

from __future__ import annotations

import heapq
import random


class Kernel:
    """Virtual time and one event queue of callbacks (`at`, `after`), run by `run_until`."""

    def __init__(self, seed: int, start: float = 0.0):
        self.rng = random.Random(seed)
        self.now = start
        self.heap: list = []
        self.counter = 0
        self.ran = 0  # events run so far

    def at(self, when: float, fn, *args) -> None:
        """Run `fn(*args)` at virtual time `when` (now, if that has passed)."""
        self.counter += 1
        heapq.heappush(self.heap, (when, self.counter, fn, args))

    def after(self, delay: float, fn, *args) -> None:
        self.at(self.now + delay, fn, *args)

    def run_until(self, cond, until: float) -> None:
        """Run events in time order until `cond()` holds or the next one is later than `until`;
        the clock then stands at `until` (or where `cond` first held)."""
        heap, pop = self.heap, heapq.heappop
        while heap and not cond():
            when, _, fn, args = heap[0]
            if when > until:
                break
            pop(heap)
            self.now = max(self.now, when)
            self.ran += 1
            fn(*args)
        self.now = max(self.now, until) if not cond() else self.now


def never() -> bool:
    return False


class Partitions:
    """Which nodes can reach each other. A fault cuts pairs (`cut`) or a node from everyone
    (`isolate`), and heals them (`heal`, `rejoin`); faults may overlap, so each pair and each
    isolated node counts the faults on it."""

    def __init__(self):
        self.blocked: dict[frozenset, int] = {}
        self.isolated: dict[str, int] = {}

    def reachable(self, a: str, b: str) -> bool:
        if self.isolated and (a in self.isolated or b in self.isolated):
            return False
        return not (self.blocked and self.blocked.get(frozenset((a, b))))

    def isolate(self, a: str) -> None:
        self.isolated[a] = self.isolated.get(a, 0) + 1

    def rejoin(self, a: str) -> None:
        n = self.isolated.get(a, 0) - 1
        if n > 0:
            self.isolated[a] = n
        else:
            self.isolated.pop(a, None)

    def cut(self, a: str, others) -> list[frozenset]:
        """Cut `a` from each of `others`; the pairs, to `heal` later."""
        pairs = [frozenset((a, b)) for b in others if b != a]
        for pair in pairs:
            self.blocked[pair] = self.blocked.get(pair, 0) + 1
        return pairs

    def heal(self, pairs) -> None:
        for pair in pairs:
            n = self.blocked.get(pair, 0) - 1
            if n > 0:
                self.blocked[pair] = n
            else:
                self.blocked.pop(pair, None)

    def clear(self) -> None:
        self.blocked.clear()
        self.isolated.clear()
