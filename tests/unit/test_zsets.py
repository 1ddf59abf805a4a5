"""Sorted sets (catena.chain.zset, catena.chain.zsets): Redis 7.0's replies, scores read and
printed as Redis does, ranges by rank, score and lex, the set algebra, WRONGTYPE, ops as peers may
send them, snapshots (ext 3), O(log n) rank, and every member identical."""

import time

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from catena.chain import zsets
from catena.chain.state import KVState, op_keys, valid_op
from catena.chain.zset import ZSet, format_score, packed, parse_bound, parse_score
from catena.fuzz_chain import MEMBERS
from catena.resp.codec import NULL_ARRAY, Error, Status
from test_types import WRONGTYPE, ends_identical, run

SYNTAX = Error("ERR syntax error")


@pytest.fixture
def s():
    return KVState()


def test_scores_parse_and_print_as_redis():
    assert [parse_score(w) for w in (b"1.5", b"-inf", b"+Infinity", b"0x10", b"1e3", b".5", b"5.")] == [
        1.5, float("-inf"), float("inf"), 16.0, 1000.0, 0.5, 5.0]
    assert all(parse_score(w) is None for w in (b"nan", b" 1", b"1 ", b"", b"1e400", b"1e-400", b"1_0", b"0x",
                                                   b"1\x00", b"abc"))
    assert parse_score(b"5e-324") == 5e-324, "a denormal is a number (only underflow to zero is refused)"
    assert parse_bound(b"") == 0.0 and parse_bound(b" 1") == 1.0 and parse_bound(b"1e400") == float("inf")
    assert parse_bound(b"1\x00junk") == 1.0 and parse_bound(b"1 ") is None and parse_bound(b" ") is None
    assert [format_score(x) for x in (1.1, 0.1 + 0.2, 1e308, float("inf"), 16.0, 2.5e-5)] == [
        b"1.1000000000000001", b"0.30000000000000004", b"1e+308", b"inf", b"16", b"2.5000000000000001e-05"]


def test_zadd_options_and_replies(s):
    assert run(s, "ZADD", "z", "1", "a", "2", "b") == 2 and run(s, "ZADD", "z", "CH", "5", "a", "3", "c") == 2
    assert run(s, "ZADD", "z", "NX", "9", "a", "4", "d") == 1 and run(s, "ZSCORE", "z", "a") == b"5"
    assert run(s, "ZADD", "z", "XX", "9", "a", "4", "e") == 0 and run(s, "ZSCORE", "z", "e") is None
    assert run(s, "ZADD", "z", "GT", "CH", "1", "a", "10", "b") == 1 and run(s, "ZSCORE", "z", "a") == b"9"
    assert run(s, "ZADD", "z", "LT", "CH", "1", "a", "10", "c") == 1 and run(s, "ZSCORE", "z", "a") == b"1"
    assert run(s, "ZADD", "z", "INCR", "2.5", "a") == b"3.5" and run(s, "ZINCRBY", "z", "-0.5", "a") == b"3"
    assert run(s, "ZADD", "z", "NX", "INCR", "1", "a") is None and run(s, "ZADD", "no", "XX", "INCR", "1", "a") is None
    assert run(s, "ZADD", "z", "NX", "XX", "1", "a") == Error("ERR XX and NX options at the same time are not compatible")
    assert run(s, "ZADD", "z", "GT", "LT", "1", "a") == Error(
        "ERR GT, LT, and/or NX options at the same time are not compatible")
    assert run(s, "ZADD", "z", "INCR", "1", "a", "2", "b") == Error(
        "ERR INCR option supports a single increment-element pair")
    assert run(s, "ZADD", "z", "1", "a", "2") == SYNTAX and run(s, "ZADD", "z", "x", "a") == Error(
        "ERR value is not a valid float")
    run(s, "ZADD", "inf", "inf", "a")
    assert run(s, "ZINCRBY", "inf", "-inf", "a") == Error("ERR resulting score is not a number (NaN)")
    assert run(s, "ZADD", "no", "XX", "1", "a") == 0 and run(s, "EXISTS", "no") == 0
    assert run(s, "ZCARD", "z") == 4 and run(s, "ZREM", "z", "a", "zz") == 1 and run(s, "ZCARD", "no") == 0
    assert run(s, "ZMSCORE", "z", "b", "zz") == [b"10", None]


