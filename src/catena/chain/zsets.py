"""Sorted sets: the Z* commands as ops (built at the head), their application, and their reads.

A sorted set is a `catena.chain.zset.ZSet`; one left empty is deleted, as in Redis. Ops:

    (ZADD, key, flags, (m1, ...), scores)  flags: NX XX GT LT CH INCR (ZINCRBY is ZADD INCR);
                                           scores: the members' doubles packed (`zset.packed`)
    (ZREM, key, (m1, ...))
    (ZPOP, key, max, count)                max: 0 ZPOPMIN, 1 ZPOPMAX; count -1: none given
    (ZREMRANGE, key, by, (start, stop))    by: 0 RANK, 1 SCORE, 2 LEX; the arguments' bytes
    (ZSTORE, dest, how, (numkeys, ...))    how: 0 ZINTERSTORE, 1 ZUNIONSTORE, 2 ZDIFFSTORE
    (ZRANGESTORE, dest, (src, min, max, ...))
    (ZMPOP, (key, ...), max, count)

The *STORE ops carry their arguments as given: Redis checks their sources' types before their
options, so they are parsed where the sources are, when applied (deterministically).
"""

from __future__ import annotations

import math

from catena.chain.lists import index_range, mpop_options
from catena.chain.values import WrongTypeError, numkeys_keys, of_type, pop_count, rand_pick
from catena.chain.zset import ZSet, format_score, lex_bound, packed, parse_bound, parse_score, unpacked
from catena.resp.codec import NULL_ARRAY, Error
from catena.resp.commands import parse_int

ZADD, ZREM, ZPOP, ZREMRANGE, ZSTORE, ZRANGESTORE, ZMPOP = range(23, 30)
NX, XX, GT, LT, CH, INCR = 1, 2, 4, 8, 16, 32
RANK, SCORE, LEX = 0, 1, 2
INTER, UNION, DIFF = 0, 1, 2

_SYNTAX = Error("ERR syntax error")
_NOT_FLOAT = Error("ERR value is not a valid float")
_NAN = Error("ERR resulting score is not a number (NaN)")
_NOT_A_FLOAT_RANGE = Error("ERR min or max is not a float")
_NOT_A_LEX_RANGE = Error("ERR min or max not valid string range item")


def _b(v) -> bool:
    return type(v) is bytes


def _words(v, least: int = 1) -> bool:
    return type(v) is tuple and len(v) >= least and all(map(_b, v))


def _scored(members, scores) -> bool:
    return (_words(members) and _b(scores) and len(scores) == 8 * len(members)
            and not any(map(math.isnan, unpacked(scores))))


def _parses(check) -> bool:
    """Do a peer's op's raw arguments parse as the head checked them?"""
    try:
        return type(check()) is not Error
    except ValueError:
        return False


SHAPES = {
    ZADD: lambda op: len(op) == 5 and _b(op[1]) and type(op[2]) is int and 0 <= op[2] < 64 and _scored(op[3], op[4]),
    ZREM: lambda op: len(op) == 3 and _b(op[1]) and _words(op[2]),
    ZPOP: lambda op: len(op) == 4 and _b(op[1]) and op[2] in (0, 1) and type(op[3]) is int and op[3] >= -1,
    ZREMRANGE: lambda op: (len(op) == 4 and _b(op[1]) and op[2] in (RANK, SCORE, LEX) and _words(op[3], 2)
                           and len(op[3]) == 2 and _parses(lambda: _bounds(op[2], *op[3]))),
    ZSTORE: lambda op: len(op) == 4 and _b(op[1]) and op[2] in (INTER, UNION, DIFF) and _words(op[3]),
    ZRANGESTORE: lambda op: len(op) == 3 and _b(op[1]) and _words(op[2], 3) and _parses(
        lambda: range_spec(op[2], 0, store=True)),
    ZMPOP: lambda op: len(op) == 4 and _words(op[1]) and op[2] in (0, 1) and type(op[3]) is int and op[3] >= 1,
}
KEYS = {ZMPOP: lambda op: op[1]}


# -- ranges: ZRANGE and its older forms, ZRANGESTORE, ZREMRANGEBY*, ZCOUNT, ZLEXCOUNT ------------


