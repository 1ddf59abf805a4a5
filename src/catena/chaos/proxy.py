"""The fault-injecting proxy of a chaos run: network partitions between chosen processes.

Each process of the cluster is known to the others by an advertised address, on which this
proxy listens (TCP and UDP) and forwards to the process's real address. Each process also sends
from its own loopback address (`--source-addr`, and its UDP socket is bound there), so the proxy
knows who talks to whom; any other source (the workload's clients) is `client`.

A cut of (A, B) stops forwarding from A to B: TCP bytes stay in the kernel's buffers, so the
sender stalls as under a real partition until its own timeouts fire, and datagrams are dropped.
Healing resumes forwarding whatever is still connected.

It runs as its own process (`python -m catena.chaos.proxy NAME=ADVERTISED=REAL …`) so that its
copying does not compete with the workload for one interpreter, driven by lines on stdin:
`cut A:B C:D …` (each pair both ways, replacing the cuts in force) and `heal`, each answered
`ok` on stdout; it prints `ready` once every listener is bound.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from dataclasses import dataclass

from catena.resp.client import split_addr
from catena.runtime import runner

CLIENT = "client"
CHUNK = 65536


@dataclass(frozen=True)
class Route:
    name: str
    advertised: str
    real: str

    @classmethod
    def parse(cls, spec: str) -> "Route":
        name, advertised, real = spec.split("=")
        for addr in (advertised, real):
            split_addr(addr)  # raises ValueError for a malformed address
        return cls(name, advertised, real)

    def spec(self) -> str:
        return f"{self.name}={self.advertised}={self.real}"


class Proxy:
    def __init__(self, routes: list[Route]):
        self.routes = routes
        self.by_host = {split_addr(r.real)[0]: r.name for r in routes}
        if len(self.by_host) != len(routes):
            raise ValueError("every process needs its own source host")
        self.cuts: set[tuple[str, str]] = set()
        self._changed = asyncio.Event()  # replaced on every change; waiters re-check

    def source(self, host: str) -> str:
        return self.by_host.get(host, CLIENT)

    def set_cuts(self, pairs: list[tuple[str, str]]) -> None:
        self.cuts = {p for a, b in pairs for p in ((a, b), (b, a))}
        self._changed.set()
        self._changed = asyncio.Event()

    async def open(self, src: str, dst: str) -> None:
        """Returns once nothing cuts src -> dst."""
        while (src, dst) in self.cuts:
            await self._changed.wait()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for r in self.routes:
            host, port = split_addr(r.advertised)
            await asyncio.start_server(lambda rd, wr, r=r: self._accept(r, rd, wr), host, port)
            await loop.create_datagram_endpoint(lambda r=r: _Datagrams(self, r), local_addr=(host, port))

    async def _accept(self, route: Route, reader, writer) -> None:
        src = self.source(writer.get_extra_info("peername")[0])
        try:
            up_reader, up_writer = await asyncio.open_connection(*split_addr(route.real))
        except OSError:
            writer.close()  # nothing listens behind: the caller sees the connection reset
            return
        await asyncio.gather(self._pipe(reader, up_writer, src, route.name),
                             self._pipe(up_reader, writer, route.name, src))

    async def _pipe(self, reader, writer, src: str, dst: str) -> None:
        try:
            while True:
                await self.open(src, dst)
                data = await reader.read(CHUNK)
                if not data:
                    break
                await self.open(src, dst)  # read as the cut began: held until it heals
                writer.write(data)
                await writer.drain()
        except (OSError, ConnectionError):
            pass
        finally:
            writer.close()


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, proxy: Proxy, route: Route):
        self.proxy, self.route, self.real = proxy, route, split_addr(route.real)

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        if (self.proxy.source(addr[0]), self.route.name) not in self.proxy.cuts:
            self.transport.sendto(data, self.real)

    def error_received(self, exc) -> None:  # the process behind is down: like a lost datagram
        pass


async def serve(routes: list[Route]) -> None:
    proxy = Proxy(routes)
    await proxy.start()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    print("ready", flush=True)
    while line := await reader.readline():
        words = line.decode().split()
        if words[:1] == ["heal"]:
            proxy.set_cuts([])
        elif words[:1] == ["cut"]:
            proxy.set_cuts([tuple(w.split(":", 1)) for w in words[1:]])
        else:
            print(f"error: unknown command {line!r}", flush=True)
            continue
        print("ok", flush=True)


class ProxyProcess:
    """The proxy as a child process of the chaos harness."""

    def __init__(self, routes: list[Route], log_path):
        with open(log_path, "ab") as log:
            self.popen = subprocess.Popen([sys.executable, "-m", "catena.chaos.proxy", *(r.spec() for r in routes)],
                                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                                          start_new_session=True, text=True, bufsize=1)
        self._expect("ready")

    def _expect(self, word: str) -> None:
        line = self.popen.stdout.readline().strip()
        if line != word:
            raise RuntimeError(f"chaos proxy: expected {word!r}, got {line!r} (exit {self.popen.poll()})")

    def _command(self, line: str) -> None:
        self.popen.stdin.write(line + "\n")
        self.popen.stdin.flush()
        self._expect("ok")

    def cut(self, pairs: list[tuple[str, str]]) -> None:
        """Partition each pair (both ways); replaces the cuts in force."""
        self._command("cut " + " ".join(f"{a}:{b}" for a, b in pairs))

    def heal(self) -> None:
        self._command("heal")

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=5)


def main(argv: list[str] | None = None) -> int:
    routes = [Route.parse(a) for a in (sys.argv[1:] if argv is None else argv)]
    try:
        runner()(serve(routes))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
