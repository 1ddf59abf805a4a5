"""The coordinator process (shell): serves its RESP commands (commands.py), follows the config
store's verdict on who leads, and executes the effects of its `CoordinatorMachine`s, one per
chain, which make every decision (changes, saves, pushes, probes, leases, the learner hand-over,
sessions). The machines share the term (the store's fence) and nothing else: each saves only its
chain's parts of the state (layout.py), so one chain's repair never waits on another's.

Leader and follower: the store (`store.py`) decides who leads. A follower keeps the saved
state in memory (warm standby) and answers leader-only commands with `-NOTLEADER host:port`
(or `-TRYAGAIN` while no leader is known). All leader-only work (the machine's calls, its timer,
admin commands waiting on a call) runs in one TaskGroup that `step_down` cancels.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import uuid
from pathlib import Path

from catena.coordinator import layout, moves
from catena.coordinator import slot_map as sm
from catena.coordinator.calls import MemberCalls
from catena.coordinator.commands import CoordinatorCommands
from catena.coordinator.address import notleader_error
from catena.coordinator.effects import CALLS, NOT_LEADER, Note, Reply, Resign
from catena.coordinator.machine import WEDGE_S, CoordinatorMachine, may_resign
from catena.coordinator.moves import Mover
from catena.coordinator.requests import watched
from catena.coordinator.shards import Shards
from catena.coordinator.store import ConfigStore, EmbeddedStore
from catena.errors import CatenaError
from catena.membership.agent import MembershipAgent
from catena.metrics.coordinator import CoordinatorMetrics, describe
from catena.resp.client import internal_auth
from catena.resp.codec import DEFAULT_MAX_BULK_LEN, OK, Error
from catena.resp.commands import CommandTable
from catena.resp.server import RespServer
from catena.view import View

log = logging.getLogger(__name__)


class Coordinator:
    def __init__(self, listen: str, store: ConfigStore, password: str | None = None, cluster_id: str | None = None,
                 secret: str | None = None, advertise: str | None = None, admin_password: str | None = None):
        self.listen = listen  # where the server binds
        self.me = advertise or listen  # the address members, clients and the store know us by
        self.secret = secret  # the cluster secret: our calls to members authenticate with it
        self.auth = internal_auth(secret)
        self.store = store
        self.cluster_id = cluster_id
        self.role = "follower"
        self.table = CommandTable(password, server_name="catena-coordinator", cluster_secret=secret,
                                  admin_password=admin_password)
        self.server = RespServer(self.table, DEFAULT_MAX_BULK_LEN, internal=True)
        self.machines: dict[int, CoordinatorMachine] = {0: CoordinatorMachine(wedge_s=WEDGE_S)}
        self.machines[0].saved.cluster_id = cluster_id or ""
        self.chains = 0  # cluster mode: chains a new store starts with (0: one chain, no slot map)
        self.shards = Shards()  # the slot map, the chains' tables, MEMBER.SHARD pushes
        self.mover = Mover(self)  # MASTER.MOVE's slot moves
        self._term_cluster_id = ""  # the cluster id this term leads (a new chain's machine starts with it)
        self._tokens = itertools.count(1)
        self._replies: dict[int, asyncio.Future] = {}  # token -> the future a command handler returned
        self._wake = asyncio.Event()  # set: the machine's next deadline may have moved
        self.metrics = CoordinatorMetrics()  # counted events and the event ring (metrics port)
        self.calls = MemberCalls(store, self.auth, self.metrics, secret)  # how the machine's calls are made
        self.calls.cluster = self
        self._main: asyncio.TaskGroup | None = None  # the process's tasks
        self._group: asyncio.TaskGroup | None = None  # leader-only tasks (None while following)
        self._leading: asyncio.Task | None = None
        self._stopping: asyncio.Task | None = None  # the last term's leader work, winding down
        self.membership: MembershipAgent | None = None
        CoordinatorCommands(self)

    @property
    def add_timeout_s(self) -> float:
        """An add whose learner makes no progress this long is rolled back."""
        return self.machine.add_timeout_s

    @add_timeout_s.setter
    def add_timeout_s(self, seconds: float) -> None:
        self.machine.add_timeout_s = seconds

    @property
    def machine(self) -> CoordinatorMachine:
        """Chain 0's machine (the one chain without cluster mode; it also ends sessions)."""
        return self.machines[0]

    @property
    def view(self) -> View:
        """Chain 0's newest saved view (what members may be told)."""
        return self.machine.view

    @property
    def cluster_mode(self) -> bool:
        """Several chains and a slot map (`--chains K`, or a saved map)."""
        return self.chains > 0 or self.shards.slot_map is not None

    def views(self) -> dict[int, View]:
        """Every chain's newest saved view."""
        return {chain_id: m.view for chain_id, m in self.machines.items()}

    def head_of_slot(self, slot: int) -> str | None:
        """The head of the chain the slot map addresses `slot` to (None: no map, or no head)."""
        chain = None if self.shards.slot_map is None else sm.owner(self.shards.slot_map, slot)
        return None if chain is None or chain not in self.machines else self.machines[chain].view.head

    def chain_of(self, member: str) -> int | None:
        """The chain `member` is registered in or named by (None: none)."""
        for chain_id, m in sorted(self.machines.items()):
            if member in m.saved.registry or member in watched(m.view) or member in m.saved.queued:
                return chain_id
        return None

    def _known(self, chain_id: int) -> CoordinatorMachine:
        """Chain `chain_id`'s machine (made, with chain 0's settings, the first time)."""
        m = self.machines.get(chain_id)
        if m is None:
            m = self.machines[chain_id] = self.machine.for_chain(chain_id)
        return m

    def _machine(self, chain_id: int) -> CoordinatorMachine:
        """Chain `chain_id`'s machine; a new chain's, while leading, founds the chain."""
        new = chain_id not in self.machines
        m = self._known(chain_id)
        if new and self._group is not None:
            self.execute(m.lead(time.monotonic(), None, self._term_cluster_id), m)
        return m

    # -- leader / follower (called by the store) ---------------------------------------------------

    def lead(self, fence: int, state: dict | None) -> None:
        """We lead under `fence`, starting from `state` (the newest saved; None: a new store)."""
        self.role = "leader"
        self._leading = self._main.create_task(self._lead(state, self._leading or self._stopping))

    def step_down(self, reason: str) -> None:
        """Stop acting now: no admin command is answered as leader from here on; all leader-only
        work is cancelled."""
        if self.role != "leader":
            return
        self.role = "follower"
        log.warning("no longer the leader (%s): cancelling leader work", reason,
                    extra={"event": "leader_change", "cause": reason})
        self.metrics.leading(False, self.me, self.view.epoch, f"{self.me} stopped leading: {reason}")
        if self._leading is not None:
            self._leading.cancel()
            self._stopping, self._leading = self._leading, None

    def follow(self, parts: dict) -> None:
        """A follower's warm copy of the saved state (from the store's watch)."""
        if self.role != "leader":
            kept = layout.chain_ids(parts)
            self._forget_chains_but(kept)
            for chain_id in kept:
                self._known(chain_id).follow(layout.chain_state(parts, chain_id))
            self.shards.follow(parts.get(layout.SLOTS))

    def _forget_chains_but(self, kept) -> None:
        """Drop the machines of chains the store no longer holds (MASTER.REMOVECHAIN)."""
        for chain_id in set(self.machines) - set(kept) - {0}:
            del self.machines[chain_id]

    def acting(self) -> bool:
        return self.role == "leader" and self._group is not None and self.store.leading() and self.machine.leading

    def not_leader(self) -> Error:
        leader = self.store.leader
        return Error(notleader_error(leader if leader != self.me else None))

    def submit(self, what, chain_id: int = 0) -> asyncio.Future:
        """Hand a request to chain `chain_id`'s machine; the future is its reply."""
        token = next(self._tokens)
        reply = self._replies[token] = asyncio.get_running_loop().create_future()
        m = self._machine(chain_id)
        self.execute(m.request(token, what, time.monotonic()), m)
        return reply

    def spawn(self, coro) -> asyncio.Future:
        """Run a command's calls as leader work (cancelled on step-down, not when the client
        disconnects); the returned future is the client's reply."""
        reply = asyncio.get_running_loop().create_future()

        async def guarded():
            try:
                result = await coro
            except asyncio.CancelledError:
                if not reply.done():
                    reply.set_result(self.not_leader())
                raise
            except (ValueError, CatenaError) as exc:
                result = Error(f"ERR {exc}")
            if not reply.done():
                reply.set_result(result)

        self._group.create_task(guarded())
        return reply

    # -- executing the machine's effects ----------------------------------------------------------

    def execute(self, effects: list, machine: CoordinatorMachine | None = None) -> None:
        """Answer replies, log notes, start calls as leader tasks (their outcomes go back to
        `machine`, chain 0's by default); when its view changed, close the probe connections of
        members no longer probed and hand the views to the slot map's keeper; re-arm the
        machines' timer (a deadline may have moved)."""
        machine = machine or self.machine
        for fx in effects:
            if isinstance(fx, Reply):
                self._reply(fx)
            elif isinstance(fx, Note):
                self._note(fx)
            elif isinstance(fx, Resign) and not may_resign(self.machines.values()):
                log.warning("chain %d: %s; the other chains answer: not resigning", machine.chain_id, fx.reason)
            elif isinstance(fx, Resign):
                log.warning("resigning: %s", fx.reason, extra={"event": "leader_change", "cause": "resign"})
                self.store.resign(fx.reason)
            elif isinstance(fx, CALLS) and self._group is not None:
                self._group.create_task(self._run(fx, machine))
        if self._group is not None and (self.machines.get(machine.chain_id) is not machine
                                        or self.shards.views.get(machine.chain_id) != machine.view):
            # Only when a chain's view changed (or a chain came or went): with many chains, both
            # below look at every chain, and this runs after each of thousands of probes a second.
            for conn in self.calls.unused(lambda m: any(x.probing(m) for x in self.machines.values())):
                self._group.create_task(conn.close())
            self.execute_shards(self.shards.on_views(self.views(), time.monotonic()))
        self._wake.set()

    def execute_shards(self, effects: list) -> None:
        """Start the cluster mode's calls (shards.py) as leader tasks."""
        for fx in effects:
            if self._group is not None:
                self._group.create_task(self._run_shards(fx))
        self._wake.set()

    async def _run_shards(self, call) -> None:
        self.execute_shards(await self.calls.run_shards(call, self.shards))
        self.mover.map_saved.set()

    def _note(self, fx: Note) -> None:
        """Log a note; a view change is counted by cause and enters the event ring."""
        level, text = logging.WARNING if fx.level == "warning" else logging.INFO, fx.text
        extra = {"event": fx.event, "cause": fx.cause} if fx.event else {}
        if fx.event == "view_change":
            text = text.replace(":", f" ({describe(fx.cause, fx.member)}):", 1) if fx.cause else text
            extra.update(chain=fx.view.chain_id, epoch=fx.view.epoch)
            self.metrics.view_changed(fx.view, fx.cause, fx.member)
        elif fx.event in ("repair", "damping") or "fail-slow" in text:  # why, for `catena status`
            self.metrics.events.add(fx.event or "repair", fx.member, self.view.epoch, text)
        log.log(level, "%s", text, extra=extra or None)

    async def _run(self, call, machine: CoordinatorMachine) -> None:
        self.execute(await self.calls.run(call, machine), machine)

    def _reply(self, fx: Reply) -> None:
        future = self._replies.pop(fx.token, None)
        if future is None or future.done():
            return
        if fx.error is not None:
            future.set_result(self.not_leader() if fx.error == NOT_LEADER else Error(fx.error))
        else:
            future.set_result(OK if fx.value == "OK" else fx.value)

    async def _timer(self) -> None:
        """The machines' one timer: feed each `on_timer` at the earliest next deadline."""
        while True:
            dues = [m.next_deadline() for m in self.machines.values()] + [self.shards.next_deadline()]
            due = min((d for d in dues if d is not None), default=None)
            try:
                async with asyncio.timeout(None if due is None else max(0.0, due - time.monotonic())):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()
            for m in list(self.machines.values()):
                self.execute(m.on_timer(time.monotonic()), m)
            self.execute_shards(self.shards.on_timer(time.monotonic()))
            self._wake.clear()

    # -- terms ------------------------------------------------------------------------------------

    async def _lead(self, state: dict | None, previous: asyncio.Task | None) -> None:
        """All leader-only work, in one TaskGroup: cancelled as a whole by `step_down`."""
        if previous is not None and not previous.done():
            previous.cancel()
            await asyncio.wait({previous})  # the last term's tasks are gone before this one starts
        try:
            async with asyncio.TaskGroup() as group:
                self._group = group
                group.create_task(self._timer())
                if self.membership is not None:
                    group.create_task(self._follow_membership(self.membership.events()))
                self._start_term(state)
                if unfinished := moves.intents(state):
                    group.create_task(self.mover.resume(unfinished))
                self.metrics.leading(True, self.me, self.view.epoch, f"{self.me} leads (fence {self.store.fence})")
                await asyncio.Future()
        finally:
            self._group = None
            self.shards.step_down()
            for m in self.machines.values():
                self.execute(m.step_down(), m)
            for token in list(self._replies):
                self._reply(Reply(token, error=NOT_LEADER))
            await self.calls.close()

    def _start_term(self, state: dict | None) -> None:
        """Every chain's machine leads from its part of `state` (None: a new store, of one chain
        or of the `--chains` cluster mode starts with); then the slot map's keeper."""
        cluster_id = (state or {}).get(layout.CLUSTER, {}).get("cluster_id") or self.cluster_id
        self._term_cluster_id = cluster_id = cluster_id or uuid.uuid4().hex
        now, kept = time.monotonic(), self._chain_ids(state)
        self._forget_chains_but(kept)
        for chain_id in sorted(kept):
            m = self._known(chain_id)
            self.execute(m.lead(now, state and layout.chain_state(state, chain_id), cluster_id), m)
        self.execute_shards(self.shards.lead((state or {}).get(layout.SLOTS), self.chains, self.store.fence,
                                             self.views(), now, new_store=state is None))

    def _chain_ids(self, state: dict | None) -> set[int]:
        """The chains a term leads: those the store holds, and, while it holds no slot map yet,
        the `--chains` cluster mode starts with (a removed chain is not made again)."""
        if state is None:
            return {0, *range(self.chains)}
        held = set(layout.chain_ids(state))
        return held if layout.SLOTS in state else held | set(range(self.chains))

    async def _follow_membership(self, events) -> None:
        """Membership says a chain member failed or left: the machine probes it now."""
        async for event in events:
            addr = event.member.addr
            if event.kind in ("failed", "leave") and any(m.suspect(addr, time.monotonic())
                                                          for m in list(self.machines.values())):
                log.info("membership: %s %s; probing it now", addr, event.kind)
                self._wake.set()

    async def run(self, started: asyncio.Event | None = None) -> None:
        host, port = self.listen.rsplit(":", 1)
        async with asyncio.TaskGroup() as group:
            self._main = group
            await self.server.start(host, int(port))
            log.info("coordinator %s listening on %s, store %s", self.me, self.listen, self.store)
            # Members join the membership group through us (same port number, UDP).
            agent = MembershipAgent(self.me, (), table=self.table, secret=self.secret, bind=self.listen)
            try:
                await agent.start()
                self.membership = agent
            except OSError as exc:  # our own probes still find failures, only later
                log.warning("membership disabled: cannot bind UDP %s (%s)", self.listen, exc)
            if started is not None:
                started.set()
            try:
                # Only now may we lead: the address we publish answers.
                await self.store.run(self)
            finally:
                self.step_down("shutting down")
                if self.membership is not None:
                    await agent.close()
                await self.server.close()


