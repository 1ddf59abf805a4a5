"""Arguments checked as Redis 7 checks them (string2ll integers, expire times, overflow), and the
head's proof that an entry encodes before it gets a seq.

The expected texts are what redis-server 7.0 answers; tests/integration/test_wedging_commands.py
asserts the same commands against a real redis-server and through a real chain.
"""

import msgpack
import pytest
from hypothesis import given, strategies as st

from catena.chain import ops, replica
from catena.chain.messages import size_bound
from catena.chain.replica import UNREPLICABLE, Replica
from catena.chain.state import INCRBY, PEXPIREAT, SET, KVState
from catena.effects import Reply
from catena.resp.codec import Error
from catena.resp.commands import parse_cursor, parse_int
from catena.view import View

NOW_MS = 1_700_000_000_000
NOT_INT = "ERR value is not an integer or out of range"


@pytest.mark.parametrize("raw,value", [
    (b"0", 0), (b"-1", -1), (b"42", 42), (b"9223372036854775807", 2**63 - 1),
    (b"-9223372036854775808", -(2**63)),
])
def test_parse_int_takes_string2ll_integers(raw, value):
    assert parse_int(raw) == value


@pytest.mark.parametrize("raw", [
    b"", b"-", b"+5", b" 5", b"5 ", b"1_0", b"05", b"00", b"-0", b"-05", b"5.0", b"0x10", b"\xd9\xa3",
    b"9223372036854775808", b"-9223372036854775809", b"99999999999999999999", b"1" * 400,
])
def test_parse_int_refuses_what_redis_refuses(raw):
    with pytest.raises(ValueError, match="value is not an integer or out of range"):
        parse_int(raw)


@pytest.mark.parametrize("raw,value", [
    (b"", 0), (b"0", 0), (b"007", 7), (b"+5", 5), (b"-1", 2**64 - 1), (b"18446744073709551615", 2**64 - 1),
])
def test_scan_cursor_is_read_like_strtoul(raw, value):
    assert parse_cursor(raw) == value


@pytest.mark.parametrize("raw", [b" 5", b"+", b"-", b"5x", b"18446744073709551616", b"1_0"])
def test_scan_cursor_refusals(raw):
    with pytest.raises(ValueError, match="invalid cursor"):
        parse_cursor(raw)


def op(*words):
    return ops.to_op([w if isinstance(w, bytes) else str(w).encode() for w in words], NOW_MS)


WEDGING = [  # commands that used to pass validation and wedge the chain
    (("EXPIRE", "k", "9223372036854775807"), "ERR invalid expire time in 'expire' command"),
    (("EXPIRE", "k", "-9223372036854775808"), "ERR invalid expire time in 'expire' command"),
    (("PEXPIREAT", "k", "99999999999999999999"), NOT_INT),
    (("SET", "k", "v", "EX", "9223372036854775807"), "ERR invalid expire time in 'set' command"),
    (("INCRBY", "k", "99999999999999999999"), NOT_INT),
    (("DECRBY", "k", "-9223372036854775808"), "ERR decrement would overflow"),
    (("SETEX", "k", "9223372036854775807", "v"), "ERR invalid expire time in 'setex' command"),
]


@pytest.mark.parametrize("words,error", WEDGING, ids=[" ".join(w) for w, _ in WEDGING])
def test_wedging_commands_get_redis_errors(words, error):
    assert op(*words) == Error(error)


@pytest.mark.parametrize("words,error", [
    (("SET", "k", "v", "EX", "0"), "ERR invalid expire time in 'set' command"),
    (("SET", "k", "v", "PX", "-5"), "ERR invalid expire time in 'set' command"),
    (("SET", "k", "v", "EXAT", "0"), "ERR invalid expire time in 'set' command"),
    (("SET", "k", "v", "EX", "9223372036854775"), "ERR invalid expire time in 'set' command"),  # + now overflows
    (("SET", "k", "v", "PX", "9223372036854775807"), "ERR invalid expire time in 'set' command"),
    (("SET", "k", "v", "EX", " 5"), NOT_INT),
    (("SET", "k", "v", "EX", "-1", "BAD"), "ERR syntax error"),  # options first, as Redis
    (("SET", "k", "v", "EX"), "ERR syntax error"),
    (("SET", "k", "v", "NX", "XX"), "ERR syntax error"),
    (("SET", "k", "v", "EX", "5", "PX", "5"), "ERR syntax error"),
    (("SET", "k", "v", "KEEPTTL", "EX", "5"), "ERR syntax error"),
    (("PSETEX", "k", "0", "v"), "ERR invalid expire time in 'psetex' command"),
    (("EXPIREAT", "k", "9223372036854776"), "ERR invalid expire time in 'expireat' command"),
    (("PEXPIRE", "k", "9223372036854775807"), "ERR invalid expire time in 'pexpire' command"),
    (("INCRBY", "k", "+5"), NOT_INT),
    (("DECRBY", "k", "1_0"), NOT_INT),
])
def test_more_refusals(words, error):
    assert op(*words) == Error(error)


