"""Seeded discrete-event simulation of a whole catena cluster under random faults.

One seed drives everything, so a failing run replays exactly:
`python tests/sim/cluster_sim.py --seed N --trace` or `CATENA_SIM_SEED=N pytest tests/sim/test_cluster_sim.py`.

What runs (all of it the real pure machines of src/, fed by virtual time):

- members: `Replica` machines with durable logs and read leases (`lease_s=LEASE_S`), their chain
  links, clients and history checks, all from the chain simulator (`ChainSim`, chain_sim.py),
  which this class extends. A crashed member restarts from its durable snapshot and log as a new
  incarnation, registers again and rejoins behind the tail.
- coordinators (2-3): each runs `Election` against the etcd model (etcd_model.py) shared with
  test_coordinator_failover.py, and the real `CoordinatorMachine` (coordinator/machine.py), which
  makes every decision: changes one at a time, revoke-or-wait, fenced saves, pushes and their
  retries, probes, read-lease grants, failure and restart verdicts, the learner hand-over, a new
  leader's finishing of what the last one left. Its effects are executed as service.py does
  by coordinator_shell.py (shared with shard_sim.py): `Probe`s reach `Replica.on_probe`,
  `Revoke`s `Replica.revoke`, `Push`es `Replica.on_view`, `AskTail`s the tail's status; here
  `Save`s go to the etcd model under the fence, and membership "failed"/"leave" events bring a
  probe forward. Step-down drops a term's calls.
- member shells, modelled on chain/node.py: register with the leader (MASTER.REGISTER with the
  incarnation and the epoch seen), poll MASTER.GET_VIEW every second or at once on `FetchView`,
  register again after learning they left the chain.
- membership: every member and coordinator process runs the real `Detector` over datagrams.

Faults (safety phase): member crash and restart, coordinator crash and restart, coordinator
pause (SIGSTOP past its lease, then SIGCONT: its inputs wait, its timers fire late), network
partitions (a node cut off from every other, or two nodes from each other: chain TCP links,
probes and other RPCs, and membership datagrams), link cuts between two chain members that
both still reach everyone else (gray failures), datagram loss, chain link cuts and slow links
(from `ChainSim`), slow etcd round trips, new members joining, a member's wall clock stepping
ahead or back by up to 3 s (members are given wall and monotonic time apart, as node.py gives
`time.time()` and `time.monotonic()`; read leases run on the monotonic one).

Checks: everything `ChainSim` checks (committed entries never change, no lost acknowledged write,
a request id applied once, INCR not double counted, per-key linearizability of the client
history); at most one coordinator acts as leader at any time, and one that acts holds etcd's
leader key with its fence and a live lease; every accepted config write carried the current
fence; saved views never regress (one view per epoch); every view a member adopts was saved.
Liveness once the faults stop: one leader, every running member in one whole chain under the
saved view, every client operation ended.

Not modelled: partitions between a coordinator and etcd (its round trips are only slow), a
broken kept probe connection (calls here only time out or are refused), MASTER.ADD and sessions
(operators only send MASTER.REMOVE), clock drift (LEASE_MARGIN_S is still added), keys with a
TTL (so a wall-clock step shows only in write deadlines). Members learn the leader from etcd's
key at once (the real discovery follows it by a watch).
"""

from __future__ import annotations

import argparse
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from chain_sim import T0, ChainSim, Client, Member, SimConfig, SimFailure
from coordinator_shell import NOTLEADER, REFUSED, TIMEOUT, MachineShell, Shell
from etcd_model import EXPIRY_CHECK_S, TTL, Etcd

from catena.coordinator import election as elect
from catena.coordinator.election import LEADER, Election
from catena.chain.link_watch import LinkWatch
from catena.coordinator.damping import BASE_S, Damping
from catena.coordinator.etcd_store import SIT_OUT_S
from catena.coordinator.machine import CoordinatorMachine
from catena.coordinator.requests import Register, Remove
from catena.coordinator.reconfig import CoordinatorState, Reconfig
from catena.effects import LearnerCaughtUp
from catena.leases import LEASE_S
from catena.membership.detector import Detector
from catena.membership.effects import Event, JoinFailed
from catena.membership.effects import Send as DSend
from catena.membership.messages import MemberId
from catena.membership.settings import Settings
from catena.view import View

# From chain/node.py (constants of the member's asyncio shell).
VIEW_POLL_S = 1.0
MEMBERSHIP_RETRY_S = 1.0
PORT = 7946
EPOCH_MS = 1_700_000_000_000
CLUSTER_ID = "sim"



