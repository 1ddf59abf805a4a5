"""The chain fuzzer's commands for lists, sorted sets, strings and SORT (`BUILD`: name -> builder(Commands)).

Mostly keys of the command's own type (so writes pile up and reads see them), sometimes any key
(so types collide); indexes and counts around the edges Redis treats specially.
"""

from __future__ import annotations

ELEMENTS = (b"a", b"b", b"c", b"1", b"-1", b"", b"a\x00b")
INDEXES = (b"0", b"1", b"-1", b"2", b"-2", b"5", b"-5", b"100", b"-100")


def _lkey(c) -> bytes:
    return b"l%d" % c.rng.randrange(4) if c.rng.random() < 0.75 else c.key()


def _element(c) -> bytes:
    return c.rng.choice(ELEMENTS) if c.rng.random() < 0.85 else c.value()


def _elements(c, most: int = 5) -> list[bytes]:
    return [_element(c) for _ in range(c.rng.randrange(1, most))]


def _index(c) -> bytes:
    return c.rng.choice(INDEXES) if c.rng.random() < 0.85 else c.integer()


def _end(c) -> bytes:
    return c.rng.choice((b"LEFT", b"RIGHT", b"left", b"right", b"MIDDLE"))


def _pop(name: bytes):
    def build(c) -> list[bytes]:
        return [name, _lkey(c)] + ([_count(c)] if c.rng.random() < 0.5 else [])
    return build


def _count(c) -> bytes:
    return c.rng.choice((b"0", b"1", b"2", b"3", b"10", b"-1")) if c.rng.random() < 0.85 else c.integer()


def _lpos(c) -> list[bytes]:
    cmd = [b"LPOS", _lkey(c), _element(c)]
    for _ in range(c.rng.choice((0, 0, 1, 2, 3))):
        cmd += [c.rng.choice((b"RANK", b"COUNT", b"MAXLEN", b"rank", b"BAD")),
                c.rng.choice((b"0", b"1", b"2", b"-1", b"-2", b"3", b"x", b"-9223372036854775808"))]
    return cmd


def mpop(name: bytes, key):
    """LMPOP/ZMPOP numkeys key... where [COUNT n], sometimes malformed."""
    def build(c) -> list[bytes]:
        keys = [key(c) for _ in range(c.rng.randrange(1, 4))]
        numkeys = b"%d" % len(keys) if c.rng.random() < 0.85 else c.rng.choice((b"0", b"-1", b"9", b"x"))
        where = (_end(c) if name == b"LMPOP" else c.rng.choice((b"MIN", b"MAX", b"min", b"BAD")))
        cmd = [name, numkeys, *keys, where]
        if c.rng.random() < 0.5:
            cmd += [c.rng.choice((b"COUNT", b"count", b"BAD")), _count(c)]
        return cmd
    return build


LISTS = {
    b"LPUSH": lambda c: [b"LPUSH", _lkey(c), *_elements(c)],
    b"RPUSH": lambda c: [b"RPUSH", _lkey(c), *_elements(c)],
    b"LPUSHX": lambda c: [b"LPUSHX", _lkey(c), *_elements(c)],
    b"RPUSHX": lambda c: [b"RPUSHX", _lkey(c), *_elements(c)],
    b"LPOP": _pop(b"LPOP"),
    b"RPOP": _pop(b"RPOP"),
    b"LSET": lambda c: [b"LSET", _lkey(c), _index(c), _element(c)],
    b"LREM": lambda c: [b"LREM", _lkey(c), _index(c), _element(c)],
    b"LINSERT": lambda c: [b"LINSERT", _lkey(c), c.rng.choice((b"BEFORE", b"AFTER", b"after", b"BAD")),
                           _element(c), _element(c)],
    b"LTRIM": lambda c: [b"LTRIM", _lkey(c), _index(c), _index(c)],
    b"LMOVE": lambda c: [b"LMOVE", _lkey(c), _lkey(c), _end(c), _end(c)],
    b"RPOPLPUSH": lambda c: [b"RPOPLPUSH", _lkey(c), _lkey(c)],
    b"LMPOP": mpop(b"LMPOP", _lkey),
    b"LRANGE": lambda c: [b"LRANGE", _lkey(c), _index(c), _index(c)],
    b"LINDEX": lambda c: [b"LINDEX", _lkey(c), _index(c)],
    b"LLEN": lambda c: [b"LLEN", _lkey(c)],
    b"LPOS": _lpos,
}

SCORES = (b"0", b"1", b"2", b"-1", b"1.5", b"-2.5", b"inf", b"-inf", b"+inf", b"1e308", b"3e-2", b"0x10",
          b"nan", b"abc", b" 1", b"", b"1e400", b"1e-400", b"-0", b"5e-324", b"1\x00")
