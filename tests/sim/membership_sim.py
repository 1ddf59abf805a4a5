"""Deterministic simulator for the membership machine: virtual clock, seeded network, faults.

Everything -- loss, delays, which nodes crash, gossip targets -- derives from one seed, so a run
replays exactly from it. Time, the event queue and who reaches whom are the shared simulation
kernel's (kernel.py); each node keeps a single armed timer (stale timer events are skipped by
generation number), so the cost is O(log E) per datagram or timer and 1,000 nodes run at
several virtual seconds per real second. Messages travel as objects (`measure_bytes=True` also encodes each one with the
real wire codec to count bytes).

Faults: `crash` (crash-stop: the node stops, its datagrams are lost), `restart` (a new process
at the same address with a larger incarnation joins through live introducers), `pause` (the
node freezes: timers stop, datagrams queue as in a socket buffer, and are handed over on
resume), `isolate` (the node runs but nothing reaches it or leaves it), `leave`, plus network
`loss` and uniform `delay`.

Checkers: first-detection and all-lists latencies per crash, false removals (a member declared
failed while it had been able to talk for the whole detection window), convergence of every
list to the set of running processes.
"""

from __future__ import annotations

import random
import sys
from dataclasses import dataclass, field
from pathlib import Path

from catena.membership import wire
from catena.membership.detector import ALIVE, Detector
from catena.membership.effects import Event, JoinFailed, Send, Stopped
from catena.membership.messages import LAST_LIVE, MemberId, Status
from catena.membership.ring import Ring
from catena.membership.settings import Settings

sys.path.insert(0, str(Path(__file__).parent))

from kernel import Kernel, Partitions, never  # noqa: E402 (tests/sim is not a package)

INF = float("inf")
EPOCH_MS = 1_700_000_000_000  # virtual wall clock at t=0, for incarnations


@dataclass(slots=True)
class SimNode:
    addr: str
    machine: Detector
    up: bool = True
    paused: bool = False
    buffer: list = field(default_factory=list)
    timer_at: float = INF
    gen: int = 0
    available_since: float = 0.0  # last time it started or resumed (false-removal excuse window)
    sent: int = 0
    sent_bytes: int = 0


@dataclass
class Crash:
    member: MemberId
    at: float
    watchers: set  # observer addrs that listed it live at the crash
    first: float = INF  # first removal anywhere, seconds after the crash
    removed_at: dict = field(default_factory=dict)  # observer addr -> seconds after crash


