"""Seeded simulation of moving one hash slot between two chains while clients use it
(docs/sharding.md §3): two chains of three `Replica` machines in cluster mode, the pure slot-move
driver (`catena.coordinator.migration`), and clients that follow -MOVED and retry -TRYAGAIN,
under member crashes (the chain repaired by a new view), partitions (a member's links held for a
while, FIFO kept, as TCP does), driver calls slow on their way (one in ten takes 50-400 ms) and
driver crashes (a new driver, with a higher fence, resumes from the saved intent), among them
right after a pre-copy was applied and before its phase was saved as done.

Checks after the run (faults first, then a quiet phase): the move is done, the slot is given at
every member of the source and owned at every member of the target, whose members agree; the
source kept no key of the slot; the history of the slot's keys and of a key elsewhere is
linearizable (registers, including final reads at the target's tail); the counter's value lies
between the increments acknowledged and those issued (nothing acknowledged lost, nothing
applied twice).

A client whose write got no answer (its outcome unknown) and then -MOVED re-sends it, under the
same request id, to the chain the slot moved to: the slot's requests move with it, so a write
the source applied is answered there from them, not applied twice (the counter's bound and the
registers' history would show it).

`python tests/sim/slot_move_sim.py --seed N` replays one run.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from collections import deque
from pathlib import Path

from catena.chain import messages
from catena.chain.replica import Replica
from catena.chain.slot_table import GIVEN, NONE, OWNED
from catena.check import History, check
from catena.cluster_topology import Shard
from catena.coordinator.migration import NO_ANSWER, Call, Finished, Migration, Save, SaveMap
from catena.effects import FetchView, LearnerCaughtUp, Reply, Send
from catena.resp.codec import Error
from catena.slots import key_slot
from catena.view import View

sys.path.insert(0, str(Path(__file__).parent))

from kernel import Kernel, Partitions  # noqa: E402 (tests/sim is not a package)

A, B = 0, 1
KEYS = [b"{m}k0", b"{m}k1", b"o:k"]  # two in the moving slot, one elsewhere
COUNTER = b"{m}n"
SLOT = key_slot(b"m")
TICK_S = 0.02
CLIENT_TIMEOUT_S = 0.3


def wire(msg):
    unpacker = messages.unpacker()
    unpacker.feed(messages.pack(msg))
    return messages.decode(next(unpacker))


class SimFailure(AssertionError):
    pass


class MoveSim(Kernel):
    """Two chains (A, B) of replica machines, their links, clients and one move's driver. The
    keys the clients use, how they route, and when the moves are over are hooks a sibling
    simulation (shard_sim.py) overrides."""

    keys, counters = KEYS, (COUNTER,)
    think_s = 0.003  # a client's pause between operations, at most

    def __init__(self, seed: int, faults: bool = True, clients: int = 3, ops: int = 40):
        super().__init__(seed, start=1000.0)
        self.seed, self.faults = seed, faults
        self.parts = Partitions()
        self.replicas: dict[str, Replica] = {}
        self.chain_of: dict[str, int] = {}
        self.alive: set[str] = set()
        self.views: dict[int, View] = {}
        for chain, prefix in ((A, "a"), (B, "b")):
            names = tuple(f"{prefix}{i}:1" for i in range(3))
            for n in names:
                self.replicas[n] = self.new_replica(n, 1)
                self.initial_table(chain, self.replicas[n])
                self.chain_of[n] = chain
                self.alive.add(n)
            self.views[chain] = View(chain, 1, names)
        self.links: dict[tuple, deque] = {}
        self.history = History()
        self.waiting: dict[int, tuple] = {}  # token -> (callback)
        self.tokens = itertools.count(1)
        self.driver: Migration | None = None
        self.drivers = itertools.count(1)
        self.driver_name = b""
        self.saved = None
        self.incr_issued = dict.fromkeys(self.counters, 0)  # counter key -> INCRs sent, acknowledged
        self.incr_acked = dict.fromkeys(self.counters, 0)
        self.refusals: dict[str, int] = {}  # error word -> replies clients got
        self.clients_left = clients
        self.ops = ops
        self.trace: list[str] = []
        for chain in (A, B):
            self.push_view(chain)
        for name in self.replicas:
            self.after(self.rng.uniform(0, TICK_S), self.tick, name)

    def new_replica(self, name: str, incarnation: int) -> Replica:
        return Replica(name, f"{name}/{incarnation}".encode(), cluster=True)

    def initial_table(self, chain: int, replica: Replica) -> None:
        if chain == B:  # created to receive slots: it never owned this one (its first entry)
            replica.state.table.states[SLOT] = NONE

    # -- members and the network ---------------------------------------------------------------

    def fail(self, text: str):
        raise SimFailure(f"seed {self.seed}: {text}\n" + "\n".join(self.trace[-30:]))

    def input(self, name: str, fn, *args) -> None:
        if name not in self.alive:
            return
        r = self.replicas[name]
        self.execute(name, fn(*args))
        self.execute(name, r.flush())

    def execute(self, name: str, fx) -> None:
        for f in fx:
            kind = type(f)
            if kind is Send:
                self.send(name, f.to, wire(f.msg))
            elif kind is Reply:
                callback = self.waiting.pop(f.token, None)
                if callback is not None:
                    self.after(self.rng.uniform(0.0002, 0.001), callback, f.value)
            elif kind is FetchView:
                self.after(0.001, self.deliver_view, name, self.views[self.chain_of[name]])
            elif kind is LearnerCaughtUp:
                self.after(0.001, self.caught_up, f)

    def caught_up(self, f: LearnerCaughtUp) -> None:
        """A tail's learner holds its history (no learners here: shard_sim.py has them)."""

    def send(self, src: str, dst: str, msg) -> None:
        queue = self.links.setdefault((src, dst), deque())
        queue.append((self.now + self.rng.uniform(0.0002, 0.002), msg))
        if len(queue) == 1:
            self.at(queue[0][0], self.pump, src, dst)

    def pump(self, src: str, dst: str) -> None:
        """Deliver a link's frames in order; a partition holds them (TCP keeps retrying)."""
        queue = self.links[(src, dst)]
        while queue and queue[0][0] <= self.now:
            if dst not in self.alive:
                queue.clear()
                return
            if not self.parts.reachable(src, dst):
                self.after(0.01, self.pump, src, dst)
                return
            _, msg = queue.popleft()
            self.input(dst, self.replicas[dst].on_message, src, msg, self.now)
        if queue:
            self.at(max(queue[0][0], self.now), self.pump, src, dst)

    def tick(self, name: str) -> None:
        if name in self.alive:
            self.input(name, self.replicas[name].on_timer, self.now)
            self.after(TICK_S, self.tick, name)

    def push_view(self, chain: int) -> None:
        view = self.views[chain]
        for name in self.replicas:
            self.after(self.rng.uniform(0.0005, 0.005), self.deliver_view, name, view)

    def deliver_view(self, name: str, view: View) -> None:
        r = self.replicas[name]
        if self.chain_of[name] == view.chain_id:
            self.input(name, r.on_view, view, self.now)
        elif name in self.alive:  # the other chain, as the coordinator pushes it (MEMBER.SHARD)
            r.cluster.topology.put(Shard(view.chain_id, view.epoch, view.members, ()))

    def crash(self, name: str) -> None:
        chain = self.chain_of[name]
        view = self.views[chain]
        if name not in self.alive or len(view.members) < 2:
            return
        self.trace.append(f"{self.now:.3f} crash {name}")
        self.alive.discard(name)
        self.after(0.03, self.repair, chain, name)

    def repair(self, chain: int, name: str) -> None:
        view = self.views[chain]
        learner = view.learner if view.learner != name else None
        self.views[chain] = View(chain, view.epoch + 1, tuple(m for m in view.members if m != name), learner)
        self.trace.append(f"{self.now:.3f} chain {chain} view {self.views[chain].members}")
        self.push_view(chain)

    def partition(self, name: str, seconds: float) -> None:
        self.trace.append(f"{self.now:.3f} isolate {name} for {seconds:.3f}s")
        self.parts.isolate(name)
        self.after(seconds, self.parts.rejoin, name)

    # -- the driver ------------------------------------------------------------------------------

    @property
    def fence(self) -> int:
        return int(self.driver_name.split(b"/")[1])  # each new driver leads with a higher fence

    def start_move(self) -> None:
        self.driver_name = b"driver/%d" % next(self.drivers)
        self.driver, fx = Migration.start(SLOT, A, B, self.now, fence=self.fence)
        self.drive(self.driver, fx)
        self.after(TICK_S, self.driver_tick, self.driver)

    def crash_driver(self) -> None:
        if self.driver is None or self.driver.finished:
            return
        self.trace.append(f"{self.now:.3f} driver crashes in phase {self.driver.move.phase}")
        self.driver = None
        self.after(0.05, self.resume_driver)

    def resume_driver(self) -> None:
        self.driver_name = b"driver/%d" % next(self.drivers)
        self.driver, fx = Migration.resume(self.saved, self.now, fence=self.fence)
        self.drive(self.driver, fx)
        self.after(TICK_S, self.driver_tick, self.driver)

    def driver_tick(self, driver: Migration) -> None:
        if driver is self.driver and not driver.finished:
            self.drive(driver, driver.on_timer(self.now))
            self.after(TICK_S, self.driver_tick, driver)

    def drive(self, driver: Migration, fx) -> None:
        if driver is not self.driver:
            return  # a crashed driver does nothing more
        for f in fx:
            if type(f) is Save:
                self.saved = f.move  # the fenced save: atomic, and it survives the driver
                self.trace.append(f"{self.now:.3f} saved phase {f.move.phase}")
                self.after(0.001, lambda d=driver, m=f.move: self.drive(d, d.on_saved(m, self.now)))
            elif type(f) is SaveMap:
                self.after(0.001, lambda d=driver, m=driver.move: self.drive(d, d.on_saved(m, self.now)))
            elif type(f) is Call:
                self.call(driver, f)
            elif type(f) is Finished:
                self.trace.append(f"{self.now:.3f} move {f.move.phase}")

    def call(self, driver: Migration, f: Call) -> None:
        """To the chain's head, under the driver's request id for this call (kept across re-sends)."""
        head = self.views[f.chain].head
        words = list(f.words)
        if words[0] != b"CATENA.SLOTDUMP":  # a write: one request id per call
            words = [b"CATENA.REQ", self.driver_name, b"%d" % f.token, *words]
        token = next(self.tokens)

        def answered(value, d=driver, call=f.token):
            if self.faults and d.move.phase == "precopy" and f.words[0] == b"CATENA.IMPORT" and self.rng.random() < 0.2:
                self.crash_driver()  # its pre-copy applied, not yet saved as done
                return
            reply = Exception(value.message) if type(value) is Error else value
            self.drive(d, d.on_reply(call, reply, self.now))

        self.waiting[token] = answered
        if not self.reaches(head):
            self.drive(driver, driver.on_reply(f.token, NO_ANSWER, self.now))
            return
        # A call may take long on its way (a slow connection): it can arrive after its driver
        # crashed and a successor drove the move on; the fence makes the chain refuse it.
        delay = self.rng.uniform(0.05, 0.4) if self.rng.random() < 0.1 else self.rng.uniform(0.0002, 0.002)
        if self.faults and self.rng.random() < 0.08:  # the driver dies with this call slow on its way
            delay = self.rng.uniform(0.1, 0.4)
            self.after(0.0001, self.crash_driver)
        self.after(delay, self.arrive, head, token, words)

    def reaches(self, name: str) -> bool:
        """Whether the driver's call reaches member `name` (else it fails: NO_ANSWER)."""
        return name in self.alive

    def arrive(self, name: str, token: int, words: list) -> None:
        """A command reaches a member (a client's or the driver's), at the time it arrives."""
        self.input(name, self.replicas[name].on_client, token, words, self.now)

    # -- clients ---------------------------------------------------------------------------------

    def start_client(self, idx: int) -> None:
        client = {"name": f"c{idx}", "owner": A, "n": 0, "left": self.ops}
        self.after(self.rng.uniform(0, 0.01), self.next_op, client)

    def next_op(self, client: dict) -> None:
        """Operations until the move is over and `ops` more after it."""
        if client["left"] == 0:
            self.clients_left -= 1
            return
        if self.moves_over():
            client["left"] -= 1
        client["n"] += 1
        r = self.rng.random()
        key = self.rng.choice(self.keys)
        if r < 0.35:
            value = f"{client['name']}-{client['n']}".encode()
            op = ("set", key, value, [b"SET", key, value])
        elif r < 0.45:
            op = ("del", key, None, [b"DEL", key])
        elif r < 0.7:
            op = ("get", key, None, [b"GET", key])
        else:
            counter = self.rng.choice(self.counters)
            op = ("incr", counter, None, [b"INCR", counter])
            self.incr_issued[counter] += 1
        kind, key, arg, words = op
        op_id = self.history.invoke(client["name"], kind, key, arg, self.now) if kind != "incr" else None
        if kind != "get":
            words = [b"CATENA.REQ", client["name"].encode(), b"%d" % client["n"], *words]
        self.attempt(client, op_id, kind, words, key, 0, unknown=False)

    def attempt(self, client, op_id, kind, words, key, tries, unknown: bool) -> None:
        if tries > 400:
            self.fail(f"{client['name']}: {words} never answered")
        chain = self.route(client, key)
        members = [m for m in self.views[chain].members if m in self.alive] or list(self.views[chain].members)
        target = self.rng.choice(members)
        token = next(self.tokens)
        state = {"done": False}

        def answered(value):
            if state["done"]:
                return
            state["done"] = True
            if type(value) is Error:
                text = value.message
                self.refusals[text.split(" ")[0]] = self.refusals.get(text.split(" ")[0], 0) + 1
                if text.startswith("MOVED"):  # (an unknown outcome too: its request moved along)
                    self.redirect(client, key, self.chain_of[text.split(" ")[2]])
                    self.after(0.0005, self.attempt, client, op_id, kind, self.resend(words) if unknown else words,
                               key, tries + 1, unknown)
                    return
                if text.startswith(("TRYAGAIN", "CLUSTERDOWN", "ERR write")):
                    self.after(self.rng.uniform(0.005, 0.02), self.attempt, client, op_id, kind, words, key,
                               tries + 1, unknown or text.startswith("ERR write forwarded"))
                    return
                self.fail(f"{client['name']}: {words} answered {text}")
            if kind == "incr":
                self.incr_acked[key] += 1
            elif op_id is not None:
                self.history.complete(op_id, value, self.now)
            self.after(self.rng.uniform(0, self.think_s), self.next_op, client)

        def timed_out():
            if not state["done"]:
                state["done"] = True
                self.waiting.pop(token, None)
                self.attempt(client, op_id, kind, words, key, tries + 1, unknown or kind != "get")

        self.waiting[token] = answered
        self.after(CLIENT_TIMEOUT_S, timed_out)
        self.after(self.rng.uniform(0.0002, 0.001), self.arrive, target, token, list(words))

    def moves_over(self) -> bool:
        return self.saved is not None and self.saved.phase in ("done", "undone")

    def route(self, client: dict, key: bytes) -> int:
        """The chain a client sends `key`'s command to (its own map: learnt from -MOVED)."""
        return client["owner"] if key_slot(key) == SLOT else A

    def redirect(self, client: dict, key: bytes, chain: int) -> None:
        client["owner"] = chain

    def resend(self, words: list) -> list:
        """A write of unknown outcome sent again after -MOVED: the same words, request id included."""
        return words

    # -- a run -----------------------------------------------------------------------------------

    def run(self, clients: int = 3) -> None:
        for i in range(clients):
            self.start_client(i)
        self.after(self.rng.uniform(0.02, 0.2), self.start_move)
        if self.faults:
            for _ in range(self.rng.randrange(1, 4)):
                when, what = self.rng.uniform(0.02, 1.0), self.rng.random()
                name = self.rng.choice(sorted(self.replicas))
                if what < 0.35:
                    self.after(when, self.crash, name)
                elif what < 0.7:
                    self.after(when, self.partition, name, self.rng.uniform(0.01, 0.3))
                else:
                    self.after(when, self.crash_driver)
        self.run_until(lambda: self.clients_left == 0 and self.driver is not None and self.driver.finished,
                       self.now + 120)
        if not (self.driver and self.driver.finished and self.clients_left == 0):
            self.fail(f"no convergence: move at {self.saved}, {self.clients_left} clients still running")
        self.run_until(lambda: False, self.now + 1.0)  # let the chains settle
        self.verify()

    def verify(self) -> None:
        if self.saved.phase != "done":
            self.fail(f"the move ended {self.saved.phase}")
        now_ms = int(self.now * 1000)
        for chain, expected in ((A, GIVEN), (B, OWNED)):
            members = [self.replicas[m] for m in self.views[chain].members]
            for r in members:
                if r.state.table.state(SLOT) != expected:
                    self.fail(f"{r.me}: slot is {r.state.table.state(SLOT)}, not {expected}")
                if r.state.data != members[0].state.data or r.last_seq != members[0].last_seq:
                    self.fail(f"{r.me} and {members[0].me} differ at the end")
        if any(key_slot(k) == SLOT for k in self.replicas[self.views[A].tail].state.data):
            self.fail("the source kept keys of the moved slot")
        tails = {A: self.replicas[self.views[A].tail], B: self.replicas[self.views[B].tail]}
        for key in KEYS:
            tail = tails[B] if key_slot(key) == SLOT else tails[A]
            op_id = self.history.invoke("final", "get", key, None, self.now)
            self.history.complete(op_id, tail.state.get(key, now_ms), self.now)
        result = check(self.history.operations())
        if result.ok is not True:
            self.fail(f"not linearizable: {result.explanation}")
        self.check_counter(COUNTER, tails[B], now_ms)

    def summary(self) -> str:
        return ""

    def check_counter(self, key: bytes, tail: Replica, now_ms: int) -> None:
        """Nothing acknowledged lost, nothing applied twice: acknowledged <= value <= issued."""
        value = int(tail.state.get(key, now_ms) or 0)
        if not self.incr_acked[key] <= value <= self.incr_issued[key]:
            self.fail(f"counter {key!r} is {value} after {self.incr_issued[key]} INCRs issued, "
                      f"{self.incr_acked[key]} acknowledged")


def run(seed: int, faults: bool = True, kind: type = MoveSim) -> MoveSim:
    sim = kind(seed, faults)
    sim.run()
    return sim


def main(run, doc: str) -> None:
    """Replay seeds of a simulation built on MoveSim: `--seed N [--runs M] [--trace]`."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--trace", action="store_true", help="print the run's trace")
    args = parser.parse_args()
    for seed in range(args.seed, args.seed + args.runs):
        sim = run(seed)
        if args.trace:
            print("\n".join(sim.trace))
        print(f"seed {seed}: ok ({sim.ran} events, {sum(sim.incr_acked.values())} INCRs acknowledged, "
              f"refusals {sim.refusals}{sim.summary()})")


if __name__ == "__main__":
    main(run, __doc__)