@dataclass
class ClusterConfig(SimConfig):
    coordinators: int = 3
    members: int = 3
    max_members: int = 5  # processes ever started (new ones join during the run)
    clients: int = 3
    typed: float = 0.0  # typed keys are the chain simulator's (its seeds keep their schedules here)
    duration: float = 7.0
    settle: float = 40.0
    reconfigs: float = 0.0  # ChainSim's scripted coordinator is off: the coordinators decide
    cuts: float = 1.0
    slow: float = 0.3
    member_crashes: float = 0.25  # per virtual second
    coord_faults: float = 0.3  # crash or pause of a coordinator, per virtual second
    partitions: float = 0.35  # per virtual second
    link_cuts: float = 0.15  # two chain members cut from each other (both still reach everyone else), per second
    joins: float = 0.1  # a new member process starts, per virtual second
    removes: float = 0.15  # an operator's MASTER.REMOVE of a running member, per virtual second
    # The operator sends one MASTER.REMOVE at a time, only while the chain has 3+ members. False:
    # removes may overlap and empty the chain (see test_cluster_sim.py, the strict xfail).
    careful_operator: bool = True
    loss: float = 0.05  # membership datagrams lost (safety phase)
    revoke: bool = True  # False: the coordinator never revokes leases (a planted fault)
    fencing: bool = True  # False: etcd accepts unfenced writes (a planted fault)
    leases: bool = True  # False: members answer reads with no read lease (a planted fault)
    clock_steps: float = 0.0  # a member's wall clock steps ahead or back, per virtual second
    two_clocks: bool = True  # False: members time their leases on the wall clock (a planted fault)
    flap_quiet_s: float = BASE_S  # the coordinators' --flap-quiet-ms
    # Write deadlines are wall-clock times compared across members: a step breaks them (a known
    # limit, test_cluster_sim.py); False checks everything else under clock steps.
    deadlines_across_steps: bool = True


@dataclass
class Coord:
    """One coordinator process: its election, the saved state it knows, its leader work."""
    name: str
    election: Election
    term: int = 0  # bumped by every Lead and StepDown: leader work of another term is cancelled
    inc: int = 0
    alive: bool = True
    paused_until: float = 0.0
    machine: CoordinatorMachine = field(default_factory=CoordinatorMachine)
    timer_at: float = float("inf")  # the machine's timer, armed for this deadline
    timer_gen: int = 0
    campaign_state: dict | None = None  # the state read in the winning campaign (None: a new store)
    replies: dict = field(default_factory=dict)  # token -> respond, for requests the machine answers


@dataclass
class Proc:
    """A membership detector of one process incarnation."""
    name: str
    key: tuple  # (name, incarnation of the process)
    machine: Detector
    gen: int = 0
    timer_at: float = float("inf")


def addr_name(addr: str) -> str:
    return addr.rpartition(":")[0]


