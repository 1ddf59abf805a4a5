"""Lists: the L*/R* commands as ops (built at the head), their application, and their reads.

A list is a `collections.deque` of elements (O(1) at both ends, as Redis's quicklist); a list
left empty is deleted, as in Redis. Ops:

    (PUSH, key, end, existing, (e1, ...))   end: 0 LEFT, 1 RIGHT; existing: 1 for L/RPUSHX
    (POP, key, end, count)                  count -1: no count given (reply: one element)
    (LSET, key, index, element)             index: the argument's bytes (Redis finds the key first)
    (LREM, key, count, element)
    (LINSERT, key, after, pivot, element)   after: 0 BEFORE, 1 AFTER
    (LTRIM, key, start, stop)
    (LMOVE, source, destination, from, to)  from, to: ends (RPOPLPUSH is RIGHT, LEFT)
    (LMPOP, (key, ...), end, count)

Every op is deterministic: indexes and counts are the client's, applied to the same list.
"""

from __future__ import annotations

from collections import deque
from itertools import islice

from catena.chain.values import of_type, pop_count
from catena.resp.codec import NULL_ARRAY, OK, Error
from catena.resp.commands import INT64_MIN, parse_int, wrong_args

PUSH, POP, LSET, LREM, LINSERT, LTRIM, LMOVE, LMPOP = range(15, 23)
LEFT, RIGHT = 0, 1

_SYNTAX = Error("ERR syntax error")


def _b(v) -> bool:
    return type(v) is bytes


def _i(v) -> bool:
    return type(v) is int


def _words(v) -> bool:
    return type(v) is tuple and len(v) >= 1 and all(map(_b, v))


_END = (LEFT, RIGHT)
SHAPES = {
    PUSH: lambda op: len(op) == 5 and _b(op[1]) and op[2] in _END and op[3] in (0, 1) and _words(op[4]),
    POP: lambda op: len(op) == 4 and _b(op[1]) and op[2] in _END and _i(op[3]) and op[3] >= -1,
    LSET: lambda op: len(op) == 4 and _b(op[1]) and _b(op[2]) and _b(op[3]),
    LREM: lambda op: len(op) == 4 and _b(op[1]) and _i(op[2]) and _b(op[3]),
    LINSERT: lambda op: len(op) == 5 and _b(op[1]) and op[2] in (0, 1) and _b(op[3]) and _b(op[4]),
    LTRIM: lambda op: len(op) == 4 and _b(op[1]) and _i(op[2]) and _i(op[3]),
    LMOVE: lambda op: len(op) == 5 and _b(op[1]) and _b(op[2]) and op[3] in _END and op[4] in _END,
    LMPOP: lambda op: len(op) == 4 and _words(op[1]) and op[2] in _END and _i(op[3]) and op[3] >= 1,
}
KEYS = {LMOVE: lambda op: op[1:3], LMPOP: lambda op: op[1]}  # ops on more than op[1]


def index_range(start: int, stop: int, n: int):
    """Redis's LRANGE/LTRIM/ZRANGE indexes (negative from the end) as a slice [lo, hi) of a
    sequence of `n`; lo == hi when the range is empty."""
    if start < 0:
        start += n
    if stop < 0:
        stop += n
    start = max(start, 0)
    if start > stop or start >= n:
        return 0, 0
    return start, min(stop, n - 1) + 1


def _end(word: bytes):
    """LEFT or RIGHT (any case), else None."""
    w = word.upper()
    return LEFT if w == b"LEFT" else RIGHT if w == b"RIGHT" else None


# -- the head: commands as ops --------------------------------------------------------------------


def _count(raw: bytes, message: str, least: int = 0) -> int | Error:
    """A count in [least, INT64_MAX], else Error(message) (Redis's getRangeLongFromObjectOrReply)."""
    try:
        n = parse_int(raw)
    except ValueError:
        return Error(f"ERR {message}")
    return n if n >= least else Error(f"ERR {message}")


def _pop(end: int):
    def build(args, now_ms):
        count = pop_count(args, wrong_args(args[0].upper()))
        return count if type(count) is Error else (POP, args[1], end, count)
    return build


def _linsert(args, now_ms):
    where = args[2].upper()
    if where not in (b"BEFORE", b"AFTER"):
        return _SYNTAX
    return (LINSERT, args[1], int(where == b"AFTER"), args[3], args[4])


def _lmove(args, now_ms):
    ends = _end(args[3]), _end(args[4])
    return _SYNTAX if None in ends else (LMOVE, args[1], args[2], *ends)


