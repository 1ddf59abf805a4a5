"""Seeded simulation of a sharded cluster: two chains in cluster mode, the coordinator leader's
slot map and slot moves as the service runs them, clients routing by slot, under faults that
hit mid-move (docs/sharding.md §3 and §5).

Built on slot_move_sim.py's `MoveSim` (its kernel, chains of `Replica` machines, links, clients
that follow -MOVED and retry -TRYAGAIN under one CATENA.REQ id, and its driver calls), this adds
what the coordinator's service adds around them, executing the pure machines' effects the way
service.py, calls.py, moves.py and move_runner.py do:

- a **term** per coordinator leader, with the store's fence, and in it **one real
  `CoordinatorMachine` per chain** (coordinator/machine.py), as service.py runs them: each leads
  from its chain's part of the store (`layout.chain_state`; the chains were founded before the
  run, their epoch-1 views saved) and decides every view of its chain. Their effects are
  executed by coordinator_shell.py, as cluster_sim.py executes its machine's: probes reach
  `Replica.on_probe` (read leases granted, so revoke-or-wait matters), revokes, pushes, the
  tail's status for the learner hand-over, fenced saves of the chain's parts only. A crashed
  member is found by its machine's probes (refused, or missed while cut off) and taken out; its
  members' shells (node.py's loop: MASTER.REGISTER, MASTER.GET_VIEW every second or on
  FetchView, MASTER.CAUGHT_UP from the tail) bring it back: registered again, taken in as a
  learner behind the tail, promoted when the tail vouches for it. A new term's machines finish
  what the last left (push the saved view, resume the learner watch).
- `Shards` (coordinator/shards.py)
  leads from the saved `slots` part (a new store: the even split over chains 0 and 1), syncs each
  chain's table with `CATENA.SLOTS FENCE f … none` at its head, saves the map with the chain
  synced and pushes `MEMBER.SHARD` to every member of the other chain; views it is handed after
  every change of a machine's view. The store is a fenced dict of parts: a save from a term
  that is not the current one is refused (NotLeader), and that term stops (all its machines
  step down).
- **moves** one at a time per term (moves.py's `Mover`): the operator's planned `MASTER.MOVE`s
  (the clients' hot slots, one of them moved away and back, and an empty one), each a
  `Migration` (coordinator/migration.py) whose every phase is saved first as its `moves/<slot>`
  part (moves.encode) and deleted once done or undone; at the `map` phase `Shards.assign` saves
  the map with the slot at its new chain before the move goes on. A new term resumes every intent
  it finds (moves.intents), then the operator re-sends what is left, planned from the map (as
  `catena reshard` does after a leader died mid-range).
- faults, several per run, most while moves are under way: member crashes (the member restarts
  on an empty disk as a new incarnation), replies lost on their way (the caller sends again
  under the same request id), members cut off for a while (from the coordinator too: the
  driver's calls, the map's pushes and the machine's probes fail), partitions between the
  coordinator and one member that still reaches its chain and the clients (a long one takes
  it out of its chain: its lease revoked or waited out first; healed, it registers again and
  rejoins as a learner once the flap quiet passed), the leader crashing (a successor leads
  with a higher fence 0.05-1 s later) or pausing past its lease (a successor leads; when the
  paused one wakes its lease ran out and it steps down; its calls and saves still on their
  way are refused by the tables' and the store's fences), driver calls slow on their way, and
  a leader dying right after a pre-copy was applied (MoveSim's).

Checks, while it runs: every view a member adopts was saved by its chain's machine; per chain,
saved views never regress (one view per epoch); no member's commit point goes back; a failure
in one chain never changes another chain's view (a machine saves only its own chain's part,
names only its chain's members in views, and judges only them). After a quiet phase: every
planned move ended (done, or undone and sent again), no intent is left in the store, every
chain is whole again (every member in its chain's saved view, no learner left, each holding
that view); every member of each chain holds the same data and seq, and its
table agrees with the saved map for every one of the 16,384 slots (owned exactly where the map
says, given or none elsewhere); no chain keeps a key of a slot it does not own; the history of
every key is linearizable across the moves (final reads at the owning chain's tail); each
counter (one per moved slot, written by INCRs retried under their request id after -MOVED) lies
between the increments acknowledged and those issued.

It found that a member restarted on an empty disk acted on a view pushed for its old
incarnation (as head it wiped its successors; tests/unit/test_lost_disk_member.py).

Not modelled here (cluster_sim.py covers them on one chain): restarts from a member's own disk,
etcd's election and leases (a term simply begins; a paused one steps down when it wakes),
several coordinator processes (the machines of a new term start afresh, as a standby's would),
the membership layer (probes alone find failures), link reports and their verdicts (probes carry
none), MASTER.ADD/REMOVE and sessions.

`python tests/sim/shard_sim.py --seed N` replays one run; `--runs M` runs seeds N..N+M-1.
"""

