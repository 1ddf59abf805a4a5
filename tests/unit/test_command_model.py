"""CommandModel: linearizability of typed values, with the store's own command semantics."""

from __future__ import annotations

import math
from collections import deque

import pytest

from catena.chain.zset import ZSet
from catena.check import CommandModel, Operation, check
from catena.check.commands import decode, encode
from catena.resp.codec import OK

INF = math.inf


def cmd(name, key, arg, result, call, ret, client=0):
    return Operation(client, name, key, tuple(arg), result, call, ret)


@pytest.mark.parametrize("value", [
    None, b"abc", {b"f": b"1"}, {b"a", b"b"}, deque([b"x", b"y", b"x"]), ZSet([(b"m", 1.5), (b"n", -2.0)]),
])
def test_a_value_survives_its_encoding(value):
    assert decode(encode(value)) == value
    assert hash(encode(value)) == hash(encode(decode(encode(value))))


def test_a_sequential_history_of_every_type():
    ops = [
        cmd("hset", "h", (b"f", b"1", b"g", b"x"), 2, 0, 1),
        cmd("hincrby", "h", (b"f", b"4"), 5, 2, 3),
        cmd("hgetall", "h", (), [b"g", b"x", b"f", b"5"], 4, 5),  # any order of pairs
        cmd("hdel", "h", (b"f", b"nope"), 1, 6, 7),
        cmd("hget", "h", (b"f",), None, 8, 9),
        cmd("rpush", "l", (b"a", b"b"), 2, 0, 1),
        cmd("lpush", "l", (b"c",), 3, 2, 3),
        cmd("lrange", "l", (b"0", b"-1"), [b"c", b"a", b"b"], 4, 5),
        cmd("lpop", "l", (), b"c", 6, 7),
        cmd("llen", "l", (), 2, 8, 9),
        cmd("sadd", "s", (b"m", b"n"), 2, 0, 1),
        cmd("smembers", "s", (), [b"n", b"m"], 2, 3),
        cmd("srem", "s", (b"m", b"m"), 1, 4, 5),
        cmd("scard", "s", (), 1, 6, 7),
        cmd("zadd", "z", (b"1", b"m"), 1, 0, 1),
        cmd("zincrby", "z", (b"2", b"m"), b"3", 2, 3),
        cmd("zrange", "z", (b"0", b"-1", b"WITHSCORES"), [b"m", b"3"], 4, 5),
        cmd("append", "a", (b"hello",), 5, 0, 1),
        cmd("getrange", "a", (b"1", b"3"), b"ell", 2, 3),
        cmd("set", "a", (b"x",), OK, 4, 5),
        cmd("getdel", "a", (), b"x", 6, 7),
        cmd("strlen", "a", (), 0, 8, 9),
    ]
    assert check(ops, CommandModel()).ok is True


def test_a_stale_read_of_a_hash_is_caught():
    ops = [
        cmd("hset", "h", (b"f", b"1"), 1, 0, 1),
        cmd("hdel", "h", (b"f",), 1, 2, 3),
        cmd("hget", "h", (b"f",), b"1", 4, 5),
    ]
    result = check(ops, CommandModel())
    assert result.ok is False
    assert result.blocked is ops[2]
    assert "hget 'h' b'f'" in result.explanation


def test_concurrent_pushes_order_the_list_either_way_but_consistently():
    pushes = [cmd("rpush", "l", (b"a",), 1, 0, 4, client=1), cmd("rpush", "l", (b"b",), 2, 1, 4, client=2)]
    assert check(pushes + [cmd("lrange", "l", (b"0", b"-1"), [b"a", b"b"], 5, 6)], CommandModel()).ok is True
    # b's push answered 2, so it came second: the list cannot read b, a.
    assert check(pushes + [cmd("lrange", "l", (b"0", b"-1"), [b"b", b"a"], 5, 6)], CommandModel()).ok is False


def test_a_write_of_unknown_outcome_may_or_may_not_have_happened():
    lost = cmd("sadd", "s", (b"m",), None, 0, INF)
    for seen in ([], [b"m"]):
        assert check([lost, cmd("smembers", "s", (), seen, 1, 2)], CommandModel()).ok is True
    # ... but once seen it stays: a later read without it is a violation.
    ops = [lost, cmd("sismember", "s", (b"m",), 1, 1, 2), cmd("scard", "s", (), 0, 3, 4)]
    assert check(ops, CommandModel()).ok is False


def test_a_failed_command_changes_nothing():
    ops = [
        cmd("hset", "h", (b"f", b"x"), 1, 0, 1),
        cmd("hincrby", "h", (b"f", b"1"), None, 2, INF),  # an error reply: not an integer
        cmd("hget", "h", (b"f",), b"x", 3, 4),
    ]
    assert check(ops, CommandModel()).ok is True


class _LpushAppends(CommandModel):
    """A deliberately wrong model: LPUSH behaves as RPUSH."""

    def run(self, state, name, key, arg):
        return super().run(state, b"RPUSH" if name == b"LPUSH" else name, key, arg)


def test_a_wrong_model_step_is_caught():
    ops = [
        cmd("lpush", "l", (b"a",), 1, 0, 1),
        cmd("lpush", "l", (b"b",), 2, 2, 3),
        cmd("lrange", "l", (b"0", b"-1"), [b"b", b"a"], 4, 5),
    ]
    assert check(ops, CommandModel()).ok is True
    assert check(ops, _LpushAppends()).ok is False


def test_unknown_reads_are_dropped_and_nothing_else():
    ops = [cmd("hget", "h", (b"f",), None, 0, INF), cmd("hset", "h", (b"f", b"1"), None, 0, INF),
           cmd("hget", "h", (b"f",), b"1", 1, 2)]
    assert CommandModel.prepare(ops) == ops[1:]
