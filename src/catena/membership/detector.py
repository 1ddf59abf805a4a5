"""The membership machine: heartbeats on the extended ring, suspicion and confirmation,
refutation, join/leave, dissemination, anti-entropy. Pure: no I/O, no clocks, no global random.

Inputs: `start(now)`, `on_message(msg, now)`, `on_timer(now)`, `leave(now)`; outputs: lists of
effects (`Send`, `Event`, `Joined`, `JoinFailed`, `Stopped`) and `next_deadline()`. `now` is
monotonic seconds. Randomness (gossip targets, sync partners) comes from the `random.Random`
passed in.

Failure detection. Live members sit on a ring ordered by a hash of their address. Every
`heartbeat_interval` a member sends a Heartbeat to its k successors; each member monitors its k
predecessors. A predecessor silent for `suspect_after` becomes SUSPECT (gossiped, so it can
refute); the monitor probes it directly (Ping) and indirectly through the suspect's other
monitors and one random member (PingReq), retrying once halfway. Any datagram from the suspect,
or a relayed Ack, clears the suspicion; otherwise after `confirm_timeout` the monitor declares
it FAILED -- provided at least one helper answered (Nack: "I could not reach it either"). A
monitor that hears from nobody may itself be cut off: it keeps suspecting and probes again
through other helpers rather than remove anyone (Lifeguard's nack, in spirit). A
member that learns it is suspected refutes: it re-announces itself ALIVE with refute + 1.
FAILED is final for an incarnation: a member that learns it was declared failed (it was paused,
or cut off, past the timeout) rejoins under a new, larger incarnation -- so catena never takes
back a failure it has announced, and a restarted or resumed process is never confused with its
earlier self. A member whose own timers ran late (it was paused or starved) gives its
predecessors a fresh grace period instead of suspecting them: it was not listening.

Dissemination: every change is queued (`BroadcastQueue`) and piggybacked on heartbeats, probes
and acks, and pushed at once and then every `gossip_interval` to `gossip_fanout` random
members, until each update went out transmit_limit(N) times. Every `sync_interval` a member
sends a digest of its live list to one random member; quiet lists that differ exchange their
lists (State parts). Join: a process sends Join to every introducer; the first one reachable
checks that the address the Join names answers (a Ping the joiner must Ack: a forged Join
costs one datagram to the address it names, never a list), then admits it and sends its list.
Introducers take at most `JOIN_RATE` joins a second (a burst of `JOIN_BURST`) and track at most
`MAX_JOIN_CHECKS` unanswered checks; Joins beyond those are dropped and counted. Leave: the member gossips LEFT for itself for `leave_linger`
and stops.
"""

from __future__ import annotations

from dataclasses import dataclass

from catena.membership import wire
from catena.membership.dissemination import BroadcastQueue, chunk
from catena.membership.effects import Event, Joined, JoinFailed, Send, Stopped
from catena.membership.messages import (
    LAST_LIVE, Ack, Digest, Gossip, Heartbeat, Join, JoinRefused, MemberId, Nack, Ping, PingReq, State, Status,
    Update,
)
from catena.membership.ring import Ring
from catena.membership.settings import Settings
from catena.membership.table import MemberTable

INF = float("inf")
JOIN_RATE = 50.0  # joins an introducer acts on per second (token bucket) ...
JOIN_BURST = 100  # ... with this burst
MAX_JOIN_CHECKS = 256  # Joins whose named address has not answered yet

JOINING, ALIVE, LEAVING, STOPPED, JOIN_FAILED = "joining", "alive", "leaving", "stopped", "join_failed"


@dataclass(slots=True)
class _Probe:
    member: MemberId
    seq: int
    started: float
    retry_at: float
    deadline: float
    helpers: list[str]
    nacks: int = 0  # helpers that answered "could not reach it": we ourselves can still talk


@dataclass(frozen=True, slots=True)
class MemberView:
    """One row of a list as the API shows it."""

    member: MemberId
    status: Status
    refute: int
    heard_ago: float | None  # seconds since this member last received a datagram from it