from __future__ import annotations

import collections
import itertools
import sys
from dataclasses import dataclass, field
from pathlib import Path

from catena.chain import cluster_commands
from catena.chain.replica import Replica
from catena.chain.slot_table import GIVEN, NONE, OWNED
from catena.check import check
from catena.coordinator import layout, moves
from catena.coordinator import slot_map as sm
from catena.coordinator.damping import Damping
from catena.coordinator.effects import Fail
from catena.coordinator.machine import CoordinatorMachine
from catena.coordinator.reconfig import CoordinatorState
from catena.coordinator.requests import Register, watched
from catena.coordinator.migration import FINAL, Call, Finished, Migration, Save, SaveMap
from catena.coordinator.shards import PushShard, SaveMap as SaveSlotMap, Shards, SyncTable
from catena.effects import LearnerCaughtUp, Reply
from catena.leases import LEASE_S
from catena.resp.codec import Error
from catena.slots import SLOTS, key_slot
from catena.view import View

sys.path.insert(0, str(Path(__file__).parent))

import slot_move_sim  # noqa: E402 (tests/sim is not a package)
from coordinator_shell import NOTLEADER, REFUSED, TIMEOUT, MachineShell, Shell  # noqa: E402
from slot_move_sim import TICK_S as TICK_S_MEMBER, A, B, MoveSim  # noqa: E402

CHAINS = (A, B)
HOT = key_slot(b"m"), key_slot(b"b")  # chain 1's and chain 0's in the even split: written by the clients
EMPTY = 100  # a slot nobody writes
PLAN = ((HOT[0], A), (HOT[1], B), (EMPTY, B), (HOT[0], B))  # (slot, target chain): MASTER.MOVEs in order
KEYS = [b"{m}k0", b"{m}k1", b"{b}k0", b"{o}k"]  # two hot slots and one that stays
COUNTERS = (b"{m}n", b"{b}n")
TICK_S = 0.05  # the shells' timers (shards' retries, the operator)
CALL_TIMEOUT_S = 0.5
COORDINATOR = "coordinator"  # the leader, as the partitions know it
REPLY_LOSS = 0.02  # replies lost on their way while faults run
CLUSTER_ID = "shards"
VIEW_POLL_S = 1.0  # node.py's poll of its chain's view (MASTER.GET_VIEW), and its registration retries
MEMBER_CALL_TIMEOUT_S = 2.0  # a member's calls to the coordinator
QUIET_S = 0.5  # the machines' flap quiet (--flap-quiet-ms): a member taken out rejoins after it


class ShellCommands(dict):
    """The member shell's commands of cluster_commands.py (MEMBER.SHARD), by name: the shell's
    command table, for the replica it is called with."""

    def __init__(self):
        super().__init__()
        self.replica = None
        cluster_commands.register(self, lambda: self.replica)

    def register(self, name: bytes, fn, arity: int, role=None) -> None:
        def call(client, args, replica, fn=fn):
            self.replica = replica
            return fn(client, args)
        self[name] = call


@dataclass(eq=False)
class Seat:
    """One chain's `CoordinatorMachine` in a leader's term (service.py's `machines[chain]`)."""
    term: "Term" = field(repr=False)
    chain: int
    machine: CoordinatorMachine
    timer_at: float = float("inf")
    timer_gen: int = 0
    replies: dict = field(default_factory=dict)  # token -> respond, for requests the machine answers

    @property
    def name(self) -> str:
        return f"term {self.term.fence} chain {self.chain}"


@dataclass(eq=False)
class Term:
    """One coordinator leader's term: its fence, a machine per chain, its `Shards`, the move it drives."""
    fence: int
    seats: dict[int, Seat] = field(default_factory=dict)
    shards: Shards = field(default_factory=Shards)
    driver: Migration | None = None
    resume: list = field(default_factory=list)  # intents found at the start of the term, to finish first
    crashed: bool = False
    deposed: bool = False  # a save was refused: the term is over (the service steps down)
    paused_until: float = 0.0
    map_wait: tuple | None = None  # (driver, slot, chain): a move waits for its map save


