"""The chaos proxy: it tells processes apart by their source host, holds TCP bytes and drops
datagrams across a cut (in the cut pair only, both ways), and forwards again once healed."""

from __future__ import annotations

import asyncio
import socket

import pytest

from catena.chaos.proxy import Proxy, ProxyProcess, Route
from catena.loopback import free_ports

NEGATIVE_WAIT_S = 0.3  # how long "nothing arrives" is watched for
DEADLINE_S = 5.0


def _routes() -> list[Route]:
    a, b = free_ports(2)
    return [Route("a", f"127.0.0.1:{a}", f"127.0.2.201:{a}"), Route("b", f"127.0.0.1:{b}", f"127.0.2.202:{b}")]


async def _echo_server(route: Route) -> asyncio.Server:
    async def echo(reader, writer):
        while data := await reader.read(1024):
            writer.write(data)
            await writer.drain()
        writer.close()

    host, port = route.real.rsplit(":", 1)
    return await asyncio.start_server(echo, host, int(port))


async def _connect(route: Route, source: str):
    host, port = route.advertised.rsplit(":", 1)
    return await asyncio.open_connection(host, int(port), local_addr=(source, 0))


async def _silent(reader) -> bool:
    try:
        await asyncio.wait_for(reader.read(1024), NEGATIVE_WAIT_S)
    except TimeoutError:
        return True
    return False


def test_a_cut_holds_tcp_bytes_between_the_pair_only_and_heal_releases_them():
    asyncio.run(_tcp_cut())


async def _tcp_cut():
    routes = _routes()
    proxy = Proxy(routes)
    await proxy.start()
    server = await _echo_server(routes[1])
    try:
        from_a = await _connect(routes[1], "127.0.2.201")  # process a -> b
        from_client = await _connect(routes[1], "127.0.0.1")  # the workload -> b
        proxy.set_cuts([("a", "b")])
        from_a[1].write(b"held")
        from_client[1].write(b"passes")
        assert await asyncio.wait_for(from_client[0].readexactly(6), DEADLINE_S) == b"passes"
        assert await _silent(from_a[0])
        proxy.set_cuts([])
        assert await asyncio.wait_for(from_a[0].readexactly(4), DEADLINE_S) == b"held"
        for _, w in (from_a, from_client):
            w.close()
    finally:
        server.close()


def test_a_cut_drops_datagrams_both_ways():
    asyncio.run(_udp_cut())


async def _udp_cut():
    routes = _routes()
    proxy = Proxy(routes)
    await proxy.start()
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    host, port = routes[1].real.rsplit(":", 1)
    receiver.bind((host, int(port)))
    receiver.setblocking(False)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.bind(("127.0.2.201", 0))
    loop = asyncio.get_running_loop()
    target = routes[1].advertised.rsplit(":", 1)
    to_b = (target[0], int(target[1]))
    try:
        proxy.set_cuts([("b", "a")])  # listed the other way round: cuts both directions
        sender.sendto(b"dropped", to_b)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(loop.sock_recv(receiver, 100), NEGATIVE_WAIT_S)
        proxy.set_cuts([])
        sender.sendto(b"through", to_b)
        assert await asyncio.wait_for(loop.sock_recv(receiver, 100), DEADLINE_S) == b"through"
    finally:
        sender.close()
        receiver.close()


def test_proxy_process_answers_its_commands_and_stops(tmp_path):
    proc = ProxyProcess(_routes(), tmp_path / "proxy.log")
    try:
        proc.cut([("a", "b"), ("a", "client")])
        proc.heal()
    finally:
        proc.stop()
    assert proc.popen.returncode is not None


def test_routes_need_distinct_source_hosts():
    a, b = _routes()
    with pytest.raises(ValueError, match="own source host"):
        Proxy([a, Route("b", b.advertised, a.real.rsplit(":", 1)[0] + ":1")])


def test_outbound_connections_leave_from_the_source_address():
    """What the proxy tells processes apart by (`--source-addr`); a foreign address is refused."""
    from catena.errors import CatenaError
    from catena.resp.client import open_tcp, set_source_address

    async def main():
        seen = asyncio.get_running_loop().create_future()

        def accept(reader, writer):
            seen.set_result(writer.get_extra_info("peername")[0])
            writer.close()

        server = await asyncio.start_server(accept, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        set_source_address("127.0.2.77")
        try:
            _, writer = await open_tcp("127.0.0.1", port)
            assert await asyncio.wait_for(seen, DEADLINE_S) == "127.0.2.77"
            writer.close()
        finally:
            set_source_address(None)
            server.close()

    asyncio.run(main())
    with pytest.raises(CatenaError, match="not an address of this host"):
        set_source_address("192.0.2.1")
