"""`Client`: the blocking twin of `AsyncClient`, same API, same behaviour. It runs an
`AsyncClient` on a private event loop in one daemon thread, so the routing and retry logic
exists once."""

from __future__ import annotations

import asyncio
import logging
import threading

from catena.client.aio import AsyncClient, AsyncPipeline

log = logging.getLogger(__name__)


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

    @property
    def session_id(self) -> str | None:
        return self._aio.session_id

    def open_session(self, ttl: float = 10.0, on_lost=None) -> str:
        """See `AsyncClient.open_session`; the pings run on this client's own thread, and
        `on_lost(session_id)` is called on a worker thread (so it may use the client)."""
        return self._run(self._aio.open_session(ttl, None if on_lost is None else self._off_loop(on_lost)))

    def close_session(self) -> None:
        self._run(self._aio.close_session())

    def _off_loop(self, callback):
        def call(session_id: str) -> None:
            def guarded():
                try:
                    callback(session_id)
                except Exception:  # noqa: BLE001 - the caller's callback must not stop the client
                    log.exception("on_lost callback of session %s failed", session_id)

            self._loop.run_in_executor(None, guarded)

        return call

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