@pytest.mark.parametrize("words,expected", [
    (("SET", "k", "v", "EX", "abc", "EX", "10"), (SET, b"k", b"v", NOW_MS + 10_000, 0)),  # the last one wins
    (("SET", "k", "v", "PXAT", "9223372036854775807"), (SET, b"k", b"v", 2**63 - 1, 0)),
    (("EXPIRE", "k", "-9223372036854775"), (PEXPIREAT, b"k", NOW_MS - 9223372036854775000)),
    (("PEXPIRE", "k", "-9223372036854775808"), (PEXPIREAT, b"k", NOW_MS - 2**63)),
    (("PEXPIREAT", "k", "9223372036854775807"), (PEXPIREAT, b"k", 2**63 - 1)),
    (("DECRBY", "k", "9223372036854775807"), (INCRBY, b"k", -(2**63 - 1))),
])
def test_extremes_redis_accepts(words, expected):
    assert op(*words) == expected


def test_expire_in_the_past_deletes_the_key():
    state = KVState()
    state.apply((SET, b"k", b"v", None, 0), NOW_MS)
    assert state.apply(op("PEXPIRE", "k", "-9223372036854775808"), NOW_MS) == 1
    assert b"k" not in state.data


def test_incr_reads_the_stored_value_strictly():
    state = KVState()
    state.apply((SET, b"n", b" 5", None, 0), NOW_MS)
    assert state.apply(op("INCR", "n"), NOW_MS) == Error(NOT_INT)
    state.apply((SET, b"n", b"9223372036854775807", None, 0), NOW_MS)
    assert state.apply(op("INCR", "n"), NOW_MS) == Error("ERR increment or decrement would overflow")


@pytest.mark.parametrize("words,error", [
    (("CATENA.REQ", "c", "99999999999999999999", "SET", "k", "v"), ops._BAD_REQUEST_NO),
    (("CATENA.REQ", "c", "1", "99999999999999999999", "SET", "k", "v"), ops._BAD_REQUEST_NO),
    (("CATENA.REQ", "c", "-1", "SET", "k", "v"), ops._BAD_REQUEST_NO),
    (("CATENA.REQ", "c", "1", "2"), Error("ERR wrong number of arguments for 'catena.req' command")),
])
def test_request_numbers_are_int64(words, error):
    assert ops.request([w.encode() for w in words]) == error


def test_request_parses_the_watermark():
    assert ops.request([b"CATENA.REQ", b"c", b"7", b"5", b"SET", b"k", b"v"]) == ((b"c", 7, 5), [b"SET", b"k", b"v"])
    assert ops.request([b"CATENA.REQ", b"c", b"7", b"DEL", b"k"]) == ((b"c", 7, 0), [b"DEL", b"k"])


@pytest.mark.parametrize("obj", [
    (None, (SET, b"k", b"v", 2**63 - 1, 0)), ((b"c", 2**64 - 1, 0), (INCRBY, b"", -(2**63))), (True, b""), (),
])
def test_size_bound_is_an_upper_bound_of_what_msgpack_makes(obj):
    assert 0 <= len(msgpack.packb(obj, use_bin_type=True)) <= size_bound(obj)


@pytest.mark.parametrize("obj", [
    (None, (INCRBY, b"k", 2**64)), ((b"c", -(2**63) - 1, 0), (SET, b"k", b"v", None, 0)), ("text",), [1], 1.5,
])
def test_size_bound_refuses_what_msgpack_cannot_encode_or_we_never_send(obj):
    assert size_bound(obj) == -1


