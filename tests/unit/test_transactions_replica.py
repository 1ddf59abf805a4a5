"""MULTI/EXEC as one chain entry and WATCH at the head (catena.chain.transactions), through the
replica machines of a 3-member chain (test_replica's harness: frames through the wire codec)."""

from __future__ import annotations

import msgpack

from catena.chain import transactions
from catena.chain.state import KVState, unwire_reply, valid_op, wire_reply
from catena.chain.transactions import EXEC, EXEC_CMD, EXEC_READS, VERSIONS, encode
from catena.chain.versions import CAPACITY, Versions
from catena.resp.codec import NULL_ARRAY, OK, Error
from test_replica import E, Cluster, chain3


def exec_args(*commands, watched=None):
    return [EXEC_CMD, *encode(watched or {}, [[w.encode() if isinstance(w, str) else w for w in c]
                                             for c in commands])]


def test_queued_commands_become_one_entry_applied_at_every_member_with_their_replies():
    c = chain3()
    c.client("a", "x", *exec_args(("SET", "k", "1"), ("INCR", "k"), ("GET", "k"), ("SADD", "k", "m"),
                                  ("SET", "k", "v", "NX", "XX"), ("NOPE",)))
    c.settle()
    assert c.replies["x"] == [OK, 2, b"2", Error("WRONGTYPE Operation against a key holding the wrong kind of value"),
                              Error("ERR syntax error"), Error("ERR unknown command 'NOPE'")]
    entries = [e for e in c.r["c"].window if e[4][0] == EXEC]
    assert len(entries) == 1 and c.r["a"].last_seq == 1
    for m in "abc":
        assert c.r[m].state.get(b"k", 0) == b"2"


def test_a_transaction_at_another_member_is_forwarded_and_its_reply_travels_back():
    c = chain3()
    c.client("c", "x", *exec_args(("SET", "k", "v"), ("GET", "k")))
    c.settle()
    assert c.replies["x"] == [OK, b"v"]


def test_watch_versions_are_read_and_a_changed_key_aborts_with_nil_and_applies_nothing():
    c = chain3()
    c.client("a", "w", "SET", "k", "1")
    c.settle()
    c.client("b", "v", VERSIONS, "k", "other")
    c.settle()
    version, other = c.replies["v"]
    assert (version, other) == (1, 0)  # its last write's seq; a key never written: the floor
    c.client("c", "w2", "SET", "k", "2")  # another client writes the watched key
    c.settle()
    c.client("b", "x", *exec_args(("SET", "k", "mine"), watched={b"k": version}))
    c.settle()
    assert c.replies["x"] is None
    assert c.r["c"].state.get(b"k", 0) == b"2" and c.r["a"].last_seq == 2
    c.client("b", "v2", VERSIONS, "k")
    c.settle()
    c.client("b", "y", *exec_args(("SET", "k", "mine"), watched={b"k": c.replies["v2"][0]}))
    c.settle()
    assert c.replies["y"] == [OK] and c.r["c"].state.get(b"k", 0) == b"mine"


def test_versions_of_unwritten_keys_are_the_floor_and_a_write_anywhere_else_does_not_abort():
    c = chain3()
    c.client("a", "v", VERSIONS, "k")
    c.settle()
    c.client("a", "w", "SET", "other", "1")
    c.settle()
    c.client("a", "x", *exec_args(("SET", "k", "v"), watched={b"k": c.replies["v"][0]}))
    c.settle()
    assert c.replies["x"] == [OK]


def test_an_exec_retried_under_its_request_id_applies_once_even_at_a_new_head():
    c = chain3()
    req = ["CATENA.REQ", "cl", "3", *exec_args(("INCR", "n"), ("INCR", "n"))]
    c.client("a", "t1", *req)
    c.settle()
    assert c.replies["t1"] == [1, 2]
    del c.r["a"]
    c.queue.clear()
    c.view(E + 1, ("b", "c"))
    c.settle()
    c.client("b", "t2", *req)
    c.settle()
    assert c.replies["t2"] == [1, 2] and c.r["c"].state.get(b"n", 0) == b"2"


def test_spop_inside_exec_is_decided_at_the_head_after_the_earlier_commands():
    c = chain3()
    c.client("a", "x", *exec_args(("SADD", "s", *"abcdefgh"), ("SPOP", "s", "3"), ("SCARD", "s")))
    c.settle()
    added, popped, left = c.replies["x"]
    assert added == 8 and len(popped) == 3 and left == 5
    assert c.r["a"].state.data[b"s"] == c.r["b"].state.data[b"s"] == c.r["c"].state.data[b"s"]


