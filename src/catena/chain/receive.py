"""A state transfer received without holding the loop (shell): the `Snapshot` a member gets from
its predecessor (joining as a learner, or after its history diverged) is loaded a slice per loop
turn, at most SHARE of the loop's time (chain/state_load.py), before the machine installs it;
the frames behind it on that link wait meanwhile (links.PeerInbound). A 1M-key state took 2-3 s
of a loop to load and index: in one turn, or in 20,000-key slices of up to 0.2 s after the
member was already the tail. Each slice is told to `progress` (MEMBER.STATUS `state_transfer`,
which the coordinator's watch of an add counts as the learner's progress).
"""

from __future__ import annotations

import asyncio
import time
from typing import Callable

from catena.chain.messages import Snapshot
from catena.chain.state_load import StateLoad
from catena.errors import RemoteProtocolError

SLICE_S = 0.005  # of loading per loop turn
STEP = 500  # keys a step (about a millisecond)
SHARE = 0.5  # of the loop's time, what loading takes: slices are spaced so. The member is not
# serving this chain yet, but it shares the cores with members that are (transfer.SHARE)


async def loaded(sender: str, msg: Snapshot, progress: Callable[[], object] = lambda: None) -> Snapshot:
    """`msg` with its state as a complete `StateLoad`, loaded a slice at a time, at most SHARE
    of the loop's time (`progress()` after each slice); RemoteProtocolError if it is not a
    state dump."""
    try:
        load = StateLoad(msg.state)
        clock = time.perf_counter
        while True:
            start = clock()
            while not (done := load.step(STEP)) and clock() < start + SLICE_S:
                pass
            if done:
                return msg._replace(state=load)
            progress()
            await asyncio.sleep((clock() - start) * (1.0 / SHARE - 1.0))
    except ValueError as exc:
        raise RemoteProtocolError(f"snapshot from {sender} is not a state dump: {exc}"[:200]) from None
