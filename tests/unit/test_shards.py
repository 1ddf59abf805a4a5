"""The coordinator's cluster mode (catena.coordinator.shards, slot_map): the map a new store
starts with, tables synced before a chain is announced, MEMBER.SHARD pushed to the other
chains' members until acknowledged, a new chain added with no slots."""

from __future__ import annotations

import pytest

from catena.coordinator import slot_map as sm
from catena.coordinator.pushes import PUSH_RETRY_S
from catena.coordinator.shards import PushShard, SaveMap, Shards, SyncTable
from catena.view import View

VIEWS = {0: View(0, 3, ("a", "b")), 1: View(1, 5, ("x", "y"))}


def kinds(fx, kind):
    return [f for f in fx if isinstance(f, kind)]


def ack_all(s: Shards, pushes: list, now: float) -> None:
    """Acknowledge every push, and the ones that follow (a newer map or view meanwhile)."""
    while pushes:
        p = pushes.pop()
        pushes += s.on_pushed(p.member, p.chain, p.stamp, True, now)


def synced_pair() -> Shards:
    s = Shards()
    (save,) = s.lead(None, 2, 7, VIEWS, 0.0)
    assert save == SaveMap({"version": 1, "chains": {"0": [[0, 8191]], "1": [[8192, 16383]]}, "synced": []})
    syncs = s.on_saved(True, 0.0)
    assert syncs == [SyncTable(0, "a", ((b"CATENA.SLOTS", b"FENCE", b"7", b"8192", b"16383", b"none"),)),
                     SyncTable(1, "x", ((b"CATENA.SLOTS", b"FENCE", b"7", b"0", b"8191", b"none"),))]
    assert kinds(s.on_synced(0, True, 0.1), SaveMap)[0].slot_map["synced"] == [0]
    pushes = s.on_saved(True, 0.1)
    assert {(p.member, p.chain) for p in pushes} == {("x", 0), ("y", 0)}  # chain 1 is not announced yet
    assert pushes[0].words == (b"MEMBER.SHARD", b"0", b"3", b"0-8191", b"a", b"b")
    first = pushes
    s.on_synced(1, True, 0.2)
    pushes = s.on_saved(True, 0.2)
    assert {(p.member, p.chain) for p in pushes} == {("a", 1), ("b", 1)}
    ack_all(s, pushes + first, 0.3)  # chain 0's pushes of version 2 are followed by version 3's
    return s


def test_a_new_map_splits_evenly_and_chains_are_announced_once_their_tables_match():
    s = synced_pair()
    assert s.slot_map["version"] == 3 and s.slot_map["synced"] == [0, 1]
    assert sm.even([0, 1, 2])["chains"] == {"0": [[0, 5460]], "1": [[5461, 10921]], "2": [[10922, 16383]]}


def test_pushes_follow_view_changes_until_acknowledged():
    s = synced_pair()
    assert s.on_pushed("x", 0, (3, b"0-8191", 5), True, 0.4) == []  # a late answer: nothing pushed
    fx = s.on_views({**VIEWS, 0: View(0, 4, ("b",))}, 1.0)
    assert {(p.member, p.chain, p.stamp) for p in fx} == {("x", 0, (4, b"0-8191", 5)), ("y", 0, (4, b"0-8191", 5)),
                                                           ("b", 1, (5, b"8192-16383", 4))}  # b's own chain changed too
    ack_all(s, [p for p in fx if p.member != "x"], 1.05)
    assert s.on_pushed("x", 0, (4, b"0-8191", 5), False, 1.1) == []
    assert s.next_deadline() == 1.1 + PUSH_RETRY_S
    (again,) = s.on_timer(1.1 + PUSH_RETRY_S)
    assert (again.member, again.stamp, again.words[-1]) == ("x", (4, b"0-8191", 5), b"b")
    s.on_pushed("x", 0, again.stamp, True, 1.7)
    fx = s.on_views({0: View(0, 4, ("b",)), 1: View(1, 7, ("x", "y"))}, 2.0)  # x restarted: chain 1 changed
    assert {(p.member, p.chain) for p in fx} == {("x", 0), ("y", 0), ("b", 1)}


def test_a_failed_sync_is_retried_and_a_new_chain_joins_the_map_with_no_slots():
    s = synced_pair()
    (save,) = s.on_views({**VIEWS, 2: View(2, 1, ("n",))}, 2.0)
    assert save.slot_map["chains"]["2"] == [] and 2 not in save.slot_map["synced"]
    (sync,) = kinds(s.on_saved(True, 2.0), SyncTable)
    assert sync == SyncTable(2, "n", ((b"CATENA.SLOTS", b"FENCE", b"7", b"0", b"16383", b"none"),))
    assert s.on_synced(2, False, 2.1) == []
    (sync,) = kinds(s.on_timer(2.1 + 0.5), SyncTable)
    s.on_synced(2, True, 2.7)
    pushes = kinds(s.on_saved(True, 2.7), PushShard)
    assert {(p.member, p.chain) for p in pushes} >= {("a", 2), ("x", 2)}
    assert next(p for p in pushes if p.chain == 2).words[3] == b"-"


