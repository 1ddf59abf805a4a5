"""The membership machine, driven by hand: no event loop, no sleeps, exact virtual times."""

import random

import pytest

from catena.membership.detector import ALIVE, JOIN_FAILED, JOINING, STOPPED, Detector
from catena.membership.effects import Event, Joined, JoinFailed, Send, Stopped
from catena.membership.messages import (
    Ack, Digest, Gossip, Heartbeat, Join, JoinRefused, MemberId, Ping, PingReq, State, Status, Update,
)
from catena.membership.settings import Settings
from catena.errors import ConfigError

S = Settings()


def mid(i, inc=1000):
    return MemberId("127.0.0.1", 7000 + i, inc)


class Net:
    """Delivers Send effects instantly, except to addresses in `down`; records everything."""

    def __init__(self):
        self.nodes: dict[str, Detector] = {}
        self.down: set[str] = set()
        self.sent: list[Send] = []
        self.events: list[tuple[str, Event]] = []
        self.other: list = []

    def add(self, i, now=0.0, introducers=(), inc=1000):
        d = Detector(mid(i, inc), S, random.Random(i), now, introducers)
        self.nodes[d.me.addr] = d
        self.run(d, d.start(now), now)
        return d

    def run(self, node, effects, now):
        queue = [(node, e) for e in effects]
        while queue:
            src, e = queue.pop(0)
            if isinstance(e, Send):
                self.sent.append(e)
                dst = self.nodes.get(e.to)
                if dst is not None and e.to not in self.down and src.me.addr not in self.down:
                    queue += [(dst, x) for x in dst.on_message(e.msg, now)]
            elif isinstance(e, Event):
                self.events.append((src.me.addr, e))
            else:
                self.other.append((src.me.addr, e))

    def advance(self, t0, t1, step=0.01):
        """Fire every live machine's timers from t0 to t1 in small steps."""
        t = t0
        while t <= t1 + 1e-9:
            for addr, n in list(self.nodes.items()):
                if addr not in self.down and n.next_deadline() <= t:
                    self.run(n, n.on_timer(t), t)
            t = round(t + step, 6)

    def live(self, addr):
        return [m.addr for m in self.nodes[addr].members()]


def cluster(n):
    """n members joined through member 0, gossip settled: the clock stands at 0.5 s."""
    net = Net()
    net.add(0)
    for i in range(1, n):
        net.add(i, now=0.0, introducers=[mid(0).addr])
    net.advance(0.0, 0.5)
    return net


def test_first_member_starts_alone():
    net = Net()
    d = net.add(0)
    assert d.phase == ALIVE and d.members() == [mid(0)]
    assert ("127.0.0.1:7000", Joined(mid(0))) in net.other


def test_join_through_introducer_gets_the_whole_list():
    net = cluster(5)
    for addr in net.nodes:
        assert sorted(net.live(addr)) == sorted(net.nodes), addr
    joins = [e.member for a, e in net.events if a == mid(0).addr and e.kind == "join"]
    assert joins == [mid(i) for i in range(5)]


def test_any_reachable_introducer_admits():
    net = cluster(3)
    net.down.add(mid(0).addr)
    d = net.add(5, now=0.5, introducers=[mid(0).addr, mid(1).addr])
    net.advance(0.5, 0.6)
    assert d.phase == ALIVE and mid(5).addr in net.live(mid(2).addr)


def test_join_fails_with_a_clear_error_when_no_introducer_answers():
    net = Net()
    d = net.add(1, introducers=["127.0.0.1:1", "127.0.0.1:2"])
    assert d.phase == JOINING
    net.advance(0.0, S.join_timeout_ms / 1000 + 0.05)
    assert d.phase == JOIN_FAILED
    (failed,) = [e for a, e in net.other if isinstance(e, JoinFailed)]
    assert "no introducer answered" in failed.reason and "127.0.0.1:2" in failed.reason
    retries = [s for s in net.sent if isinstance(s.msg, Join)]
    assert len(retries) > 2 * 2  # retried every join_retry_ms


def test_join_with_an_older_incarnation_is_refused():
    net = cluster(2)
    stale = Detector(mid(1, inc=999), S, random.Random(9), 0.0, [mid(0).addr])
    net.nodes[mid(1).addr] = stale  # an older process claims the address
    net.run(stale, stale.start(0.0), 0.0)
    assert stale.phase == JOIN_FAILED
    (failed,) = [e for a, e in net.other if isinstance(e, JoinFailed)]
    assert "newer than this process's 999" in failed.reason
    assert mid(1) in net.nodes[mid(0).addr].members()  # the list did not change


