"""Hashes and sets (catena.chain.hashes, catena.chain.sets): Redis 7's replies and errors, the
value-type model (TYPE, WRONGTYPE, SCAN TYPE), ops as peers may send them, snapshots old and new,
and a hypothesis property that every member of a chain ends identical."""

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from catena.chain import hashes, ops, sets
from catena.chain.state import KVState, op_keys, valid_op
from catena.chain.values import Lcg, format_long_double, parse_long_double
from catena.fuzz_chain import MEMBERS, PureChain
from catena.resp.codec import OK, Error, Status

NOW = 1_700_000_000_000
WRONGTYPE = Error("WRONGTYPE Operation against a key holding the wrong kind of value")


def run(state: KVState, *words, rng=None):
    """One command against `state`, as the head turns it into an op (or a member reads)."""
    args = [w if type(w) is bytes else str(w).encode() for w in words]
    if ops.is_write(args):
        op = ops.to_op(args, NOW)
        if type(op) is Error:
            return op
        assert valid_op(op := ops.decide(state, op, NOW, rng or Lcg(1))), op
        return state.apply(op, NOW)
    return ops.read(state, args, NOW, rng)


def ends_identical(sent) -> None:
    """Commands sent to members of a pure chain (member, command): once settled, every member
    applied the same seqs and holds the same data."""
    chain = PureChain()
    for member, cmd in sent:
        chain.send(member, cmd)
    chain.settle()
    chain.check(b"fresh")


@pytest.fixture
def s():
    return KVState()


def test_hash_commands_answer_as_redis(s):
    assert run(s, "HSET", "h", "a", "1", "b", "2") == 2
    assert run(s, "HSET", "h", "a", "3", "c", "4") == 1
    assert run(s, "HSET", "h", "a") == Error("ERR wrong number of arguments for 'hset' command")
    assert run(s, "HMSET", "h", "d", "5") == OK
    assert run(s, "HSETNX", "h", "a", "x") == 0 and run(s, "HSETNX", "h", "e", "x") == 1
    assert run(s, "HGET", "h", "a") == b"3" and run(s, "HGET", "h", "zz") is None and run(s, "HGET", "no", "a") is None
    assert run(s, "HMGET", "h", "a", "zz", "b") == [b"3", None, b"2"]
    assert run(s, "HLEN", "h") == 5 and run(s, "HLEN", "no") == 0
    assert sorted(run(s, "HKEYS", "h")) == [b"a", b"b", b"c", b"d", b"e"]
    assert sorted(run(s, "HVALS", "h")) == [b"2", b"3", b"4", b"5", b"x"]
    pairs = run(s, "HGETALL", "h")
    assert dict(zip(pairs[0::2], pairs[1::2])) == {b"a": b"3", b"b": b"2", b"c": b"4", b"d": b"5", b"e": b"x"}
    assert run(s, "HEXISTS", "h", "a") == 1 and run(s, "HEXISTS", "h", "q") == 0
    assert run(s, "HSTRLEN", "h", "a") == 1 and run(s, "HSTRLEN", "h", "q") == 0
    assert run(s, "HDEL", "h", "a", "b", "q") == 2
    assert run(s, "HDEL", "h", "c", "d", "e") == 3
    assert run(s, "EXISTS", "h") == 0, "a hash left without fields is deleted"
    assert run(s, "HGETALL", "h") == [] and run(s, "HDEL", "h", "a") == 0


