"""A model of etcd as catena's coordinators use it, shared by the simulations in tests/sim.

Keys `leader` and `state`, leases that expire by virtual time (the caller runs `expire(now)`
every 0.5 s, as etcd checks), a revision counter, create-if-absent campaigns and fenced state
writes. Every accepted state write is recorded with the fence it carried and the leader key's
create revision at that moment, so a checker can see that each one carried the current fence.
Watchers are called with ("leader", holder, create_revision, lease_id) or ("state", state).
"""

from __future__ import annotations

from dataclasses import dataclass, field

TTL = 2.0
EXPIRY_CHECK_S = 0.5


@dataclass
class Etcd:
    ttl: float = TTL
    rev: int = 0
    leader: tuple | None = None  # (holder, create_revision, lease_id)
    state: dict | None = None
    leases: dict[int, float] = field(default_factory=dict)  # lease id -> expiry time
    next_lease: int = 1
    writes: list = field(default_factory=list)  # (time, fence, state, create revision then)
    watchers: list = field(default_factory=list)  # callbacks(event)
    fencing: bool = True  # False only to show that a checker catches unfenced writes

    def expire(self, now: float) -> None:
        for lid, exp in list(self.leases.items()):
            if exp <= now:
                del self.leases[lid]
                if self.leader and self.leader[2] == lid:
                    self.rev += 1
                    self.leader = None
                    self._emit(("leader", None, 0, 0))

    def lease_alive(self, lid: int, now: float) -> bool:
        return lid in self.leases and self.leases[lid] > now

    def campaign(self, holder: str, now: float):
        lid = self.next_lease
        self.next_lease += 1
        self.leases[lid] = now + self.ttl
        if self.leader is not None:
            return False, self.leader[1], lid, self.leader[0], None
        self.rev += 1
        self.leader = (holder, self.rev, lid)
        self._emit(("leader", holder, self.rev, lid))
        return True, self.rev, lid, holder, self.state

    def keepalive(self, lid: int, now: float) -> float:
        if not self.lease_alive(lid, now):
            return 0.0
        self.leases[lid] = now + self.ttl
        return self.ttl

    def revoke(self, lid: int) -> None:
        self.leases.pop(lid, None)
        if self.leader and self.leader[2] == lid:
            self.rev += 1
            self.leader = None
            self._emit(("leader", None, 0, 0))

    def save(self, fence: int, state: dict, now: float) -> bool:
        if self.fencing and (self.leader is None or self.leader[1] != fence):
            return False
        self.rev += 1
        self.state = state
        self.writes.append((now, fence, state, self.leader[1] if self.leader else 0))
        self._emit(("state", state))
        return True

    def _emit(self, event) -> None:
        for w in self.watchers:
            w(event)