def test_the_head_refuses_an_op_it_cannot_encode_and_changes_nothing(monkeypatch):
    head = Replica("a:1", b"a/1")
    head.on_view(View(0, 1, ("a:1", "b:2")), 1.0)
    head.flush()
    before = (head.last_seq, len(head.window), head.state.dump())
    monkeypatch.setattr(ops, "to_op", lambda args, now_ms, name=None: (INCRBY, b"k", 2**64))  # a validation gap
    assert head.on_client("t", [b"INCRBY", b"k", b"1"], 2.0) == [Reply("t", UNREPLICABLE)]
    assert head.flush() == []
    assert (head.last_seq, len(head.window), head.state.dump()) == before
    monkeypatch.setattr(replica, "MAX_ENTRY", 100)  # an entry larger than one frame or log record
    monkeypatch.setattr(ops, "to_op", lambda args, now_ms, name=None: (SET, b"k", b"v" * 100, None, 0))
    assert head.on_client("t", [b"SET", b"k", b"v"], 2.0) == [Reply("t", UNREPLICABLE)]
    assert head.last_seq == before[0]
    monkeypatch.setattr(ops, "to_op", lambda args, now_ms, name=None: (SET, b"k", b"v" * 50, None, 0))
    assert head.on_client("t", [b"SET", b"k", b"v"], 2.0) == []  # under the bound: assigned
    assert head.last_seq == before[0] + 1


leaves = st.one_of(st.none(), st.booleans(), st.integers(-(2**65), 2**65), st.binary(max_size=300),
                   st.text(max_size=3), st.floats(allow_nan=False))
structures = st.recursive(leaves, lambda inner: st.one_of(st.lists(inner, max_size=5).map(tuple),
                                                          st.lists(inner, max_size=2)), max_leaves=12)


@given(structures)
def test_size_bound_agrees_with_msgpack(obj):
    """A bound >= 0 means msgpack encodes it in at most that many bytes; anything msgpack cannot
    encode has no bound (and some things it can, a str or a list, are not what entries hold)."""
    bound = size_bound(obj)
    try:
        size = len(msgpack.packb(obj, use_bin_type=True))
    except (OverflowError, ValueError, TypeError):
        assert bound == -1
        return
    assert bound == -1 or size <= bound


def test_setnx_answers_1_or_0_as_redis():
    state = KVState()
    assert state.apply(op("SETNX", "k", "a"), NOW_MS) == 1
    assert state.apply(op("SETNX", "k", "b"), NOW_MS) == 0
    assert state.data[b"k"] == b"a"


@pytest.mark.parametrize("words,error", [
    (("EXPIRE", "k", "10", "BAD"), "ERR Unsupported option BAD"),
    (("EXPIRE", "k", "abc", "BAD"), "ERR Unsupported option BAD"),  # options first, as Redis
    (("EXPIRE", "k", "10", "NX", "XX"), "ERR NX and XX, GT or LT options at the same time are not compatible"),
    (("PEXPIRE", "k", "10", "nx", "gt"), "ERR NX and XX, GT or LT options at the same time are not compatible"),
    (("EXPIREAT", "k", "10", "GT", "LT"), "ERR GT and LT options at the same time are not compatible"),
    (("EXPIRE", "k", "abc", "NX"), NOT_INT),
])
def test_expire_option_errors(words, error):
    assert op(*words) == Error(error)


@pytest.mark.parametrize("current,option,seconds,applied", [
    (None, "NX", 10, True), (100, "NX", 10, False), (None, "XX", 10, False), (100, "XX", 10, True),
    (None, "GT", 10, False), (100, "GT", 200, True), (100, "GT", 100, False), (100, "GT", 50, False),
    (None, "LT", 10, True), (100, "LT", 50, True), (100, "LT", 100, False), (100, "LT", 200, False),
    (100, "XX", -1, True),  # past: the key is deleted
])
def test_expire_options_as_redis(current, option, seconds, applied):
    state = KVState()
    pxat = None if current is None else NOW_MS + current * 1000
    state.apply((SET, b"k", b"v", pxat, 0), NOW_MS)
    assert state.apply(op("EXPIRE", "k", str(seconds), option), NOW_MS) == int(applied)
    if not applied:
        assert state.expires.get(b"k") == pxat
    elif seconds < 0:
        assert b"k" not in state.data
    else:
        assert state.expires[b"k"] == NOW_MS + seconds * 1000
    assert state.apply(op("EXPIRE", "missing", "10", option), NOW_MS) == 0
