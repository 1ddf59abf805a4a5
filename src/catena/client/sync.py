"""`Client`: the blocking twin of `AsyncClient`, same API, same behaviour. It runs an
`AsyncClient` on a private event loop in one daemon thread, so the routing and retry logic
exists once."""

from __future__ import annotations

import asyncio
import threading

from catena.client.aio import AsyncClient, AsyncPipeline


class Client:
    def __init__(self, coordinators: str, **options):
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="catena-client", daemon=True)
        self._thread.start()
        self._aio = self._run(_make(coordinators, options))

    def _run(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def get(self, key):
        return self._run(self._aio.get(key))

    def mget(self, keys):
        return self._run(self._aio.mget(keys))

    def exists(self, *keys) -> int:
        return self._run(self._aio.exists(*keys))

    def set(self, key, value, **options):
        return self._run(self._aio.set(key, value, **options))

    def delete(self, *keys) -> int:
        return self._run(self._aio.delete(*keys))

    def incr(self, key, amount: int = 1) -> int:
        return self._run(self._aio.incr(key, amount))

    def mset(self, mapping: dict) -> bool:
        return self._run(self._aio.mset(mapping))

    def pipeline(self) -> "Pipeline":
        return Pipeline(self)

    def close(self) -> None:
        if self._loop.is_running():
            self._run(self._aio.close())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
        self._loop.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


async def _make(coordinators: str, options: dict) -> AsyncClient:
    return AsyncClient(coordinators, **options)


class Pipeline(AsyncPipeline):
    """Queue commands (chainable), then `execute()` in one round trip."""

    def __init__(self, client: Client):
        super().__init__(client._aio)
        self._sync = client

    def execute(self) -> list:  # type: ignore[override]
        return self._sync._run(AsyncPipeline.execute(self))
