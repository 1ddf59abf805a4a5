"""The collector's pauses as a member's INFO shows them (catena.gcstats)."""

import gc

import msgpack

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


def test_a_member_collects_on_its_ticks_young_and_middle_each_old_rarely():
    """Not on allocation counts, which a member's churn keeps low while its young list grows."""
    ran: list[int] = []
    schedule = gcstats.Schedule(collect=ran.append)
    for _ in range(gcstats.OLD_EVERY):
        schedule.tick()
    assert ran[:4] == [0, 1, 0, 1]  # young, then middle: each tick
    assert ran.count(0) == ran.count(1) == gcstats.OLD_EVERY - 1
    assert ran.count(2) == 1 and ran[-1] == 2


def test_a_tick_untracks_the_entries_msgpack_decoded():
    """msgpack makes an entry before its op: one young collection leaves the entry tracked (in
    the middle generation); the tick's middle collection untracks it, so nothing of a
    received batch is left for a full collection to walk."""
    entries = msgpack.unpackb(msgpack.packb([[1, i, 3, None, [0, b"k", b"v", None, 0]] for i in range(2000)]),
                              use_list=False)
    gc.collect(0)
    assert gc.is_tracked(entries[0])  # what Python's own young collection leaves
    gc.collect(2)  # (a clean start: no leftover young or middle objects)
    entries = msgpack.unpackb(msgpack.packb([[1, i, 3, None, [0, b"k", b"v", None, 0]] for i in range(2000)]),
                              use_list=False)
    gcstats.Schedule().tick()
    assert not any(gc.is_tracked(entry) for entry in entries)
    assert len(gc.get_objects(0)) + len(gc.get_objects(1)) < 100
