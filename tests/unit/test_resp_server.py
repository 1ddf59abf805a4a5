"""The RESP server shell on a real loopback socket: replies in request order whatever order
they resolve in, reads wait behind the connection's unanswered commands, and a deep pipeline
is paused (backpressure) instead of buffering without bound."""

import asyncio

from catena.resp.commands import CommandTable
from catena.resp.server import MAX_UNANSWERED, Deferred, RespServer


def _wire(*args: bytes) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


async def _served(table):
    server = RespServer(table, 1 << 20)
    await server.start("127.0.0.1", 0)
    port = server._server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    return server, reader, writer


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
