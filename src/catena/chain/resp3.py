"""What a RESP3 client (HELLO 3, redis-py's default since 8.0) gets for the typed replies: the
shapes Redis 7.0 sends it. Scores are doubles (Python floats; the codec writes them as `,`
doubles), pairs are nested ([member, score] and [field, value]), HGETALL is a map.

The chain computes RESP2's shapes (they are what entries, the dedup table and peers carry);
the member reshapes a reply for its own client at the edge (`Shaped`, the reply token).
"""

from __future__ import annotations

from catena.resp.codec import NULL_ARRAY, Error


def _score(value):
    return None if value is None else float(value)


def _pairs(flat: list, second=_score) -> list:
    return [[flat[i], second(flat[i + 1])] for i in range(0, len(flat), 2)]


def _withscores(options_at):
    """A reply with WITHSCORES among the options (from `options_at(args)` on) as pairs."""
    def shape(args, reply):
        return _pairs(reply) if any(a.upper() == b"WITHSCORES" for a in args[options_at(args):]) else reply
    return shape


def _after_keys(args) -> int:
    """ZUNION/ZINTER/ZDIFF numkeys key ...: where the options begin (a key may be "withscores")."""
    try:
        return 2 + max(0, int(args[1]))
    except ValueError:
        return len(args)


_scored_range = _withscores(lambda args: 4)  # ZRANGE key min max [options]
_scored_combination = _withscores(_after_keys)


def _zpop(args, reply):
    """ZPOPMIN/MAX: one [member, score] without a count, else [[member, score], ...]."""
    return [reply[0], _score(reply[1])] if len(args) == 2 and reply else _pairs(reply)


def _mpop(args, reply):
    """ZMPOP/BZMPOP: [key, [[member, score], ...]]."""
    return [reply[0], [[m, _score(s)] for m, s in reply[1]]]


SHAPES = {
    b"ZSCORE": lambda a, r: _score(r),
    b"ZINCRBY": lambda a, r: _score(r),
    b"ZADD": lambda a, r: _score(r) if type(r) is bytes else r,  # INCR: the score, else a count
    b"ZMSCORE": lambda a, r: [_score(s) for s in r],
    b"ZRANGE": _scored_range,
    b"ZREVRANGE": _scored_range,
    b"ZRANGEBYSCORE": _scored_range,
    b"ZREVRANGEBYSCORE": _scored_range,
    b"ZUNION": _scored_combination,
    b"ZINTER": _scored_combination,
    b"ZDIFF": _scored_combination,
    b"ZRANDMEMBER": lambda a, r: _pairs(r) if len(a) == 4 and type(r) is list else r,
    b"ZPOPMIN": _zpop,
    b"ZPOPMAX": _zpop,
    b"ZMPOP": _mpop,
    b"BZMPOP": _mpop,
    b"BZPOPMIN": lambda a, r: [r[0], r[1], _score(r[2])],
    b"BZPOPMAX": lambda a, r: [r[0], r[1], _score(r[2])],
    b"HGETALL": lambda a, r: dict(zip(r[0::2], r[1::2])),
    b"HRANDFIELD": lambda a, r: _pairs(r, lambda v: v) if len(a) == 4 and type(r) is list else r,
}


class Shaped:
    """A reply token that reshapes the value it resolves with for a RESP3 client (errors and
    null arrays pass)."""

    __slots__ = ("deferred", "shape", "args")

    def __init__(self, deferred, shape, args):
        self.deferred, self.shape, self.args = deferred, shape, args

    def resolve(self, value) -> None:
        passes = type(value) is Error or value is NULL_ARRAY
        self.deferred.resolve(value if passes else self.shape(self.args, value))


def shaped(args, value):
    """`value`, the RESP2-shaped reply to `args`, as a RESP3 client gets it (inside EXEC too)."""
    shape = SHAPES.get(args[0].upper())
    if shape is None or type(value) is Error or value is NULL_ARRAY:
        return value
    return shape(list(args), value)


def token_for(deferred, args: list[bytes], resp3: bool):
    """The token a member's machine answers `args` through: the client's Deferred, or for a
    RESP3 client of a reshaped command a `Shaped` around it."""
    shape = SHAPES.get(args[0].upper()) if resp3 else None
    return deferred if shape is None else Shaped(deferred, shape, list(args))
