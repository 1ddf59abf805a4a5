"""Hash slots, the state's per-slot key index, SCAN's guarantee and KEYS in slices."""

from __future__ import annotations

import gc

from hypothesis import given, settings, strategies as st

from catena.chain import ops
from catena.chain.state import DEL, INCRBY, MSET, PEXPIREAT, PURGE, SET, KVState
from catena.resp.codec import Error
from catena.slots import SLOTS, key_slot


def test_key_slot_matches_redis_cluster():
    # CLUSTER KEYSLOT on redis-server 7 gives these.
    assert key_slot(b"foo") == 12182
    assert key_slot(b"") == 0
    assert key_slot(b"{user1000}.following") == key_slot(b"{user1000}.followers") == 3443
    assert key_slot(b"{}foo") == 9500  # an empty tag: the whole key
    assert key_slot(b"foo{}{bar}") == 8363
    assert key_slot(b"foo{{bar}}zap") == 4015  # the tag is "{bar"
    assert key_slot(b"foo{bar}{zap}") == key_slot(b"bar") == 5061


keys = st.binary(min_size=0, max_size=6)


def _indexed(state: KVState) -> set[bytes]:
    keys = set()
    for slot in range(SLOTS):
        in_slot = state.slot_keys(slot)
        assert all(key_slot(k) == slot for k in in_slot)
        keys |= in_slot
    return keys


def test_every_write_path_keeps_the_index_equal_to_the_keys():
    s = KVState()
    s.apply((SET, b"a", b"1", None, 0), 0)
    s.apply((SET, b"b", b"1", 50, 0), 0)
    s.apply((SET, b"nx", b"1", None, 1), 0)  # NX
    s.apply((MSET, (b"c", b"1", b"d", b"2", b"a", b"3")), 0)
    s.apply((INCRBY, b"n", 5), 0)
    s.apply((INCRBY, b"n", 5), 0)
    assert _indexed(s) == set(s.data) == {b"a", b"b", b"nx", b"c", b"d", b"n"}
    s.apply((DEL, (b"c", b"zz")), 0)
    s.apply((PEXPIREAT, b"d", 1), 10)  # a deadline in the past deletes
    s.apply((PURGE, b"b"), 100)  # the head's expiry
    assert _indexed(s) == set(s.data) == {b"a", b"nx", b"n"}
    s.apply((SET, b"e", b"1", 5, 0), 0)
    s.apply((INCRBY, b"e", 1), 10)  # expired at 10: INCR starts from 0, one entry only
    assert _indexed(s) == set(s.data) == {b"a", b"nx", b"n", b"e"}
    assert _indexed(KVState.load(s.dump())) == set(s.data)


@settings(max_examples=100, deadline=None)
@given(st.sets(keys, max_size=200), st.lists(st.tuples(st.booleans(), keys), max_size=100), st.integers(1, 50))
def test_a_loaded_state_is_indexed_in_steps_while_writes_go_on(loaded, writes, step):
    s = KVState()
    for k in loaded:
        s.apply((SET, k, b"v", None, 0), 0)
    s = KVState.load(s.dump())
    assert len(s.unindexed) == len(loaded)
    for delete, k in writes:
        s.apply((DEL, (k,)) if delete else (SET, k, b"w", None, 0), 0)
        s.index_step(step)
    while not s.index_step(step):
        pass
    assert _indexed(s) == set(s.data)


def _scan_all(state, **opts):
    args = [b"SCAN", b"0"] + [w for k, v in opts.items() for w in (k.encode(), v)]
    seen, cursor = [], None
    while cursor != b"0":
        cursor, page = ops.read(state, args, 0)
        seen += page
        args[1] = cursor
    return seen


def test_scan_returns_every_key_and_pages_follow_count():
    s = KVState()
    s.apply((MSET, tuple(w for i in range(5000) for w in (b"k%d" % i, b"v"))), 0)
    assert sorted(_scan_all(s)) == sorted(s.data)
    cursor, page = ops.read(s, [b"SCAN", b"0", b"COUNT", b"100"], 0)
    assert 100 <= len(page) < 100 + max(len(s.slot_keys(i)) for i in range(SLOTS))
    assert int(cursor) < SLOTS // 10  # it visited a few slots, not the keyspace
    assert sorted(_scan_all(s, MATCH=b"k1?")) == sorted(b"k1%d" % i for i in range(10))
    assert _scan_all(s, TYPE=b"hash") == []
    assert len(_scan_all(s, TYPE=b"STRING", COUNT=b"1000")) == 5000


