"""A small asyncio RESP client for catena's own control traffic (members <-> coordinator, CLI).

One connection, requests answered in order; every call has a deadline. Applications use
redis-py or catena's client library; this exists so the server side needs no redis-py.
"""

from __future__ import annotations

import asyncio
import socket

import hiredis

from catena import tls
from catena.errors import CatenaError
from catena.net import detect_dead_peer


class ReplyError(CatenaError):
    """The server answered with an error reply."""


def split_addr(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"bad address {addr!r}: expected HOST:PORT")
    return host.strip("[]"), int(port)


_source_host: str | None = None


def set_source_address(host: str | None) -> None:
    """Make this process's outbound TCP connections leave from `host` (like Redis's
    bind-source-addr); None: the kernel chooses. Refuses an address this host does not have."""
    global _source_host
    if host is not None:
        try:
            with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
                s.bind((host, 0))
        except OSError as exc:
            raise CatenaError(f"--source-addr {host}: not an address of this host ({exc.strerror})") from None
    _source_host = host


async def open_tcp(host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """An outbound connection from this process's source address (when one is set), over TLS
    when the process has it on (`catena.tls`), which finds a dead peer within ~2 s (catena.net)."""
    reader, writer = await asyncio.open_connection(host, port, local_addr=(_source_host, 0) if _source_host else None,
                                                   ssl=tls.client_context())
    detect_dead_peer(writer.get_extra_info("socket"))
    return reader, writer


class RespConnection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self._reader, self._writer = reader, writer
        self._parser = hiredis.Reader(replyError=ReplyError)

    @classmethod
    async def open(cls, addr: str, timeout: float = 2.0, auth: tuple | None = None) -> "RespConnection":
        """Connect; with `auth` = (user, password), authenticate first."""
        host, port = split_addr(addr)
        async with asyncio.timeout(timeout):
            reader, writer = await open_tcp(host, port)
        conn = cls(reader, writer)
        if auth is not None:
            try:
                await conn.call(b"AUTH", *auth, timeout=timeout)
            except BaseException:
                await conn.close()
                raise
        return conn

    async def call(self, *args, timeout: float = 5.0):
        """Send one command; return its reply; raise ReplyError for an error reply."""
        self._writer.write(encode_command(args))
        async with asyncio.timeout(timeout):
            while (reply := self._parser.gets()) is False:
                data = await self._reader.read(65536)
                if not data:
                    raise ConnectionError("connection closed by the server")
                self._parser.feed(data)
        if isinstance(reply, ReplyError):
            raise reply
        return reply

    async def call_many(self, commands: list, timeout: float = 5.0) -> list:
        """Pipeline: send all commands in one write, return their replies in order (error
        replies as ReplyError objects, not raised)."""
        self._writer.write(b"".join(encode_command(c) for c in commands))
        replies = []
        async with asyncio.timeout(timeout):
            while len(replies) < len(commands):
                while (reply := self._parser.gets()) is False:
                    data = await self._reader.read(65536)
                    if not data:
                        raise ConnectionError("connection closed by the server")
                    self._parser.feed(data)
                replies.append(reply)
        return replies

    def close_nowait(self) -> None:
        self._writer.close()

    async def close(self) -> None:
        self._writer.close()
        try:
            await self._writer.wait_closed()
        except OSError:
            pass


def encode_command(args) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for a in args:
        b = a if isinstance(a, bytes) else str(a).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(parts)


def internal_auth(secret: str | None) -> tuple | None:
    """How catena's own processes authenticate to each other: the user `catena` with the
    cluster secret (None: no secret, no AUTH)."""
    return (b"catena", secret) if secret else None


async def call(addr: str, *args, timeout: float = 5.0, auth: tuple | None = None):
    """Open a connection, send one command, close; the whole thing within `timeout`."""
    async with asyncio.timeout(timeout):
        conn = await RespConnection.open(addr, timeout, auth)
        try:
            return await conn.call(*args, timeout=timeout)
        finally:
            await conn.close()
