"""A member shell (MemberNode) started in the test's own event loop on a free loopback port, with
no coordinator: for unit tests of what the shell does with its machine's effects."""

from __future__ import annotations

import asyncio
from pathlib import Path

from catena.chain.node import MemberNode
from catena.loopback import HOST, free_ports


async def started_member(directory: Path) -> tuple[MemberNode, asyncio.Task]:
    """The member and the task running it, once it listens (within 20 s)."""
    node = MemberNode(f"{HOST}:{free_ports(1)[0]}", directory)
    started = asyncio.Event()
    task = asyncio.create_task(node.run(started))
    async with asyncio.timeout(20):
        await started.wait()
    return node, task
