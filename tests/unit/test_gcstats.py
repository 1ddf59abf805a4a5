"""The collector's pauses as a member's INFO shows them (catena.gcstats)."""

import gc

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
