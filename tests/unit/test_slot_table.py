"""The replicated slot table (catena.chain.slot_table, .slot_ops): its transitions, the data ops
of a move, the commands that issue them, and its place in state dumps."""

from __future__ import annotations

from collections import deque

import msgpack
import pytest

from catena.chain import ops
from catena.chain.slot_ops import CLEAR, IMPORT, SLOTS, pack
from catena.chain.slot_table import FROZEN, GIVEN, IMPORTING, NONE, OWNED, SlotTable
from catena.chain.state import SET, KVState, valid_op
from catena.resp.codec import OK, Error
from catena.slots import key_slot

TS = 1_000_000
K = b"{s}k"
S = key_slot(K)


def move(state, to, peer=-1, first=S, last=S):
    return state.apply((SLOTS, first, last, to, peer), TS)


def test_a_new_table_owns_every_slot():
    t = SlotTable()
    assert t.ranges() == [(0, 16383)]
    assert t.state(0) == OWNED and t.peer(0) is None


def test_the_move_of_a_slot_out_and_back_in_follows_the_diagram():
    s = KVState()
    assert move(s, FROZEN) is OK
    assert move(s, GIVEN, 7) is OK
    assert s.table.state(S) == GIVEN and s.table.peer(S) == 7
    assert s.table.ranges() == [(0, S - 1), (S + 1, 16383)]
    assert move(s, IMPORTING, 7) is OK
    assert move(s, OWNED) is OK
    assert s.table.state(S) == OWNED and s.table.peer(S) is None


def test_a_transition_not_in_the_diagram_changes_nothing_and_says_why():
    s = KVState()
    reply = move(s, GIVEN, 7)  # owned -> given skips the freeze
    assert type(reply) is Error and reply.message == f"ERR slot {S} is owned: it cannot become given"
    assert s.table.state(S) == OWNED
    move(s, FROZEN, first=10, last=10)
    reply = move(s, IMPORTING, 3, first=0, last=20)  # slot 0 is owned: the whole range stays
    assert type(reply) is Error and s.table.state(10) == FROZEN and s.table.state(20) == OWNED


def test_repeating_a_step_is_answered_ok_and_changes_nothing():
    s = KVState()
    assert move(s, FROZEN) is OK and move(s, FROZEN) is OK
    assert move(s, GIVEN, 7) is OK and move(s, GIVEN, 7) is OK
    assert type(move(s, GIVEN, 8)) is Error  # given to another chain is not a repeat
    assert s.table.peer(S) == 7


def test_a_slot_holding_keys_cannot_be_disowned():
    s = KVState()
    s.apply((SET, K, b"v", None, 0), TS)
    assert type(move(s, NONE)) is Error and s.table.state(S) == OWNED
    assert move(s, NONE, first=S + 1, last=S + 1) is OK


def test_import_needs_an_importing_slot_and_writes_values_of_every_type():
    s = KVState()
    items = ((K, pack(b"v"), None), (b"{s}h", pack({b"f": b"1"}), TS + 10_000), (b"{s}l", pack(deque([b"a", b"b"])), None))
    assert type(s.apply((IMPORT, S, items), TS)) is Error and not s.data
    move(s, FROZEN), move(s, GIVEN, 2), move(s, IMPORTING, 2)
    assert s.apply((IMPORT, S, items), TS) == 3
    assert s.get(K, TS) == b"v" and s.get(b"{s}h", TS) == {b"f": b"1"} and list(s.get(b"{s}l", TS)) == [b"a", b"b"]
    assert s.expires[b"{s}h"] == TS + 10_000
    assert s.apply((IMPORT, S, ((K, None, None), (b"{s}x", pack(b"gone"), TS - 1))), TS) == 2
    assert s.get(K, TS) is None and s.get(b"{s}x", TS) is None  # deleted; already expired: not written
    assert s.slot_keys(S) == {b"{s}h", b"{s}l"}


def test_clear_drops_a_slot_only_while_nobody_here_serves_or_imports_it():
    s = KVState()
    s.apply((SET, K, b"v", None, 0), TS)
    s.apply((SET, b"other", b"v", None, 0), TS)
    assert type(s.apply((CLEAR, S), TS)) is Error and s.get(K, TS) == b"v"
    move(s, FROZEN)
    assert type(s.apply((CLEAR, S), TS)) is Error
    move(s, GIVEN, 4)
    assert s.apply((CLEAR, S), TS) == 1
    assert s.get(K, TS) is None and s.get(b"other", TS) == b"v"
    move(s, IMPORTING, 4)
    s.apply((IMPORT, S, ((K, pack(b"copied"), None),)), TS)
    reply = s.apply((CLEAR, S), TS)  # a CLEAR arriving late, during a copy
    assert reply == Error(f"ERR slot {S} is importing: only a given or unowned slot is cleared")
    assert s.get(K, TS) == b"copied"


def test_a_state_dump_carries_the_table_and_an_old_dump_owns_everything():
    s = KVState()
    move(s, FROZEN), move(s, GIVEN, 9)
    loaded = KVState.load(s.dump())
    assert loaded.table.state(S) == GIVEN and loaded.table.peer(S) == 9
    old = msgpack.packb([{b"a": b"1"}, {}, {}, {}], use_bin_type=True)  # a dump from before the table
    assert KVState.load(old).table.ranges() == [(0, 16383)]
    bad = msgpack.packb([{}, {}, {}, {}, [b"\x09" * 16384, {}]], use_bin_type=True)
    with pytest.raises(ValueError):
        KVState.load(bad)