def _bounds(by: int, low: bytes, high: bytes):
    """A range's two ends parsed as `by` says, or Redis's error."""
    if by == RANK:
        return parse_int(low), parse_int(high)
    if by == SCORE:
        ends = []
        for raw in (low, high):
            ex = raw[:1] == b"("
            value = parse_bound(raw[1:] if ex else raw)
            if value is None or math.isnan(value):
                return _NOT_A_FLOAT_RANGE
            ends += [value, ex]
        return tuple(ends)
    ends = lex_bound(low, True), lex_bound(high, False)
    return _NOT_A_LEX_RANGE if False in ends else ends


def span(z: ZSet, by: int, bounds, rev: bool = False) -> tuple[int, int]:
    """The indexes [lo, hi) of a range's elements in `z.order` (walked from the top for `rev`)."""
    if by == RANK:
        return index_range(bounds[0], bounds[1], len(z))
    if by == SCORE:
        return z.score_span(*bounds)
    return z.lex_span(*bounds, rev)


def range_spec(a, at: int, by=None, rev=None, store: bool = False):
    """ZRANGE's arguments after the key at `a[at]` (min, max, options), checked in Redis's order:
    (by, rev, bounds, offset, limit, withscores), or Redis's error. The older forms fix `by`
    and `rev` (then BYSCORE/BYLEX/REV are syntax errors)."""
    withscores, offset, limit, i = False, 0, -1, at + 3
    while i < len(a):
        opt = a[i].upper()
        if opt == b"WITHSCORES" and not store:
            withscores = True
        elif opt == b"LIMIT" and len(a) - i - 1 >= 2:
            offset, limit = parse_int(a[i + 1]), parse_int(a[i + 2])
            i += 2
        elif opt == b"REV" and rev is None:
            rev = True
        elif opt in (b"BYSCORE", b"BYLEX") and by is None:
            by = SCORE if opt == b"BYSCORE" else LEX
        else:
            return _SYNTAX
        i += 1
    by, rev = by or RANK, bool(rev)
    if limit != -1 and by == RANK:
        return Error("ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX")
    if withscores and by == LEX:
        return Error("ERR syntax error, WITHSCORES not supported in combination with BYLEX")
    low, high = (a[at + 2], a[at + 1]) if rev and by != RANK else (a[at + 1], a[at + 2])
    bounds = _bounds(by, low, high)
    return bounds if type(bounds) is Error else (by, rev, bounds, offset, limit, withscores)


def in_range(z: ZSet | None, spec) -> list[tuple[float, bytes]]:
    """The (score, member) pairs of a range `spec`, in its direction, LIMIT applied."""
    by, rev, bounds, offset, limit, _ = spec
    if z is None:
        return []
    lo, hi = span(z, by, bounds, rev)
    if by != RANK:
        if offset < 0:  # Redis skips elements while its offset counts down: none are left
            return []
        count = hi - lo - offset if limit < 0 else min(limit, hi - lo - offset)
        if count <= 0:
            return []
        lo, hi = (hi - offset - count, hi - offset) if rev else (lo + offset, lo + offset + count)
    elif rev:
        lo, hi = len(z) - hi, len(z) - lo
    items = z.order[lo:hi]
    return items[::-1] if rev else items


def flat(pairs, withscores: bool) -> list:
    """(score, member) pairs as a reply: members, or member, score, member, score, ..."""
    if not withscores:
        return [m for _, m in pairs]
    return [w for s, m in pairs for w in (m, format_score(s))]


# -- ZUNION/ZINTER/ZDIFF and their *STORE forms, ZINTERCARD ----------------------------------------


def _aggregate(how: bytes, target: float, value: float) -> float:
    if how == b"SUM":
        total = target + value
        return 0.0 if math.isnan(total) else total
    if how == b"MIN":
        return value if value < target else target
    return value if value > target else target


def _scored_members(value) -> dict:
    """member -> score of a sorted set, or of a set (every score 1, as Redis counts them)."""
    if type(value) is ZSet:
        return value.scores
    return dict.fromkeys(value, 1.0)


