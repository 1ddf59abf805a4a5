"""Seeded whole-cluster simulations of the membership machine.

A failing run names its seed; replay it with CATENA_SIM_SEED=<seed> pytest tests/sim/test_membership_sim.py
(CATENA_SIM_SEED=random picks a fresh one and prints it).
"""

import os
import random
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from membership_sim import Sim, run_scenario  # noqa: E402

REPLAY = "replay: CATENA_SIM_SEED={seed} python -m pytest tests/sim/test_membership_sim.py"


def seeds(default):
    env = os.environ.get("CATENA_SIM_SEED")
    if not env:
        return default
    if env == "random":
        return [random.SystemRandom().randrange(1 << 32)]
    return [int(x) for x in env.split(",")]


def check(report):
    problems = report.failures()
    print(f"seed={report.seed} n={report.n} loss={report.loss} first={[round(x, 3) for x in report.first]} "
          f"all={[round(x, 3) for x in report.all_lists]} join/leave all={[round(x, 3) for x in report.news_all_lists]} "
          f"events={report.events}")
    assert not problems, f"seed {report.seed}: {problems}\n" + REPLAY.format(seed=report.seed)


@pytest.mark.parametrize("seed", seeds([1]))
def test_thousand_members_with_loss_crash_bursts_leaves_pauses_and_restarts(seed):
    report = run_scenario(1000, seed, loss=0.05, bursts=2)
    check(report)
    # catena's own goal, not just the 2 s / 6 s bound
    assert max(report.first) <= 1.0 and max(report.all_lists) <= 2.0, REPLAY.format(seed=seed)


@pytest.mark.parametrize("seed", seeds([11, 12, 13]))
@pytest.mark.parametrize("n", [12, 60])
def test_small_clusters(seed, n):
    check(run_scenario(n, seed, loss=0.05, bursts=2))


@pytest.mark.parametrize("seed", seeds([21]))
def test_same_seed_replays_exactly(seed):
    a = run_scenario(40, seed, loss=0.05, bursts=1)
    b = run_scenario(40, seed, loss=0.05, bursts=1)
    assert (a.first, a.all_lists, a.events, a.msgs_per_node_s) == (b.first, b.all_lists, b.events, b.msgs_per_node_s)


@pytest.mark.parametrize("seed", seeds([31]))
def test_growing_through_introducers_converges_under_loss(seed):
    sim = Sim(120, seed, loss=0.05, bootstrap=False)
    sim.run_until(120 * 0.02 + 3.0)
    assert not sim.join_failures, f"seed {seed}"
    assert len(sim.live_nodes()) == 120, f"seed {seed}"
    assert not sim.divergence(), f"seed {seed}: {sim.divergence()[:3]}\n" + REPLAY.format(seed=seed)
    assert not sim.false_removals, f"seed {seed}"


@pytest.mark.parametrize("seed", seeds([41]))
def test_per_member_traffic_is_flat_in_n(seed):
    def steady(n):
        sim = Sim(n, seed, loss=0.0, measure_bytes=True)
        sim.run_until(3.0)
        return sum(x.sent_bytes for x in sim.nodes.values()) / n / 3.0

    small, large = steady(20), steady(400)
    assert large < 1.3 * small, (small, large)


@pytest.mark.parametrize("seed", seeds([51, 52]))
def test_an_isolated_member_removes_nobody_and_comes_back(seed):
    sim = Sim(80, seed, loss=0.05)
    sim.run_until(1.0)
    cut = sim.rng.choice(sorted(sim.nodes))
    before = {a: n.machine.me for a, n in sim.nodes.items()}
    sim.isolate(cut, 3.0)
    sim.run_until(4.0)
    node = sim.nodes[cut].machine
    assert node.counters["failures_declared"] == 0, f"seed {seed}: a cut-off member removed others"
    assert node.counters["probes_inconclusive"] > 0
    sim.loss = 0.0
    sim.run_until(8.0)
    after = {a: n.machine.me for a, n in sim.nodes.items()}
    changed = {a for a in before if before[a] != after[a]}
    assert changed == {cut}, f"seed {seed}: only the cut-off member should rejoin, got {changed}"
    assert not sim.divergence(), f"seed {seed}: {sim.divergence()[:3]}\n" + REPLAY.format(seed=seed)
