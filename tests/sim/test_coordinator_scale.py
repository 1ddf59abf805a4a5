"""The coordinator at scale in virtual time (coordinator_scale.py): with many chains, a view
change or a member failure in one chain writes that chain's part only and leaves every other
chain's view and part as they were; a slot move re-pushes only its two chains' shards."""

from __future__ import annotations

from coordinator_scale import run

CHAINS, MEMBERS = 40, 3


def test_one_chain_s_change_touches_no_other_chain_and_a_move_pushes_two_shards():
    start, idle, change, failure, move = run(CHAINS, MEMBERS)
    others = (CHAINS - 1) * MEMBERS
    assert start["shard_pushes"] == CHAINS * others  # every shard once to every member of the others
    assert idle["saves"] == 0 and idle["shard_pushes"] == 0
    for row in (change, failure):
        assert row["others_untouched"], row
        assert (row["saves"], row["parts"], row["view_pushes"]) == (1, 1, 3), row  # its own part; its 3 members told
        assert row["shard_pushes"] <= others + 2 * (CHAINS - 1), row  # its shard to the others; its members learn all
    assert failure["virtual_s"] < 1.0
    assert move["others_untouched"] and move["shard_pushes"] <= 2 * others, move
    assert move["parts"] == move["saves"] == 11  # the intent at each of its phases, the map once