def test_join_with_a_newer_incarnation_replaces_the_old_one():
    net = cluster(3)
    newer = Detector(mid(1, inc=2000), S, random.Random(9), 0.0, [mid(0).addr])
    net.nodes[mid(1).addr] = newer
    net.run(newer, newer.start(0.5), 0.5)
    net.advance(0.5, 0.6)
    assert newer.phase == ALIVE
    ev = [(e.kind, e.member) for a, e in net.events if a == mid(0).addr][-2:]
    assert ev == [("failed", mid(1)), ("join", mid(1, 2000))]
    assert mid(1, 2000) in net.nodes[mid(2).addr].members()


def test_heartbeats_go_to_k_successors():
    net = cluster(6)
    d = net.nodes[mid(0).addr]
    net.sent.clear()
    net.run(d, d.on_timer(d.next_hb), d.next_hb)
    hb = [s.to for s in net.sent if isinstance(s.msg, Heartbeat) and s.msg.sender == d.me]
    assert hb == d.ring.successors(d.me.addr, 3) and len(hb) == 3
    for s in hb:
        assert d.me.addr in net.nodes[s].preds


def monitored(net, victim):
    return [a for a, n in net.nodes.items() if victim in n.preds]


def test_crash_is_suspected_probed_and_confirmed_within_the_bound():
    net = cluster(6)
    net.advance(0.5, 1.0)
    victim = mid(3).addr
    monitors = set(monitored(net, victim))
    assert len(monitors) == 3
    net.down.add(victim)
    net.sent.clear()
    first = everyone = None
    t = 1.0
    while t < 3.0 and everyone is None:
        t = round(t + 0.005, 6)
        net.advance(t, t)
        gone = [a for a in net.nodes if a != victim and victim not in net.live(a)]
        if gone and first is None:
            first = t - 1.0
        if len(gone) == 5:
            everyone = t - 1.0
    assert first is not None and first <= S.first_detection_bound_ms / 1000 + 0.01
    assert everyone is not None and everyone <= first + 0.1
    kinds = [e.kind for a, e in net.events if e.member.addr == victim]
    assert kinds.index("suspect") < kinds.index("failed")
    pings = [s for s in net.sent if isinstance(s.msg, Ping) and s.to == victim]
    reqs = [s for s in net.sent if isinstance(s.msg, PingReq) and s.msg.target.addr == victim]
    assert pings and reqs, "failure declared without a direct and an indirect probe"
    # only the victim's monitors probed it
    assert {s.msg.sender.addr for s in pings} - monitors <= {s.to for s in reqs}  # monitors or their helpers


def test_an_ack_clears_a_suspicion_and_the_suspect_refutes():
    net = cluster(5)
    victim = net.nodes[mid(2).addr]
    # silence the victim's heartbeats only (it still answers probes)
    for m in monitored(net, victim.me.addr):
        net.nodes[m].heard[victim.me.addr] = -10.0
    net.advance(0.5, 2.0)
    kinds = [e.kind for a, e in net.events if e.member.addr == victim.me.addr]
    assert "suspect" in kinds and "refute" in kinds and "failed" not in kinds
    assert victim.refute >= 1
    for a, n in net.nodes.items():
        rec = n.table.get(victim.me.addr)
        assert rec.status == Status.ALIVE and rec.update.refute == victim.refute, a


def test_refutation_raises_the_refute_counter():
    d = Detector(mid(0), S, random.Random(0), 0.0)
    d.start(0.0)
    out = d.on_message(Gossip(mid(1), (Update(mid(0), 0, Status.SUSPECT),)), 1.0)
    assert Event("refute", mid(0)) in out and d.refute == 1
    assert d.queue.pending() == [Update(mid(0), 1, Status.ALIVE)] or Update(mid(0), 1, Status.ALIVE) in d.queue.pending()
    # a stale suspicion (older refute) needs no refutation
    assert d.on_message(Gossip(mid(1), (Update(mid(0), 0, Status.SUSPECT),)), 1.1) == [] or d.refute == 1


