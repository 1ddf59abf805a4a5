"""More string and keyspace commands (catena.chain.strings, string_reads, glob): Redis 7.0's replies
and checks in its order, TTLs kept or dropped as Redis does, ops as peers may send them, glob
patterns as stringmatchlen, and FLUSHALL through the chain one slice per head turn."""

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from test_big_del import SLICE, _load, _turns_until
from test_replica import chain3

from catena.chain import strings
from catena.chain.glob import matcher
from catena.chain.state import KVState, op_keys, valid_op
from catena.effects import Persist
from catena.resp.codec import OK, Error, Status
from catena.fuzz_chain import MEMBERS
from test_types import NOW, WRONGTYPE, ends_identical, run

NOT_INT = Error("ERR value is not an integer or out of range")


@pytest.fixture
def s():
    return KVState()


def test_getex_getdel_incrbyfloat_append_setrange(s):
    run(s, "SET", "k", "v", "EX", "100")
    assert run(s, "GETEX", "k") == b"v" and run(s, "TTL", "k") == 100
    assert run(s, "GETEX", "k", "PX", "5000") == b"v" and run(s, "PTTL", "k") == 5000
    assert run(s, "GETEX", "k", "PERSIST") == b"v" and run(s, "TTL", "k") == -1
    assert run(s, "GETEX", "k", "EX", "1", "PX", "1") == Error("ERR syntax error")
    assert run(s, "GETEX", "no", "EX", "x") is None, "Redis finds the key before it reads the time"
    assert run(s, "GETEX", "k", "EX", "x") == NOT_INT
    assert run(s, "GETEX", "k", "EX", "0") == Error("ERR invalid expire time in 'getex' command")
    assert run(s, "GETEX", "k", "PXAT", str(NOW - 1)) == b"v" and run(s, "EXISTS", "k") == 0, "a past deadline"
    run(s, "SET", "k", "v")
    assert run(s, "GETDEL", "k") == b"v" and run(s, "GETDEL", "k") is None
    run(s, "SET", "f", "10.5", "EX", "100")
    assert run(s, "INCRBYFLOAT", "f", "0.1") == b"10.6" and run(s, "TTL", "f") == 100, "the TTL stays"
    assert run(s, "INCRBYFLOAT", "f", "x") == Error("ERR value is not a valid float")
    assert run(s, "INCRBYFLOAT", "f", "inf") == Error("ERR increment would produce NaN or Infinity")
    assert run(s, "APPEND", "f", "!") == 5 and run(s, "GET", "f") == b"10.6!"
    assert run(s, "SETRANGE", "r", "3", "ab") == 5 and run(s, "GET", "r") == b"\0\0\0ab"
    assert run(s, "SETRANGE", "r", "1", "") == 5 and run(s, "SETRANGE", "none", "9", "") == 0
    assert run(s, "SETRANGE", "r", "-1", "x") == Error("ERR offset is out of range")
    assert run(s, "SETRANGE", "r", str(512 * 1024 * 1024), "x") == Error(
        "ERR string exceeds maximum allowed size (proto-max-bulk-len)")
    assert run(s, "GETRANGE", "f", "1", "-2") == b"0.6" and run(s, "SUBSTR", "f", "-100", "0") == b"1"
    assert run(s, "GETRANGE", "f", "-1", "-5") == b"" and run(s, "GETRANGE", "no", "0", "1") == b""


