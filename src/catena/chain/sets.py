"""Sets: the S* commands as ops (built at the head), their application, and their reads.

A set is a Python set of members; a set left empty is deleted, as in Redis. Ops:

    (SADD, key, (m1, ...))
    (SREM, key, (m1, ...))
    (SPOP, key, (m1, ...), count)      the members the head chose (`decide`); count -1: no count
    (SMOVE, source, destination, member)
    (SSTORE, destination, how, (key, ...))   how: 0 SINTERSTORE, 1 SUNIONSTORE, 2 SDIFFSTORE

SPOP is random: `to_op` leaves its members None and the head, just before it gives the op a
seq, `decide`s them from its state with the randomness its shell gave it, so every member
removes the same ones.
"""

from __future__ import annotations

from catena.chain.values import COUNT_RANGE, draws, numkeys_keys, of_type, pop_count, sample
from catena.resp.codec import Error
from catena.resp.commands import INT64_MIN, parse_int

SADD, SREM, SPOP, SMOVE, SSTORE = 10, 11, 12, 13, 14
INTER, UNION, DIFF = 0, 1, 2

_SYNTAX = Error("ERR syntax error")


def _b(v) -> bool:
    return type(v) is bytes


def _words(v, least: int = 1) -> bool:
    return type(v) is tuple and len(v) >= least and all(map(_b, v))


SHAPES = {
    SADD: lambda op: len(op) == 3 and _b(op[1]) and _words(op[2]),
    SREM: lambda op: len(op) == 3 and _b(op[1]) and _words(op[2]),
    SPOP: lambda op: len(op) == 4 and _b(op[1]) and _words(op[2], 0) and type(op[3]) is int and op[3] >= -1,
    SMOVE: lambda op: len(op) == 4 and _b(op[1]) and _b(op[2]) and _b(op[3]),
    SSTORE: lambda op: len(op) == 4 and _b(op[1]) and op[2] in (INTER, UNION, DIFF) and _words(op[3]),
}


# -- the head: commands as ops --------------------------------------------------------------------


def _spop(args, now_ms):
    count = pop_count(args, _SYNTAX)
    return count if type(count) is Error else (SPOP, args[1], None, count)


def decide(state, op, ts: int, rng):
    """The head, before `op` gets a seq: an SPOP's members chosen with `rng` (others as they are)."""
    if op[0] != SPOP or op[2] is not None:
        return op
    _, key, _, count = op
    s = state.get(key, ts)
    if type(s) is not set:  # no key, or the wrong type: applying it answers that
        return (SPOP, key, (), count)
    want = 1 if count == -1 else count
    return (SPOP, key, tuple(s) if want >= len(s) else tuple(sample(rng, s, want)), count)


WRITES = {
    b"SADD": (-3, lambda a, now: (SADD, a[1], tuple(a[2:]))),
    b"SREM": (-3, lambda a, now: (SREM, a[1], tuple(a[2:]))),
    b"SPOP": (-2, _spop),
    b"SMOVE": (4, lambda a, now: (SMOVE, a[1], a[2], a[3])),
    b"SINTERSTORE": (-3, lambda a, now: (SSTORE, a[1], INTER, tuple(a[2:]))),
    b"SUNIONSTORE": (-3, lambda a, now: (SSTORE, a[1], UNION, tuple(a[2:]))),
    b"SDIFFSTORE": (-3, lambda a, now: (SSTORE, a[1], DIFF, tuple(a[2:]))),
}


# -- every member: applying ops (WrongTypeError before any change) -------------------------------


def _apply_sadd(state, op, ts):
    key = op[1]
    s = of_type(state.live(key, ts), set)
    if s is None:
        s = set()
        state.put(key, s)
    before = len(s)
    s.update(op[2])
    return len(s) - before


def _remove(state, key, s: set, members) -> int:
    before = len(s)
    s.difference_update(members)
    if not s:
        state.drop(key)
    return before - len(s)


def _apply_srem(state, op, ts):
    s = of_type(state.live(op[1], ts), set)
    return 0 if s is None else _remove(state, op[1], s, op[2])


def _apply_spop(state, op, ts):
    _, key, members, count = op
    s = of_type(state.live(key, ts), set)
    if s is None:
        return None if count == -1 else []
    _remove(state, key, s, members)
    return list(members) if count != -1 else members[0] if members else None


