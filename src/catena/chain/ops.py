"""The data commands: which are reads, which are writes, and how each becomes an op.

`to_op(args, now_ms)` runs at the head only: it checks syntax and turns relative TTLs into
absolute deadlines, so the op it returns means the same on every member. `read(state, args,
now_ms)` answers a read from local state. `read_keys(args)` tells which keys a read touches
(None: the whole keyspace), so a member can tell whether it may answer it locally (CRAQ).
"""

from __future__ import annotations

import fnmatch
import functools
import re

from catena.chain.state import DEL, GET, INCRBY, KEEPTTL, MSET, NX, PEXPIREAT, SET, XX, KVState
from catena.resp.codec import Error, Status
from catena.resp.commands import parse_int, wrong_args
from catena.slots import SLOTS

_SYNTAX = Error("ERR syntax error")
_BAD_EXPIRE = "ERR invalid expire time in '{}' command"


def _expire_arg(raw: bytes, unit_ms: int, now_ms: int, absolute: bool, cmd: str):
    n = parse_int(raw)
    if not absolute and n <= 0:
        return Error(_BAD_EXPIRE.format(cmd))
    return n * unit_ms if absolute else now_ms + n * unit_ms


def _set(args, now_ms):
    if len(args) < 3:
        return wrong_args(b"set")
    key, value = args[1], args[2]
    pxat, flags, i = None, 0, 3
    while i < len(args):
        opt = args[i].upper()
        if opt in (b"NX", b"XX"):
            bit = NX if opt == b"NX" else XX
            if flags & (NX | XX) & ~bit:
                return _SYNTAX
            flags |= bit
        elif opt == b"GET":
            flags |= GET
        elif opt == b"KEEPTTL":
            if pxat is not None:
                return _SYNTAX
            flags |= KEEPTTL
        elif opt in (b"EX", b"PX", b"EXAT", b"PXAT") and i + 1 < len(args):
            if pxat is not None or flags & KEEPTTL:
                return _SYNTAX
            unit = 1000 if opt in (b"EX", b"EXAT") else 1
            pxat = _expire_arg(args[i + 1], unit, now_ms, opt.endswith(b"AT"), "set")
            if type(pxat) is Error:
                return pxat
            i += 1
        else:
            return _SYNTAX
        i += 1
    return (SET, key, value, pxat, flags)


def _setex(args, now_ms, unit):
    pxat = _expire_arg(args[2], unit, now_ms, False, args[0].lower().decode())
    return pxat if type(pxat) is Error else (SET, args[1], args[3], pxat, 0)


def _mset(args, now_ms):
    if len(args) < 3 or len(args) % 2 == 0:
        return wrong_args(b"mset")
    return (MSET, tuple(args[1:]))


def _expire(args, now_ms, unit, absolute):
    if len(args) != 3:
        return wrong_args(args[0])
    pxat = _expire_arg(args[2], unit, now_ms, True, "") if absolute else now_ms + parse_int(args[2]) * unit
    return (PEXPIREAT, args[1], pxat)


# name -> (arity as in Redis's command table, builder(args, now_ms) -> op | Error)
WRITES = {
    b"SET": (-3, _set),
    b"MEMBER.PUT": (3, lambda a, now: (SET, a[1], a[2], None, 0)),
    b"SETNX": (3, lambda a, now: (SET, a[1], a[2], None, NX)),
    b"SETEX": (4, lambda a, now: _setex(a, now, 1000)),
    b"PSETEX": (4, lambda a, now: _setex(a, now, 1)),
    b"GETSET": (3, lambda a, now: (SET, a[1], a[2], None, GET)),
    b"MSET": (-3, _mset),
    b"DEL": (-2, lambda a, now: (DEL, tuple(a[1:]))),
    b"UNLINK": (-2, lambda a, now: (DEL, tuple(a[1:]))),
    b"INCR": (2, lambda a, now: (INCRBY, a[1], 1)),
    b"DECR": (2, lambda a, now: (INCRBY, a[1], -1)),
    b"INCRBY": (3, lambda a, now: (INCRBY, a[1], parse_int(a[2]))),
    b"DECRBY": (3, lambda a, now: (INCRBY, a[1], -parse_int(a[2]))),
    b"EXPIRE": (3, lambda a, now: _expire(a, now, 1000, False)),
    b"PEXPIRE": (3, lambda a, now: _expire(a, now, 1, False)),
    b"EXPIREAT": (3, lambda a, now: _expire(a, now, 1000, True)),
    b"PEXPIREAT": (3, lambda a, now: _expire(a, now, 1, True)),
    b"PERSIST": (2, lambda a, now: (PEXPIREAT, a[1], None)),
}


def to_op(args: list[bytes], now_ms: int):
    """A write command as an op, or an Error reply for bad syntax."""
    name = args[0].upper()
    if name not in WRITES:  # a forward from a peer can name anything
        return Error(f"ERR unknown command '{args[0].decode(errors='replace')}'")
    arity, build = WRITES[name]
    if (arity > 0 and len(args) != arity) or (arity < 0 and len(args) < -arity):
        return wrong_args(name)
    try:
        return build(args, now_ms)
    except ValueError as exc:
        return Error(f"ERR {exc}")


