"""Lists (catena.chain.lists): Redis 7's replies and errors in Redis's checking order, WRONGTYPE,
ops as peers may send them, snapshots (ext 2) beside older dumps, and every member identical."""

from collections import deque

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from catena.chain import lists
from catena.chain.state import KVState, op_keys, valid_op
from catena.fuzz_chain import MEMBERS
from catena.resp.codec import NULL_ARRAY, OK, Error, Status
from test_types import WRONGTYPE, ends_identical, run

NOT_INT = Error("ERR value is not an integer or out of range")


@pytest.fixture
def s():
    return KVState()


def test_push_pop_range_answer_as_redis(s):
    assert run(s, "RPUSH", "l", "a", "b", "c") == 3 and run(s, "LPUSH", "l", "y", "z") == 5
    assert run(s, "LRANGE", "l", "0", "-1") == [b"z", b"y", b"a", b"b", b"c"]
    assert run(s, "LRANGE", "l", "-2", "100") == [b"b", b"c"] and run(s, "LRANGE", "l", "3", "1") == []
    assert run(s, "LRANGE", "l", "-100", "0") == [b"z"] and run(s, "LRANGE", "no", "0", "-1") == []
    assert run(s, "LRANGE", "no", "x", "1") == NOT_INT, "LRANGE parses its indexes before the key"
    assert run(s, "LPUSHX", "no", "a") == 0 and run(s, "EXISTS", "no") == 0 and run(s, "RPUSHX", "l", "d") == 6
    assert run(s, "LLEN", "l") == 6 and run(s, "LLEN", "no") == 0
    assert run(s, "LPOP", "l") == b"z" and run(s, "RPOP", "l", "2") == [b"d", b"c"]
    assert run(s, "LPOP", "l", "0") == [] and run(s, "LPOP", "no") is None and run(s, "LPOP", "no", "2") is NULL_ARRAY
    assert run(s, "LPOP", "l", "-1") == Error("ERR value is out of range, must be positive")
    assert run(s, "LPOP", "l", "1", "2") == Error("ERR wrong number of arguments for 'lpop' command")
    assert run(s, "RPOP", "l", "99") == [b"b", b"a", b"y"] and run(s, "EXISTS", "l") == 0, "emptied: deleted"


def test_index_set_remove_insert_trim(s):
    run(s, "RPUSH", "l", "a", "b", "a", "c", "a")
    assert run(s, "LINDEX", "l", "-1") == b"a" and run(s, "LINDEX", "l", "9") is None
    assert run(s, "LINDEX", "no", "x") is None and run(s, "LINDEX", "l", "x") == NOT_INT
    assert run(s, "LSET", "l", "1", "B") == OK and run(s, "LSET", "l", "5", "x") == Error("ERR index out of range")
    assert run(s, "LSET", "no", "x", "v") == Error("ERR no such key"), "LSET finds the key before the index"
    assert run(s, "LSET", "l", "x", "v") == NOT_INT
    assert run(s, "LREM", "l", "-1", "a") == 1 and run(s, "LRANGE", "l", "0", "-1") == [b"a", b"B", b"a", b"c"]
    assert run(s, "LREM", "l", "0", "a") == 2 and run(s, "LRANGE", "l", "0", "-1") == [b"B", b"c"]
    assert run(s, "LINSERT", "l", "AFTER", "B", "x") == 3 and run(s, "LINSERT", "l", "before", "B", "w") == 4
    assert run(s, "LINSERT", "l", "AFTER", "zz", "x") == -1 and run(s, "LINSERT", "no", "AFTER", "B", "x") == 0
    assert run(s, "LINSERT", "l", "MID", "B", "x") == Error("ERR syntax error")
    assert run(s, "LRANGE", "l", "0", "-1") == [b"w", b"B", b"x", b"c"]
    assert run(s, "LTRIM", "l", "1", "-2") == OK and run(s, "LRANGE", "l", "0", "-1") == [b"B", b"x"]
    assert run(s, "LTRIM", "l", "5", "9") == OK and run(s, "EXISTS", "l") == 0


