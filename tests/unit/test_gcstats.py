"""The collector's pauses as a member's INFO shows them (catena.gcstats)."""

import gc

from catena import gcstats
from catena.gcstats import GcStats


def test_every_collection_is_counted_and_timed_by_generation():
    ticks = iter([1.0, 1.004, 2.0, 2.05])
    stats = GcStats(clock=lambda: next(ticks))
    stats("start", {"generation": 0})
    stats("stop", {"generation": 0})
    stats("start", {"generation": 2})
    stats("stop", {"generation": 2})
    assert stats.collections == [1, 0, 1]
    assert stats.info() == ["catena_gc_collections:1,0,1", "catena_gc_longest_pause_ms:4.0,0.0,50.0",
                            "catena_gc_total_ms:54.0"]


def test_it_hears_the_real_collector_until_stopped():
    stats = GcStats()
    stats.start()
    try:
        gc.collect()
        assert stats.collections[2] >= 1 and stats.total_s > 0
    finally:
        stats.stop()
    seen = list(stats.collections)
    gc.collect()
    assert stats.collections == seen


def test_a_member_collects_on_its_ticks_young_often_old_rarely():
    """Not on allocation counts, which a member's churn keeps low while its young list grows."""
    ran: list[int] = []
    schedule = gcstats.Schedule(collect=ran.append)
    for _ in range(gcstats.MIDDLE_EVERY * gcstats.OLD_EVERY):
        schedule.tick()
    assert ran.count(0) == gcstats.OLD_EVERY * (gcstats.MIDDLE_EVERY - 1)  # every other tick: the young
    assert ran.count(1) == gcstats.OLD_EVERY - 1
    assert ran.count(2) == 1 and ran[-1] == 2
    assert ran[: gcstats.MIDDLE_EVERY] == [0] * (gcstats.MIDDLE_EVERY - 1) + [1]


def test_the_young_generation_is_empty_after_a_tick():
    """What a tick allocated is walked once, then no longer young (the real collector)."""
    keep = [(i, (b"k", i)) for i in range(5_000)]  # as a window of entries
    schedule = gcstats.Schedule()
    schedule.tick()
    assert len(gc.get_objects(0)) < 100
    assert keep
