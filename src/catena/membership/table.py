"""The member list and its merge rule. Pure.

One record per address. An update about an address is applied when it is newer:

1. a larger incarnation replaces the record (a live older incarnation is thereby `failed`:
   a newer process holds its address, so the old one is gone);
2. within an incarnation, FAILED and LEFT are final: nothing live overrides them (LEFT
   overrides FAILED silently, so concurrent leave and failure settle the same everywhere);
3. otherwise a larger refute counter wins, and at equal refute SUSPECT beats ALIVE.

The rule is a join-semilattice (commutative, associative, idempotent), so lists that have
received the same updates in any order and any number of times agree. The table keeps a 64-bit
digest of its live records (XOR of per-record hashes, updated incrementally) for anti-entropy.
"""

from __future__ import annotations

import hashlib

from catena.membership.messages import LAST_LIVE, MemberId, Status, Update


def _h(u: Update) -> int:
    m = u.member
    raw = f"{m.host}:{m.port}@{m.incarnation}#{u.refute}/{int(u.status)}".encode()
    return int.from_bytes(hashlib.blake2b(raw, digest_size=8).digest(), "big")


class Record:
    __slots__ = ("update", "since")

    def __init__(self, update: Update, since: float):
        self.update = update
        self.since = since  # when this list last changed this record

    @property
    def member(self) -> MemberId:
        return self.update.member

    @property
    def status(self) -> Status:
        return self.update.status


def newer(u: Update, old: Update) -> bool:
    """Does `u` override `old` (same address)?"""
    a, b = u.member.incarnation, old.member.incarnation
    if a != b:
        return a > b
    if old.status > LAST_LIVE:
        # nothing revives; among final records (status, refute) orders them so all lists agree
        return u.status > LAST_LIVE and (u.status, u.refute) > (old.status, old.refute)
    if u.status > LAST_LIVE:
        return True
    if u.refute != old.refute:
        return u.refute > old.refute
    return u.status == Status.SUSPECT and old.status == Status.ALIVE


# event kinds produced by `apply`
JOIN, LEAVE, FAILED, SUSPECT, ALIVE = "join", "leave", "failed", "suspect", "alive"


class MemberTable:
    __slots__ = ("records", "digest", "last_change", "live_count")

    def __init__(self):
        self.records: dict[str, Record] = {}
        self.digest = 0
        self.last_change = float("-inf")
        self.live_count = 0

    def copy(self) -> "MemberTable":
        """An independent table with the same records (records are never mutated in place)."""
        other = MemberTable()
        other.records = dict(self.records)
        other.digest, other.last_change, other.live_count = self.digest, self.last_change, self.live_count
        return other

    def get(self, addr: str) -> Record | None:
        return self.records.get(addr)

    def apply(self, u: Update, now: float) -> list[tuple[str, MemberId]] | None:
        """Merge `u`; None if it changed nothing, else the transitions it caused (maybe none)."""
        addr = u.member.addr
        rec = self.records.get(addr)
        events: list[tuple[str, MemberId]] = []
        if rec is None:
            if u.status <= LAST_LIVE:
                events.append((JOIN, u.member))
                if u.status == Status.SUSPECT:
                    events.append((SUSPECT, u.member))
        else:
            old = rec.update
            if not newer(u, old):
                return None
            if old.status <= LAST_LIVE:
                self.digest ^= _h(old)
                self.live_count -= 1
            if u.member.incarnation != old.member.incarnation:
                if old.status <= LAST_LIVE:
                    events.append((FAILED, old.member))
                if u.status <= LAST_LIVE:
                    events.append((JOIN, u.member))
            elif old.status > LAST_LIVE:
                pass  # FAILED -> LEFT: already removed, nothing to announce
            elif u.status == Status.FAILED:
                events.append((FAILED, u.member))
            elif u.status == Status.LEFT:
                events.append((LEAVE, u.member))
            elif u.status == Status.SUSPECT:
                events.append((SUSPECT, u.member))
            elif old.status == Status.SUSPECT:
                events.append((ALIVE, u.member))
        if u.status <= LAST_LIVE:
            self.digest ^= _h(u)
            self.live_count += 1
        self.records[addr] = Record(u, now)
        self.last_change = now
        return events

    def live(self) -> list[Record]:
        return [r for r in self.records.values() if r.update.status <= LAST_LIVE]

    def updates(self) -> list[Update]:
        return [r.update for r in self.records.values()]

    def gc(self, now: float, ttl: float) -> int:
        """Forget failed/left records older than `ttl` seconds; returns how many."""
        dead = [a for a, r in self.records.items() if r.update.status > LAST_LIVE and now - r.since > ttl]
        for a in dead:
            del self.records[a]
        return len(dead)