class ShardSim(MachineShell, MoveSim):
    keys, counters = KEYS, COUNTERS
    think_s = 0.01

    def __init__(self, seed: int, faults: bool = True, clients: int = 3, ops: int = 10):
        super().__init__(seed, faults, clients, ops)
        self.store: dict[str, dict] = {}  # the store's parts (layout.py names)
        self.store_fence = 0
        self.term: Term | None = None
        self.terms_of: dict[Migration, tuple[Term, bytes]] = {}  # driver -> its term and request-id name
        self.movers = itertools.count(1)
        self.step = 0  # the operator's next planned move
        self.results: list[str] = []  # every move's final phase
        self.routes: dict | None = None  # the map clients start from
        self.shell_commands = ShellCommands()
        self.resumed = 0  # intents a new term found and resumed
        self.incarnations: dict[str, int] = {}
        self.restarts = 0  # members restarted on an empty disk and rejoined as learners
        self.replies_lost = 0
        self.resent = 0  # writes of unknown outcome sent again after -MOVED
        self.stats: collections.Counter = collections.Counter()  # what the machines did
        self.saved_views = {chain: {1: view} for chain, view in self.views.items()}  # chain -> epoch -> view
        self.fresh: set[str] = set()  # restarted on an empty disk, not yet promoted to a member again
        self.commits: dict[str, tuple[Replica, int]] = {}  # member -> (its replica, highest commit_seq seen)
        self.shells = {name: Shell(1, registered=True) for name in self.replicas}
        for chain, view in self.views.items():  # founded before the run (a term leads from here)
            registry = {n: self.replicas[n].client_id.decode() for n in view.members}
            self.store.update(layout.parts_of(CoordinatorState({chain: view}, registry,
                                                               cluster_id=CLUSTER_ID).to_dict()))
        for name in self.replicas:
            self.after(self.rng.uniform(0, VIEW_POLL_S), self.member_poll, name, 1)

    def new_replica(self, name: str, incarnation: int) -> Replica:
        """A member as `catena member --coordinator` runs it: it reads only under a read lease.
        The first incarnations are the chains' founders, which have seen epoch 1 (their views are
        saved before the run); a restarted one has an empty disk."""
        return Replica(name, f"{name}/{incarnation}".encode(), cluster=True, lease_s=LEASE_S, managed=True,
                       epoch=1 if incarnation == 1 else 0)

    def log(self, text: str) -> None:
        self.trace.append(f"{self.now:.3f} {text}")

    def input(self, name: str, fn, *args) -> None:
        """A member's input; its commit point never goes back (that would lose committed writes)."""
        super().input(name, fn, *args)
        r, seen = self.replicas[name], self.commits.get(name)
        if seen is not None and seen[0] is r and r.commit_seq < seen[1]:
            self.fail(f"{name}'s commit point went back from seq {seen[1]} to {r.commit_seq}: committed writes lost")
        self.commits[name] = (r, r.commit_seq)

    def token(self) -> int:
        return next(self.tokens)

    def delay(self) -> float:
        return self.rng.uniform(0.0002, 0.002)

    def initial_table(self, chain: int, replica: Replica) -> None:
        """Every chain starts owning every slot (cluster mode); Shards syncs them to the map."""

    # -- the store and terms -----------------------------------------------------------------------

    @property
    def slot_map(self) -> dict | None:
        return self.store.get(layout.SLOTS)

    def new_term(self) -> None:
        """A coordinator leads (`_start_term`): the map's keeper, then the intents it finds."""
        self.store_fence += 1
        t = self.term = Term(self.store_fence, resume=moves.intents(self.store))
        self.resumed += len(t.resume)
        self.trace.append(f"{self.now:.3f} term {t.fence} leads; intents {[(m.slot, m.phase) for m in t.resume]}")
        for chain in CHAINS:  # `_start_term`: every chain's machine leads from its part, then the map's keeper
            c = t.seats[chain] = Seat(t, chain, CoordinatorMachine(chain_id=chain, damping=Damping(QUIET_S)))
            self.machine_fx(c, c.machine.lead(self.now, layout.chain_state(self.store, chain), CLUSTER_ID))
            self.stats["add left to the next term"] += c.machine.view.learner is not None
        self.shards_fx(t, t.shards.lead(self.slot_map, len(CHAINS), t.fence, self.term_views(t), self.now,
                                        new_store=layout.SLOTS not in self.store))
        self.after(TICK_S, self.term_tick, t)

    def term_views(self, t: Term) -> dict[int, View]:
        return {chain: c.machine.view for chain, c in t.seats.items()}

    def for_term(self, t: Term, fn, *args) -> None:
        """Run `fn` as term `t`'s process: never once it crashed or stepped down (service.py
        cancels a term's work), after its pause if paused."""
        if t.crashed or t.deposed:
            return
        if self.now < t.paused_until:
            self.at(t.paused_until, self.for_term, t, fn, *args)
            return
        fn(*args)

    def save(self, t: Term, parts: dict, then) -> None:
        """The fenced transaction (`calls.save`): `then(ok)` back at the term."""
        def at_store():
            ok = t.fence == self.store_fence
            if ok:
                self.accepted(parts)
                for name, part in parts.items():
                    if part is None:
                        self.store.pop(name, None)
                    else:
                        self.store[name] = part
            self.after(self.rng.uniform(0.001, 0.01), self.for_term, t, then, ok)

        self.after(self.rng.uniform(0.001, 0.01), at_store)

    def crash_driver(self) -> None:  # MoveSim's driver faults hit the leader
        self.crash_leader()

    def crash_leader(self) -> None:
        t = self.term
        if t is None or t.crashed or not self.faults:
            return
        self.trace.append(f"{self.now:.3f} leader {t.fence} crashes (moving {t.driver and t.driver.move})")
        t.crashed = True
        self.term = None
        self.after(self.rng.uniform(0.05, 1.0), self.new_term)

    def pause_leader(self) -> None:
        """SIGSTOP past its lease: a successor leads; when the paused one wakes, its lease timer
        fires first and it steps down (its calls and saves still on their way are refused by the
        tables' and the store's fences)."""
        t = self.term
        if t is None or t.crashed or self.now < t.paused_until:
            return
        pause = self.rng.uniform(0.3, 2.0)
        self.trace.append(f"{self.now:.3f} leader {t.fence} pauses for {pause:.3f}s")
        t.paused_until = self.now + pause
        self.term = None
        self.after(self.rng.uniform(0.1, pause), self.new_term)
        self.at(t.paused_until, self.wake, t)

    def wake(self, t: Term) -> None:
        if self.term is not t:
            self.log(f"leader {t.fence} wakes: its lease ran out; it steps down")
            self.depose(t)

    def depose(self, t: Term) -> None:
        """The term is over (a save refused, or its lease lost): every machine steps down."""
        if t.deposed:
            return
        for c in t.seats.values():
            self.machine_fx(c, c.machine.step_down())
        t.deposed = True
        t.shards.step_down()

    def term_tick(self, t: Term) -> None:
        """The service's timer: shards' retries, the driver's re-sends, the next move."""
        def tick():
            if t.deposed:
                return
            self.shards_fx(t, t.shards.on_timer(self.now))
            if t.driver is not None and not t.driver.finished:
                self.drive(t.driver, t.driver.on_timer(self.now))
            self.next_move(t)
            self.after(TICK_S, self.term_tick, t)

        self.for_term(t, tick)

    # -- the map: shards.py's effects, executed as calls.run_shards does -----------------------------

    def shards_fx(self, t: Term, fx: list) -> None:
        for f in fx:
            if type(f) is SaveSlotMap:
                self.save(t, {layout.SLOTS: f.slot_map}, lambda ok: self.map_saved(t, ok))
            elif type(f) is SyncTable:
                self.sync_table(t, f, list(f.calls))
            elif type(f) is PushShard:
                self.member_call(f.member, f.words, lambda value, f=f: self.shards_fx(
                    t, t.shards.on_pushed(f.member, f.chain, f.stamp, value is not None, self.now)))

    def map_saved(self, t: Term, ok: bool) -> None:
        self.shards_fx(t, t.shards.on_saved(ok, self.now))
        if not t.shards.leading:
            self.depose(t)
        if t.map_wait is not None:  # moves.py `_save_map`: on once the map names the slot's new chain
            driver, slot, chain = t.map_wait
            if t.deposed:
                t.map_wait = None
            elif sm.owner(t.shards.slot_map, slot) == chain:
                t.map_wait = None
                self.drive(driver, driver.on_saved(driver.move, self.now))

    def sync_table(self, t: Term, f: SyncTable, calls: list) -> None:
        if not calls:
            self.shards_fx(t, t.shards.on_synced(f.chain, True, self.now))
            return

        def answered(value):
            if value is None:
                self.shards_fx(t, t.shards.on_synced(f.chain, False, self.now))
            else:
                self.sync_table(t, f, calls[1:])

        self.member_call(f.head, calls[0], lambda value: self.for_term(t, answered, value))

    def member_call(self, name: str, words, then) -> None:
        """A coordinator's call to a member: `then(reply)`, None if it failed on the way."""
        token, state = next(self.tokens), {"done": False}

        def reply(value):
            if not state["done"]:
                state["done"] = True
                self.waiting.pop(token, None)
                then(None if type(value) is Error else value)  # calls.py `_call`: None if it failed

        self.waiting[token] = reply
        self.after(CALL_TIMEOUT_S, reply, None)
        if not self.reaches(name):
            return  # it times out
        if words[0] == b"MEMBER.SHARD":  # answered by the member's shell (node.py's command table)
            self.after(self.rng.uniform(0.0002, 0.002), self.shell_command, name, token, list(words))
        else:
            self.after(self.rng.uniform(0.0002, 0.002), self.arrive, name, token, list(words))

    def shell_command(self, name: str, token: int, words: list) -> None:
        if name in self.alive:
            reply = self.waiting.get(token)
            if reply is not None:
                self.after(self.rng.uniform(0.0002, 0.001), reply,
                           self.shell_commands[words[0]](None, words, self.replicas[name]))

    def reaches(self, name: str) -> bool:
        """A member cut off is cut off from the coordinator too: its calls fail."""
        return super().reaches(name) and self.parts.reachable(COORDINATOR, name)

    # -- the chains' machines: coordinator_shell.py's hooks, as service.py and calls.py run them -----

    def machine_fx(self, c: Seat, effects: list) -> None:
        """Execute a machine's effects; when its view changed, hand the views to `Shards`."""
        super().machine_fx(c, effects)
        t = c.term
        if t.shards.leading and not t.deposed and t.shards.views.get(c.chain) != c.machine.view:
            self.shards_fx(t, t.shards.on_views(self.term_views(t), self.now))

    def machine_at(self, c: Seat, when: float, fn, *args) -> None:
        self.at(when, self.for_term, c.term, fn, c, *args)

    def machine_call(self, c: Seat, member: str, at_member, answered, timeout_s: float) -> None:
        t, ended = c.term, []

        def end(value):
            if not ended:
                ended.append(value)
                self.for_term(t, answered, value)

        self.after(timeout_s, end, TIMEOUT)
        if not self.parts.reachable(COORDINATOR, member):
            return

        def arrive():
            if member not in self.alive:  # no process: the connection is refused
                self.after(self.delay(), end, REFUSED)
                return
            inc = self.incarnation(member)

            def respond(value):
                if member in self.alive and self.incarnation(member) == inc and self.parts.reachable(COORDINATOR,
                                                                                                     member):
                    self.after(self.delay(), end, value)

            at_member(respond)

        self.after(self.delay(), arrive)

    def save_state(self, c: Seat, fx) -> None:
        """The machine's fenced save of its chain's parts; one that names another chain's fails."""
        parts = layout.parts_of(fx.state) if fx.parts is None else fx.parts
        foreign = [n for n in parts if n not in (layout.CLUSTER, layout.chain_part(c.chain))
                   and not n.startswith("sessions/")]
        if foreign:
            self.fail(f"chain {c.chain}'s machine saves parts of another: {foreign}")
        self.save(c.term, parts, lambda ok: self.machine_saved(c, ok))

    def machine_saved(self, c: Seat, ok: bool) -> None:
        self.machine_fx(c, c.machine.on_save_result(ok, self.now))
        if not ok:
            self.depose(c.term)

    def verdict(self, c: Seat, fx) -> None:
        """A verdict of chain X's machine is about a member of chain X, never of another chain."""
        super().verdict(c, fx)
        self.stats["running member taken out"] += type(fx) is Fail and fx.member in self.alive
        if self.chain_of.get(fx.member) != c.chain:
            self.fail(f"chain {c.chain}'s machine judged {fx.member} of chain {self.chain_of.get(fx.member)}: {fx}")

    def accepted(self, parts: dict) -> None:
        """A save the store accepted: per chain, views never regress (one view per epoch) and
        name only that chain's members."""
        for name, part in parts.items():
            if not name.startswith("chains/") or part is None:
                continue
            chain, view = int(name.split("/")[1]), View.from_wire(part["view"])
            last = self.views[chain]
            if view.epoch < last.epoch or (view.epoch == last.epoch and view != last):
                self.fail(f"chain {chain}'s saved view regressed: {last} then {view}")
            if self.saved_views[chain].setdefault(view.epoch, view) != view:
                self.fail(f"two views of chain {chain} saved under epoch {view.epoch}")
            strangers = sorted(m for m in watched(view) if self.chain_of.get(m) != chain)
            if strangers:
                self.fail(f"chain {chain}'s view {view} names members of another chain: {strangers}")
            if view != last:
                self.log(f"saved chain {chain} view {view.epoch} {','.join(view.members)} learner={view.learner}")
            self.fresh -= {m for m in view.members if m == last.learner}
            self.views[chain] = view

    # -- members: answering the machines' calls, and node.py's coordinator loop --------------------------

    def incarnation(self, name: str) -> int:
        return self.incarnations.get(name, 1)

    def member_probe(self, name: str, epoch: int, nonce: int, grant: int, respond) -> None:
        r = self.replicas[name]
        self.input(name, r.on_probe, epoch, nonce, grant, self.now)
        respond((r.client_id.decode(), None))  # (no link reports: no link verdicts here)

    def member_revoke(self, name: str, epoch: int, respond) -> None:
        self.replicas[name].revoke(epoch)
        respond("OK")

    def member_view(self, name: str, view: View, respond) -> None:
        self.adopt_view(name, view)
        respond("OK")

    def member_status(self, name: str, respond) -> None:
        respond(self.replicas[name].status())

    def adopt_view(self, name: str, view: View) -> None:
        """node.py `_on_view`: a newer view (or the first after a restart), which its chain's
        machine must have saved."""
        r = self.replicas[name]
        if view.chain_id != self.chain_of[name]:
            self.fail(f"{name} of chain {self.chain_of[name]} is told chain {view.chain_id}'s view {view}")
        if view.epoch > r.epoch or r.view is None:
            if self.saved_views[view.chain_id].get(view.epoch) != view:
                self.fail(f"{name} is told view {view} that its chain's machine never saved")
            self.input(name, r.on_view, view, self.now)

    def to_leader(self, name: str, handler, done) -> None:
        """A member's call to the leader's machine of its chain: `handler(c, respond)` there
        (NOTLEADER once that term is over); `done(value)` back at the member, once."""
        t, ended = self.term, []

        def end(value):
            if not ended:
                ended.append(value)
                done(value)

        self.after(MEMBER_CALL_TIMEOUT_S, end, TIMEOUT)
        if t is None or not self.parts.reachable(COORDINATOR, name):
            return
        c = t.seats[self.chain_of[name]]

        def at_leader():
            def respond(value):
                if not t.crashed and self.parts.reachable(COORDINATOR, name):
                    self.after(self.delay(), end, value)

            if t.deposed or not c.machine.leading:
                respond(NOTLEADER)
            else:
                handler(c, respond)

        self.after(self.delay(), self.for_term, t, at_leader)

    def member_poll(self, name: str, inc: int, token: int = 0) -> None:
        """`_poll_coordinator`: register if not yet, then GET_VIEW; every VIEW_POLL_S or on FetchView."""
        s = self.shells[name]
        if name not in self.alive or s.inc != inc or s.polling or (token and token != s.poll_token):
            return
        s.polling = True

        def current() -> bool:
            return name in self.alive and self.shells[name] is s

        def viewed(value):
            s.polling = False
            if not current():
                return
            if isinstance(value, View):
                self.adopt_view(name, value)
                if name not in watched(value):
                    s.registered = False  # taken out: register again (it rejoins as a learner)
            self.poll_later(name, s, VIEW_POLL_S)

        def get_view():
            self.to_leader(name, lambda c, respond: respond(c.machine.view), viewed)

        def registered(value):
            if not current():
                return
            if value == CLUSTER_ID:
                s.registered = True
                get_view()
                return
            if value not in (NOTLEADER, TIMEOUT, REFUSED):
                self.fail(f"the coordinator refused {name}: {value}")
            s.polling = False
            self.poll_later(name, s, VIEW_POLL_S)

        if s.registered:
            get_view()
            return
        r = self.replicas[name]
        what = Register(name, r.client_id.decode(), CLUSTER_ID, r.epoch)
        self.to_leader(name, lambda c, respond: self.submit(c, what, respond), registered)

    def poll_later(self, name: str, s: Shell, delay: float) -> None:
        s.poll_token = self.token()
        self.after(delay, self.member_poll, name, s.inc, s.poll_token)

    def fetch_view(self, name: str) -> None:
        s = self.shells[name]
        if name in self.alive and not s.polling:
            self.poll_later(name, s, 0.0)

    def caught_up(self, f: LearnerCaughtUp) -> None:
        """node.py `_tell_caught_up`: the tail tells the leader (MASTER.CAUGHT_UP), once."""
        tail = self.views[f.chain_id].tail
        if tail is not None:
            self.to_leader(tail, lambda c, respond: (self.caught_up_at(c, f.epoch, f.learner), respond("OK")),
                           lambda value: None)

    def crash(self, name: str) -> None:
        """A member process dies (while another member of its chain holds the chain's data); the
        machine's probes find it. It restarts on an empty disk as a new incarnation, registers,
        and its machine takes it in as a learner behind the tail and promotes it once caught up."""
        chain = self.chain_of[name]
        standing = [m for m in self.views[chain].members if m in self.alive and m not in self.fresh and m != name]
        if name not in self.alive or not standing:
            return
        self.trace.append(f"{self.now:.3f} crash {name}")
        self.alive.discard(name)
        self.after(self.rng.uniform(0.2, 1.0), self.restart, name)

    def restart(self, name: str) -> None:
        inc = self.incarnations[name] = self.incarnation(name) + 1
        self.replicas[name] = self.new_replica(name, inc)
        self.alive.add(name)
        self.fresh.add(name)
        s = self.shells[name] = Shell(inc)
        self.after(TICK_S_MEMBER, self.tick, name)
        self.trace.append(f"{self.now:.3f} {name} restarts on an empty disk (incarnation {inc})")
        self.restarts += 1
        self.poll_later(name, s, self.rng.uniform(0, 0.05))

    def cut_from_coordinator(self, name: str, seconds: float) -> None:
        """A partition between the coordinator and one member, which still reaches its chain
        and the clients: its probes and pushes fail; a long one takes it out of its chain."""
        self.trace.append(f"{self.now:.3f} cut {name} from the coordinator for {seconds:.3f}s")
        self.stats["coordinator cut"] += 1
        self.after(seconds, self.parts.heal, self.parts.cut(COORDINATOR, [name]))

    def execute(self, name: str, fx) -> None:
        """A reply may be lost on its way while faults run (the connection broke after the
        command applied): its caller times out with the outcome unknown and sends it again, the
        same request id included (a client, often to the slot's next chain after -MOVED; the
        driver; the coordinator's pushes)."""
        if self.faults and fx:
            kept = [f for f in fx if type(f) is not Reply or self.rng.random() >= REPLY_LOSS]
            self.replies_lost += len(fx) - len(kept)
            fx = kept
        super().execute(name, fx)

    def push_view(self, chain: int) -> None:
        """Views reach members from the chains' machines only (their pushes, the members' polls)."""

    def deliver_view(self, name: str, view) -> None:
        """A member asks for its chain's view (`FetchView`): from the leader, at once. The other
        chains' views it learns only from MEMBER.SHARD pushes."""
        if self.chain_of[name] == view.chain_id:
            self.fetch_view(name)

    # -- moves: moves.py's Mover around migration.py, as move_runner.py executes it -------------------

    def next_move(self, t: Term) -> None:
        """One move at a time: first the intents the term found, then the operator's plan."""
        if t.driver is not None or t.deposed or t.shards.slot_map is None or self.term is not t:
            return
        if t.resume:
            self.start_driver(t, *Migration.resume(t.resume.pop(0), self.now, fence=t.fence))
            return
        if len(t.shards.slot_map["synced"]) < len(CHAINS):
            return
        while self.step < len(PLAN) and sm.owner(self.slot_map, PLAN[self.step][0]) == PLAN[self.step][1]:
            self.step += 1  # done (by this term, or by one before it)
        if self.step < len(PLAN):
            slot, target = PLAN[self.step]
            source = sm.owner(t.shards.slot_map, slot)
            self.trace.append(f"{self.now:.3f} operator: MASTER.MOVE {slot} {target} (from {source})")
            self.start_driver(t, *Migration.start(slot, source, target, self.now, fence=t.fence))

    def start_driver(self, t: Term, driver: Migration, fx: list) -> None:
        t.driver = driver
        self.terms_of[driver] = (t, b"mover%d/%d" % (next(self.movers), t.fence))  # run_move's own name
        self.drive(driver, fx)

    @property
    def fence(self) -> int:
        return int(self.driver_name.split(b"/")[1])

    def call(self, driver: Migration, f: Call) -> None:
        self.driver_name = self.terms_of[driver][1]
        super().call(driver, f)

    def drive(self, driver: Migration, fx) -> None:
        """move_runner.run_move: the effects one by one, a save awaited before what follows it."""
        t, _ = self.terms_of[driver]
        self.for_term(t, self.run_driver, t, driver, list(fx))

    def run_driver(self, t: Term, driver: Migration, todo: list) -> None:
        if t.deposed or t.driver is not driver:
            return
        while todo:
            f = todo.pop(0)
            if type(f) is Save:
                part = None if f.move.phase in FINAL else moves.encode(f.move)
                self.trace.append(f"{self.now:.3f} term {t.fence} saves slot {f.move.slot} at {f.move.phase}")
                self.save(t, {layout.move_part(f.move.slot): part},
                          lambda ok, m=f.move, rest=todo: self.driver_saved(driver, m, ok, rest))
                return
            if type(f) is SaveMap:
                t.map_wait = (driver, f.slot, f.chain)
                self.shards_fx(t, t.shards.assign(f.slot, f.chain, self.now))
                return
            if type(f) is Call:
                self.for_term(t, self.call, driver, f)
            elif type(f) is Finished:
                self.trace.append(f"{self.now:.3f} move of slot {f.move.slot} {f.move.phase}")
                self.results.append(f.move.phase)
                t.driver = None

    def driver_saved(self, driver: Migration, move, ok: bool, rest: list) -> None:
        t, _ = self.terms_of[driver]
        if not ok:  # NotLeader: the move stops here; the next leader resumes its intent
            self.depose(t)
            return
        self.drive(driver, rest + driver.on_saved(move, self.now))

    # -- clients ---------------------------------------------------------------------------------------

    def route(self, client: dict, key: bytes) -> int:
        slot = key_slot(key)
        return client.setdefault("routes", {}).get(slot, sm.owner(self.routes, slot))

    def redirect(self, client: dict, key: bytes, chain: int) -> None:
        client.setdefault("routes", {})[key_slot(key)] = chain

    def resend(self, words: list) -> list:
        self.resent += 1  # a write of unknown outcome, sent again to the slot's new chain
        return super().resend(words)

    def moves_over(self) -> bool:
        t = self.term
        return (self.step >= len(PLAN) and t is not None and t.driver is None and not t.resume
                and not self.intents_left())

    def intents_left(self) -> list:
        return moves.intents(self.store)

    # -- a run -----------------------------------------------------------------------------------------

    def run(self, clients: int = 3) -> None:
        self.new_term()
        self.run_until(lambda: self.slot_map is not None and len(self.slot_map["synced"]) == len(CHAINS),
                       self.now + 5)
        if self.slot_map is None or len(self.slot_map["synced"]) < len(CHAINS):
            self.fail(f"the chains' tables were never synced with the map: {self.slot_map}")
        self.routes = self.slot_map
        for i in range(clients):
            self.start_client(i)
        if self.faults:
            for _ in range(self.rng.randrange(2, 7)):
                when, what = self.rng.uniform(0.02, 1.5), self.rng.random()
                if what < 0.3:
                    self.after(when, self.crash, self.rng.choice(sorted(self.replicas)))
                elif what < 0.45:
                    self.after(when, self.partition, self.rng.choice(sorted(self.replicas)),
                               self.rng.uniform(0.05, 1.0))
                elif what < 0.6:
                    self.after(when, self.cut_from_coordinator, self.rng.choice(sorted(self.replicas)),
                               self.rng.uniform(0.3, 3.0))
                elif what < 0.8:
                    self.after(when, self.crash_leader)
                else:
                    self.after(when, self.pause_leader)
        self.run_until(lambda: self.clients_left == 0 and self.moves_over(), self.now + 120)
        if not (self.moves_over() and self.clients_left == 0):
            self.fail(f"no convergence: plan at step {self.step}, intents {self.intents_left()}, "
                      f"{self.clients_left} clients still running")
        self.faults = False
        self.run_until(self.whole, self.now + 30)  # every restarted member back in its chain
        if not self.whole():
            self.fail(f"the chains are not whole again: {self.views}")
        self.run_until(lambda: False, self.now + 1.0)  # the chains settle, the last pushes land
        self.verify()

    def whole(self) -> bool:
        """Every member back in its chain's saved view (no learner left), and holding that view."""
        return all(n in self.views[self.chain_of[n]].members and self.views[self.chain_of[n]].learner is None
                   and self.replicas[n].epoch == self.views[self.chain_of[n]].epoch for n in self.replicas)

    def summary(self) -> str:
        return (f", moves {self.results}, {self.resumed} intents resumed, {self.restarts} members restarted, "
                f"{self.replies_lost} replies lost, {self.resent} writes of unknown outcome resent after -MOVED, "
                f"machines: {dict(self.stats)}")

    def verify(self) -> None:
        slot_map, now_ms = self.slot_map, int(self.now * 1000)
        if sorted(slot_map["synced"]) != list(CHAINS):
            self.fail(f"the saved map is not synced: {slot_map}")
        for chain in CHAINS:
            members = [self.replicas[m] for m in self.views[chain].members]
            first = members[0]
            for r in members:
                if r.state.data != first.state.data or r.last_seq != first.last_seq:
                    self.fail(f"{r.me} and {first.me} differ at the end")
            table, mine = first.state.table, bytearray(SLOTS)
            for a, b in sm.ranges(slot_map, chain):
                mine[a:b + 1] = b"\1" * (b + 1 - a)
            for slot in range(SLOTS):
                state = table.state(slot)
                if (state == OWNED) != mine[slot] or (not mine[slot] and state not in (GIVEN, NONE)):
                    self.fail(f"chain {chain}: slot {slot} is {state}, the map gives it to "
                              f"{sm.owner(slot_map, slot)}")
            for r in members[1:]:
                if r.state.table.states != table.states:
                    self.fail(f"{r.me}'s table differs from {first.me}'s")
            stray = [k for k in first.state.data if sm.owner(slot_map, key_slot(k)) != chain]
            if stray:
                self.fail(f"chain {chain} keeps keys of slots it does not own: {stray}")
        tails = {chain: self.replicas[self.views[chain].tail] for chain in CHAINS}
        for key in KEYS:
            op_id = self.history.invoke("final", "get", key, None, self.now)
            self.history.complete(op_id, tails[sm.owner(slot_map, key_slot(key))].state.get(key, now_ms), self.now)
        result = check(self.history.operations())
        if result.ok is not True:
            self.fail(f"not linearizable: {result.explanation}")
        for counter in COUNTERS:
            self.check_counter(counter, tails[sm.owner(slot_map, key_slot(counter))], now_ms)


def run(seed: int, faults: bool = True) -> ShardSim:
    return slot_move_sim.run(seed, faults, ShardSim)


if __name__ == "__main__":
    slot_move_sim.main(run, __doc__)