def mpop_options(args, first: int, ends: dict):
    """LMPOP/ZMPOP from `args[first]` (numkeys): (keys, end, count) checked in Redis's order,
    `ends` naming the ends (upper case), or Redis's error."""
    numkeys = _count(args[first], "numkeys should be greater than 0", 1)
    if type(numkeys) is Error:
        return numkeys
    where_at = first + numkeys + 1
    if where_at >= len(args) or args[where_at].upper() not in ends:
        return _SYNTAX
    count, i = None, where_at + 1
    while i < len(args):
        if count is None and args[i].upper() == b"COUNT" and i + 1 < len(args):
            count = _count(args[i + 1], "count should be greater than 0", 1)
            if type(count) is Error:
                return count
            i += 2
        else:
            return _SYNTAX
    return tuple(args[first + 1:where_at]), ends[args[where_at].upper()], 1 if count is None else count


def _lmpop(args, now_ms):
    parsed = mpop_options(args, 1, {b"LEFT": LEFT, b"RIGHT": RIGHT})
    return parsed if type(parsed) is Error else (LMPOP, *parsed)


WRITES = {
    b"LPUSH": (-3, lambda a, now: (PUSH, a[1], LEFT, 0, tuple(a[2:]))),
    b"RPUSH": (-3, lambda a, now: (PUSH, a[1], RIGHT, 0, tuple(a[2:]))),
    b"LPUSHX": (-3, lambda a, now: (PUSH, a[1], LEFT, 1, tuple(a[2:]))),
    b"RPUSHX": (-3, lambda a, now: (PUSH, a[1], RIGHT, 1, tuple(a[2:]))),
    b"LPOP": (-2, _pop(LEFT)),
    b"RPOP": (-2, _pop(RIGHT)),
    b"LSET": (4, lambda a, now: (LSET, a[1], a[2], a[3])),  # the index is checked once the key is found
    b"LREM": (4, lambda a, now: (LREM, a[1], parse_int(a[2]), a[3])),
    b"LINSERT": (5, _linsert),
    b"LTRIM": (4, lambda a, now: (LTRIM, a[1], parse_int(a[2]), parse_int(a[3]))),
    b"LMOVE": (5, _lmove),
    b"RPOPLPUSH": (3, lambda a, now: (LMOVE, a[1], a[2], RIGHT, LEFT)),
    b"LMPOP": (-4, _lmpop),
}


# -- every member: applying ops (WrongTypeError before any change) -------------------------------


def _list(state, key, ts) -> deque | None:
    return of_type(state.live(key, ts), deque)


def _created(state, key, lst):
    """`lst`, or a new empty list stored at `key` when it is None."""
    if lst is None:
        lst = deque()
        state.put(key, lst)
    return lst


def _drop_empty(state, key, lst) -> None:
    if not lst:
        state.drop(key)


def _refill(state, key, lst, items) -> None:
    """The list `lst` at `key` holds `items` now (deleted if none)."""
    lst.clear()
    lst.extend(items)
    _drop_empty(state, key, lst)


def _apply_push(state, op, ts):
    _, key, end, existing, elements = op
    lst = _list(state, key, ts)
    if lst is None and existing:
        return 0
    lst = _created(state, key, lst)
    (lst.extendleft if end == LEFT else lst.extend)(elements)
    return len(lst)


def popped(state, key, lst, end: int, count: int) -> list:
    """Up to `count` elements off one end of the list `lst` at `key` (deleted once empty)."""
    take = lst.popleft if end == LEFT else lst.pop
    out = [take() for _ in range(min(count, len(lst)))]
    _drop_empty(state, key, lst)
    return out


def _apply_pop(state, op, ts):
    _, key, end, count = op
    lst = _list(state, key, ts)
    if lst is None:
        return None if count == -1 else NULL_ARRAY
    if count == 0:
        return []
    out = popped(state, key, lst, end, 1 if count == -1 else count)
    return out[0] if count == -1 else out


def _apply_lset(state, op, ts):
    _, key, index, element = op
    lst = _list(state, key, ts)
    if lst is None:
        return Error("ERR no such key")
    try:
        index = parse_int(index)
    except ValueError as exc:
        return Error(f"ERR {exc}")
    if not -len(lst) <= index < len(lst):
        return Error("ERR index out of range")
    lst[index] = element
    return OK


