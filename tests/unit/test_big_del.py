"""A DEL of more than DEL_SLICE keys: one slice (entry) per head turn, consecutive seqs, writes
that arrive meanwhile wait behind it, one reply once the last slice commits."""

from __future__ import annotations

from test_replica import Cluster, chain3

from catena.chain import replica as replica_mod
from catena.chain.messages import Append
from catena.chain.replica import NOT_SERVING
from catena.chain.state import DEL, MSET
from catena.effects import Persist, Send
from catena.resp.codec import OK

SLICE = replica_mod.DEL_SLICE


def _load(c, n):
    for r in c.r.values():  # the same keys everywhere, as if written long ago
        r.state.apply((MSET, tuple(w for i in range(n) for w in (b"k%d" % i, b"v"))), 0)


def _turns_until(c, done, limit=100):
    """Flush (one loop turn each) and deliver until `done()`; returns the turns taken."""
    for turn in range(1, limit):
        c.settle()
        if done():
            return turn
    raise AssertionError("never done")


def test_a_large_del_is_applied_one_slice_per_turn_and_answered_once_with_the_total():
    c = chain3()
    n = 2 * SLICE + 5
    _load(c, n)
    keys = [b"k%d" % i for i in range(n)] + [b"missing"]
    c.run("a", c.r["a"].on_client("del", [b"DEL", *keys], c.now))
    head = c.r["a"]
    fx = head.flush()  # the first turn: one slice, persisted and sent
    persisted = [e for f in fx if type(f) is Persist for e in f.entries]
    assert [len(e[4][1]) for e in persisted] == [SLICE]
    assert all(len(e[4][1]) <= SLICE for f in fx if type(f) is Send and type(f.msg) is Append for e in f.msg.entries)
    c.run("a", fx)
    assert head.backlog and "del" not in c.replies
    per_turn, flush = [], head.flush

    def counting_flush():
        fx = flush()
        per_turn.append(sum(1 for f in fx if type(f) is Persist for e in f.entries if e[4][0] == DEL))
        return fx

    head.flush = counting_flush
    _turns_until(c, lambda: "del" in c.replies)
    assert max(per_turn) == 1 and sum(per_turn) == 2  # never two slices in one turn
    assert c.replies["del"] == n  # one reply, the total, after the last slice committed
    for r in c.r.values():
        assert not r.state.data and r.commit_seq == r.last_seq == 3
        assert [len(e[4][1]) for e in r.window if e[4][0] == DEL] == [SLICE, SLICE, 6]


def test_writes_behind_a_sliced_del_keep_their_order():
    """A pipeline's SET after its DEL of the same key is not overtaken by a later slice."""
    c = chain3()
    _load(c, SLICE + 10)
    last_key = b"k%d" % (SLICE + 9)  # in the second slice
    c.run("a", c.r["a"].on_client("del", [b"DEL", *(b"k%d" % i for i in range(SLICE + 10))], c.now))
    c.run("a", c.r["a"].on_client("set", [b"SET", last_key, b"new"], c.now))
    _turns_until(c, lambda: "set" in c.replies)
    assert c.replies["del"] == SLICE + 10 and c.replies["set"] == OK
    for r in c.r.values():
        assert r.state.data == {last_key: b"new"}
        seqs = [e[1] for e in r.window]
        assert seqs == list(range(1, len(seqs) + 1))  # consecutive


def test_a_retry_of_a_queued_del_joins_it_and_applies_once():
    c = chain3()
    _load(c, SLICE + 1)
    req = [b"CATENA.REQ", b"cli", b"7", b"DEL", *(b"k%d" % i for i in range(SLICE + 1))]
    c.run("a", c.r["a"].on_client("first", req, c.now))
    c.run("a", c.r["a"].on_client("retry", req, c.now))
    _turns_until(c, lambda: "first" in c.replies and "retry" in c.replies)
    assert c.replies["first"] == c.replies["retry"] == SLICE + 1
    assert [e[4][0] for e in c.r["c"].window].count(DEL) == 2  # two slices, not four


def test_a_head_that_loses_its_place_answers_the_queued_writes_tryagain():
    c = Cluster("a", "b")
    c.view(1, ("a", "b"))
    c.settle()
    _load(c, SLICE + 1)
    c.run("a", c.r["a"].on_client("del", [b"DEL", *(b"k%d" % i for i in range(SLICE + 1))], c.now))
    c.run("a", c.r["a"].on_client("set", [b"SET", b"x", b"1"], c.now))
    c.view(2, ("b",), to=["a"])
    assert c.replies == {"del": NOT_SERVING, "set": NOT_SERVING}
    assert not c.r["a"].backlog
