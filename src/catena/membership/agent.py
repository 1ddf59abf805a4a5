"""The membership agent: the `Detector` machine behind a UDP socket, a timer and RESP commands.

Embedded (a member or coordinator passes its own `CommandTable`, and `MEMBERS` is served on its
RESP port) or standalone (`catena agent`, `python -m catena.membership.cli agent`), in which case
the agent starts its own RESP server on the same port number as its UDP socket.

RESP commands:
  MEMBERS [ALL]   one array per member: [id "host:port@incarnation", "host:port", incarnation,
                  state ("alive"|"suspect"; with ALL also "failed"|"left"), last heard in ms
                  (-1: this member never received a datagram from it; 0 for itself)]
  MEMBERS.STATS   map of counters: datagrams/bytes sent and received, dropped_<reason>
                  (oversized, truncated, version, unsigned, forged, signed_unexpected,
                  unknown_type, malformed, replay), suspicions, refutations, failures_declared,
                  joins, syncs, members, incarnation, uptime_ms
"""

from __future__ import annotations

import asyncio
import logging
import random
import sys
import time
from dataclasses import dataclass
from typing import AsyncIterator

from catena.errors import CatenaError
from catena.membership.detector import Detector
from catena.membership.effects import PUBLIC_KINDS, Event, Joined, JoinFailed, Send, Stopped
from catena.membership.messages import MemberId, parse_addr
from catena.membership.settings import Settings
from catena.membership.udp import UdpShell
from catena.resp.codec import Error

log = logging.getLogger("catena.membership")

MAX_BULK = 1 << 20


class JoinError(CatenaError):
    """No introducer admitted this agent (all down, or one refused); the message says which."""


@dataclass(frozen=True, slots=True)
class MembershipEvent:
    """kind: "join" | "leave" | "failed"; at: wall-clock seconds (time.time()) when observed."""

    kind: str
    member: MemberId
    at: float


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