class Sim(Kernel):
    def __init__(self, n: int, seed: int, settings: Settings | None = None, loss: float = 0.0,
                 delay: tuple[float, float] = (0.0005, 0.020), measure_bytes: bool = False,
                 secret: bytes | None = b"sim-secret", bootstrap: bool = True, join_spacing: float = 0.02):
        super().__init__(seed)
        self.seed = seed
        self.s = settings or Settings()
        self.loss = loss
        self.delay = delay
        self.measure_bytes = measure_bytes
        self.secret = secret
        self.nodes: dict[str, SimNode] = {}
        self.crashes: dict[MemberId, Crash] = {}
        self.news: dict[MemberId, Crash] = {}  # joins and leaves being timed (same bookkeeping)
        self.false_removals: list[tuple[float, str, MemberId]] = []
        self.join_failures: list[tuple[float, str, str]] = []
        self.delivered = 0
        self.net = Partitions()  # nodes cut off from everyone (both directions): `isolate`
        addrs = [f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}:7946" for i in range(1, n + 1)]
        members = [self._id(a, 0.0) for a in addrs]
        if not bootstrap:
            # Grow the cluster through introducers: the first node starts alone, node i joins at
            # i * join_spacing through the first node and two random earlier ones.
            for i, m in enumerate(members):
                intro = [] if i == 0 else list(dict.fromkeys([addrs[0]] + self.rng.sample(addrs[:i], min(2, i))))
                mach = Detector(m, self.s, random.Random(self.rng.getrandbits(64)), 0.0, intro)
                node = SimNode(m.addr, mach, up=False)
                self.nodes[m.addr] = node
                self.at(i * join_spacing, lambda node=node: self._start(node))
            return
        template = None
        for m in members:
            mach = Detector(m, self.s, random.Random(self.rng.getrandbits(64)), 0.0)
            mach.bootstrap(members, 0.0, template)
            template = template or mach
            node = SimNode(m.addr, mach)
            # spread the first ticks over one interval so nodes are not in lock-step
            mach.next_hb = self.rng.uniform(0, self.s.heartbeat_interval_ms / 1000)
            self.nodes[m.addr] = node
            self._arm(node)

    # -- plumbing ---------------------------------------------------------------------------

    @staticmethod
    def _id(addr: str, now: float) -> MemberId:
        host, port = addr.rsplit(":", 1)
        return MemberId(host, int(port), EPOCH_MS + int(now * 1000))

    def _arm(self, node: SimNode) -> None:
        d = node.machine.next_deadline()
        if d < node.timer_at:
            node.timer_at = d
            node.gen += 1
            self.at(d if d > self.now else self.now, self._timer, node.addr, node.gen)

    @property
    def events(self) -> int:
        return self.ran

    def run_until(self, t_end: float) -> None:  # noqa: D102 (all events up to t_end)
        super().run_until(never, t_end)

    def _timer(self, addr: str, gen: int) -> None:
        node = self.nodes.get(addr)
        if node is None or not node.up or gen != node.gen or node.paused:
            return
        node.timer_at = INF
        effects = node.machine.on_timer(self.now)
        if effects:
            self._apply(node, effects)
        self._arm(node)

    def _deliver(self, addr: str, msg) -> None:
        node = self.nodes.get(addr)
        if node is None or not node.up or addr in self.net.isolated:
            return
        if node.paused:
            node.buffer.append(msg)
            return
        self.delivered += 1
        effects = node.machine.on_message(msg, self.now)
        if effects:
            self._apply(node, effects)
        self._arm(node)

    def _apply(self, node: SimNode, effects: list) -> None:
        rng = self.rng
        now = self.now
        lo, hi = self.delay
        for e in effects:
            t = type(e)
            if t is Send:
                node.sent += 1
                if self.measure_bytes:
                    node.sent_bytes += len(wire.encode(e.msg, node.sent, self.secret, self.s.max_datagram))
                if self.loss and rng.random() < self.loss:
                    continue
                if not self.net.reachable(node.addr, e.to):
                    continue
                self.at(now + lo + (hi - lo) * rng.random(), self._deliver, e.to, e.msg)
            elif t is Event:
                if e.kind == "failed" or e.kind == "leave":
                    self._removed(node, e)
                if e.kind != "failed" and e.member in self.news:
                    c = self.news[e.member]
                    c.first = min(c.first, now - c.at)
                    c.removed_at.setdefault(node.addr, now - c.at)
            elif t is Stopped:
                node.up = False
            elif t is JoinFailed:
                self.join_failures.append((now, node.addr, e.reason))

    def _removed(self, observer: SimNode, e: Event) -> None:
        m = e.member
        c = self.crashes.get(m)
        if c is not None:
            dt = self.now - c.at
            c.first = min(c.first, dt)
            c.removed_at.setdefault(observer.addr, dt)
        if e.kind != "failed" or m.addr == observer.addr:
            return
        target = self.nodes.get(m.addr)
        if target is None or not target.up or target.paused or target.machine.me != m:
            return
        if target.machine.phase != ALIVE:
            return
        window = (self.s.suspect_after_ms + self.s.confirm_timeout_ms + self.s.heartbeat_interval_ms) / 1000 + 2 * self.delay[1]
        if self.now - target.available_since >= window:
            self.false_removals.append((self.now, observer.addr, m))

    # -- faults -----------------------------------------------------------------------------

    def live_nodes(self) -> list[SimNode]:
        return [n for n in self.nodes.values() if n.up and not n.paused and n.machine.phase == ALIVE]

    def crash(self, addr: str) -> None:
        node = self.nodes[addr]
        m = node.machine.me
        node.up = False
        watchers = {o.addr for o in self.live_nodes() if self._lists(o, m)}
        self.crashes[m] = Crash(m, self.now, watchers)

    @staticmethod
    def _lists(o: SimNode, m: MemberId) -> bool:
        r = o.machine.table.records.get(m.addr)
        return r is not None and r.member == m and r.update.status <= LAST_LIVE

    def restart(self, addr: str) -> None:
        old = self.nodes[addr]
        assert not old.up, "restart only a stopped node"
        me = self._id(addr, self.now)
        intro = [n.addr for n in self.rng.sample(self.live_nodes(), 3)]
        mach = Detector(me, self.s, random.Random(self.rng.getrandbits(64)), self.now, intro)
        node = SimNode(addr, mach, available_since=self.now, gen=old.gen + 1)
        self.news[me] = Crash(me, self.now, {n.addr for n in self.live_nodes()})
        self.nodes[addr] = node
        self._apply(node, mach.start(self.now))
        self._arm(node)

    def _start(self, node: SimNode) -> None:
        node.up = True
        node.available_since = self.now
        node.machine.started = node.machine.last_tick = self.now
        self._apply(node, node.machine.start(self.now))
        self._arm(node)

    def pause(self, addr: str, duration: float) -> None:
        node = self.nodes[addr]
        node.paused = True

        def resume():
            node.paused = False
            node.available_since = self.now
            buffered, node.buffer = node.buffer, []
            for msg in buffered:
                if not node.up:
                    break
                self._apply(node, node.machine.on_message(msg, self.now))
            node.timer_at = INF
            self._arm(node)

        self.at(self.now + duration, resume)

    def isolate(self, addr: str, duration: float) -> None:
        """Cut `addr` off from everyone (it keeps running) for `duration` seconds."""
        self.net.isolate(addr)

        def heal():
            self.net.rejoin(addr)
            self.nodes[addr].available_since = self.now

        self.at(self.now + duration, heal)

    def leave(self, addr: str) -> None:
        node = self.nodes[addr]
        m = node.machine.me
        self.news[m] = Crash(m, self.now, {o.addr for o in self.live_nodes() if o.addr != addr and self._lists(o, m)})
        self._apply(node, node.machine.leave(self.now))
        self._arm(node)

    def ring_neighbours(self, count: int) -> list[str]:
        """`count` consecutive live members on the ring (the worst case for a crash burst)."""
        ring = Ring(n.addr for n in self.live_nodes())
        start = self.rng.randrange(len(ring))
        return [ring.at((start + i) % len(ring)) for i in range(count)]

    # -- checks -----------------------------------------------------------------------------

    def divergence(self) -> list[str]:
        """Lists that differ from the set of running members (empty when converged)."""
        live = {n.machine.me for n in self.live_nodes()}
        bad = []
        for n in self.live_nodes():
            mine = {r.member for r in n.machine.table.records.values() if r.update.status <= LAST_LIVE}
            suspects = [r.member for r in n.machine.table.records.values() if r.update.status == Status.SUSPECT]
            if mine != live or suspects:
                bad.append(f"{n.machine.me}: missing {sorted(map(str, live - mine))[:3]} "
                           f"extra {sorted(map(str, mine - live))[:3]} suspects {[str(s) for s in suspects[:3]]}")
        return bad

    def all_lists_latency(self, c: Crash, stable: set) -> float:
        """Seconds until every watcher that stayed running dropped the crashed member."""
        worst = 0.0
        for o in c.watchers & stable:
            worst = max(worst, c.removed_at.get(o, INF))
        return worst


