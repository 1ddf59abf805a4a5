"""The slot map (pure data, docs/sharding.md §1): which chain each hash slot is addressed to, as
the coordinator saves it (the layout's `slots` part) and pushes it. A map is a dict:

    {"version": n, "chains": {"<id>": [[first, last], …]}, "synced": [id, …],
     "removed": {"<id>": epoch, …}}

`version` grows by one on every change. A chain is in `chains` once the coordinator knows it
(maybe with no slots); it is announced to the other chains' members only once it is in `synced`:
its replicated table was made to match the map (every slot the map does not give it `none`).
A removed chain (MASTER.REMOVECHAIN) leaves `chains` for `removed`, with the epoch under which
members are told it has no members; its id is never used again.
"""

from __future__ import annotations

from catena.slots import SLOTS


def even(chains: list[int]) -> dict:
    """A new map: the slots split evenly in contiguous ranges, in chain order (as
    `redis-cli --cluster create` splits them between masters)."""
    k = len(chains)
    split = {str(c): [[i * SLOTS // k, (i + 1) * SLOTS // k - 1]] for i, c in enumerate(chains)}
    return {"version": 1, "chains": split, "synced": []}


def whole(chains: list[int]) -> dict:
    """A new map over chains that served before it: the first keeps every slot (its data is
    there), the others start with none."""
    return {"version": 1, "chains": {str(c): [[0, SLOTS - 1]] if i == 0 else [] for i, c in enumerate(chains)},
            "synced": []}


def ranges(slot_map: dict, chain_id: int) -> list[tuple[int, int]]:
    return [(a, b) for a, b in slot_map["chains"].get(str(chain_id), [])]


def complement(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The slots outside `spans` (sorted, disjoint), as ranges."""
    out, first = [], 0
    for a, b in sorted(spans):
        if a > first:
            out.append((first, a - 1))
        first = b + 1
    if first < SLOTS:
        out.append((first, SLOTS - 1))
    return out


def count(slot_map: dict, chain_id: int) -> int:
    return sum(b - a + 1 for a, b in ranges(slot_map, chain_id))


def word(spans: list[tuple[int, int]]) -> bytes:
    """MEMBER.SHARD's ranges word: `first-last[,…]`, `-` for none."""
    return ",".join(f"{a}-{b}" for a, b in spans).encode() or b"-"


def move_refusal(slot_map: dict, target: int) -> str | None:
    """Why slots cannot be moved to chain `target` now (an error line), or None. A chain the map
    lists (MASTER.SLOTMAP shows it) is a target only once its table is synced: until then the
    refusal says to try again, not that the chain does not exist."""
    if target in slot_map["synced"]:
        return None
    if str(target) in slot_map["chains"]:
        return f"TRYAGAIN chain {target} is joining the slot map (its table is not synced yet): try again shortly"
    return f"ERR there is no chain {target} in the slot map"


def known(slot_map: dict, chain_id: int) -> dict:
    """`slot_map` with chain `chain_id` known (no slots, not synced yet); version + 1."""
    return {**slot_map, "version": slot_map["version"] + 1, "chains": {**slot_map["chains"], str(chain_id): []}}


def synced(slot_map: dict, chain_id: int) -> dict:
    """`slot_map` with chain `chain_id`'s table matching it; version + 1."""
    return {**slot_map, "version": slot_map["version"] + 1, "synced": sorted({*slot_map["synced"], chain_id})}


def drop(slot_map: dict, chain_id: int, epoch: int) -> dict:
    """`slot_map` without chain `chain_id` (it must hold no slots), remembered as removed with
    the `epoch` that announces it gone; version + 1."""
    assert not count(slot_map, chain_id), f"chain {chain_id} still holds slots"
    return {**slot_map, "version": slot_map["version"] + 1,
            "chains": {c: spans for c, spans in slot_map["chains"].items() if c != str(chain_id)},
            "synced": [c for c in slot_map["synced"] if c != chain_id],
            "removed": {**removed(slot_map), str(chain_id): epoch}}


def removed(slot_map: dict | None) -> dict[str, int]:
    """The removed chains (id as text -> the epoch announcing each gone)."""
    return dict((slot_map or {}).get("removed", {}))


def move(slot_map: dict, slot: int, chain_id: int) -> dict:
    """`slot_map` with `slot` addressed to chain `chain_id`; version + 1."""
    out = {}
    for c, spans in slot_map["chains"].items():
        kept = [(a, b) for a, b in spans if not a <= slot <= b]
        for a, b in spans:
            if a <= slot <= b:
                kept += [r for r in ((a, slot - 1), (slot + 1, b)) if r[0] <= r[1]]
        out[c] = kept
    out[str(chain_id)] = out.get(str(chain_id), []) + [(slot, slot)]
    return {**slot_map, "version": slot_map["version"] + 1,
            "chains": {c: [list(r) for r in _merged(spans)] for c, spans in out.items()}}


def owner(slot_map: dict, slot: int) -> int | None:
    for c, spans in slot_map["chains"].items():
        if any(a <= slot <= b for a, b in spans):
            return int(c)
    return None


def _merged(spans) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for a, b in sorted(spans):
        if out and a <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out
