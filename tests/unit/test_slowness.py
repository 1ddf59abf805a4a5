"""Fail-slow (coordinator/slowness.py): only a streak of slow reports makes a member fail-slow."""

from catena.control import Slowness
from catena.coordinator.slowness import SlowWatch


def test_a_streak_of_slow_reports_makes_a_member_fail_slow_and_one_fast_report_ends_it():
    w = SlowWatch(fsync_s=1.0, turn_s=2.0, for_s=5.0)
    assert w.report("m", Slowness(2500, 0), 0.0) is None
    assert w.report("m", Slowness(0, 0), 3.0) is None  # a fast report: the streak ends
    assert w.report("m", Slowness(0, 1500), 4.0) is None
    assert w.report("m", Slowness(1999, 999), 8.0) is None  # under both bounds
    assert w.report("m", Slowness(0, 1200), 9.0) is None
    assert w.report("m", Slowness(2100, 1100), 14.0) == "fsyncs up to 1.2 s and event-loop turns up to 2.1 s for 5.0 s"
