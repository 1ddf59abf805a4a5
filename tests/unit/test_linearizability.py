"""The linearizability checker and the history recorder."""

from __future__ import annotations

import dataclasses
import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from catena.check import History, Operation, RegisterModel, check
from catena.errors import LocalProtocolError

INF = math.inf


def op(kind, arg, result, call, ret, key="k", client=0):
    return Operation(client, kind, key, arg, result, call, ret)


def setv(value, call, ret, **kw):
    return op("set", value, "OK", call, ret, **kw)


def get(result, call, ret, **kw):
    return op("get", None, result, call, ret, **kw)


# -- histories that are linearizable ---------------------------------------------------------


def test_empty_history_is_linearizable():
    assert check([]).ok is True


def test_sequential_history():
    ops = [
        get(None, 0, 1),
        setv(b"a", 2, 3),
        get(b"a", 4, 5),
        op("incr", None, 1, 6, 7, key="n"),
        op("incr", 5, 6, 8, 9, key="n"),
        get(b"6", 10, 11, key="n"),
        op("cas", (b"a", b"b"), True, 12, 13),
        op("cas", (b"a", b"c"), False, 14, 15),
        get(b"b", 16, 17),
        op("del", None, 1, 18, 19),
        op("del", None, 0, 20, 21),
        get(None, 22, 23),
        op("cas", (None, b"x"), True, 24, 25),
        get(b"x", 26, 27),
    ]
    assert check(ops).ok is True


@pytest.mark.parametrize("seen", [b"1", b"2"])
def test_concurrent_writes_and_a_read_seeing_either(seen):
    ops = [
        setv(b"1", 0, 10, client=1),
        setv(b"2", 1, 9, client=2),
        get(seen, 11, 12, client=3),
        get(seen, 13, 14, client=1),
    ]
    assert check(ops).ok is True


def test_read_concurrent_with_a_write_sees_old_or_new():
    for seen in (b"old", b"new"):
        ops = [setv(b"old", 0, 1), setv(b"new", 2, 5, client=1), get(seen, 3, 4, client=2)]
        assert check(ops).ok is True


def test_unknown_outcome_write_whose_effect_is_seen_later():
    ops = [
        setv(b"a", 0, 1),
        setv(b"b", 2, INF, client=1),
        get(b"a", 3, 4, client=2),
        get(b"b", 50, 51, client=2),
        get(b"b", 52, 53, client=3),
    ]
    assert check(ops).ok is True


def test_unknown_outcome_write_never_seen():
    ops = [setv(b"a", 0, 1), setv(b"b", 2, None, client=1), get(b"a", 3, 4), get(b"a", 60, 61)]
    assert check(ops).ok is True


def test_unknown_outcome_incr_and_cas_may_or_may_not_apply():
    incr_applied = [op("incr", None, None, 0, INF), op("incr", None, 2, 5, 6)]
    incr_not_applied = [op("incr", None, None, 0, INF), op("incr", None, 1, 5, 6)]
    cas = [setv(b"a", 0, 1), op("cas", (b"a", b"b"), None, 2, INF), get(b"b", 5, 6)]
    for ops in (incr_applied, incr_not_applied, cas):
        assert check(ops).ok is True


def test_values_compare_as_stored_bytes():
    ops = [
        op("incr", 2, 2, 0, 1),
        get(b"2", 2, 3),
        setv(7, 4, 5),
        op("incr", None, 8, 6, 7),
        get("8", 8, 9),
    ]
    assert check(ops).ok is True


def test_same_instant_return_and_call_overlap():
    ops = [setv(b"a", 0, 1), setv(b"b", 2, 3), get(b"a", 3, 4)]
    assert check(ops).ok is True


# -- histories that are not ------------------------------------------------------------------


def test_stale_read_after_a_completed_write():
    ops = [setv(b"old", 0, 1), setv(b"new", 2, 3, client=1), get(b"old", 4, 5, client=2)]
    result = check(ops)
    assert result.ok is False
    assert result.key == "k"
    assert result.blocked == ops[2]
    assert "b'old'" in result.explanation and "[4, 5]" in result.explanation


def test_read_of_a_value_never_written():
    ops = [setv(b"a", 0, 1), get(b"zzz", 2, 3, client=1)]
    assert check(ops).ok is False


def test_two_reads_in_an_order_impossible_for_one_register():
    ops = [
        setv(b"1", 0, 1, client=1),
        setv(b"2", 2, 10, client=2),
        get(b"2", 3, 4, client=3),
        get(b"1", 5, 6, client=3),
    ]
    assert check(ops).ok is False


def test_one_incr_applied_twice():
    ops = [op("incr", None, 1, 0, 1), op("incr", None, 3, 2, 3, client=1)]
    assert check(ops).ok is False
    ops = [op("incr", None, 1, 0, 1), get(b"2", 2, 3, client=1)]
    assert check(ops).ok is False


def test_cas_succeeding_on_the_wrong_value():
    ops = [setv(b"a", 0, 1), op("cas", (b"b", b"c"), True, 2, 3, client=1)]
    assert check(ops).ok is False


