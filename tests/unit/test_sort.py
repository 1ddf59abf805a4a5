"""SORT and SORT_RO (catena.chain.sort): replies as Redis 7.0.15 gives them (checked against a
real redis-server), STORE decided at the head and applied alike on every member, which reads
may be answered by a member with dirty keys, and the key positions COMMAND GETKEYS reports."""

import msgpack
import pytest

from catena.chain import ops, sort
from catena.chain.state import KVState, op_keys, valid_op
from catena.fuzz_chain import MEMBERS
from catena.resp import command_info
from catena.resp.codec import Error
from test_types import WRONGTYPE, ends_identical, run

NOT_DOUBLE = Error("ERR One or more scores can't be converted into double")
SYNTAX = Error("ERR syntax error")


@pytest.fixture
def s():
    state = KVState()
    for cmd in (("RPUSH", "l", "3", "1", "2", "10"), ("SADD", "s", "c", "a", "b"), ("ZADD", "z", "3", "x", "1", "y", "2", "w"),
                ("MSET", "w_1", "30", "w_2", "10", "w_3", "20", "w_10", "5", "o_1", "one", "o_2", "two", "str", "x"),
                ("HSET", "h_1", "f", "9"), ("HSET", "h_2", "f", "7"), ("HSET", "h_3", "f", "8"), ("RPUSH", "bad", "a", "1", "b")):
        run(state, *cmd)
    return state


def words(*items):
    return [w.encode() for w in items]


def test_sorts_numbers_and_strings_with_limits_as_redis(s):
    assert run(s, "SORT", "l") == words("1", "2", "3", "10") and run(s, "SORT", "l", "DESC") == words("10", "3", "2", "1")
    assert run(s, "SORT", "l", "ALPHA") == words("1", "10", "2", "3")
    assert run(s, "SORT", "l", "alpha", "desc") == words("3", "2", "10", "1")
    assert run(s, "SORT", "l", "LIMIT", "1", "2") == words("2", "3") and run(s, "SORT", "l", "LIMIT", "-1", "2") == words("1", "2")
    assert run(s, "SORT", "l", "LIMIT", "2", "-1") == words("3", "10")
    assert run(s, "SORT", "l", "LIMIT", "10", "2") == [] and run(s, "SORT", "l", "LIMIT", "0", "0") == []
    assert run(s, "SORT", "s", "ALPHA") == words("a", "b", "c") and run(s, "SORT", "z", "ALPHA") == words("w", "x", "y")
    assert run(s, "SORT", "bad", "ALPHA") == words("1", "a", "b") and run(s, "SORT", "nokey") == []
    assert run(s, "SORT_RO", "l", "DESC") == words("10", "3", "2", "1")


def test_by_and_get_patterns_read_other_keys(s):
    assert run(s, "SORT", "l", "BY", "w_*") == words("10", "2", "3", "1")
    assert run(s, "SORT", "l", "BY", "w_*", "DESC") == words("1", "3", "2", "10")
    assert run(s, "SORT", "l", "BY", "w_*", "ALPHA") == words("2", "3", "1", "10"), "a missing weight sorts first"
    assert run(s, "SORT", "l", "BY", "h_*->f") == words("10", "2", "3", "1")
    assert run(s, "SORT", "l", "BY", "h_*->f", "GET", "#", "GET", "o_*", "GET", "h_*->f") == [
        b"10", None, None, b"2", b"two", b"7", b"3", None, b"8", b"1", b"one", b"9"]
    assert run(s, "SORT", "l", "GET", "nokey") == [None] * 4, "a GET pattern without * names no key"
    assert run(s, "SORT_RO", "l", "BY", "w_*", "GET", "o_*") == [None, b"two", None, b"one"]


def test_nosort_keeps_a_list_or_sorted_set_in_its_own_order(s):
    assert run(s, "SORT", "l", "BY", "nosort") == words("3", "1", "2", "10")
    assert run(s, "SORT", "l", "BY", "nosort", "DESC", "LIMIT", "1", "2") == words("2", "1")
    assert run(s, "SORT", "z", "BY", "nosort") == words("y", "w", "x")
    assert run(s, "SORT", "z", "BY", "nosort", "DESC") == words("x", "w", "y")
    assert run(s, "SORT", "z", "BY", "nosort", "LIMIT", "1", "5") == words("w", "x")


def test_weights_are_read_as_strtod_reads_them(s):
    run(s, "SET", "e", "")
    run(s, "SET", "sp", " 5")
    run(s, "RPUSH", "ls", "sp", "e")
    assert run(s, "SORT", "ls", "BY", "*") == words("e", "sp"), "an empty weight is 0, a leading space is allowed"
    run(s, "SET", "nan", "nan")
    run(s, "RPUSH", "ln", "nan", "e")
    assert run(s, "SORT", "ln", "BY", "*") == NOT_DOUBLE