def combine(lookup, a, at: int, how: int, name: bytes, store: bool = False, card: bool = False):
    """Z{UNION,INTER,DIFF}[STORE] and ZINTERCARD from `a[at]` (numkeys), checked in Redis's order
    (numkeys, the sources' types, then the options): (member -> score, withscores) or, for
    `card`, (the members, limit); else Redis's error. `lookup(key)` is a key's value."""
    try:
        n = parse_int(a[at])
    except ValueError:
        return Error("ERR value is not an integer or out of range")
    if n < 1:
        return Error(f"ERR at least 1 input key is needed for '{name.decode().lower()}' command")
    if n > len(a) - at - 1:
        return _SYNTAX
    sources = []
    for key in a[at + 1:at + 1 + n]:
        value = lookup(key)
        if value is not None and type(value) is not ZSet and type(value) is not set:
            raise WrongTypeError
        sources.append({} if value is None else _scored_members(value))
    weights, aggregate, withscores, limit, i = [1.0] * n, b"SUM", False, 0, at + 1 + n
    while i < len(a):
        opt, left = a[i].upper(), len(a) - i
        if card and opt == b"LIMIT" and left >= 2:
            try:
                limit = parse_int(a[i + 1])
            except ValueError:
                limit = -1
            if limit < 0:
                return Error("ERR LIMIT can't be negative")
            i += 2
        elif not card and how != DIFF and opt == b"WEIGHTS" and left >= n + 1:
            weights = [parse_score(w) for w in a[i + 1:i + 1 + n]]
            if None in weights:
                return Error("ERR weight value is not a float")
            i += n + 1
        elif not card and how != DIFF and opt == b"AGGREGATE" and left >= 2:
            aggregate = a[i + 1].upper()
            if aggregate not in (b"SUM", b"MIN", b"MAX"):
                return _SYNTAX
            i += 2
        elif not card and not store and opt == b"WITHSCORES":
            withscores = True
            i += 1
        else:
            return _SYNTAX
    result = _combined(how, list(zip(sources, weights)), aggregate)
    return (result, limit) if card else (result, withscores)


def _combined(how: int, sources: list, aggregate: bytes) -> dict:
    if how == DIFF:
        first, rest = sources[0][0], [s for s, _ in sources[1:]]
        return {m: s for m, s in first.items() if not any(m in other for other in rest)}
    sources.sort(key=lambda sw: len(sw[0]))  # smallest first, as Redis (a stable sort)
    out: dict = {}
    if how == INTER:
        (first, w0), rest = sources[0], sources[1:]
        for m, s in first.items():
            score = s * w0
            if math.isnan(score):
                score = 0.0
            for other, w in rest:
                if m not in other:
                    break
                score = _aggregate(aggregate, score, other[m] * w)
            else:
                out[m] = score
        return out
    for members, w in sources:
        for m, s in members.items():
            score = s * w
            if math.isnan(score):
                score = 0.0
            out[m] = _aggregate(aggregate, out[m], score) if m in out else score
    return out


def ordered(members: dict) -> list[tuple[float, bytes]]:
    return sorted((s, m) for m, s in members.items())


# -- the head: commands as ops --------------------------------------------------------------------


_ZADD_FLAGS = {b"NX": NX, b"XX": XX, b"GT": GT, b"LT": LT, b"CH": CH, b"INCR": INCR}


def _zadd(args, now_ms, flags: int = 0, at: int = 2):
    """ZADD key [NX|XX] [GT|LT] [CH] [INCR] score member [score member ...]."""
    while at < len(args) and args[at].upper() in _ZADD_FLAGS:
        flags |= _ZADD_FLAGS[args[at].upper()]
        at += 1
    pairs = args[at:]
    if not pairs or len(pairs) % 2:
        return _SYNTAX
    if flags & NX and flags & XX:
        return Error("ERR XX and NX options at the same time are not compatible")
    if flags & GT and flags & (LT | NX) or flags & LT and flags & NX:
        return Error("ERR GT, LT, and/or NX options at the same time are not compatible")
    if flags & INCR and len(pairs) > 2:
        return Error("ERR INCR option supports a single increment-element pair")
    scores = [parse_score(s) for s in pairs[0::2]]
    if None in scores:
        return _NOT_FLOAT
    return (ZADD, args[1], flags, tuple(pairs[1::2]), packed(scores))


def _zpop(top: int):
    def build(args, now_ms):
        count = pop_count(args, _SYNTAX)
        return count if type(count) is Error else (ZPOP, args[1], top, count)
    return build


def _zremrange(by: int):
    def build(args, now_ms):
        bounds = _bounds(by, args[2], args[3])
        return bounds if type(bounds) is Error else (ZREMRANGE, args[1], by, (args[2], args[3]))
    return build


def _zrangestore(args, now_ms):
    spec = range_spec(args, 2, store=True)
    return spec if type(spec) is Error else (ZRANGESTORE, args[1], tuple(args[2:]))