def test_scan_and_keys_refuse_bad_arguments():
    s = KVState()
    assert ops.read(s, [b"SCAN", b"x"], 0) == Error("ERR invalid cursor")
    assert ops.read(s, [b"SCAN", b"0", b"COUNT", b"0"], 0) == Error("ERR syntax error")
    assert ops.read(s, [b"SCAN", b"0", b"COUNT"], 0) == Error("ERR syntax error")
    assert ops.read(s, [b"SCAN", b"0", b"LIMIT", b"3"], 0) == Error("ERR syntax error")
    assert ops.read(s, [b"SCAN", b"0", b"COUNT", b"x"], 0) == Error("ERR value is not an integer or out of range")
    assert ops.read(s, [b"SCAN", b"99999"], 0) == [b"0", []]


def test_scan_and_keys_hide_expired_keys():
    s = KVState()
    s.apply((SET, b"gone", b"1", 5, 0), 0)
    s.apply((SET, b"kept", b"1", None, 0), 0)
    assert sorted(ops.read(s, [b"SCAN", b"0", b"COUNT", b"20000"], 0)[1]) == [b"gone", b"kept"]
    assert ops.read(s, [b"SCAN", b"0", b"COUNT", b"20000"], 10)[1] == [b"kept"]
    assert ops.read(s, [b"KEYS", b"*"], 10) == [b"kept"]


@settings(max_examples=200, deadline=None)
@given(st.sets(keys, max_size=300), st.sets(keys, max_size=300), st.lists(
    st.tuples(st.sets(keys, max_size=40), st.sets(keys, max_size=40)), max_size=40),
    st.integers(1, 50))
def test_scan_returns_every_key_present_throughout(initial, stable, churn, count):
    """Deletes and inserts between SCAN calls never hide a key present for the whole scan."""
    s = KVState()
    for k in initial | stable:
        s.apply((SET, k, b"v", None, 0), 0)
    seen, cursor, steps = set(), b"0", iter(churn)
    while True:
        cursor, page = ops.read(s, [b"SCAN", cursor, b"COUNT", b"%d" % count], 0)
        seen |= set(page)
        assert set(page) <= set(s.data)  # never a key that is not there
        if cursor == b"0":
            break
        removed, added = next(steps, (set(), set()))
        removed -= stable
        if removed:
            s.apply((DEL, tuple(removed)), 0)
        for k in added:
            s.apply((SET, k, b"w", None, 0), 0)
    assert stable <= seen


@settings(max_examples=100, deadline=None)
@given(st.sets(keys, max_size=300), st.sets(keys, max_size=300), st.sets(keys, max_size=300),
       st.integers(1, SLOTS))
def test_keys_in_slices_returns_keys_present_throughout(stable, doomed, added, step):
    """KEYS built slot range by slot range, with writes between the ranges: every key present
    throughout is returned, and nothing that never existed."""
    s = KVState()
    doomed -= stable
    for k in stable | doomed:
        s.apply((SET, k, b"v", None, 0), 0)
    ever, out = set(s.data) | added, []
    for first in range(0, SLOTS, step):
        out += ops.keys_in_slots(s, b"*", first, min(first + step, SLOTS), 0)
        if doomed:
            s.apply((DEL, (doomed.pop(),)), 0)
        if added:
            s.apply((SET, added.pop(), b"w", None, 0), 0)
    assert stable <= set(out) <= ever
    assert len(out) == len(set(out))  # each slot is visited once: no duplicates


def test_keys_pattern_matches_like_redis_glob():
    s = KVState()
    s.apply((MSET, (b"hello", b"1", b"hallo", b"1", b"hxllo", b"1", b"heeeello", b"1", b"h\nllo", b"1")), 0)
    assert sorted(ops.read(s, [b"KEYS", b"h?llo"], 0)) == [b"h\nllo", b"hallo", b"hello", b"hxllo"]
    assert sorted(ops.read(s, [b"KEYS", b"h*llo"], 0)) == sorted(s.data)
    assert sorted(ops.read(s, [b"KEYS", b"h[ae]llo"], 0)) == [b"hallo", b"hello"]
    assert sorted(ops.read(s, [b"KEYS", b"h[^e]llo"], 0)) == [b"h\nllo", b"hallo", b"hxllo"]
    assert sorted(ops.read(s, [b"KEYS", b"h[!e]llo"], 0)) == [b"hello"], "Redis negates with ^ only"


def test_the_slot_index_is_nothing_the_garbage_collector_walks():
    """The index's per-slot dicts hold bytes only, so the collector does not track them: a
    collection never walks a keyspace's worth of keys (a set would be tracked)."""
    state = KVState()
    for i in range(100):
        state.apply((SET, b"k%d" % i, b"v", None, 0), 0)
    state.apply((MSET, (b"{t}a", b"1", b"{t}b", b"2")), 0)
    state.apply((DEL, (b"k1",)), 0)
    indexed = [keys for keys in state.by_slot if keys is not None]
    assert len(indexed) > 1 and not any(gc.is_tracked(keys) for keys in indexed)
    assert state.slot_keys(key_slot(b"{t}a")) == {b"{t}a", b"{t}b"}
