"""Moving a slot between two chains under faults (slot_move_sim.py): every seed must end with the
move done, both chains consistent, and a linearizable history with no acknowledged write lost
and none applied twice. A failing seed replays with `python tests/sim/slot_move_sim.py --seed N`."""

from __future__ import annotations

import os

import pytest

from slot_move_sim import run

SEEDS = range(1, 1 + int(os.environ.get("CATENA_SIM_SEEDS", "60")))  # `make sim-long`: 1,000


@pytest.mark.parametrize("seed", SEEDS)
def test_a_slot_moves_safely_under_crashes_partitions_and_driver_restarts(seed):
    run(seed)


def test_the_runs_do_meet_the_move():
    """The clients' operations overlap the move: some are refused while the slot is frozen or
    importing (TRYAGAIN) and redirected after it (MOVED), so the checks above see the move."""
    refusals: dict[str, int] = {}
    for seed in range(1, 11):
        for word, n in run(seed, faults=False).refusals.items():
            refusals[word] = refusals.get(word, 0) + n
    assert refusals.get("TRYAGAIN", 0) > 10 and refusals.get("MOVED", 0) >= 10