def test_hincrby_and_hincrbyfloat_compute_as_redis(s):
    assert run(s, "HINCRBY", "h", "n", "5") == 5 and run(s, "HINCRBY", "h", "n", "-7") == -2
    assert run(s, "HINCRBY", "h", "n", "1_0") == Error("ERR value is not an integer or out of range")
    run(s, "HSET", "h", "t", "text", "big", str(2**63 - 1))
    assert run(s, "HINCRBY", "h", "t", "1") == Error("ERR hash value is not an integer")
    assert run(s, "HINCRBY", "h", "big", "1") == Error("ERR increment or decrement would overflow")
    # Redis's 80-bit long double printed with %.17Lf: 10.5 + 0.1 is "10.6", not 10.59999…
    assert run(s, "HINCRBYFLOAT", "h", "f", "10.5") == b"10.5"
    assert run(s, "HINCRBYFLOAT", "h", "f", "0.1") == b"10.6"
    assert run(s, "HINCRBYFLOAT", "h", "f", "-10.6") == b"0"
    assert run(s, "HINCRBYFLOAT", "h", "g", "5.0e3") == b"5000"
    assert run(s, "HINCRBYFLOAT", "h", "g", "0x10") == b"5016"
    assert run(s, "HINCRBYFLOAT", "h", "g", "abc") == Error("ERR value is not a valid float")
    assert run(s, "HINCRBYFLOAT", "h", "g", " 1") == Error("ERR value is not a valid float")
    assert run(s, "HINCRBYFLOAT", "h", "g", "inf") == Error("ERR value is NaN or Infinity")
    assert run(s, "HINCRBYFLOAT", "h", "t", "1") == Error("ERR hash value is not a float")
    run(s, "HINCRBYFLOAT", "h", "x", "1e4932")
    assert run(s, "HINCRBYFLOAT", "h", "x", "1e4932") == Error("ERR increment would produce NaN or Infinity")
    assert run(s, "HGET", "h", "f") == b"0" and run(s, "HGET", "h", "g") == b"5016"


def test_long_doubles_round_and_print_as_glibc():
    assert format_long_double(parse_long_double(b"0.1") * 3) == b"0.3"
    assert format_long_double(parse_long_double(b"1.5e-5")) == b"0.000015"
    assert format_long_double(parse_long_double(b"-0.000000000000000001")) == b"0"
    assert parse_long_double(b"1e-5000") is None and parse_long_double(b"1e5000") is None  # ERANGE
    assert parse_long_double(b"1\x00") is None and parse_long_double(b"") is None


def test_set_commands_answer_as_redis(s):
    assert run(s, "SADD", "s", "a", "b", "c", "a") == 3 and run(s, "SADD", "s", "c", "d") == 1
    assert sorted(run(s, "SMEMBERS", "s")) == [b"a", b"b", b"c", b"d"]
    assert run(s, "SISMEMBER", "s", "a") == 1 and run(s, "SISMEMBER", "s", "z") == 0
    assert run(s, "SMISMEMBER", "s", "a", "z") == [1, 0] and run(s, "SMISMEMBER", "no", "a") == [0]
    assert run(s, "SCARD", "s") == 4 and run(s, "SCARD", "no") == 0
    assert run(s, "SREM", "s", "a", "z") == 1
    assert run(s, "SMOVE", "s", "t", "b") == 1 and run(s, "SMOVE", "s", "t", "b") == 0
    assert run(s, "SMOVE", "no", "t", "b") == 0 and run(s, "SMOVE", "t", "t", "b") == 1
    run(s, "SADD", "u", "c", "x")
    assert sorted(run(s, "SINTER", "s", "u")) == [b"c"] and run(s, "SINTER", "s", "no") == []
    assert sorted(run(s, "SUNION", "s", "u", "no")) == [b"c", b"d", b"x"]
    assert sorted(run(s, "SDIFF", "s", "u")) == [b"d"] and run(s, "SDIFF", "no", "s") == []
    assert run(s, "SINTERCARD", "2", "s", "u") == 1 and run(s, "SINTERCARD", "1", "s", "LIMIT", "1") == 1
    assert run(s, "SINTERCARD", "0", "s") == Error("ERR numkeys should be greater than 0")
    assert run(s, "SINTERCARD", "3", "s") == Error("ERR Number of keys can't be greater than number of args")
    assert run(s, "SINTERCARD", "1", "s", "LIMIT", "-1") == Error("ERR LIMIT can't be negative")
    assert run(s, "SINTERCARD", "1", "s", "BAD", "1") == Error("ERR syntax error")
    run(s, "SET", "str", "v", "EX", "100")
    assert run(s, "SUNIONSTORE", "str", "s", "u") == 3
    assert run(s, "TYPE", "str") == Status("set") and run(s, "TTL", "str") == -1, "a STORE replaces key and TTL"
    assert run(s, "SINTERSTORE", "str", "s", "no") == 0 and run(s, "EXISTS", "str") == 0
    assert run(s, "SDIFFSTORE", "d", "s", "u") == 1 and run(s, "SMEMBERS", "d") == [b"d"]