def test_bits(s):
    assert run(s, "SETBIT", "b", "7", "1") == 0 and run(s, "SETBIT", "b", "7", "1") == 1
    assert run(s, "GET", "b") == b"\x01" and run(s, "GETBIT", "b", "7") == 1 and run(s, "GETBIT", "b", "99") == 0
    assert run(s, "SETBIT", "b", "x", "1") == Error("ERR bit offset is not an integer or out of range")
    assert run(s, "SETBIT", "b", "1", "2") == Error("ERR bit is not an integer or out of range")
    run(s, "SET", "f", b"\xff\xf0\x00")
    assert run(s, "BITCOUNT", "f") == 12 and run(s, "BITCOUNT", "f", "1", "1") == 4
    assert run(s, "BITCOUNT", "f", "5", "30", "BIT") == 7 and run(s, "BITCOUNT", "no", "1", "2", "BAD") == 0
    assert run(s, "BITCOUNT", "f", "0") == Error("ERR syntax error")
    assert run(s, "BITPOS", "f", "0") == 12 and run(s, "BITPOS", "f", "1", "2") == -1
    assert run(s, "BITPOS", "f", "0", "0", "0") == -1, "an end given: no clear bit in the range"
    run(s, "SET", "ones", b"\xff")
    assert run(s, "BITPOS", "ones", "0") == 8 and run(s, "BITPOS", "no", "0") == 0 and run(s, "BITPOS", "no", "1") == -1
    assert run(s, "BITPOS", "f", "1", "4", "-1", "BIT") == 4
    assert run(s, "BITPOS", "f", "2") == Error("ERR The bit argument must be 1 or 0.")
    run(s, "SET", "x", b"\x0f")
    assert run(s, "BITOP", "AND", "d", "f", "x") == 3 and run(s, "GET", "d") == b"\x0f\x00\x00"
    assert run(s, "BITOP", "NOT", "d", "x") == 1 and run(s, "GET", "d") == b"\xf0"
    assert run(s, "BITOP", "NOT", "d", "x", "f") == Error("ERR BITOP NOT must be called with a single source key.")
    assert run(s, "BITOP", "OR", "d", "no") == 0 and run(s, "EXISTS", "d") == 0


def test_msetnx_lcs_rename_copy(s):
    assert run(s, "MSETNX", "a", "1", "b", "2") == 1 and run(s, "MSETNX", "b", "3", "c", "4") == 0
    assert run(s, "MSETNX", "a") == Error("ERR wrong number of arguments for 'msetnx' command")
    run(s, "SET", "x", "ohmytext")
    run(s, "SET", "y", "mynewtext")
    assert run(s, "LCS", "x", "y") == b"mytext" and run(s, "LCS", "x", "y", "LEN") == 6
    assert run(s, "LCS", "x", "y", "IDX", "MINMATCHLEN", "4", "WITHMATCHLEN") == [
        b"matches", [[[4, 7], [5, 8], 4]], b"len", 6]
    assert run(s, "LCS", "x", "y", "IDX", "LEN") == Error(
        "ERR If you want both the length and indexes, please just use IDX.")
    run(s, "RPUSH", "l", "e")
    assert run(s, "LCS", "x", "l") == Error("ERR The specified keys must contain string values")
    run(s, "EXPIRE", "l", "100")
    assert run(s, "RENAME", "l", "m") == OK and run(s, "TTL", "m") == 100 and run(s, "TYPE", "m") == Status("list")
    assert run(s, "RENAME", "no", "m") == Error("ERR no such key") and run(s, "RENAMENX", "m", "a") == 0
    assert run(s, "RENAMENX", "m", "m") == 0 and run(s, "RENAME", "m", "m") == OK
    assert run(s, "COPY", "m", "n") == 1 and run(s, "TTL", "n") == 100 and run(s, "COPY", "m", "n") == 0
    assert run(s, "RPUSH", "n", "f") == 2 and run(s, "LLEN", "m") == 1, "a copy, not the same list"
    assert run(s, "COPY", "m", "m") == Error("ERR source and destination objects are the same")
    assert run(s, "COPY", "m", "a", "DB", "1") == Error("ERR DB index is out of range")
    assert run(s, "COPY", "m", "a", "REPLACE") == 1 and run(s, "TYPE", "a") == Status("list")
    run(s, "ZADD", "z", "1", "q")
    assert run(s, "COPY", "z", "z2") == 1 and run(s, "ZINCRBY", "z2", "1", "q") == b"2" and run(s, "ZSCORE", "z", "q") == b"1"


