"""Planning `catena reshard` and `catena rebalance` (catena.reshard): which slots move where."""

from __future__ import annotations

import pytest

from catena.errors import CatenaError
from catena.reshard import batches, drain_plan, parse_map, rebalance_plan, reshard_plan, take


def test_take_counts_from_the_end_of_the_ranges_and_batches_split_them():
    assert take([(0, 9), (20, 24)], 7) == [(8, 9), (20, 24)]
    assert take([(0, 9), (20, 24)], 3, last=False) == [(0, 2)]
    assert batches([(0, 69)], 32) == [(0, 31), (32, 63), (64, 69)]


def test_reshard_moves_a_count_or_the_part_of_a_range_the_source_holds():
    slot_map = parse_map([5, 0, b"0-8191", 1, b"8192-16383"])
    assert reshard_plan(slot_map, 0, 1, count=40) == [(8152, 8183, 1), (8184, 8191, 1)]
    assert reshard_plan(slot_map, 1, 0, span=(8000, 8200)) == [(8192, 8200, 0)]
    with pytest.raises(CatenaError, match="no chain 2"):
        reshard_plan(slot_map, 0, 2, count=1)
    with pytest.raises(CatenaError, match="no slot map"):
        parse_map(None)


def test_rebalance_gives_a_new_chain_its_share_from_the_others():
    plan = rebalance_plan(parse_map([3, 0, b"0-8191", 1, b"8192-16383", 2, b"-"]))
    moved = {}
    for a, b, target in plan:
        assert b - a < 32
        moved[target] = moved.get(target, 0) + b - a + 1
    assert moved == {2: 5461}  # 5462 + 5461 + 5461 = 16384
    sources = {(a < 8192) for a, _, _ in plan}
    assert sources == {True, False}  # both chains gave
    assert rebalance_plan(parse_map([1, 0, b"0-8191", 1, b"8192-16383"])) == []


def test_drain_moves_every_slot_of_the_chain_toward_an_even_share_and_only_it_gives():
    slot_map = parse_map([9, 0, b"0-4999", 1, b"5000-10999", 2, b"11000-16383"])
    moved: dict[int, int] = {}
    for a, b, target in drain_plan(slot_map, 1):
        assert 5000 <= a <= b <= 10999 and b - a < 32  # only chain 1's slots
        moved[target] = moved.get(target, 0) + b - a + 1
    assert moved == {0: 8192 - 5000, 2: 8192 - 5384}  # 0 and 2 end with 8192 each
    assert drain_plan(parse_map([3, 0, b"0-16383", 1, b"-"]), 1) == []  # an empty chain: nothing to move
    with pytest.raises(CatenaError, match="no chain 4"):
        drain_plan(slot_map, 4)
    with pytest.raises(CatenaError, match="only chain"):
        drain_plan(parse_map([1, 0, b"0-16383"]), 0)