def test_del_count_must_match():
    assert check([op("del", None, 1, 0, 1)]).ok is False
    assert check([setv(b"a", 0, 1), op("del", None, 0, 2, 3)]).ok is False


def test_an_unknown_write_cannot_take_effect_before_its_call():
    ops = [get(b"b", 0, 1), setv(b"b", 2, INF, client=1)]
    assert check(ops).ok is False


def test_explanation_shows_the_prefix_and_the_blocked_operation():
    ops = [setv(i, 2 * i, 2 * i + 1) for i in range(10)] + [get(b"3", 30, 31, client=9)]
    result = check(ops)
    assert result.ok is False
    assert len(result.linearization) == 10
    assert result.linearization[-1] == ops[9]
    assert result.blocked == ops[10]
    lines = result.explanation.splitlines()
    assert "prefix of 10 of 11 operations" in lines[0] and "b'9'" in lines[0]
    assert str(ops[10]) in result.explanation
    assert str(result) == result.explanation


# -- keys, budget, recorder ------------------------------------------------------------------


def test_keys_are_checked_independently():
    # As one register this would be impossible; as two keys it is fine.
    ops = [
        setv(b"1", 0, 1, key="a"),
        setv(b"2", 2, 3, key="b"),
        get(b"1", 4, 5, key="a"),
        get(b"2", 6, 7, key="b"),
    ]
    assert check(ops).ok is True
    bad = ops + [get(b"1", 8, 9, key=b"b")]
    result = check(bad)
    assert result.ok is False
    assert result.key == "b"


def test_a_violation_is_found_even_when_another_key_exhausts_the_budget():
    rng = random.Random(3)
    big = [setv(rng.randrange(3), 0, 100, key="big", client=c) for c in range(16)]
    big += [get(b"1", 101, 102, key="big")]
    small = [setv(b"x", 0, 1, key="small"), get(b"y", 2, 3, key="small")]
    result = check(big + small, max_steps=50)
    assert result.ok is False and result.key == "small"


def test_gives_up_with_ok_none_when_the_budget_runs_out():
    # Many concurrent writes and a read that no order explains: the search must try them all.
    ops = [setv(i, 0, 100, client=i) for i in range(20)] + [get(b"never", 101, 102)]
    result = check(ops, max_steps=1000)
    assert result.ok is None
    assert result.key == "k"
    assert "gave up" in result.explanation
    assert result.steps == 1000


def test_model_may_be_an_instance():
    assert check([setv(b"a", 0, 1), get(b"a", 2, 3)], model=RegisterModel()).ok is True


def test_operation_returning_before_its_call_is_refused():
    with pytest.raises(ValueError):
        check([setv(b"a", 5, 4)])


def test_history_records_completed_failed_and_open_operations():
    history = History()
    a = history.invoke("c1", "set", b"k", b"v", 1.0)
    b = history.invoke("c2", "get", b"k", None, 1.5)
    c = history.invoke("c3", "incr", b"n", 1, 2.0)
    d = history.invoke("c1", "set", b"k", b"w", 3.0)
    history.complete(b, b"v", 2.5)
    history.complete(a, "OK", 3.0)
    history.fail(c, 4.0)
    assert history.operations() == [
        Operation("c1", "set", b"k", b"v", "OK", 1.0, 3.0),
        Operation("c2", "get", b"k", None, b"v", 1.5, 2.5),
        Operation("c1", "set", b"k", b"w", None, 3.0, INF),
    ]
    assert not history.operations()[2].known
    assert check(history.operations()).ok is True
    with pytest.raises(LocalProtocolError):
        history.complete(a, "OK", 5.0)
    with pytest.raises(LocalProtocolError):
        history.complete(d, "OK", 2.0)


# -- generated histories ---------------------------------------------------------------------

KEYS = ["a", "b"]


def _stored(value):
    return str(value).encode() if isinstance(value, int) else value


@st.composite
def real_histories(draw):
    """Run a real sequential store, then give each operation an interval around its turn.

    Operation i takes effect at time 10 * i; its call and return are drawn around that point,
    so intervals overlap at random but always agree with the order the store applied them in.
    Some operations end with unknown outcome, whether or not they took effect.
    """
    store: dict[str, int | bytes] = {}
    ops = []
    count = draw(st.integers(1, 24))
    spread = draw(st.sampled_from([1, 10, 40]))
    for i in range(count):
        key = draw(st.sampled_from(KEYS))
        kind = draw(st.sampled_from(["get", "get", "set", "incr", "del", "cas"]))
        value = draw(st.integers(0, 3))
        current = store.get(key)
        if kind == "incr" and not (current is None or isinstance(current, int)):
            kind = "set"
        applied = True
        unknown = draw(st.integers(0, 9)) == 0
        if unknown:
            applied = draw(st.booleans())
        if kind == "get":
            arg, result = None, _stored(current)
        elif kind == "set":
            arg, result = str(value).encode(), "OK"
        elif kind == "incr":
            arg, result = value, (current or 0) + value
        elif kind == "del":
            arg, result = None, int(current is not None)
        else:
            expected = draw(st.sampled_from([None, current, str(value).encode()]))
            if isinstance(expected, int):
                expected = str(expected).encode()
            arg, result = (expected, str(value).encode()), expected == _stored(current)
        if applied:
            if kind == "set":
                store[key] = arg
            elif kind == "incr":
                store[key] = result
            elif kind == "del":
                store.pop(key, None)
            elif kind == "cas" and result:
                store[key] = arg[1]
        point = 10 * i
        call = point - draw(st.integers(0, spread))
        ret = INF if unknown else point + draw(st.integers(0, spread))
        ops.append(Operation(draw(st.integers(0, 4)), kind, key, arg, result, call, ret))
    return ops