class ClusterSim(MachineShell, ChainSim):
    managed = True  # as `catena member --coordinator …` starts them

    def __init__(self, cfg: ClusterConfig):
        super().__init__(cfg)
        self.lease_s = LEASE_S if cfg.leases else None
        self.etcd = Etcd(fencing=cfg.fencing)
        self.etcd.watchers.append(self.on_etcd_event)
        self.coords = {f"c{i}": Coord(f"c{i}", self.new_election(f"c{i}")) for i in range(cfg.coordinators)}
        self.shells: dict[str, Shell] = {}
        self.procs: dict[str, Proc] = {}
        self.calls: dict[int, object] = {}
        self.ncalls = 0
        self.tokens = 0
        self.loss = cfg.loss
        self.saved_views: dict[int, View] = {}
        self.acts = 0
        self.takeovers = 0
        self.leader_seen = None
        self.reconfig = Reconfig(CoordinatorState(cluster_id=CLUSTER_ID))
        self.settings = Settings()
        self.removing = False  # an operator's MASTER.REMOVE is under way
        # node.py's link report: (member, incarnation) -> its LinkWatch, and peer -> when a frame last arrived
        self.watches: dict[tuple, LinkWatch] = {}
        self.heard: dict[tuple, dict[str, float]] = {}
        self.commit_times: list[float] = []  # when each committed entry was first seen committed
        self.saved_at: dict[int, float] = {}  # epoch -> when its view was saved

    def new_election(self, name: str) -> Election:
        return Election(name, random.Random(self.rng.getrandbits(64)))

    def fail(self, text: str) -> None:
        tail = "\n".join(self.trace[-40:])
        raise SimFailure(f"seed={self.cfg.seed}: {text}\n"
                         f"replay: python tests/sim/cluster_sim.py --seed {self.cfg.seed} --trace\n"
                         f"    or: CATENA_SIM_SEED={self.cfg.seed} pytest tests/sim/test_cluster_sim.py\n"
                         f"last events:\n{tail}")

    def token(self) -> int:
        self.tokens += 1
        return self.tokens

    # -- the network between processes (RPCs and datagrams) ---------------------------------------

    def up(self, name: str) -> bool:
        c = self.coords.get(name)
        if c is not None:
            return c.alive
        m = self.members.get(name)
        return m is not None and m.alive

    def rpc_delay(self) -> float:
        if self.faults and self.rng.random() < 0.03:
            return self.rng.uniform(0.05, 0.6)  # a slow link
        return self.rng.uniform(0.0002, 0.003)

    def call(self, src: str, dst: str, handler, done, timeout: float) -> None:
        """`src` asks `dst`: `handler(respond)` runs at `dst` and calls `respond(value)` (now or
        later); `done(value)` runs at `src` with the answer, REFUSED or TIMEOUT, exactly once."""
        self.ncalls += 1
        cid = self.ncalls
        self.calls[cid] = done
        self.after(timeout, self.call_end, cid, TIMEOUT)
        if not self.reachable(src, dst):
            return
        self.after(self.rpc_delay(), self.call_arrive, cid, src, dst, handler)

    def call_arrive(self, cid: int, src: str, dst: str, handler) -> None:
        if not self.up(dst):
            self.after(self.rpc_delay(), self.call_end, cid, REFUSED)
            return
        c = self.coords.get(dst)
        if c is not None and self.now < c.paused_until:  # waits in the socket
            self.at(c.paused_until, self.call_arrive, cid, src, dst, handler)
            return
        inc = c.inc if c is not None else self.members[dst].incarnation

        def respond(value):
            if self.up(dst) and self.inc_of(dst) == inc and self.reachable(src, dst):
                self.after(self.rpc_delay(), self.call_end, cid, value)

        handler(respond)

    def inc_of(self, name: str) -> int:
        c = self.coords.get(name)
        return c.inc if c is not None else self.members[name].incarnation

    def call_end(self, cid: int, value) -> None:
        done = self.calls.pop(cid, None)
        if done is not None:
            done(value)

    def for_coord(self, c: Coord, inc: int, fn, *args) -> None:
        """Deliver to a coordinator: dropped if it crashed since; deferred while it is paused.
        An overdue election timer fires first (asyncio runs overdue timers in deadline order)."""
        if not c.alive or c.inc != inc:
            return
        if self.now < c.paused_until:
            self.at(c.paused_until, self.for_coord, c, inc, fn, *args)
            return
        due = c.election.next_deadline()
        if due is not None and due <= self.now and fn != self.coord_timer:
            self.coord_timer(c)
        fn(c, *args)
        self.check_leaders()

    def from_coord(self, c: Coord, term: int, fn):
        """A callback for leader work of `term`: dropped once that term's work was cancelled."""
        inc = c.inc

        def cb(value):
            self.for_coord(c, inc, lambda c_: fn(value) if c_.term == term else None)
        return cb

    # -- membership ---------------------------------------------------------------------------------

    def member_id(self, name: str) -> MemberId:
        return MemberId(name, PORT, EPOCH_MS + int((self.now - T0) * 1000))

    def start_detector(self, name: str, introducers: list[str], bootstrap: list | None = None) -> None:
        key = (name, self.inc_of(name))
        me = self.member_id(name) if bootstrap is None else next(m for m in bootstrap if m.host == name)
        d = Detector(me, self.settings, random.Random(self.rng.getrandbits(64)), self.now,
                     [f"{n}:{PORT}" for n in introducers if n != name])
        proc = self.procs[name] = Proc(name, key, d)
        if bootstrap is not None:
            d.bootstrap(bootstrap, self.now)
            d.next_hb = self.now + self.rng.uniform(0, 0.1)
            self.arm(proc)
        else:
            self.detector_fx(proc, d.start(self.now))

    def arm(self, proc: Proc) -> None:
        due = proc.machine.next_deadline()
        if due < proc.timer_at:
            proc.timer_at = due
            proc.gen += 1
            self.at(max(due, self.now), self.detector_input, proc.key, proc.gen, None)

    def current_proc(self, key: tuple) -> Proc | None:
        proc = self.procs.get(key[0])
        if proc is None or proc.key != key or not self.up(key[0]) or self.inc_of(key[0]) != key[1]:
            return None
        return proc

    def detector_input(self, key: tuple, gen: int | None, msg) -> None:
        proc = self.current_proc(key)
        if proc is None:
            return
        c = self.coords.get(key[0])
        if c is not None and self.now < c.paused_until:
            self.at(c.paused_until, self.detector_input, key, gen, msg)
            return
        if msg is None:
            if gen != proc.gen:
                return
            proc.timer_at = float("inf")
            fx = proc.machine.on_timer(self.now)
        else:
            fx = proc.machine.on_message(msg, self.now)
        self.detector_fx(proc, fx)

    def detector_fx(self, proc: Proc, fx: list) -> None:
        for e in fx:
            kind = type(e)
            if kind is DSend:
                dst = addr_name(e.to)
                if (self.faults and self.rng.random() < self.loss) or not self.reachable(proc.name, dst):
                    continue
                if dst not in self.procs:
                    continue
                delay = self.rng.uniform(0.0005, 0.02)
                self.after(delay, self.detector_deliver, dst, e.msg)
            elif kind is Event:
                self.stats["membership " + e.kind] += 1
                c = self.coords.get(proc.name)
                if c is not None and e.kind in ("failed", "leave"):
                    self.follow_membership(c, addr_name(e.member.addr))
            elif kind is JoinFailed:
                self.after(MEMBERSHIP_RETRY_S, self.restart_detector, proc.key)
        self.arm(proc)

    def detector_deliver(self, dst: str, msg) -> None:
        proc = self.procs.get(dst)
        if proc is not None:
            self.detector_input(proc.key, None, msg)

    def restart_detector(self, key: tuple) -> None:
        if self.current_proc(key) is not None:
            self.start_detector(key[0], list(self.coords))

    # -- etcd round trips ----------------------------------------------------------------------------

    def etcd_delay(self) -> float:
        if self.faults and self.rng.random() < 0.05:
            return self.rng.uniform(0.2, 1.5)  # a slow link
        return self.rng.uniform(0.001, 0.01)

    def on_etcd_event(self, event) -> None:
        for c in self.coords.values():
            self.after(self.etcd_delay(), self.for_coord, c, c.inc, self.coord_watch, event)

    def coord_watch(self, c: Coord, event) -> None:
        if event[0] == "leader":
            self.election_fx(c, c.election.on_leader_key(event[1], event[2], event[3], self.now))
        elif c.election.role != LEADER:
            c.machine.follow(event[1])  # a warm copy

    def coord_timer(self, c: Coord) -> None:
        due = c.election.next_deadline()
        if due is not None and self.now >= due:
            self.election_fx(c, c.election.on_timer(self.now))

    def arm_election(self, c: Coord) -> None:
        due = c.election.next_deadline()
        if due is not None:
            self.at(max(due, self.now), self.for_coord, c, c.inc, self.coord_timer)

    def election_fx(self, c: Coord, effects: list) -> None:
        inc = c.inc
        for fx in effects:
            kind = type(fx)
            if kind is elect.Campaign:
                self.after(self.etcd_delay(), self.etcd_campaign, c, inc, self.now)
            elif kind is elect.Renew:
                self.after(self.etcd_delay(), self.etcd_renew, c, inc, fx.lease_id, self.now)
            elif kind is elect.Revoke:
                self.after(self.etcd_delay(), self.etcd.revoke, fx.lease_id)
            elif kind is elect.StepDown:
                self.log(f"{c.name} steps down: {fx.reason}")
                self.step_down(c)
                self.after(self.etcd_delay(), self.etcd.revoke, fx.lease_id)
            elif kind is elect.Lead:
                self.lead(c)
        self.arm_election(c)

    def etcd_campaign(self, c: Coord, inc: int, sent: float) -> None:
        result = self.etcd.campaign(c.name, self.now)
        self.after(self.etcd_delay(), self.for_coord, c, inc, self.campaign_result, result, sent)

    def campaign_result(self, c: Coord, result, sent: float) -> None:
        won, fence, lid, holder, state = result
        if won:  # the state is read in the campaign transaction itself
            c.campaign_state = state
        self.election_fx(c, c.election.on_campaign_result(won, fence, lid, TTL, sent, self.now, holder))

    def etcd_renew(self, c: Coord, inc: int, lid: int, sent: float) -> None:
        left = self.etcd.keepalive(lid, self.now)
        self.after(self.etcd_delay(), self.for_coord, c, inc,
                   lambda c_: self.election_fx(c_, c_.election.on_renewed(lid, sent, left, self.now)))

    def etcd_expiry(self) -> None:
        self.etcd.expire(self.now)
        self.after(EXPIRY_CHECK_S, self.etcd_expiry)

    # -- the coordinator: service.py's shell around the real CoordinatorMachine ---------------------

    def acting(self, c: Coord) -> bool:
        return c.alive and c.election.role == LEADER and c.election.leading(self.now) and c.machine.leading

    def lead(self, c: Coord) -> None:
        """`Coordinator._lead`: the machine leads from the state read in the campaign."""
        c.term += 1
        self.takeovers += 1
        self.log(f"{c.name} leads (fence {c.election.fence}, term {c.term}), view {c.machine.view}")
        self.machine_fx(c, c.machine.lead(self.now, c.campaign_state, CLUSTER_ID))

    def step_down(self, c: Coord) -> None:
        c.term += 1
        self.machine_fx(c, c.machine.step_down())

    def check_acting(self, c: Coord) -> None:
        self.acts += 1
        leader = self.etcd.leader
        if leader is None or leader[0] != c.name or leader[1] != c.election.fence:
            self.fail(f"{c.name} acts as leader (fence {c.election.fence}) but etcd's leader key is {leader}")
        if not self.etcd.lease_alive(leader[2], self.now):
            self.fail(f"{c.name} acts as leader after its lease expired at etcd")

    def check_leaders(self) -> None:
        leading = [c.name for c in self.coords.values() if c.alive and c.election.leading(self.now)]
        if len(leading) > 1:
            self.fail(f"{len(leading)} coordinators act as leader at once: {leading}")

    @property
    def revoke_leases(self) -> bool:
        return self.cfg.revoke

    def machine_call(self, c: Coord, member: str, at_member, answered, timeout_s: float) -> None:
        self.call(c.name, member, at_member, self.from_coord(c, c.term, answered), timeout_s)

    def machine_at(self, c: Coord, when: float, fn, *args) -> None:
        self.at(when, self.for_coord, c, c.inc, fn, *args)

    def save_state(self, c: Coord, fx) -> None:
        self.save(c, fx.state)

    def resign(self, c: Coord, fx) -> None:
        super().resign(c, fx)
        self.election_fx(c, c.election.resign(fx.reason, self.now, SIT_OUT_S))

    def member_status(self, name: str, respond) -> None:
        respond(self.members[name].replica.status())

    def save(self, c: Coord, new: dict) -> None:
        """`store.save`: NotLeader before it sends unless the term is held; etcd compares the fence."""
        el = c.election
        if not el.leading(self.now):
            self.machine_fx(c, c.machine.on_save_result(False, self.now))
            return
        self.check_acting(c)
        fence, term = el.fence, c.term  # (the term that made the save, not the one when etcd answers)

        def saved(ok):
            self.machine_fx(c, c.machine.on_save_result(ok, self.now))
            if not ok:
                self.election_fx(c, el.on_fenced(fence, self.now))

        def at_etcd():
            ok = self.etcd.save(fence, new, self.now)
            if ok:
                self.accepted_write(new)
            self.after(self.etcd_delay(), self.from_coord(c, term, saved), ok)

        self.after(self.etcd_delay(), at_etcd)

    def accepted_write(self, state: dict) -> None:
        fence, current = self.etcd.writes[-1][1], self.etcd.writes[-1][3]
        if fence != current:
            self.fail(f"a config write landed under fence {fence}, the current one is {current}")
        view = CoordinatorState.from_dict(state).views[0]
        last = self.reconfig.view()
        if view.epoch < last.epoch or (view.epoch == last.epoch and view != last and last.epoch):
            self.fail(f"the saved view regressed: {last} then {view}")
        seen = self.saved_views.setdefault(view.epoch, view)
        self.saved_at.setdefault(view.epoch, self.now)
        if seen != view:
            self.fail(f"two views saved under epoch {view.epoch}: {seen} and {view}")
        if view != last:
            self.views.append(view)
            self.log(f"saved view {view.epoch} {','.join(view.members)} learner={view.learner}")
        self.reconfig = Reconfig(CoordinatorState.from_dict(state))

    def member_revoke(self, name: str, epoch: int, respond) -> None:
        self.members[name].replica.revoke(epoch)
        respond("OK")

    def member_view(self, name: str, view: View, respond) -> None:
        self.adopt_view(self.members[name], view)
        respond("OK")

    def adopt_view(self, m: Member, view: View) -> None:
        """node.py `_on_view`: a newer view (or the first after a restart), epoch saved."""
        r = m.replica
        if view.epoch > r.epoch or r.view is None:
            if self.saved_views.get(view.epoch) != view:
                self.fail(f"{m.name} is told view {view} that was never saved")
            self.log(f"{m.name} adopts view {view.epoch} {','.join(view.members)} learner={view.learner}")
            self.deliver_input(m, r.on_view, view, self.wall(m))
            m.saved_epoch = r.epoch
            self.maybe_check_pairs()

    def learner_caught_up(self, m: Member, fx: LearnerCaughtUp) -> None:
        """node.py `_tell_caught_up`: MASTER.CAUGHT_UP to the leader, once (lost if it fails)."""
        leader = self.etcd.leader[0] if self.etcd.leader else None
        if leader is None:
            return
        c = self.coords[leader]

        def at_coord(respond):
            self.for_coord(c, c.inc, lambda c_: self.coord_caught_up(c_, fx) if self.acting(c_) else None)
            respond("OK")

        self.stats["learner told caught up"] += 1
        self.call(m.name, leader, at_coord, lambda value: None, 2.0)

    def coord_caught_up(self, c: Coord, fx: LearnerCaughtUp) -> None:
        self.caught_up_at(c, fx.epoch, fx.learner)

    def member_probe(self, name: str, epoch: int, nonce: int, grant: int, respond) -> None:
        m = self.members[name]
        self.deliver_input(m, m.replica.on_probe, epoch, nonce, grant, self.mono(m))
        self.log(f"{name} probed: epoch {epoch} nonce {nonce} grant {grant}, lease until "
                 f"{m.replica.lease_until - T0:.3f}")
        key = (name, m.incarnation)
        view, proc = m.replica.view, self.current_proc((name, m.incarnation))
        lost = tuple(addr_name(a) for a in proc.machine.not_alive([f"{n}:{PORT}" for n in view.members])
                     ) if view and proc else ()
        report = self.watches.setdefault(key, LinkWatch()).report(m.replica, self.heard.get(key, {}), lost,
                                                                  self.mono(m))
        respond((m.replica.client_id.decode(), report))

    def deliver(self, fid: int) -> None:
        """A frame arrives: its receiver heard from its sender (node.py's PeerInbound)."""
        frame = self.frames.get(fid)
        if frame is not None and self.members[frame.dst].alive:
            m = self.members[frame.dst]
            self.heard.setdefault((m.name, m.incarnation), {})[frame.src] = self.mono(m)
        super().deliver(fid)

    def record_commit(self, m: Member, seq: int) -> None:
        if seq > len(self.committed):
            self.commit_times.append(self.now)
        super().record_commit(m, seq)

    def follow_membership(self, c: Coord, addr: str) -> None:
        """`_follow_membership`: a watched member failed or left: probe it now."""
        if c.machine.suspect(addr, self.now):
            self.stats["membership prompted probe"] += 1
            self.arm_machine(c)

    # leader-only commands (commands.py)

    def coord_command(self, c: Coord, addr: str, what: str, args, respond) -> None:
        if not self.acting(c):
            respond(NOTLEADER)
            return
        if what == "view":
            respond(c.machine.view)
            return
        if what == "remove":  # MASTER.REMOVE addr: retire it (it may not rejoin by itself)
            self.submit(c, Remove(addr), lambda result: respond("OK"))
            return
        incarnation, epoch = args

        def done(result):
            if result != CLUSTER_ID and result != NOTLEADER:
                if "MASTER.REMOVE" not in result:
                    self.fail(f"the coordinator refused {addr}: {result}")
                result = ("refused", result)
            respond(result)

        self.submit(c, Register(addr, incarnation, CLUSTER_ID, epoch), done)

    # -- member shells (node.py) -------------------------------------------------------------------

    def start_shell(self, m: Member, introducers: list[str] | None = None) -> None:
        self.shells[m.name] = Shell(m.incarnation)
        if introducers is None:
            leader = self.etcd.leader[0] if self.etcd.leader else None
            introducers = [leader] if leader else list(self.coords)
            self.start_detector(m.name, introducers)
        self.after(self.rng.uniform(0, 0.05), self.member_poll, m.name, m.incarnation)

    def member_shell(self, name: str, inc: int) -> Shell | None:
        m = self.members[name]
        s = self.shells.get(name)
        if not m.alive or m.incarnation != inc or s is None or s.inc != inc:
            return None
        return s

    def member_poll(self, name: str, inc: int, token: int = 0) -> None:
        """`_poll_coordinator`: register if not yet, then GET_VIEW; every VIEW_POLL_S or on FetchView."""
        s = self.member_shell(name, inc)
        if s is None or s.polling or (token and token != s.poll_token):
            return
        leader = self.etcd.leader[0] if self.etcd.leader else None
        if leader is None:
            self.poll_later(name, s, VIEW_POLL_S)
            return
        s.polling = True
        m = self.members[name]

        def viewed(value):
            s.polling = False
            if self.member_shell(name, inc) is None:
                return
            if isinstance(value, View):
                self.adopt_view(m, value)
                view = m.replica.view
                if view is not None and name not in view.members and view.learner != name:
                    s.registered = False  # removed: rejoin as a learner
            self.poll_later(name, s, VIEW_POLL_S)

        def get_view():
            c = self.coords[leader]
            self.call(name, leader, lambda respond: self.for_coord(c, c.inc, self.coord_command, name, "view",
                                                                   None, respond), viewed, 2.0)

        if s.registered:
            get_view()
            return

        def registered(value):
            if self.member_shell(name, inc) is None:
                return
            if value == CLUSTER_ID:
                s.registered = True
                get_view()
            elif isinstance(value, tuple):  # refused: the process exits (a supervisor restarts it)
                self.log(f"{name} refused: {value[1]}; it exits")
                self.stats["member refused"] += 1
                self.crash(m)
            else:
                s.polling = False
                self.poll_later(name, s, VIEW_POLL_S)

        c = self.coords[leader]
        args = (m.replica.client_id.decode(), m.replica.epoch)
        self.call(name, leader, lambda respond: self.for_coord(c, c.inc, self.coord_command, name, "register",
                                                               args, respond), registered, 2.0)

    def poll_later(self, name: str, s: Shell, delay: float) -> None:
        s.poll_token = self.token()
        self.after(delay, self.member_poll, name, s.inc, s.poll_token)

    def fetch_view(self, name: str, inc: int) -> None:
        s = self.member_shell(name, inc)
        if s is not None and not s.polling:
            self.poll_later(name, s, 0.0)

    def new_member(self) -> Member:
        m = super().new_member()
        self.log(f"{m.name} starts")
        self.stats["member started"] += 1
        self.start_shell(m)
        return m

    def restart(self, m: Member) -> None:
        super().restart(m)
        self.start_shell(m)

    def crash(self, m: Member) -> None:
        super().crash(m)
        self.stats["member crash"] += 1
        self.after(self.rng.uniform(0.3, 3.0), self.maybe_restart, m.name, m.incarnation)

    def maybe_restart(self, name: str, inc: int) -> None:
        m = self.members[name]
        if not m.alive and m.incarnation == inc:
            self.restart(m)

    # -- coordinators: crash, restart, pause -------------------------------------------------------

    def coord_start(self, c: Coord) -> None:
        """A (re)started coordinator process: reads the leader key and the state, then watches."""
        c.inc += 1
        c.alive, c.paused_until = True, 0.0
        c.election = self.new_election(c.name)
        c.machine, c.timer_at, c.replies = CoordinatorMachine(damping=Damping(self.cfg.flap_quiet_s)), float("inf"), {}
        if self.etcd.state:
            c.machine.follow(self.etcd.state)
        self.step_down(c)
        holder = self.etcd.leader
        self.election_fx(c, c.election.on_leader_key(*(holder if holder else (None, 0, 0)), self.now))

    def coord_fault(self) -> None:
        if not self.faults:
            return
        self.after(self.rng.expovariate(self.cfg.coord_faults), self.coord_fault)
        c = self.coords[self.rng.choice(sorted(self.coords))]
        if not c.alive or self.now < c.paused_until:
            return
        if self.rng.random() < 0.45:
            self.log(f"{c.name} crashes")
            self.stats["coordinator crash"] += 1
            c.alive = False
            self.after(self.rng.uniform(0.3, 3.0), self.coord_restart, c, c.inc)
        else:
            c.paused_until = self.now + self.rng.uniform(0.3, 2.5 * TTL)
            self.log(f"{c.name} pauses until {c.paused_until - T0:.3f}")
            self.stats["coordinator pause"] += 1

    def coord_restart(self, c: Coord, inc: int) -> None:
        if c.alive or c.inc != inc:
            return
        self.log(f"{c.name} restarts")
        self.coord_start(c)
        self.start_detector(c.name, [n for n in self.coords if n != c.name] + sorted(self.members))

    # -- faults --------------------------------------------------------------------------------------

    def member_fault(self) -> None:
        if not self.faults:
            return
        self.after(self.rng.expovariate(self.cfg.member_crashes), self.member_fault)
        alive = [m for m in self.members.values() if m.alive]
        if len(alive) >= 2:
            self.crash(self.rng.choice(alive))

    def partition(self) -> None:
        if not self.faults:
            return
        self.after(self.rng.expovariate(self.cfg.partitions), self.partition)
        nodes = sorted(self.coords) + sorted(self.members)
        a = self.rng.choice(nodes)
        others = [n for n in nodes if n != a]
        group = others if self.rng.random() < 0.6 else [self.rng.choice(others)]
        heal = self.rng.uniform(0.2, 3.0)
        self.log(f"partition {a} from {','.join(group)} for {heal:.3f} s")
        self.stats["partition"] += 1
        self.after(heal, self.net.heal, self.sever(a, group))

    def link_cut(self) -> None:
        """A gray failure: two members of the chain cut from each other for 1-3 s, while both
        still reach the coordinators and the other members (repaired by a link verdict)."""
        if not self.faults:
            return
        self.after(self.rng.expovariate(self.cfg.link_cuts), self.link_cut)
        members = [m for m in self.reconfig.view().members if self.members[m].alive]
        if len(members) < 2:
            return
        a, b = self.rng.sample(members, 2)
        heal = self.rng.uniform(1.0, 3.0)
        self.log(f"link cut {a}<->{b} for {heal:.3f} s")
        self.stats["link cut"] += 1
        self.after(heal, self.net.heal, self.sever(a, [b]))

    def sever(self, a: str, group) -> list:
        """Cut `a` from each of `group` (chain links, RPCs, datagrams): the pairs, to heal."""
        pairs = self.net.cut(a, group)
        for pair in pairs:
            x, y = sorted(pair)
            if x in self.members and y in self.members:
                for src, dst in ((x, y), (y, x)):
                    if self.members[src].alive and self.members[dst].alive:
                        self.cut_link(src, dst, down_for=None)
        return pairs

    def clock_step(self) -> None:
        """A member's wall clock steps ahead or back (NTP, an operator): expiry stamps move with
        it, its read lease (monotonic) must not. Coordinators use no wall clock at all."""
        if not self.faults:
            return
        self.after(self.rng.expovariate(self.cfg.clock_steps), self.clock_step)
        m = self.members[self.rng.choice(sorted(self.members))]
        step = self.rng.choice((-1, 1)) * self.rng.uniform(0.5, 3.0)
        m.wall_step += step
        self.log(f"{m.name}'s wall clock steps {step:+.3f} s (now {m.wall_step:+.3f} s off)")
        self.stats["clock step"] += 1

    def mono(self, m: Member) -> float:
        return super().mono(m) if self.cfg.two_clocks else self.wall(m)

    def check_deadline(self, entry) -> None:
        if self.cfg.deadlines_across_steps or not any(m.wall_step for m in self.members.values()):
            super().check_deadline(entry)

    def operator_remove(self) -> None:
        """An operator's MASTER.REMOVE of a member (usually running) sent to the leader."""
        if not self.faults:
            return
        self.after(self.rng.expovariate(self.cfg.removes), self.operator_remove)
        view = self.reconfig.view()
        leader = self.etcd.leader[0] if self.etcd.leader else None
        if leader is None or len(view.members) < (3 if self.cfg.careful_operator else 2) or self.removing:
            return
        addr = self.rng.choice(list(view.members) + ([view.learner] if view.learner else []))
        self.log(f"operator: MASTER.REMOVE {addr} at {leader}")
        self.stats["operator remove"] += 1
        c = self.coords[leader]
        self.removing = self.cfg.careful_operator

        def answered(value):
            self.removing = False

        self.call("operator", leader, lambda respond: self.for_coord(c, c.inc, self.coord_command, addr, "remove",
                                                                     None, respond), answered, 2.0)

    def join(self) -> None:
        if not self.faults:
            return
        self.after(self.rng.expovariate(self.cfg.joins), self.join)
        if len(self.members) < self.cfg.max_members:
            self.new_member()

    # -- running ---------------------------------------------------------------------------------

    def run(self) -> ClusterSim:
        cfg = self.cfg
        founders = [super(ClusterSim, self).new_member() for _ in range(cfg.members)]
        ids = [MemberId(n, PORT, EPOCH_MS) for n in sorted(self.coords) + [m.name for m in founders]]
        for c in self.coords.values():
            self.coord_start(c)
            self.start_detector(c.name, [], bootstrap=ids)
        for m in founders:
            self.start_shell(m, introducers=[])
            self.start_detector(m.name, [], bootstrap=ids)
        self.after(EXPIRY_CHECK_S, self.etcd_expiry)
        self.run_until(lambda: len(self.reconfig.view().members) == cfg.members
                       and not self.reconfig.view().learner, T0 + 20.0)
        if len(self.reconfig.view().members) != cfg.members:
            self.fail("the chain was not founded: " + self.describe())
        for i in range(cfg.clients):
            self.clients.append(Client(i, b"c%d" % i))
            self.after(self.rng.uniform(0, 0.01), self.client_next, i)
        for rate, fn in ((cfg.cuts + cfg.slow, self.random_fault), (cfg.member_crashes, self.member_fault),
                         (cfg.coord_faults, self.coord_fault), (cfg.partitions, self.partition),
                         (cfg.link_cuts, self.link_cut),
                         (cfg.joins, self.join), (cfg.removes, self.operator_remove),
                         (cfg.clock_steps, self.clock_step)):
            if rate > 0:
                self.after(self.rng.expovariate(rate), fn)
        self.run_until(lambda: False, self.now + cfg.duration)
        self.liveness()
        return self

    def liveness(self) -> None:
        self.faults = False
        self.ended = True
        self.loss = 0.0
        self.net.clear()
        self.log("liveness phase")
        for c in self.coords.values():
            c.paused_until = min(c.paused_until, self.now)
            if not c.alive:
                self.coord_restart(c, c.inc)
        for m in self.members.values():
            if not m.alive:
                self.restart(m)
        for (src, dst), link in self.links.items():
            if not link.up and self.members[src].alive and self.members[dst].alive:
                self.after(self.rng.uniform(0, 0.05), self.reconnect, src, dst, link.conn)
        self.run_until(self.settled, self.now + self.cfg.settle)
        if not self.settled():
            self.fail("no convergence in the liveness phase: " + self.describe())
        self.final_checks()

    def settled(self) -> bool:
        leaders = [c for c in self.coords.values() if c.alive and c.election.leading(self.now)]
        if len(leaders) != 1 or not self.converged():
            return False
        view = self.reconfig.view()
        return all(m.name in view.members for m in self.members.values())

    def describe(self) -> str:
        parts = [super().describe()]
        parts += [f"{c.name}: alive={c.alive} role={c.election.role} leading={c.election.leading(self.now)} "
                  f"saved={c.machine.view}" for c in self.coords.values()]
        parts += [f"{n}: alive={m.alive} epoch={m.replica.epoch} registered={self.shells[n].registered}"
                  for n, m in self.members.items() if n in self.shells]
        return "\n".join(parts)


