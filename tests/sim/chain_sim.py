"""Seeded discrete-event simulation of one chain: `Replica` machines, a `Reconfig` coordinator,
a TCP-like network and clients that record a history for the linearizability checker.

One seed drives everything (delays, faults, client choices, reconfigurations), so a failing run
replays exactly: `python tests/sim/chain_sim.py --seed N` (or `CATENA_SIM_SEED=N pytest
tests/sim`). The messages travel through the real wire codec (`messages.pack` / `decode`).

The network has one connection per directed pair of members, FIFO like TCP. Faults model what
real TCP does: a connection is cut (frames still queued are lost, except a prefix that already
reached the receiver's socket and may be processed late, after frames of the next connection),
the sender is told `on_link(peer, False)`, frames it sends while reconnecting are lost with an
attempt that fails (and the sender is told `on_link(peer, False)` again), the rest go out before
`on_link(peer, True)`; a link can also be slow for a while.
The machines' own resends after a reconnect are the duplicates.

Members execute their effects in order after every input and `flush()` once per simulated event
loop turn. Persist effects go to a per-member durable log, so a crashed member can be restarted
from it (and re-added, which exercises truncation to the chain's history and snapshot transfer).

The coordinator model is `Reconfig` itself: planned adds (learner, then promoted when the tail
reports `learner_caught_up()`), removes of head / middle / tail / learner (one or two at once),
and re-adds of removed members; views are pushed to every member concerned, each with its own
delay, so members learn them in any order; `FetchView` is answered with the current view.

Checks after every input of a member (DESIGN.md section 3): committed entries never change and
agree between members (nothing acknowledged is lost or rewritten); a member of the current view
that serves reads holds every acknowledged write; epochs never go back and a message of an older
epoch changes nothing; a request id is applied at most once. Every few steps, for each pair of
neighbours in the current view whose link is quiet, the successor's history is its predecessor's
minus its sent list. After the run (a safety phase with faults, then a quiet liveness phase):
every member of the final view holds the same history and state, every client operation ended,
the history is linearizable per key (string keys as registers; the typed keys of `TYPED`, a
quarter of the operations, with `CommandModel`), INCR counters were not double counted. And a write gets
its seq no later than `write_timeout` after the client's send that carried it (a forwarded
write's deadline; members share the virtual wall clock).
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import itertools
import sys
from dataclasses import dataclass, field
from pathlib import Path

from catena.chain import messages, ops
from catena.chain.messages import Append, Snapshot
from catena.chain.replica import REQ, WRITE_TIMEOUT_S, Replica
from catena.chain.state import SET, KVState
from catena.check import CommandModel, History, check
from catena.coordinator.reconfig import CoordinatorState, Reconfig
from catena.effects import FetchView, LearnerCaughtUp, Persist, PersistSnapshot, Reply, Send
from catena.resp.codec import Error

sys.path.insert(0, str(Path(__file__).parent))

from kernel import Kernel, Partitions  # noqa: E402 (tests/sim is not a package)

T0 = 1000.0  # virtual wall clock at the start (seconds)


# Typed keys, one per type, checked with CommandModel: key -> (the commands clients send, as
# (name, args after the key) with F a field, M a member and V a fresh value; the final read).
F, M, V = b"<F>", b"<M>", b"<V>"
TYPED = {
    b"h:0": ([(b"HSET", (F, V)), (b"HDEL", (F,)), (b"HGET", (F,)), (b"HGETALL", ()), (b"HINCRBY", (F, b"3"))],
             (b"HGETALL",)),
    b"l:0": ([(b"RPUSH", (V,)), (b"LPUSH", (V,)), (b"LPOP", ()), (b"LRANGE", (b"0", b"-1")), (b"LLEN", ())],
             (b"LRANGE", b"0", b"-1")),
    b"s:0": ([(b"SADD", (M,)), (b"SREM", (M,)), (b"SISMEMBER", (M,)), (b"SCARD", ()), (b"SMEMBERS", ())],
             (b"SMEMBERS",)),
    b"z:0": ([(b"ZADD", (V, M)), (b"ZINCRBY", (b"2", M)), (b"ZREM", (M,)), (b"ZSCORE", (M,)),
              (b"ZRANGE", (b"0", b"-1", b"WITHSCORES"))], (b"ZRANGE", b"0", b"-1", b"WITHSCORES")),
    b"a:0": ([(b"APPEND", (V,)), (b"GETRANGE", (b"1", b"4")), (b"STRLEN", ()), (b"GETDEL", ()), (b"GET", ())],
             (b"GET",)),
}


class SimFailure(AssertionError):
    pass


@dataclass
class SimConfig:
    seed: int
    members: int = 3  # founding members
    max_members: int = 5
    clients: int = 4
    keys: int = 3  # keys for get/set/incr/del
    counters: int = 1  # keys only incremented (checked against the number of INCRs)
    typed: float = 0.25  # share of operations on typed keys (TYPED), checked with CommandModel
    duration: float = 3.0  # virtual seconds of the safety phase
    settle: float = 30.0  # at most this long for the liveness phase
    reconfigs: float = 1.5  # planned reconfigurations per virtual second
    cuts: float = 3.0  # link cuts per virtual second
    slow: float = 0.5  # slow-link periods per virtual second
    live_remove: float = 0.3  # chance that a removed member keeps running (else it was stopped)
    # A running member that is removed learns its view before the others do (as a coordinator
    # that pushes to it first and waits for its answer). False: in any order, as for the rest;
    # the removed member then serves stale reads until it learns (see the report in the scenarios).
    removed_first: bool = True
    lost_reply: float = 0.02  # a client's connection drops before the reply arrives
    stale_client: float = 0.1  # a client routes with an older view
    rid: float = 0.5  # writes sent as CATENA.REQ with a request id
    think: tuple = (0.005, 0.03)  # client pause between operations
    client_timeout: float = 2.0
    write_timeout: float = WRITE_TIMEOUT_S  # the deadline members give the writes they forward
    pair_check_every: int = 25  # events between checks of neighbour pairs
    # Scripted steps, (seconds into the safety phase, action, *args): ("add",),
    # ("remove", who, running), ("cut", who, who, seconds); `who` is a role in the current view
    # ("head", "middle", "tail", "learner") or a member name.
    script: tuple = ()
    trace: bool = False


@dataclass
class Member:
    name: str
    replica: Replica
    alive: bool = True
    incarnation: int = 1
    hist: list = field(default_factory=list)  # the applied history, entry i has seq i + 1
    log: list = field(default_factory=list)  # durable entries after the durable snapshot
    snap: tuple | None = None  # (snapshot_blob, history it covers)
    saved_epoch: int = 0
    flush_at: float | None = None
    commit_seen: int = 0
    epoch_seen: int = 0
    verified: int = 0  # hist[:verified] checked against the committed log
    wall_step: float = 0.0  # how far this process's wall clock was stepped (ahead > 0, back < 0)


@dataclass
class Frame:
    fid: int
    src: str
    dst: str
    conn: int
    data: bytes
    snap_hist: list | None = None  # side channel for the checker: the history a Snapshot carries


@dataclass
class Link:
    conn: int = 0
    up: bool = True
    last_at: float = 0.0
    pending: list = field(default_factory=list)  # sent while reconnecting
    inflight: dict = field(default_factory=dict)  # fid -> Frame on the current connection
    slow_until: float = 0.0
    down_told: bool = True  # the sender was told of the last break (before any reconnect)


@dataclass
class ClientOp:
    op_id: int
    kind: str
    key: bytes
    args: list
    rid: tuple | None
    is_write: bool
    attempt: int = 0
    tries: int = 0


@dataclass
class Client:
    idx: int
    cid: bytes
    reqs: int = 0
    attempts: int = 0  # every attempt of every operation has its own token
    op: ClientOp | None = None
    done: bool = False
    ops: int = 0


def entry_sigs(entry) -> list:
    """What identifies a client's write in an entry: its request id, and a SET by its value."""
    _, _, _, rid, op = entry
    sigs = []
    if rid is not None:
        sigs.append(("rid", rid[0], rid[1]))
    if op[0] == SET:
        sigs.append(("set", op[1], op[2]))
    return sigs


