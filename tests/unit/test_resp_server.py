"""The RESP server shell on a real loopback socket: replies in request order whatever order
they resolve in, reads wait behind the connection's unanswered commands, and a deep pipeline
is paused (backpressure) instead of buffering without bound; and Redis's client limits
(maxclients with headroom for catena's own connections, output-buffer limits, query-buffer caps)."""

import asyncio
import logging

import pytest

from catena.resp.commands import CommandTable
from catena.resp.limits import RESERVED, Limits
from catena.resp.server import MAX_UNANSWERED, Deferred, RespServer


def _wire(*args: bytes) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


async def _served(table, limits: Limits = Limits(), reserved=frozenset()):
    server = RespServer(table, 1 << 20, limits, reserved)
    await server.start("127.0.0.1", 0)
    reader, writer = await _connect(server)
    return server, reader, writer


async def _connect(server):
    return await asyncio.open_connection("127.0.0.1", server._server.sockets[0].getsockname()[1])


async def _read_n(reader, n: int) -> list[bytes]:
    lines = []
    while len(lines) < n:
        lines.append(await reader.readline())
    return lines


def test_replies_in_order_reads_wait_and_deep_pipelines_pause():
    async def main():
        held: list[Deferred] = []
        state = {"k": b"old"}
        table = CommandTable()

        def hold(client, args):  # a write: answered later
            d = Deferred()
            held.append(d)
            state["k"] = args[1]
            return d

        table.register(b"HOLD", hold, 2)
        table.register(b"READ", lambda c, a: state["k"], 1, ordered=True)
        server, reader, writer = await _served(table)
        try:
            n = MAX_UNANSWERED * 20
            writer.write(b"".join(_wire(b"HOLD", b"%d" % i) for i in range(n)) + _wire(b"READ"))
            await writer.drain()
            async with asyncio.timeout(20):
                while not any(c.paused for c in server.connections):
                    await asyncio.sleep(0.01)
            assert len(held) < n // 2  # paused after a chunk or two: the rest waits in the socket
            async with asyncio.timeout(20):
                while len(held) < n:  # resolving (in reverse) lets reading resume
                    for d in reversed(held):
                        d.resolve(b"ok")
                    await asyncio.sleep(0.01)
                for d in held:
                    d.resolve(b"ok")
                lines = await _read_n(reader, 2 * n + 2)
            assert lines[: 2 * n] == [b"$2\r\n", b"ok\r\n"] * n
            # READ ran only after every earlier HOLD was answered: it sees the last write.
            assert lines[2 * n :] == [b"$%d\r\n" % len(b"%d" % (n - 1)), b"%d\r\n" % (n - 1)]
            assert not any(c.paused for c in server.connections)
        finally:
            writer.close()
            await server.close()

    asyncio.run(main())


async def _closed(reader, timeout: float = 20.0) -> bytes:
    """Everything the server sends until it closes the connection (fails on the deadline)."""
    out = b""
    async with asyncio.timeout(timeout):
        while True:
            try:
                chunk = await reader.read(1 << 20)
            except ConnectionResetError:
                return out
            if not chunk:
                return out
            out += chunk


async def _ping(reader, writer) -> bytes:
    writer.write(_wire(b"PING"))
    return await reader.readline()


async def _internal(server, secret):
    """A connection as catena's own processes open one: AUTH catena first when there is a secret."""
    r, w = await _connect(server)
    if secret:
        w.write(_wire(b"AUTH", b"catena", secret.encode()))
        assert await r.readline() == b"+OK\r\n"
    w.write(_wire(b"MEMBER.PROBE"))
    assert await r.readline() == b":7\r\n"
    return r, w


@pytest.mark.parametrize("secret", [None, "s3cret"])
def test_maxclients_refuses_data_clients_and_keeps_headroom_for_catenas_own(monkeypatch, secret):
    monkeypatch.setattr("catena.resp.server.PROBATION_S", 0.2)
    full = b"-ERR max number of clients reached\r\n"

    async def main():
        table = CommandTable(cluster_secret=secret)
        table.register(b"MEMBER.PROBE", lambda c, a: 7, 1)
        server, r1, w1 = await _served(table, Limits(maxclients=2), frozenset({b"MEMBER.PROBE"}))
        conns = [(r1, w1)]
        try:
            conns.append(await _connect(server))
            for r, w in conns:
                assert await _ping(r, w) == b"+PONG\r\n"
            # A third data client: refused with Redis's error, and nothing it sent ran.
            r, w = await _connect(server)
            w.write(_wire(b"SET", b"k", b"v"))
            assert await _closed(r) == full
            # A silent one is refused once its probation ends.
            r, w = await _connect(server)
            assert await _closed(r) == full
            # catena's own is admitted: AUTH catena <secret>, or a reserved command when there is
            # no secret (then it runs reserved commands only).
            conns.append(await _internal(server, secret))
            r, w = conns[-1]
            w.write(_wire(b"PING"))
            if secret:
                assert await r.readline() == b"+PONG\r\n"
            else:
                assert await _closed(r) == full
                conns.pop()
            r, w = await _connect(server)
            w.write(_wire(b"AUTH", b"catena", b"guess"))  # a wrong secret is refused like any data client
            assert await _closed(r) == full
            if secret:  # with a secret, a reserved command alone does not admit
                r, w = await _connect(server)
                w.write(_wire(b"MEMBER.PROBE"))
                assert await _closed(r) == full
            # The headroom is bounded: past maxclients + RESERVED nobody is admitted.
            while len(conns) < 2 + RESERVED:
                conns.append(await _internal(server, secret))
            r, w = await _connect(server)
            assert await _closed(r) == full
            assert len(server.connections) == 2 + RESERVED
            # Every connection counts (as in Redis): once they are under maxclients, a data client fits.
            for _, w in conns[1:]:
                w.close()
            async with asyncio.timeout(10):
                while len(server.connections) > 1:
                    await asyncio.sleep(0.01)
            r, w = await _connect(server)
            assert await _ping(r, w) == b"+PONG\r\n"
        finally:
            await server.close()

    asyncio.run(main())


