"""When MASTER.REMOVECHAIN refuses (catena.coordinator.chain_removal.refusal): with every
refusal nothing is changed, and each says why in Redis's error shape."""

from __future__ import annotations

from catena.coordinator import slot_map as sm
from catena.coordinator.chain_removal import refusal

MAP = sm.known(sm.even([0, 1]), 2)  # chain 2 holds no slots
CHAINS = {0, 1, 2}


def test_an_empty_chain_no_move_under_way_may_be_removed():
    assert refusal(MAP, CHAINS, 2, moving=False) is None


def test_refused_while_the_chain_owns_slots_or_a_move_is_under_way():
    assert refusal(MAP, CHAINS, 1, moving=False) == ("ERR chain 1 owns 8192 slots: move them to other chains "
                                                     "first (catena drain --chain 1)")
    assert refusal(MAP, CHAINS, 2, moving=True) == "ERR a slot move is under way: try again once it is done"


def test_refused_for_chain_0_an_unknown_chain_and_without_a_map():
    assert refusal(MAP, CHAINS, 0, moving=False).startswith("ERR chain 0 cannot be removed")
    assert refusal(MAP, CHAINS, 7, moving=False) == "ERR there is no chain 7 in the slot map"
    gone = sm.drop(MAP, 2, 4)
    assert refusal(gone, {0, 1}, 2, moving=False) == "ERR there is no chain 2 in the slot map"  # removed already
    assert refusal(None, {0}, 1, moving=False).startswith("ERR no slot map")