def test_errors_as_redis_and_nothing_changes(s):
    assert run(s, "SORT", "s") == NOT_DOUBLE and run(s, "SORT", "z") == NOT_DOUBLE and run(s, "SORT", "bad") == NOT_DOUBLE
    assert run(s, "SORT", "str") == WRONGTYPE
    assert run(s, "SORT", "l", "FOO") == SYNTAX and run(s, "SORT", "l", "LIMIT", "1") == SYNTAX
    assert run(s, "SORT", "l", "LIMIT", "a", "1") == Error("ERR value is not an integer or out of range")
    assert run(s, "SORT_RO", "l", "STORE", "d") == SYNTAX
    assert run(s, "SORT", "bad", "STORE", "d") == NOT_DOUBLE and run(s, "EXISTS", "d") == 0
    assert run(s, "SORT", "str", "STORE", "d") == WRONGTYPE and run(s, "EXISTS", "d") == 0


def test_store_replaces_the_destination_with_a_list(s):
    run(s, "EXPIRE", "str", "100")
    assert run(s, "SORT", "l", "STORE", "str") == 4 and run(s, "TYPE", "str").text == "list"
    assert run(s, "TTL", "str") == -1 and run(s, "LRANGE", "str", "0", "-1") == words("1", "2", "3", "10")
    assert run(s, "SORT", "l", "BY", "w_*", "GET", "o_*", "STORE", "d") == 4
    assert run(s, "LRANGE", "d", "0", "-1") == [b"", b"two", b"", b"one"], "a missing GET stores an empty string"
    assert run(s, "SORT", "s", "BY", "nosort", "STORE", "d") == 3
    assert run(s, "LRANGE", "d", "0", "-1") == words("a", "b", "c"), "a set stored in order: the same on every member"
    assert run(s, "SORT", "nokey", "STORE", "d") == 0 and run(s, "EXISTS", "d") == 0
    assert run(s, "SORT", "l", "LIMIT", "0", "2", "STORE", "l") == 2 and run(s, "LRANGE", "l", "0", "-1") == words("1", "2")


def test_store_op_carries_the_heads_result_and_peers_ops_are_checked(s):
    op = ops.to_op(words("SORT", "l", "DESC", "STORE", "d"), 0)
    decided = ops.decide(s, op, 0, None)
    assert decided == (sort.SORT_STORE, b"d", tuple(words("10", "3", "2", "1"))) and valid_op(decided)
    assert op_keys(decided) == (b"d",)
    failed = ops.decide(s, ops.to_op(words("SORT", "str", "STORE", "d"), 0), 0, None)
    assert valid_op(failed) and KVState().apply(failed, 0) == WRONGTYPE
    raw = msgpack.unpackb(msgpack.packb(decided, use_bin_type=True), raw=True, use_list=False)
    assert raw == decided, "the op survives the log and the wire"
    assert not valid_op((sort.SORT_STORE, b"d", (b"a", 1))) and not valid_op((sort.SORT_STORE, b"d"))
    assert not valid_op((sort.SORT_STORE, b"d", None, (b"SORT", b"l"))), "an undecided op never travels"


def test_only_sort_with_store_is_a_write():
    assert ops.is_write(words("sort", "l", "store", "d")) and ops.is_write(words("SORT", "l", "LIMIT", "0", "1", "STORE", "d"))
    assert not ops.is_write(words("SORT", "l", "GET", "store")) and not ops.is_write(words("SORT_RO", "l"))
    assert not ops.is_write(words("SORT", "l", "LIMIT", "x", "1", "STORE", "d")), "bad arguments: answered as a read"


def test_a_read_naming_other_keys_needs_a_member_without_dirty_keys():
    assert ops.read_keys(words("SORT", "l", "DESC", "BY", "nosort", "GET", "#")) == (b"l",)
    assert ops.read_keys(words("SORT", "l", "BY", "w_*")) is None
    assert ops.read_keys(words("SORT_RO", "l", "GET", "o_*->f")) is None


def test_command_getkeys_finds_the_source_and_the_destination():
    assert command_info.keys(b"SORT", words("SORT", "l", "LIMIT", "0", "1", "GET", "store", "STORE", "d")) == [b"l", b"d"]
    assert command_info.keys(b"SORT", words("SORT", "l", "BY", "w_*")) == [b"l"]
    assert command_info.keys(b"SORT_RO", words("SORT_RO", "l")) == [b"l"]


def test_every_member_stores_the_same_sorted_list():
    m1, m2, m3 = MEMBERS
    sent = [(m1, words("SADD", "s", *"qwertyuiop")), (m2, words("SORT", "s", "BY", "nosort", "STORE", "d")),
            (m3, words("SORT", "s", "ALPHA", "DESC", "LIMIT", "1", "3", "STORE", "e")), (m3, words("SORT", "d", "STORE", "d"))]
    ends_identical(sent)
