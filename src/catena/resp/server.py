"""RESP server shell: bytes from sockets to a command table, replies back in order.

One `asyncio.Protocol` per connection. A command's handler returns a reply value, or an
`asyncio.Future` when the answer comes later (a write waits for its commit). Replies leave in
request order whatever order futures finish in, and everything ready in one event-loop turn
goes out in one `write()`. A handler may return `Takeover(factory)` to hand the connection to
another protocol after `+OK` (peer links use this to switch from RESP to msgpack frames).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

from catena.errors import RemoteProtocolError
from catena.resp.codec import OK, CommandParser, Error, encode

log = logging.getLogger(__name__)

_ids = itertools.count(1)


@dataclass(slots=True)
class Client:
    """Per-connection state that commands may read and change."""

    id: int
    addr: str
    authenticated: bool
    resp3: bool = False
    name: bytes = b""
    info: dict = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Takeover:
    """Reply +OK, then give the transport to `factory(transport)` -> object with feed/lost."""

    factory: Callable[[asyncio.Transport], Any]


class _Connection(asyncio.Protocol):
    __slots__ = ("server", "transport", "parser", "client", "pending", "out", "scheduled", "peer", "closing")

    def __init__(self, server: "RespServer"):
        self.server = server
        self.parser = CommandParser(server.max_bulk_len)
        self.pending: deque = deque()  # replies in request order: encoded bytes or Futures
        self.out: list[bytes] = []
        self.scheduled = False
        self.peer = None
        self.closing = False

    def connection_made(self, transport):
        self.transport = transport
        addr = transport.get_extra_info("peername") or ("?", 0)
        self.client = Client(next(_ids), f"{addr[0]}:{addr[1]}", self.server.table.password is None)
        self.server.connections.add(self)

    def connection_lost(self, exc):
        self.server.connections.discard(self)
        for item in self.pending:
            if isinstance(item, asyncio.Future):
                item.cancel()
        self.pending.clear()
        if self.peer is not None:
            self.peer.lost(exc)

    def data_received(self, data: bytes):
        if self.peer is not None:
            self.peer.feed(data)
            return
        if self.closing:
            return
        try:
            commands = self.parser.feed(data)
        except RemoteProtocolError as exc:
            self.pending.append(encode(Error(f"ERR {exc}")))
            self.closing = True
            self._flush()
            self.transport.close()
            return
        table = self.server.table
        client = self.client
        pending = self.pending
        for args in commands:
            try:
                reply = table.dispatch(client, args)
            except Exception:  # a bug in a handler must not take the server down
                log.exception("command %r failed", args[:1])
                reply = Error("ERR internal error")
            if type(reply) is Takeover:
                pending.append(encode(OK))
                self._flush()
                self.peer = reply.factory(self.transport)
                return
            if isinstance(reply, asyncio.Future):
                pending.append(reply)
                reply.add_done_callback(self._future_done)
            elif pending:
                pending.append(encode(reply, client.resp3))
            else:
                self.out.append(encode(reply, client.resp3))
        if pending:
            self._drain()
        if self.out:
            self.transport.write(b"".join(self.out))
            self.out.clear()

    def _future_done(self, _fut):
        if not self.scheduled:
            self.scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _drain(self):
        pending = self.pending
        resp3 = self.client.resp3
        while pending:
            head = pending[0]
            if type(head) is bytes:
                self.out.append(head)
            elif head.done():
                if head.cancelled():
                    self.out.append(encode(Error("ERR request cancelled")))
                elif head.exception() is not None:
                    self.out.append(encode(Error(f"ERR {head.exception()}")))
                else:
                    self.out.append(encode(head.result(), resp3))
            else:
                return
            pending.popleft()

    def _flush(self):
        self.scheduled = False
        self._drain()
        if self.out and not self.transport.is_closing():
            self.transport.write(b"".join(self.out))
        self.out.clear()


class RespServer:
    """Listens on one TCP address and serves a `CommandTable`."""

    def __init__(self, table, max_bulk_len: int):
        self.table = table
        self.max_bulk_len = max_bulk_len
        self.connections: set[_Connection] = set()
        self._server: asyncio.base_events.Server | None = None

    async def start(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Connection(self), host, port, reuse_address=True)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for conn in list(self.connections):
                conn.transport.abort()
            await self._server.wait_closed()