def _big_table(size: int) -> tuple[CommandTable, list]:
    calls = []
    table = CommandTable()

    def big(client, args):
        calls.append(1)
        return b"x" * size

    table.register(b"BIG", big, 1)
    return table, calls


def test_a_client_that_does_not_read_passes_the_hard_limit_and_is_disconnected(caplog):
    async def main():
        table, calls = _big_table(100_000)
        limits = Limits(output_hard=1_000_000, output_soft=0)
        server, reader, writer = await _served(table, limits)
        try:
            r2, w2 = await _connect(server)
            with caplog.at_level(logging.WARNING, logger="catena.resp.server"):
                writer.write(_wire(b"BIG") * 1000)  # 100 MB of replies, none read
                await _closed(reader)
            assert len(calls) < 100  # cut near 1 MB, not after buffering everything
            warnings = [r.getMessage() for r in caplog.records if "output buffer" in r.getMessage()]
            assert len(warnings) == 1 and "hard limit 1000000" in warnings[0], warnings
            assert await _ping(r2, w2) == b"+PONG\r\n"  # everyone else is served
            # A single reply larger than the limit still goes out to a client that reads.
            table.register(b"HUGE", lambda c, a: b"y" * 3_000_000, 1)
            w2.write(_wire(b"HUGE"))
            assert await r2.readexactly(3_000_000 + 12) == b"$3000000\r\n" + b"y" * 3_000_000 + b"\r\n"
            assert await _ping(r2, w2) == b"+PONG\r\n"
        finally:
            await server.close()

    asyncio.run(main())


def test_past_the_soft_limit_reading_pauses_then_the_client_is_disconnected(caplog):
    async def main():
        table, calls = _big_table(100_000)
        limits = Limits(output_hard=0, output_soft=256 * 1024, output_soft_s=0.3)
        server, reader, writer = await _served(table, limits)
        try:
            with caplog.at_level(logging.WARNING, logger="catena.resp.server"):
                writer.write(_wire(b"BIG") * 300)  # 30 MB: far more than the socket buffers hold
                async with asyncio.timeout(10):
                    while not any(c.write_paused for c in server.connections):
                        await asyncio.sleep(0.01)
                before = len(calls)
                writer.write(_wire(b"BIG") * 300)  # not read while the replies are unread
                async with asyncio.timeout(10):
                    while server.connections:  # the client reads nothing meanwhile
                        await asyncio.sleep(0.01)
            assert len(calls) == before
            assert len(await _closed(reader)) < 300 * 100_000  # the rest was dropped
            assert any("soft limit 262144 for 0.3 s" in r.getMessage() for r in caplog.records)
        finally:
            await server.close()

    asyncio.run(main())


def test_a_client_that_reads_is_kept_though_its_replies_pass_the_soft_limit_for_a_while():
    async def main():
        table, calls = _big_table(100_000)
        limits = Limits(output_hard=0, output_soft=256 * 1024, output_soft_s=30)
        server, reader, writer = await _served(table, limits)
        try:
            writer.write(_wire(b"BIG") * 300)
            async with asyncio.timeout(20):
                for _ in range(300):
                    assert (await reader.readexactly(100_000 + 11))[:10] == b"$100000\r\nx"
            assert await _ping(reader, writer) == b"+PONG\r\n"
        finally:
            await server.close()

    asyncio.run(main())


@pytest.mark.parametrize("limits, expect", [
    (Limits(query_buffer=10_000), b"client-query-buffer-limit (10000)"),
    (Limits(input_total=10_000), b"max-input-buffer (10000)"),
])
def test_partial_commands_past_the_input_caps_close_the_connection(limits, expect):
    async def main():
        table = CommandTable()
        table.register(b"SET", lambda c, a: len(a[2]), 3)
        server, reader, writer = await _served(table, limits)
        try:
            r2, w2 = await _connect(server)
            header = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$20000\r\n"
            w2.write(header + b"v" * 6_000)  # under both caps: kept
            assert await _ping(reader, writer) == b"+PONG\r\n"
            assert server.input_buffered > 6_000
            writer.write(header + b"v" * 6_000)  # past this client's cap, or past the total
            if b"query" in expect:
                writer.write(b"v" * 6_000)
            reply = await _closed(reader)
            assert reply.startswith(b"-ERR ") and expect in reply, reply
            w2.write(b"v" * 14_000 + b"\r\n")  # the other client's command completes
            assert await r2.readline() == b":20000\r\n"
            w2.close()
            async with asyncio.timeout(10):
                while server.connections:
                    await asyncio.sleep(0.01)
            assert server.input_buffered == 0
        finally:
            await server.close()

    asyncio.run(main())
