"""The coordinator leader's watch over chain members (pure): probes, read leases, revoke-or-wait,
the verdicts that take a member out of its chain, and the learner hand-over. The asyncio shell
(service.py) and the whole-cluster simulator (tests/sim/cluster_sim.py) both drive this machine.

Probes. Every member of the saved view (and its learner) gets a MEMBER.PROBE every
`interval_s`, each with a `timeout_s` deadline; a membership suspicion brings the next one
forward. A probe that answers in time earns a grant: the next probe carries its nonce, and from
the moment that probe is sent the member may hold a read lease until `answered_at + LEASE_S`
(`lease_ok`). `misses_to_fail` probes missed in a row, or `refused_to_fail` refused connections,
confirm a failure (`Fail`: take it out of the chain, unless it is the chain's last member). A new
incarnation answering at a member's address is a restart (`Restarted`: out, and in again behind
the tail). A kept connection that broke is asked again at once on a new one, once, before a
miss counts.

Busy is not dead. A probe's answer waits behind whatever the member's event loop has queued, so
a member busy with a big command can miss it. With a wedge bound (`wedge_s`), a probe that timed
out is followed by a liveness check (`CheckLiveness`), which a thread in the member answers off
its loop: the same incarnation with a loop whose current turn is younger than `wedge_s` is busy:
alive, so the misses before it are forgiven, but no grant (only a probe answered in time grants
a lease); a turn of `wedge_s` or more is a wedged loop, dead at once; no answer, or another
incarnation, is a miss. A member is excused as busy for at most `busy_limit_s` after its first
busy verdict since it last answered; after that its timeouts are misses again.

Revoke-or-wait. Before a view that drops a member is saved, the member is asked to give its
lease back (`Revoke`); if it does not answer, the save waits until every lease it may hold has
run out (from the last grant, or from this term's start for a former leader's grants). A member
whose port refused our last probe has no process left to answer reads: no revoke.

The learner hand-over. While the saved view has a learner, its tail is asked every
`LEARNER_POLL_S` how far the learner got (`AskTail`); once the tail says it caught up under that
view, the learner is promoted (`CaughtUp`). An add whose learner made no progress for
`add_timeout_s` (counted from this term's start at the earliest) is rolled back (`AbandonAdd`),
so that it never blocks the adds queued behind it.

Inputs take `now` (monotonic seconds); outputs are the effects below, plus `next_deadline()`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from catena.chain.replica import LEASE_S
from catena.coordinator.health import HealthCheck
from catena.coordinator.reconfig import Reconfig
from catena.view import View

LEASE_MARGIN_S = 0.1  # for clock rates drifting apart over one lease
REVOKE_TIMEOUT_S = 0.3
LEARNER_POLL_S = 0.05
ASK_TAIL_TIMEOUT_S = 1.0
ADD_TIMEOUT_S = 30.0  # the default bound on an add's progress
WEDGE_S = 10.0  # the default wedge bound: a loop turn this long means the member is dead
BUSY_LIMIT_S = 30.0  # the default bound on how long a busy member's missed probes are excused
LIVENESS_TIMEOUT_S = 0.3


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
class CheckLiveness:
    """The probe `nonce` to `member` timed out: ask its liveness responder (off its event loop)
    within `timeout_s`; report the answer, or none, with `on_liveness`."""
    member: str
    nonce: int
    timeout_s: float = LIVENESS_TIMEOUT_S


@dataclass(frozen=True)
class Revoke:
    """Call MEMBER.REVOKE epoch on `member` within `timeout_s`; if it does not answer, wait until
    `revoke_unanswered` says before saving the view that drops it."""
    member: str
    epoch: int
    timeout_s: float = REVOKE_TIMEOUT_S


@dataclass(frozen=True)
class Fail:
    """Decide `Reconfig.fail(member)` (its probes confirmed it dead, or its loop is `wedged`),
    then report `decided`."""
    member: str
    misses: int
    wedged: bool = False


@dataclass(frozen=True)
class Restarted:
    """Decide `Reconfig.restarted(member, incarnation)`, then report `decided`."""
    member: str
    incarnation: str


@dataclass(frozen=True)
class AskTail:
    """Ask `tail` (MEMBER.STATUS) how far `learner` got under `epoch`; report `on_tail_status`."""
    tail: str
    epoch: int
    learner: str
    timeout_s: float = ASK_TAIL_TIMEOUT_S


@dataclass(frozen=True)
class CaughtUp:
    """Decide `Reconfig.caught_up(epoch, member)` (promote the learner), then report `decided`."""
    epoch: int
    member: str


@dataclass(frozen=True)
class AbandonAdd:
    """Decide `Reconfig.abandon_add(member)` (it made no progress for `quiet_s`), then report `decided`."""
    member: str
    quiet_s: float


def watched(view: View) -> set[str]:
    """The members whose health the leader watches: the chain and its learner."""
    return set(view.members) | ({view.learner} - {None})


def decide(verdict: Fail | Restarted | CaughtUp | AbandonAdd, r: Reconfig) -> list[View]:
    """The `Reconfig` decision a verdict of the machine asks for (the shell saves it as one change,
    then reports `decided`)."""
    if isinstance(verdict, Fail):
        return r.fail(verdict.member) if verdict.member in watched(r.view()) else []
    if isinstance(verdict, Restarted):
        return r.restarted(verdict.member, verdict.incarnation)
    if isinstance(verdict, CaughtUp):
        return r.caught_up(verdict.epoch, verdict.member)
    return r.abandon_add(verdict.member)


def told(verdict: Fail | Restarted | CaughtUp | AbandonAdd) -> list[str]:
    """Who is pushed the view a verdict saves besides the members it names: a member it took out."""
    return [verdict.member] if isinstance(verdict, (Fail, Restarted)) else []


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
    checking: bool = False  # the last probe timed out; its liveness check is in flight
    busy_since: float | None = None  # the first busy verdict since the last answer


@dataclass
class _LearnerWatch:
    learner: str | None = None
    progress: tuple[int, int] | None = None  # (epoch, entries the learner acked) last seen
    since: float = 0.0  # when progress was last seen (or the watch of this learner began)
    asked: AskTail | None = None  # the question in flight
    due: float | None = None  # when the tail is asked next (None: asking, or a decision pending)


@dataclass
class CoordinatorMachine:
    """One coordinator process's machine: acts while `leading` (between `lead` and `step_down`)."""

    health: HealthCheck = field(default_factory=HealthCheck)
    lease_s: float = LEASE_S
    lease_margin_s: float = LEASE_MARGIN_S
    view: View = field(default_factory=lambda: View(0, 0, ()))  # the newest saved view
    leading: bool = False
    term_started: float = float("-inf")
    add_timeout_s: float = ADD_TIMEOUT_S
    wedge_s: float | None = None  # None: no liveness checks (members without a responder)
    busy_limit_s: float = BUSY_LIMIT_S
    # Kept across terms (the process's own knowledge):
    lease_ok: dict[str, float] = field(default_factory=dict)  # member -> its lease ends by this + lease_s
    dead: set[str] = field(default_factory=set)  # members whose port refused our last probe
    incarnations: dict[str, str] = field(default_factory=dict)  # member -> the incarnation it answers as
    _probers: dict[str, _Prober] = field(default_factory=dict)
    _watch: _LearnerWatch | None = None

    # -- terms and views ----------------------------------------------------------------------------

    def lead(self, now: float) -> None:
        """A new term: no probes yet (`on_saved` starts them); leases a former leader granted are
        counted from now, and miss counts start over."""
        self.leading, self.term_started = True, now
        self.health = HealthCheck(self.health.misses_to_fail, self.health.refused_to_fail,
                                  self.health.interval_s, self.health.timeout_s)
        self._probers, self._watch = {}, None

    def step_down(self) -> None:
        self.leading = False
        self._probers, self._watch = {}, None

    def on_saved(self, view: View, now: float) -> list:
        """`view` is saved: probe each watched member that has no prober yet (a prober of a
        member no longer watched stops when its next probe would go); watch a new learner."""
        self.view = view
        if not self.leading:
            return []
        fx = []
        for member in sorted(watched(view)):
            if member not in self._probers:
                self._probers[member] = _Prober()
                fx += self._send(member, now)
        if view.learner and self._watch is None:
            self._watch = _LearnerWatch()
            fx += self._ask_tail(now)
        return fx

    def registered(self, member: str, incarnation: str) -> None:
        """A member registered as `incarnation`: its probes will answer as it."""
        self.incarnations[member] = incarnation

    # -- probes ---------------------------------------------------------------------------------------

    def on_timer(self, now: float) -> list:
        fx = []
        for member in sorted(self._probers):
            p = self._probers.get(member)
            if p is not None and p.due is not None and p.due <= now:
                fx += self._send(member, now)
        if self._watch is not None and self._watch.due is not None and self._watch.due <= now:
            fx += self._ask_tail(now)
        return fx

    def next_deadline(self) -> float | None:
        dues = [p.due for p in self._probers.values()] + [self._watch.due if self._watch else None]
        return min((due for due in dues if due is not None), default=None)

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
        p.grant, p.answered_at, p.retried, p.busy_since = nonce, now, False, None
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
        if (self.wedge_s is not None and not refused and not broken
                and (p.busy_since is None or now - p.busy_since < self.busy_limit_s)):
            p.checking = True  # timed out: busy, or dead?
            return [CheckLiveness(member, nonce)]
        return self._missed(member, p, now, refused)

    def on_liveness(self, member: str, nonce: int, now: float, incarnation: str | None = None,
                    turn_s: float = 0.0) -> list:
        """The answer to the liveness check after probe `nonce` timed out: the process's
        `incarnation` and how long its loop's current turn has run (no incarnation: no answer)."""
        p = self._in_flight(member, nonce, checking=True)
        if p is None:
            return []
        p.checking = False
        if incarnation is None or incarnation != self.incarnations.get(member):
            return self._missed(member, p, now)
        if turn_s >= self.wedge_s:
            return self._missed(member, p, now, wedged=True)
        if p.busy_since is None:
            p.busy_since = now
        self.health.result(member, True)  # busy: alive and turning (misses start over), but no grant
        return self._next(p, now)

    def _missed(self, member: str, p: _Prober, now: float, refused: bool = False, wedged: bool = False) -> list:
        if self.health.result(member, False, refused, wedged) and member in watched(self.view):
            p.deciding = True
            return [Fail(member, self.health.misses.get(member, 0), wedged)]
        return self._next(p, now)

    def decided(self, effect: Fail | Restarted | CaughtUp | AbandonAdd, changed: bool, now: float) -> list:
        """The shell decided `effect` (`changed`: a new view was saved). A failed member taken
        out is probed no more; the last member of a chain, kept, is probed again at once; after
        a hand-over or a rollback the learner watch looks at the saved view again at once."""
        if isinstance(effect, (CaughtUp, AbandonAdd)):
            w = self._watch
            if w is None or w.asked is not None or w.due is not None:
                return []
            return self._ask_tail(now)
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

    def _in_flight(self, member: str, nonce: int, checking: bool = False) -> _Prober | None:
        p = self._probers.get(member)
        if p is None or p.due is not None or p.deciding or p.nonce != nonce or p.checking != checking:
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

    # -- the learner hand-over ------------------------------------------------------------------------

    def on_tail_status(self, asked: AskTail, now: float, epoch: int | None = None, caught_up: bool = False,
                       acked: int = -1) -> list:
        """The tail's answer to `asked` (its epoch, whether its learner caught up, how many
        entries the learner acked); no `epoch`: it did not answer."""
        w = self._watch
        if w is None or w.asked != asked:
            return []
        w.asked = None
        if epoch == asked.epoch and caught_up:
            return [CaughtUp(asked.epoch, asked.learner)]
        if epoch is not None and acked >= 0 and (asked.epoch, acked) != w.progress:
            w.progress, w.since = (asked.epoch, acked), now
        if now - w.since > self.add_timeout_s:
            return [AbandonAdd(w.learner, self.add_timeout_s)]
        w.due = now + LEARNER_POLL_S
        return []

    def _ask_tail(self, now: float) -> list[AskTail]:
        w, view = self._watch, self.view
        if not view.learner:
            self._watch = None
            return []
        if view.learner != w.learner:
            w.learner, w.progress, w.since = view.learner, None, now
        w.asked, w.due = AskTail(view.tail, view.epoch, view.learner), None
        return [w.asked]

    # -- revoke-or-wait ----------------------------------------------------------------------------

    def revokes(self, before: View, after: View) -> list[Revoke]:
        """Before `after` is saved over `before`: the members it drops must give their read
        leases back (or have them run out). One whose port refused our last probe has none."""
        return [Revoke(m, before.epoch) for m in before.members if m not in after.members and m not in self.dead]

    def revoke_unanswered(self, member: str) -> float:
        """`member` did not answer its Revoke: when every lease it may hold has run out (counted
        from the last grant we sent, or from this term's start); the save waits until then."""
        return max(self.lease_ok.get(member, float("-inf")), self.term_started) + self.lease_s + self.lease_margin_s
