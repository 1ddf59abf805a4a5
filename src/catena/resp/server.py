"""RESP server shell: bytes from sockets to a command table, replies back in order.

One `asyncio.Protocol` per connection. A command's handler returns a reply value, or a
`Deferred` when the answer comes later (a write waits for its commit), or an `asyncio.Future`
(an admin command that awaits something). Replies leave in request order whatever order they
are resolved in, and everything resolved in one event-loop turn goes out in one `write()` per
connection. A handler may return `Takeover(factory)` to hand the connection to
another protocol after `+OK` (peer links use this to switch from RESP to msgpack frames).

Commands the table marks `ordered` (reads) are not run while an earlier command of the same
connection is still unanswered: they wait in the queue and run once everything before them
is answered, so a connection reads its own writes, as with Redis.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

from catena import tls
from catena.errors import RemoteProtocolError
from catena.net import detect_dead_peer
from catena.resp.codec import OK, CommandParser, Error, encode

log = logging.getLogger(__name__)

_ids = itertools.count(1)
MAX_UNANSWERED = 4096  # replies a connection may owe before we stop reading from it


@dataclass(slots=True)
class Client:
    """Per-connection state that commands may read and change."""

    id: int
    addr: str
    authenticated: bool
    resp3: bool = False
    user: str = "default"  # who the connection is logged in as: default, catena or admin
    name: bytes = b""
    info: dict = field(default_factory=dict)


class Deferred:
    """A reply that is not known yet; `resolve(value)` releases it (and any behind it)."""

    __slots__ = ("value", "done", "conn")

    def __init__(self):
        self.value = None
        self.done = False
        self.conn: _Connection | None = None

    def resolve(self, value) -> None:
        if self.done:
            return
        self.value, self.done = value, True
        conn = self.conn
        if conn is not None:
            conn.server.ready(conn)


def _from_future(fut: asyncio.Future) -> Deferred:
    deferred = Deferred()

    def done(f: asyncio.Future):
        if f.cancelled():
            deferred.resolve(Error("ERR request cancelled"))
        elif f.exception() is not None:
            deferred.resolve(Error(f"ERR {f.exception()}"))
        else:
            deferred.resolve(f.result())

    fut.add_done_callback(done)
    return deferred


class _Parked:
    """An ordered command waiting for the connection's earlier replies."""

    __slots__ = ("args",)

    def __init__(self, args: list[bytes]):
        self.args = args


@dataclass(frozen=True, slots=True)
class Takeover:
    """Reply +OK, then give the transport to `factory(transport)` -> object with feed/lost."""

    factory: Callable[[asyncio.Transport], Any]


class _Connection(asyncio.Protocol):
    __slots__ = ("server", "transport", "parser", "client", "pending", "out", "peer", "closing", "futures",
                 "paused")

    def __init__(self, server: "RespServer"):
        self.server = server
        self.parser = CommandParser(server.max_bulk_len)
        self.pending: deque = deque()  # replies in request order: encoded bytes or Deferreds
        self.out: list[bytes] = []
        self.futures: set[asyncio.Future] = set()  # admin commands still running
        self.peer = None
        self.closing = False
        self.paused = False

    def connection_made(self, transport):
        self.transport = transport
        addr = transport.get_extra_info("peername") or ("?", 0)
        self.client = Client(next(_ids), f"{addr[0]}:{addr[1]}", self.server.table.password is None)
        if self.server.internal:
            detect_dead_peer(transport.get_extra_info("socket"))
        self.server.connections.add(self)

    def connection_lost(self, exc):
        self.server.connections.discard(self)
        for item in self.pending:
            if type(item) is Deferred:
                item.conn = None
        self.pending.clear()
        for fut in self.futures:
            fut.cancel()
        if self.peer is not None:
            self.peer.lost(exc)

    def data_received(self, data: bytes):
        if self.peer is not None:
            self.peer.feed(data)
            return
        if self.closing:
            return
        try:
            commands, failed = self.parser.feed(data), None
        except RemoteProtocolError as exc:  # answer what came before the bad frame, then close
            commands, failed = exc.commands, exc
        table = self.server.table
        client = self.client
        pending = self.pending
        ordered = table.ordered
        for args in commands:
            if pending and args[0].upper() in ordered:
                pending.append(_Parked(args))
                continue
            reply = self._dispatch(args)
            if type(reply) is Takeover:
                pending.append(encode(OK))
                self.flush()
                self.peer = reply.factory(self.transport)
                return
            if type(reply) is Deferred:
                if reply.done:
                    reply = reply.value
                else:
                    reply.conn = self
                    pending.append(reply)
                    continue
            if pending:
                pending.append(encode(reply, client.resp3))
            else:
                self.out.append(encode(reply, client.resp3))
        if failed is not None:
            pending.append(encode(Error(f"ERR {failed}")))
            self.closing = True
        if pending:
            self._drain()
        if self.out:
            self.transport.write(b"".join(self.out))
            self.out.clear()
        if self.closing and not pending:
            self.transport.close()
        elif len(pending) > MAX_UNANSWERED and not self.paused:
            self.paused = True  # backpressure: a deep pipeline waits in the client's socket
            self.transport.pause_reading()

    def _dispatch(self, args: list[bytes]):
        try:
            reply = self.server.table.dispatch(self.client, args)
        except Exception:  # a bug in a handler must not take the server down
            log.exception("command %r failed", args[:1])
            return Error("ERR internal error")
        if isinstance(reply, asyncio.Future):
            self.futures.add(reply)
            reply.add_done_callback(self.futures.discard)
            reply = _from_future(reply)
        return reply

    def _drain(self):
        pending = self.pending
        resp3 = self.client.resp3
        while pending:
            head = pending[0]
            kind = type(head)
            if kind is bytes:
                self.out.append(head)
            elif kind is _Parked:
                reply = self._dispatch(head.args)  # everything before it is answered now
                if type(reply) is Deferred and not reply.done:
                    reply.conn = self
                    pending[0] = reply
                    continue
                self.out.append(encode(reply.value if type(reply) is Deferred else reply, resp3))
            elif head.done:
                self.out.append(encode(head.value, resp3))
            else:
                return
            pending.popleft()

    def flush(self):
        self._drain()
        if self.out and not self.transport.is_closing():
            self.transport.write(b"".join(self.out))
        self.out.clear()
        if self.closing and not self.pending:
            self.transport.close()
        elif self.paused and len(self.pending) <= MAX_UNANSWERED // 2:
            self.paused = False
            self.transport.resume_reading()


class RespServer:
    """Listens on one TCP address and serves a `CommandTable`."""

    def __init__(self, table, max_bulk_len: int, internal: bool = False):
        self.table = table
        self.internal = internal  # catena's own processes connect here: find dead peers fast (catena.net)
        self.max_bulk_len = max_bulk_len
        self.connections: set[_Connection] = set()
        self._ready: list[_Connection] = []
        self._server: asyncio.base_events.Server | None = None

    def ready(self, conn: _Connection) -> None:
        """A deferred reply of `conn` resolved: write it (and whatever else is ready) this turn."""
        if not self._ready:
            asyncio.get_running_loop().call_soon(self._flush_ready)
        self._ready.append(conn)

    def _flush_ready(self) -> None:
        ready, self._ready = self._ready, []
        for conn in set(ready):
            conn.flush()

    async def start(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Connection(self), host, port, reuse_address=True,
                                                ssl=tls.server_context())

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for conn in list(self.connections):
                conn.transport.abort()
            await self._server.wait_closed()