def test_keyspace_reads(s):
    assert run(s, "RANDOMKEY") is None
    run(s, "SET", "k", "v", "PXAT", str(NOW + 100_500))
    assert run(s, "RANDOMKEY") == b"k"
    assert run(s, "EXPIRETIME", "k") == NOW // 1000 + 101 and run(s, "PEXPIRETIME", "k") == NOW + 100_500
    assert run(s, "EXPIRETIME", "no") == -2 and run(s, "SET", "p", "v") == OK and run(s, "PEXPIRETIME", "p") == -1
    assert run(s, "TIME") == [b"%d" % (NOW // 1000), b"%d" % (NOW % 1000 * 1000)]
    for cmd in (("APPEND", "z", "x"), ("GETEX", "z"), ("INCRBYFLOAT", "z", "1"), ("SETBIT", "z", "1", "1")):
        run(s, "RPUSH", "z", "e")
        assert run(s, *cmd) == WRONGTYPE, cmd


def test_glob_patterns_match_as_redis():
    assert not matcher(b"h[^e]llo")(b"hello") and matcher(b"h[^e]llo")(b"hallo")
    assert matcher(b"a\\*b")(b"a*b") and not matcher(b"a\\*b")(b"axb")
    assert matcher(b"[z-a]")(b"q") and matcher(b"[a-")(b"-") and not matcher(b"[]")(b"]")
    assert not matcher(b"**")(b"") and matcher(b"*") is None and matcher(b"")(b"")
    assert matcher(b"k?[0-9]\\")(b"kx5\\")


def test_ops_are_validated_and_name_their_keys():
    good = [(strings.GETEX, b"k", strings.DEADLINE, 5), (strings.FLUSH, ()), (strings.FLUSH, (b"a", b"b")),
            (strings.RENAME, b"a", b"b", 1), (strings.MSETNX, (b"a", b"1")), (strings.SETBIT, b"k", 7, 1)]
    assert all(valid_op(op) for op in good)
    bad = [(strings.GETEX, b"k", 9, None), (strings.FLUSH, None), (strings.SETBIT, b"k", -1, 1), (strings.SETRANGE, b"k", -1, b"x"),
           (strings.BITOP, b"d", 4, (b"a",)), (strings.MSETNX, (b"a",)), (strings.COPY, b"a", b"b", 2)]
    assert not any(valid_op(op) for op in bad)
    assert op_keys((strings.RENAME, b"a", b"b", 0)) == (b"a", b"b") and op_keys((strings.COPY, b"a", b"b", 0)) == (b"b",)


def test_flushall_goes_through_the_chain_one_slice_per_turn():
    c = chain3()
    n = 2 * SLICE + 5
    _load(c, n)
    c.run("a", c.r["a"].on_client("flush", [b"FLUSHALL", b"ASYNC"], c.now))
    head, flush, per_turn = c.r["a"], c.r["a"].flush, []

    def counting_flush():
        fx = flush()
        per_turn.append(sum(1 for f in fx if type(f) is Persist for e in f.entries if e[4][0] == strings.FLUSH))
        return fx

    head.flush = counting_flush
    _turns_until(c, lambda: "flush" in c.replies)
    assert c.replies["flush"] == OK and max(per_turn) == 1 and sum(per_turn) == 3
    assert all(not r.state.data for r in c.r.values())
    assert run(KVState(), "FLUSHDB", "LAZY") == Error("ERR syntax error")


KEY = st.sampled_from([b"a", b"b"])
string_commands = st.one_of(
    st.builds(lambda k, v: [b"APPEND", k, v], KEY, st.sampled_from([b"x", b"1.5", b""])),
    st.builds(lambda k: [b"INCRBYFLOAT", k, b"0.1"], KEY),
    st.builds(lambda k, o: [b"SETBIT", k, o, b"1"], KEY, st.sampled_from([b"0", b"9", b"30"])),
    st.builds(lambda k, o: [b"SETRANGE", k, o, b"zz"], KEY, st.sampled_from([b"0", b"3"])),
    st.builds(lambda k, m: [b"GETEX", k, *m], KEY, st.sampled_from([[], [b"PX", b"10"], [b"PERSIST"]])),
    st.builds(lambda k: [b"GETDEL", k], KEY),
    st.builds(lambda c, a, b: [c, a, b], st.sampled_from([b"RENAME", b"RENAMENX", b"COPY"]), KEY, KEY),
    st.builds(lambda h, d, a: [b"BITOP", h, d, a], st.sampled_from([b"AND", b"XOR", b"NOT"]), KEY, KEY),
    st.builds(lambda a, b: [b"MSETNX", a, b"1", b, b"2"], KEY, KEY),
    st.builds(lambda k: [b"RPUSH", k, b"e"], KEY),
    st.just([b"FLUSHALL"]),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(MEMBERS), string_commands), min_size=1, max_size=25))
def test_every_member_ends_with_the_same_strings(sent):
    ends_identical(sent)


def test_lcs_beyond_its_limit_is_refused_not_computed(s):
    run(s, "SET", "x", "a" * 400)
    run(s, "SET", "y", "a" * 400)
    assert run(s, "LCS", "x", "y") == Error(
        "ERR catena computes LCS of strings whose lengths plus one multiply to at most 120000")
    assert run(s, "LCS", "x", "no", "LEN") == 0, "an empty string: nothing to compute"
