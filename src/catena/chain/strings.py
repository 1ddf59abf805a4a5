"""More string and keyspace commands: ops (built at the head), their application, and reads.

    (GETEX, key, mode, pxat)           mode: 0 keep the TTL, 1 deadline pxat, 2 PERSIST, 3 GETDEL,
                                       4/5 a time that is not an integer / not a valid expire time
                                       (Redis finds the key first: the error is the reply if it is there)
    (INCRBYFLOAT, key, incr)           incr: the argument's bytes (checked where applied, as Redis)
    (APPEND, key, value)
    (SETRANGE, key, offset, value)
    (SETBIT, key, offset, bit)
    (BITOP, dest, how, (key, ...))     how: 0 AND, 1 OR, 2 XOR, 3 NOT
    (MSETNX, (k1, v1, ...))
    (RENAME, key, newkey, nx)
    (COPY, source, destination, replace)
    (FLUSH, (key, ...) | None)         FLUSHDB/FLUSHALL: None until the head names the keys

SET's and GETEX's expire times (`ttl_deadline`) are turned into absolute deadlines at the head.
"""

from __future__ import annotations

import copy

from catena.chain.values import INF, format_long_double, of_type, parse_long_double, round_long_double
from catena.chain.zset import ZSet
from catena.resp.codec import OK, Error
from catena.resp.commands import INT64_MAX, parse_int, wrong_args

GETEX, INCRBYFLOAT, APPEND, SETRANGE, SETBIT, BITOP, MSETNX, RENAME, COPY, FLUSH = range(30, 40)
KEEP, DEADLINE, PERSIST, DELETE, NOT_INTEGER, BAD_TIME = range(6)
AND, OR, XOR, NOT = range(4)
MAX_STRING = 512 * 1024 * 1024  # Redis's proto-max-bulk-len: the longest string a command may make

_SYNTAX = Error("ERR syntax error")
_TOO_LONG = Error("ERR string exceeds maximum allowed size (proto-max-bulk-len)")
_NOT_FLOAT = Error("ERR value is not a valid float")
_NO_KEY = Error("ERR no such key")
BIT_OFFSET = "bit offset is not an integer or out of range"


def bad_expire(cmd: bytes) -> Error:
    return Error(f"ERR invalid expire time in '{cmd.decode(errors='replace').lower()}' command")


def ttl_deadline(raw: bytes, unit_ms: int, now_ms: int, absolute: bool, cmd: bytes):
    """SET's and GETEX's EX/PX/EXAT/PXAT, SETEX, PSETEX: a positive time whose deadline in ms fits
    in int64 (Redis's getExpireMillisecondsOrReply), else Redis's error."""
    n = parse_int(raw)
    if n <= 0 or n > INT64_MAX // unit_ms:
        return bad_expire(cmd)
    deadline = n * unit_ms if absolute else now_ms + n * unit_ms
    return deadline if deadline <= INT64_MAX else bad_expire(cmd)


def _b(v) -> bool:
    return type(v) is bytes


def _i(v) -> bool:
    return type(v) is int


def _words(v, least: int = 1) -> bool:
    return type(v) is tuple and len(v) >= least and all(map(_b, v))


SHAPES = {
    GETEX: lambda op: len(op) == 4 and _b(op[1]) and op[2] in range(6) and (op[3] is None or _i(op[3])),
    INCRBYFLOAT: lambda op: len(op) == 3 and _b(op[1]) and _b(op[2]),
    APPEND: lambda op: len(op) == 3 and _b(op[1]) and _b(op[2]),
    SETRANGE: lambda op: len(op) == 4 and _b(op[1]) and _i(op[2]) and 0 <= op[2] and _b(op[3]),
    SETBIT: lambda op: len(op) == 4 and _b(op[1]) and _i(op[2]) and 0 <= op[2] < 8 * MAX_STRING and op[3] in (0, 1),
    BITOP: lambda op: len(op) == 4 and _b(op[1]) and op[2] in range(4) and _words(op[3]),
    MSETNX: lambda op: len(op) == 2 and _words(op[1], 2) and len(op[1]) % 2 == 0,
    RENAME: lambda op: len(op) == 4 and _b(op[1]) and _b(op[2]) and op[3] in (0, 1),
    COPY: lambda op: len(op) == 4 and _b(op[1]) and _b(op[2]) and op[3] in (0, 1),
    FLUSH: lambda op: len(op) == 2 and _words(op[1], 0),  # as assigned: the head named the keys
}
KEYS = {MSETNX: lambda op: op[1][0::2], RENAME: lambda op: op[1:3], COPY: lambda op: (op[2],),
        FLUSH: lambda op: op[1] or ()}


