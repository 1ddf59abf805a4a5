"""`catena reshard`, `catena rebalance` and `catena drain`: which slots go where (pure planning
over the slot map MASTER.SLOTMAP answers), then MASTER.MOVE batch by batch at the coordinator
leader, a progress line after each batch; `drain` then removes the emptied chain
(MASTER.REMOVECHAIN). Each slot moves on its own inside a batch (docs/sharding.md §3); a batch
holds up to BATCH contiguous slots of one source chain."""

from __future__ import annotations

import asyncio
import sys

from catena.coordinator.discovery import CoordinatorClient
from catena.errors import CatenaError
from catena.resp.client import ReplyError
from catena.slots import SLOTS, parse_ranges

BATCH = 32
MOVE_TIMEOUT_S = 600.0  # one batch: its slots' moves, one after another


def parse_map(raw) -> dict[int, list[tuple[int, int]]]:
    """MASTER.SLOTMAP's reply as chain -> ranges."""
    if not raw:
        raise CatenaError("the coordinator keeps no slot map (start it with --chains K)")
    return {int(raw[i]): list(parse_ranges(raw[i + 1])) for i in range(1, len(raw) - 1, 2)}


def take(spans: list[tuple[int, int]], n: int, last: bool = True) -> list[tuple[int, int]]:
    """`n` slots of `spans` (from its end, or its start), as ranges."""
    out: list[tuple[int, int]] = []
    for a, b in (reversed(sorted(spans)) if last else sorted(spans)):
        if n <= 0:
            break
        k = min(n, b - a + 1)
        out.append((b - k + 1, b) if last else (a, a + k - 1))
        n -= k
    return sorted(out)


def batches(spans: list[tuple[int, int]], size: int = BATCH) -> list[tuple[int, int]]:
    return [(s, min(s + size - 1, b)) for a, b in spans for s in range(a, b + 1, size)]


def reshard_plan(slot_map: dict, source: int, target: int, count: int | None = None,
                 span: tuple[int, int] | None = None) -> list[tuple[int, int, int]]:
    """(first, last, target) batches: `count` slots of `source`'s (from the end of its ranges),
    or those of `span` that `source` holds."""
    for chain in (source, target):
        if chain not in slot_map:
            raise CatenaError(f"there is no chain {chain} in the slot map")
    held = slot_map[source]
    if span is not None:
        chosen = [(max(a, span[0]), min(b, span[1])) for a, b in held if a <= span[1] and b >= span[0]]
    else:
        chosen = take(held, count or 0)
    return [(a, b, target) for a, b in batches(chosen)]


def rebalance_plan(slot_map: dict) -> list[tuple[int, int, int]]:
    """(first, last, target) batches that leave every chain within one slot of an even share:
    the chains holding more give from the end of their ranges to those holding fewer."""
    return _spread(slot_map, sorted(slot_map), sorted(slot_map))


def drain_plan(slot_map: dict, chain: int) -> list[tuple[int, int, int]]:
    """(first, last, target) batches moving every slot of `chain` to the others, toward an even
    share (those below it first); only `chain` gives."""
    if chain not in slot_map:
        raise CatenaError(f"there is no chain {chain} in the slot map")
    others = sorted(c for c in slot_map if c != chain)
    if not others:
        raise CatenaError(f"chain {chain} is the only chain: there is nowhere to move its slots")
    return _spread(slot_map, others, [chain])


def _spread(slot_map: dict, chains: list[int], givers: list[int]) -> list[tuple[int, int, int]]:
    """Batches from `givers` (each gives what it holds above its share; a giver outside
    `chains` gives everything) to the `chains` holding less than an even share of them all."""
    share = {c: SLOTS // len(chains) + (1 if i < SLOTS % len(chains) else 0) for i, c in enumerate(chains)}
    held = {c: sum(b - a + 1 for a, b in slot_map[c]) for c in slot_map}
    spare = {c: take(slot_map[c], held[c] - share.get(c, 0)) for c in givers if held[c] > share.get(c, 0)}
    pool = [(a, b) for c in sorted(spare) for a, b in spare[c]]
    plan = []
    for c in chains:
        need = share[c] - held[c]
        while need > 0 and pool:
            a, b = pool.pop(0)
            k = min(need, b - a + 1)
            plan += [(x, y, c) for x, y in batches([(a, a + k - 1)])]
            if k <= b - a:
                pool.insert(0, (a + k, b))
            need -= k
    return plan


async def run(coordinator: str, plan_of, auth: tuple | None, out=sys.stdout, remove: int | None = None) -> int:
    """Read the map, plan with `plan_of(slot_map)`, move batch by batch, printing progress;
    then remove chain `remove` (None: none)."""
    client = CoordinatorClient(coordinator, auth=auth)
    try:
        plan = plan_of(parse_map(await client.call(b"MASTER.SLOTMAP", timeout=5.0)))
        total = sum(b - a + 1 for a, b, _ in plan)
        if not total:
            print("nothing to move", file=out)
        done = 0
        for a, b, target in plan:
            await client.call(b"MASTER.MOVE", f"{a}-{b}", target, timeout=MOVE_TIMEOUT_S)
            done += b - a + 1
            print(f"moved {done}/{total} slots ({100 * done // total}%), last {a}-{b} to chain {target}",
                  file=out, flush=True)
        if remove is not None:
            await client.call(b"MASTER.REMOVECHAIN", remove, timeout=MOVE_TIMEOUT_S)
            print(f"removed chain {remove}", file=out, flush=True)
        return 0
    except (ReplyError, CatenaError, OSError, asyncio.TimeoutError) as exc:
        print(f"catena: {exc or type(exc).__name__}", file=sys.stderr)
        return 1
    finally:
        await client.close()
