"""Removing a chain (MASTER.REMOVECHAIN, docs/sharding.md §5): when it may be removed (pure,
`refusal`), and the removal itself (shell, `remove_chain`): under the move lock, so that no
move to or from it can be under way or start, one fenced save drops it from the slot map and
deletes its part (shards.py); then its machine stops (no more probes, pushes or changes) and
every other member is told it is gone. Its members serve nothing by then (their tables give
them no slot) and may be stopped; chain 0, which ends the client sessions, stays.
"""

from __future__ import annotations

import time

from catena.coordinator import slot_map as sm
from catena.resp.codec import OK, Error


def refusal(slot_map: dict | None, chains, chain: int, moving: bool) -> str | None:
    """Why chain `chain` cannot be removed now (an error line), or None. `chains`: the chains
    the coordinator keeps; `moving`: a slot move is under way."""
    if slot_map is None:
        return "ERR no slot map: this coordinator keeps one chain (start it with --chains K)"
    if chain == 0:
        return "ERR chain 0 cannot be removed: it ends the client sessions"
    if chain not in chains or str(chain) not in slot_map["chains"]:
        return f"ERR there is no chain {chain} in the slot map"
    if held := sm.count(slot_map, chain):
        return (f"ERR chain {chain} owns {held} slots: move them to other chains first "
                f"(catena drain --chain {chain})")
    if moving:
        return "ERR a slot move is under way: try again once it is done"
    return None


async def remove_chain(coord, chain: int):
    """Remove chain `chain` (leader work): OK, or the refusal."""
    mover = coord.mover
    if why := refusal(coord.shards.slot_map, coord.machines, chain, mover.busy()):
        return Error(why)
    async with mover.lock:
        if why := refusal(coord.shards.slot_map, coord.machines, chain, False):  # a move may have ended with it
            return Error(why)
        epoch = coord.machines[chain].view.epoch + 1
        coord.execute_shards(coord.shards.remove(chain, epoch, time.monotonic()))
        await mover.map_reaches(lambda m: str(chain) in sm.removed(m))
        machine = coord.machines.pop(chain)
        coord.execute(machine.step_down(), machine)
    return OK