def test_declared_failed_member_rejoins_as_a_new_incarnation():
    net = cluster(4)
    d = net.nodes[mid(1).addr]
    out = d.on_message(Gossip(mid(0), (Update(mid(1), 0, Status.FAILED),)), 2.0)
    assert Event("failed", mid(1)) in out
    assert d.phase == JOINING and d.me.incarnation > 1000 and d.me.addr == mid(1).addr
    assert d.me.incarnation >= 1000 + 2000  # base incarnation + milliseconds since start
    net.run(d, out, 2.0)
    net.advance(2.0, 2.1)
    assert d.phase == ALIVE
    for a, n in net.nodes.items():
        assert d.me in n.members(), a
        assert mid(1) not in n.members(), a


def test_pause_past_the_timeout_rejoins_when_told_not_before():
    net = cluster(4)
    d = net.nodes[mid(2).addr]
    t = 0.5 + (S.suspect_after_ms + S.confirm_timeout_ms) / 1000 + 0.2
    out = d.on_timer(t)
    assert d.counters["pauses_detected"] == 1 and d.phase == ALIVE and not d.probes
    # a survivor that declared it failed answers its next heartbeat with a notice
    other = net.nodes[mid(0).addr]
    other.on_message(Gossip(mid(1), (Update(mid(2), 0, Status.FAILED),)), t)
    (notice,) = [s for s in other.on_message(Heartbeat(mid(2)), t) if s.to == mid(2).addr]
    out = d.on_message(notice.msg, t)
    assert Event("failed", mid(2)) in out and d.phase == JOINING and d.me.incarnation > mid(2).incarnation


def test_short_stall_gives_grace_instead_of_suspicion():
    net = cluster(4)
    d = net.nodes[mid(2).addr]
    out = d.on_timer(0.5 + S.suspect_after_ms / 1000 + 0.05)
    assert d.phase == ALIVE and not d.probes
    assert not [e for e in out if isinstance(e, Event) and e.kind == "suspect"]


def test_leave_is_announced_and_needs_no_timeout():
    net = cluster(5)
    d = net.nodes[mid(4).addr]
    net.advance(0.5, 1.0)
    net.run(d, d.leave(1.0), 1.0)
    assert d.phase == "leaving"
    for a, n in net.nodes.items():
        if a != d.me.addr:
            assert d.me not in n.members(), a
            assert ("leave" in [e.kind for b, e in net.events if b == a and e.member == d.me])
    net.advance(1.0, 1.0 + S.leave_linger_ms / 1000 + 0.05)
    assert d.phase == STOPPED and (d.me.addr, Stopped()) in net.other
    assert not [e for a, e in net.events if e.kind == "failed"]


def test_tombstoned_member_that_still_talks_is_told():
    net = cluster(3)
    a = net.nodes[mid(0).addr]
    a.on_message(Gossip(mid(2), (Update(mid(1), 0, Status.FAILED),)), 1.0)
    out = a.on_message(Heartbeat(mid(1)), 1.1)
    assert Send(mid(1).addr, Gossip(mid(0), (Update(mid(1), 0, Status.FAILED),))) in out


def test_unknown_sender_is_learned():
    d = Detector(mid(0), S, random.Random(0), 0.0)
    d.start(0.0)
    out = d.on_message(Heartbeat(mid(5)), 1.0)
    assert Event("join", mid(5)) in out and mid(5) in d.members()


def test_anti_entropy_repairs_a_missed_update():
    net = cluster(3)
    a, b = net.nodes[mid(0).addr], net.nodes[mid(1).addr]
    a.on_message(Gossip(mid(2), (Update(mid(9), 0, Status.ALIVE),)), 0.1)  # only a heard of 9
    assert mid(9) in a.members() and mid(9) not in b.members()
    now = 5.0
    out = b.on_message(a._digest(now, reply=True), now)
    states = [s for s in out if isinstance(s.msg, State)]
    assert states and isinstance(out[-1].msg, Digest)
    for s in out:
        a.on_message(s.msg, now)
    back = a.on_message(out[-1].msg, now)
    for s in back:
        b.on_message(s.msg, now)
    assert mid(9) in b.members() and a.table.digest == b.table.digest


def test_digests_are_not_compared_while_news_is_spreading():
    net = cluster(3)
    a, b = net.nodes[mid(0).addr], net.nodes[mid(1).addr]
    a.on_message(Gossip(mid(2), (Update(mid(9), 0, Status.ALIVE),)), 0.1)
    assert b.on_message(a._digest(0.2, reply=True), 0.2) == []