def test_the_internal_commands_build_the_ops_and_refuse_bad_words():
    assert ops.to_op([b"CATENA.SLOTS", b"5", b"9", b"frozen"], 0) == (SLOTS, 5, 9, FROZEN, -1)
    assert ops.to_op([b"CATENA.SLOTS", b"5", b"5", b"GIVEN", b"3"], 0) == (SLOTS, 5, 5, GIVEN, 3)
    assert ops.to_op([b"CATENA.SLOTS", b"5", b"16384", b"frozen"], 0) == Error("ERR Invalid or out of range slot")
    for bad in ([b"CATENA.SLOTS", b"9", b"5", b"frozen"], [b"CATENA.SLOTS", b"5", b"5", b"given"],
                [b"CATENA.SLOTS", b"5", b"5", b"frozen", b"3"], [b"CATENA.SLOTS", b"5", b"5", b"lost"]):
        assert type(ops.to_op(bad, 0)) is Error, bad
    op = ops.to_op([b"CATENA.IMPORT", b"%d" % S, K, pack(b"v"), b"-", b"{s}j", b"", b"123"], 0)
    assert op == (IMPORT, S, ((K, pack(b"v"), None), (b"{s}j", None, 123)))
    assert ops.to_op([b"CATENA.IMPORT", b"%d" % S, b"elsewhere", pack(b"v"), b"-"], 0).message.startswith(
        "ERR key b'elsewhere' is not in slot")
    assert ops.to_op([b"CATENA.IMPORT", b"%d" % S, K, b"\xc1", b"-"], 0) == Error(
        "ERR a CATENA.IMPORT value is not a packed value")
    assert ops.to_op([b"CATENA.CLEARSLOT", b"%d" % S], 0) == (CLEAR, S)


def test_a_peer_s_slot_ops_are_shape_checked():
    assert valid_op((SLOTS, 0, 10, FROZEN, -1)) and valid_op((IMPORT, S, ((K, None, None),))) and valid_op((CLEAR, 1))
    assert not valid_op((SLOTS, 10, 0, FROZEN, -1)) and not valid_op((SLOTS, 0, 0, 9, -1))
    assert not valid_op((IMPORT, S, ((K, b"v"),))) and not valid_op((CLEAR, 16384))


def test_a_slot_dump_holds_its_live_keys_and_since_a_seq_only_what_was_written_after_it():
    from catena.chain.slot_ops import unpack
    s = KVState()
    for seq, key in ((1, K), (2, b"{s}j"), (3, b"elsewhere")):
        s.apply((SET, key, b"v%d" % seq, None, 0), TS)
        s.versions.touch((key,), seq)
    as_of, live, *words = ops.read(s, [b"CATENA.SLOTDUMP", b"%d" % S], TS)
    assert as_of == 3 and live == sorted([K, b"{s}j"])
    assert [unpack(w) if i % 3 == 1 else w for i, w in enumerate(words)] == [b"{s}j", b"v2", b"-", K, b"v1", b"-"]
    s.apply((SET, K, b"new", TS + 60_000, 0), TS)
    s.versions.touch((K,), 4)
    as_of, live, *words = ops.read(s, [b"CATENA.SLOTDUMP", b"%d" % S, b"3"], TS)
    assert as_of == 4 and live == sorted([K, b"{s}j"]) and words == [K, pack(b"new"), b"%d" % (TS + 60_000)]
    s.versions.forget(10)  # the versions no longer reach back to seq 3: every key again
    assert len(ops.read(s, [b"CATENA.SLOTDUMP", b"%d" % S, b"3"], TS)[2:]) == 6


def test_a_slot_op_under_an_older_fence_is_refused_and_changes_nothing():
    s = KVState()
    assert s.apply((SLOTS, S, S, FROZEN, -1, 5), TS) is OK
    assert s.table.fences == {S: 5}
    reply = s.apply((SLOTS, S, S, OWNED, -1, 4), TS)  # a deposed leader's UNFREEZE, arriving late
    assert reply == Error(f"ERR slot {S} was changed under fence 5: fence 4 is older")
    assert s.table.state(S) == FROZEN
    assert type(s.apply((SLOTS, S, S, OWNED, -1), TS)) is Error  # no fence is the oldest
    assert s.apply((SLOTS, S, S, GIVEN, 2, 6), TS) is OK and s.table.fences == {S: 6}
    assert s.apply((SLOTS, S, S, IMPORTING, 2, 6), TS) is OK
    assert type(s.apply((IMPORT, S, ((K, pack(b"old"), None),), 5), TS)) is Error and s.get(K, TS) is None
    assert s.apply((IMPORT, S, ((K, pack(b"new"), None),), 6), TS) == 1
    assert KVState.load(s.dump()).table.fences == {S: 6}


def test_the_commands_take_a_fence_after_their_name():
    assert ops.to_op([b"CATENA.SLOTS", b"FENCE", b"7", b"5", b"9", b"frozen"], 0) == (SLOTS, 5, 9, FROZEN, -1, 7)
    assert ops.to_op([b"CATENA.CLEARSLOT", b"fence", b"7", b"%d" % S], 0) == (CLEAR, S, 7)
    op = ops.to_op([b"CATENA.IMPORT", b"FENCE", b"3", b"%d" % S, K, b"", b"-"], 0)
    assert op == (IMPORT, S, ((K, None, None),), 3) and valid_op(op)
    for bad in ([b"CATENA.CLEARSLOT", b"FENCE", b"7"], [b"CATENA.CLEARSLOT", b"FENCE"], [b"CATENA.CLEARSLOT", b"1", b"2"],
                [b"CATENA.SLOTS", b"FENCE", b"-1", b"5", b"5", b"frozen"], [b"CATENA.SLOTS", b"FENCE", b"1", b"5"]):
        assert type(ops.to_op(bad, 0)) is Error, bad
    assert not valid_op((CLEAR, S, -1)) and not valid_op((SLOTS, 0, 0, FROZEN, -1, b"7"))
