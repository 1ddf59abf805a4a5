"""Gray failures in the whole-cluster simulation (cluster_sim.py), scripted on a quiet cluster:
a link cut between two members that both still reach the coordinator is repaired within the
bound (the view without it saved ≤ 1.8 s after the cut, writes commit again ≤ 2 s after it, or
once the clients stuck on the cut link time out), a coordinator cut off from every member
removes nobody, and a flapping member stops stalling the chain. The rest of the run (liveness
phase, every check) is the simulator's own.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from chain_sim import T0
from cluster_sim import ClusterConfig, ClusterSim

QUIET = dict(cuts=0.0, slow=0.0, member_crashes=0.0, coord_faults=0.0, partitions=0.0, link_cuts=0.0, joins=0.0,
             removes=0.0, loss=0.0, stale_client=0.0, duration=14.0)
AT = T0 + 8.0  # the fault starts here (the chain is founded by then)


def stalled(sim: ClusterSim, start: float, end: float) -> float:
    """The longest time in [start, end] with no new commit."""
    times = [start] + [t for t in sim.commit_times if start < t < end] + [end]
    return max(b - a for a, b in zip(times, times[1:]))


@pytest.mark.parametrize("ends", [(0, 1), (1, 2), (0, 2)], ids=["head-middle", "middle-tail", "head-tail"])
@pytest.mark.parametrize("seed", range(3))
def test_a_cut_link_between_live_members_is_repaired_within_two_seconds(seed, ends):
    sim = ClusterSim(ClusterConfig(seed=seed, **QUIET))
    cut = {}

    def sever():
        view = sim.reconfig.view()
        assert len(view.members) == 3 and not view.learner, "the chain was not founded in time"
        cut["pair"] = (view.members[ends[0]], view.members[ends[1]])
        cut["epoch"] = view.epoch
        sim.sever(view.members[ends[0]], [view.members[ends[1]]])  # for good: the liveness phase heals it

    sim.at(AT, sever)
    sim.run()
    assert cut, "the fault never ran"
    repaired = min((e for e, v in sim.saved_views.items() if e > cut["epoch"] and not set(cut["pair"]) <= set(v.members)),
                   default=None)
    window = stalled(sim, AT, AT + 5.0)
    if ends != (0, 2):  # the chain's own link: one end must be taken out
        assert sim.stats["link cut verdict"] >= 1 and repaired is not None
        # A link is cut once something waited on it STALL_S (1 s) with no progress, so the
        # repair counts from the first write after the cut: over 60 seeds, median 1.1-1.2 s,
        # 6-7% of cuts past 1.8 s, the slowest 2.6-2.7 s (when the load left the link idle).
        assert sim.saved_at[repaired] - AT <= 2.0, f"repaired {sim.saved_at[repaired] - AT:.2f} s after the cut"
    # clients whose requests wait on the cut link retry after their timeout
    assert window <= max(2.0, sim.cfg.client_timeout + 0.5), f"writes stalled {window:.2f} s after cutting {cut['pair']}"


@pytest.mark.parametrize("seed", range(3))
def test_a_coordinator_cut_off_from_every_member_removes_nobody(seed):
    sim = ClusterSim(ClusterConfig(seed=seed, coordinators=1, **QUIET))
    seen = {}

    def isolate():
        seen["epoch"] = sim.reconfig.view().epoch
        seen["members"] = sim.reconfig.view().members
        sim.after(4.0, sim.net.heal, sim.sever("c0", sorted(sim.members)))

    sim.at(AT, isolate)
    sim.run()
    assert seen["members"] and len(seen["members"]) == 3
    during = [v for v in sim.saved_views.values() if v.epoch > seen["epoch"]]
    assert all(set(seen["members"]) <= set(v.members) for v in during), during
    # it suspected itself: kept members it could not reach, or resigned (then, alone, led again)
    assert sim.stats["coordinator suspected itself"] + sim.stats["coordinator resigned"] >= 1


def stalled_total(sim: ClusterSim, start: float, end: float, gap: float = 0.25) -> float:
    """The time within [start, end] spent in commit gaps longer than `gap`."""
    times = [start] + [t for t in sim.commit_times if start < t < end] + [end]
    return sum(b - a for a, b in zip(times, times[1:]) if b - a > gap)


@pytest.mark.parametrize("seed", range(3))
def test_a_flapping_member_stops_stalling_the_chain(seed):
    """The tail is cut from everyone for 2 s, then up for 1.5 s, for 12 s: it is taken out once
    and, never healthy for its quiet period (1.8 s here) meanwhile, not admitted again until the
    flapping stops. Writes stall in the first cut only (without flap damping, its relapses stalled them
    another 1.5-4.5 s in these schedules: it was admitted again in each up time)."""
    # a quiet period longer than the member's up time (--flap-quiet-ms 1800); a new leader starts
    # from the penalties the last one saved
    sim = ClusterSim(ClusterConfig(seed=seed, flap_quiet_s=1.8, **{**QUIET, "duration": 22.0}))
    flapper = {}

    def cut(n):
        if n * 3.5 >= 12.0:
            return
        m = flapper.setdefault("m", sim.reconfig.view().members[-1])
        pairs = sim.sever(m, [x for x in sorted(sim.members) + sorted(sim.coords) if x != m])
        sim.after(2.0, sim.net.heal, pairs)
        sim.after(3.5, cut, n + 1)

    sim.at(AT, cut, 0)
    sim.run()
    first, relapses = stalled_total(sim, AT, AT + 3.5), stalled_total(sim, AT + 3.5, AT + 12.0)
    assert first <= 2.5, f"writes stalled {first:.2f} s in the first cut of {flapper['m']}"
    assert relapses <= 0.5, f"writes stalled {relapses:.2f} s in the relapses of {flapper['m']}"
    assert flapper["m"] in sim.reconfig.view().members  # back once it stopped flapping


@pytest.mark.parametrize("seed", range(3))
def test_a_leader_cut_off_from_the_members_hands_over_to_a_standby(seed):
    """On etcd, the leader cut off from every member (it still reaches etcd) resigns; a standby,
    which reaches the members, leads ≤ 2 s after the cut began, and nobody was removed."""
    sim = ClusterSim(ClusterConfig(seed=seed, **QUIET))
    seen = {}

    def isolate():
        seen["leader"], seen["epoch"] = sim.etcd.leader[0], sim.reconfig.view().epoch
        seen["members"] = sim.reconfig.view().members
        sim.after(5.0, sim.net.heal, sim.sever(seen["leader"], sorted(sim.members)))
        watch()

    def watch():
        leader = sim.etcd.leader[0] if sim.etcd.leader else None
        if leader not in (None, seen["leader"]) and sim.acting(sim.coords[leader]):
            seen["handed_over"] = sim.now - AT
        elif sim.now < AT + 5.0:
            sim.after(0.01, watch)

    sim.at(AT, isolate)
    sim.run()
    assert "handed_over" in seen, "no standby took over"
    print(f"seed {seed}: a standby leads {seen['handed_over']:.2f} s after the leader was cut off")
    assert seen["handed_over"] <= 2.0, f"a standby led {seen['handed_over']:.2f} s after the cut"
    during = [v for e, v in sim.saved_views.items() if seen["epoch"] < e and sim.saved_at[e] < AT + 5.0]
    assert all(set(seen["members"]) <= set(v.members) for v in during), during