class ChainSim(Kernel):
    managed = False  # members started with a coordinator (reads wait for its first probe's lease)

    def __init__(self, cfg: SimConfig):
        super().__init__(cfg.seed, T0)
        self.net = Partitions()
        self.cfg = cfg
        self.events = 0
        self.members: dict[str, Member] = {}
        self.links: dict[tuple[str, str], Link] = {}
        self.fids = 0
        self.frames: dict[int, Frame] = {}
        self.reconfig = Reconfig(CoordinatorState())
        self.views = []  # every view the coordinator made, in order
        self.history = History()
        self.clients: list[Client] = []
        self.committed: list = []  # the chain's committed history, entry i has seq i + 1
        self.sig_seq: dict = {}  # signature of a committed client write -> seq
        self.sends: dict = collections.defaultdict(list)  # signature of a client write -> its send times
        self.acked_max = 0  # highest seq of an acknowledged write
        self.acked: list = []  # (seq, entry) of acknowledged writes we could identify
        self.incr_issued: dict[bytes, int] = {}
        self.incr_acked: dict[bytes, int] = {}
        self.faults = True
        self.ended = False
        self.names = 0
        self.trace: list[str] = []
        self.values = 0
        self._snap_hist = None
        self.check_result = None
        self.stats: collections.Counter = collections.Counter()  # what the run exercised
        self.lease_s: float | None = None  # read leases of the members' machines (None: off)

    # -- scheduling -------------------------------------------------------------------------------

    def log(self, text: str) -> None:
        if self.cfg.trace:
            print(f"{self.now - T0:9.5f} {text}")
        self.trace.append(f"{self.now - T0:9.5f} {text}")
        if len(self.trace) > 400:
            del self.trace[:200]

    def fail(self, text: str) -> None:
        tail = "\n".join(self.trace[-40:])
        raise SimFailure(f"seed={self.cfg.seed}: {text}\n"
                         f"replay: python tests/sim/chain_sim.py --seed {self.cfg.seed} --trace\n"
                         f"last events:\n{tail}")

    # -- members ----------------------------------------------------------------------------------

    def new_member(self) -> Member:
        self.names += 1
        name = f"m{self.names}"
        m = Member(name, Replica(name, b"%s/1" % name.encode(), lease_s=self.lease_s, managed=self.managed))
        m.replica.write_timeout_s = self.cfg.write_timeout
        self.members[name] = m
        self.at(self.now + self.rng.uniform(0, 0.1), self.tick, name, 1)
        return m

    def restart(self, m: Member) -> None:
        """A crashed member starts again from its durable snapshot and log."""
        m.incarnation += 1
        if m.snap is None:
            state, last, hist = KVState(), (0, 0), []
        else:
            (le, ls, blob), hist = m.snap
            state, last, hist = KVState.load(blob), (le, ls), list(hist)
        m.replica = Replica(m.name, b"%s/%d" % (m.name.encode(), m.incarnation), state, last,
                            list(m.log), epoch=m.saved_epoch, lease_s=self.lease_s, managed=self.managed)
        m.replica.write_timeout_s = self.cfg.write_timeout
        for entry in m.log:
            if entry[1] == len(hist) + 1:
                hist.append(entry)
            elif entry[1] > len(hist) + 1 or hist[entry[1] - 1] != entry:
                self.fail(f"{m.name}: durable log entry {entry[:2]} does not follow its history")
        m.hist = hist
        replay = KVState()
        for _, _, ts, rid, op in hist:
            replay.apply(op, ts)
        if replay.data != m.replica.state.data:
            self.fail(f"{m.name} restarted with data that its history does not give")
        m.alive, m.flush_at, m.commit_seen, m.verified = True, None, 0, 0
        m.epoch_seen = m.saved_epoch
        self.stats["restart"] += 1
        self.log(f"{m.name} restarts at {last} + {len(m.log)} log entries, epoch {m.saved_epoch}")
        self.sync_hist(m)
        for (src, dst), link in self.links.items():
            if src == m.name:
                link.up, link.pending, link.down_told = False, [], True
                link.conn += 1
                self.schedule_reconnect(src, dst, None)
        self.at(self.now + self.rng.uniform(0, 0.1), self.tick, m.name, m.incarnation)

    def crash(self, m: Member) -> None:
        m.alive = False
        self.log(f"{m.name} stops")
        for (src, dst) in self.links:
            if dst == m.name or src == m.name:
                self.cut_link(src, dst, down_for=None)

    def wall(self, m: Member) -> float:
        """`m`'s wall clock (time.time()): virtual time, stepped as a clock-step fault left it."""
        return self.now + m.wall_step

    def mono(self, m: Member) -> float:
        """`m`'s monotonic clock (read leases run on it): virtual time, never stepped."""
        return self.now

    def deliver_input(self, m: Member, fn, *args):
        """Give `m` one input, execute its effects, schedule its flush and check invariants."""
        replica = m.replica
        fx = fn(*args)
        self.sync_hist(m, fx)
        self.execute(m, fx)
        if m.flush_at is None:
            m.flush_at = self.now + self.rng.choice((0.0, 0.0, 0.00005, 0.0002, 0.001))
            self.at(m.flush_at, self.flush, m.name, m.incarnation)
        self.check_member(m)
        assert replica is m.replica

    def flush(self, name: str, inc: int) -> None:
        m = self.members[name]
        if not m.alive or m.incarnation != inc:
            return
        m.flush_at = None
        fx = m.replica.flush()
        self.sync_hist(m, fx)
        self.execute(m, fx)
        self.check_member(m)

    def tick(self, name: str, inc: int) -> None:
        m = self.members[name]
        if not m.alive or m.incarnation != inc:
            return
        self.deliver_input(m, m.replica.on_timer, self.wall(m))
        if self.rng.random() < 0.05:
            # The shell snapshots between a turn's inputs and its flush (like MemberNode's ticker).
            self.persist_snapshot(m)
        self.after(0.1 + self.rng.uniform(-0.01, 0.01), self.tick, name, inc)

    def persist_snapshot(self, m: Member) -> None:
        m.snap = (m.replica.snapshot_blob(), list(m.hist))
        m.log = []

    def sync_hist(self, m: Member, fx=()) -> None:
        """Bring the tracked history of `m` up to date with what its machine applied."""
        r = m.replica
        for f in fx:
            if type(f) is PersistSnapshot:
                assert self._snap_hist is not None, "PersistSnapshot without a Snapshot"
                m.hist = list(self._snap_hist)
                m.verified = m.commit_seen = 0  # everything it now calls committed is checked again
        new = r.last_seq - len(m.hist)
        if new > 0:
            if new > len(r.window):
                self.fail(f"{m.name}: applied {new} entries that its window does not show")
            window, n = r.window, len(r.window)
            m.hist.extend(window[i] for i in range(n - new, n))
        elif new < 0:
            self.fail(f"{m.name}: its history went back from {len(m.hist)} to {r.last_seq} "
                      f"without a snapshot")
        if m.hist and (m.hist[-1][0], m.hist[-1][1]) != (r.last_epoch, r.last_seq):
            self.fail(f"{m.name}: last entry {m.hist[-1][:2]} but machine says {(r.last_epoch, r.last_seq)}")

    def execute(self, m: Member, fx: list) -> None:
        for f in fx:
            kind = type(f)
            if kind is Send:
                self.send(m, f.to, f.msg)
            elif kind is Reply:
                self.reply(m, f.token, f.value)
            elif kind is Persist:
                m.log.extend(f.entries)
            elif kind is PersistSnapshot:
                self.persist_snapshot(m)
            elif kind is FetchView:
                self.after(self.rng.uniform(0.0005, 0.005), self.fetch_view, m.name, m.incarnation)
            elif kind is LearnerCaughtUp:
                self.learner_caught_up(m, f)
            else:
                self.fail(f"{m.name}: unknown effect {f!r}")

    # -- network ----------------------------------------------------------------------------------

    def link(self, src: str, dst: str) -> Link:
        link = self.links.get((src, dst))
        if link is None:
            link = self.links[(src, dst)] = Link()
        return link

    def send(self, m: Member, to: str, msg) -> None:
        data = messages.pack(msg)
        self.fids += 1
        frame = Frame(self.fids, m.name, to, 0, data)
        if type(msg) is Snapshot:
            frame.snap_hist = list(m.hist)
            if len(frame.snap_hist) != msg.last_seq:
                self.fail(f"{m.name} sends a snapshot at seq {msg.last_seq} with {len(m.hist)} entries")
        link = self.link(m.name, to)
        dst = self.members.get(to)
        if dst is None or not dst.alive:
            if link.up:
                self.cut_link(m.name, to, down_for=None)
            link.pending.append(frame)
            return
        if not link.up:
            link.pending.append(frame)
            return
        self.transmit(link, frame)

    def transmit(self, link: Link, frame: Frame) -> None:
        frame.conn = link.conn
        delay = self.rng.uniform(0.00005, 0.0008)
        if self.now < link.slow_until:
            delay += self.rng.uniform(0.005, 0.2)
        when = max(self.now + delay, link.last_at)
        link.last_at = when
        link.inflight[frame.fid] = frame
        self.frames[frame.fid] = frame
        self.at(when, self.deliver, frame.fid)

    def deliver(self, fid: int) -> None:
        frame = self.frames.pop(fid, None)
        if frame is None:
            return
        self.link(frame.src, frame.dst).inflight.pop(fid, None)
        m = self.members[frame.dst]
        if not m.alive:
            return
        msg = self.decode(frame.data)
        self.events += 1
        r = m.replica
        before = (r.epoch, r.last_seq, r.last_epoch)
        self._snap_hist = frame.snap_hist
        self.log(f"{frame.src}->{frame.dst} {_short(msg)}")
        self.stats[type(msg).__name__] += 1
        if frame.conn != self.link(frame.src, frame.dst).conn:
            self.stats["late frame"] += 1
        self.deliver_input(m, r.on_message, frame.src, msg, self.wall(m), self.mono(m))
        self._snap_hist = None
        epoch = getattr(msg, "epoch", None)
        if (epoch is not None and epoch < before[0] and type(msg) in (Append, Snapshot)
                and (r.last_seq, r.last_epoch) != before[1:]):
            self.fail(f"{m.name} at epoch {before[0]} applied {type(msg).__name__} of epoch {epoch}")
        self.maybe_check_pairs()

    @staticmethod
    def decode(data: bytes):
        unpacker = messages.unpacker()
        unpacker.feed(data)
        return messages.decode(next(unpacker))

    def cut_link(self, src: str, dst: str, down_for: float | None) -> None:
        """The connection src -> dst breaks: in-flight frames are lost except a prefix that
        reached the receiver (it may be processed late); the sender learns it and reconnects
        after `down_for` (None: while the receiver is down, retried)."""
        link = self.link(src, dst)
        if not link.up:
            return
        link.up = False
        link.conn += 1
        frames = sorted(link.inflight.values(), key=lambda f: f.fid)
        keep = self.rng.randint(0, len(frames)) if self.rng.random() < 0.5 else 0
        late = self.now
        for i, frame in enumerate(frames):
            if i < keep and self.members[dst].alive:
                late = max(late, self.now) + self.rng.uniform(0, 0.003)
                self.at(late, self.deliver, frame.fid)  # its earlier event may fire first: FIFO kept
            else:
                self.frames.pop(frame.fid, None)
        link.inflight.clear()
        link.pending.clear()
        self.log(f"cut {src}->{dst} (kept {keep} of {len(frames)} in flight)")
        self.stats["cut"] += 1
        if self.members[src].alive:
            link.down_told = False
            self.after(self.rng.uniform(0, 0.002), self.link_down, src, dst, link.conn,
                       self.members[src].incarnation)
        self.schedule_reconnect(src, dst, down_for)

    def link_down(self, src: str, dst: str, conn: int, inc: int) -> None:
        link = self.link(src, dst)
        if link.conn == conn:
            link.down_told = True
        self.link_event(src, dst, False, inc)

    def schedule_reconnect(self, src: str, dst: str, down_for: float | None) -> None:
        link = self.link(src, dst)
        wait = down_for if down_for is not None else self.rng.uniform(0.02, 0.3)
        self.after(wait, self.reconnect, src, dst, link.conn)

    def reconnect(self, src: str, dst: str, conn: int) -> None:
        link = self.link(src, dst)
        if link.up or link.conn != conn:
            return
        if not link.down_told:  # the shell reports the break before it reconnects
            self.after(0.001, self.reconnect, src, dst, conn)
            return
        if not self.members[src].alive:
            link.pending.clear()
            return
        if (not self.members[dst].alive or (self.faults and self.rng.random() < 0.2)
                or not self.reachable(src, dst)):  # the attempt fails
            if link.pending:  # the shell reports frames lost with a failed attempt as the link down
                link.pending.clear()
                self.link_event(src, dst, False, self.members[src].incarnation)
            wait = self.rng.uniform(0.05, 0.5) if not self.members[dst].alive else self.rng.uniform(0.02, 0.2)
            self.after(wait, self.reconnect, src, dst, conn)
            return
        link.up = True
        link.last_at = max(link.last_at, self.now)
        pending = link.pending
        link.pending = []
        for frame in pending:  # those sent since the last failed attempt
            self.transmit(link, frame)
        self.link_event(src, dst, True, self.members[src].incarnation)

    def reachable(self, a: str, b: str) -> bool:
        """Can `a` reach `b` (no partition between them)? The chain alone cuts links, not pairs."""
        return self.net.reachable(a, b)

    def link_event(self, src: str, dst: str, up: bool, inc: int) -> None:
        m = self.members[src]
        if not m.alive or m.incarnation != inc:
            return
        self.log(f"on_link {src}: {dst} {'up' if up else 'down'}")
        self.deliver_input(m, m.replica.on_link, dst, up, self.wall(m))

    # -- coordinator ------------------------------------------------------------------------------

    def commit_views(self, changed: list, also: list = (), first: str | None = None) -> None:
        if not changed:
            return
        for view in changed:
            self.views.append(view)
            self.log(f"coordinator: view {view.epoch} {','.join(view.members)} learner={view.learner}")
        current = self.reconfig.view()
        targets = list(also) + list(current.members) + ([current.learner] if current.learner else [])
        for old in changed:
            targets += list(old.members)
        if first is not None:
            self.push_view(first)
        for name in dict.fromkeys(targets):
            delay = self.rng.uniform(0.0002, 0.02)
            if self.faults and self.rng.random() < 0.2:
                delay += self.rng.uniform(0.02, 0.4)
            self.after(delay, self.push_view, name)

    def push_view(self, name: str) -> None:
        m = self.members.get(name)
        if m is None or not m.alive:
            return
        view = self.reconfig.view()
        if view.epoch < m.replica.epoch:
            self.fail(f"{name} has epoch {m.replica.epoch} beyond the coordinator's {view.epoch}")
        self.log(f"push view {view.epoch} to {name}")
        self.deliver_input(m, m.replica.on_view, view, self.wall(m))
        m.saved_epoch = m.replica.epoch
        self.maybe_check_pairs()

    def learner_caught_up(self, m: Member, fx: LearnerCaughtUp) -> None:
        """The tail's word for the coordinator: this one watches the tail instead (`watch_learner`)."""

    def fetch_view(self, name: str, inc: int) -> None:
        m = self.members[name]
        if m.alive and m.incarnation == inc:
            self.push_view(name)

    def watch_learner(self) -> None:
        view = self.reconfig.view()
        if view.learner:
            tail = self.members.get(view.tail)
            if tail is not None and tail.alive and tail.replica.epoch == view.epoch \
                    and tail.replica.learner_caught_up():
                self.commit_views(self.reconfig.caught_up(view.epoch, view.learner))
        if not self.ended or self.reconfig.view().learner:
            self.after(0.05, self.watch_learner)

    def planned_reconfig(self) -> None:
        if not self.faults:
            return
        self.after(self.rng.expovariate(self.cfg.reconfigs), self.planned_reconfig)
        view = self.reconfig.view()
        size = len(view.members) + (1 if view.learner else 0)
        choice = self.rng.random()
        if choice < 0.45 and size < self.cfg.max_members:
            gone = [m for m in self.members.values() if m.name not in view.members
                    and m.name != view.learner and m.name not in self.reconfig.state.queued]
            if gone and self.rng.random() < 0.4:
                m = self.rng.choice(gone)
                if not m.alive:
                    self.restart(m)
                self.log(f"coordinator: re-add {m.name}")
            else:
                m = self.new_member()
                self.log(f"coordinator: add {m.name}")
            self.stats["add"] += 1
            self.commit_views(self.reconfig.add(m.name))
            return
        candidates = list(view.members) + ([view.learner] if view.learner else [])
        if len(view.members) < 2:
            return
        victims = [self.rng.choice(candidates)]
        if len(view.members) >= 3 and self.rng.random() < 0.2:  # two at once
            victims.append(self.rng.choice([c for c in candidates if c != victims[0]]))
        for name in victims:
            if name in self.reconfig.view().members and len(self.reconfig.view().members) < 2:
                continue
            m = self.members[name]
            live = self.rng.random() < self.cfg.live_remove
            if not live and m.alive:
                self.crash(m)
            self.log(f"coordinator: remove {name} ({'running' if live else 'stopped'})")
            role = self.reconfig.view().role(name)
            self.stats[f"remove {role}"] += 1
            first = name if live and self.cfg.removed_first else None
            self.commit_views(self.reconfig.remove(name), also=[name], first=first)

    def who(self, role: str) -> str:
        view = self.reconfig.view()
        if role in self.members:
            return role
        if role == "learner":
            return view.learner
        if role == "middle":
            return view.members[1]
        return view.head if role == "head" else view.tail

    def scripted(self, action: str, *args) -> None:
        self.log(f"script: {action} {args}")
        if action == "add":
            m = self.new_member()
            self.stats["add"] += 1
            self.commit_views(self.reconfig.add(m.name))
        elif action == "remove":
            name, live = self.who(args[0]), args[1]
            if not live:
                self.crash(self.members[name])
            self.stats[f"remove {self.reconfig.view().role(name)}"] += 1
            self.commit_views(self.reconfig.remove(name), also=[name],
                              first=name if live and self.cfg.removed_first else None)
        elif action == "cut":
            a, b = self.who(args[0]), self.who(args[1])
            self.cut_link(a, b, args[2])
            self.cut_link(b, a, args[2])
        else:
            raise ValueError(action)

    def random_fault(self) -> None:
        if not self.faults:
            return
        self.after(self.rng.expovariate(self.cfg.cuts + self.cfg.slow), self.random_fault)
        names = [n for n, m in self.members.items() if m.alive]
        if len(names) < 2:
            return
        a, b = self.rng.sample(names, 2)
        busy = [pair for pair, link in self.links.items() if link.inflight]
        if busy and self.rng.random() < 0.5:
            a, b = self.rng.choice(busy)  # cut a connection with frames in flight
        if self.rng.random() < self.cfg.slow / (self.cfg.cuts + self.cfg.slow):
            link = self.link(a, b)
            link.slow_until = self.now + self.rng.uniform(0.05, 0.5)
            self.log(f"slow {a}->{b}")
            return
        down = self.rng.choice((0.0, 0.01, 0.05, 0.2, 0.8))
        self.cut_link(a, b, down)
        if self.rng.random() < 0.7:
            self.cut_link(b, a, down)

    # -- clients ----------------------------------------------------------------------------------

    def client_next(self, idx: int) -> None:
        c = self.clients[idx]
        if c.op is not None:
            return
        if self.ended:
            c.done = True
            return
        rng, cfg = self.rng, self.cfg
        c.ops += 1
        roll = rng.random()
        if roll >= 1 - cfg.typed:
            self.typed_next(c)
            return
        if cfg.counters and roll < 0.12:
            key = b"n%d" % rng.randrange(cfg.counters)
            kind = "incr" if rng.random() < 0.7 else "get"
        else:
            key = b"k%d" % rng.randrange(cfg.keys)
            kind = rng.choices(("get", "set", "incr", "del"), (40, 35, 15, 10))[0]
        arg = None
        if kind == "get":
            args = [b"GET", key]
        elif kind == "set":
            self.values += 1
            arg = b"%d" % (self.values * 1000 + idx)
            args = [b"SET", key, arg]
        elif kind == "incr":
            args = [b"INCR", key]
        else:
            args = [b"DEL", key]
        if key.startswith(b"n") and kind == "incr":
            self.incr_issued[key] = self.incr_issued.get(key, 0) + 1
        self.client_start(c, kind, key, arg, args, kind != "get")

    def typed_next(self, c: Client) -> None:
        """An operation on a typed key: a command drawn from TYPED with fresh arguments."""
        rng = self.rng
        key = rng.choice(list(TYPED))
        name, template = rng.choice(TYPED[key][0])
        self.values += 1
        fill = {F: b"f%d" % rng.randrange(3), M: b"m%d" % rng.randrange(4), V: b"%d" % (self.values % 97)}
        arg = tuple(fill.get(a, a) for a in template)
        self.client_start(c, name.lower().decode(), key, arg, [name, key, *arg], name in ops.WRITES)

    def client_start(self, c: Client, kind: str, key: bytes, arg, args: list, is_write: bool) -> None:
        """Record the operation's call and send it (a write with a request id at the rate `cfg.rid`)."""
        rid = None
        if is_write and self.rng.random() < self.cfg.rid:
            c.reqs += 1
            rid = (c.cid, c.reqs)
            args = [REQ, c.cid, b"%d" % c.reqs] + args
        op_id = self.history.invoke(c.idx, kind, key, arg, self.now)
        c.op = ClientOp(op_id, kind, key, args, rid, is_write)
        self.client_send(c)

    def client_target(self, c: Client) -> str | None:
        rng = self.rng
        view = self.reconfig.view()
        if self.views and rng.random() < self.cfg.stale_client:
            view = rng.choice(self.views[-4:])
        if not view.members:
            return None
        if rng.random() < 0.65:
            return view.head if c.op.is_write else view.tail
        return rng.choice(view.members)

    def client_send(self, c: Client) -> None:
        op = c.op
        c.attempts += 1
        op.attempt = c.attempts
        op.tries += 1
        target = self.client_target(c)
        token = (c.idx, op.attempt)
        if op.rid is not None:
            self.sends[("rid", *op.rid)].append(self.now)
        if op.kind == "set":
            self.sends[("set", op.key, op.args[-1])].append(self.now)
        self.log(f"client {c.idx} try {op.tries} {b' '.join(op.args).decode()} at {target}")
        self.after(self.rng.uniform(0.00005, 0.0005), self.client_arrive, c.idx, token, target, op.args)
        self.after(self.cfg.client_timeout, self.client_timeout, c.idx, token)

    def client_arrive(self, idx: int, token, target: str | None, args) -> None:
        m = self.members.get(target) if target else None
        if m is None or not m.alive:
            self.after(0.0001, self.client_result, idx, token, ConnectionRefusedError(), True)
            return
        self.events += 1
        self.deliver_input(m, m.replica.on_client, token, list(args), self.wall(m), self.mono(m))
        self.maybe_check_pairs()

    def reply(self, m: Member, token, value) -> None:
        if type(token) is not tuple:
            self.fail(f"{m.name}: reply to an unknown token {token!r}")
        lost = self.faults and self.rng.random() < self.cfg.lost_reply
        self.after(self.rng.uniform(0.00005, 0.0005), self.client_result, token[0], token,
                   ConnectionResetError() if lost else value, False)

    def client_timeout(self, idx: int, token) -> None:
        c = self.clients[idx]
        if c.op is not None and (idx, c.op.attempt) == token:
            self.client_result(idx, token, TimeoutError(), False)

    def client_result(self, idx: int, token, value, refused: bool) -> None:
        c = self.clients[idx]
        op = c.op
        if op is None or (idx, op.attempt) != token:
            return  # an abandoned attempt
        self.log(f"client {idx} <- {value!r}")
        self.stats["client " + type(value).__name__] += 1
        failed = isinstance(value, (Error, OSError, TimeoutError))
        if not failed:
            self.client_done(c, value)
            return
        if not op.is_write:
            self.history.fail(op.op_id, self.now)  # a read that failed changed nothing
            self.client_finish(c)
        elif op.rid is not None and op.tries < 40:
            self.after(self.rng.uniform(0.01, 0.1), self.client_retry, idx, op.attempt)
        elif refused and op.tries == 1:
            self.history.fail(op.op_id, self.now)  # nothing was sent
            self.client_finish(c)
        else:
            self.client_finish(c)  # the outcome stays unknown

    def client_retry(self, idx: int, attempt: int) -> None:
        c = self.clients[idx]
        if c.op is not None and c.op.attempt == attempt:
            self.client_send(c)

    def client_done(self, c: Client, value) -> None:
        op = c.op
        if op.kind == "incr" and type(value) is not int:
            self.fail(f"INCR answered {value!r}")
        self.history.complete(op.op_id, value, self.now)
        if op.is_write:
            self.note_acked(op)
        if op.kind == "incr" and op.key.startswith(b"n"):
            self.incr_acked[op.key] = self.incr_acked.get(op.key, 0) + 1
        self.client_finish(c)

    def client_finish(self, c: Client) -> None:
        c.op = None
        self.after(self.rng.uniform(*self.cfg.think), self.client_next, c.idx)

    def note_acked(self, op: ClientOp) -> None:
        sig = None
        if op.rid is not None:
            sig = ("rid", op.rid[0], op.rid[1])
        elif op.kind == "set":
            sig = ("set", op.key, op.args[-1])
        if sig is None:
            return
        seq = self.sig_seq.get(sig)
        if seq is None:
            self.fail(f"client {c_name(op)} got an answer to {op.args!r} before it was committed")
        self.acked_max = max(self.acked_max, seq)

    # -- invariants -------------------------------------------------------------------------------

    def check_member(self, m: Member) -> None:
        r = m.replica
        if r.epoch < m.epoch_seen:
            self.fail(f"{m.name}: epoch went back from {m.epoch_seen} to {r.epoch}")
        m.epoch_seen = r.epoch
        if r.view is not None and r.view.epoch != r.epoch:
            self.fail(f"{m.name} acts on view {r.view.epoch} after seeing epoch {r.epoch}")
        if r.commit_seq > r.last_seq:
            self.fail(f"{m.name}: commit_seq {r.commit_seq} beyond last_seq {r.last_seq}")
        # Committed entries are the chain's: they never change and every member agrees on them.
        if r.commit_seq > m.commit_seen:
            for seq in range(m.commit_seen + 1, r.commit_seq + 1):
                self.record_commit(m, seq)
        m.commit_seen = r.commit_seq
        # A member of the current view that serves reads holds every acknowledged write.
        view = self.reconfig.view()
        if r.epoch == view.epoch and m.name in view.members and r.serving_reads():
            self.verify_against_committed(m)
            if r.last_seq < self.acked_max:
                self.fail(f"{m.name} serves reads at seq {r.last_seq} but seq {self.acked_max} "
                          f"was acknowledged")

    def record_commit(self, m: Member, seq: int) -> None:
        entry = m.hist[seq - 1]
        n = len(self.committed)
        if seq <= n:
            if self.committed[seq - 1] != entry:
                self.fail(f"{m.name} committed {entry[:2]} at seq {seq} where the chain committed "
                          f"{self.committed[seq - 1][:2]}")
            return
        if seq != n + 1:
            # Only possible after a snapshot told us of commits we have not tracked yet.
            for s in range(n + 1, seq):
                self.record_commit(m, s)
        self.committed.append(entry)
        for sig in entry_sigs(entry):
            if sig[0] == "rid" and sig in self.sig_seq:
                self.fail(f"request {sig[1:]} applied twice: seq {self.sig_seq[sig]} and {seq}")
            if sig[0] == "set" and sig in self.sig_seq:
                self.fail(f"SET {sig[1:]} applied twice: seq {self.sig_seq[sig]} and {seq}")
            self.sig_seq[sig] = seq
        self.check_deadline(entry)

    def check_deadline(self, entry) -> None:
        """A write is given its seq no later than the deadline of the last send that carried it:
        never long after its client gave up (a forward held in a cut link is refused)."""
        assigned = entry[2] / 1000
        for sig in entry_sigs(entry):
            sends = [t for t in self.sends.get(sig, ()) if t < assigned + 0.001]  # stamps are whole ms
            if sends and assigned - max(sends) > self.cfg.write_timeout + 0.001:
                self.stats["late write"] += 1
                self.fail(f"write {sig} got seq {entry[1]} {assigned - max(sends):.3f} s after its last send "
                          f"(deadline {self.cfg.write_timeout} s)")

    def verify_against_committed(self, m: Member) -> None:
        upto = min(len(m.hist), len(self.committed))
        for i in range(m.verified, upto):
            if m.hist[i] != self.committed[i]:
                self.fail(f"{m.name} serves reads with entry {m.hist[i][:2]} at seq {i + 1} where the "
                          f"chain committed {self.committed[i][:2]}")
        m.verified = max(m.verified, upto)

    def maybe_check_pairs(self) -> None:
        if self.events % self.cfg.pair_check_every == 0:
            self.check_pairs()

    def quiet(self, a: str, b: str) -> bool:
        for src, dst in ((a, b), (b, a)):
            link = self.links.get((src, dst))
            if link is not None and (not link.up or link.inflight or link.pending):
                return False
        if any(f.src in (a, b) and f.dst in (a, b) for f in self.frames.values()):
            return False  # late frames of an old connection
        return all(self.members[n].flush_at is None for n in (a, b))

    def check_pairs(self) -> None:
        """Neighbours in the current view, synced under its epoch, with nothing in between: the
        successor's history is the predecessor's (minus the sent list, empty when quiet)."""
        view = self.reconfig.view()
        chain = list(view.members) + ([view.learner] if view.learner else [])
        for pred, succ in itertools.pairwise(chain):
            p, s = self.members[pred], self.members[succ]
            if not (p.alive and s.alive and p.replica.epoch == view.epoch == s.replica.epoch):
                continue
            if not (p.replica.succ_ready and s.replica.pred_synced and self.quiet(pred, succ)):
                continue
            if s.hist != p.hist[:len(s.hist)]:
                i = next(i for i, (x, y) in enumerate(zip(s.hist, p.hist)) if x != y)
                self.fail(f"{succ}'s history is not a prefix of {pred}'s: seq {i + 1} is "
                          f"{s.hist[i][:2]} vs {p.hist[i][:2]}")
            if len(s.hist) != len(p.hist):
                self.fail(f"{pred} -> {succ} quiet and synced but {succ} ends at {len(s.hist)}, "
                          f"{pred} at {len(p.hist)}")

    # -- running ----------------------------------------------------------------------------------

    def run(self) -> ChainSim:
        cfg = self.cfg
        for _ in range(cfg.members):
            m = self.new_member()
            self.commit_views(self.reconfig.add(m.name))
        self.watch_learner()
        # Found the chain before the clients start: the founding adds go through the learner path.
        self.run_until(lambda: len(self.reconfig.view().members) == cfg.members
                       and not self.reconfig.view().learner, T0 + 10.0)
        for i in range(cfg.clients):
            self.clients.append(Client(i, b"c%d" % i))
            self.after(self.rng.uniform(0, 0.01), self.client_next, i)
        if cfg.reconfigs > 0:
            self.after(self.rng.expovariate(cfg.reconfigs), self.planned_reconfig)
        if cfg.cuts + cfg.slow > 0:
            self.after(self.rng.expovariate(cfg.cuts + cfg.slow), self.random_fault)
        for offset, action, *args in cfg.script:
            self.after(offset, self.scripted, action, *args)
        end = self.now + cfg.duration
        self.run_until(lambda: False, end)
        # Liveness: faults off, links heal, the add under way finishes, clients finish.
        self.faults = False
        self.ended = True
        self.log("liveness phase")
        for (src, dst), link in self.links.items():
            if not link.up and self.members[src].alive and self.members[dst].alive:
                self.after(self.rng.uniform(0, 0.05), self.reconnect, src, dst, link.conn)
        self.run_until(self.converged, self.now + cfg.settle)
        if not self.converged():
            self.fail("no convergence in the liveness phase: " + self.describe())
        self.final_checks()
        return self

    def converged(self) -> bool:
        view = self.reconfig.view()
        if view.learner or self.reconfig.state.queued:
            return False
        if any(c.op is not None or not c.done for c in self.clients):
            return False
        rs = [self.members[n] for n in view.members]
        if not all(m.alive and m.replica.epoch == view.epoch for m in rs):
            return False
        tail = rs[-1].replica
        if not tail.serving_reads():
            return False
        return all(m.replica.last_seq == tail.last_seq and m.replica.commit_seq == tail.last_seq
                   and m.flush_at is None for m in rs)

    def describe(self) -> str:
        view = self.reconfig.view()
        parts = [f"view {view.epoch} {view.members} learner={view.learner} queued={self.reconfig.state.queued}"]
        for n in view.members + ((view.learner,) if view.learner else ()):
            m = self.members[n]
            parts.append(f"{n}: alive={m.alive} {m.replica.status()}")
        parts += [f"client {c.idx}: {c.op}" for c in self.clients if c.op]
        return "\n".join(parts)

    def final_checks(self) -> None:
        self.check_pairs()
        view = self.reconfig.view()
        rs = [self.members[n] for n in view.members]
        for m in rs:
            self.check_member(m)
            self.verify_against_committed(m)
            if m.hist != rs[0].hist:
                self.fail(f"{m.name} and {rs[0].name} end with different histories")
            if m.replica.state.data != rs[0].replica.state.data:
                self.fail(f"{m.name} and {rs[0].name} end with different data")
        if len(self.committed) < len(rs[0].hist):
            for seq in range(len(self.committed) + 1, len(rs[0].hist) + 1):
                self.record_commit(rs[0], seq)
        # Final reads at the tail, recorded like any other read, so a lost write shows.
        tail = rs[-1].replica
        keys = [b"k%d" % i for i in range(self.cfg.keys)] + [b"n%d" % i for i in range(self.cfg.counters)]
        for key in keys:
            op_id = self.history.invoke("final", "get", key, None, self.now)
            value = tail.state.get(key, int(self.now * 1000))
            self.history.complete(op_id, value, self.now)
        for key in keys[self.cfg.keys:]:
            value = int(tail.state.get(key, 0) or 0)
            issued, acked = self.incr_issued.get(key, 0), self.incr_acked.get(key, 0)
            if not acked <= value <= issued:
                self.fail(f"counter {key!r} is {value} after {issued} INCRs issued, {acked} acknowledged")
        for key, (_, final) in TYPED.items() if self.cfg.typed else ():
            op_id = self.history.invoke("final", final[0].lower().decode(), key, final[1:], self.now)
            self.history.complete(op_id, ops.read(tail.state, [final[0], key, *final[1:]], int(self.now * 1000)),
                                  self.now)
        operations = self.history.operations()
        registers = check([op for op in operations if op.key not in TYPED])
        typed = check([op for op in operations if op.key in TYPED], CommandModel())
        result = registers if registers.ok is not True else typed
        result = dataclasses.replace(result, steps=registers.steps + typed.steps)
        if result.ok is False:
            self.fail(f"not linearizable:\n{result.explanation}")
        if result.ok is None:
            self.fail(f"linearizability check gave up: {result.explanation}")
        self.check_result = result


