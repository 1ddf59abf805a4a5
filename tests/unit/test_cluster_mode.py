"""Cluster mode at the replica (catena.chain.slot_guard): -CROSSSLOT, -MOVED and -TRYAGAIN decided
from the chain's replicated slot table, at every member and again at the head (docs/sharding.md)."""

from __future__ import annotations

from test_replica import Cluster, chain3

from catena.chain.replica import Replica
from catena.chain.slot_guard import ClusterMode
from catena.chain.slot_ops import pack
from catena.cluster_topology import Shard
from catena.resp.codec import OK, Error
from catena.slots import key_slot

K = b"{s}k"
S = key_slot(K)
TRYAGAIN = Error("TRYAGAIN Slot is being migrated, retry")


def cluster_chain3(cluster=True) -> Cluster:
    """test_replica's chain a -> b -> c, its members in cluster mode as if started with it."""
    c = chain3()
    for r in c.r.values() if cluster else ():
        r.cluster = ClusterMode()
        r.cluster.on_view(r.view)
    return c


def call(c, member, *args):
    token = object()
    c.client(member, token, *args)
    c.settle()
    return c.replies.get(token)


def slots(c, *words):
    assert call(c, "b", b"CATENA.SLOTS", b"%d" % S, b"%d" % S, *words) is OK


def test_a_single_chain_in_cluster_mode_serves_every_slot():
    c = cluster_chain3()
    assert call(c, "c", b"SET", b"x", b"1") is OK
    assert call(c, "b", b"GET", b"x") == b"1"
    assert call(c, "a", b"MSET", b"{t}1", b"a", b"{t}2", b"b") is OK


def test_keys_in_two_slots_are_refused_with_crossslot_and_nothing_changes():
    c = cluster_chain3()
    crossslot = Error("CROSSSLOT Keys in request don't hash to the same slot")
    assert call(c, "b", b"MSET", b"a", b"1", b"b", b"2") == crossslot
    assert call(c, "b", b"MGET", b"a", b"b") == crossslot
    assert call(c, "a", b"SMOVE", b"a", b"b", b"m") == crossslot
    assert call(c, "c", b"BLPOP", b"a", b"b", b"0") == crossslot
    assert c.r["c"].last_seq == c.r["a"].last_seq and call(c, "c", b"EXISTS", b"a") == 0


def test_without_cluster_mode_nothing_is_refused():
    c = cluster_chain3(cluster=False)
    assert call(c, "b", b"MSET", b"a", b"1", b"b", b"2") is OK
    slots(c, b"frozen")
    assert call(c, "b", b"SET", K, b"v") is OK


def test_a_frozen_slot_refuses_writes_and_serves_reads():
    c = cluster_chain3()
    assert call(c, "a", b"SET", K, b"v") is OK
    slots(c, b"frozen")
    for member in "abc":
        assert call(c, member, b"SET", K, b"w") == TRYAGAIN
        assert call(c, member, b"GET", K) == b"v"
    assert call(c, "b", b"SET", b"elsewhere", b"w") is OK  # other slots go on
    slots(c, b"owned")  # UNFREEZE
    assert call(c, "b", b"SET", K, b"w") is OK


def test_the_head_refuses_a_write_that_a_freeze_overtook_on_its_way():
    """A member checks with its own table, but the head decides: a write forwarded before the
    FREEZE reached the forwarding member, and assigned after it, is refused."""
    c = cluster_chain3()
    token = object()
    c.client("c", token, b"SET", K, b"late")  # c forwards it to a; the Forward waits in the queue
    freeze = object()
    c.client("a", freeze, b"CATENA.SLOTS", b"%d" % S, b"%d" % S, b"frozen")
    c.settle()
    assert c.replies[freeze] is OK and c.replies[token] == TRYAGAIN
    assert call(c, "c", b"GET", K) is None


def test_a_given_slot_is_moved_to_the_head_of_the_chain_that_took_it():
    c = cluster_chain3()
    call(c, "a", b"SET", K, b"v")
    for r in c.r.values():
        r.cluster.topology.put(Shard(7, 3, ("127.0.0.1:7000", "127.0.0.1:7001"), ()))
    slots(c, b"frozen")
    slots(c, b"given", b"7")
    moved = Error(f"MOVED {S} 127.0.0.1:7000")
    for member in "abc":
        assert call(c, member, b"GET", K) == moved
        assert call(c, member, b"SET", K, b"w") == moved
    assert c.r["c"].state.get(K, 0) == b"v"  # kept until CLEAR, served by nobody here


def test_a_given_slot_whose_taker_is_unknown_is_retried_and_a_never_owned_one_is_down():
    c = cluster_chain3()
    slots(c, b"frozen")
    slots(c, b"given", b"7")
    assert call(c, "b", b"GET", K) == TRYAGAIN
    other = S + 1
    assert call(c, "b", b"CATENA.SLOTS", b"%d" % other, b"%d" % other, b"none") is OK
    key = next(k for k in (b"k%d" % i for i in range(100_000)) if key_slot(k) == other)
    assert call(c, "b", b"GET", key) == Error("CLUSTERDOWN Hash slot not served")


