"""KEYS without holding the event loop (shell): the walk over the hash slots runs in slices of
a few milliseconds and yields to the loop between them, so probes, peers and other clients are
served meanwhile. Which keys match is `ops.keys_in_slots` (pure); this module only slices.

Each slice answers only what the replica may answer from its own data (CRAQ: the keys it returns
are clean, under a read lease). A slice whose keys are dirty waits for their commit; when the
member may not answer at all (no lease, not serving) or waited `WAIT_S`, the walk gives up and
the caller lets the machine ask the tail. KEYS is therefore not an atomic snapshot: a key present
for the whole call is returned, a key written or deleted during it may or may not be.
"""

from __future__ import annotations

import asyncio
import time

from catena.chain import ops
from catena.resp.codec import Encoded
from catena.slots import SLOTS

SLICE_S = 0.005  # loop time one slice may take
STEP = 16  # slots per step within a slice (about 1,000 keys at 1M keys)
WAIT_S = 1.0  # how long a slice may wait for its dirty keys to commit
WAIT_STEP_S = 0.002
INDEX_STEP = 5_000  # loaded keys entered in the slot index per step


async def walk_keys(replica, pattern: bytes, encoded: bool):
    """The live keys matching `pattern`, as one RESP array (`Encoded`, built slice by slice so
    no turn encodes them all) or as a list; None when this member may not answer them."""
    now_ms = int(time.time() * 1000)
    parts: list[bytes] = []
    count, slot, waiting_since = 0, 0, None
    while slot < SLOTS:
        deadline = time.perf_counter() + SLICE_S
        blocked = False
        while slot < SLOTS and time.perf_counter() < deadline:
            if replica.state.unindexed:  # a state just loaded from a snapshot: index it first
                replica.state.index_step(INDEX_STEP)
                continue
            end = min(slot + STEP, SLOTS)
            found = ops.keys_in_slots(replica.state, pattern, slot, end, now_ms)
            if not replica.can_answer(found, time.monotonic()):
                blocked = True
                break
            if found:
                count += len(found)
                parts.append(b"".join(b"$%d\r\n%s\r\n" % (len(k), k) for k in found) if encoded else found)
            slot, waiting_since = end, None
        if blocked:
            now = time.monotonic()
            waiting_since = waiting_since or now
            if not replica.can_answer((), now) or now - waiting_since > WAIT_S:
                return None
            await asyncio.sleep(WAIT_STEP_S)
        elif slot < SLOTS:
            await asyncio.sleep(0)
    if encoded:
        return Encoded(b"".join([b"*%d\r\n" % count, *parts]))
    return [k for found in parts for k in found]