# -- reads ---------------------------------------------------------------------------------------


def _scan(state: KVState, args, now_ms):
    """SCAN cursor [MATCH pattern] [COUNT n] [TYPE type]. The cursor is the next hash slot to
    visit (0: start, and done), so it survives any insert or delete: a key present for the whole
    scan lies in a slot visited once, while it was there. A page visits whole slots until it
    holds COUNT candidates, so its cost follows COUNT, not the keyspace."""
    try:
        cursor = int(args[1])
    except ValueError:
        return Error("ERR invalid cursor")
    count, match, kind = 10, None, b"string"
    i = 2
    while i < len(args):
        opt = args[i].upper()
        if i + 1 == len(args):
            return _SYNTAX
        if opt == b"COUNT":
            count = parse_int(args[i + 1])
            if count < 1:
                return _SYNTAX
        elif opt == b"MATCH":
            match = args[i + 1]
        elif opt == b"TYPE":
            kind = args[i + 1].lower()
        else:
            return _SYNTAX
        i += 2
    if not 0 <= cursor < SLOTS:
        return [b"0", []]
    slot, candidates = cursor, []
    while slot < SLOTS and len(candidates) < count:
        candidates += state.slot_keys(slot)
        slot += 1
    page = _live_matches(state, candidates, match, now_ms) if kind == b"string" else []
    return [b"%d" % (slot if slot < SLOTS else 0), page]


def keys_in_slots(state: KVState, pattern: bytes, first: int, last: int, now_ms: int) -> list[bytes]:
    """The live keys matching `pattern` in slots [first, last): KEYS is these over every slot,
    which the member shell runs a few slots per event-loop turn."""
    out: list[bytes] = []
    for slot in range(first, last):
        keys = state.slot_keys(slot)
        if keys:
            out += _live_matches(state, keys, pattern, now_ms)
    return out


def _live_matches(state: KVState, keys, pattern: bytes | None, now_ms: int) -> list[bytes]:
    matches = _matcher(pattern)
    return [k for k in keys if (matches is None or matches(k)) and state.get(k, now_ms) is not None]


@functools.lru_cache(maxsize=64)
def _matcher(pattern: bytes | None):
    """A glob pattern as a compiled bytes regex's match (None: `*` or no pattern, all keys)."""
    if pattern is None or pattern == b"*":
        return None
    return re.compile(fnmatch.translate(pattern.decode("latin-1")).encode("latin-1"), re.DOTALL).match


def _keys(state: KVState, args, now_ms):
    return keys_in_slots(state, args[1], 0, SLOTS, now_ms)


def _strlen(state, args, now_ms):
    value = state.get(args[1], now_ms)
    return 0 if value is None else len(value)


# name -> (arity, keys(args) -> tuple | None for the whole keyspace, answer(state, args, now_ms))
READS = {
    b"GET": (2, lambda a: (a[1],), lambda s, a, now: s.get(a[1], now)),
    b"MGET": (-2, lambda a: tuple(a[1:]), lambda s, a, now: [s.get(k, now) for k in a[1:]]),
    b"EXISTS": (-2, lambda a: tuple(a[1:]), lambda s, a, now: sum(s.get(k, now) is not None for k in a[1:])),
    b"STRLEN": (2, lambda a: (a[1],), _strlen),
    b"TYPE": (2, lambda a: (a[1],),
              lambda s, a, now: Status("none" if s.get(a[1], now) is None else "string")),
    b"TTL": (2, lambda a: (a[1],), lambda s, a, now: _ttl(s.ttl_ms(a[1], now), 1000)),
    b"PTTL": (2, lambda a: (a[1],), lambda s, a, now: _ttl(s.ttl_ms(a[1], now), 1)),
    b"DBSIZE": (1, lambda a: None, lambda s, a, now: s.live_count(now)),
    b"SCAN": (-2, lambda a: None, _scan),
    b"KEYS": (2, lambda a: None, _keys),
}


def _ttl(ms: int, unit: int) -> int:
    return ms if ms < 0 else (ms + unit // 2) // unit


def read_keys(args: list[bytes]):
    """The keys a read touches (None: all of them); () when the arity is wrong."""
    try:
        return READS[args[0].upper()][1](args)
    except (IndexError, KeyError):
        return ()


def read(state: KVState, args: list[bytes], now_ms: int):
    """Answer a read command from `state`, or an Error reply for bad syntax."""
    name = args[0].upper()
    if name not in READS:
        return Error(f"ERR unknown command '{args[0].decode(errors='replace')}'")
    arity, _, answer = READS[name]
    if (arity > 0 and len(args) != arity) or (arity < 0 and len(args) < -arity):
        return wrong_args(name)
    try:
        return answer(state, args, now_ms)
    except ValueError as exc:
        return Error(f"ERR {exc}")