def c_name(op: ClientOp) -> str:
    return f"op {op.op_id}"


def _short(msg) -> str:
    text = repr(msg)
    return text if len(text) < 160 else text[:157] + "..."


def run_seed(seed: int, **overrides) -> ChainSim:
    return ChainSim(SimConfig(seed=seed, **overrides)).run()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Seeded chain simulation (replays exactly from a seed)")
    parser.add_argument("--seed", type=int, default=None, help="run this seed only")
    parser.add_argument("--seeds", type=int, default=100, help="run seeds 0..N-1")
    parser.add_argument("--first", type=int, default=0)
    parser.add_argument("--trace", action="store_true", help="print every event")
    parser.add_argument("--live-remove", type=float, default=0.3,
                        help="chance that a removed member keeps running")
    parser.add_argument("--any-order", action="store_true",
                        help="a running removed member learns its removal in any order")
    args = parser.parse_args(argv)
    seeds = [args.seed] if args.seed is not None else range(args.first, args.first + args.seeds)
    failed = 0
    for seed in seeds:
        try:
            sim = run_seed(seed, trace=args.trace, live_remove=args.live_remove,
                           removed_first=not args.any_order)
        except SimFailure as exc:
            failed += 1
            print(exc, file=sys.stderr)
            continue
        print(f"seed={seed} ok: {len(sim.history.operations())} ops, {len(sim.committed)} committed, "
              f"{len(sim.views)} views, {sim.check_result}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
