"""A moved slot takes along the requests that wrote it (KVState.requests_of_slot / adopt, the
REQUESTS part of CATENA.SLOTDUMP and CATENA.IMPORT): a client whose write was applied by the
old chain, and who retries it at the new one after a MOVED, gets the first reply; nothing is
applied twice."""

from __future__ import annotations

import msgpack

from catena.chain import ops
from catena.chain.replica import Replica
from catena.chain.slot_ops import IMPORT, SLOTS, pack
from catena.chain.slot_table import FROZEN, IMPORTING
from catena.chain.state import KVState, valid_op
from catena.effects import Reply
from catena.resp.codec import Error
from catena.slots import key_slot
from catena.view import View

TS = 1_000_000
K, OTHER = b"{s}counter", b"elsewhere"
S = key_slot(K)
NOW = 1000.0


def one_member(me: str) -> Replica:
    r = Replica(me, me.encode() + b"/1")
    r.on_view(View(0, 1, (me,), None), NOW)
    return r


def call(r: Replica, *words: bytes):
    token = object()
    fx = r.on_client(token, list(words), NOW) + r.flush()
    return next(f.value for f in fx if type(f) is Reply and f.token is token)


def moved(source: Replica, target: Replica) -> None:
    """The data steps of a move (docs/sharding.md), as the coordinator's mover sends them."""
    call(source, b"CATENA.SLOTS", b"%d" % S, b"%d" % S, b"frozen")
    as_of, live, *words = call(source, b"CATENA.SLOTDUMP", b"%d" % S)
    assert call(target, b"CATENA.IMPORT", b"%d" % S, *words) == len(live)


def test_a_retried_write_is_answered_by_the_chain_its_slot_moved_to_not_applied_again():
    a, b = one_member("a"), one_member("b")
    assert call(a, b"CATENA.REQ", b"cl", b"7", b"INCRBY", K, b"5") == 5
    assert call(a, b"CATENA.REQ", b"cl", b"8", b"INCRBY", OTHER, b"1") == 1  # another slot: stays
    call(b, b"CATENA.SLOTS", b"0", b"16383", b"frozen")
    call(b, b"CATENA.SLOTS", b"0", b"16383", b"given", b"0")
    call(b, b"CATENA.SLOTS", b"%d" % S, b"%d" % S, b"importing", b"0")
    moved(a, b)
    assert b.state.table.states[S] == IMPORTING
    call(b, b"CATENA.SLOTS", b"%d" % S, b"%d" % S, b"owned")
    assert call(b, b"CATENA.REQ", b"cl", b"7", b"INCRBY", K, b"5") == 5  # the first reply, again
    assert call(b, b"GET", K) == b"5"  # applied once
    assert b.state.seen((b"cl", 8)) is None  # the other slot's request stayed where it was
    assert call(b, b"CATENA.REQ", b"cl", b"9", b"INCRBY", K, b"5") == 10  # a new request applies


def test_a_slot_dump_carries_only_its_slot_s_requests_and_import_adopts_them_once():
    s = KVState()
    s.remember((b"cl", 1), 1, 5, K)
    s.remember((b"cl", 2), 2, 1, OTHER)
    s.remember((b"other", 4, 3), 3, Error("ERR no"), b"{s}j")
    s.remember((b"keyless", 1), 4, b"OK")  # FLUSHALL and the like: stays with no slot
    records = s.requests_of_slot(S)
    assert sorted(r[:2] for r in records) == [[b"cl", 1], [b"other", 4]]
    _, _, *words = ops.read(s, [b"CATENA.SLOTDUMP", b"%d" % S], TS)
    assert words[0] == b"REQUESTS"
    t = KVState()
    t.apply((SLOTS, S, S, FROZEN, -1), TS)
    t.table.states[S] = IMPORTING
    op = ops.to_op([b"CATENA.IMPORT", b"%d" % S, *words], 0)
    assert valid_op(op) and len(op) == 5
    assert t.apply(op, TS) == 0  # no keys, two requests
    assert t.seen((b"cl", 1))[1:] == (5, K) and t.seen((b"other", 4))[1] == Error("ERR no")
    assert t.floors[b"other"] == 3  # the client's watermark came along
    t.remember((b"cl", 1), 9, b"newer", K)
    t.apply(op, TS)  # a repeated import keeps what this chain knows
    assert t.seen((b"cl", 1))[:2] == (9, b"newer")


def test_an_import_with_a_forged_or_misplaced_requests_part_is_refused():
    good = [[b"cl", 1, [b"=", 5], K, 0]]
    base = [b"CATENA.IMPORT", b"%d" % S, b"REQUESTS"]
    assert type(ops.to_op([*base, pack(good)], 0)) is tuple
    for bad in (b"\xc1", pack([[b"cl", b"1", [b"=", 5], K, 0]]), pack([[b"cl", 1, [b"?", 5], K, 0]]),
                pack([[b"cl", 1, [b"=", 5], OTHER, 0]]), pack("not a list")):
        assert type(ops.to_op([*base, bad], 0)) is Error, bad
    assert not valid_op((IMPORT, S, (), 0, ((b"cl", 1, (b"?", 5), K, 0),)))
    fenced = ops.to_op([b"CATENA.IMPORT", b"FENCE", b"4", b"%d" % S, b"REQUESTS", pack(good), K, b"", b"-"], 0)
    assert fenced[3] == 4 and valid_op(fenced)  # the fence in its place, the requests after it


def test_records_from_before_keys_were_kept_still_load():
    old = msgpack.packb([{}, {}, {b"cl": [[3, 1, [b"=", 5]]]}, {}], use_bin_type=True)
    assert KVState.load(old).seen((b"cl", 3)) == (1, 5, None)