def test_lpos_options_in_redis_order(s):
    run(s, "RPUSH", "l", *"abcabcab")
    assert run(s, "LPOS", "l", "b") == 1 and run(s, "LPOS", "l", "b", "RANK", "2") == 4
    assert run(s, "LPOS", "l", "b", "RANK", "-1") == 7 and run(s, "LPOS", "l", "b", "COUNT", "0") == [1, 4, 7]
    assert run(s, "LPOS", "l", "b", "RANK", "-2", "COUNT", "2") == [4, 1]
    assert run(s, "LPOS", "l", "c", "MAXLEN", "2") is None and run(s, "LPOS", "l", "c", "MAXLEN", "3") == 2
    assert run(s, "LPOS", "no", "b") is None and run(s, "LPOS", "no", "b", "COUNT", "1") == []
    assert run(s, "LPOS", "l", "b", "RANK", "0") == Error(
        "ERR RANK can't be zero: use 1 to start from the first match, 2 from the second ... "
        "or use negative to start from the end of the list")
    assert run(s, "LPOS", "l", "b", "COUNT", "-1") == Error("ERR COUNT can't be negative")
    assert run(s, "LPOS", "l", "b", "MAXLEN", "-1") == Error("ERR MAXLEN can't be negative")
    assert run(s, "LPOS", "l", "b", "BAD", "1") == Error("ERR syntax error")


def test_lmove_rpoplpush_lmpop(s):
    run(s, "RPUSH", "a", "1", "2", "3")
    assert run(s, "LMOVE", "a", "b", "LEFT", "RIGHT") == b"1" and run(s, "RPOPLPUSH", "a", "b") == b"3"
    assert run(s, "LRANGE", "b", "0", "-1") == [b"3", b"1"] and run(s, "LRANGE", "a", "0", "-1") == [b"2"]
    assert run(s, "LMOVE", "b", "b", "LEFT", "RIGHT") == b"3" and run(s, "LRANGE", "b", "0", "-1") == [b"1", b"3"]
    assert run(s, "LMOVE", "a", "a", "LEFT", "LEFT") == b"2" and run(s, "LLEN", "a") == 1, "a rotation of one"
    assert run(s, "LMOVE", "no", "b", "LEFT", "LEFT") is None and run(s, "LMOVE", "a", "b", "UP", "LEFT") == Error(
        "ERR syntax error")
    assert run(s, "RPOPLPUSH", "a", "b") == b"2" and run(s, "EXISTS", "a") == 0
    assert run(s, "LMPOP", "2", "no", "b", "RIGHT", "COUNT", "5") == [b"b", [b"3", b"1", b"2"]]
    assert run(s, "LMPOP", "1", "b", "LEFT") is NULL_ARRAY
    assert run(s, "LMPOP", "0", "b", "LEFT") == Error("ERR numkeys should be greater than 0")
    assert run(s, "LMPOP", "3", "b", "LEFT") == Error("ERR syntax error")
    assert run(s, "LMPOP", "1", "b", "MID", "COUNT", "-1") == Error("ERR syntax error"), "the end before COUNT"
    assert run(s, "LMPOP", "1", "b", "LEFT", "COUNT", "0") == Error("ERR count should be greater than 0")


def test_lists_are_a_type(s):
    run(s, "SET", "str", "v")
    run(s, "RPUSH", "l", "a")
    for cmd in (("LPUSH", "str", "x"), ("LPOP", "str"), ("LRANGE", "str", "0", "1"), ("LSET", "str", "0", "x"),
                ("LMOVE", "l", "str", "LEFT", "LEFT"), ("LMOVE", "str", "l", "LEFT", "LEFT"), ("LLEN", "str"),
                ("LMPOP", "2", "str", "l", "LEFT"), ("GET", "l"), ("SADD", "l", "m"), ("HGET", "l", "f")):
        assert run(s, *cmd) == WRONGTYPE, cmd
    assert run(s, "LRANGE", "l", "0", "-1") == [b"a"] and run(s, "GET", "str") == b"v"
    assert run(s, "TYPE", "l") == Status("list") and run(s, "SCAN", "0", "TYPE", "list") == [b"0", [b"l"]]
    assert run(s, "LMPOP", "2", "no", "l", "LEFT") == [b"l", [b"a"]], "a missing key before is skipped"


