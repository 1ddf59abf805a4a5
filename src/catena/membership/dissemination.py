"""Dissemination: which updates ride on the next datagram, and to whom gossip goes. Pure.

`BroadcastQueue` holds at most one pending update per address (a newer one replaces the older)
and hands out the least-transmitted first, so fresh news always rides on the next datagram. (Gossip targets
are drawn by `Ring.sample`.)
Each update is dropped after `limit` transmissions (retransmit_mult * ceil(log10(N+1)), as
memberlist does): enough copies that a member misses all of them with probability about
e^-limit even at 5 % loss, while per-member traffic stays bounded by fan-out x rounds.
Buckets by transmit count make `take` cost proportional to what it returns.
"""

from __future__ import annotations

from collections import deque
from typing import Callable

from catena.membership.messages import Update


class BroadcastQueue:
    __slots__ = ("_buckets", "_current", "_size")

    def __init__(self):
        self._buckets: list[deque] = []  # index = transmissions so far; items are [update, count, live]
        self._current: dict[str, list] = {}
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def add(self, u: Update) -> None:
        addr = u.member.addr
        old = self._current.get(addr)
        if old is not None:
            old[2] = False
            self._size -= 1
        item = [u, 0, True]
        self._current[addr] = item
        if not self._buckets:
            self._buckets.append(deque())
        self._buckets[0].append(item)
        self._size += 1

    def take(self, budget: int, limit: int, size: Callable[[Update], int], first: Update | None = None) -> tuple[Update, ...]:
        """Updates fitting in `budget` bytes, least-transmitted first; `first` (if any) leads."""
        out: list[Update] = []
        if first is not None:
            out.append(first)
            budget -= size(first)
        if not self._size:
            return tuple(out)
        moved: list[list] = []
        buckets = self._buckets
        for level in range(len(buckets)):
            b = buckets[level]
            while b:
                item = b[0]
                if not item[2]:
                    b.popleft()
                    continue
                if item[0] is first:
                    b.popleft()
                    moved.append(item)
                    continue
                cost = size(item[0])
                if cost > budget:
                    break
                budget -= cost
                b.popleft()
                out.append(item[0])
                moved.append(item)
            if budget <= 0 or (b and b[0][2]):
                break
        for item in moved:
            item[1] += 1
            if item[1] >= limit:
                item[2] = False
                self._size -= 1
                if self._current.get(item[0].member.addr) is item:
                    del self._current[item[0].member.addr]
                continue
            while len(buckets) <= item[1]:
                buckets.append(deque())
            buckets[item[1]].append(item)
        return tuple(out)

    def pending(self) -> list[Update]:
        return [item[0] for item in self._current.values()]


def chunk(entries: list[Update], budget: int, size: Callable[[Update], int]) -> list[list[Update]]:
    """Split a list into parts of at most `budget` bytes of entries each (never an empty list)."""
    parts: list[list[Update]] = [[]]
    used = 0
    for u in entries:
        c = size(u)
        if used + c > budget and parts[-1]:
            parts.append([])
            used = 0
        parts[-1].append(u)
        used += c
    return parts
