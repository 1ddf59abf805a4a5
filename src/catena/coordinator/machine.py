"""The coordinator leader's watch over chain members (pure): probes, read leases, revoke-or-wait,
and the verdicts that take a member out of its chain. The asyncio shell (service.py) and the
whole-cluster simulator (tests/sim/cluster_sim.py) both drive this machine.

Probes. Every member of the saved view (and its learner) gets a MEMBER.PROBE every
`interval_s`, each with a `timeout_s` deadline; a membership suspicion brings the next one
forward. A probe that answers in time earns a grant: the next probe carries its nonce, and from
the moment that probe is sent the member may hold a read lease until `answered_at + LEASE_S`
(`lease_ok`). `misses_to_fail` probes missed in a row, or `refused_to_fail` refused connections,
confirm a failure (`Fail`: take it out of the chain, unless it is the chain's last member). A new
incarnation answering at a member's address is a restart (`Restarted`: out, and in again behind
the tail). A kept connection that broke is asked again at once on a new one, once, before a
miss counts.

Revoke-or-wait. Before a view that drops a member is saved, the member is asked to give its
lease back (`Revoke`); if it does not answer, the save waits until every lease it may hold has
run out (from the last grant, or from this term's start for a former leader's grants). A member
whose port refused our last probe has no process left to answer reads: no revoke.

Inputs take `now` (monotonic seconds); outputs are the effects below, plus `next_deadline()`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from catena.chain.replica import LEASE_S
from catena.coordinator.health import HealthCheck
from catena.view import View

LEASE_MARGIN_S = 0.1  # for clock rates drifting apart over one lease
REVOKE_TIMEOUT_S = 0.3


@dataclass(frozen=True)
class Probe:
    """Call MEMBER.PROBE epoch nonce grant on `member` within `timeout_s`; report the outcome
    with `on_probe_answer` or `on_probe_failed`."""
    member: str
    epoch: int
    nonce: int
    grant: int
    timeout_s: float


@dataclass(frozen=True)
class Revoke:
    """Call MEMBER.REVOKE epoch on `member` within `timeout_s`; if it does not answer, wait until
    `revoke_unanswered` says before saving the view that drops it."""
    member: str
    epoch: int
    timeout_s: float = REVOKE_TIMEOUT_S


@dataclass(frozen=True)
class Fail:
    """Decide `Reconfig.fail(member)` (its probes confirmed it dead), then report `decided`."""
    member: str
    misses: int


@dataclass(frozen=True)
class Restarted:
    """Decide `Reconfig.restarted(member, incarnation)`, then report `decided`."""
    member: str
    incarnation: str


def watched(view: View) -> set[str]:
    """The members whose health the leader watches: the chain and its learner."""
    return set(view.members) | ({view.learner} - {None})


@dataclass
class _Prober:
    nonce: int = 0  # of the last probe sent
    grant: int = 0  # the nonce the next probe grants (0: none answered in time)
    answered_at: float = float("-inf")
    started: float = float("-inf")  # when the last probe was sent
    due: float | None = None  # when the next probe goes (None: one in flight, or a decision pending)
    deciding: bool = False  # a Fail or Restarted is being decided
    wake: bool = False  # probe again at once when the one in flight ends
    retried: bool = False  # a broken connection was asked again since the last answer


@dataclass
class CoordinatorMachine:
    health: HealthCheck = field(default_factory=HealthCheck)
    lease_s: float = LEASE_S
    lease_margin_s: float = LEASE_MARGIN_S
    view: View = field(default_factory=lambda: View(0, 0, ()))  # the newest saved view
    leading: bool = False
    term_started: float = float("-inf")
    # Kept across terms (the process's own knowledge):
    lease_ok: dict[str, float] = field(default_factory=dict)  # member -> its lease ends by this + lease_s
    dead: set[str] = field(default_factory=set)  # members whose port refused our last probe
    incarnations: dict[str, str] = field(default_factory=dict)  # member -> the incarnation it answers as
    _probers: dict[str, _Prober] = field(default_factory=dict)

    # -- terms and views ----------------------------------------------------------------------------

    def lead(self, now: float) -> None:
        """A new term: no probes yet (`on_saved` starts them); leases a former leader granted are
        counted from now, and miss counts start over."""
        self.leading, self.term_started = True, now
        self.health = HealthCheck(self.health.misses_to_fail, self.health.refused_to_fail,
                                  self.health.interval_s, self.health.timeout_s)
        self._probers = {}

    def step_down(self) -> None:
        self.leading = False
        self._probers = {}

    def on_saved(self, view: View, now: float) -> list[Probe]:
        """`view` is saved: probe each watched member that has no prober yet (a prober of a
        member no longer watched stops when its next probe would go)."""
        self.view = view
        if not self.leading:
            return []
        fx = []
        for member in sorted(watched(view)):
            if member not in self._probers:
                self._probers[member] = _Prober()
                fx += self._send(member, now)
        return fx

    def registered(self, member: str, incarnation: str) -> None:
        """A member registered as `incarnation`: its probes will answer as it."""
        self.incarnations[member] = incarnation

    # -- probes ---------------------------------------------------------------------------------------

    def on_timer(self, now: float) -> list[Probe]:
        fx = []
        for member in sorted(self._probers):
            p = self._probers.get(member)
            if p is not None and p.due is not None and p.due <= now:
                fx += self._send(member, now)
        return fx

    def next_deadline(self) -> float | None:
        return min((p.due for p in self._probers.values() if p.due is not None), default=None)

    def probing(self, member: str) -> bool:
        return member in self._probers

    def granted(self, member: str) -> bool:
        """Some probe granted `member` a read lease (it answers reads on its own)."""
        return member in self.lease_ok

    def suspect(self, member: str, now: float) -> bool:
        """Membership says `member` failed or left: probe it now rather than at its turn (the
        probe, not the heartbeat, confirms the failure). True: a probe was brought forward."""
        p = self._probers.get(member)
        if not self.leading or p is None or member not in watched(self.view):
            return False
        p.wake = True
        if p.due is not None:
            p.due = now
        return True

    def on_probe_answer(self, member: str, nonce: int, incarnation: str, now: float) -> list:
        p = self._in_flight(member, nonce)
        if p is None:
            return []
        p.grant, p.answered_at, p.retried = nonce, now, False
        self.dead.discard(member)
        self.health.result(member, True)
        known = self.incarnations.setdefault(member, incarnation)
        if known != incarnation:
            self.incarnations[member] = incarnation
            p.deciding = True
            return [Restarted(member, incarnation)]
        return self._next(p, now)

    def on_probe_failed(self, member: str, nonce: int, now: float, refused: bool = False,
                        broken: bool = False) -> list:
        """The probe timed out, or its connection was `refused` (nothing listens there), or a
        connection that had been open `broken` (reset, closed)."""
        p = self._in_flight(member, nonce)
        if p is None:
            return []
        p.grant = 0
        if refused:
            self.dead.add(member)
        if broken and not p.retried:
            p.retried = True  # the kept connection broke: ask again on a new one, now
            return self._send(member, now)
        if self.health.result(member, False, refused) and member in watched(self.view):
            p.deciding = True
            return [Fail(member, self.health.misses.get(member, 0))]
        return self._next(p, now)

    def decided(self, effect: Fail | Restarted, changed: bool, now: float) -> list[Probe]:
        """The shell decided `effect` (`changed`: a new view was saved). A failed member taken
        out is probed no more; the last member of a chain, kept, is probed again at once."""
        p = self._probers.get(effect.member)
        if p is None or not p.deciding:
            return []
        p.deciding = False
        if isinstance(effect, Fail):
            if changed:
                self._forget(effect.member)
                return []
            return self._send(effect.member, now)
        return self._next(p, now)

    def _in_flight(self, member: str, nonce: int) -> _Prober | None:
        p = self._probers.get(member)
        if p is None or p.due is not None or p.deciding or p.nonce != nonce:
            return None
        return p

    def _send(self, member: str, now: float) -> list[Probe]:
        p = self._probers[member]
        if member not in watched(self.view):
            self._forget(member)
            return []
        p.nonce += 1
        p.started, p.due, p.wake = now, None, False
        if p.grant:  # the member's lease now runs until at most answered_at + lease_s
            self.lease_ok[member] = max(self.lease_ok.get(member, p.answered_at), p.answered_at)
        return [Probe(member, self.view.epoch, p.nonce, p.grant, self.health.timeout_s)]

    def _next(self, p: _Prober, now: float) -> list:
        p.due = now if p.wake else p.started + self.health.interval_s
        return []

    def _forget(self, member: str) -> None:
        self._probers.pop(member, None)
        self.health.forget(member)

    # -- revoke-or-wait ----------------------------------------------------------------------------

    def revokes(self, before: View, after: View) -> list[Revoke]:
        """Before `after` is saved over `before`: the members it drops must give their read
        leases back (or have them run out). One whose port refused our last probe has none."""
        return [Revoke(m, before.epoch) for m in before.members if m not in after.members and m not in self.dead]

    def revoke_unanswered(self, member: str) -> float:
        """`member` did not answer its Revoke: when every lease it may hold has run out (counted
        from the last grant we sent, or from this term's start); the save waits until then."""
        return max(self.lease_ok.get(member, float("-inf")), self.term_started) + self.lease_s + self.lease_margin_s