def test_ranges_by_rank_score_and_lex(s):
    run(s, "ZADD", "z", "1", "a", "2", "b", "3", "c", "4", "d")
    assert run(s, "ZRANGE", "z", "0", "-1") == [b"a", b"b", b"c", b"d"]
    assert run(s, "ZRANGE", "z", "0", "1", "REV", "WITHSCORES") == [b"d", b"4", b"c", b"3"]
    assert run(s, "ZREVRANGE", "z", "-2", "-1") == [b"b", b"a"]
    assert run(s, "ZRANGE", "z", "(1", "3", "BYSCORE") == [b"b", b"c"]
    assert run(s, "ZRANGE", "z", "+inf", "(1", "BYSCORE", "REV", "LIMIT", "1", "2") == [b"c", b"b"]
    assert run(s, "ZRANGEBYSCORE", "z", "-inf", "+inf", "LIMIT", "-1", "2") == [], "a negative offset: nothing"
    assert run(s, "ZRANGEBYSCORE", "z", "2", "3", "WITHSCORES") == [b"b", b"2", b"c", b"3"]
    assert run(s, "ZREVRANGEBYSCORE", "z", "3", "2") == [b"c", b"b"]
    assert run(s, "ZRANGE", "z", "0", "1", "LIMIT", "0", "1") == Error(
        "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX")
    assert run(s, "ZRANGE", "z", "a", "b", "BYLEX", "WITHSCORES") == Error(
        "ERR syntax error, WITHSCORES not supported in combination with BYLEX")
    assert run(s, "ZRANGEBYSCORE", "z", "x", "1") == Error("ERR min or max is not a float")
    assert run(s, "ZRANGEBYSCORE", "z", "1", "2", "REV") == SYNTAX, "the older forms fix the direction"
    run(s, "ZADD", "lex", "0", "a", "0", "b", "0", "c", "0", "d")
    assert run(s, "ZRANGEBYLEX", "lex", "(a", "[c") == [b"b", b"c"] and run(s, "ZRANGEBYLEX", "lex", "-", "(b") == [b"a"]
    assert run(s, "ZREVRANGEBYLEX", "lex", "+", "[b", "LIMIT", "1", "1") == [b"c"]
    assert run(s, "ZRANGEBYLEX", "lex", "+", "-") == [] and run(s, "ZLEXCOUNT", "lex", "[b", "+") == 3
    assert run(s, "ZRANGEBYLEX", "lex", "a", "c") == Error("ERR min or max not valid string range item")
    assert run(s, "ZCOUNT", "z", "(1", "4") == 3 and run(s, "ZCOUNT", "no", "0", "1") == 0
    assert run(s, "ZRANK", "z", "c") == 2 and run(s, "ZREVRANK", "z", "c") == 1 and run(s, "ZRANK", "z", "x") is None


