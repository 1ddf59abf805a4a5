"""Hashes: the H* commands as ops (built at the head), their application, and their reads.

A hash is a dict field -> value; a hash left without fields is deleted, as in Redis. Ops:

    (HSET, key, (f1, v1, ...), mode)      mode: 0 HSET (reply: new fields), 1 HMSET (OK), 2 HSETNX
    (HDEL, key, (f1, ...))
    (HINCRBY, key, field, delta)
    (HINCRBYFLOAT, key, field, incr)       incr: the argument's bytes, checked at the head
"""

from __future__ import annotations

from catena.chain.values import INF, format_long_double, of_type, parse_long_double, rand_pick, round_long_double
from catena.resp.codec import OK, Error
from catena.resp.commands import INT64_MAX, INT64_MIN, parse_int, wrong_args

HSET, HDEL, HINCRBY, HINCRBYFLOAT = 6, 7, 8, 9
_COUNT, _OK, _NX = 0, 1, 2

_NOT_FLOAT = Error("ERR value is not a valid float")
_NAN_OR_INF = Error("ERR value is NaN or Infinity")


def _b(v) -> bool:
    return type(v) is bytes


def _words(v, even: bool) -> bool:
    return type(v) is tuple and len(v) >= 1 and (not even or len(v) % 2 == 0) and all(map(_b, v))


SHAPES = {
    HSET: lambda op: len(op) == 4 and _b(op[1]) and _words(op[2], True) and op[3] in (_COUNT, _OK, _NX),
    HDEL: lambda op: len(op) == 3 and _b(op[1]) and _words(op[2], False),
    HINCRBY: lambda op: len(op) == 4 and _b(op[1]) and _b(op[2]) and type(op[3]) is int,
    HINCRBYFLOAT: lambda op: len(op) == 4 and _b(op[1]) and _b(op[2]) and _b(op[3]) and _increment(op[3]),
}


def _increment(raw: bytes) -> bool:
    """A finite long double, as the head checked it."""
    return parse_long_double(raw) not in (None, INF, -INF)


# -- the head: commands as ops --------------------------------------------------------------------


def _hset(mode: int):
    def build(args, now_ms):
        if len(args) % 2 == 1:
            return wrong_args(args[0].upper())
        return (HSET, args[1], tuple(args[2:]), mode)
    return build


def _hincrbyfloat(args, now_ms):
    incr = parse_long_double(args[3])
    if incr is None:
        return _NOT_FLOAT
    if incr in (INF, -INF):
        return _NAN_OR_INF
    return (HINCRBYFLOAT, args[1], args[2], args[3])


WRITES = {
    b"HSET": (-4, _hset(_COUNT)),
    b"HMSET": (-4, _hset(_OK)),
    b"HSETNX": (4, lambda a, now: (HSET, a[1], (a[2], a[3]), _NX)),
    b"HDEL": (-3, lambda a, now: (HDEL, a[1], tuple(a[2:]))),
    b"HINCRBY": (4, lambda a, now: (HINCRBY, a[1], a[2], parse_int(a[3]))),
    b"HINCRBYFLOAT": (4, _hincrbyfloat),
}


# -- every member: applying ops (WrongTypeError before any change) -------------------------------


def _apply_hset(state, op, ts):
    _, key, pairs, mode = op
    h = of_type(state.live(key, ts), dict)
    if mode == _NX and h is not None and pairs[0] in h:
        return 0
    if h is None:
        h = {}
        state.put(key, h)
    before = len(h)
    for i in range(0, len(pairs), 2):
        h[pairs[i]] = pairs[i + 1]
    return OK if mode == _OK else 1 if mode == _NX else len(h) - before


def _apply_hdel(state, op, ts):
    key = op[1]
    h = of_type(state.live(key, ts), dict)
    if h is None:
        return 0
    n = sum(1 for f in op[2] if h.pop(f, None) is not None)
    if not h:
        state.drop(key)
    return n


def _apply_hincrby(state, op, ts):
    _, key, field, delta = op
    h = of_type(state.live(key, ts), dict)
    old = h.get(field) if h is not None else None
    if old is None:
        n = delta
    else:
        try:
            n = parse_int(old) + delta
        except ValueError:
            return Error("ERR hash value is not an integer")
        if not INT64_MIN <= n <= INT64_MAX:
            return Error("ERR increment or decrement would overflow")
    _field_of(state, key, h)[field] = b"%d" % n
    return n


def _apply_hincrbyfloat(state, op, ts):
    _, key, field, incr = op
    h = of_type(state.live(key, ts), dict)
    old = h.get(field) if h is not None else None
    value = 0 if old is None else parse_long_double(old)
    if value is None:
        return Error("ERR hash value is not a float")
    total = INF if value in (INF, -INF) else round_long_double(value + parse_long_double(incr))
    if total in (INF, -INF):
        return Error("ERR increment would produce NaN or Infinity")
    text = format_long_double(total)
    _field_of(state, key, h)[field] = text
    return text


def _field_of(state, key, h) -> dict:
    """The hash `h` at `key`, created (empty) if there is none."""
    if h is None:
        h = {}
        state.put(key, h)
    return h


APPLY = {HSET: _apply_hset, HDEL: _apply_hdel, HINCRBY: _apply_hincrby, HINCRBYFLOAT: _apply_hincrbyfloat}


# -- reads ----------------------------------------------------------------------------------------


def _hash(state, key, now_ms) -> dict:
    return of_type(state.get(key, now_ms), dict) or {}


def _hgetall(s, a, now):
    return [w for pair in _hash(s, a[1], now).items() for w in pair]


def _hstrlen(s, a, now):
    return len(_hash(s, a[1], now).get(a[2], b""))


def hrandfield(s, a, now, rng):
    """HRANDFIELD key [count [WITHVALUES]] (`rand_pick`)."""
    return rand_pick(a, rng, lambda: _hash(s, a[1], now), b"WITHVALUES", lambda v: v)


READS = {
    b"HGET": (3, lambda a: (a[1],), lambda s, a, now: _hash(s, a[1], now).get(a[2])),
    b"HMGET": (-3, lambda a: (a[1],), lambda s, a, now: [_hash(s, a[1], now).get(f) for f in a[2:]]),
    b"HGETALL": (2, lambda a: (a[1],), _hgetall),
    b"HEXISTS": (3, lambda a: (a[1],), lambda s, a, now: int(a[2] in _hash(s, a[1], now))),
    b"HLEN": (2, lambda a: (a[1],), lambda s, a, now: len(_hash(s, a[1], now))),
    b"HKEYS": (2, lambda a: (a[1],), lambda s, a, now: list(_hash(s, a[1], now))),
    b"HVALS": (2, lambda a: (a[1],), lambda s, a, now: list(_hash(s, a[1], now).values())),
    b"HSTRLEN": (3, lambda a: (a[1],), _hstrlen),
}