# -- the head: commands as ops --------------------------------------------------------------------


def _getex(args, now_ms):
    """GETEX key [EX s | PX ms | EXAT ts | PXAT ts | PERSIST], parsed as Redis parses it (the same
    time option again is allowed, the last one counts; two different ones are a syntax error)."""
    expire, persist, i = None, False, 2
    while i < len(args):
        opt = args[i].upper()
        if opt in (b"EX", b"PX", b"EXAT", b"PXAT") and i + 1 < len(args) and not persist and (
                expire is None or expire[0] == opt):
            expire = (opt, args[i + 1])
            i += 2
        elif opt == b"PERSIST" and expire is None:
            persist = True
            i += 1
        else:
            return _SYNTAX
    if persist:
        return (GETEX, args[1], PERSIST, None)
    if expire is None:
        return (GETEX, args[1], KEEP, None)
    opt, raw = expire
    try:
        pxat = ttl_deadline(raw, 1000 if opt in (b"EX", b"EXAT") else 1, now_ms, opt.endswith(b"AT"), b"getex")
    except ValueError:
        return (GETEX, args[1], NOT_INTEGER, None)
    return (GETEX, args[1], BAD_TIME, None) if type(pxat) is Error else (GETEX, args[1], DEADLINE, pxat)


def _setrange(args, now_ms):
    offset = parse_int(args[2])
    return Error("ERR offset is out of range") if offset < 0 else (SETRANGE, args[1], offset, args[3])


def _bit_offset(raw: bytes):
    try:
        offset = parse_int(raw)
    except ValueError:
        return Error(f"ERR {BIT_OFFSET}")
    return offset if 0 <= offset < 8 * MAX_STRING else Error(f"ERR {BIT_OFFSET}")


def _setbit(args, now_ms):
    offset = _bit_offset(args[2])
    if type(offset) is Error:
        return offset
    try:
        bit = parse_int(args[3])
    except ValueError:
        bit = -1
    return Error("ERR bit is not an integer or out of range") if bit not in (0, 1) else (SETBIT, args[1], offset, bit)


_BITOPS = {b"AND": AND, b"OR": OR, b"XOR": XOR, b"NOT": NOT}


def _bitop(args, now_ms):
    how = _BITOPS.get(args[1].upper())
    if how is None:
        return _SYNTAX
    if how == NOT and len(args) != 4:
        return Error("ERR BITOP NOT must be called with a single source key.")
    return (BITOP, args[2], how, tuple(args[3:]))


def _copy(args, now_ms):
    """COPY source destination [DB destination-db] [REPLACE] (catena has database 0 only)."""
    replace, i = 0, 3
    while i < len(args):
        opt = args[i].upper()
        if opt == b"REPLACE":
            replace = 1
        elif opt == b"DB" and i + 1 < len(args):
            if parse_int(args[i + 1]) != 0:
                return Error("ERR DB index is out of range")
            i += 1
        else:
            return _SYNTAX
        i += 1
    if args[1] == args[2]:
        return Error("ERR source and destination objects are the same")
    return (COPY, args[1], args[2], replace)


def _flush(args, now_ms):
    if len(args) > 2 or (len(args) == 2 and args[1].upper() not in (b"ASYNC", b"SYNC")):
        return _SYNTAX
    return (FLUSH, None)


WRITES = {
    b"GETEX": (-2, _getex),
    b"GETDEL": (2, lambda a, now: (GETEX, a[1], DELETE, None)),
    b"INCRBYFLOAT": (3, lambda a, now: (INCRBYFLOAT, a[1], a[2])),
    b"APPEND": (3, lambda a, now: (APPEND, a[1], a[2])),
    b"SETRANGE": (4, _setrange),
    b"SETBIT": (4, _setbit),
    b"BITOP": (-4, _bitop),
    b"MSETNX": (-3, lambda a, now: wrong_args(b"msetnx") if len(a) % 2 == 0 else (MSETNX, tuple(a[1:]))),
    b"RENAME": (3, lambda a, now: (RENAME, a[1], a[2], 0)),
    b"RENAMENX": (3, lambda a, now: (RENAME, a[1], a[2], 1)),
    b"COPY": (-3, _copy),
    b"FLUSHDB": (-1, _flush),
    b"FLUSHALL": (-1, _flush),
}


def decide(state, op):
    """The head, before a FLUSH gets its seq: the keys it deletes (every key there is then)."""
    return (FLUSH, tuple(state.data)) if op[0] == FLUSH and op[1] is None else op


# -- every member: applying ops (WrongTypeError before any change) -------------------------------


def _string(state, key, ts) -> bytes | None:
    return of_type(state.live(key, ts), bytes)