@dataclass
class Report:
    seed: int
    n: int
    loss: float
    first: list[float]
    all_lists: list[float]
    false_removals: list
    divergence: list[str]
    refuted: bool
    paused_rejoined: bool
    restart_rejoined: bool
    news_all_lists: list[float]  # a join or leave reaching every stable list, seconds
    join_failures: list
    bytes_per_node_s: float
    msgs_per_node_s: float
    events: int

    def failures(self, first_bound: float = 2.0, all_bound: float = 6.0) -> list[str]:
        out = []
        if not self.first or max(self.first) > first_bound:
            out.append(f"first detection {self.first} exceeds {first_bound} s")
        if not self.all_lists or max(self.all_lists) > all_bound:
            out.append(f"all-lists {self.all_lists} exceeds {all_bound} s")
        if not self.news_all_lists or max(self.news_all_lists) > all_bound:
            out.append(f"a join or leave took {self.news_all_lists} s to reach every list (bound {all_bound} s)")
        if self.false_removals:
            out.append(f"false removals: {self.false_removals[:5]}")
        if self.divergence:
            out.append(f"{len(self.divergence)} lists did not converge, e.g. {self.divergence[:3]}")
        if not self.refuted:
            out.append("the briefly paused member did not refute its suspicion (or was removed)")
        if not self.paused_rejoined:
            out.append("the member paused past the timeout did not come back as a new incarnation")
        if not self.restart_rejoined:
            out.append("the restarted member is not listed under its new incarnation")
        if self.join_failures:
            out.append(f"join failures: {self.join_failures[:3]}")
        return out


