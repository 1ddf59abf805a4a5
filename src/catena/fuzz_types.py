"""The chain fuzzer's commands for lists and sorted sets (`BUILD`: name -> builder(Commands)).

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

BUILD = {**LISTS}