def _apply_getex(state, op, ts):
    _, key, mode, pxat = op
    value = _string(state, key, ts)
    if value is None or mode == KEEP:
        return value
    if mode == NOT_INTEGER:
        return Error("ERR value is not an integer or out of range")
    if mode == BAD_TIME:
        return bad_expire(b"getex")
    if mode == DELETE or (mode == DEADLINE and pxat <= ts):
        state.drop(key)
    elif mode == DEADLINE:
        state.expire_at(key, pxat)
    else:
        state.expire_at(key, None)
    return value


def _apply_incrbyfloat(state, op, ts):
    _, key, raw = op
    old = _string(state, key, ts)
    value = 0 if old is None else parse_long_double(old)
    incr = parse_long_double(raw)
    if value is None or incr is None:
        return _NOT_FLOAT
    total = INF if INF in (value, -value, incr, -incr) else round_long_double(value + incr)
    if total in (INF, -INF):
        return Error("ERR increment would produce NaN or Infinity")
    text = format_long_double(total)
    state.put(key, text)
    return text


def _apply_append(state, op, ts):
    _, key, tail = op
    old = _string(state, key, ts) or b""
    if len(old) + len(tail) > MAX_STRING:
        return _TOO_LONG
    state.put(key, old + tail)
    return len(old) + len(tail)


def _apply_setrange(state, op, ts):
    _, key, offset, piece = op
    old = _string(state, key, ts)
    if not piece:
        return 0 if old is None else len(old)
    if offset + len(piece) > MAX_STRING:
        return _TOO_LONG
    old = old or b""
    new = old.ljust(offset, b"\0")[:offset] + piece + old[offset + len(piece):]
    state.put(key, new)
    return len(new)


def _apply_setbit(state, op, ts):
    _, key, offset, bit = op
    old = _string(state, key, ts) or b""
    byte, mask = offset >> 3, 0x80 >> (offset & 7)
    data = bytearray(old.ljust(byte + 1, b"\0"))
    was = int(bool(data[byte] & mask))
    data[byte] = data[byte] | mask if bit else data[byte] & ~mask
    state.put(key, bytes(data))
    return was


def _apply_bitop(state, op, ts):
    _, dst, how, keys = op
    values = [_string(state, k, ts) or b"" for k in keys]
    size = max(map(len, values))
    if size:
        numbers = [int.from_bytes(v.ljust(size, b"\0"), "big") for v in values]
        if how == NOT:
            result = numbers[0] ^ ((1 << 8 * size) - 1)
        else:
            result = numbers[0]
            for n in numbers[1:]:
                result = result & n if how == AND else result | n if how == OR else result ^ n
        state.store(dst, result.to_bytes(size, "big"))
    else:
        state.live(dst, ts)
        state.drop(dst)
    return size


def _apply_msetnx(state, op, ts):
    pairs = op[1]
    if any(state.live(k, ts) is not None for k in pairs[0::2]):
        return 0
    for i in range(0, len(pairs), 2):
        state.store(pairs[i], pairs[i + 1])
    return 1


def _apply_rename(state, op, ts):
    _, src, dst, nx = op
    value = state.live(src, ts)
    if value is None:
        return _NO_KEY
    if src == dst:
        return 0 if nx else OK
    if state.live(dst, ts) is not None:
        if nx:
            return 0
        state.drop(dst)
    deadline = state.expires.get(src)
    state.drop(src)
    state.store(dst, value)
    if deadline is not None:
        state.expire_at(dst, deadline)
    return 1 if nx else OK


def _apply_copy(state, op, ts):
    _, src, dst, replace = op
    value = state.live(src, ts)
    if value is None:
        return 0
    if state.live(dst, ts) is not None:
        if not replace:
            return 0
        state.drop(dst)
    state.store(dst, value if type(value) is bytes else _copied(value))
    deadline = state.expires.get(src)
    if deadline is not None:
        state.expire_at(dst, deadline)
    return 1


def _copied(value):
    if type(value) is ZSet:
        return ZSet((m, s) for s, m in value.order)
    return copy.copy(value)  # a dict, set or deque of bytes: a shallow copy is a full one


def _apply_flush(state, op, ts):
    for key in op[1]:
        state.drop(key)
    return OK


APPLY = {GETEX: _apply_getex, INCRBYFLOAT: _apply_incrbyfloat, APPEND: _apply_append, SETRANGE: _apply_setrange,
         SETBIT: _apply_setbit, BITOP: _apply_bitop, MSETNX: _apply_msetnx, RENAME: _apply_rename,
         COPY: _apply_copy, FLUSH: _apply_flush}
