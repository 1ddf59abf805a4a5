"""The extended ring: live members ordered by a hash of their address.

Each member heartbeats its k successors; its k predecessors are the members it monitors. The
position hashes `host:port` (BLAKE2b, 64 bits), so a restarted process returns to its old place
and every list that holds the same members computes the same ring. Insert/remove are a bisect
plus a list shift (C memmove): cheap even at thousands of members. Pure.
"""

from __future__ import annotations

import bisect
import hashlib
from functools import lru_cache


@lru_cache(maxsize=1 << 16)
def position(addr: str) -> int:
    return int.from_bytes(hashlib.blake2b(addr.encode(), digest_size=8).digest(), "big")


class Ring:
    __slots__ = ("_keys",)

    def __init__(self, addrs=()):
        self._keys: list[tuple[int, str]] = sorted((position(a), a) for a in set(addrs))

    def copy(self) -> "Ring":
        other = Ring()
        other._keys = list(self._keys)
        return other

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, addr: str) -> bool:
        key = (position(addr), addr)
        i = bisect.bisect_left(self._keys, key)
        return i < len(self._keys) and self._keys[i] == key

    def add(self, addr: str) -> bool:
        key = (position(addr), addr)
        i = bisect.bisect_left(self._keys, key)
        if i < len(self._keys) and self._keys[i] == key:
            return False
        self._keys.insert(i, key)
        return True

    def remove(self, addr: str) -> bool:
        key = (position(addr), addr)
        i = bisect.bisect_left(self._keys, key)
        if i < len(self._keys) and self._keys[i] == key:
            del self._keys[i]
            return True
        return False

    def successors(self, addr: str, k: int) -> list[str]:
        """The k members after `addr` (which need not be on the ring), never `addr` itself."""
        return self._walk(addr, k, 1)

    def predecessors(self, addr: str, k: int) -> list[str]:
        return self._walk(addr, k, -1)

    def _walk(self, addr: str, k: int, step: int) -> list[str]:
        keys = self._keys
        n = len(keys)
        key = (position(addr), addr)
        if step > 0:
            i = bisect.bisect_right(keys, key)
        else:
            i = bisect.bisect_left(keys, key) - 1
        out: list[str] = []
        for _ in range(n):
            a = keys[i % n][1]
            if a != addr:
                out.append(a)
                if len(out) == k:
                    break
            i += step
        return out

    def sample(self, rng, n: int, exclude=()) -> list[str]:
        """Up to n distinct random members not in `exclude`; O(n) expected on large rings."""
        skip = set(exclude)
        size = len(self._keys)
        if size <= 4 * (n + len(skip)):
            pool = [a for _, a in self._keys if a not in skip]
            return rng.sample(pool, min(n, len(pool)))
        out: list[str] = []
        while len(out) < n:
            a = self._keys[rng.randrange(size)][1]
            if a not in skip:
                skip.add(a)
                out.append(a)
        return out

    def addrs(self) -> list[str]:
        return [a for _, a in self._keys]

    def at(self, i: int) -> str:
        return self._keys[i][1]
