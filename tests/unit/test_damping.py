"""Flap damping (coordinator/damping.py): the quiet period doubles with each recent removal and
is earned back with time."""

from catena.coordinator.damping import Damping


def test_quiet_doubles_with_each_removal_and_decays_with_stability():
    d = Damping(base_s=1.0, half_life_s=10.0, max_s=5.0)
    assert d.quiet_s("m", 0.0) == 0.0  # never taken out: admitted at once
    d.removed("m", 0.0)
    assert d.quiet_s("m", 0.0) == 1.0
    d.removed("m", 1.0)
    assert d.quiet_s("m", 1.0) == 2.0
    d.removed("m", 2.0)
    d.removed("m", 3.0)
    assert d.quiet_s("m", 3.0) == 5.0  # 8 s, capped
    assert d.quiet_s("m", 23.0) == 1.0  # two half-lives later: penalty ~0.99
    assert d.quiet_s("m", 43.0) == 0.0 and d.penalty("x", 43.0) == 0.0  # forgotten