def test_pops_removals_and_stores(s):
    run(s, "ZADD", "z", "1", "a", "2", "b", "3", "c", "4", "d", "5", "e")
    assert run(s, "ZPOPMIN", "z") == [b"a", b"1"] and run(s, "ZPOPMAX", "z", "2") == [b"e", b"5", b"d", b"4"]
    assert run(s, "ZPOPMIN", "z", "-1") == Error("ERR value is out of range, must be positive")
    assert run(s, "ZPOPMIN", "z", "1", "2") == SYNTAX and run(s, "ZPOPMIN", "no", "3") == []
    assert run(s, "ZMPOP", "2", "no", "z", "MAX", "COUNT", "9") == [b"z", [[b"c", b"3"], [b"b", b"2"]]]
    assert run(s, "EXISTS", "z") == 0 and run(s, "ZMPOP", "1", "z", "MIN") is NULL_ARRAY
    run(s, "ZADD", "z", "1", "a", "2", "b", "3", "c", "4", "d", "5", "e")
    assert run(s, "ZREMRANGEBYRANK", "z", "0", "0") == 1 and run(s, "ZREMRANGEBYSCORE", "z", "(4", "+inf") == 1
    assert run(s, "ZREMRANGEBYLEX", "z", "x", "y") == Error("ERR min or max not valid string range item")
    assert run(s, "ZRANGE", "z", "0", "-1") == [b"b", b"c", b"d"]
    run(s, "ZADD", "y", "10", "c", "20", "x")
    run(s, "SADD", "set", "c", "q")
    assert run(s, "ZUNION", "2", "z", "y", "WITHSCORES") == [b"b", b"2", b"d", b"4", b"c", b"13", b"x", b"20"]
    assert run(s, "ZINTER", "3", "z", "y", "set", "AGGREGATE", "MAX", "WITHSCORES") == [b"c", b"10"]
    assert run(s, "ZUNION", "2", "z", "y", "WEIGHTS", "2", "0", "AGGREGATE", "MIN") == [b"c", b"x", b"b", b"d"]
    assert run(s, "ZDIFF", "2", "z", "y") == [b"b", b"d"] and run(s, "ZINTERCARD", "2", "z", "y", "LIMIT", "5") == 1
    assert run(s, "ZUNION", "0", "z") == Error("ERR at least 1 input key is needed for 'zunion' command")
    assert run(s, "ZUNIONSTORE", "d", "2", "z", "y", "WITHSCORES") == SYNTAX
    assert run(s, "ZUNIONSTORE", "d", "2", "z", "y") == 4 and run(s, "ZRANGE", "d", "0", "0") == [b"b"]
    assert run(s, "ZDIFFSTORE", "d", "2", "z", "z") == 0 and run(s, "EXISTS", "d") == 0
    run(s, "SET", "str", "v", "EX", "100")
    assert run(s, "ZRANGESTORE", "str", "z", "1", "3", "BYSCORE") == 2 and run(s, "TTL", "str") == -1
    assert run(s, "ZRANGE", "str", "0", "-1", "WITHSCORES") == [b"b", b"2", b"c", b"3"]
    assert run(s, "ZRANGESTORE", "d", "z", "0", "-1", "WITHSCORES") == SYNTAX


def test_sorted_sets_are_a_type(s):
    run(s, "SET", "str", "v")
    run(s, "ZADD", "z", "1", "m")
    for cmd in (("ZADD", "str", "1", "m"), ("ZRANGE", "str", "0", "1"), ("ZSCORE", "str", "m"), ("ZPOPMIN", "str"),
                ("ZPOPMAX", "str", "0"), ("ZUNION", "2", "z", "str"), ("ZUNIONSTORE", "d", "1", "str", "BAD"),
                ("ZMPOP", "2", "str", "z", "MIN"), ("ZRANDMEMBER", "str"), ("ZSCAN", "str", "0"),
                ("GET", "z"), ("LPUSH", "z", "x"), ("SADD", "z", "x")):
        assert run(s, *cmd) == WRONGTYPE, cmd
    assert run(s, "TYPE", "z") == Status("zset") and run(s, "SCAN", "0", "TYPE", "zset") == [b"0", [b"z"]]
    assert run(s, "ZSCAN", "z", "0") == [b"0", [b"m", b"1"]]
    assert run(s, "ZRANDMEMBER", "z", "-3", "WITHSCORES") == [b"m", b"1"] * 3