def test_an_importing_slot_is_served_only_after_take():
    c = cluster_chain3()
    call(c, "a", b"CATENA.SLOTS", b"%d" % S, b"%d" % S, b"none")
    slots(c, b"importing", b"2")
    assert call(c, "b", b"CATENA.IMPORT", b"%d" % S, K, pack(b"copied"), b"-") == 1
    assert call(c, "a", b"GET", K) == TRYAGAIN and call(c, "a", b"SET", K, b"x") == TRYAGAIN
    slots(c, b"owned")  # TAKE
    assert call(c, "c", b"GET", K) == b"copied"
    assert call(c, "b", b"INCR", K) == Error("ERR value is not an integer or out of range")


def test_a_tail_behind_the_take_refuses_rather_than_answer_from_before_the_import():
    """b has applied the IMPORT and the TAKE, uncommitted: its copy of the key is dirty, so it
    asks the tail, whose table still says importing. The tail must not answer nil (a read back
    in time: the key was committed at the chain that gave the slot)."""
    c = cluster_chain3()
    call(c, "a", b"CATENA.SLOTS", b"%d" % S, b"%d" % S, b"none")
    slots(c, b"importing", b"2")
    to_tail = lambda src, dst, msg: dst == "c" and type(msg).__name__ == "Append"  # noqa: E731
    for words in ([b"CATENA.IMPORT", b"%d" % S, K, pack(b"copied"), b"-"],
                  [b"CATENA.SLOTS", b"%d" % S, b"%d" % S, b"owned"]):
        c.client("a", object(), *words)
        c.settle(hold=to_tail)
    assert c.r["b"].state.table.state(S) == 0 and c.r["c"].state.table.state(S) != 0
    token = object()
    c.client("b", token, b"GET", K)
    c.settle(hold=to_tail)
    assert c.replies[token] == TRYAGAIN
    c.settle()
    assert call(c, "b", b"GET", K) == b"copied"


def test_flushall_waits_while_a_slot_moves():
    c = cluster_chain3()
    call(c, "a", b"SET", K, b"v")
    slots(c, b"frozen")
    assert call(c, "b", b"FLUSHALL") == TRYAGAIN
    assert call(c, "b", b"GET", K) == b"v"
    slots(c, b"given", b"3")
    assert call(c, "b", b"FLUSHALL") is OK


def test_a_transaction_across_slots_is_refused_whole_and_one_in_a_moving_slot_waits():
    from catena.chain import transactions
    c = cluster_chain3()
    crossslot = Error("CROSSSLOT Keys in request don't hash to the same slot")
    across = [[b"SET", b"a", b"1"], [b"GET", b"b"]]
    assert call(c, "b", transactions.EXEC_CMD, *transactions.encode({}, across)) == crossslot
    assert call(c, "b", transactions.EXEC_READS, *transactions.encode({}, [[b"GET", b"a"], [b"GET", b"b"]])) == crossslot
    assert call(c, "c", b"GET", b"a") is None  # nothing applied
    tagged = [[b"SET", K, b"1"], [b"INCR", b"{s}n"]]
    assert call(c, "b", transactions.EXEC_CMD, *transactions.encode({}, tagged)) == [OK, 1]
    slots(c, b"frozen")
    assert call(c, "b", transactions.EXEC_CMD, *transactions.encode({}, tagged)) == TRYAGAIN
    assert call(c, "a", b"GET", K) == b"1" and call(c, "a", b"GET", b"{s}n") == b"1"


def test_a_learner_gets_the_slot_table_with_the_snapshot_and_refuses_as_the_chain_does(monkeypatch):
    from catena.chain import replica as replica_module
    from catena.chain.messages import Snapshot
    from test_replica import E

    monkeypatch.setattr(replica_module, "WINDOW", 2)
    c = cluster_chain3()
    call(c, "a", b"SET", K, b"v")
    slots(c, b"frozen")
    slots(c, b"given", b"7")
    for i in range(4):
        call(c, "a", b"SET", b"k%d" % i, b"v")
    c.add("d", Replica("d", b"d/1", cluster=True))
    c.view(E + 1, ("a", "b", "c"), learner="d")
    c.settle()
    c.view(E + 2, ("a", "b", "c", "d"))
    c.settle()
    assert any(type(m) is Snapshot for s, d, m in c.sent if d == "d")
    assert c.r["d"].state.table.state(S) == 2 and c.r["d"].state.table.peer(S) == 7
    assert call(c, "d", b"GET", K) == TRYAGAIN and call(c, "d", b"GET", b"k0") == b"v"