def run_scenario(n: int, seed: int, loss: float = 0.05, settings: Settings | None = None,
                 measure_bytes: bool = False, bursts: int = 2) -> Report:
    """The standard story: crash bursts of 3 (the first one ring-adjacent), leaves, a pause past
    the timeout, a short pause that must be refuted, a restart; faults on, then a quiet phase in
    which every list must converge. Crash bursts are 20 s apart."""
    s = settings or Settings()
    sim = Sim(n, seed, s, loss=loss, measure_bytes=measure_bytes)
    rng = random.Random(seed ^ 0x5EED)
    t_fault_end = max(3.0 + 20.0 * (bursts - 1), 11.0) + 4.0
    burst_times = [3.0 + 20.0 * b for b in range(bursts)]
    crashed: list[str] = []
    stable_excluded: set[str] = set()
    story: dict = {}

    def burst(first: bool):
        victims = sim.ring_neighbours(3) if first else others(3)
        for v in victims:
            sim.crash(v)
            crashed.append(v)

    def others(k: int) -> list[str]:
        pool = [x.addr for x in sim.live_nodes() if x.addr not in stable_excluded]
        return rng.sample(pool, k)

    for i, t in enumerate(burst_times):
        sim.at(t, lambda first=(i == 0): burst(first))

    small = n < 12

    def leaves():
        for a in others(1 if small else 2):
            stable_excluded.add(a)
            sim.leave(a)

    def long_pause():
        (a,) = others(1)
        stable_excluded.add(a)
        story["paused"] = sim.nodes[a].machine.me
        sim.pause(a, (s.suspect_after_ms + s.confirm_timeout_ms) / 1000 + 1.2)

    def short_pause():
        (a,) = others(1)
        stable_excluded.add(a)
        story["short"] = sim.nodes[a].machine.me
        story["short_refutations"] = sim.nodes[a].machine.counters["refutations"]
        # long enough to be suspected (silence > suspect_after), short enough that the probes are
        # still open when it resumes (suspect_after + confirm), even if its last heartbeats before
        # the pause were lost
        sim.pause(a, (s.suspect_after_ms + s.confirm_timeout_ms / 6) / 1000)

    def restart():
        a = crashed[0]
        stable_excluded.add(a)
        story["restarted"] = a
        sim.restart(a)

    sim.at(5.0, leaves)
    sim.at(6.0, long_pause)
    sim.at(9.0, short_pause)
    sim.at(11.0, restart)

    def quiet():
        sim.loss = 0.0

    sim.at(t_fault_end, quiet)
    t_end = t_fault_end + 5.0
    sim.run_until(t_end)

    stable = {a for a, x in sim.nodes.items() if x.up and a not in stable_excluded and a not in crashed}
    first = [c.first for c in sim.crashes.values()]
    all_lists = [sim.all_lists_latency(c, stable) for c in sim.crashes.values()]
    short = story.get("short")
    short_node = sim.nodes[short.addr] if short else None
    refuted = bool(short_node and short_node.machine.me == short
                   and short_node.machine.counters["refutations"] > story["short_refutations"])
    paused = story.get("paused")
    pnode = sim.nodes[paused.addr] if paused else None
    live_ids = {x.machine.me for x in sim.live_nodes()}
    paused_rejoined = bool(pnode and pnode.machine.me.incarnation > paused.incarnation and pnode.machine.me in live_ids)
    r = story.get("restarted")
    restart_rejoined = bool(r and sim.nodes[r].machine.me in live_ids)
    span = t_end
    count = max(1, len(sim.nodes))
    return Report(
        seed=seed, n=n, loss=loss, first=first, all_lists=all_lists,
        false_removals=sim.false_removals, divergence=sim.divergence(), refuted=refuted,
        paused_rejoined=paused_rejoined, restart_rejoined=restart_rejoined,
        news_all_lists=[sim.all_lists_latency(c, stable) for c in sim.news.values()],
        join_failures=sim.join_failures,
        bytes_per_node_s=sum(x.sent_bytes for x in sim.nodes.values()) / count / span,
        msgs_per_node_s=sum(x.sent for x in sim.nodes.values()) / count / span,
        events=sim.events,
    )