def test_ops_are_validated_and_name_their_keys():
    good = [(lists.PUSH, b"l", 0, 1, (b"a",)), (lists.POP, b"l", 1, -1), (lists.LSET, b"l", b"-1", b"v"),
            (lists.LREM, b"l", -2, b"v"), (lists.LINSERT, b"l", 1, b"p", b"v"), (lists.LTRIM, b"l", 0, -1),
            (lists.LMOVE, b"a", b"b", 0, 1), (lists.LMPOP, (b"a", b"b"), 1, 3)]
    assert all(valid_op(op) for op in good)
    bad = [(lists.PUSH, b"l", 2, 0, (b"a",)), (lists.PUSH, b"l", 0, 0, ()), (lists.POP, b"l", 0, -2),
           (lists.LSET, b"l", 1, b"v"), (lists.LMOVE, b"a", b"b", 0), (lists.LMPOP, (), 0, 1),
           (lists.LMPOP, (b"a",), 0, 0), (lists.LTRIM, b"l", b"0", 1)]
    assert not any(valid_op(op) for op in bad)
    assert op_keys((lists.LMOVE, b"a", b"b", 0, 1)) == (b"a", b"b")
    assert op_keys((lists.LMPOP, (b"a", b"b"), 1, 3)) == (b"a", b"b") and op_keys((lists.POP, b"l", 0, 1)) == (b"l",)


def test_snapshots_carry_lists_and_older_dumps_load(s):
    run(s, "RPUSH", "l", "a", "", "a\x00b")
    run(s, "SADD", "s", "m")
    loaded = KVState.load(s.dump())
    assert loaded.data == {b"l": deque([b"a", b"", b"a\x00b"]), b"s": {b"m"}}
    assert run(loaded, "RPOP", "l") == b"a\x00b" and run(loaded, "TYPE", "l") == Status("list")
    set_only = msgpack.packb([{b"s": msgpack.ExtType(1, msgpack.packb([b"m"]))}, {}, {}, {}], use_bin_type=True)
    assert KVState.load(set_only).data == {b"s": {b"m"}}
    with pytest.raises(ValueError):
        KVState.load(msgpack.packb([{b"l": msgpack.ExtType(2, msgpack.packb([1]))}, {}, {}, {}], use_bin_type=True))


KEY = st.sampled_from([b"a", b"b"])
ELEMENT = st.sampled_from([b"x", b"y", b""])
INDEX = st.sampled_from([b"0", b"1", b"-1", b"-3", b"5"])
list_commands = st.one_of(
    st.builds(lambda c, k, es: [c, k, *es], st.sampled_from([b"LPUSH", b"RPUSH", b"RPUSHX"]), KEY,
              st.lists(ELEMENT, min_size=1, max_size=3)),
    st.builds(lambda c, k, n: [c, k, *n], st.sampled_from([b"LPOP", b"RPOP"]), KEY, st.sampled_from([[], [b"2"]])),
    st.builds(lambda k, i, e: [b"LSET", k, i, e], KEY, INDEX, ELEMENT),
    st.builds(lambda k, i, e: [b"LREM", k, i, e], KEY, INDEX, ELEMENT),
    st.builds(lambda k, p, e: [b"LINSERT", k, b"BEFORE", p, e], KEY, ELEMENT, ELEMENT),
    st.builds(lambda k, i, j: [b"LTRIM", k, i, j], KEY, INDEX, INDEX),
    st.builds(lambda a, b: [b"LMOVE", a, b, b"LEFT", b"RIGHT"], KEY, KEY),
    st.builds(lambda a, b: [b"LMPOP", b"2", a, b, b"RIGHT", b"COUNT", b"2"], KEY, KEY),
    st.builds(lambda k: [b"SET", k, b"v"], KEY),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(MEMBERS), list_commands), min_size=1, max_size=25))
def test_every_member_ends_with_the_same_lists(sent):
    ends_identical(sent)