def test_spop_is_decided_at_the_head_and_srandmember_is_a_read(s):
    run(s, "SADD", "s", *"abcdef")
    popped = run(s, "SPOP", "s", "2")
    assert len(popped) == 2 and run(s, "SCARD", "s") == 4 and not set(popped) & set(run(s, "SMEMBERS", "s"))
    assert run(s, "SPOP", "s") in {b"a", b"b", b"c", b"d", b"e", b"f"} - set(popped)
    assert run(s, "SPOP", "s", "-1") == Error("ERR value is out of range, must be positive")
    assert run(s, "SPOP", "s", "1", "2") == Error("ERR syntax error")
    assert run(s, "SPOP", "no") is None and run(s, "SPOP", "no", "3") == [] and run(s, "SPOP", "s", "0") == []
    assert len(set(run(s, "SRANDMEMBER", "s", "2"))) == 2 and len(run(s, "SRANDMEMBER", "s", "-9")) == 9
    assert sorted(run(s, "SRANDMEMBER", "s", "99")) == sorted(run(s, "SMEMBERS", "s"))
    assert run(s, "SRANDMEMBER", "s", "-9223372036854775808") == Error(
        "ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807")
    assert run(s, "SPOP", "s", "99") and run(s, "EXISTS", "s") == 0, "popping every member deletes the set"


def test_hrandfield_answers_as_redis(s):
    run(s, "HSET", "h", "a", "1", "b", "2", "c", "3")
    assert run(s, "HRANDFIELD", "h") in (b"a", b"b", b"c") and run(s, "HRANDFIELD", "no") is None
    got = run(s, "HRANDFIELD", "h", "2", "WITHVALUES")
    assert len(got) == 4 and all(dict(a=b"1", b=b"2", c=b"3")[f.decode()] == v for f, v in zip(got[0::2], got[1::2]))
    assert len(run(s, "HRANDFIELD", "h", "-5")) == 5 and sorted(run(s, "HRANDFIELD", "h", "7")) == [b"a", b"b", b"c"]
    assert run(s, "HRANDFIELD", "h", "1", "BAD") == Error("ERR syntax error")
    assert run(s, "HRANDFIELD", "h", str(2**62), "WITHVALUES") == Error("ERR value is out of range")
    assert run(s, "HRANDFIELD", "h", "-20000000") == Error(
        "ERR catena answers at most 10000000 random picks with repeats (a negative count)")


def test_every_command_on_a_key_of_another_type_is_wrongtype_and_changes_nothing(s):
    run(s, "SET", "str", "v")
    run(s, "HSET", "h", "f", "v")
    run(s, "SADD", "s", "m")
    for cmd in (("GET", "h"), ("STRLEN", "s"), ("INCR", "h"), ("SET", "s", "x", "GET"), ("GETSET", "h", "x"),
                ("HSET", "str", "f", "v"), ("HGET", "s", "f"), ("HINCRBY", "s", "f", "1"), ("HLEN", "str"),
                ("HINCRBYFLOAT", "str", "f", "1"), ("HRANDFIELD", "s"), ("HSCAN", "s", "0"), ("HDEL", "s", "f"),
                ("SADD", "h", "m"), ("SREM", "str", "m"), ("SMEMBERS", "h"), ("SPOP", "h"), ("SCARD", "str"),
                ("SMOVE", "h", "s", "m"), ("SMOVE", "s", "h", "m"), ("SINTER", "s", "h"), ("SUNION", "no", "str"),
                ("SDIFFSTORE", "d", "s", "h"), ("SRANDMEMBER", "h", "3"), ("SSCAN", "h", "0"),
                ("SINTERCARD", "2", "s", "str"), ("SISMEMBER", "h", "m")):
        assert run(s, *cmd) == WRONGTYPE, cmd
    assert run(s, "GET", "str") == b"v" and run(s, "HGET", "h", "f") == b"v" and run(s, "SMEMBERS", "s") == [b"m"]
    assert run(s, "MGET", "str", "h", "s") == [b"v", None, None]
    assert [run(s, "TYPE", k) for k in ("str", "h", "s", "no")] == [Status(t) for t in ("string", "hash", "set", "none")]
    assert run(s, "EXISTS", "str", "h", "s") == 3 and run(s, "DBSIZE") == 3
    assert run(s, "EXPIRE", "h", "100") == 1 and run(s, "TTL", "h") == 100 and run(s, "PERSIST", "h") == 1
    assert run(s, "SETNX", "h", "x") == 0 and run(s, "SET", "h", "x") == OK and run(s, "GET", "h") == b"x"
    assert run(s, "DEL", "h", "s") == 2 and run(s, "DBSIZE") == 1