def test_a_read_only_transaction_is_answered_locally_when_clean_and_by_the_tail_when_dirty():
    c = chain3()
    c.client("a", "w", "SET", "k", "1")
    c.settle()
    sent = len(c.sent)
    c.client("a", "r", EXEC_READS, *exec_args(("GET", "k"), ("EXISTS", "k"))[1:])
    assert c.replies["r"] == [b"1", 1] and len(c.sent) == sent  # nothing left the member
    c.client("a", "w2", "SET", "k", "2")  # k is dirty at a until the ack comes back
    c.client("a", "r2", EXEC_READS, *exec_args(("GET", "k"),)[1:])
    assert "r2" not in c.replies
    c.settle()
    assert list(c.replies["r2"]) in ([b"1"], [b"2"])


def test_a_read_only_transaction_with_a_changed_watch_is_nil():
    c = chain3()
    c.client("b", "r", EXEC_READS, *exec_args(("GET", "k"), watched={b"k": 99})[1:])
    assert c.replies["r"] is None


def test_exec_ops_from_peers_are_checked():
    assert valid_op((EXEC, 7, ((0, b"k", b"v", None, 0), (transactions.READ, (b"GET", b"k")))))
    assert not valid_op((EXEC, 7, ((EXEC, 1, ()),)))
    assert not valid_op((EXEC, b"7", ()))
    assert not valid_op((EXEC, 7, ((transactions.READ, ()),)))


def test_exec_replies_travel_and_are_kept_in_the_dedup_table():
    replies = [OK, Error("WRONGTYPE x"), [b"a", None], 3, None]
    raw = msgpack.unpackb(msgpack.packb(wire_reply(replies), use_bin_type=True), raw=True, use_list=False)
    assert unwire_reply(raw) == [OK, Error("WRONGTYPE x"), (b"a", None), 3, None]
    state = KVState()
    state.remember((b"c", 1), 5, replies)
    assert KVState.load(state.dump()).seen((b"c", 1))[:2] == (5, unwire_reply(raw))


def test_null_arrays_travel_alone_and_inside_exec_replies():
    for replies in (NULL_ARRAY, [OK, NULL_ARRAY, [b"k", [b"a"]]]):
        raw = msgpack.unpackb(msgpack.packb(wire_reply(replies), use_bin_type=True), raw=True, use_list=False)
        back = unwire_reply(raw)
        assert back is NULL_ARRAY if replies is NULL_ARRAY else back[1] is NULL_ARRAY, "LMPOP's *-1 stays *-1"
        state = KVState()
        state.remember((b"c", 1), 5, replies)
        assert KVState.load(state.dump()).seen((b"c", 1))[:2] == (5, back)


def test_versions_never_fall_below_a_write_and_forgetting_only_raises_them():
    v = Versions()
    v.touch([b"a"], 3)
    assert v.of(b"a") == 3 and v.of(b"b") == 0
    for i in range(CAPACITY):
        v.touch([b"%d" % i], 10 + i)
    assert v.of(b"a") >= 3 + 1 and v.of(b"a") < 10 + CAPACITY  # forgotten: the floor, above its write
    v.forget(500_000)
    assert v.of(b"5") == 500_000


def test_malformed_exec_words_are_refused_at_the_head():
    c = chain3()
    c.client("a", "x", EXEC_CMD, "1", "k")
    c.client("a", "y", EXEC_CMD, "0", "5", "GET")
    assert c.replies["x"] == c.replies["y"] == Error("ERR malformed CATENA.EXEC")


def test_a_chain_of_one_answers_exec_once_persisted_and_an_abort_at_once():
    c = Cluster("a")
    c.view(1, ("a",))
    c.client("a", "w", "SET", "k", "1")
    assert c.replies["w"] == OK
    c.client("a", "x", *exec_args(("INCR", "k"), ("GET", "k")))
    assert c.replies["x"] == [2, b"2"] and c.persisted["a"][-1][4][0] == EXEC
    c.client("a", "y", *exec_args(("SET", "k", "no"), watched={b"k": 1}))  # k was written at seq 2 since
    assert c.replies["y"] is None and c.r["a"].state.get(b"k", 0) == b"2"


def test_blocking_commands_inside_multi_run_as_their_non_blocking_forms():
    from catena.chain.multi import NON_BLOCKING
    blpop, reshape = NON_BLOCKING[b"BLPOP"]([b"BLPOP", b"a", b"b", b"0"])
    assert blpop == [b"LMPOP", b"2", b"a", b"b", b"LEFT"]
    assert reshape([b"b", [b"v"]]) == [b"b", b"v"] and reshape(None) is None
    zpop, reshape = NON_BLOCKING[b"BZPOPMAX"]([b"BZPOPMAX", b"z", b"1.5"])
    assert zpop == [b"ZMPOP", b"1", b"z", b"MAX"] and reshape([b"z", [[b"m", b"2"]]]) == [b"z", b"m", b"2"]
    assert NON_BLOCKING[b"BRPOPLPUSH"]([b"BRPOPLPUSH", b"s", b"d", b"0"]) == ([b"RPOPLPUSH", b"s", b"d"], None)
    assert NON_BLOCKING[b"BLMPOP"]([b"BLMPOP", b"0", b"1", b"l", b"LEFT"]) == ([b"LMPOP", b"1", b"l", b"LEFT"], None)
