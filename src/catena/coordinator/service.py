"""The coordinator process (shell): admin commands over RESP (credis names), the config
store, and view pushes to members. Decisions are `Reconfig`'s; this file persists them before
pushing (a view no store has seen never reaches a member) and retries pushes until each member
has the newest view.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from pathlib import Path

from catena.chain.node import view_words
from catena.coordinator.health import HealthCheck
from catena.coordinator.reconfig import CoordinatorState, Reconfig
from catena.coordinator.store import ConfigStore, EmbeddedStore
from catena.resp.client import ReplyError, RespConnection, call
from catena.resp.codec import DEFAULT_MAX_BULK_LEN, OK, Error
from catena.resp.commands import CommandTable
from catena.resp.server import RespServer
from catena.view import View

log = logging.getLogger(__name__)

ADD_TIMEOUT_S = 30.0
PUSH_RETRY_S = 0.5
LEARNER_POLL_S = 0.05


def _addr(args) -> str:
    host, port = args[1].decode(), args[2].decode()
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"bad port {port!r}")
    return f"{host}:{int(port)}"


class Coordinator:
    def __init__(self, listen: str, store: ConfigStore, password: str | None = None):
        self.listen = listen
        self.store = store
        saved = store.load()
        self.reconfig = Reconfig(CoordinatorState.from_dict(saved) if saved else
                                 CoordinatorState(cluster_id=uuid.uuid4().hex))
        if not saved:
            store.save(self.reconfig.state.to_dict())
        self.table = CommandTable(password, server_name="catena-coordinator")
        self.server = RespServer(self.table, DEFAULT_MAX_BULK_LEN)
        self._changed = asyncio.Event()  # set (and replaced) whenever the view changes
        self._pushed: dict[str, int] = {}  # member -> newest epoch it acknowledged
        self._push_wake: dict[str, asyncio.Event] = {}
        self._group: asyncio.TaskGroup | None = None
        self._watcher: asyncio.Task | None = None
        self.health = HealthCheck()
        self._probers: dict[str, asyncio.Task] = {}
        for name, fn, arity in (
            (b"MASTER.ADD", self._add, 3), (b"MASTER.REMOVE", self._remove, 3),
            (b"MASTER.REGISTER", self._register, -3), (b"MASTER.GET_CHAIN", self._get_chain, -1),
            (b"MASTER.HEAD", self._head, -1), (b"MASTER.TAIL", self._tail, -1),
            (b"MASTER.GET_VIEW", self._get_view, -1),
            (b"MASTER.STATUS", self._status, -1),
        ):
            self.table.register(name, fn, arity)

    @property
    def view(self) -> View:
        return self.reconfig.view(0)

    # -- commands -------------------------------------------------------------------------------

    def _register(self, client, args):
        """MASTER.REGISTER host port [incarnation [cluster-id epoch]]: a member started with
        --coordinator announces itself; the reply is the cluster id it must keep."""
        addr = _addr(args)
        incarnation = args[3].decode() if len(args) > 3 else "0"
        cluster_id = args[4].decode() if len(args) > 4 else ""
        epoch = int(args[5]) if len(args) > 5 else 0
        changed = self.reconfig.register(addr, incarnation, cluster_id=cluster_id, epoch=epoch)
        if isinstance(changed, str):
            log.warning("refused registration of %s: %s", addr, changed)
            return Error(f"ERR refused: {addr} {changed}")
        self._commit(changed)
        return self.reconfig.state.cluster_id

    def _add(self, client, args):
        addr = _addr(args)
        self.reconfig.state.retired.pop(addr, None)
        self._commit(self.reconfig.add(addr))
        if addr in self.view.members:
            return OK
        return asyncio.ensure_future(self._wait_member(addr))

    async def _wait_member(self, addr: str):
        try:
            async with asyncio.timeout(ADD_TIMEOUT_S):
                while addr not in self.view.members:
                    await self._changed.wait()
            return OK
        except TimeoutError:
            return Error(f"ERR {addr} is still catching up with the tail; it joins when it has (see MASTER.GET_CHAIN)")

    def _remove(self, client, args):
        addr = _addr(args)
        state = self.reconfig.state
        if addr not in self._watched() and addr not in state.queued and addr not in state.registry:
            return Error(f"ERR {addr} is not a member of the chain")
        self._commit(self.reconfig.retire(addr), also=[addr])
        return OK

    def _get_chain(self, client, args):
        return list(self.view.members)

    def _head(self, client, args):
        return self.view.head

    def _tail(self, client, args):
        return self.view.tail

    def _get_view(self, client, args):
        return view_words(self.view)

    def _status(self, client, args):
        v = self.view
        return {"chain_id": v.chain_id, "epoch": v.epoch, "members": list(v.members), "learner": v.learner,
                "queued": list(self.reconfig.state.queued), "fence": self.store.fence}

    # -- persisting and pushing views -----------------------------------------------------------

    def _commit(self, changed: list[View], also: list[str] = ()) -> None:
        """Persist first, then push to every member the view names (and to removed ones)."""
        if not changed:
            return
        self.store.save(self.reconfig.state.to_dict())
        for view in changed:
            log.info("view epoch %d: members=%s learner=%s", view.epoch, ",".join(view.members), view.learner)
        targets = set(self.view.members) | set(also) | ({self.view.learner} - {None})
        for old in changed:
            targets |= set(old.members)
        for addr in targets:
            self._ensure_pusher(addr).set()
        for addr in self._watched():
            if addr not in self._probers:
                self._probers[addr] = self._group.create_task(self._probe(addr))
        if self.view.learner and (self._watcher is None or self._watcher.done()):
            self._watcher = self._group.create_task(self._watch_learner())
        self._changed.set()
        self._changed = asyncio.Event()

    def _ensure_pusher(self, addr: str) -> asyncio.Event:
        wake = self._push_wake.get(addr)
        if wake is None:
            wake = self._push_wake[addr] = asyncio.Event()
            self._group.create_task(self._pusher(addr, wake))
        return wake

    async def _pusher(self, addr: str, wake: asyncio.Event) -> None:
        """Push the newest view to `addr` until it has it; stops once it left the chain and knows."""
        while True:
            await wake.wait()
            wake.clear()
            view = self.view
            if self._pushed.get(addr, -1) >= view.epoch:
                continue
            try:
                await call(addr, b"MEMBER.VIEW", *view_words(view), timeout=1.0)
                self._pushed[addr] = view.epoch
            except (OSError, asyncio.TimeoutError, ConnectionError, ReplyError) as exc:
                log.debug("push of epoch %d to %s failed: %s", view.epoch, addr, exc)
                if addr in view.members or addr == view.learner:
                    await asyncio.sleep(PUSH_RETRY_S)
                    wake.set()

    async def _watch_learner(self) -> None:
        """While a member is being added, ask the tail how far its learner got; promote it
        once the tail says it is caught up (under the view we made)."""
        while (view := self.view).learner:
            try:
                raw = await call(view.tail, b"MEMBER.STATUS", timeout=1.0)
                status = {raw[i]: raw[i + 1] for i in range(0, len(raw), 2)}
                if status.get(b"epoch") == view.epoch and status.get(b"learner_caught_up") == 1:
                    self._commit(self.reconfig.caught_up(view.epoch, view.learner))
                    continue
            except (OSError, asyncio.TimeoutError, ConnectionError, ReplyError) as exc:
                log.debug("learner progress from %s: %s", view.tail, exc)
            await asyncio.sleep(LEARNER_POLL_S)

    def _watched(self) -> set[str]:
        view = self.view
        return set(view.members) | ({view.learner} - {None})

    async def _probe(self, addr: str) -> None:
        """Our own check of a chain member: PING with a short deadline on a kept connection.
        A member that stops answering (crashed, paused, wedged) is confirmed dead after
        `misses_to_fail` probes in a row and removed from the chain: the repair needs no human."""
        health, conn = self.health, None
        try:
            while addr in self._watched():
                started = time.monotonic()
                try:
                    if conn is None:
                        conn = await RespConnection.open(addr, health.timeout_s)
                    await conn.call(b"PING", timeout=health.timeout_s)
                    ok = True
                except (OSError, asyncio.TimeoutError, ConnectionError, ReplyError):
                    ok = False
                    if conn is not None:
                        await conn.close()
                        conn = None
                if health.result(addr, ok) and addr in self._watched():
                    changed = self.reconfig.fail(addr)
                    if not changed:
                        log.warning("member %s failed %d probes in a row, but it is the last member of its "
                                    "chain: keeping it; the chain waits for it", addr, health.misses_to_fail)
                        continue
                    log.warning("member %s failed %d probes in a row: removed it from the chain",
                                addr, health.misses_to_fail)
                    self._commit(changed, also=[addr])
                    break
                await asyncio.sleep(max(0.0, health.interval_s - (time.monotonic() - started)))
        finally:
            health.forget(addr)
            self._probers.pop(addr, None)
            if conn is not None:
                await conn.close()

    async def run(self, started: asyncio.Event | None = None) -> None:
        host, port = self.listen.rsplit(":", 1)
        async with asyncio.TaskGroup() as group:
            self._group = group
            await self.server.start(host, int(port))
            log.info("coordinator listening on %s, epoch %d, chain %s", self.listen, self.view.epoch,
                     ",".join(self.view.members) or "(empty)")
            if started is not None:
                started.set()
            for addr in set(self.view.members) | ({self.view.learner} - {None}):
                self._ensure_pusher(addr).set()
            for addr in self._watched():
                self._probers[addr] = group.create_task(self._probe(addr))
            if self.view.learner:  # an add that was under way when we stopped
                self._watcher = group.create_task(self._watch_learner())
            try:
                await asyncio.Future()
            finally:
                await self.server.close()


def embedded(listen: str, data_dir: Path, password: str | None = None) -> Coordinator:
    return Coordinator(listen, EmbeddedStore(data_dir), password)