def test_ping_is_acked_and_pingreq_relayed():
    net = cluster(3)
    a, b, c = (net.nodes[mid(i).addr] for i in range(3))
    out = b.on_message(Ping(mid(0), 77, mid(1)), 1.0)
    assert [(s.to, type(s.msg), s.msg.seq) for s in out] == [(mid(0).addr, Ack, 77)]
    out = b.on_message(PingReq(mid(0), 78, mid(2)), 1.0)
    (ping,) = out
    assert ping.to == mid(2).addr and isinstance(ping.msg, Ping)
    (ack,) = c.on_message(ping.msg, 1.0)
    (relayed,) = [s for s in b.on_message(ack.msg, 1.0) if isinstance(s.msg, Ack)]
    assert relayed.to == mid(0).addr and relayed.msg.seq == 78 and relayed.msg.target == mid(2)


def test_settings_reject_nonsense():
    with pytest.raises(ConfigError):
        Settings(heartbeat_interval_ms=0)
    with pytest.raises(ConfigError):
        Settings(heartbeat_interval_ms=300, suspect_after_ms=500)
    assert Settings().first_detection_bound_ms <= 1000
    assert Settings().dissemination_bound_ms(5000) <= 1000


def test_messages_during_join_are_ignored_and_refusal_is_reported():
    d = Detector(mid(3), S, random.Random(0), 0.0, [mid(0).addr])
    d.start(0.0)
    assert d.on_message(Heartbeat(mid(0)), 0.1) == []
    out = d.on_message(JoinRefused(mid(0), "nope"), 0.2)
    assert d.phase == JOIN_FAILED and "nope" in out[0].reason


def test_a_lone_member_that_was_paused_carries_on():
    d = Detector(mid(0), S, random.Random(0), 0.0)
    d.start(0.0)
    d.on_timer(5.0)
    assert d.phase == ALIVE and d.me == mid(0) and d.members() == [mid(0)]
    assert d.counters["pauses_detected"] == 1


def test_a_forged_join_costs_one_ping_to_the_named_address_and_admits_nobody():
    """A Join names an address that never sent it: the introducer pings that address once
    (no list, no gossip about it) and forgets it when no Ack comes."""
    net = Net()
    a = net.add(1)
    victim = mid(9)
    net.sent.clear()
    net.run(a, a.on_message(Join(victim), 0.1), 0.1)
    to_victim = [s for s in net.sent if s.to == victim.addr]
    assert [type(s.msg) for s in to_victim] == [Ping]
    assert victim.addr not in a.table.records
    net.advance(0.1, 0.1 + S.join_timeout_ms / 1000 + 0.2)
    assert victim.addr not in a.table.records
    assert a.counters["joins_unverified"] == 1
    assert not [s for s in net.sent if s.to == victim.addr and not isinstance(s.msg, Ping)]


def test_a_join_is_admitted_once_the_named_address_acks_the_check():
    net = Net()
    a = net.add(1)
    b = net.add(2, 0.0, introducers=(a.me.addr,))
    assert b.phase == ALIVE and b.me.addr in a.table.records
    pings = [s for s in net.sent if s.to == b.me.addr and isinstance(s.msg, Ping)]
    acks = [s for s in net.sent if s.to == a.me.addr and isinstance(s.msg, Ack) and s.msg.target == b.me]
    assert len(pings) == 1 and len(acks) == 1 and acks[0].msg.seq == pings[0].msg.seq
    assert not a.join_checks


def test_joins_are_rate_limited():
    from catena.membership.detector import JOIN_BURST, MAX_JOIN_CHECKS

    net = Net()
    a = net.add(1)
    net.sent.clear()
    flood = [MemberId("127.0.0.2", 1 + i, 1) for i in range(2 * max(JOIN_BURST, MAX_JOIN_CHECKS))]
    for j in flood:
        net.run(a, a.on_message(Join(j), 0.5), 0.5)
    pings = [s for s in net.sent if isinstance(s.msg, Ping)]
    assert len(pings) == min(JOIN_BURST, MAX_JOIN_CHECKS)
    assert a.counters["joins_rate_limited"] == len(flood) - len(pings)
    assert len(a.join_checks) <= MAX_JOIN_CHECKS