def _apply_lrem(state, op, ts):
    _, key, count, element = op
    lst = _list(state, key, ts)
    if lst is None:
        return 0
    limit = abs(count) or len(lst)
    items = list(lst) if count >= 0 else list(reversed(lst))
    kept, removed = [], 0
    for item in items:
        if removed < limit and item == element:
            removed += 1
        else:
            kept.append(item)
    if removed:
        _refill(state, key, lst, kept if count >= 0 else reversed(kept))
    return removed


def _apply_linsert(state, op, ts):
    _, key, after, pivot, element = op
    lst = _list(state, key, ts)
    if lst is None:
        return 0
    try:
        i = lst.index(pivot)
    except ValueError:
        return -1
    lst.insert(i + after, element)
    return len(lst)


def _apply_ltrim(state, op, ts):
    _, key, start, stop = op
    lst = _list(state, key, ts)
    if lst is None:
        return OK
    lo, hi = index_range(start, stop, len(lst))
    _refill(state, key, lst, list(islice(lst, lo, hi)))
    return OK


def _apply_lmove(state, op, ts):
    _, src, dst, from_end, to_end = op
    source = _list(state, src, ts)
    if source is None:
        return None
    target = _list(state, dst, ts)
    element = source.popleft() if from_end == LEFT else source.pop()
    target = source if src == dst else _created(state, dst, target)
    (target.appendleft if to_end == LEFT else target.append)(element)
    _drop_empty(state, src, source)
    return element


def _apply_lmpop(state, op, ts):
    _, keys, end, count = op
    for key in keys:
        lst = _list(state, key, ts)
        if lst:
            return [key, popped(state, key, lst, end, count)]
    return NULL_ARRAY


APPLY = {PUSH: _apply_push, POP: _apply_pop, LSET: _apply_lset, LREM: _apply_lrem, LINSERT: _apply_linsert,
         LTRIM: _apply_ltrim, LMOVE: _apply_lmove, LMPOP: _apply_lmpop}


# -- reads ----------------------------------------------------------------------------------------


def _read_list(state, key, now_ms) -> deque:
    return of_type(state.get(key, now_ms), deque) or deque()


def _lrange(s, a, now):
    start, stop = parse_int(a[2]), parse_int(a[3])
    lst = _read_list(s, a[1], now)
    lo, hi = index_range(start, stop, len(lst))
    if lo >= len(lst) // 2:  # walk from the nearer end
        return list(islice(reversed(lst), len(lst) - hi, len(lst) - lo))[::-1]
    return list(islice(lst, lo, hi))


def _lindex(s, a, now):
    lst = of_type(s.get(a[1], now), deque)
    if lst is None:
        return None
    index = parse_int(a[2])
    return lst[index] if -len(lst) <= index < len(lst) else None


def _lpos(s, a, now):
    """LPOS key element [RANK rank] [COUNT num-matches] [MAXLEN len], checked in Redis's order."""
    rank, count, maxlen, i = 1, None, 0, 3
    while i < len(a):
        opt = a[i].upper()
        if i + 1 == len(a) or opt not in (b"RANK", b"COUNT", b"MAXLEN"):
            return _SYNTAX
        if opt == b"RANK":
            rank = parse_int(a[i + 1])
            if rank == 0:
                return Error("ERR RANK can't be zero: use 1 to start from the first match, 2 from the second ... "
                             "or use negative to start from the end of the list")
        else:
            n = _count(a[i + 1], f"{opt.decode()} can't be negative")
            if type(n) is Error:
                return n
            if opt == b"COUNT":
                count = n
            else:
                maxlen = n
        i += 2
    lst = of_type(s.get(a[1], now), deque)
    if lst is None:
        return None if count is None else []
    n = len(lst)
    want = count or n
    items = enumerate(lst) if rank > 0 else zip(range(n - 1, -1, -1), reversed(lst))
    skip, found = abs(rank) - 1, []
    if rank == INT64_MIN:  # Redis negates it in C, where it stays negative: every match counts
        skip, want = 0, n
    for seen, (index, item) in enumerate(items):
        if maxlen and seen >= maxlen:
            break
        if item == a[2]:
            if skip:
                skip -= 1
                continue
            found.append(index)
            if len(found) >= want:
                break
    if count is None:
        return found[0] if found else None
    return found


READS = {
    b"LRANGE": (4, lambda a: (a[1],), _lrange),
    b"LINDEX": (3, lambda a: (a[1],), _lindex),
    b"LLEN": (2, lambda a: (a[1],), lambda s, a, now: len(_read_list(s, a[1], now))),
    b"LPOS": (-3, lambda a: (a[1],), _lpos),
}