def _zmpop(args, now_ms):
    parsed = mpop_options(args, 1, {b"MIN": 0, b"MAX": 1})
    return parsed if type(parsed) is Error else (ZMPOP, *parsed)


WRITES = {
    b"ZADD": (-4, _zadd),
    b"ZINCRBY": (4, lambda a, now: _zadd(a, now, INCR)),
    b"ZREM": (-3, lambda a, now: (ZREM, a[1], tuple(a[2:]))),
    b"ZPOPMIN": (-2, _zpop(0)),
    b"ZPOPMAX": (-2, _zpop(1)),
    b"ZREMRANGEBYRANK": (4, _zremrange(RANK)),
    b"ZREMRANGEBYSCORE": (4, _zremrange(SCORE)),
    b"ZREMRANGEBYLEX": (4, _zremrange(LEX)),
    b"ZINTERSTORE": (-4, lambda a, now: (ZSTORE, a[1], INTER, tuple(a[2:]))),
    b"ZUNIONSTORE": (-4, lambda a, now: (ZSTORE, a[1], UNION, tuple(a[2:]))),
    b"ZDIFFSTORE": (-4, lambda a, now: (ZSTORE, a[1], DIFF, tuple(a[2:]))),
    b"ZRANGESTORE": (-5, _zrangestore),
    b"ZMPOP": (-4, _zmpop),
}
_STORE_NAMES = {INTER: b"ZINTERSTORE", UNION: b"ZUNIONSTORE", DIFF: b"ZDIFFSTORE"}


# -- every member: applying ops (WrongTypeError before any change) -------------------------------


def _zset(state, key, ts) -> ZSet | None:
    return of_type(state.live(key, ts), ZSet)


def _apply_zadd(state, op, ts):
    _, key, flags, members, scores = op
    z = _zset(state, key, ts)
    if z is None:
        if flags & XX:
            return None if flags & INCR else 0
        z = ZSet()
        state.put(key, z)
    added = updated = processed = 0
    score = None
    for member, new in zip(members, unpacked(scores)):
        current = z.scores.get(member)
        if current is None:
            if flags & XX:
                continue
            z.add(member, new)
            added += 1
        else:
            if flags & NX:
                continue
            if flags & INCR:
                new += current
                if math.isnan(new):
                    return _NAN
            if flags & LT and new >= current or flags & GT and new <= current:
                continue
            if new != current:
                z.add(member, new)
                updated += 1
        processed += 1
        score = new
    if flags & INCR:
        return format_score(score) if processed else None
    return added + updated if flags & CH else added


def _stored(state, key, pairs) -> int:
    """`key` holds the sorted set of (score, member) `pairs` now (deleted when there are none)."""
    if pairs:
        z = ZSet()
        for s, m in pairs:
            z.add(m, s)
        state.store(key, z)
    else:
        state.drop(key)
    return len(pairs)


def _drop_empty(state, key, z) -> None:
    if not z:
        state.drop(key)


def _apply_zrem(state, op, ts):
    z = _zset(state, op[1], ts)
    if z is None:
        return 0
    n = sum(z.remove(m) for m in op[2])
    _drop_empty(state, op[1], z)
    return n


def popped(state, key, z: ZSet, top: int, count: int) -> list[tuple[float, bytes]]:
    """Up to `count` lowest (or highest) elements taken off `z` at `key` (deleted once empty)."""
    order = z.order
    pairs = [order[-1 - i] if top else order[i] for i in range(min(count, len(z)))]
    for _, m in pairs:
        z.remove(m)
    _drop_empty(state, key, z)
    return pairs


def _apply_zpop(state, op, ts):
    _, key, top, count = op
    z = _zset(state, key, ts)
    return [] if z is None or count == 0 else flat(popped(state, key, z, top, max(count, 1)), True)


def _apply_zremrange(state, op, ts):
    _, key, by, (low, high) = op
    bounds = _bounds(by, low, high)
    z = _zset(state, key, ts)
    if z is None:
        return 0
    lo, hi = span(z, by, bounds)
    for _, m in z.order[lo:hi]:
        z.remove(m)
    _drop_empty(state, key, z)
    return hi - lo


def _apply_zstore(state, op, ts):
    _, dst, how, args = op
    result = combine(lambda k: state.live(k, ts), args, 0, how, _STORE_NAMES[how], store=True)
    if type(result) is Error:
        return result
    state.live(dst, ts)
    return _stored(state, dst, ordered(result[0]))


