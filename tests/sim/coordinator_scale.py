"""The coordinator at scale, in virtual time: one `CoordinatorMachine` per chain for 100+ chains
of 3 members, the slot map's keeper (`Shards`) over 16,384 slots, and the slot-move driver
(`Migration`), all the real pure machines, driven as the coordinator's shell drives them.
Members answer at once (a probe 1 ms later; a crashed member's port refuses); the store is a
dict that counts the parts and bytes (JSON, as etcd keeps them) each save writes.

Three events are measured, each from its cause until the coordinator has saved and pushed all
that follows from it: an operator's view change in one chain (MASTER.REMOVE of a middle
member), a member failure in one chain (its port refuses from then on), and the move of one
slot (100 keys) between two chains. Per event: virtual time, the CPU time spent in the machines
(that chain's, the map keeper's with the move driver, and the other chains' own probing in the
same window for scale), the store writes (saves, parts, bytes) and the pushes. After each event
the other chains' views and parts are checked untouched.

    python tests/sim/coordinator_scale.py [--chains 100] [--members 3]
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from catena.coordinator import layout
from catena.coordinator import requests as rq
from catena.coordinator.effects import (AskTail, CheckLiveness, DeleteKeys, Note, Probe, Push, Reply, Resign,
                                        Revoke, Save, Verdict)
from catena.coordinator.machine import CoordinatorMachine
from catena.coordinator.migration import Call, Finished, Migration
from catena.coordinator.migration import Save as SaveIntent
from catena.coordinator.migration import SaveMap as MapPhase
from catena.coordinator.moves import encode
from catena.coordinator.shards import PushShard, SaveMap, Shards, SyncTable
from catena.view import View

sys.path.insert(0, str(Path(__file__).parent))
from kernel import Kernel  # noqa: E402

ANSWER_S = 0.001  # a member's answer arrives this long after the call
FENCE = 1


@dataclass
class Costs:
    """What the coordinator spent, by whom (a chain id, or "map" for the keeper and mover)."""
    cpu: Counter = field(default_factory=Counter)  # seconds of CPU in the machines
    saves: int = 0
    parts: Counter = field(default_factory=Counter)  # part name -> times written
    bytes: int = 0
    pushes: Counter = field(default_factory=Counter)  # "view" | "shard" -> calls made


class World:
    """The coordinator's machines and the members they call, in one kernel's virtual time."""

    def __init__(self, chains: int, members: int):
        self.k = Kernel(seed=1)
        self.dead: set[str] = set()
        self.store: dict[str, dict] = {}
        self.costs = Costs()
        self.tokens = itertools.count(1)
        self.replies: dict[int, Reply] = {}
        self.armed: dict[object, float] = {}  # chain id or "map" -> the deadline its tick is scheduled for
        base = CoordinatorMachine()
        self.machines = {c: base.for_chain(c) for c in range(chains)}
        self.shards = Shards()
        now, started = self.k.now, {}
        for c, m in self.machines.items():
            addrs = tuple(f"10.0.{c}.{i}:6379" for i in range(members))
            state = {"views": [View(c, 3, addrs).to_wire()], "registry": dict.fromkeys(addrs, "1"), "queued": [],
                     "retired": {}, "cluster_id": "scale", "sessions": {}}
            self.store.update(layout.parts_of(state))
            started[c] = self._timed(c, lambda m=m, state=state: m.lead(now, state, "scale"))
        self._shards(lambda: self.shards.lead(None, chains, FENCE, self.views(), now))
        for c, fx in started.items():
            self._run(c, lambda fx=fx: fx)

    def views(self) -> dict[int, View]:
        return {c: m.view for c, m in self.machines.items()}

    # -- executing effects as the shell does ---------------------------------------------------------

    def _timed(self, who, call):
        started = time.process_time()
        fx = call()
        self.costs.cpu[who] += time.process_time() - started
        return fx

    def _run(self, chain: int, call) -> None:
        m = self.machines[chain]
        for fx in self._timed(chain, call):
            self._effect(chain, m, fx)
        if self.shards.views.get(chain) != m.view:  # as the shell: only when the view changed
            self._shards(lambda: self.shards.on_views(self.views(), self.k.now))
        self._arm(chain, m.next_deadline(), lambda: self._run(chain, lambda: m.on_timer(self.k.now)))

    def _arm(self, key, due: float | None, tick) -> None:
        if due is None or self.armed.get(key) == due:
            return
        self.armed[key] = due

        def fire():
            if self.armed.get(key) == due:
                del self.armed[key]
                tick()
        self.k.at(due, fire)

    def _effect(self, chain: int, m: CoordinatorMachine, fx) -> None:
        later, alive = self.k.after, fx.member not in self.dead if hasattr(fx, "member") else True
        if isinstance(fx, Probe):
            if alive:
                later(ANSWER_S, self._run, chain, lambda: m.on_probe_answer(fx.member, fx.nonce, "1", self.k.now))
            else:
                later(ANSWER_S, self._run, chain,
                      lambda: m.on_probe_failed(fx.member, fx.nonce, self.k.now, refused=True))
        elif isinstance(fx, CheckLiveness):
            later(fx.timeout_s, self._run, chain, lambda: m.on_liveness(fx.member, fx.nonce, self.k.now))
        elif isinstance(fx, Revoke):
            later(ANSWER_S, self._run, chain, lambda: m.on_revoked(fx.member, alive, self.k.now))
        elif isinstance(fx, Push):
            self.costs.pushes["view"] += 1
            later(ANSWER_S, self._run, chain, lambda: m.on_pushed(fx.member, fx.view.epoch, alive, self.k.now))
        elif isinstance(fx, Save):
            self._save(fx.parts if fx.parts is not None else layout.parts_of(fx.state))
            later(ANSWER_S, self._run, chain, lambda: m.on_save_result(True, self.k.now))
        elif isinstance(fx, Reply):
            self.replies[fx.token] = fx
        elif isinstance(fx, AskTail):
            later(ANSWER_S, self._run, chain, lambda: m.on_tail_status(fx, self.k.now))
        elif not isinstance(fx, (Note, Resign, DeleteKeys, *Verdict.__args__)):  # a verdict is for the log
            raise TypeError(f"unexpected effect {fx!r}")

    def _shards(self, call) -> None:
        for fx in self._timed("map", call):
            if isinstance(fx, SaveMap):
                self._save({layout.SLOTS: fx.slot_map, **dict.fromkeys(fx.drop)})
                self.k.after(ANSWER_S, self._shards, lambda: self.shards.on_saved(True, self.k.now))
            elif isinstance(fx, SyncTable):
                self.k.after(ANSWER_S, self._shards, lambda fx=fx: self.shards.on_synced(fx.chain, True, self.k.now))
            elif isinstance(fx, PushShard):
                self.costs.pushes["shard"] += 1
                self.k.after(ANSWER_S, self._shards, lambda fx=fx: self.shards.on_pushed(
                    fx.member, fx.chain, fx.stamp, fx.member not in self.dead, self.k.now))
        self._arm("map", self.shards.next_deadline(),
                  lambda: self._shards(lambda: self.shards.on_timer(self.k.now)))

    def _save(self, parts: dict) -> None:
        self.costs.saves += 1
        for name, value in parts.items():
            self.costs.parts[name] += 1
            self.costs.bytes += len(name) + len(json.dumps(value)) if value is not None else len(name)
            if value is None:
                self.store.pop(name, None)
            else:
                self.store[name] = value

    # -- driving ------------------------------------------------------------------------------------

    def settle(self, until: float) -> None:
        """Run until nothing but probing is left to do (or `until` passes)."""
        def quiet():
            s = self.shards
            return not (s._saving or s._in_flight or s._syncing or s._assign) and all(
                m._current is None and not m._queue and not m._pushes.in_flight for m in self.machines.values())
        self.k.run_until(quiet, until)

    def request(self, chain: int, what) -> int:
        token = next(self.tokens)
        self._run(chain, lambda: self.machines[chain].request(token, what, self.k.now))
        return token

    def move_slot(self, slot: int, source: int, target: int, keys: int) -> Finished:
        """One slot's move (Migration) with its intent saved at each phase and the map saved by
        the keeper; the chains answer every call at once (the slot holds `keys` keys)."""
        dump = [w for i in range(keys) for w in (b"key:%06d" % i, b"v" * 16, b"-")]
        live = [b"key:%06d" % i for i in range(keys)]
        machine, todo = Migration.start(slot, source, target, self.k.now, FENCE)
        while True:
            for fx in todo:
                if isinstance(fx, Finished):
                    self._save({layout.move_part(slot): None})
                    return fx
            fx, todo = todo[0], todo[1:]
            self.k.run_until(lambda: True, self.k.now + ANSWER_S)
            if isinstance(fx, SaveIntent):
                self._save({layout.move_part(slot): encode(fx.move)})
                todo = todo + self._timed("map", lambda: machine.on_saved(fx.move, self.k.now))
            elif isinstance(fx, MapPhase):
                self._shards(lambda: self.shards.assign(fx.slot, fx.chain, self.k.now))
                self.settle(self.k.now + 5)
                todo = todo + self._timed("map", lambda: machine.on_saved(machine.move, self.k.now))
            elif isinstance(fx, Call):
                reply = [7, live, *dump] if fx.words[0] == b"CATENA.SLOTDUMP" else b"OK"
                todo = todo + self._timed("map", lambda: machine.on_reply(fx.token, reply, self.k.now))


def measure(world: World, name: str, chain: int | None, event, done, until: float = 30.0) -> dict:
    """Run `event()`, then the world until `done()` and everything it caused has settled (`done`
    None: for `until` seconds); the
    costs of that window, and whether the other chains' views and parts were left untouched."""
    before_views, before_store = world.views(), dict(world.store)
    world.costs, started = Costs(), world.k.now
    event()
    if done is None:  # a window of `until` seconds
        world.k.run_until(lambda: False, started + until)
    else:
        world.k.run_until(done, started + until)
        assert done(), f"{name}: not done by {until} s of virtual time"
        world.settle(world.k.now + until)
    costs, window = world.costs, world.k.now - started
    others = [c for c in world.machines if c != chain]
    touched = {n for n in costs.parts if n not in (layout.SLOTS, f"chains/{chain}") and not n.startswith("moves/")}
    untouched = (all(world.views()[c] == before_views[c] for c in others) and not touched
                 and all(world.store.get(layout.chain_part(c)) == before_store.get(layout.chain_part(c))
                         for c in others))
    return {"event": name, "virtual_s": window, "cpu_chain_ms": 1e3 * (costs.cpu[chain] if chain is not None else 0),
            "cpu_map_ms": 1e3 * costs.cpu["map"],
            "cpu_others_ms": 1e3 * sum(v for k, v in costs.cpu.items() if k not in (chain, "map")),
            "saves": costs.saves, "parts": sum(costs.parts.values()), "bytes": costs.bytes,
            "view_pushes": costs.pushes["view"], "shard_pushes": costs.pushes["shard"], "others_untouched": untouched}