def _apply_smove(state, op, ts):
    _, src, dst, member = op
    source = of_type(state.live(src, ts), set)
    if source is None:
        return 0
    target = of_type(state.live(dst, ts), set)
    if src == dst:
        return int(member in source)
    if member not in source:
        return 0
    _remove(state, src, source, (member,))
    if target is None:
        target = set()
        state.put(dst, target)
    target.add(member)
    return 1


def _apply_sstore(state, op, ts):
    _, dst, how, keys = op
    result = combine(how, [state.live(k, ts) for k in keys])
    if result:
        state.store(dst, result)
    else:
        state.live(dst, ts)
        state.drop(dst)
    return len(result)


def combine(how: int, values: list) -> set:
    """The intersection, union or difference (the first minus the others) of sets at keys whose
    values are `values` (None: no key, an empty set); WrongTypeError for a value of another type."""
    sets = [of_type(v, set) for v in values]
    if how == INTER:
        if any(s is None for s in sets):
            return set()
        smallest = min(sets, key=len)
        return smallest.intersection(*(s for s in sets if s is not smallest))
    present = [s for s in sets if s is not None]
    if how == UNION:
        return set().union(*present)
    return set() if sets[0] is None else sets[0].difference(*present[1:])


APPLY = {SADD: _apply_sadd, SREM: _apply_srem, SPOP: _apply_spop, SMOVE: _apply_smove, SSTORE: _apply_sstore}


# -- reads ----------------------------------------------------------------------------------------


def _set(state, key, now_ms) -> set:
    return of_type(state.get(key, now_ms), set) or set()


def _combined(how: int):
    return lambda s, a, now: list(combine(how, [s.get(k, now) for k in a[1:]]))


def _sintercard(s, a, now):
    """SINTERCARD numkeys key [key ...] [LIMIT limit]."""
    try:
        n = parse_int(a[1])
    except ValueError:
        n = 0
    if n < 1:
        return Error("ERR numkeys should be greater than 0")
    if n > len(a) - 2:
        return Error("ERR Number of keys can't be greater than number of args")
    limit, rest = 0, a[2 + n:]
    while rest:
        if rest[0].upper() != b"LIMIT" or len(rest) < 2:
            return _SYNTAX
        try:
            limit = parse_int(rest[1])
        except ValueError:
            limit = -1
        if limit < 0:
            return Error("ERR LIMIT can't be negative")
        rest = rest[2:]
    found = len(combine(INTER, [s.get(k, now) for k in a[2:2 + n]]))
    return min(found, limit) if limit else found


def srandmember(s, a, now, rng):
    """SRANDMEMBER key [count]: distinct members for a count >= 0, with repeats for a negative one."""
    if len(a) > 3:
        return _SYNTAX
    if len(a) == 2:
        members = _set(s, a[1], now)
        return draws(rng, members, 1)[0] if members else None
    count = parse_int(a[2])
    if count == INT64_MIN:
        return COUNT_RANGE
    members = _set(s, a[1], now)
    if not members or count == 0:
        return []
    if count >= len(members):
        return list(members)
    return sample(rng, members, count) if count > 0 else draws(rng, members, -count)


def _smismember(s, a, now):
    members = _set(s, a[1], now)
    return [int(m in members) for m in a[2:]]


READS = {
    b"SMEMBERS": (2, lambda a: (a[1],), lambda s, a, now: list(_set(s, a[1], now))),
    b"SISMEMBER": (3, lambda a: (a[1],), lambda s, a, now: int(a[2] in _set(s, a[1], now))),
    b"SMISMEMBER": (-3, lambda a: (a[1],), _smismember),
    b"SCARD": (2, lambda a: (a[1],), lambda s, a, now: len(_set(s, a[1], now))),
    b"SINTER": (-2, lambda a: tuple(a[1:]), _combined(INTER)),
    b"SUNION": (-2, lambda a: tuple(a[1:]), _combined(UNION)),
    b"SDIFF": (-2, lambda a: tuple(a[1:]), _combined(DIFF)),
    b"SINTERCARD": (-3, numkeys_keys, _sintercard),
}
