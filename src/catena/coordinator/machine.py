"""The coordinator's decisions (pure): one machine per coordinator process, acting while it leads.
The asyncio shell (service.py) and the whole-cluster simulator (tests/sim/cluster_sim.py) both
drive it unchanged; neither makes a protocol decision of its own.

Changes, one at a time. Every change to the saved state (an operator's or a member's request
from requests.py, a verdict of the machine's own, a step of ending a session) is decided on a
copy of the saved state; the members the new view drops give their read leases back first
(revoke-or-wait); then the state is saved under the term's fence (`Save`), and only then is the
new view pushed, probed and answered. A failed save ends the machine's term: every request
still waiting is answered NOT_LEADER.

Pushes. Every member a saved view names (and one it took out) is pushed that view until it
acknowledged it, retried every `PUSH_RETRY_S` while it is watched (pushes.py).

Probes. Every member of the saved view (and its learner) gets a MEMBER.PROBE every
`interval_s`, each with a `timeout_s` deadline; a membership suspicion brings the next one
forward. A probe that answers in time earns a grant: the next probe carries its nonce, and from
the moment that probe is sent the member may hold a read lease until `answered_at + LEASE_S`
(`lease_ok`). `misses_to_fail` probes missed in a row, or `refused_to_fail` refused connections,
confirm a failure (`Fail`: take it out of the chain, unless it is the chain's last member), or
`WITNESSED_MISSES` when another member's fresh link report lost it too (a one-way cut: its
predecessor waits on its acks). A new incarnation answering at a member's address is a restart
(`Restarted`: out, and in again behind the tail). A kept connection that broke is asked again at once on a new one, once, before a
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

Fail-slow (slowness.py). A member whose every probe answer reports slow fsyncs or long loop
turns for a while is taken out (`Slow`) while its chain keeps two others.

Flap damping (damping.py). A member taken out by a verdict stays probed as a candidate; when it
registers again it is admitted only once it has answered every probe for a quiet period that
doubles with each recent removal (counted from its first answer after it healed).

Link health and self-suspicion (link_health.py). Each probe answer carries the member's link
report; a link between two members that both answer, stalled for `link_stall_s` and corroborated
by its far end, takes one end out (`Cut`), one cut at a time. A confirmed failure that only this
coordinator observes is kept (and probed on) while most watched members fail at once, or while
taking it out would leave fewer than two, until another member witnesses it. Cut off from most
members for `HAND_OVER_S`, the machine resigns once per term (`Resign`: on etcd a standby that
reaches them leads).

The learner hand-over. The tail of a view with a learner tells the coordinator when the learner
caught up under that view (MASTER.CAUGHT_UP, `on_caught_up`), and the learner is promoted
(`CaughtUp`). Besides, the tail is asked every `learner_poll_s` how far the learner got
(`AskTail`): that measures progress, and promotes a learner whose tail's word was lost. An add whose learner made no progress for
`add_timeout_s` (counted from this term's start at the earliest) is rolled back (`AbandonAdd`),
so that it never blocks the adds queued behind it. MASTER.ADD is answered once the member is in
the chain, acknowledged that view and holds a read lease (so it answers reads at once), or when
its add was rolled back.

Sessions (ending.py): pings timed on the leader's monotonic clock; a session whose pings stopped
for its TTL, or that its client closed, is ended in steps that a new leader resumes.

A new term finishes what the last one left half done: it pushes the saved view to everyone,
probes them, resumes watching an add in progress (queued adds follow it) and ending sessions.

Inputs take `now` (monotonic seconds); outputs are the effects of effects.py, plus
`next_deadline()` for the shell's one timer.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from catena.coordinator import requests as rq
from catena.coordinator import layout, link_health
from catena.coordinator.damping import Damping
from catena.coordinator.effects import (CAUSES, NOT_LEADER, AbandonAdd, AskTail, CaughtUp, CheckLiveness, Cut, Fail, Note,
                                        Probe, Reply, Resign, Restarted, Revoke, Save, Slow, Verdict)
from catena.coordinator.ending import SessionEnding
from catena.coordinator.health import HealthCheck
from catena.coordinator.pushes import Pushes
from catena.coordinator.reconfig import CoordinatorState, Reconfig
from catena.coordinator.requests import watched
from catena.coordinator.sessions import NO_SUCH_SESSION, SessionClock
from catena.coordinator.slowness import SlowWatch
from catena.leases import LEASE_S
from catena.view import View

LEASE_MARGIN_S = 0.1  # for clock rates drifting apart over one lease
LEARNER_POLL_S = 0.25  # the tail says when its learner caught up (if it knows the coordinator); this asks
ADD_TIMEOUT_S = 30.0  # the default bound on an add's progress
ADD_REPLY_S = 30.0  # MASTER.ADD answers by then: joined, rolled back, or still catching up
WEDGE_S = 10.0  # the default wedge bound: a loop turn this long means the member is dead
BUSY_LIMIT_S = 30.0  # the default bound on how long a busy member's missed probes are excused
NEVER = float("-inf")
HAND_OVER_S = 0.5  # cut off from most members this long: resign (etcd: a standby that reaches them leads)
WITNESSED_MISSES = 2  # this many misses in a row confirm a failure that another member's report witnesses


@dataclass
class _Prober:
    nonce: int = 0  # of the last probe sent
    grant: int = 0  # the nonce the next probe grants (0: none answered in time)
    answered_at: float = NEVER
    started: float = NEVER  # when the last probe was sent
    due: float | None = None  # when the next probe goes (None: one in flight, or a decision pending)
    deciding: bool = False  # a Fail or Restarted is being decided
    wake: bool = False  # probe again at once when the one in flight ends
    retried: bool = False  # a broken connection was asked again since the last answer
    checking: bool = False  # the last probe timed out; its liveness check is in flight
    busy_since: float | None = None  # the first busy verdict since the last answer


@dataclass
class _LearnerWatch:
    learner: str | None = None
    progress: tuple | None = None  # (epoch, entries the learner acked, state transfer) last seen
    since: float = 0.0  # when progress was last seen (or the watch of this learner began)
    asked: AskTail | None = None  # the question in flight
    due: float | None = None  # when the tail is asked next (None: asking, or a decision pending)
    deciding: bool = False  # a CaughtUp or AbandonAdd is being decided


@dataclass
class _Candidate:
    """A member taken out recently (damping.py): probed from its removal on, so that its healthy
    streak starts when it heals; admitted once it registered again and its streak is long enough."""
    what: rq.Register | None = None  # its registration (None: not registered again yet)
    since: float | None = None  # the first answer of its current healthy streak


@dataclass
class _Change:
    what: object  # a request of requests.py or a verdict
    token: object = None  # whom to answer (None: nobody asked)
    state: dict | None = None  # the decided state, to save
    changed: list[View] = field(default_factory=list)
    revoking: set[str] = field(default_factory=set)  # revokes not answered yet
    wait_until: float = NEVER  # unanswered revokes: every lease they may hold ran out by then
    saving: bool = False


@dataclass
class _AddWaiter:
    token: object
    member: str
    deadline: float


@dataclass
class CoordinatorMachine(SessionEnding):
    """One coordinator process's machine: acts while `leading` (between `lead` and `step_down`)."""

    chain_id: int = 0  # the chain this machine keeps (docs/sharding.md: one machine per chain)
    health: HealthCheck = field(default_factory=HealthCheck)
    lease_s: float = LEASE_S
    lease_margin_s: float = LEASE_MARGIN_S
    saved: CoordinatorState = field(default_factory=CoordinatorState)  # the state the store holds
    leading: bool = False
    term_started: float = NEVER
    add_timeout_s: float = ADD_TIMEOUT_S
    learner_poll_s: float = LEARNER_POLL_S
    wedge_s: float | None = None  # None: no liveness checks (members without a responder)
    busy_limit_s: float = BUSY_LIMIT_S
    link_stall_s: float | None = link_health.STALL_S  # None: no link verdicts
    # Kept across terms (the process's own knowledge):
    lease_ok: dict[str, float] = field(default_factory=dict)  # member -> its lease ends by this + lease_s
    dead: set[str] = field(default_factory=set)  # members whose port refused our last probe
    incarnations: dict[str, str] = field(default_factory=dict)  # member -> the incarnation it answers as
    damping: Damping = field(default_factory=Damping)  # removals by verdict, and the quiet they ask
    slowness: SlowWatch = field(default_factory=SlowWatch)  # members' slow streaks
    # This term's work:
    _probers: dict[str, _Prober] = field(default_factory=dict)
    _watch: _LearnerWatch | None = None
    _pushes: Pushes = field(default_factory=Pushes)
    _queue: deque = field(default_factory=deque)  # changes waiting their turn
    _current: _Change | None = None
    _clock: SessionClock = field(default_factory=SessionClock)
    _enders: dict = field(default_factory=dict)  # session -> its ending (ending.py)
    _waiters: list[_AddWaiter] = field(default_factory=list)
    _reports: dict = field(default_factory=dict)  # member -> (when, its last LinkReport)
    _cutting: bool = False  # a Cut is being decided
    _held: set[str] = field(default_factory=set)  # confirmed failures kept for want of a witness
    _candidates: dict[str, _Candidate] = field(default_factory=dict)  # damped registrations, probed
    _admitting: set[str] = field(default_factory=set)  # candidates whose registration is queued
    _isolated_since: float | None = None  # most watched members fail their probes since then
    _resigned: bool = False  # this term resigned already

    @property
    def view(self) -> View:
        """The newest saved view (what members may be told)."""
        return self.saved.views[self.chain_id]

    @property
    def cut_off(self) -> bool:
        """Most of this chain's watched members (two at least) fail their probes."""
        return self._isolated_since is not None

    def for_chain(self, chain_id: int) -> "CoordinatorMachine":
        """A machine for chain `chain_id` with this one's settings (and nothing of its state)."""
        h = self.health
        other = CoordinatorMachine(chain_id=chain_id, health=HealthCheck(h.misses_to_fail, h.refused_to_fail,
                                                                          h.interval_s, h.timeout_s),
                                   lease_s=self.lease_s, lease_margin_s=self.lease_margin_s,
                                   add_timeout_s=self.add_timeout_s,
                                   learner_poll_s=self.learner_poll_s, wedge_s=self.wedge_s,
                                   busy_limit_s=self.busy_limit_s, link_stall_s=self.link_stall_s)
        other.damping.base_s = self.damping.base_s
        return other

    # -- terms ------------------------------------------------------------------------------------

    def lead(self, now: float, state: dict | None, cluster_id: str = "") -> list:
        """A new term from the newest saved `state` (None: a new store, saved first as a new
        cluster `cluster_id`). Leases a former leader granted are counted from now, miss counts
        start over, and what the last term left half done is finished."""
        fx = self.step_down()
        self.leading, self.term_started = True, now
        self.health = HealthCheck(self.health.misses_to_fail, self.health.refused_to_fail,
                                  self.health.interval_s, self.health.timeout_s)
        self.saved = (CoordinatorState.from_dict(state) if state else
                      CoordinatorState({self.chain_id: View(self.chain_id, 0, ())}, cluster_id=cluster_id))
        self.damping.remember(self.saved.flaps, now)
        view = self.view
        fx.append(Note("info", f"leading: epoch {view.epoch}, chain {','.join(view.members) or '(empty)'}"
                               + (f", finishing the add of {view.learner}" if view.learner else ""),
                       "leader_change", "elected"))
        if state is None:
            fx += self._change(rq.Initialize(), now)
        for member in sorted(watched(view)):
            fx += self._pushes.push(member, view)
        fx += self._watch_view(now)
        for sid in sorted(self._sync_sessions(now)):
            if self.saved.sessions[sid].get("ending"):
                fx += self._end_session(sid, now)
        return fx

    def step_down(self) -> list[Reply]:
        """Stop acting: the term's work is dropped; every request still waiting is answered NOT_LEADER."""
        tokens = [c.token for c in ([self._current] if self._current else []) + list(self._queue)]
        tokens += [w.token for w in self._waiters] + [t for e in self._enders.values() for t in e.waiting]
        self.leading = False
        self._probers, self._watch, self._pushes = {}, None, Pushes()
        self._queue, self._current, self._waiters = deque(), None, []
        self._clock, self._enders = SessionClock(), {}
        self._reports, self._cutting, self._held = {}, False, set()
        self._candidates, self._admitting = {}, set()
        self._isolated_since, self._resigned = None, False
        return [Reply(token, error=NOT_LEADER) for token in tokens if token is not None]

    def follow(self, state: dict) -> None:
        """A follower's warm copy of the saved state (from the store's watch)."""
        if not self.leading:
            self.saved = CoordinatorState.from_dict(state)

    def request(self, token, what, now: float) -> list:
        """An operator's or a member's request (requests.py); answered with `Reply(token, …)`."""
        if not self.leading:
            return [Reply(token, error=NOT_LEADER)]
        if isinstance(what, rq.CloseSession):
            if what.session not in self.saved.sessions:
                return [Reply(token, error=NO_SUCH_SESSION)]
            return self._end_session(what.session, now, token)
        return self._enqueue(_Change(what, token), now)

    # -- the one timer ------------------------------------------------------------------------------

    def on_timer(self, now: float) -> list:
        fx = []
        for member in sorted(self._probers):
            p = self._probers.get(member)
            if p is not None and p.due is not None and p.due <= now:
                fx += self._send(member, now)
        if self._watch is not None and self._watch.due is not None and self._watch.due <= now:
            fx += self._ask_tail(now)
        fx += self._pushes.on_timer(self.view, now)
        c = self._current
        if c is not None and not c.revoking and not c.saving and c.wait_until <= now:
            fx += self._after_revokes(now)
        return fx + self._sessions_on_timer(now) + self._settle_waiters(now)

    def next_deadline(self) -> float | None:
        dues = [p.due for p in self._probers.values()] + [self._watch.due if self._watch else None]
        dues += [self._pushes.next_deadline()] + [w.deadline for w in self._waiters] + self._session_deadlines()
        c = self._current
        if c is not None and not c.revoking and not c.saving and c.wait_until > NEVER:
            dues.append(c.wait_until)
        return min((due for due in dues if due is not None), default=None)

    # -- changes, one at a time: decide, revoke-or-wait, save, push ------------------------------------

    def _enqueue(self, change: _Change, now: float) -> list:
        self._queue.append(change)
        return self._next_change(now)

    def _change(self, what, now: float) -> list:
        """Queue a change the machine decided on its own (nobody waits for its answer)."""
        return self._enqueue(_Change(what), now)

    def _next_change(self, now: float) -> list:
        fx = []
        while self._current is None and self._queue and self.leading:
            c = self._queue.popleft()
            damped = self._damped(c, now)
            if damped is not None:
                fx += damped
                continue
            r = Reconfig(CoordinatorState.from_dict(self.saved.to_dict()))
            result = self._decide(c.what, r, now)
            if isinstance(result, str):
                fx += self._finish(c, result, now)
                continue
            if result and isinstance(c.what, (Fail, Cut, Slow, AbandonAdd)):
                r.state.flaps = self.damping.saved(now, c.what.member)  # a new leader damps it too
            c.state, c.changed, self._current = r.state.to_dict(), result, c
            revokes = self.revokes(self.view, r.view())
            c.revoking = {x.member for x in revokes}
            fx += revokes + self._after_revokes(now)
        return fx

    def _damped(self, c: _Change, now: float) -> list | None:
        """A registration of a member taken out recently (damping.py): accepted (answered with
        the cluster id) but not admitted yet; it is probed as a candidate. None: not damped."""
        what = c.what
        if not isinstance(what, rq.Register) or what.member in watched(self.view):
            return None
        if what.member in self._admitting:
            self._admitting.discard(what.member)
            return None
        quiet = self.damping.quiet_s(what.member, now)
        if quiet <= 0 or isinstance(rq.decide(what, Reconfig(CoordinatorState.from_dict(self.saved.to_dict()))), str):
            return None  # admitted at once, or refused as any registration
        cand = self._candidates.setdefault(what.member, _Candidate())
        fx = [Reply(c.token, self.saved.cluster_id)] if c.token is not None else []
        if cand.what == what:
            return fx
        if cand.what is not None and cand.what.incarnation != what.incarnation:
            cand.since = None  # another process: its streak starts over
        cand.what = what
        self.registered(what.member, what.incarnation)
        fx.append(Note("warning", f"member {what.member} was taken out recently (flap penalty "
                                  f"{self.damping.penalty(what.member, now):.1f}): admitting it again once it has "
                                  f"answered every probe for {quiet:g} s", "damping", "", what.member))
        return fx + self._watch_view(now) + self._admit(what.member, now)

    def _admit(self, member: str, now: float) -> list:
        """A candidate registered again and answered every probe for its quiet period: its
        registration goes ahead. One whose penalty was forgotten before it registered is
        probed no more."""
        cand, quiet = self._candidates[member], self.damping.quiet_s(member, now)
        if cand.what is None and quiet <= 0:
            del self._candidates[member]
            return []
        if cand.what is None or cand.since is None or now - cand.since < quiet:
            return []
        del self._candidates[member]
        self._admitting.add(member)
        return [Note("info", f"member {member} answered every probe for {now - cand.since:.1f} s: admitting it again",
                     "damping", "", member)] + self._change(cand.what, now)

    def _decide(self, what, r: Reconfig, now: float) -> list[View] | str:
        if isinstance(what, rq.Attach) and not self.session_ping(what.session, now):
            return NO_SUCH_SESSION
        return rq.decide(what, r)

    def on_revoked(self, member: str, ok: bool, now: float) -> list:
        """The revoke of `member`'s lease answered (`ok`) or did not."""
        c = self._current
        if c is None or member not in c.revoking:
            return []
        c.revoking.discard(member)
        fx = []
        if not ok:
            until = self.revoke_unanswered(member)
            c.wait_until = max(c.wait_until, until)
            if until > now:
                fx.append(Note("info", f"waiting {until - now:.2f} s for the read lease of {member} to run out "
                                       "before replacing it"))
        return fx + self._after_revokes(now)

    def _after_revokes(self, now: float) -> list:
        c = self._current
        if c.revoking or c.saving or c.wait_until > now:
            return []
        if c.state == self.saved.to_dict() and not isinstance(c.what, rq.Initialize):
            return self._saved(now)
        c.saving = True
        return [Save(c.state, layout.changed(None if isinstance(c.what, rq.Initialize) else self.saved.to_dict(),
                                             c.state))]

    def on_save_result(self, ok: bool, now: float) -> list:
        """The store saved the state of the last `Save` (or refused it: the term is over)."""
        c = self._current
        if c is None or not c.saving:
            return []
        if ok:
            self.saved = CoordinatorState.from_dict(c.state)
            return self._saved(now)
        return [Note("warning", "a save failed: no longer acting as the leader")] + self.step_down()

    def _saved(self, now: float) -> list:
        c, self._current = self._current, None
        fx = self._after_save(c.changed, c.what, now)
        return fx + self._finish(c, c.changed, now) + self._next_change(now)

    def _after_save(self, changed: list[View], what, now: float) -> list:
        """Push the saved view to every member it names (and to ones taken out); probe and watch."""
        self._sync_sessions(now)
        if not changed:
            return []
        view, member = self.view, getattr(what, "member", "")
        fx = [Note("info", f"view epoch {v.epoch}: members={','.join(v.members)} learner={v.learner}",
                   "view_change", rq.cause(what), member, v) for v in changed]
        targets = watched(view) | set(rq.told(what))
        for old in changed:
            targets |= set(old.members)
        for member in sorted(targets):
            fx += self._pushes.push(member, view)
        return fx + self._watch_view(now) + self._settle_waiters(now)

    def _finish(self, c: _Change, result: list[View] | str, now: float) -> list:
        """What follows a change decided (`result`: the views saved) or refused (a string)."""
        what, refused = c.what, isinstance(result, str)
        if isinstance(what, Verdict):
            return self._noted(what, bool(result)) + self._decided(what, bool(result), now)
        if isinstance(what, rq.MarkEnding):
            return self._delete_batch(what.session, now, first=True) if not refused else self._ended(what.session, now)
        if isinstance(what, rq.DropSession):
            return self._ended(what.session, now)
        if c.token is None:
            return []
        if refused:
            note = [Note("warning", result)] if isinstance(what, rq.Register) else []
            return note + [Reply(c.token, error=result)]
        if isinstance(what, rq.Register):
            self.registered(what.member, what.incarnation)  # its probes will answer as this one
            return [Reply(c.token, self.saved.cluster_id)]
        if isinstance(what, rq.Add):
            self._waiters.append(_AddWaiter(c.token, what.member, now + ADD_REPLY_S))
            return self._settle_waiters(now)
        if isinstance(what, rq.OpenSession):
            self._clock.track(what.session, what.ttl_ms / 1000, now)
            return [Reply(c.token, what.session)]
        return [Reply(c.token, "OK")]

    def _noted(self, verdict: Verdict, changed: bool) -> list[Note]:
        m, cause = verdict.member, CAUSES[type(verdict)]
        if isinstance(verdict, Fail):
            why = (f": its event loop has not turned for {self.wedge_s:g} s (wedged)" if verdict.wedged
                   else f" failed {verdict.misses} probes in a row" + (f" and {verdict.witness} lost it too"
                                                                        if verdict.witness else ""))
            return [Note("warning", f"member {m}{why}: " + ("removed it from the chain" if changed else
                         "it is the last member of its chain: keeping it; the chain waits for it"),
                         "repair", cause, m)]
        if isinstance(verdict, Cut):
            return [Note("warning", f"the link between {m} and {verdict.peer} made no progress for "
                                    f"{verdict.stalled_s:.1f} s while both answer probes: " +
                                    ("removed " + m + " from the chain" if changed else f"{m} is its chain's last member: "
                                     "keeping it"), "repair", cause, m)]
        if isinstance(verdict, Slow):
            return [Note("warning", f"member {m} is fail-slow ({verdict.why}): " +
                         ("removed it from the chain" if changed else "keeping it: its chain has no two others"),
                         "repair", cause, m)]
        if isinstance(verdict, Restarted) and changed:
            return [Note("warning", f"member {m} restarted (new incarnation): added it again behind the tail",
                         "repair", cause, m)]
        if isinstance(verdict, AbandonAdd):
            return [Note("warning", f"the add of {m} made no progress for {verdict.quiet_s:.0f} s: rolled it back",
                         "repair", cause, m)]
        return []

    def _settle_waiters(self, now: float) -> list[Reply]:
        """Answer each MASTER.ADD whose member joined (acknowledged the view that has it in
        the chain) and holds a read lease, was rolled back, or is still catching up when its
        reply is due."""
        fx, view, waiting = [], self.view, []
        for w in self._waiters:
            if (w.member in view.members and self.granted(w.member)
                    and self._pushes.acked.get(w.member, -1) >= view.epoch):
                fx.append(Reply(w.token, "OK"))
            elif w.member not in view.members and w.member != view.learner and w.member not in self.saved.queued:
                fx.append(Reply(w.token, error=f"ERR the add of {w.member} was rolled back: it made no progress "
                                               f"for {self.add_timeout_s:g} s, or it failed while syncing"))
            elif now >= w.deadline:
                fx.append(Reply(w.token, error=f"ERR {w.member} is still catching up with the tail; it joins "
                                               "when it has (see MASTER.GET_CHAIN)"))
            else:
                waiting.append(w)
        self._waiters = waiting
        return fx

    # -- pushes -------------------------------------------------------------------------------------

    def on_pushed(self, member: str, epoch: int, ok: bool, now: float) -> list:
        """MEMBER.VIEW of `epoch` to `member` was acknowledged (`ok`) or failed."""
        return self._pushes.on_pushed(member, epoch, ok, self.view, watched(self.view), now) + self._settle_waiters(now)

    # -- probes ---------------------------------------------------------------------------------------

    def _watch_view(self, now: float) -> list:
        """Probe each watched member of the saved view that has no prober yet (a prober of a
        member no longer watched stops when its next probe would go); watch a new learner."""
        view = self.view
        if not self.leading:
            return []
        fx = []
        for member in sorted(watched(view) | set(self._candidates)):
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

    def on_probe_answer(self, member: str, nonce: int, incarnation: str, now: float, links=None,
                        slow=None) -> list:
        """The probe answered in time, as `incarnation`, with the member's `links` report and
        its `slow`ness (control.LinkReport, control.Slowness; None: a member without them)."""
        p = self._in_flight(member, nonce)
        if p is None:
            return []
        p.grant, p.answered_at, p.retried, p.busy_since = nonce, now, False, None
        self.dead.discard(member)
        if member in self._held:  # our isolation ends: the others held with it start counting again
            for other in self._held:
                self.health.forget(other)
            self._held.clear()
        self.health.result(member, True)
        self._isolated(now)
        if links is not None:
            self._reports[member] = (now, links)
        known = self.incarnations.setdefault(member, incarnation)
        if known != incarnation:
            self.incarnations[member] = incarnation
            return self._verdict(p, Restarted(member, incarnation), now)
        cand = self._candidates.get(member)
        if cand is not None:
            cand.since = now if cand.since is None else cand.since
            return self._next(p, now) + self._admit(member, now)
        why = self.slowness.report(member, slow, now) if slow is not None else None
        if why is not None and member in self.view.members:
            self.slowness.forget(member)
            if len(self.view.members) >= 3:
                return self._verdict(p, Slow(member, why), now)
            return [Note("warning", f"member {member} is fail-slow ({why}), but its chain has no two others: "
                                    "keeping it")] + self._next(p, now) + self._judge_links(now)
        return self._next(p, now) + self._judge_links(now)

    def _judge_links(self, now: float) -> list:
        """A cut link between two members that answer us: take one end out (link_health.py)."""
        if self._cutting or self.link_stall_s is None:
            return []
        found = link_health.cut(self.view, link_health.fresh(self._reports, self.view, now), self.link_stall_s)
        if found is None:
            return []
        self._cutting = True
        return self._verdict(None, Cut(*found), now)

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
        if member in self._candidates:  # its healthy streak starts over
            self._candidates[member].since = None
        confirmed = self.health.result(member, False, refused, wedged)
        witness = None
        if not confirmed and self.health.misses.get(member, 0) >= WITNESSED_MISSES and member in watched(self.view):
            witness = self._witness(member, now)  # another member lost it too: no need to wait for a third miss
            confirmed = witness is not None
        fx = []
        if self._isolated(now) and now - self._isolated_since >= HAND_OVER_S and not self._resigned:
            self._resigned = True
            fx.append(Resign(f"probes to most members failed for {now - self._isolated_since:.1f} s: "
                             "handing over to a coordinator that reaches them"))
        if (confirmed or member in self._held) and member in watched(self.view):
            if not (refused or wedged) and self._suspect_myself(member, now):
                if member not in self._held:
                    fx.append(Note("warning", f"member {member} failed {self.health.misses.get(member, 0)} probes, "
                                              "but no other member saw it fail and this coordinator may be the one "
                                              "cut off: keeping it"))
                self._held.add(member)
                return fx + self._next(p, now)
            self._held.discard(member)
            return fx + self._verdict(p, Fail(member, self.health.misses.get(member, 0), wedged, witness), now)
        return fx + self._next(p, now)

    def _isolated(self, now: float) -> bool:
        """Do most watched members (two at least) fail their probes (since `_isolated_since`)?"""
        view, misses = self.view, self.health.misses
        failing = sum(1 for m in watched(view) if misses.get(m, 0) > 0)
        if failing < 2 or failing * 2 <= len(watched(view)):
            self._isolated_since = None
            return False
        if self._isolated_since is None:
            self._isolated_since = now
        return True

    def _suspect_myself(self, member: str, now: float) -> bool:
        """Self-suspicion (link_health.py): most watched members fail at once, or taking `member`
        out would leave fewer than two, and no other member witnessed its failure."""
        view, misses = self.view, self.health.misses
        if view.members == (member,):  # the last member is kept anyway
            return False
        failing = sum(1 for m in watched(view) if misses.get(m, 0) > 0)
        if failing * 2 <= len(watched(view)) and not (member in view.members and len(view.members) == 2):
            return False
        return self._witness(member, now) is None

    def _witness(self, member: str, now: float) -> str | None:
        """A member, itself answering, whose fresh report says it lost `member` too."""
        stall_s = self.link_stall_s or link_health.STALL_S
        return link_health.witnessed(member, link_health.fresh(self._reports, self.view, now), stall_s)

    def _verdict(self, p: _Prober | None, verdict: Verdict, now: float) -> list:
        """Queue the change `verdict` asks for (the verdict itself goes to the log)."""
        if p is not None:
            p.deciding = True
        return [verdict] + self._change(verdict, now)

    def _decided(self, verdict: Verdict, changed: bool, now: float) -> list:
        """`verdict` was decided (`changed`: a new view was saved). A member taken out is probed
        on as a candidate (flap damping); the last member of a chain, kept, is probed again at once; after a
        hand-over or a rollback the learner watch looks at the saved view again at once."""
        fx = []
        if changed and isinstance(verdict, (Fail, Cut, Slow, AbandonAdd)):  # a candidate from now on
            self.damping.removed(verdict.member, now)
            self._candidates.setdefault(verdict.member, _Candidate())
            fx = self._watch_view(now)
        if isinstance(verdict, Cut):
            self._cutting = False
            return fx
        if isinstance(verdict, (CaughtUp, AbandonAdd)):
            w = self._watch
            if w is None or not w.deciding:
                return []
            w.deciding = False
            return fx + ([] if w.asked is not None else self._ask_tail(now))
        p = self._probers.get(verdict.member)
        if p is None or not p.deciding:
            return fx
        p.deciding = False
        if isinstance(verdict, Fail):
            if changed:  # probed on as a candidate, counting misses afresh
                self.health.forget(verdict.member)
            return fx + self._send(verdict.member, now)
        return fx + self._next(p, now)

    def _in_flight(self, member: str, nonce: int, checking: bool = False) -> _Prober | None:
        p = self._probers.get(member)
        if p is None or p.due is not None or p.deciding or p.nonce != nonce or p.checking != checking:
            return None
        return p

    def _send(self, member: str, now: float) -> list[Probe]:
        p = self._probers[member]
        if member not in watched(self.view) and member not in self._candidates:
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
                       acked: int = -1, transfer: tuple[int, int] = (0, 0)) -> list:
        """The tail's answer to `asked` (its epoch, whether its learner caught up, how many
        entries the learner acked) and how far a state transfer to the learner got (the tail's
        bytes dumped and sent, the learner's slices loaded: either growing is progress too, so
        a large state is not taken for a stuck add); no `epoch`: the tail did not answer."""
        w = self._watch
        if w is None or w.asked != asked:
            return []
        w.asked = None
        if w.deciding:
            return []
        if epoch == asked.epoch and caught_up:
            return self.on_caught_up(asked.epoch, asked.learner, now)
        if epoch is not None and (acked >= 0 or any(transfer)) and (asked.epoch, acked, transfer) != w.progress:
            w.progress, w.since = (asked.epoch, acked, transfer), now
        if now - w.since > self.add_timeout_s:
            w.deciding = True
            return self._verdict(None, AbandonAdd(w.learner, self.add_timeout_s), now)
        w.due = now + self.learner_poll_s
        return []

    def on_caught_up(self, epoch: int, learner: str, now: float) -> list:
        """The tail of view `epoch` says (MASTER.CAUGHT_UP, or its answer to `AskTail`) that
        `learner` caught up: promote it, if that is still the saved view's learner."""
        w, view = self._watch, self.view
        if w is None or w.deciding or view.epoch != epoch or view.learner != learner:
            return []
        w.deciding, w.due = True, None
        return self._verdict(None, CaughtUp(epoch, learner), now)

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
        return max(self.lease_ok.get(member, NEVER), self.term_started) + self.lease_s + self.lease_margin_s


def may_resign(machines) -> bool:
    """A coordinator keeping several chains hands over (`Resign`) only when it is cut off from
    most members of every chain that has members: a chain whose members all died is that
    chain's trouble, and a standby would find it dead too."""
    return all(m.cut_off for m in machines if m.view.members)