def run(chains: int = 100, members: int = 3) -> list[dict]:
    world = World(chains, members)
    started = time.process_time()
    world.settle(60.0)
    setup_cpu = time.process_time() - started
    assert world.store[layout.SLOTS]["synced"] == list(range(chains)), "every chain synced and announced"
    rows = [{"event": f"start: {chains} chains synced, every shard pushed", "virtual_s": world.k.now,
             "cpu_chain_ms": 0.0, "cpu_map_ms": 1e3 * world.costs.cpu["map"],
             "cpu_others_ms": 1e3 * (setup_cpu - world.costs.cpu["map"]), "saves": world.costs.saves,
             "parts": sum(world.costs.parts.values()), "bytes": world.costs.bytes,
             "view_pushes": world.costs.pushes["view"], "shard_pushes": world.costs.pushes["shard"],
             "others_untouched": True}]
    idle = measure(world, "1 s of probing, nothing changing", None, lambda: None, None, until=1.0)
    rows.append(idle)
    c = chains // 2
    victim = world.machines[c].view.members[1]
    epoch = world.machines[c].view.epoch
    token = []
    rows.append(measure(world, f"view change in chain {c} (MASTER.REMOVE of a middle member)", c,
                        lambda: token.append(world.request(c, rq.Remove(victim))),
                        lambda: token[0] in world.replies))
    c2 = c + 1
    failed = world.machines[c2].view.members[1]
    before = world.machines[c2].view.epoch
    rows.append(measure(world, f"member failure in chain {c2} (its port refuses)", c2,
                        lambda: world.dead.add(failed), lambda: world.machines[c2].view.epoch > before))
    assert failed not in world.machines[c2].view.members and world.machines[c].view.epoch == epoch + 1
    slot = 5  # chain 0's
    rows.append(measure(world, f"move of slot {slot} (100 keys) from chain 0 to chain {chains - 1}", None,
                        lambda: world.move_slot(slot, 0, chains - 1, 100),
                        lambda: layout.move_part(slot) not in world.store))
    assert [slot, slot] in world.store[layout.SLOTS]["chains"][str(chains - 1)]
    return rows


def table(rows: list[dict]) -> str:
    head = ("event", "virtual ms", "CPU chain ms", "CPU map+mover ms", "CPU other chains ms", "saves", "parts",
            "bytes", "view pushes", "shard pushes", "others untouched")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append(f"| {r['event']} | {1e3 * r['virtual_s']:.0f} | {r['cpu_chain_ms']:.1f} | {r['cpu_map_ms']:.1f} | "
                     f"{r['cpu_others_ms']:.1f} | {r['saves']} | {r['parts']} | {r['bytes']:,} | {r['view_pushes']} | "
                     f"{r['shard_pushes']:,} | {'yes' if r['others_untouched'] else 'NO'} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chains", type=int, default=100)
    ap.add_argument("--members", type=int, default=3)
    args = ap.parse_args(argv)
    print(table(run(args.chains, args.members)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
