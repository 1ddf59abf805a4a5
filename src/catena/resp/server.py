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

Limits (`catena.resp.limits`), as Redis applies them: a connection beyond `maxclients` is told
`-ERR max number of clients reached` and closed, except that RESERVED more connections are
admitted on probation for catena's own traffic (their first command must be `AUTH catena
<secret>`, or without a cluster secret a `reserved` one, and then they run only those). A client whose unread replies pass the output-buffer hard limit, or the
soft limit for its seconds, is disconnected; while its unread replies pass the soft limit its
commands are not read (they wait in its socket). A partial command larger than the per-client
query-buffer limit, or one that takes all partial commands past the total cap, closes its
connection with an error.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

from catena import tls
from catena.errors import RemoteProtocolError
from catena.net import detect_dead_peer
from catena.resp.codec import OK, CommandParser, Encoded, Error, Push, encode
from catena.resp.limits import RESERVED, Limits

log = logging.getLogger(__name__)

_ids = itertools.count(1)
MAX_UNANSWERED = 4096  # replies a connection may owe before we stop reading from it
PROBATION_S = 2.0  # a connection admitted above maxclients must prove it is catena's within this
MAX_CLIENTS = b"-ERR max number of clients reached\r\n"
_NOTHING = Encoded(b"")  # a reply that sends no bytes
_RESERVED_ONLY = object()  # `probation` of a connection in the headroom admitted by a reserved command


@dataclass(slots=True, eq=False)  # hashable by identity: subscriptions hold clients in sets
class Client:
    """Per-connection state that commands may read and change."""

    id: int
    addr: str
    authenticated: bool
    resp3: bool = False
    user: str = "default"  # who the connection is logged in as: default, catena or admin
    name: bytes = b""
    info: dict = field(default_factory=dict)
    multi: list | None = None  # MULTI: the queued commands (None: not in a transaction)
    multi_failed: bool = False  # a command failed to queue: EXEC aborts
    watched: dict = field(default_factory=dict)  # WATCH: key -> version observed
    channels: set = field(default_factory=set)  # SUBSCRIBE
    patterns: set = field(default_factory=set)  # PSUBSCRIBE
    push: Callable | None = None  # push(value): out-of-band data for this client (pub/sub)
    close: Callable | None = None  # close(): end the connection once its replies are out
    laddr: str = ""
    created: float = 0.0  # monotonic seconds
    last_seen: float = 0.0  # the last command's time
    cmd: bytes = b"NULL"  # the last command's name
    reply_off: bool = False  # CLIENT REPLY OFF: replies are not sent (pushes are)
    reply_skip: int = 0  # CLIENT REPLY SKIP: replies still to drop (its own, then the next command's)


class Deferred:
    """A reply that is not known yet; `resolve(value)` releases it (and any behind it)."""

    __slots__ = ("value", "done", "conn", "muted")

    def __init__(self):
        self.value: Any = None
        self.done = False
        self.conn: _Connection | None = None
        self.muted = False  # CLIENT REPLY OFF/SKIP: resolved, but never sent

    def resolve(self, value) -> None:
        if self.done:
            return
        self.value, self.done = value, True
        conn = self.conn
        if conn is not None:
            conn.server.ready(conn)


class Mapped:
    """A token for a machine's reply that resolves `target` with `fn(reply)`."""

    __slots__ = ("target", "fn")

    def __init__(self, target: Deferred, fn: Callable):
        self.target, self.fn = target, fn

    def resolve(self, value) -> None:
        self.target.resolve(self.fn(value))


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


def _muted(reply):
    """CLIENT REPLY OFF/SKIP: nothing is sent for `reply`, except push frames (RESP3's
    subscription replies)."""
    if type(reply) is Deferred:
        reply.muted = True
        return reply
    if type(reply) is Push or (type(reply) is Encoded and reply.wire[:1] == b">"):
        return reply
    return _NOTHING


@dataclass(frozen=True, slots=True)
class Takeover:
    """Reply +OK, then give the transport to `factory(transport)` -> object with feed/lost."""

    factory: Callable[[asyncio.Transport], Any]


class _Connection(asyncio.Protocol):
    __slots__ = ("server", "transport", "parser", "client", "pending", "out", "peer", "closing", "futures",
                 "paused", "write_paused", "queued", "buffered", "soft_since", "soft_timer", "probation",
                 "parked")

    def __init__(self, server: "RespServer"):
        self.server = server
        self.parser = CommandParser(server.max_bulk_len)
        self.pending: deque = deque()  # replies in request order: encoded bytes or Deferreds
        self.out: list[bytes] = []
        self.futures: set[asyncio.Future] = set()  # admin commands still running
        self.peer: Any = None  # after a Takeover: the protocol given the transport (feed/lost)
        self.closing = False
        self.paused = False  # too many unanswered commands: not reading
        self.write_paused = False  # unread replies past the soft limit: not reading
        self.queued = 0  # bytes of encoded replies in `out` and `pending` (not yet in the transport)
        self.buffered = 0  # bytes of the partial command the parser holds (counted in the server's total)
        self.soft_since: float | None = None  # when unread replies went past the soft limit
        self.soft_timer: asyncio.TimerHandle | None = None
        self.probation: Any = None  # in the headroom above maxclients: a timer, then _RESERVED_ONLY (or None)
        self.parked = 0  # _Parked commands in `pending`: while any wait, later commands wait behind them

    def connection_made(self, transport):
        self.transport = transport
        addr = transport.get_extra_info("peername") or ("?", 0)
        local = transport.get_extra_info("sockname") or ("?", 0)
        now = time.monotonic()
        self.client = Client(next(_ids), f"{addr[0]}:{addr[1]}", self.server.table.password is None,
                             push=self.push, close=self.close_after_replies, laddr=f"{local[0]}:{local[1]}",
                             created=now, last_seen=now)
        server = self.server
        limits = server.limits
        if len(server.connections) >= limits.maxclients + RESERVED:
            self.closing = True
            transport.write(MAX_CLIENTS)
            transport.close()
            return
        server.connections.add(self)
        server.accepted += 1
        if server.internal:
            detect_dead_peer(transport.get_extra_info("socket"))
        if len(server.connections) > limits.maxclients:
            self.probation = asyncio.get_running_loop().call_later(PROBATION_S, self._refuse)
        high = limits.output_soft or limits.output_hard
        if high:  # pause_writing() fires when the unread replies pass the soft limit
            transport.set_write_buffer_limits(high=high)

    def connection_lost(self, exc):
        self.server.connections.discard(self)
        for hook in self.server.table.on_close:
            hook(self.client)
        self.server.input_buffered -= self.buffered
        self.buffered = 0
        for timer in (self.probation, self.soft_timer):
            if timer is not None and timer is not _RESERVED_ONLY:
                timer.cancel()
        for item in self.pending:
            if type(item) is Deferred:
                item.conn = None
        self.pending.clear()
        for fut in self.futures:
            fut.cancel()
        if self.peer is not None:
            self.peer.lost(exc)

    def push(self, value) -> None:
        """Out-of-band data (a pub/sub message), after the replies already owed."""
        if self.closing or self.transport.is_closing():
            return
        encoded = encode(value, self.client.resp3)
        self.queued += len(encoded)
        (self.pending if self.pending else self.out).append(encoded)
        self.server.ready(self)

    def close_after_replies(self) -> None:
        """QUIT, CLIENT KILL: read no more commands; close once what is owed is written."""
        self.closing = True
        self.server.ready(self)

    def pause_writing(self):
        self.write_paused = True
        self.transport.pause_reading()
        self._check_output()

    def resume_writing(self):
        self.write_paused = False
        if not self.paused:
            self.transport.resume_reading()
        self._check_output()

    def data_received(self, data: bytes):
        self.server.bytes_in += len(data)
        if self.peer is not None:
            self.peer.feed(data)
            return
        if self.closing:
            return
        failed: RemoteProtocolError | str | None
        try:
            commands, failed = self.parser.feed(data), None
        except RemoteProtocolError as exc:  # answer what came before the bad frame, then close
            commands, failed = exc.commands, exc
        if (buffered := self.parser.buffered) or self.buffered:  # (a partial command, now or before)
            if (over := self._account_input(buffered)) is not None:
                failed = over
        table = self.server.table
        client = self.client
        pending = self.pending
        ordered = table.ordered
        room = self._room() if self.queued else None  # (a write's reply is not queued yet)
        for args in commands:
            if self.closing:  # QUIT (or CLIENT KILL): nothing after it runs
                break
            if self.queued and self.queued > (room if room is not None else (room := self._room())):
                return self._overflow(hard=True)
            if self.probation is not None:
                if (reply := self._admit(args)) is None:
                    return self._refuse()
            elif pending and (self.parked or args[0].upper() in ordered):
                pending.append(_Parked(args))  # commands run in the order they came (MULTI's queue)
                self.parked += 1
                continue
            else:
                reply = self._dispatch(args)
            if type(reply) is Takeover:
                pending.append(ok := encode(OK))
                self.queued += len(ok)
                self.flush()
                self.peer = reply.factory(self.transport)
                return
            if type(reply) is Deferred:
                if reply.done:
                    reply = _NOTHING if reply.muted else reply.value
                else:
                    reply.conn = self
                    pending.append(reply)
                    continue
            encoded = encode(reply, client.resp3)
            self.queued += len(encoded)
            if pending:
                pending.append(encoded)
            else:
                self.out.append(encoded)
        if failed is not None and not self.closing:
            pending.append(encoded := encode(Error(f"ERR {failed}")))
            self.queued += len(encoded)
            self.closing = True
        if pending and (type(head := pending[0]) is not Deferred or head.done):
            self._drain()  # (a write's reply, still owed, leaves nothing to drain)
        self._write()
        if self.closing and not pending:
            self.transport.close()
        elif len(pending) > MAX_UNANSWERED and not self.paused:
            self.paused = True  # backpressure: a deep pipeline waits in the client's socket
            self.transport.pause_reading()

    def _account_input(self, buffered: int) -> str | None:
        """Count the parser's partial command (`buffered` bytes) against this client's and
        everyone's caps."""
        server = self.server
        server.input_buffered += buffered - self.buffered
        self.buffered = buffered
        limits = server.limits
        if limits.query_buffer and buffered > limits.query_buffer:
            error = f"query buffer of {buffered} bytes passed client-query-buffer-limit ({limits.query_buffer})"
        elif limits.input_total and buffered and server.input_buffered > limits.input_total:
            error = (f"partial commands of all clients hold {server.input_buffered} bytes, "
                     f"past max-input-buffer ({limits.input_total})")
        else:
            return None
        self.parser = CommandParser(server.max_bulk_len)  # let the partial command go at once
        server.input_buffered -= buffered
        self.buffered = 0
        return error

    def _admit(self, args: list[bytes]):
        """A connection in the headroom above maxclients runs catena's own commands only: its
        reply to `args`, or None to refuse the connection. `AUTH catena <secret>` admits it for
        good; without a cluster secret (nobody can prove to be catena) a reserved command is
        answered, and the connection keeps to reserved commands."""
        name = args[0].upper()
        if name == b"AUTH" and len(args) == 3 and args[1] == b"catena":
            reply = self._dispatch(args)
            if reply is not OK:
                return None
            self._end_probation(None)
            return reply
        if name not in self.server.reserved or self.server.table.cluster_secret is not None:
            return None
        self._end_probation(_RESERVED_ONLY)
        return self._dispatch(args)

    def _end_probation(self, then) -> None:
        if self.probation is not _RESERVED_ONLY:
            self.probation.cancel()
        self.probation = then

    def _refuse(self) -> None:
        """maxclients: this connection is not catena's own (or did not say so in time)."""
        if self.probation is not None and not self.transport.is_closing():
            self.closing = True
            self.pending.clear()
            self.transport.write(MAX_CLIENTS)
            self.transport.close()

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
        client = self.client
        if client.reply_off or client.reply_skip:
            if client.reply_skip:
                client.reply_skip -= 1
            reply = _muted(reply)
        return reply

    def _drain(self):
        pending = self.pending
        resp3 = self.client.resp3
        room = None  # (read once a reply is queued: until then no limit can be passed)
        while pending:
            head = pending[0]
            kind = type(head)
            if kind is bytes:
                self.out.append(head)
            elif self.queued and self.queued > (room if room is not None else (room := self._room())):
                return self._overflow(hard=True)
            elif kind is _Parked:
                self.parked -= 1
                if self.closing:  # behind a QUIT: never run
                    pending.popleft()
                    continue
                reply = self._dispatch(head.args)  # everything before it is answered now
                if type(reply) is Deferred and not reply.done:
                    reply.conn = self
                    pending[0] = reply
                    continue
                if type(reply) is Deferred:
                    reply = _NOTHING if reply.muted else reply.value
                encoded = encode(reply, resp3)
                self.queued += len(encoded)
                self.out.append(encoded)
            elif head.done:
                encoded = b"" if head.muted else encode(head.value, resp3)
                self.queued += len(encoded)
                self.out.append(encoded)
            else:
                return
            pending.popleft()

    def _write(self) -> None:
        """Hand what is ready to the transport, then hold the client to its output limits
        (unless it was under them and every reply went out: then it still is)."""
        transport = self.transport
        if self.out:
            data = b"".join(self.out)
            self.out.clear()
            self.queued -= len(data)
            self.server.bytes_out += len(data)
            if not transport.is_closing():
                transport.write(data)
        if self.soft_since is None and not self.queued and not transport.get_write_buffer_size():
            return
        self._check_output()

    def _room(self) -> int:
        """How far `queued` may grow before the hard limit: it is checked before each reply is
        added, so one reply larger than the limit still goes out to a client that reads it."""
        hard = self.server.limits.output_hard
        return hard - self.transport.get_write_buffer_size() if hard else 1 << 62

    def _check_output(self) -> None:
        """The soft limit: unread replies past it for its seconds disconnect the client."""
        limits = self.server.limits
        if not limits.output_soft or self.transport.is_closing():
            return
        size = self.transport.get_write_buffer_size() + self.queued
        if size <= limits.output_soft:
            self.soft_since = None
            return
        now = asyncio.get_running_loop().time()
        if self.soft_since is None:
            self.soft_since = now
            if self.soft_timer is None:
                self.soft_timer = asyncio.get_running_loop().call_later(limits.output_soft_s, self._soft_expired)
        elif now - self.soft_since >= limits.output_soft_s:
            self._overflow(hard=False)

    def _soft_expired(self) -> None:
        self.soft_timer = None
        self._check_output()
        if self.soft_since is not None and not self.transport.is_closing():  # went under and over again
            loop = asyncio.get_running_loop()
            left = self.soft_since + self.server.limits.output_soft_s - loop.time()
            self.soft_timer = loop.call_later(max(left, 0.0), self._soft_expired)

    def _overflow(self, hard: bool) -> None:
        """Unread replies passed the hard or the soft limit: disconnect the client (not the
        member), dropping them."""
        limits = self.server.limits
        if hard:
            limit = f"hard limit {limits.output_hard}"
        else:
            limit = f"soft limit {limits.output_soft} for {limits.output_soft_s:g} s"
        size = self.transport.get_write_buffer_size() + self.queued
        log.warning("closing client %s: %d bytes of unread replies passed the output buffer %s "
                    "(client-output-buffer-limit)", self.client.addr, size, limit)
        self.closing = True
        self.pending.clear()
        self.out.clear()
        self.queued = 0
        self.transport.abort()

    def flush(self):
        self._drain()
        self._write()
        if self.closing and not self.pending:
            self.transport.close()
        elif self.paused and len(self.pending) <= MAX_UNANSWERED // 2:
            self.paused = False
            if not self.write_paused:
                self.transport.resume_reading()


class RespServer:
    """Listens on one TCP address and serves a `CommandTable`."""

    def __init__(self, table, max_bulk_len: int, limits: Limits = Limits(), reserved: frozenset = frozenset(),
                 internal: bool = False):
        self.table = table
        self.internal = internal  # catena's own processes connect here: find dead peers fast (catena.net)
        self.max_bulk_len = max_bulk_len
        self.limits = limits
        self.reserved = reserved  # commands of catena's own connections: admitted above maxclients
        table.clients = lambda: [conn.client for conn in self.connections]
        table.settings.update({"maxclients": str(limits.maxclients), "proto-max-bulk-len": str(max_bulk_len)})
        self.connections: set[_Connection] = set()
        self.accepted = 0  # connections admitted so far
        self.input_buffered = 0  # bytes of partial commands across connections
        self.bytes_in = self.bytes_out = 0  # on every connection (metrics)
        self._ready: list[_Connection] = []
        self._server: asyncio.base_events.Server | None = None

    def ready(self, conn: _Connection) -> None:
        """A deferred reply of `conn` resolved: write it (and whatever else is ready) at the next
        `flush_ready`, which the member calls at the end of its turn, or in the next loop
        iteration at the latest."""
        if not self._ready:
            asyncio.get_running_loop().call_soon(self.flush_ready)
        self._ready.append(conn)

    def flush_ready(self) -> None:
        ready, self._ready = self._ready, []
        for conn in set(ready) if len(ready) > 1 else ready:
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
