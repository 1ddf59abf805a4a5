"""AsyncClient.refresh: commands that need the chain's view at the same time share one fetch."""

from __future__ import annotations

import asyncio

from catena.client.aio import AsyncClient
from catena.client.errors import Unavailable
from catena.coordinator.discovery import NoLeader
from catena.view import View


class Coordinators:
    """Stands in for the coordinator-discovery client: counts MASTER.GET_VIEW calls."""

    def __init__(self, answer):
        self.calls, self.answer = 0, answer

    async def call(self, *args, timeout):
        self.calls += 1
        await asyncio.sleep(0)  # in flight while the others ask
        if isinstance(self.answer, BaseException):
            raise self.answer
        return self.answer


def test_concurrent_refreshes_share_one_fetch():
    async def main():
        client = AsyncClient("127.0.0.1:1")
        client.coordinators = Coordinators(View(1, 3, ("127.0.0.1:2", "127.0.0.1:3"), None).words())
        await asyncio.gather(*(client.refresh(5.0) for _ in range(300)))
        assert client.coordinators.calls == 1 and client.router.view.epoch == 3
        await client.refresh(5.0)  # a later one fetches again
        assert client.coordinators.calls == 2

    asyncio.run(main())


def test_a_failed_shared_fetch_fails_every_waiter():
    async def main():
        client = AsyncClient("127.0.0.1:1")
        client.coordinators = Coordinators(NoLeader("no coordinator leader answered"))
        results = await asyncio.gather(*(client.refresh(5.0) for _ in range(5)), return_exceptions=True)
        assert client.coordinators.calls == 1 and all(isinstance(r, Unavailable) for r in results)

    asyncio.run(main())