def test_scan_type_filters_by_type(s):
    run(s, "SET", "str", "v")
    run(s, "HSET", "h", "f", "v")
    run(s, "SADD", "s", "m")
    for kind, keys in ((b"string", [b"str"]), (b"HASH", [b"h"]), (b"set", [b"s"]), (b"list", [])):
        cursor, found = b"0", []
        while True:
            cursor, page = run(s, b"SCAN", cursor, b"COUNT", b"1000", b"TYPE", kind)
            found += page
            if cursor == b"0":
                break
        assert found == keys, kind


@pytest.mark.parametrize("kind", ["HSCAN", "SSCAN", "ZSCAN"])
def test_collection_scans_return_every_element_once(s, kind):
    n = 2000
    if kind == "HSCAN":
        run(s, "HSET", "c", *[w for i in range(n) for w in (f"f{i}", f"v{i}")])
    elif kind == "ZSCAN":
        run(s, "ZADD", "c", *[w for i in range(n) for w in (str(i), f"f{i}")])
    else:
        run(s, "SADD", "c", *[f"f{i}" for i in range(n)])
    cursor, seen, pages = b"0", [], 0
    while True:
        cursor, page = run(s, kind, "c", cursor, "COUNT", "10")
        if kind == "ZSCAN":
            assert all(page[i + 1] == page[i][1:] for i in range(0, len(page), 2)), "member fN has score N"
        seen += page if kind == "SSCAN" else page[0::2]
        pages += 1
        if cursor == b"0":
            break
    assert sorted(seen) == sorted(b"f%d" % i for i in range(n)) and 1 < pages <= 20
    matched = run(s, kind, "c", "0", "MATCH", "f1??", "COUNT", "5000")[1]
    assert sorted(matched if kind == "SSCAN" else matched[0::2]) == sorted(b"f%d" % i for i in range(100, 200))
    assert run(s, kind, "c", "x") == Error("ERR invalid cursor")
    assert run(s, kind, "c", "0", "TYPE", "hash") == Error("ERR syntax error")
    assert run(s, kind, "no", "0", "COUNT", "0") == [b"0", []], "Redis reads the options only for a present key"


def test_new_ops_are_validated_and_name_the_keys_they_write():
    good = [(hashes.HSET, b"h", (b"f", b"v"), 0), (hashes.HDEL, b"h", (b"f",)), (hashes.HINCRBY, b"h", b"f", 3),
            (hashes.HINCRBYFLOAT, b"h", b"f", b"1.5"), (sets.SADD, b"s", (b"m",)), (sets.SREM, b"s", (b"m",)),
            (sets.SPOP, b"s", (), -1), (sets.SMOVE, b"s", b"t", b"m"), (sets.SSTORE, b"d", sets.UNION, (b"s",))]
    assert all(valid_op(op) for op in good)
    bad = [(hashes.HSET, b"h", (b"f",), 0), (hashes.HSET, b"h", (b"f", b"v"), 9), (hashes.HDEL, b"h", ()),
           (hashes.HINCRBY, b"h", b"f", b"3"), (hashes.HINCRBYFLOAT, b"h", b"f", b"inf"),
           (hashes.HINCRBYFLOAT, b"h", b"f", b"x"), (sets.SADD, b"s", (1,)), (sets.SPOP, b"s", None, -1),
           (sets.SPOP, b"s", (), -2), (sets.SMOVE, b"s", b"t"), (sets.SSTORE, b"d", 7, (b"s",)), (99, b"k")]
    assert not any(valid_op(op) for op in bad)
    assert op_keys((sets.SMOVE, b"s", b"t", b"m")) == (b"s", b"t")
    assert op_keys((sets.SSTORE, b"d", sets.INTER, (b"a", b"b"))) == (b"d",)
    assert ops.read_keys([b"SINTERCARD", b"2", b"a", b"b", b"LIMIT", b"1"]) == (b"a", b"b")
    assert ops.read_keys([b"SDIFF", b"a", b"b"]) == (b"a", b"b")