def test_a_move_to_a_chain_the_map_lists_but_has_not_synced_is_try_again_not_no_such_chain():
    s = synced_pair()
    (save,) = s.on_views({**VIEWS, 2: View(2, 1, ("n",))}, 2.0)
    joining = save.slot_map
    assert sm.move_refusal(joining, 1) is None
    assert sm.move_refusal(joining, 2).startswith("TRYAGAIN chain 2 is joining the slot map")
    assert sm.move_refusal(joining, 5) == "ERR there is no chain 5 in the slot map"
    assert sm.move_refusal(sm.synced(joining, 2), 2) is None


def test_a_failed_map_save_ends_the_term_and_a_move_keeps_the_map_whole():
    s = Shards()
    s.lead(None, 2, 7, VIEWS, 0.0)
    assert s.on_saved(False, 0.0) == [] and not s.leading and s.slot_map is None
    moved = sm.move(sm.even([0, 1]), 8191, 1)
    assert moved["chains"] == {"0": [[0, 8190]], "1": [[8191, 16383]]} and moved["version"] == 2
    assert sm.owner(moved, 8191) == 1 and sm.count(moved, 0) == 8191


def test_a_single_chain_store_turning_cluster_mode_on_keeps_its_slots_with_chain_0():
    s = Shards()
    (save,) = s.lead(None, 2, 7, VIEWS, 0.0, new_store=False)
    assert save.slot_map["chains"] == {"0": [[0, 16383]], "1": []}
    (sync0, sync1) = s.on_saved(True, 0.0)
    assert sync0 == SyncTable(0, "a", ()) and sync1.calls[0][3:5] == (b"0", b"16383")  # nothing to drop at 0


def test_removing_an_empty_chain_drops_it_from_the_map_and_its_part_in_one_save_then_members_forget_it():
    s = synced_pair()
    s.on_views({**VIEWS, 2: View(2, 4, ("n",))}, 2.0)  # chain 2 joins with no slots
    s.on_saved(True, 2.0)
    s.on_synced(2, True, 2.1)
    ack_all(s, kinds(s.on_saved(True, 2.1), PushShard), 2.2)
    version = s.slot_map["version"]
    (save,) = s.remove(2, 5, 3.0)
    assert save.drop == ("chains/2",)
    assert save.slot_map["chains"] == {"0": [[0, 8191]], "1": [[8192, 16383]]} and 2 not in save.slot_map["synced"]
    assert save.slot_map["removed"] == {"2": 5} and save.slot_map["version"] == version + 1
    pushes = kinds(s.on_saved(True, 3.0), PushShard)
    gone = [p for p in pushes if p.chain == 2]
    assert {p.member for p in gone} == {"a", "b", "x", "y"}  # every member of the others
    assert gone[0].words == (b"MEMBER.SHARD", b"2", b"5", b"-")  # no members, under a newer epoch
    assert not any(p.member == "n" for p in pushes)  # the removed chain's own members are not pushed
    # Until its machine is gone, the removed chain's view is neither known again nor synced.
    assert kinds(s.on_views({**VIEWS, 2: View(2, 6, ("n",))}, 3.1), SaveMap) == []
    assert not kinds(s.on_views(dict(VIEWS), 3.2), SaveMap)
    assert sm.removed(s.slot_map) == {"2": 5}


def test_a_chain_holding_slots_is_not_dropped_from_a_map():
    with pytest.raises(AssertionError):
        sm.drop(sm.even([0, 1]), 1, 3)


def test_a_move_pushes_again_only_the_two_chains_whose_ranges_changed():
    three = {**VIEWS, 2: View(2, 2, ("n",))}
    s = Shards()
    s.lead(None, 3, 7, three, 0.0)
    pushes = list(s.on_saved(True, 0.0))
    while pushes or s._saving:  # sync each chain, save, acknowledge every push
        fx = pushes.pop() if pushes else None
        if isinstance(fx, SyncTable):
            pushes += s.on_synced(fx.chain, True, 0.1)
        elif isinstance(fx, PushShard):
            pushes += s.on_pushed(fx.member, fx.chain, fx.stamp, True, 0.1)
        elif s._saving:
            pushes += s.on_saved(True, 0.1)
    assert s.slot_map["synced"] == [0, 1, 2]
    (save,) = s.assign(5, 1, 1.0)
    pushes = s.on_saved(True, 1.0)
    assert {(p.member, p.chain) for p in pushes} == {("x", 0), ("y", 0), ("n", 0), ("a", 1), ("b", 1), ("n", 1)}