BOUNDS = (b"-inf", b"+inf", b"0", b"1", b"(1", b"(0", b"2", b"-1", b"(-1", b"1.5", b"(inf", b"x", b"", b" 1",
          b"(", b"nan", b"1e400")
LEX = (b"-", b"+", b"[a", b"(a", b"[b", b"(c", b"[", b"(", b"a", b"[1", b"(-1")


def _zkey(c) -> bytes:
    return b"z%d" % c.rng.randrange(4) if c.rng.random() < 0.75 else c.key()


def _member(c) -> bytes:
    return c.rng.choice(ELEMENTS) if c.rng.random() < 0.9 else c.value()


def _score(c) -> bytes:
    return c.rng.choice(SCORES[:10]) if c.rng.random() < 0.8 else c.rng.choice(SCORES + (c.integer(),))


def _zadd(c) -> list[bytes]:
    cmd = [b"ZADD", _zkey(c)]
    for _ in range(c.rng.choice((0, 0, 0, 1, 1, 2))):
        cmd.append(c.rng.choice((b"NX", b"XX", b"GT", b"LT", b"CH", b"INCR", b"ch")))
    for _ in range(c.rng.choice((1, 1, 2, 3)) if b"INCR" not in cmd or c.rng.random() < 0.1 else 1):
        cmd += [_score(c), _member(c)]
    return cmd


def _bound(c, by: bytes) -> bytes:
    if by == b"BYLEX":
        return c.rng.choice(LEX)
    if by == b"BYSCORE":
        return c.rng.choice(BOUNDS)
    return _index(c)


def _range(name: bytes, by: bytes | None, store: bool = False):
    """ZRANGE-like: key (or dst src) min max, with options where the form allows them."""
    def build(c) -> list[bytes]:
        kind = by or c.rng.choice((b"", b"BYSCORE", b"BYLEX"))
        cmd = [name] + ([_zkey(c)] if store else []) + [_zkey(c), _bound(c, kind), _bound(c, kind)]
        if by is None and kind and c.rng.random() < 0.9:
            cmd.append(kind)
        options = (b"WITHSCORES", b"LIMIT", b"REV", b"BAD") if by is None else (b"WITHSCORES", b"LIMIT")
        for _ in range(c.rng.choice((0, 1, 1, 2))):
            opt = c.rng.choice(options)
            cmd.append(opt)
            if opt == b"LIMIT":
                cmd += [c.rng.choice((b"0", b"1", b"-1", b"2", b"x")), c.rng.choice((b"1", b"2", b"-1", b"0", b"5"))]
        return cmd
    return build


def _combine(name: bytes, store: bool):
    def build(c) -> list[bytes]:
        keys = [_zkey(c) if c.rng.random() < 0.85 else b"s%d" % c.rng.randrange(2) for _ in range(c.rng.randrange(1, 4))]
        numkeys = b"%d" % len(keys) if c.rng.random() < 0.9 else c.rng.choice((b"0", b"-1", b"9", b"x"))
        cmd = [name] + ([_zkey(c)] if store else []) + [numkeys, *keys]
        for _ in range(c.rng.choice((0, 0, 1, 2))):
            opt = c.rng.choice((b"WEIGHTS", b"AGGREGATE", b"WITHSCORES", b"LIMIT", b"BAD"))
            cmd.append(opt)
            if opt == b"WEIGHTS":
                cmd += [c.rng.choice((b"1", b"2", b"0", b"-1", b"0.5", b"inf", b"x")) for _ in keys]
            elif opt == b"AGGREGATE":
                cmd.append(c.rng.choice((b"SUM", b"MIN", b"MAX", b"max", b"AVG")))
            elif opt == b"LIMIT":
                cmd.append(c.rng.choice((b"0", b"1", b"-1", b"x")))
        return cmd
    return build


def _zpop(name: bytes):
    def build(c) -> list[bytes]:
        return [name, _zkey(c)] + ([_count(c)] if c.rng.random() < 0.6 else [])
    return build


def _zrandmember(c) -> list[bytes]:
    cmd = [b"ZRANDMEMBER", _zkey(c)]
    if c.rng.random() < 0.7:
        cmd.append(c.rng.choice((b"0", b"1", b"2", b"5", b"-1", b"-3", b"100", b"x", b"-9223372036854775808")))
        if c.rng.random() < 0.5:
            cmd.append(c.rng.choice((b"WITHSCORES", b"withscores", b"BAD")))
    return cmd


def _zscan(c) -> list[bytes]:
    cmd = [b"ZSCAN", _zkey(c), c.rng.choice((b"0", b"0", b"7", b"-1", b"x"))]
    if c.rng.random() < 0.4:
        cmd += [c.rng.choice((b"COUNT", b"MATCH", b"TYPE")), c.rng.choice((b"1", b"100", b"0", b"a*", b"x"))]
    return cmd