@settings(max_examples=150, deadline=None)
@given(real_histories())
def test_histories_of_a_real_register_are_accepted(ops):
    result = check(ops, max_steps=200_000)
    assert result.ok is True, result.explanation


@settings(max_examples=150, deadline=None)
@given(real_histories(), st.data())
def test_a_read_of_a_value_never_written_is_rejected(ops, data):
    reads = [i for i, o in enumerate(ops) if o.kind == "get" and o.known]
    if not reads:
        ops = ops + [get(None, -5, -4, key="a")]
        reads = [len(ops) - 1]
    i = data.draw(st.sampled_from(reads))
    mutated = list(ops)
    mutated[i] = dataclasses.replace(ops[i], result=b"never written")
    result = check(mutated, max_steps=200_000)
    assert result.ok is False
    assert result.key == ops[i].key


# -- size ------------------------------------------------------------------------------------


def test_thousands_of_mostly_sequential_operations_fit_the_budget():
    rng = random.Random(7)
    store: dict[str, bytes] = {}
    ops = []
    keys = [f"k{j}" for j in range(5)]
    for i in range(2000):
        key = rng.choice(keys)
        point = 10.0 * i
        # Mostly short calls; one in ten overlaps a few neighbours.
        call = point - (rng.uniform(0, 25) if rng.random() < 0.1 else rng.uniform(0, 4))
        ret = point + (rng.uniform(0, 25) if rng.random() < 0.1 else rng.uniform(0, 4))
        roll = rng.random()
        if roll < 0.02:
            value = f"lost-{i}".encode()
            ops.append(Operation(i % 7, "set", key, value, None, call, INF))
            if rng.random() < 0.5:
                store[key] = value
        elif roll < 0.5:
            value = f"v{i}".encode()
            store[key] = value
            ops.append(Operation(i % 7, "set", key, value, "OK", call, ret))
        else:
            ops.append(Operation(i % 7, "get", key, None, store.get(key), call, ret))
    result = check(ops, max_steps=200_000)
    assert result.ok is True, result.explanation


def _brute_force(ops):
    """Try every order that respects real time, each unknown operation optional."""

    def search(placed, state):
        if all(o.known is False or i in placed for i, o in enumerate(ops)):
            return True
        for i, x in enumerate(ops):
            if i in placed or any(
                j not in placed and y.known and y.ret < x.call for j, y in enumerate(ops)
            ):
                continue
            accepted, after = RegisterModel.step(state, x)
            if accepted and search(placed | {i}, after):
                return True
        return False

    return search(frozenset(), RegisterModel.init())


_small_values = st.sampled_from([None, b"1", b"2"])


@st.composite
def random_histories(draw):
    """Arbitrary small histories on one key, results drawn at random: often not linearizable."""
    ops = []
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["get", "set", "set", "incr", "del", "cas"]))
        arg = {
            "get": None,
            "set": draw(st.sampled_from([b"1", b"2"])),
            "incr": 1,
            "del": None,
            "cas": (draw(_small_values), draw(st.sampled_from([b"1", b"2"]))),
        }[kind]
        result = {
            "get": draw(_small_values),
            "set": "OK",
            "incr": draw(st.integers(1, 3)),
            "del": draw(st.integers(0, 1)),
            "cas": draw(st.booleans()),
        }[kind]
        call = draw(st.integers(0, 20))
        ret = INF if draw(st.integers(0, 5)) == 0 else call + draw(st.integers(0, 8))
        ops.append(Operation(0, kind, "k", arg, result, call, ret))
    return ops


@settings(max_examples=200, deadline=None)
@given(random_histories())
def test_agrees_with_trying_every_order(ops):
    assert check(ops).ok is _brute_force(ops)


def test_many_timed_out_writes_in_a_read_heavy_history_fit_the_budget():
    # Unknown writes never read stay pending to the end (the del keeps them relevant): the
    # search must not try every subset of them at every read.
    ops = [setv(b"v", 0, 1)]
    ops += [setv(f"lost{j}".encode(), 2 + j / 100, INF, client=j) for j in range(12)]
    ops += [get(b"v", 10 + i, 10.5 + i, client=99) for i in range(500)]
    ops += [op("del", None, 1, 5000, 5001)]
    result = check(ops, max_steps=100_000)
    assert result.ok is True, result.explanation
    late = [get(b"lost3", 6000, 6001)]
    assert check(ops + late, max_steps=100_000).ok is True
    result = check(ops + late + [get(b"v", 6002, 6003)], max_steps=300_000)
    assert result.ok is False, result.explanation
