"""Peer links (shell): one outbound TCP connection per peer, msgpack frames after a RESP hello.

A member sends its own messages on connections it opened (`PEER <its address>` on the
peer's RESP port, then frames) and receives on connections its peers opened, so each direction
of a pair is one ordered stream. Frames sent in one event-loop turn leave in one write per link
at its end (`flush`; uvloop writes each write() at once: a WriteReply per forwarded write was a
syscall each).
A link that breaks drops what it had queued, reconnects with bounded exponential backoff and
reports up/down to its owner, which redoes the chain handshake (the machine resends). Both ends
find a dead peer within ~2 s (catena.net), and a reconnect attempt is retried at least every
~2 s, so a link is back within ~2 s of the network's return, however long the cut.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Callable

from catena.chain import messages
from catena.chain.messages import Append
from catena.errors import RemoteProtocolError
from catena.net import detect_dead_peer
from catena.resp.client import encode_command, open_tcp, split_addr

log = logging.getLogger(__name__)

BACKOFF_MIN_S, BACKOFF_MAX_S = 0.02, 0.5
DELIVER_S = 0.02  # of frames delivered per loop turn (many wait behind a state transfer): the rest in the next
CONNECT_TIMEOUT_S = 1.0  # connect + hello; a SYN lost to a cut is not waited for (its retry is at 1 s)


class _Outbound:
    def __init__(self, links: "PeerLinks", addr: str):
        self.links, self.addr = links, addr
        self.queue: list[bytes] = []  # sent while connecting
        self.pending: list[bytes] = []  # sent while up, in this turn: written by `flush`
        self.writer: asyncio.StreamWriter | None = None
        self.up = False

    async def run(self) -> None:
        backoff = BACKOFF_MIN_S
        while True:
            dropped = False
            try:
                await self._connect()
                backoff = BACKOFF_MIN_S
                if self.queue:  # what was sent while connecting goes first
                    self.writer.write(b"".join(self.queue))
                    self.queue.clear()
                self.up = True
                self.links.on_link(self.addr, True)
                await self._wait_closed()
            except (OSError, asyncio.TimeoutError, ConnectionError, RemoteProtocolError) as exc:
                log.debug("link to %s: %s", self.addr, exc)
                dropped = bool(self.queue)
                self.queue.clear()
            finally:
                self.pending.clear()  # lost with the connection, as what was written into it
                if self.writer is not None:
                    self.writer.close()
                    self.writer = None
                if self.up or dropped:  # frames were lost with it (those sent while connecting too)
                    self.up = False
                    self.links.on_link(self.addr, False)
            await asyncio.sleep(backoff * (0.5 + random.random()))
            backoff = min(BACKOFF_MAX_S, backoff * 2)

    async def _connect(self) -> None:
        host, port = split_addr(self.addr)
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            reader, writer = await open_tcp(host, port)
            self.writer = writer
            hello = [b"PEER", self.links.me.encode()]
            if self.links.secret:
                hello.append(self.links.secret.encode())
                # AUTH first: a member with --requirepass answers PEER only once authenticated
                writer.write(encode_command([b"AUTH", b"catena", self.links.secret.encode()]))
                if (line := await reader.readline()) != b"+OK\r\n":
                    raise RemoteProtocolError(f"peer {self.addr} refused the cluster secret: {line[:120]!r}")
            writer.write(encode_command(hello))
            line = await reader.readline()
        if line != b"+OK\r\n":
            raise RemoteProtocolError(f"peer {self.addr} refused the link: {line[:120]!r}")
        self.reader = reader

    async def _wait_closed(self) -> None:
        """While the link is up, frames go straight to the transport; this waits for its end."""
        if await self.reader.read(1) == b"":
            raise ConnectionError(f"peer {self.addr} closed the link")
        raise RemoteProtocolError(f"peer {self.addr} sent bytes on a one-way link")


class PeerLinks:
    """Outbound links by address, created on first use and owned by `group`."""

    def __init__(self, me: str, group: asyncio.TaskGroup, on_link: Callable[[str, bool], None],
                 secret: str | None = None):
        self.me, self.group, self.on_link, self.secret = me, group, on_link, secret
        self.links: dict[str, _Outbound] = {}
        self.tasks: dict[str, asyncio.Task] = {}
        self.unflushed: list[_Outbound] = []  # links with frames pending (a flush is scheduled)

    def send(self, addr: str, frame: bytes | list[bytes]) -> None:
        """Send a frame (or one frame in parts, a large value not copied into one buffer): it
        leaves at the end of this loop turn, or at the next `flush`."""
        link = self.links.get(addr)
        if link is None:
            link = self.links[addr] = _Outbound(self, addr)
            self.tasks[addr] = self.group.create_task(link.run())
        into = link.pending if link.up else link.queue  # (queue: kept while connecting, dropped if it fails)
        if link.up and not into:
            if not self.unflushed:
                asyncio.get_running_loop().call_soon(self.flush)
            self.unflushed.append(link)
        if type(frame) is bytes:
            into.append(frame)
        else:
            into.extend(frame)

    def flush(self) -> None:
        """Write the frames sent since the last flush: one write per link."""
        unflushed, self.unflushed = self.unflushed, []
        for link in unflushed:
            parts, link.pending = link.pending, []
            if parts and link.up and not link.writer.is_closing():  # closed under us: dropped, the
                link.writer.writelines(parts)  # reconnect's handshake resends

    def reset(self, addr: str) -> None:
        """Close the connection to `addr` (a frame on it was cut short): the link reconnects
        and the handshake resends what the peer lacks."""
        link = self.links.get(addr)
        if link is not None and link.writer is not None:
            link.writer.close()

    def close(self) -> None:
        self.flush()
        for task in self.tasks.values():
            task.cancel()


class PeerInbound:
    """The receiving side of a peer's link: frames in, decoded messages to `deliver`; when
    bytes last arrived from the sender goes in `heard` (monotonic; the member's link report).
    `deliver` may return a future (a state transfer being loaded across loop turns): the frames
    after that message wait for it, in order (the link keeps reading: a window held shut would
    have TCP_USER_TIMEOUT drop it); if it ends in an exception (RemoteProtocolError: a bad state
    dump), the link is closed as for a bad frame. Frames that waited go on a turn's worth
    (DELIVER_S) at a time. `received(entries, encoded)` is told, before an Append is delivered,
    how its entries came on the wire, when that is known (messages._Frames.entries_bytes)."""

    def __init__(self, transport: asyncio.Transport, sender: str, deliver: Callable,
                 heard: dict[str, float] | None = None, received: Callable | None = None):
        self.transport, self.sender, self.deliver, self.received = transport, sender, deliver, received
        detect_dead_peer(transport.get_extra_info("socket"))
        self.unpacker = messages.unpacker()
        self.heard = {} if heard is None else heard
        self.heard[sender] = time.monotonic()
        self.waiting: asyncio.Future | None = None  # what the frames still in `unpacker` wait for

    def feed(self, data: bytes) -> None:
        self.heard[self.sender] = time.monotonic()
        try:
            self.unpacker.feed(data)
        except RemoteProtocolError as exc:
            return self._close(exc)
        if self.waiting is None:
            self._deliver()

    def _deliver(self) -> None:
        until = time.perf_counter() + DELIVER_S
        try:
            unpacker = self.unpacker
            for frame in unpacker:
                msg = messages.decode(frame)
                if type(msg) is Append and self.received is not None:
                    encoded = unpacker.entries_bytes(msg)
                    if encoded is not None:
                        self.received(msg.entries, encoded)
                wait = self.deliver(self.sender, msg)
                if wait is None and time.perf_counter() > until:  # the rest in the next turn
                    wait = asyncio.get_running_loop().create_future()
                    wait.get_loop().call_soon(wait.set_result, None)
                if wait is not None:
                    self.waiting = wait
                    wait.add_done_callback(self._resume)
                    return
        except (RemoteProtocolError, ValueError) as exc:
            self._close(exc)

    def _resume(self, wait: asyncio.Future) -> None:
        self.waiting = None
        if wait.cancelled():
            return
        if (exc := wait.exception()) is not None:
            return self._close(exc)
        if not self.transport.is_closing():
            self._deliver()

    def _close(self, exc: BaseException) -> None:
        log.warning("closing link from %s: %s", self.sender, exc)
        self.transport.close()

    def lost(self, exc) -> None:
        pass