ZSETS = {
    b"ZADD": _zadd,
    b"ZINCRBY": lambda c: [b"ZINCRBY", _zkey(c), _score(c), _member(c)],
    b"ZREM": lambda c: [b"ZREM", _zkey(c), *[_member(c) for _ in range(c.rng.randrange(1, 4))]],
    b"ZPOPMIN": _zpop(b"ZPOPMIN"),
    b"ZPOPMAX": _zpop(b"ZPOPMAX"),
    b"ZREMRANGEBYRANK": lambda c: [b"ZREMRANGEBYRANK", _zkey(c), _index(c), _index(c)],
    b"ZREMRANGEBYSCORE": lambda c: [b"ZREMRANGEBYSCORE", _zkey(c), _bound(c, b"BYSCORE"), _bound(c, b"BYSCORE")],
    b"ZREMRANGEBYLEX": lambda c: [b"ZREMRANGEBYLEX", _zkey(c), _bound(c, b"BYLEX"), _bound(c, b"BYLEX")],
    b"ZINTERSTORE": _combine(b"ZINTERSTORE", True),
    b"ZUNIONSTORE": _combine(b"ZUNIONSTORE", True),
    b"ZDIFFSTORE": _combine(b"ZDIFFSTORE", True),
    b"ZRANGESTORE": _range(b"ZRANGESTORE", None, store=True),
    b"ZMPOP": mpop(b"ZMPOP", _zkey),
    b"ZRANGE": _range(b"ZRANGE", None),
    b"ZREVRANGE": _range(b"ZREVRANGE", b""),
    b"ZRANGEBYSCORE": _range(b"ZRANGEBYSCORE", b"BYSCORE"),
    b"ZREVRANGEBYSCORE": _range(b"ZREVRANGEBYSCORE", b"BYSCORE"),
    b"ZRANGEBYLEX": _range(b"ZRANGEBYLEX", b"BYLEX"),
    b"ZREVRANGEBYLEX": _range(b"ZREVRANGEBYLEX", b"BYLEX"),
    b"ZCOUNT": lambda c: [b"ZCOUNT", _zkey(c), _bound(c, b"BYSCORE"), _bound(c, b"BYSCORE")],
    b"ZLEXCOUNT": lambda c: [b"ZLEXCOUNT", _zkey(c), _bound(c, b"BYLEX"), _bound(c, b"BYLEX")],
    b"ZRANK": lambda c: [b"ZRANK", _zkey(c), _member(c)],
    b"ZREVRANK": lambda c: [b"ZREVRANK", _zkey(c), _member(c)],
    b"ZSCORE": lambda c: [b"ZSCORE", _zkey(c), _member(c)],
    b"ZMSCORE": lambda c: [b"ZMSCORE", _zkey(c), *[_member(c) for _ in range(c.rng.randrange(1, 4))]],
    b"ZCARD": lambda c: [b"ZCARD", _zkey(c)],
    b"ZUNION": _combine(b"ZUNION", False),
    b"ZINTER": _combine(b"ZINTER", False),
    b"ZDIFF": _combine(b"ZDIFF", False),
    b"ZINTERCARD": _combine(b"ZINTERCARD", False),
    b"ZRANDMEMBER": _zrandmember,
    b"ZSCAN": _zscan,
}

def _skey(c) -> bytes:
    """Mostly the plain keys strings live at, sometimes a list's or a sorted set's."""
    return c.key() if c.rng.random() < 0.85 else c.rng.choice((_lkey, _zkey))(c)


def _piece(c) -> bytes:
    return c.rng.choice((b"", b"a", b"xyz", b"\x00\xff", b"10", b"1.5")) if c.rng.random() < 0.7 else c.value()


def _getex(c) -> list[bytes]:
    cmd = [b"GETEX", _skey(c)]
    for _ in range(c.rng.choice((0, 1, 1, 2))):
        opt = c.rng.choice((b"EX", b"PX", b"EXAT", b"PXAT", b"PERSIST", b"KEEPTTL", b"ex"))
        cmd.append(opt)
        if opt.upper() in (b"EX", b"PX", b"EXAT", b"PXAT") and c.rng.random() < 0.95:
            cmd.append(c.ttl(1000 if opt.upper() in (b"EX", b"EXAT") else 1, opt.upper().endswith(b"AT")))
    return cmd


def _offset(c) -> bytes:
    return c.rng.choice((b"0", b"1", b"7", b"8", b"15", b"100", b"-1", b"x")) if c.rng.random() < 0.9 else c.integer()


def _range_unit(name: bytes):
    """BITCOUNT/BITPOS key ... [start [end [BYTE|BIT]]]."""
    def build(c) -> list[bytes]:
        cmd = [name, _skey(c)] + ([c.rng.choice((b"0", b"1", b"2", b"x"))] if name == b"BITPOS" else [])
        for word in range(c.rng.choice((0, 1, 2, 3, 3))):
            cmd.append(_index(c) if word < 2 else c.rng.choice((b"BYTE", b"BIT", b"bit", b"BAD")))
        return cmd
    return build