def test_snapshots_carry_the_types_and_old_dumps_still_load(s):
    run(s, "SET", "str", "v", "EX", "100")
    run(s, "HSET", "h", "f", "v", "g", "w")
    run(s, "SADD", "s", "m", "n")
    loaded = KVState.load(s.dump())
    assert loaded.data == {b"str": b"v", b"h": {b"f": b"v", b"g": b"w"}, b"s": {b"m", b"n"}}
    assert loaded.expires == s.expires and run(loaded, "TYPE", "s") == Status("set")
    assert run(loaded, "SADD", "s", "o") == 1 and run(loaded, "HSET", "h", "x", "y") == 1
    assert sorted(run(loaded, "SCAN", "0", "COUNT", "100000")[1]) == [b"h", b"s", b"str"]
    old = msgpack.packb([{b"a": b"1"}, {b"a": NOW + 5}, {}, {}], use_bin_type=True)  # a dump before types
    assert KVState.load(old).data == {b"a": b"1"}
    with pytest.raises(ValueError):
        KVState.load(msgpack.packb([{b"a": msgpack.ExtType(9, b"")}, {}, {}, {}], use_bin_type=True))


FIELD = st.sampled_from([b"f", b"g", b"1", b""])
KEY = st.sampled_from([b"a", b"b", b"c"])
type_commands = st.one_of(
    st.builds(lambda k, f, v: [b"HSET", k, f, v], KEY, FIELD, FIELD),
    st.builds(lambda k, f: [b"HDEL", k, f], KEY, FIELD),
    st.builds(lambda k, f, n: [b"HINCRBY", k, f, n], KEY, FIELD, st.sampled_from([b"1", b"-3", b"x"])),
    st.builds(lambda k, f, n: [b"HINCRBYFLOAT", k, f, n], KEY, FIELD, st.sampled_from([b"0.1", b"1e3", b"x"])),
    st.builds(lambda k, ms: [b"SADD", k, *ms], KEY, st.lists(FIELD, min_size=1, max_size=3)),
    st.builds(lambda k, m: [b"SREM", k, m], KEY, FIELD),
    st.builds(lambda k, n: [b"SPOP", k, *n], KEY, st.sampled_from([[], [b"1"], [b"2"], [b"9"]])),
    st.builds(lambda a, b, m: [b"SMOVE", a, b, m], KEY, KEY, FIELD),
    st.builds(lambda c, d, ks: [c, d, *ks], st.sampled_from([b"SINTERSTORE", b"SUNIONSTORE", b"SDIFFSTORE"]),
              KEY, st.lists(KEY, min_size=1, max_size=3)),
    st.builds(lambda k, v: [b"SET", k, v], KEY, FIELD),
    st.builds(lambda k: [b"DEL", k], KEY),
    st.builds(lambda k: [b"EXPIRE", k, b"-1"], KEY),
    st.builds(lambda k: [b"SRANDMEMBER", k, b"-2"], KEY),
    st.builds(lambda k: [b"HGETALL", k], KEY),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(MEMBERS), type_commands), min_size=1, max_size=25), st.booleans())
def test_every_member_ends_with_the_same_hashes_and_sets(sent, settle_each):
    chain = PureChain()
    for member, cmd in sent:
        chain.send(member, cmd)
        if settle_each:
            chain.settle()
    chain.settle()
    chain.check(b"fresh")  # every member applied the same seqs and holds the same data


def test_spop_removes_the_same_members_at_every_member():
    chain = PureChain()
    chain.send(MEMBERS[1], [b"SADD", b"s", *[b"m%d" % i for i in range(100)]])
    token = chain.send(MEMBERS[2], [b"SPOP", b"s", b"10"])
    chain.settle()
    chain.check(b"fresh")
    popped = chain.replies[token]
    assert len(popped) == 10 and all(b"m" in m for m in popped)
    assert all(len(r.state.data[b"s"]) == 90 and not set(popped) & r.state.data[b"s"] for r in chain.replicas.values())