def test_ops_are_validated_and_name_their_keys():
    good = [(zsets.ZADD, b"z", zsets.CH, (b"m",), packed([1.0])), (zsets.ZREM, b"z", (b"m",)), (zsets.ZPOP, b"z", 1, -1),
            (zsets.ZREMRANGE, b"z", zsets.SCORE, (b"(1", b"+inf")), (zsets.ZSTORE, b"d", zsets.UNION, (b"1", b"z")),
            (zsets.ZRANGESTORE, b"d", (b"z", b"0", b"-1")), (zsets.ZMPOP, (b"a", b"b"), 0, 2)]
    assert all(valid_op(op) for op in good)
    bad = [(zsets.ZADD, b"z", 0, (b"m",), packed([float("nan")])), (zsets.ZADD, b"z", 0, (b"m",), b"1"),
           (zsets.ZADD, b"z", 0, (b"m", b"n"), packed([1.0])), (zsets.ZREMRANGE, b"z", zsets.SCORE, (b"x", b"1")),
           (zsets.ZRANGESTORE, b"d", (b"z", b"0", b"-1", b"BAD")), (zsets.ZPOP, b"z", 2, 1),
           (zsets.ZMPOP, (b"a",), 0, 0)]
    assert not any(valid_op(op) for op in bad)
    assert op_keys((zsets.ZMPOP, (b"a", b"b"), 0, 2)) == (b"a", b"b")
    assert op_keys((zsets.ZSTORE, b"d", zsets.UNION, (b"1", b"z"))) == (b"d",)


def test_snapshots_carry_sorted_sets(s):
    run(s, "ZADD", "z", "1.5", "a", "-inf", "b", "2", "a\x00b")
    run(s, "RPUSH", "l", "x")
    loaded = KVState.load(s.dump())
    assert loaded.data[b"z"] == ZSet([(b"a", 1.5), (b"b", float("-inf")), (b"a\x00b", 2.0)])
    assert run(loaded, "ZRANGE", "z", "0", "-1", "WITHSCORES") == [b"b", b"-inf", b"a", b"1.5", b"a\x00b", b"2"]
    bad = msgpack.packb([{b"z": msgpack.ExtType(3, msgpack.packb([[b"m"], b"1"]))}, {}, {}, {}], use_bin_type=True)
    with pytest.raises(ValueError):
        KVState.load(bad)


def test_rank_and_range_stay_logarithmic(s):
    z = ZSet((b"m%07d" % i, float(i)) for i in range(200_000))
    start = time.perf_counter()
    for i in range(0, 200_000, 20):
        assert z.rank(b"m%07d" % i) == i
        assert z.score_span(float(i), False, float(i), False) == (i, i + 1)
    assert time.perf_counter() - start < 5, "10,000 ranks and spans of a 200,000-element set"


KEY = st.sampled_from([b"a", b"b"])
MEMBER = st.sampled_from([b"x", b"y", b""])
SCORE = st.sampled_from([b"1", b"-2.5", b"inf", b"0"])
zset_commands = st.one_of(
    st.builds(lambda k, f, sc, m: [b"ZADD", k, *f, sc, m], KEY, st.sampled_from([[], [b"GT"], [b"INCR"], [b"XX"]]),
              SCORE, MEMBER),
    st.builds(lambda k, m: [b"ZREM", k, m], KEY, MEMBER),
    st.builds(lambda c, k: [c, k, b"2"], st.sampled_from([b"ZPOPMIN", b"ZPOPMAX"]), KEY),
    st.builds(lambda k: [b"ZREMRANGEBYSCORE", k, b"(0", b"+inf"], KEY),
    st.builds(lambda c, d, a, b: [c, d, b"2", a, b], st.sampled_from([b"ZUNIONSTORE", b"ZINTERSTORE"]), KEY, KEY, KEY),
    st.builds(lambda d, a: [b"ZRANGESTORE", d, a, b"0", b"1"], KEY, KEY),
    st.builds(lambda a, b: [b"ZMPOP", b"2", a, b, b"MAX"], KEY, KEY),
    st.builds(lambda k: [b"SET", k, b"v"], KEY),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(MEMBERS), zset_commands), min_size=1, max_size=25))
def test_every_member_ends_with_the_same_sorted_sets(sent):
    ends_identical(sent)
