"""Leader election among coordinators (pure): roles, lease timing, the local deadline, backoff.

The shell (`etcd_store.EtcdLeadership`) executes the effects against etcd and feeds the results
back; the simulator (tests/sim) feeds them from a model of etcd. Times are monotonic seconds.

- A follower that sees no leader key campaigns: it grants a lease and creates the leader key
  with a create-if-absent transaction (`create_revision == 0`). The winner's key create
  revision is its **fence**; every state write it makes compares it.
- The leader renews its lease every TTL/3. Its **local deadline** is the send time of the last
  renewal etcd confirmed plus `DEADLINE_FRACTION` of the TTL: etcd counts the TTL from when it
  handled that renewal, which is after we sent it, so past the deadline the leader stops acting
  (all leader-only work is cancelled) while etcd still holds its lease. Fencing keeps etcd safe
  even when a paused process misses that; the deadline keeps members and clients from hearing a
  deposed leader's answers.
- Any sign of another term (our key gone or recreated, a fenced write refused, a renewal that
  finds the lease expired) steps down at once.
- etcd errors are retried with exponential backoff and full jitter up to `BACKOFF_MAX_S`.
- A leader that cannot reach most members resigns (`resign`): it steps down and sits out the
  campaigns for a while, so that a standby that reaches them leads. A follower that the shell
  says reaches fewer than most members (`on_reach`) does not campaign until it does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the seeded generator is handed in; this module draws nothing itself
    import random

DEADLINE_FRACTION = 0.8  # the leader acts until last confirmed renewal (send time) + this * TTL
RENEW_FRACTION = 1 / 3  # renew every TTL/3 (etcd's own keepalive cadence)
BACKOFF_BASE_S = 0.05
BACKOFF_MAX_S = 2.0
REACH_RECHECK_S = 0.25  # a follower that reaches too few members looks again this often before campaigning

FOLLOWER, CANDIDATE, LEADER = "follower", "candidate", "leader"


@dataclass(frozen=True)
class Campaign:
    """Grant a lease and try `create_revision(leader) == 0 → put(leader, us, lease) + get(state)`."""


@dataclass(frozen=True)
class Renew:
    lease_id: int


@dataclass(frozen=True)
class Lead:
    """We won: start leader-only work under this fence."""
    fence: int


@dataclass(frozen=True)
class StepDown:
    """Stop all leader-only work now (the shell cancels it), then give the lease back."""
    reason: str
    lease_id: int


@dataclass(frozen=True)
class Revoke:
    """Give a lease back (best effort: it expires by itself otherwise)."""
    lease_id: int


class Backoff:
    """Exponential backoff with full jitter, bounded: delay n is uniform in [0, min(max, base*2^n)]."""

    def __init__(self, rng: random.Random, base_s: float = BACKOFF_BASE_S, max_s: float = BACKOFF_MAX_S):
        self.rng, self.base, self.max, self.n = rng, base_s, max_s, 0

    def next(self) -> float:
        cap = min(self.max, self.base * (2 ** self.n))
        self.n = min(self.n + 1, 30)
        return self.rng.uniform(cap / 2, cap)

    def reset(self) -> None:
        self.n = 0


class Election:
    """One coordinator's view of the election. Inputs return effects; `next_deadline()` says
    when to call `on_timer` next."""

    def __init__(self, me: str, rng: random.Random):
        self.me = me
        self.role = FOLLOWER
        self.fence = 0  # our term's fence while leading; 0 otherwise
        self.lease_id = 0
        self.ttl = 0.0
        self.deadline = 0.0  # leader: stop acting at this time
        self.renew_at = 0.0  # leader: next renewal due
        self.renewing = False  # a renewal is in flight
        self.holder: str | None = None  # the leader key's value as last observed (None: no key)
        self.holder_fence = 0
        self.campaign_at: float | None = 0.0  # follower: campaign when due (None: a leader exists)
        self.sit_out_until = 0.0  # after resigning: no campaign before this
        self.reaches = True  # follower: do we reach most members of the saved view (the shell checks)?
        self.backoff = Backoff(rng)

    # -- queries ----------------------------------------------------------------------------------

    def leading(self, now: float) -> bool:
        return self.role == LEADER and now < self.deadline

    @property
    def leader(self) -> str | None:
        """Who leads as far as we know (ourselves only while we act as leader)."""
        if self.role == LEADER:
            return self.me
        return self.holder if self.holder != self.me else None

    def next_deadline(self) -> float | None:
        if self.role == LEADER:
            return self.deadline if self.renewing else min(self.renew_at, self.deadline)
        if self.role == FOLLOWER:
            return self.campaign_at
        return None

    # -- inputs -----------------------------------------------------------------------------------

    def on_timer(self, now: float) -> list:
        if self.role == LEADER:
            if now >= self.deadline:
                return self._step_down("no lease renewal confirmed before the local deadline "
                                       f"({DEADLINE_FRACTION:.0%} of the {self.ttl:g} s lease)")
            if not self.renewing and now >= self.renew_at:
                self.renewing = True
                return [Renew(self.lease_id)]
            return []
        if self.role == FOLLOWER and self.campaign_at is not None and now >= self.campaign_at:
            if not self.reaches:  # a leader that reaches nobody repairs nothing: wait for a standby that does
                self.campaign_at = now + REACH_RECHECK_S
                return []
            self.role = CANDIDATE
            self.campaign_at = None
            return [Campaign()]
        return []

    def on_leader_key(self, holder: str | None, fence: int, lease_id: int, now: float) -> list:
        """The leader key as read or watched: its value, create revision and lease (None, 0, 0:
        absent)."""
        self.holder, self.holder_fence = holder, fence
        if self.role == LEADER:
            if fence != self.fence:
                what = "deleted" if holder is None else f"now held by {holder} (fence {fence})"
                return self._step_down(f"our leader key (fence {self.fence}) was {what}")
            return []
        if self.role == FOLLOWER:
            self.campaign_at = max(now, self.sit_out_until) if holder is None else None
        if self.role == FOLLOWER and holder == self.me and lease_id:
            # The key names our address but we do not lead: an earlier term of ours, or an earlier
            # process on our address (gone: we hold its port). Give its lease back to end it now.
            return [Revoke(lease_id)]
        return []

    def on_campaign_result(self, won: bool, fence: int, lease_id: int, ttl: float, sent_at: float, now: float,
                           holder: str | None = None) -> list:
        """`sent_at`: when the lease grant was sent (the lease's TTL runs from no earlier)."""
        if self.role != CANDIDATE:
            return [Revoke(lease_id)] if won else []
        if not won:
            self.role = FOLLOWER
            self.holder, self.holder_fence = holder, fence
            self.campaign_at = max(now, self.sit_out_until) if holder is None else None
            return [Revoke(lease_id)] if lease_id else []
        self.backoff.reset()
        self.role, self.fence, self.lease_id, self.ttl = LEADER, fence, lease_id, ttl
        self.holder, self.holder_fence = self.me, fence
        self.deadline = sent_at + DEADLINE_FRACTION * ttl
        self.renew_at = sent_at + RENEW_FRACTION * ttl
        self.renewing = False
        if now >= self.deadline:  # the campaign took too long to be safe to act on
            return self._step_down("the campaign finished too close to the lease's expiry")
        return [Lead(fence)]

    def on_campaign_failed(self, now: float) -> list:
        """etcd did not answer the campaign: try again after a backoff."""
        if self.role == CANDIDATE:
            self.role = FOLLOWER
            self.campaign_at = now + self.backoff.next()
        return []

    def on_renewed(self, lease_id: int, sent_at: float, ttl_left: float, now: float) -> list:
        """etcd answered a renewal sent at `sent_at`; `ttl_left <= 0`: the lease had expired."""
        if self.role != LEADER or lease_id != self.lease_id:
            return []
        self.renewing = False
        if ttl_left <= 0:
            return self._step_down("etcd says our lease expired")
        self.deadline = max(self.deadline, sent_at + DEADLINE_FRACTION * self.ttl)
        self.renew_at = sent_at + RENEW_FRACTION * self.ttl
        if now >= self.deadline:
            return self._step_down("a lease renewal was confirmed too late to act on")
        return []

    def on_renew_failed(self, lease_id: int, now: float) -> list:
        """The renewal did not get through (etcd unreachable or slow): try again soon; the
        deadline stands."""
        if self.role != LEADER or lease_id != self.lease_id:
            return []
        self.renewing = False
        self.renew_at = min(self.deadline, now + min(self.backoff.next(), RENEW_FRACTION * self.ttl / 2))
        return self.on_timer(now) if now >= self.deadline else []

    def on_fenced(self, fence: int, now: float) -> list:
        """A write compared our fence and etcd refused it: another term began."""
        if self.role == LEADER and fence == self.fence:
            return self._step_down(f"etcd refused a write under our fence {fence}: another coordinator leads")
        return []

    def on_reach(self, reaches: bool, now: float) -> list:
        """The shell checked whether we reach most members of the saved view (refused
        connections count: their host answered)."""
        self.reaches = reaches
        if reaches and self.role == FOLLOWER and self.campaign_at is not None:
            self.campaign_at = min(self.campaign_at, max(now, self.sit_out_until))
        return []

    def resign(self, reason: str, now: float, sit_out_s: float) -> list:
        """Give leadership up (the lease goes back: a standby campaigns at once) and campaign
        again only after `sit_out_s` (then only if nobody leads)."""
        if self.role != LEADER:
            return []
        self.sit_out_until = now + sit_out_s
        return self._step_down(reason)

    def on_stop(self) -> list:
        """Shutting down: give the lease back so a standby takes over without waiting."""
        if self.role == LEADER:
            return self._step_down("shutting down")
        return []

    def _step_down(self, reason: str) -> list:
        lease = self.lease_id
        self.role, self.fence, self.lease_id, self.deadline, self.renewing = FOLLOWER, 0, 0, 0.0, False
        if self.holder == self.me:
            self.holder = None
        # Campaign again only once our key is gone (watch or read shows it), after a backoff.
        self.campaign_at = None
        return [StepDown(reason, lease)]