class MembershipAgent:
    """Runs one member of the membership group inside an asyncio program.

    listen: "host:port" (or a (host, port) tuple); the UDP socket binds it, and the RESP server
    (when no `table` is given) listens on the same port over TCP.
    bind: "host:port" to bind instead when `listen` is the address others reach this process at
    (through a NAT or a proxy) but not a local one.
    introducers: "host:port" strings; empty = start a new group.
    incarnation: defaults to the start time in ms since the epoch (larger for every restart).
    """

    def __init__(self, listen, introducers=(), settings: Settings | None = None, *,
                 secret: bytes | str | None = None, table=None, incarnation: int | None = None,
                 seed: int | None = None, bind: str | None = None):
        host, port = parse_addr(listen) if isinstance(listen, str) else listen
        self.bind = parse_addr(bind) if bind else (host, port)
        self.settings = settings or Settings()
        self.secret = secret.encode() if isinstance(secret, str) else secret
        self.me = MemberId(host, port, incarnation if incarnation is not None else wall_ms())
        self.introducers = tuple(a if isinstance(a, str) else f"{a[0]}:{a[1]}" for a in introducers)
        for a in self.introducers:
            parse_addr(a)
        self._table = table
        self._own_server = None
        self._rng = random.Random(seed)
        self._loop: asyncio.AbstractEventLoop | None = None
        self.machine: Detector | None = None
        names = tuple(dict.fromkeys((self.me.addr, f"{self.bind[0]}:{self.bind[1]}")))
        self.udp = UdpShell(self._on_message, self.secret, self.settings.max_datagram, names)
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = float("inf")
        self._subs: list[asyncio.Queue] = []
        self._joined: asyncio.Future | None = None
        self._stopped: asyncio.Future | None = None
        self._started_wall = time.time()
        self.closed = False

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind, join (or found) the group; returns once admitted. Raises JoinError."""
        self._loop = loop = asyncio.get_running_loop()
        self._joined = loop.create_future()
        self._stopped = loop.create_future()
        now = loop.time()
        self.machine = Detector(self.me, self.settings, self._rng, now, self.introducers)
        await self.udp.open(*self.bind)
        try:
            table = self._table
            if table is None:
                from catena.resp.commands import CommandTable
                from catena.resp.server import RespServer

                table = CommandTable(server_name="catena-agent", role="agent")
                self._own_server = RespServer(table, MAX_BULK)
                await self._own_server.start(*self.bind)
            self.register(table)
            log.info("event=start member=%s introducers=%s k=%d heartbeat_interval_ms=%d signed=%s",
                     self.me, ",".join(self.introducers) or "-", self.settings.k,
                     self.settings.heartbeat_interval_ms, bool(self.secret))
            self._execute(self.machine.start(now))
            await self._joined
        except BaseException:
            await self.close()
            raise

    async def leave(self) -> None:
        """Announce a voluntary leave, keep gossiping it briefly, then close."""
        if self.machine is not None and not self.closed:
            self._execute(self.machine.leave(self._loop.time()))
            try:
                async with asyncio.timeout(self.settings.leave_linger_ms / 1000 + 2.0):
                    await asyncio.shield(self._stopped)
            except TimeoutError:
                pass
        await self.close()

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
        self.udp.close()
        if self._own_server is not None:
            await self._own_server.close()
        for q in self._subs:
            q.put_nowait(None)
        for f in (self._joined, self._stopped):
            if f is not None and not f.done():
                f.cancel()

    async def __aenter__(self):
        await self.start()
        return self

    async def __aexit__(self, *exc):
        await self.close()

    # -- queries ----------------------------------------------------------------------------

    @property
    def id(self) -> MemberId:
        return self.machine.me if self.machine else self.me

    def members(self) -> list[MemberId]:
        """The live list (alive and suspect members, this one included)."""
        return self.machine.members() if self.machine else []

    def events(self) -> AsyncIterator[MembershipEvent]:
        """Join/leave/failed events from now on (subscribe before awaiting anything else)."""
        q: asyncio.Queue = asyncio.Queue()
        self._subs.append(q)

        async def gen():
            try:
                while (ev := await q.get()) is not None:
                    yield ev
            finally:
                if q in self._subs:
                    self._subs.remove(q)

        return gen()

    def stats(self) -> dict:
        out = dict(self.udp.counters)
        if self.machine:
            out.update(self.machine.counters)
            out["members"] = len(self.machine.members())
            out["incarnation"] = self.machine.me.incarnation
            out["phase"] = self.machine.phase
        out["uptime_ms"] = int((time.time() - self._started_wall) * 1000)
        return out

    # -- RESP commands ----------------------------------------------------------------------

    def register(self, table) -> None:
        table.register(b"MEMBERS", self._cmd_members, -1)
        table.register(b"MEMBERS.STATS", lambda client, args: self.stats(), 1)

    def _cmd_members(self, client, args):
        include_dead = False
        if len(args) == 2 and args[1].upper() == b"ALL":
            include_dead = True
        elif len(args) > 1:
            return Error("ERR syntax error: MEMBERS [ALL]")
        now = self._loop.time()
        rows = []
        for v in self.machine.views(now, include_dead):
            m = v.member
            heard = -1 if v.heard_ago is None else int(v.heard_ago * 1000)
            rows.append([str(m), m.addr, m.incarnation, v.status.name.lower(), heard])
        return rows

    # -- machine plumbing -------------------------------------------------------------------

    def _on_message(self, msg) -> None:
        if self.closed:
            return
        self._execute(self.machine.on_message(msg, self._loop.time()))

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = float("inf")
        if not self.closed:
            self._execute(self.machine.on_timer(self._loop.time()))

    def _execute(self, effects) -> None:
        for e in effects:
            t = type(e)
            if t is Send:
                self.udp.send(e.to, e.msg)
            elif t is Event:
                self._publish(e)
            elif t is Joined:
                log.info("event=joined member=%s members=%d", e.me, len(self.machine.members()))
                if not self._joined.done():
                    self._joined.set_result(e.me)
            elif t is JoinFailed:
                log.error("event=join-failed member=%s reason=%s", self.machine.me, e.reason)
                if not self._joined.done():
                    self._joined.set_exception(JoinError(e.reason))
            elif t is Stopped:
                if not self._stopped.done():
                    self._stopped.set_result(None)
        self._arm()

    def _publish(self, e: Event) -> None:
        log.info("event=%s member=%s observer=%s", e.kind, e.member, self.machine.me)
        if e.kind in PUBLIC_KINDS:
            ev = MembershipEvent(e.kind, e.member, time.time())
            for q in self._subs:
                q.put_nowait(ev)

    def _arm(self) -> None:
        if self.closed:
            return
        d = self.machine.next_deadline()
        if d == float("inf") or d >= self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = d
        self._timer = self._loop.call_at(d, self._on_timer)


async def run(args_listen: str, introducers, settings: Settings, secret, incarnation=None, metrics_listen=None) -> int:
    """Foreground daemon: join, serve until SIGTERM/SIGINT, then leave. Exit code."""
    import signal

    agent = MembershipAgent(args_listen, introducers, settings, secret=secret, incarnation=incarnation)
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done.set)
    if metrics_listen:
        from catena.metrics.membership import serve_metrics

        try:
            metrics = await serve_metrics(agent, metrics_listen)
        except CatenaError as exc:
            print(f"catena agent: {exc}", flush=True, file=sys.stderr)
            return 1
    try:
        await agent.start()
    except JoinError as exc:
        print(f"catena agent: cannot join: {exc}", flush=True, file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"catena agent: cannot listen on {args_listen}: {exc}", flush=True, file=sys.stderr)
        return 1
    log.info("event=ready member=%s", agent.id)
    await done.wait()
    log.info("event=leaving member=%s", agent.id)
    await agent.leave()
    if metrics_listen:
        await metrics.close()
    return 0
