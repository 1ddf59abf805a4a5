"""A StateDump made a slice at a time while ops keep changing the state is the state as of the
moment the dump began: the same as a whole dump taken then, whatever the ops did meanwhile."""

from __future__ import annotations

import msgpack
from hypothesis import given, settings
from hypothesis import strategies as st

from catena.chain import ops, state_dump
from catena.chain.slot_ops import CLEAR
from catena.chain.slot_table import GIVEN
from catena.chain.state import KVState
from catena.chain.state_dump import StateDump
from catena.slots import key_slot

NOW = 1_000_000


def unpacked(blob: bytes):
    return msgpack.unpackb(blob, raw=True, strict_map_key=False)


def run(state: KVState, args: list[bytes], now: int = NOW):
    op = ops.to_op(args, now)
    assert not hasattr(op, "message"), (args, op)
    return state.apply(ops.decide(state, op, now, None), now)


KEYS = [b"k%d" % i for i in range(40)] + [b"{tag}%d" % i for i in range(20)]  # 20 keys in one slot
key = st.sampled_from(KEYS)
word = st.binary(min_size=0, max_size=6)
command = st.one_of(
    st.tuples(st.just(b"SET"), key, word),
    st.tuples(st.just(b"SET"), key, word, st.just(b"PX"), st.integers(1, 5_000).map(lambda n: b"%d" % n)),
    st.tuples(st.just(b"DEL"), key, key),
    st.tuples(st.just(b"APPEND"), key, word),
    st.tuples(st.just(b"INCR"), key),
    st.tuples(st.just(b"HSET"), key, word, word),
    st.tuples(st.just(b"RPUSH"), key, word),
    st.tuples(st.just(b"LPOP"), key),
    st.tuples(st.just(b"SADD"), key, word),
    st.tuples(st.just(b"SREM"), key, word),
    st.tuples(st.just(b"ZADD"), key, st.integers(-5, 5).map(lambda n: b"%d" % n), word),
    st.tuples(st.just(b"PEXPIRE"), key, st.integers(-10, 5_000).map(lambda n: b"%d" % n)),
    st.tuples(st.just(b"PERSIST"), key),
    st.tuples(st.just(b"RENAME"), key, key),
    st.tuples(st.just(b"FLUSHALL"),),
)


@settings(max_examples=150, deadline=None)
@given(before=st.lists(command, max_size=60), during=st.lists(st.tuples(command, st.booleans()), max_size=80),
       chunk=st.integers(1, 7), big=st.integers(1, 12))
def test_a_dump_made_while_ops_apply_is_the_state_of_its_first_moment(before, during, chunk, big):
    state_dump.CHUNK = chunk  # several slices even for a few keys (restored below)
    state_dump.BIG_SLOT = big  # and a slot over `big` keys (the hash tag's) over several slices
    try:
        state = KVState()
        for args in before:
            run(state, list(args))
        at_start = state.dump()
        dump = StateDump(state)
        for args, step in during:
            run(state, list(args), NOW + 1_000)  # later: some deadlines have passed
            if step:
                dump.advance()
        while not dump.advance():
            pass
        assert unpacked(b"".join(dump.parts)) == unpacked(at_start)
        assert state.dumping is None  # done: ops no longer tell it anything
    finally:
        state_dump.CHUNK, state_dump.BIG_SLOT = 1000, 4000


def test_a_slot_too_big_for_a_slice_is_dumped_over_several():
    """A hash tag most keys share puts them in one slot: it is walked CHUNK keys a slice, not in
    one slice that would hold the loop for the whole slot (a second per million keys)."""
    state = KVState()
    for i in range(10_000):
        run(state, [b"SET", b"{user}:%05d" % i, b"v"])
    at_start = state.dump()
    dump = StateDump(state)
    for i in range(0, 300, 3):  # before the walk reaches the slot: deleted, changed, created
        run(state, [b"DEL", b"{user}:%05d" % i])
        run(state, [b"SET", b"{user}:%05d" % (i + 1), b"changed"])
        run(state, [b"SET", b"{user}:new%d" % i, b"v"])
    slices = 1
    while not dump.advance():
        slices += 1
        run(state, [b"SET", b"{user}:%05d" % (slices * 7), b"changed"])  # a key packed, or not yet
        run(state, [b"DEL", b"{user}:%05d" % (9_999 - slices)])
    assert slices >= 10_000 // state_dump.CHUNK
    assert unpacked(b"".join(dump.parts)) == unpacked(at_start)


def test_keys_a_cleared_slot_drops_are_kept_as_they_were():
    """CLEAR names no keys (its slot is served by nobody here), yet it drops them: each drop
    saves the key first."""
    state = KVState()
    for k in KEYS:
        run(state, [b"SET", k, b"v" + k])
    slot = key_slot(KEYS[0])
    state.table.states[slot] = GIVEN  # given away: clearable
    at_start = state.dump()
    dump = StateDump(state)
    assert state.apply((CLEAR, slot), NOW) >= 1
    assert state.get(KEYS[0], NOW) is None
    while not dump.advance():
        pass
    assert unpacked(b"".join(dump.parts)) == unpacked(at_start)


def test_a_dump_abandoned_midway_stops_watching_the_state():
    state = KVState()
    for k in KEYS:
        run(state, [b"SET", k, b"v"])
    dump = StateDump(state)
    assert state.dumping == (dump,)
    dump.stop()
    assert state.dumping is None
    run(state, [b"SET", KEYS[0], b"w"])  # applies as usual


def test_two_dumps_of_two_moments_overlap():
    """A transfer's dump and the member's own snapshot, begun at different moments: each is the
    state of its own."""
    state = KVState()
    for k in KEYS:
        run(state, [b"SET", k, b"1"])
    first_moment = state.dump()
    first = StateDump(state)
    run(state, [b"SET", KEYS[0], b"2"])
    run(state, [b"DEL", KEYS[1]])
    second_moment = state.dump()
    second = StateDump(state)
    run(state, [b"SET", KEYS[0], b"3"])
    run(state, [b"APPEND", KEYS[2], b"x"])
    while not (first.advance() & second.advance()):
        pass
    assert unpacked(b"".join(first.parts)) == unpacked(first_moment)
    assert unpacked(b"".join(second.parts)) == unpacked(second_moment)
    assert state.dumping is None


def test_the_header_of_a_map_of_any_size():
    for n in (0, 15, 16, 65_535, 65_536):
        assert state_dump.map_header(n) == msgpack.packb({i: None for i in range(n)})[: len(state_dump.map_header(n))]
