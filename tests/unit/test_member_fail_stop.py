"""The member shell stops (fail-stop, so the coordinator replaces it) instead of wedging when it
cannot execute what its replica returned, e.g. a frame msgpack cannot encode."""

import asyncio

from catena.chain.messages import Ack
from catena.effects import Send
from catena.errors import CatenaError

from member_runs import started_member


def test_an_effect_that_cannot_be_encoded_stops_the_member(tmp_path):
    async def main():
        node, task = await started_member(tmp_path / "member")
        assert not task.done()
        node.replica.flush = lambda: [Send("127.0.0.1:1", Ack(2**70, 1))]  # no msgpack int
        node._run([])
        stopped = []
        try:
            async with asyncio.timeout(20):
                await task
        except* CatenaError as group:
            stopped = group.exceptions
        assert stopped and "cannot execute its effects" in str(stopped[0])

    asyncio.run(main())
