"""Finding the coordinator leader, for members, clients and the CLI (`CoordinatorClient`).

Given a coordinator address (address.py): with `host:port,…` it asks any coordinator and follows
`-NOTLEADER host:port` redirects; with `etcd://…/prefix` it reads the leader's address from
`<prefix>/leader` once and then watches it. A call that finds no leader within its deadline
fails with every address it tried.
"""

from __future__ import annotations

import asyncio
import logging
import random

from catena.coordinator.address import EtcdAddress, StaticAddress, parse, redirect_of
from catena.errors import CatenaError
from catena.resp.client import ReplyError, call

log = logging.getLogger(__name__)

MAX_REDIRECTS = 4


class NoLeader(CatenaError):
    """No coordinator leader answered before the deadline."""


class CoordinatorClient:
    """Calls the coordinator leader, wherever it is. One instance per process; `call` is safe to
    use from several tasks. For etcd addresses, `watch()` (run it in the owner's TaskGroup)
    keeps the leader's address current and calls `on_change` when it changes."""

    def __init__(self, address: str | StaticAddress | EtcdAddress, on_change=None, rng: random.Random | None = None,
                 auth: tuple | None = None, password: str | None = None):
        self.address = parse(address) if isinstance(address, str) else address
        self.auth = auth  # (user, password) sent before each call, e.g. catena.resp.client.internal_auth
        self.password = password  # a data password, sent only to a coordinator that asks (NOAUTH)
        self._auth_at: dict[str, tuple] = {}  # coordinators that asked for it
        self.on_change = on_change
        self.leader: str | None = None  # best guess of the leader's address
        self._rng = rng or random.Random()
        self._etcd = None  # EtcdConnection, for etcd addresses

    def __str__(self) -> str:
        return str(self.address)

    async def close(self) -> None:
        if self._etcd is not None:
            await self._etcd.close()

    def _set_leader(self, addr: str | None) -> None:
        if addr != self.leader:
            self.leader = addr
            if addr and self.on_change is not None:
                self.on_change(addr)

    async def _etcd_leader(self, timeout: float) -> str | None:
        from catena.coordinator.etcd_store import EtcdConnection

        if self._etcd is None:
            self._etcd = EtcdConnection(self.address.endpoints, op_timeout=timeout)
        kv = await self._etcd.run(lambda c: c.get(self.address.leader_key), "read the leader key",
                                  timeout=timeout)
        return kv.value.decode() if kv is not None else None

    async def call(self, *args, timeout: float = 2.0):
        """Send one command to the leader; follow redirects; try the other addresses on
        connection errors. Raises NoLeader (naming what was tried) when the deadline passes,
        ReplyError for the leader's own error replies."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        tried: list[str] = []
        problems: list[str] = []
        static = self.address.addrs if isinstance(self.address, StaticAddress) else ()
        order = list(static)
        self._rng.shuffle(order)
        asked = 0  # addresses of the list asked so far (the list is walked round robin)
        redirects = 0
        pause = 0.02
        while (left := deadline - loop.time()) > 0:
            target = self.leader
            if target is None:
                if static:
                    target = order[asked % len(order)]
                    asked += 1
                else:
                    try:
                        target = await self._etcd_leader(min(left, 1.0))
                    except CatenaError as exc:
                        problems.append(str(exc))
                        target = None
                    if target is None:
                        problems.append(f"no leader key {self.address.leader_key.decode()} in etcd")
                        await asyncio.sleep(min(pause, max(0.0, deadline - loop.time())))
                        pause = min(pause * 2, 0.5)
                        continue
                    self._set_leader(target)
            tried.append(target)
            try:
                reply = await call(target, *args, timeout=max(0.05, min(left, 2.0)),
                                   auth=self._auth_at.get(target, self.auth))
                self._set_leader(target)
                return reply
            except ReplyError as exc:
                if self.password and target not in self._auth_at and str(exc).startswith("NOAUTH"):
                    self._auth_at[target] = (b"default", self.password)
                    self.leader = target
                    continue  # the same coordinator again, logged in
                is_redirect, leader = redirect_of(str(exc))
                if not is_redirect:
                    raise
                problems.append(f"{target}: {exc}")
                if leader and leader != target and redirects < MAX_REDIRECTS:
                    redirects += 1
                    self._set_leader(leader)
                    continue
                self.leader = None
            except (OSError, asyncio.TimeoutError, ConnectionError) as exc:
                problems.append(f"{target}: {exc or type(exc).__name__}")
                self.leader = None
            redirects = 0
            if static and asked % len(order) != 0:
                continue  # try the next address before pausing
            await asyncio.sleep(min(pause, max(0.0, deadline - loop.time())))
            pause = min(pause * 2, 0.5)
        seen = ", ".join(dict.fromkeys(tried)) or "nothing"
        last = "; ".join(problems[-3:]) or "no answer"
        raise NoLeader(f"no coordinator leader answered within {timeout:g} s at {self.address} "
                       f"(tried {seen}; last: {last})")

    async def watch(self) -> None:
        """For etcd addresses: follow the leader key (read, then watch from the next revision,
        resumed after a reconnect). Returns at once for host:port lists."""
        if not isinstance(self.address, EtcdAddress):
            return
        from catena.coordinator.etcd_store import EtcdConnection, watch_prefix

        if self._etcd is None:
            self._etcd = EtcdConnection(self.address.endpoints)
        key = self.address.leader_key
        async for kind, kv, _rev in watch_prefix(self._etcd, key, exact=True):
            if kind == "snapshot":
                self._set_leader(kv[key].value.decode() if key in kv else None)
            elif kind == "put":
                self._set_leader(kv.value.decode())
            elif kind == "delete":
                self.leader = None