def run_seed(seed: int, **overrides) -> ClusterSim:
    return ClusterSim(ClusterConfig(seed=seed, **overrides)).run()


def main(argv=None) -> int:
    cli = argparse.ArgumentParser(description="Seeded whole-cluster simulation (replays exactly from a seed)")
    cli.add_argument("--seed", type=int, help="run this seed only")
    cli.add_argument("--seeds", type=int, default=100, help="how many seeds, from --first on")
    cli.add_argument("--first", type=int, default=0, help="the first seed")
    cli.add_argument("--trace", action="store_true", help="print every event as it happens")
    cli.add_argument("--no-revoke", action="store_true", help="planted fault: never revoke read leases")
    cli.add_argument("--no-leases", action="store_true", help="planted fault: members take no read leases")
    opts = cli.parse_args(argv)
    todo = range(opts.first, opts.first + opts.seeds) if opts.seed is None else [opts.seed]
    passed = []
    for seed in todo:
        try:
            sim = run_seed(seed, trace=opts.trace, revoke=not opts.no_revoke, leases=not opts.no_leases)
        except SimFailure as exc:
            print(exc, file=sys.stderr)
        else:
            passed.append(seed)
            print(f"seed={seed} ok: {len(sim.history.operations())} ops, {len(sim.committed)} committed, "
                  f"{len(sim.views)} views, {sim.takeovers} takeovers, {sim.check_result}")
    print(f"{len(passed)} of {len(todo)} seeds passed")
    return 0 if len(passed) == len(todo) else 1


if __name__ == "__main__":
    sys.exit(main())
