"""The metrics port (`--metrics-listen HOST:PORT`): a small HTTP/1.1 server on the process's
event loop. `/metrics` is the Prometheus text format of one registry; other paths are given as
routes (the coordinator's status page). One request per connection."""

from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.process_collector import ProcessCollector

from catena.errors import CatenaError

log = logging.getLogger(__name__)

Route = Callable[[], Awaitable[tuple[str, bytes]]]  # -> (content type, body)
REQUEST_TIMEOUT_S = 5.0
MAX_REQUEST_BYTES = 16 * 1024


def registry(*collectors) -> CollectorRegistry:
    """A registry with the process's CPU, memory and file descriptors and `collectors`."""
    reg = CollectorRegistry()
    ProcessCollector(registry=reg)
    for c in collectors:
        reg.register(c)
    return reg


class MetricsServer:
    def __init__(self, reg: CollectorRegistry, routes: dict[str, Route] | None = None):
        self.registry = reg
        self.routes: dict[str, Route] = {"/metrics": self._metrics, **(routes or {})}
        self._server: asyncio.base_events.Server | None = None

    async def _metrics(self) -> tuple[str, bytes]:
        return CONTENT_TYPE_LATEST, generate_latest(self.registry)

    async def start(self, listen: str) -> None:
        host, _, port = listen.rpartition(":")
        try:
            self._server = await asyncio.start_server(self._serve, host.strip("[]"), int(port), reuse_address=True,
                                                      limit=MAX_REQUEST_BYTES)
        except OSError as exc:
            raise CatenaError(f"cannot listen on --metrics-listen {listen}: {exc.strerror or exc}") from None

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                head = await reader.readuntil(b"\r\n\r\n")
                method, _, rest = head.split(b"\r\n", 1)[0].decode("latin-1").partition(" ")
                path = rest.split(" ", 1)[0].split("?", 1)[0]
                route = self.routes.get(path)
                if method not in ("GET", "HEAD"):
                    status, ctype, body = "405 Method Not Allowed", "text/plain", b"only GET\n"
                elif route is None:
                    status, ctype, body = "404 Not Found", "text/plain", f"no {path} here\n".encode()
                else:
                    ctype, body = await route()
                    status = "200 OK"
                writer.write(f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                             "Cache-Control: no-store\r\nConnection: close\r\n\r\n".encode())
                if method != "HEAD":
                    writer.write(body)
                await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError,
                UnicodeDecodeError):
            pass
        except Exception:  # a bug in a route must not take the process down
            log.exception("metrics port: request failed")
        finally:
            writer.close()


async def serving(main: Awaitable, listen: str | None, collectors: Callable[[], list],
                  routes: Callable[[], dict[str, Route]] | None = None):
    """Run `main` with the metrics port open on `listen` (None: without one): `collectors()`
    on `/metrics`, and `routes()`."""
    if listen is None:
        return await main
    server = MetricsServer(registry(*collectors()), routes() if routes else None)
    try:
        await server.start(listen)
    except CatenaError:
        main.close()
        raise
    log.info("metrics on http://%s/metrics", listen)
    try:
        return await main
    finally:
        await server.close()
