"""UDP shell: datagrams in and out for the membership agent. No protocol decisions here.

Incoming bytes are decoded (`wire.decode`: signed for this receiver, fresh by this host's wall
clock), checked against the replay window and handed to the agent; anything refused is counted
under its reason and dropped. Outgoing messages are encoded with the next sequence number, the
wall clock, and signed for their receiver when a secret is set. Every datagram sent or
received is logged at DEBUG as one key=value line with node ids.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections import Counter
from typing import Callable

from catena.errors import LocalProtocolError
from catena.membership import wire
from catena.membership.messages import Join, Message

log = logging.getLogger("catena.membership")


def describe(msg: Message) -> str:
    name = wire.TYPE_NAMES[type(msg)]
    parts = [f"type={name}", f"from={msg.sender}"]
    for attr in ("seq", "target", "part", "parts", "digest", "reason"):
        v = getattr(msg, attr, None)
        if v is not None:
            parts.append(f"{attr}={v!s}" if attr != "reason" else f'reason="{v}"')
    ups = getattr(msg, "updates", None)
    if ups is None:
        ups = getattr(msg, "entries", ())
    if ups:
        parts.append("updates=" + ",".join(f"{u.member}/{u.status.name.lower()}/{u.refute}" for u in ups[:8])
                     + ("…" if len(ups) > 8 else ""))
    return " ".join(parts)


class UdpShell(asyncio.DatagramProtocol):
    """Owns the UDP socket; `deliver(msg)` is called for each accepted datagram."""

    def __init__(self, deliver: Callable[[Message], None], secret: bytes | None, max_datagram: int,
                 names: tuple[str, ...] = ("",)):
        self.deliver = deliver
        self.names = names  # the receiver names a signed datagram to us may carry
        self.secret = secret
        self.max_datagram = max_datagram
        self.transport: asyncio.DatagramTransport | None = None
        self.guard = wire.ReplayGuard()
        self.counters: Counter = Counter()
        self.seq = 0
        self._resolved: dict[str, tuple[str, int]] = {}

    async def open(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: self, local_addr=(host, port), reuse_port=False)

    def connection_made(self, transport) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:  # room for a burst of State parts (a 5,000-member list is ~125 datagrams)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            except OSError:
                pass

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def _addr(self, to: str) -> tuple[str, int]:
        a = self._resolved.get(to)
        if a is None:
            host, _, port = to.rpartition(":")
            host = host.strip("[]")
            try:
                socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
            except OSError:
                host = socket.gethostbyname(host)  # once per name, then cached
            a = self._resolved[to] = (host, int(port))
        return a

    def send(self, to: str, msg: Message) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        self.seq += 1
        try:
            data = wire.encode(msg, self.seq, self.secret, self.max_datagram, to=to, now_ms=time.time_ns() // 1_000_000)
            self.transport.sendto(data, self._addr(to))
        except (LocalProtocolError, OSError, ValueError) as exc:
            self.counters["send_errors"] += 1
            log.warning("dir=send-error to=%s type=%s error=%s", to, wire.TYPE_NAMES[type(msg)], exc)
            return
        self.counters["datagrams_sent"] += 1
        self.counters["bytes_sent"] += len(data)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("dir=send to=%s bytes=%d %s", to, len(data), describe(msg))

    def datagram_received(self, data: bytes, addr) -> None:
        self.counters["datagrams_received"] += 1
        self.counters["bytes_received"] += len(data)
        try:
            msg, seq = wire.decode(data, self.secret, self.max_datagram, me=self.names,
                                   now_ms=time.time_ns() // 1_000_000)
        except wire.DropReason as exc:
            self.counters[f"dropped_{exc.reason}"] += 1
            if log.isEnabledFor(logging.DEBUG):
                log.debug("dir=drop src=%s:%s bytes=%d reason=%s", addr[0], addr[1], len(data), exc)
            return
        s = msg.sender
        # Join is exempt: an older process asking to join must hear why it is refused, and a
        # replayed Join is harmless (admission is idempotent; a stale incarnation is refused).
        if type(msg) is not Join and not self.guard.accept(s.addr, s.incarnation, seq):
            self.counters["dropped_replay"] += 1
            if log.isEnabledFor(logging.DEBUG):
                log.debug("dir=drop src=%s:%s reason=replay from=%s seq=%d", addr[0], addr[1], s, seq)
            return
        if log.isEnabledFor(logging.DEBUG):
            log.debug("dir=recv bytes=%d seq=%d %s", len(data), seq, describe(msg))
        self.deliver(msg)

    def error_received(self, exc) -> None:  # ICMP port unreachable and the like
        self.counters["socket_errors"] += 1