def _lcs(c) -> list[bytes]:
    cmd = [b"LCS", _skey(c), _skey(c)]
    for _ in range(c.rng.choice((0, 1, 1, 2))):
        opt = c.rng.choice((b"LEN", b"IDX", b"MINMATCHLEN", b"WITHMATCHLEN", b"BAD"))
        cmd += [opt] + ([c.rng.choice((b"0", b"1", b"2", b"-1", b"x"))] if opt == b"MINMATCHLEN" else [])
    return cmd


def _copy(c) -> list[bytes]:
    cmd = [b"COPY", _skey(c), _skey(c)]
    for _ in range(c.rng.choice((0, 1, 1, 2))):
        opt = c.rng.choice((b"REPLACE", b"DB", b"BAD"))
        cmd += [opt] + ([c.rng.choice((b"0", b"x"))] if opt == b"DB" else [])
    return cmd


def _flush(name: bytes):
    def build(c) -> list[bytes]:  # a real flush now and then: most of them are refused
        if c.rng.random() < 0.05:
            return [name] + ([c.rng.choice((b"ASYNC", b"SYNC", b"sync"))] if c.rng.random() < 0.5 else [])
        return [name, c.rng.choice((b"BAD", b"LAZY"))]
    return build


STRINGS = {
    b"GETEX": _getex,
    b"GETDEL": lambda c: [b"GETDEL", _skey(c)],
    b"INCRBYFLOAT": lambda c: [b"INCRBYFLOAT", _skey(c), _score(c) if c.rng.random() < 0.7 else c.integer()],
    b"APPEND": lambda c: [b"APPEND", _skey(c), _piece(c)],
    b"SETRANGE": lambda c: [b"SETRANGE", _skey(c), _offset(c), _piece(c)],
    b"SETBIT": lambda c: [b"SETBIT", _skey(c), _offset(c), c.rng.choice((b"0", b"1", b"1", b"2", b"-1", b"x"))],
    b"BITOP": lambda c: [b"BITOP", c.rng.choice((b"AND", b"OR", b"XOR", b"NOT", b"not", b"NAND")), _skey(c),
                         *[_skey(c) for _ in range(c.rng.choice((1, 1, 2, 3)))]],
    b"MSETNX": lambda c: [b"MSETNX"] + [w for _ in range(c.rng.randrange(1, 3)) for w in (_skey(c), _piece(c))],
    b"RENAME": lambda c: [b"RENAME", _skey(c), _skey(c)],
    b"RENAMENX": lambda c: [b"RENAMENX", _skey(c), _skey(c)],
    b"COPY": _copy,
    b"FLUSHDB": _flush(b"FLUSHDB"),
    b"FLUSHALL": _flush(b"FLUSHALL"),
    b"GETRANGE": lambda c: [b"GETRANGE", _skey(c), _index(c), _index(c)],
    b"SUBSTR": lambda c: [b"SUBSTR", _skey(c), _index(c), _index(c)],
    b"GETBIT": lambda c: [b"GETBIT", _skey(c), _offset(c)],
    b"BITCOUNT": _range_unit(b"BITCOUNT"),
    b"BITPOS": _range_unit(b"BITPOS"),
    b"LCS": _lcs,
    b"RANDOMKEY": lambda c: [b"RANDOMKEY"],
    b"EXPIRETIME": lambda c: [b"EXPIRETIME", _skey(c)],
    b"PEXPIRETIME": lambda c: [b"PEXPIRETIME", _skey(c)],
    b"TIME": lambda c: [b"TIME"],
}


def _sort(name: bytes):
    """SORT/SORT_RO of a list or sorted set with a few options, weights and GETs of other keys."""
    def build(c) -> list[bytes]:
        rng = c.rng
        cmd = [name, _lkey(c) if rng.random() < 0.6 else _zkey(c)]
        for _ in range(rng.choice((0, 1, 2, 3))):
            opt = rng.choice((b"DESC", b"ALPHA", b"asc", b"LIMIT", b"BY", b"GET", b"STORE", b"BAD"))
            if opt == b"LIMIT":
                cmd += [opt, _index(c), _count(c)]
            elif opt in (b"BY", b"GET"):
                cmd += [opt, rng.choice((b"nosort", b"#", b"*", b"l*", b"z*->a", b"k*"))]
            elif opt == b"STORE":
                cmd += [opt, _lkey(c)]
            else:
                cmd.append(opt)
        return cmd
    return build


SORTS = {b"SORT": _sort(b"SORT"), b"SORT_RO": _sort(b"SORT_RO")}

BUILD = {**LISTS, **ZSETS, **STRINGS, **SORTS}