class Detector:
    """One member's view of the group. `rng` is a seeded `random.Random` owned by the caller."""

    def __init__(self, me: MemberId, settings: Settings, rng, now: float,
                 introducers: tuple[str, ...] | list[str] = ()):
        self.me = me
        self.s = settings
        self.rng = rng
        self.introducers = tuple(a for a in introducers if a != me.addr)
        self.phase = JOINING
        self.refute = 0
        self.table = MemberTable()
        self.ring = Ring()
        self.queue = BroadcastQueue()
        self.budget = wire.payload_budget(me.host, settings.max_datagram)
        ms = 0.001
        self.t_hb = settings.heartbeat_interval_ms * ms
        self.t_suspect = settings.suspect_after_ms * ms
        self.t_confirm = settings.confirm_timeout_ms * ms
        self.t_gossip = settings.gossip_interval_ms * ms
        self.t_sync = settings.sync_interval_ms * ms
        self.t_quiet = settings.sync_quiet_ms * ms
        self.t_join_retry = settings.join_retry_ms * ms
        self.t_join = settings.join_timeout_ms * ms
        self.t_linger = settings.leave_linger_ms * ms
        self.t_tomb = settings.tombstone_ttl_ms * ms
        self.started = now
        self.base_incarnation = me.incarnation
        self.preds: list[str] = []
        self.succs: list[str] = []
        self.heard: dict[str, float] = {}  # predecessor -> last datagram from it
        self.last_direct: dict[str, float] = {}  # any member -> last datagram from it
        self.probes: dict[str, _Probe] = {}
        self.relays: dict[int, list] = {}  # our ping seq -> [origin, origin seq, target, nack at]
        self._seq = 0
        self._notified: dict[str, float] = {}  # tombstoned sender -> when we last told it
        self._synced: dict[str, float] = {}  # peer -> last urgent list exchange
        self.rejoining = False
        self.join_checks: dict[str, tuple[MemberId, int, float]] = {}  # joiner -> (id, ping seq, expiry)
        self.join_tokens, self.join_tokens_at = float(JOIN_BURST), now
        self.join_targets: tuple[str, ...] = ()
        self.join_deadline = INF
        self.join_retry_at = INF
        self.next_hb = INF
        self.next_gossip = INF
        self.next_sync = INF
        self.next_gc = INF
        self.leave_done_at = INF
        self.last_tick = now
        self.counters: dict[str, int] = {
            "suspicions": 0, "refutations": 0, "failures_declared": 0, "probes": 0,
            "indirect_probes": 0, "probes_cleared": 0, "joins_admitted": 0, "joins_refused": 0,
            "rejoins": 0, "pauses_detected": 0, "syncs": 0, "stale_ignored": 0, "probes_inconclusive": 0,
            "joins_rate_limited": 0, "joins_unverified": 0,
        }

    # -- lifecycle --------------------------------------------------------------------------

    def start(self, now: float) -> list:
        out: list = []
        self.last_tick = now
        if not self.introducers:
            self._become_alive(now, out)
        else:
            self._begin_join(now, self.introducers, out)
        return out

    def bootstrap(self, members, now: float, template: "Detector | None" = None) -> None:
        """Install a complete list at once (simulations starting from a converged cluster).

        `template`: a machine already bootstrapped with the same members, whose list and ring
        are copied instead of rebuilt (records are immutable, so sharing them is safe).
        """
        if template is not None:
            self.table = template.table.copy()
            self.ring = template.ring.copy()
        else:
            for m in members:
                self.table.apply(Update(m, 0, Status.ALIVE), now)
                self.ring.add(m.addr)
        self.phase = ALIVE
        self.table.apply(Update(self.me, 0, Status.ALIVE), now)
        self.ring.add(self.me.addr)
        self.table.last_change = now - self.t_quiet
        self._arm_alive(now)
        self._reform(now)

    def leave(self, now: float) -> list:
        out: list = []
        if self.phase == JOINING:
            self.phase = STOPPED
            out.append(Stopped())
        if self.phase != ALIVE:
            return out
        u = Update(self.me, self.refute, Status.LEFT)
        self.table.apply(u, now)
        self.ring.remove(self.me.addr)
        self.queue.add(u)
        self.phase = LEAVING
        out.append(Event("leave", self.me))
        targets = list(self.succs) + self.ring.sample(self.rng, self.s.gossip_fanout, exclude=self.succs)
        for t in targets:
            out.append(Send(t, Gossip(self.me, self._piggyback(first=u))))
        self.probes.clear()
        self.next_gossip = now + self.t_gossip
        self.leave_done_at = now + self.t_linger
        return out

    # -- queries ----------------------------------------------------------------------------

    def members(self) -> list[MemberId]:
        """The live list (alive and suspect members, ourselves included once admitted)."""
        return sorted(r.member for r in self.table.records.values() if r.update.status <= LAST_LIVE)

    def not_alive(self, addrs) -> list[str]:
        """Those of `addrs` this list holds suspect, failed or gone (or never knew)."""
        return [a for a in addrs if (r := self.table.get(a)) is None or r.update.status != Status.ALIVE]

    def views(self, now: float, include_dead: bool = False) -> list[MemberView]:
        rows = []
        for addr, r in sorted(self.table.records.items()):
            if r.update.status <= LAST_LIVE or include_dead:
                t = self.last_direct.get(addr)
                ago = 0.0 if addr == self.me.addr else (None if t is None else max(0.0, now - t))
                rows.append(MemberView(r.member, r.update.status, r.update.refute, ago))
        return rows

    def next_deadline(self) -> float:
        if self.phase == ALIVE:
            d = min(self.next_hb, self.next_gossip, self.next_sync, self.next_gc)
            heard = self.heard
            probes = self.probes
            for p in self.preds:
                if p not in probes:
                    t = heard[p] + self.t_suspect
                    if t < d:
                        d = t
            for pr in probes.values():
                t = pr.retry_at if pr.retry_at < pr.deadline else pr.deadline
                if t < d:
                    d = t
            for r in self.relays.values():
                if r[3] < d:
                    d = r[3]
            return d
        if self.phase == JOINING:
            return min(self.join_deadline, self.join_retry_at)
        if self.phase == LEAVING:
            return min(self.next_gossip, self.leave_done_at)
        return INF

    # -- timers -----------------------------------------------------------------------------

    def on_timer(self, now: float) -> list:
        out: list = []
        gap = now - self.last_tick
        self.last_tick = now
        phase = self.phase
        if phase == ALIVE:
            if gap > 2 * self.t_hb:
                # Our timers ran late: we were paused (SIGSTOP, VM freeze, a starved loop) and
                # not listening, so the silence of our predecessors is no evidence. If the others
                # declared us failed meanwhile, they tell us (FAILED gossip, or a notice in
                # answer to our next heartbeat) and we rejoin then; if everyone stalled
                # together, nobody was declared and nothing changes.
                if gap > self.t_suspect:
                    self.counters["pauses_detected"] += 1
                for p in self.heard:
                    self.heard[p] = max(self.heard[p], now - self.t_hb)
                for pr in self.probes.values():
                    pr.deadline = max(pr.deadline, now + self.t_hb)
            self._tick_alive(now, out)
        elif phase == JOINING:
            if now >= self.join_deadline:
                if self.rejoining:
                    self.join_deadline = now + self.t_join
                else:
                    self.phase = JOIN_FAILED
                    out.append(JoinFailed(
                        f"no introducer answered within {self.t_join:.1f} s "
                        f"(tried {', '.join(self.join_targets)}); are they running, and do they share the secret?"))
                    return out
            if now >= self.join_retry_at:
                for t in self.join_targets:
                    out.append(Send(t, Join(self.me)))
                self.join_retry_at = now + self.t_join_retry
        elif phase == LEAVING:
            if now >= self.next_gossip:
                self._gossip_round(now, out)
            if now >= self.leave_done_at:
                self.phase = STOPPED
                out.append(Stopped())
        return out

    def _tick_alive(self, now: float, out: list) -> None:
        if now >= self.next_hb:
            for s in self.succs:
                out.append(Send(s, Heartbeat(self.me, self._piggyback()) if len(self.queue) else self._bare_hb))
            self.next_hb = now + self.t_hb
        for p in self.preds:
            if p not in self.probes and now >= self.heard[p] + self.t_suspect:
                self._start_probe(p, now, out)
        if self.probes:
            for addr, pr in list(self.probes.items()):
                if self.probes.get(addr) is not pr:
                    continue  # settled by an earlier step of this loop
                if now >= pr.deadline:
                    del self.probes[addr]
                    if pr.nacks or not pr.helpers:
                        self._declare_failed(pr, now, out)
                    else:
                        # Nobody answered at all, not even a helper: we may be the one cut
                        # off. Keep suspecting and probe again through other helpers.
                        self.counters["probes_inconclusive"] += 1
                        self._start_probe(addr, now, out)
                elif now >= pr.retry_at:
                    pr.retry_at = INF
                    self._send_probes(pr, out)
        if self.relays:
            for seq in [q for q, r in self.relays.items() if r[3] <= now]:
                origin, oseq, target, _ = self.relays.pop(seq)
                out.append(Send(origin, Nack(self.me, oseq, target, self._piggyback())))
        if now >= self.next_gossip:
            self._gossip_round(now, out)
        if now >= self.next_sync:
            self.next_sync = now + self.t_sync * self.rng.uniform(0.9, 1.1)
            peer = self.ring.sample(self.rng, 1, exclude=(self.me.addr,))
            if peer:
                out.append(Send(peer[0], self._digest(now, reply=True)))
        if self.join_checks:
            for a in [a for a, c in self.join_checks.items() if c[2] <= now]:
                del self.join_checks[a]
                self.counters["joins_unverified"] += 1
        if now >= self.next_gc:
            self.next_gc = now + min(10.0, self.t_tomb / 2)
            self.table.gc(now, self.t_tomb)
            for d in (self.last_direct, self._notified, self._synced):
                for a in [a for a in d if a not in self.table.records]:
                    del d[a]

    # -- messages ---------------------------------------------------------------------------

    def on_message(self, msg, now: float) -> list:
        out: list = []
        phase = self.phase
        sender = msg.sender
        addr = sender.addr
        if addr == self.me.addr:
            return out
        t = type(msg)
        if phase == JOINING:
            if t is State and msg.for_join:
                self._joined(now, out)
                self._merge(msg.entries, now, out)
            elif t is JoinRefused and addr in self.join_targets:
                self.phase = JOIN_FAILED
                out.append(JoinFailed(f"{addr} refused the join: {msg.reason}"))
            elif t is Ping and msg.target == self.me:  # an introducer checks that we asked
                out.append(Send(addr, Ack(self.me, msg.seq, msg.target, ())))
            return out
        if phase != ALIVE:
            return out
        if t is Ack and self.join_checks:
            check = self.join_checks.get(addr)
            if check is not None and check[0] == sender and check[1] == msg.seq:
                del self.join_checks[addr]  # the address a Join named answered: admit it
                self._admit(sender, now, out)
                return out
        self.last_direct[addr] = now
        rec = self.table.records.get(addr)
        if rec is not None and (rec.update.member is sender or rec.update.member == sender):
            if rec.update.status <= LAST_LIVE:
                if addr in self.heard:
                    self.heard[addr] = now
                if addr in self.probes:
                    del self.probes[addr]
                    self._false_suspicion(addr, now, out)
            elif self._notified.get(addr, -INF) + self.t_hb <= now:
                # It was declared failed/left but still talks: tell it, so it rejoins.
                self._notified[addr] = now
                out.append(Send(addr, Gossip(self.me, (rec.update,))))
        elif rec is None and t is not Join:
            # Only members send anything but Join: a sender we have never heard of is alive
            # (we missed its join). Learn it; the merge rule lets any newer news override this.
            self._merge((Update(sender, 0, Status.ALIVE),), now, out)
        if t is Heartbeat or t is Gossip:
            if msg.updates:
                self._merge(msg.updates, now, out)
        elif t is Ping:
            self._merge(msg.updates, now, out)
            out.append(Send(addr, Ack(self.me, msg.seq, msg.target, self._piggyback(first=self._self_update()))))
        elif t is Ack:
            self._merge(msg.updates, now, out)
            relay = self.relays.pop(msg.seq, None)
            if relay is not None:
                out.append(Send(relay[0], Ack(self.me, relay[1], msg.target, self._piggyback())))
            else:
                pr = self.probes.get(msg.target.addr)
                if pr is not None and pr.seq == msg.seq:
                    del self.probes[msg.target.addr]
                    self._false_suspicion(msg.target.addr, now, out)
                    if msg.target.addr in self.heard:
                        self.heard[msg.target.addr] = now
        elif t is PingReq:
            self._merge(msg.updates, now, out)
            target = msg.target
            if target.addr == self.me.addr:
                out.append(Send(addr, Ack(self.me, msg.seq, target, self._piggyback(first=self._self_update()))))
            else:
                seq = self._next_seq()
                self.relays[seq] = [addr, msg.seq, target, now + self.t_confirm * 0.4]
                trec = self.table.records.get(target.addr)
                first = trec.update if trec is not None else None
                out.append(Send(target.addr, Ping(self.me, seq, target, self._piggyback(first=first))))
        elif t is Nack:
            self._merge(msg.updates, now, out)
            pr = self.probes.get(msg.target.addr)
            if pr is not None and pr.seq == msg.seq:
                pr.nacks += 1
        elif t is Join:
            self._check_join(sender, now, out)
        elif t is State:
            self._merge(msg.entries, now, out)
        elif t is Digest:
            self._on_digest(msg, now, out)
        return out

    # -- joining, rejoining, admitting ------------------------------------------------------

    def _begin_join(self, now: float, targets, out: list) -> None:
        self.phase = JOINING
        self.join_targets = tuple(dict.fromkeys(targets))
        for t in self.join_targets:
            out.append(Send(t, Join(self.me)))
        self.join_retry_at = now + self.t_join_retry
        self.join_deadline = now + self.t_join

    def _become_alive(self, now: float, out: list) -> None:
        self.phase = ALIVE
        self.join_deadline = self.join_retry_at = INF
        u = self._self_update()
        self._merge((u,), now, out, self_ok=True)
        out.append(Joined(self.me))
        self._arm_alive(now)

    def _arm_alive(self, now: float) -> None:
        self._bare_hb = Heartbeat(self.me)
        self.next_hb = now
        self.next_sync = now + self.t_sync * self.rng.uniform(0.5, 1.0)
        self.next_gc = now + min(10.0, self.t_tomb / 2)
        self.last_tick = now

    def _joined(self, now: float, out: list) -> None:
        self.rejoining = False
        self._become_alive(now, out)

    def _rejoin(self, now: float, out: list) -> None:
        old = self.me
        self.counters["rejoins"] += 1
        self.table.apply(Update(old, self.refute, Status.FAILED), now)
        self.ring.remove(old.addr)
        out.append(Event("failed", old))
        elapsed_ms = int((now - self.started) * 1000)
        self.me = MemberId(old.host, old.port, max(old.incarnation + 1, self.base_incarnation + elapsed_ms))
        self.refute = 0
        self.probes.clear()
        self.relays.clear()
        self.heard.clear()
        self.preds, self.succs = [], []
        self.next_hb = self.next_gossip = self.next_sync = self.next_gc = INF
        self.rejoining = True
        known = self.ring.sample(self.rng, 3, exclude=self.introducers)
        if not known and not self.introducers:
            self._become_alive(now, out)  # we were the whole group: found it again
            return
        self._begin_join(now, list(self.introducers) + known, out)

    def _check_join(self, j: MemberId, now: float, out: list) -> None:
        """A Join names `j`: ask that address whether it sent it (rate-limited)."""
        self.join_tokens = min(JOIN_BURST, self.join_tokens + (now - self.join_tokens_at) * JOIN_RATE)
        self.join_tokens_at = now
        check = self.join_checks.get(j.addr)
        if self.join_tokens < 1 or (check is None and len(self.join_checks) >= MAX_JOIN_CHECKS):
            self.counters["joins_rate_limited"] += 1
            return
        self.join_tokens -= 1
        if self._refuse(j, out):
            return
        if check is None or check[0] != j:
            check = self.join_checks[j.addr] = (j, self._next_seq(), now + self.t_join)
        out.append(Send(j.addr, Ping(self.me, check[1], j, ())))

    def _refuse(self, j: MemberId, out: list) -> bool:
        """Refuse a join that can never be admitted (a stale incarnation); True if refused."""
        rec = self.table.records.get(j.addr)
        reason = None
        if rec is not None and rec.member.incarnation > j.incarnation:
            reason = (f"address {j.addr} is already a member as incarnation {rec.member.incarnation}, "
                      f"newer than this process's {j.incarnation}; a restarted process needs a larger incarnation")
        elif rec is not None and rec.member.incarnation == j.incarnation and rec.update.status > LAST_LIVE:
            reason = f"{j} was declared {rec.update.status.name.lower()}; restart it to get a new incarnation"
        if reason is not None:
            self.counters["joins_refused"] += 1
            out.append(Send(j.addr, JoinRefused(self.me, reason)))
        return reason is not None

    def _admit(self, j: MemberId, now: float, out: list) -> None:
        if self._refuse(j, out):
            return
        self.counters["joins_admitted"] += 1
        rec = self.table.records.get(j.addr)
        if rec is None or rec.member != j:
            self._merge((Update(j, 0, Status.ALIVE),), now, out)
        self._send_state(j.addr, True, out)

    def _send_state(self, to: str, for_join: bool, out: list) -> None:
        ups = self.table.updates()
        ups.sort(key=lambda u: u.status > LAST_LIVE)  # live members first
        parts = chunk(ups, self.budget, wire.update_size)
        for i, p in enumerate(parts):
            out.append(Send(to, State(self.me, i, len(parts), for_join, tuple(p))))

    def _digest(self, now: float, reply: bool, urgent: bool = False) -> Digest:
        quiet = now - self.table.last_change
        return Digest(self.me, self.table.digest, int(min(quiet, 3600.0) * 1000), reply, urgent)

    def _on_digest(self, msg: Digest, now: float, out: list) -> None:
        if msg.digest == self.table.digest:
            return
        if not msg.urgent and (msg.quiet_ms < self.s.sync_quiet_ms or now - self.table.last_change < self.t_quiet):
            return  # news is still spreading; compare again later
        addr = msg.sender.addr
        if msg.urgent:
            if self._synced.get(addr, -INF) + self.t_sync > now:
                return
            self._synced[addr] = now
        self.counters["syncs"] += 1
        self._send_state(addr, False, out)
        if msg.reply:
            out.append(Send(addr, self._digest(now, reply=False, urgent=msg.urgent)))

    def _false_suspicion(self, addr: str, now: float, out: list) -> None:
        """A suspect answered: our lists probably disagree about the ring (it did not heartbeat
        us). Push our list to it and ask for its own, at most once per sync interval."""
        self.counters["probes_cleared"] += 1
        if self._synced.get(addr, -INF) + self.t_sync > now:
            return
        self._synced[addr] = now
        self.counters["syncs"] += 1
        self._send_state(addr, False, out)
        out.append(Send(addr, self._digest(now, reply=True, urgent=True)))

    # -- detection --------------------------------------------------------------------------

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _start_probe(self, p: str, now: float, out: list) -> None:
        rec = self.table.records.get(p)
        if rec is None or rec.update.status > LAST_LIVE:
            return
        if rec.update.status == Status.ALIVE:
            self.counters["suspicions"] += 1
            self._merge((Update(rec.member, rec.update.refute, Status.SUSPECT),), now, out)
        # the suspect's other monitors (they heard its heartbeats), plus one random member, so a
        # burst that took the other monitors down still leaves a helper to answer
        helpers = [h for h in self.ring.successors(p, self.s.k) if h != self.me.addr][: self.s.indirect_probes]
        helpers += self.ring.sample(self.rng, self.s.indirect_probes + 1 - len(helpers),
                                    exclude=[p, self.me.addr, *helpers])
        pr = _Probe(rec.member, self._next_seq(), now, now + self.t_confirm / 2, now + self.t_confirm, helpers)
        self.probes[p] = pr
        self._send_probes(pr, out)

    def _send_probes(self, pr: _Probe, out: list) -> None:
        rec = self.table.records.get(pr.member.addr)
        first = rec.update if rec is not None else None
        self.counters["probes"] += 1
        out.append(Send(pr.member.addr, Ping(self.me, pr.seq, pr.member, self._piggyback(first=first))))
        for h in pr.helpers:
            self.counters["indirect_probes"] += 1
            out.append(Send(h, PingReq(self.me, pr.seq, pr.member, self._piggyback(first=first))))

    def _declare_failed(self, pr: _Probe, now: float, out: list) -> None:
        rec = self.table.records.get(pr.member.addr)
        if rec is None or rec.member != pr.member or rec.update.status > LAST_LIVE:
            return
        self.counters["failures_declared"] += 1
        self._merge((Update(rec.member, rec.update.refute, Status.FAILED),), now, out)

    # -- merging and dissemination ----------------------------------------------------------

    def _self_update(self) -> Update:
        return Update(self.me, self.refute, Status.ALIVE)

    def _merge(self, updates, now: float, out: list, self_ok: bool = False) -> None:
        me = self.me
        reform = False
        for u in updates:
            m = u.member
            if m.addr == me.addr and not self_ok:
                self._about_me(u, now, out)
                if self.phase != ALIVE:
                    return
                continue
            events = self.table.apply(u, now)
            if events is None:
                continue
            self.queue.add(u)
            if u.status <= LAST_LIVE:
                if self.ring.add(m.addr):
                    reform = True
            elif self.ring.remove(m.addr):
                reform = True
            pr = self.probes.get(m.addr)
            if pr is not None and (pr.member != m or u.status != Status.SUSPECT):
                del self.probes[m.addr]  # refuted, replaced or settled
            for kind, who in events:
                out.append(Event(kind, who))
                if kind == "alive" and who.addr in self.heard:
                    self.heard[who.addr] = now
        if self.next_gossip == INF and len(self.queue):
            self.next_gossip = now
        if reform:
            self._reform(now)

    def _about_me(self, u: Update, now: float, out: list) -> None:
        if u.member.incarnation != self.me.incarnation:
            self.counters["stale_ignored"] += 1
            return
        if u.status == Status.SUSPECT and u.refute >= self.refute or u.status == Status.ALIVE and u.refute > self.refute:
            self.refute = u.refute + 1
            self.counters["refutations"] += 1
            mine = self._self_update()
            self.table.apply(mine, now)
            self.queue.add(mine)
            if self.next_gossip == INF:
                self.next_gossip = now
            out.append(Event("refute", self.me))
        elif u.status > LAST_LIVE and self.phase == ALIVE:
            self._rejoin(now, out)

    def _reform(self, now: float) -> None:
        me = self.me.addr
        k = self.s.k
        self.succs = self.ring.successors(me, k)
        self.preds = self.ring.predecessors(me, k)
        old = self.heard
        self.heard = {p: old.get(p, now) for p in self.preds}

    def _piggyback(self, first: Update | None = None) -> tuple[Update, ...]:
        if not len(self.queue) and first is None:
            return ()
        return self.queue.take(self.budget, self.s.transmit_limit(self.table.live_count), wire.update_size, first)

    def _gossip_round(self, now: float, out: list) -> None:
        targets = self.ring.sample(self.rng, self.s.gossip_fanout, exclude=(self.me.addr,))
        for t in targets:
            ups = self._piggyback()
            if not ups:
                break
            out.append(Send(t, Gossip(self.me, ups)))
        self.next_gossip = now + self.t_gossip if len(self.queue) else INF