def _apply_zrangestore(state, op, ts):
    _, dst, args = op
    spec = range_spec(args, 0, store=True)
    pairs = in_range(_zset(state, args[0], ts), spec)
    state.live(dst, ts)
    return _stored(state, dst, pairs)


def _apply_zmpop(state, op, ts):
    _, keys, top, count = op
    for key in keys:
        z = _zset(state, key, ts)
        if z is not None:
            return [key, [[m, format_score(s)] for s, m in popped(state, key, z, top, count)]]
    return NULL_ARRAY


APPLY = {ZADD: _apply_zadd, ZREM: _apply_zrem, ZPOP: _apply_zpop, ZREMRANGE: _apply_zremrange,
         ZSTORE: _apply_zstore, ZRANGESTORE: _apply_zrangestore, ZMPOP: _apply_zmpop}


# -- reads ----------------------------------------------------------------------------------------


def _read_zset(state, key, now_ms) -> ZSet | None:
    return of_type(state.get(key, now_ms), ZSet)


def _zrange(by=None, rev=None):
    def answer(s, a, now):
        spec = range_spec(a, 1, by, rev)
        if type(spec) is Error:
            return spec
        return flat(in_range(_read_zset(s, a[1], now), spec), spec[5])
    return answer


def _count_in(by: int):
    def answer(s, a, now):
        bounds = _bounds(by, a[2], a[3])
        if type(bounds) is Error:
            return bounds
        z = _read_zset(s, a[1], now)
        if z is None:
            return 0
        lo, hi = span(z, by, bounds)
        return hi - lo
    return answer


def _zrank(rev: bool):
    def answer(s, a, now):
        z = _read_zset(s, a[1], now)
        rank = None if z is None else z.rank(a[2])
        return None if rank is None else len(z) - 1 - rank if rev else rank
    return answer


def _zscore(s, a, now):
    z = _read_zset(s, a[1], now)
    score = None if z is None else z.scores.get(a[2])
    return None if score is None else format_score(score)


def _zmscore(s, a, now):
    z = _read_zset(s, a[1], now)
    scores = {} if z is None else z.scores
    return [None if m not in scores else format_score(scores[m]) for m in a[2:]]


def _combine_read(how: int, name: bytes):
    def answer(s, a, now):
        result = combine(lambda k: s.get(k, now), a, 1, how, name)
        return result if type(result) is Error else flat(ordered(result[0]), result[1])
    return answer


def _zintercard(s, a, now):
    result = combine(lambda k: s.get(k, now), a, 1, INTER, b"ZINTERCARD", card=True)
    if type(result) is Error:
        return result
    members, limit = result
    return min(len(members), limit) if limit else len(members)


def zrandmember(s, a, now, rng):
    """ZRANDMEMBER key [count [WITHSCORES]], as HRANDFIELD."""
    def members():
        z = _read_zset(s, a[1], now)
        return {} if z is None else z.scores
    return rand_pick(a, rng, members, b"WITHSCORES", format_score)


def _one(a):
    return (a[1],)


READS = {
    b"ZRANGE": (-4, _one, _zrange()),
    b"ZREVRANGE": (-4, _one, _zrange(RANK, True)),
    b"ZRANGEBYSCORE": (-4, _one, _zrange(SCORE, False)),
    b"ZREVRANGEBYSCORE": (-4, _one, _zrange(SCORE, True)),
    b"ZRANGEBYLEX": (-4, _one, _zrange(LEX, False)),
    b"ZREVRANGEBYLEX": (-4, _one, _zrange(LEX, True)),
    b"ZCOUNT": (4, _one, _count_in(SCORE)),
    b"ZLEXCOUNT": (4, _one, _count_in(LEX)),
    b"ZRANK": (3, _one, _zrank(False)),
    b"ZREVRANK": (3, _one, _zrank(True)),
    b"ZSCORE": (3, _one, _zscore),
    b"ZMSCORE": (-3, _one, _zmscore),
    b"ZCARD": (2, _one, lambda s, a, now: len(_read_zset(s, a[1], now) or ())),
    b"ZUNION": (-3, numkeys_keys, _combine_read(UNION, b"ZUNION")),
    b"ZINTER": (-3, numkeys_keys, _combine_read(INTER, b"ZINTER")),
    b"ZDIFF": (-3, numkeys_keys, _combine_read(DIFF, b"ZDIFF")),
    b"ZINTERCARD": (-3, numkeys_keys, _zintercard),
}