def embedded(listen: str, data_dir: Path, password: str | None = None, cluster_id: str | None = None,
             secret: str | None = None, advertise: str | None = None,
             admin_password: str | None = None) -> Coordinator:
    return Coordinator(listen, EmbeddedStore(data_dir, advertise or listen, cluster_id), password, cluster_id,
                       secret, advertise, admin_password)


def with_store(listen: str, store: str, data_dir: Path | None = None, password: str | None = None,
               cluster_id: str | None = None, lease_ttl_s: int = 2, advertise: str | None = None,
               secret: str | None = None, admin_password: str | None = None) -> Coordinator:
    """`store`: "embedded" (needs `data_dir`) or `etcd://host:port[,host:port]/prefix`."""
    from catena.coordinator.address import EtcdAddress, parse

    if store == "embedded":
        if data_dir is None:
            raise CatenaError("the embedded store needs --data-dir")
        return embedded(listen, data_dir, password, cluster_id, secret, advertise, admin_password)
    address = parse(store)
    if not isinstance(address, EtcdAddress):
        raise CatenaError(f"--store {store!r}: expected 'embedded' or etcd://host:port[,host:port]/prefix")
    from catena.coordinator.etcd_store import EtcdStore

    return Coordinator(listen, EtcdStore(address, advertise or listen, lease_ttl_s, cluster_id), password,
                       cluster_id, secret, advertise, admin_password)
