"""A member whose chain was removed (catena.chain.removal): it learns it from the view the
coordinator answers its poll with, and then serves nothing: -MOVED to the head it knows for the
key's slot, else an error naming the removal; never a value from its own data."""

from __future__ import annotations

from test_cluster_mode import K, S, call, cluster_chain3

from catena.chain import removal
from catena.cluster_topology import Shard
from catena.resp.codec import OK, Error
from catena.slots import key_slot
from catena.view import View

GONE = removal.gone(0)


def test_the_notice_is_the_members_own_chain_with_no_members():
    assert removal.removed(View(2, 9, ()), 2)
    assert not removal.removed(View(2, 9, ("h:1",)), 2)  # a chain that is kept
    assert not removal.removed(View(2, 9, (), "h:1"), 2)  # a learner: kept
    assert not removal.removed(View(0, 9, ()), 2)  # another chain's
    assert GONE.message.startswith("CLUSTERDOWN chain 0 of this member was removed from the cluster")


def test_a_removed_member_moves_keys_it_can_place_and_refuses_the_rest_never_answering_old_data():
    c = cluster_chain3()
    assert call(c, "a", b"SET", b"x", b"old") is OK
    assert call(c, "a", b"SET", b"y", b"old") is OK
    sx = key_slot(b"x")
    assert key_slot(b"y") != sx  # y stays unplaced: its slot has no known owner
    for r in c.r.values():
        r.cluster.topology.put(Shard(1, 3, ("h1:7001", "h1:7002"), ((sx, sx),)))
        r.cluster.remove(0)
    for member in "abc":
        assert call(c, member, b"GET", b"x") == Error(f"MOVED {sx} h1:7001")
        assert call(c, member, b"SET", b"x", b"new") == Error(f"MOVED {sx} h1:7001")
        assert call(c, member, b"GET", b"y") == GONE  # no chain it knows serves y's slot
        assert call(c, member, b"DBSIZE") == GONE  # no key: nothing from its own data
        assert c.r[member].read_now([b"GET", b"x"], 0.0, 0.0) == Error(f"MOVED {sx} h1:7001")
        assert call(c, member, b"MGET", b"x", b"y") == Error("CROSSSLOT Keys in request don't hash to the same slot")
    assert c.r["a"].state.get(b"x", 0) is not None and call(c, "a", b"EXISTS", b"x") == Error(f"MOVED {sx} h1:7001")


def test_a_removed_member_leaves_its_chain_out_of_cluster_slots():
    c = cluster_chain3()
    r = c.r["b"]
    r.cluster.topology.put(Shard(1, 3, ("h1:7001",), ((0, 16383),)))
    assert {s.chain_id for s in r.cluster.now(r.view, r.state.table).shards.values() if s.members} == {0, 1}
    r.cluster.remove(0)
    assert {s.chain_id for s in r.cluster.now(r.view, r.state.table).shards.values()} == {1}


def test_a_write_forwarded_to_a_head_that_learned_first_gets_no_seq():
    c = cluster_chain3()
    c.r["a"].cluster.remove(0)  # b has not learned yet
    before = c.r["a"].last_seq
    assert call(c, "b", b"SET", b"y", b"new") == GONE
    assert c.r["a"].last_seq == c.r["c"].last_seq == before


def test_a_slot_given_to_a_chain_removed_since_is_moved_to_the_chain_serving_it_now():
    """Chain 0 gave the slot to chain 2, which passed it to chain 1 and was removed: chain 0's
    members send its clients to chain 1 (the map they were pushed), not -TRYAGAIN for ever."""
    c = cluster_chain3()
    assert call(c, "b", b"CATENA.SLOTS", b"%d" % S, b"%d" % S, b"frozen") is OK
    assert call(c, "b", b"CATENA.SLOTS", b"%d" % S, b"%d" % S, b"given", b"2") is OK
    for r in c.r.values():
        r.cluster.topology.put(Shard(2, 5, ("h2:7001",), ()))
    assert call(c, "a", b"GET", K) == Error(f"MOVED {S} h2:7001")  # chain 2 has a head: there
    for r in c.r.values():
        r.cluster.topology.put(Shard(2, 9, (), ()))  # chain 2 removed (MEMBER.SHARD 2 9 -)
    assert call(c, "a", b"GET", K) == Error("TRYAGAIN Slot is being migrated, retry")  # no map for it yet
    for r in c.r.values():
        r.cluster.topology.put(Shard(1, 4, ("h1:7001", "h1:7002"), ((S, S),)))
    for member in "abc":
        assert call(c, member, b"GET", K) == Error(f"MOVED {S} h1:7001")
        assert call(c, member, b"SET", K, b"x") == Error(f"MOVED {S} h1:7001")
