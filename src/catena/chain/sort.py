"""SORT and SORT_RO (Redis 7.0): the elements of a list, set or sorted set, sorted or not,
weighted BY other keys, projected through GET patterns, and stored as a list with STORE.

A SORT without STORE (and SORT_RO) is a read; its keys are only its source unless a BY or GET
pattern names other keys, which are unknown in advance: then the read is answered only by a
member with no dirty key at all (CRAQ), else by the tail. A SORT with STORE is a write: the head
computes the sorted list (`decide`) and the op carries it, so every member stores the same:

    (SORT_STORE, destination, (element, ...))          the list to store (none: delete it)
    (SORT_STORE, destination, None, b"error message")  the head's answer was an error: no change

(before the head decides it, the op is (SORT_STORE, destination, None, (the command's words)).)
"""

from __future__ import annotations

from collections import deque

from catena.chain import ops, state as kv
from catena.chain.values import WRONGTYPE, WrongTypeError
from catena.chain.zset import ZSet, parse_score
from catena.resp.codec import Error
from catena.resp.commands import parse_int

SORT_STORE = 44
_SYNTAX = Error("ERR syntax error")
_NOT_DOUBLE = Error("ERR One or more scores can't be converted into double")
_SPACE = b" \t\n\v\f\r"


class Options:
    __slots__ = ("desc", "alpha", "offset", "count", "by", "dontsort", "gets", "store")

    def __init__(self):
        self.desc = self.alpha = self.dontsort = False
        self.offset, self.count = 0, -1
        self.by = self.store = None
        self.gets: list[bytes] = []


def parse(args: list[bytes], readonly: bool):
    """SORT key [BY pattern] [LIMIT offset count] [GET pattern ...] [ASC|DESC] [ALPHA]
    [STORE destination] (no STORE for SORT_RO) as Options, or Redis's error."""
    o, i = Options(), 2
    while i < len(args):
        opt, left = args[i].upper(), len(args) - i - 1
        if opt in (b"ASC", b"DESC"):
            o.desc = opt == b"DESC"
        elif opt == b"ALPHA":
            o.alpha = True
        elif opt == b"LIMIT" and left >= 2:
            o.offset, o.count = parse_int(args[i + 1]), parse_int(args[i + 2])
            i += 2
        elif opt == b"STORE" and left >= 1 and not readonly:
            o.store = args[i + 1]
            i += 1
        elif opt == b"BY" and left >= 1:
            o.by = args[i + 1]
            o.dontsort = b"*" not in o.by  # a pattern naming no key: the source's own order
            i += 1
        elif opt == b"GET" and left >= 1:
            o.gets.append(args[i + 1])
            i += 1
        else:
            return _SYNTAX
        i += 1
    return o


def _patterned(args: list[bytes]) -> bool:
    """Do BY or GET patterns of this SORT name other keys?"""
    words = [w.upper() for w in args]
    return any(words[i] in (b"BY", b"GET") and b"*" in args[i + 1] for i in range(2, len(args) - 1))


def read_keys(args: list[bytes]):
    """The source, or None (any key) when a BY or GET pattern reads other keys."""
    return None if _patterned(args) else (args[1],)


def lookup(state, pattern: bytes, element: bytes, now_ms: int):
    """Redis's lookupKeyByPattern: `#` is the element; the first `*` of the pattern replaced by
    it names a string key, or with `->field` a hash's field; None when there is none."""
    if pattern == b"#":
        return element
    star = pattern.find(b"*")
    if star < 0:
        return None
    arrow = pattern.find(b"->", star + 1)
    field = None
    if arrow >= 0 and arrow + 2 < len(pattern):
        pattern, field = pattern[:arrow], pattern[arrow + 2:]
    value = state.get(pattern[:star] + element + pattern[star + 1:], now_ms)
    if field is not None:
        return value.get(field) if type(value) is dict else None
    return value if type(value) is bytes else None


def _weight(raw: bytes):
    """A weight as strtod reads it for SORT (leading spaces allowed, "" is 0), or None."""
    return 0.0 if raw == b"" else parse_score(raw.lstrip(_SPACE))


def _elements(value, o: Options) -> list[bytes]:
    if value is None:
        return []
    if type(value) is deque:
        return list(value)
    if type(value) is set:
        if o.dontsort:  # a set has no order of its own: sorted, as Redis sorts it for STORE
            o.dontsort, o.alpha, o.by = False, True, None
        return list(value)
    if type(value) is ZSet:
        return [m for _, m in value.order]
    raise WrongTypeError


def sort(state, args: list[bytes], o: Options, now_ms: int):
    """The reply of SORT (without STORE): elements, or GET's values for each (None: nil)."""
    items = _elements(state.get(args[1], now_ms), o)
    if o.dontsort:
        if o.desc:
            items.reverse()
    elif o.alpha:
        if o.by is None:
            items.sort(reverse=o.desc)
        else:
            keyed = [(lookup(state, o.by, e, now_ms), e) for e in items]
            keyed.sort(key=lambda p: (p[0] is not None, p[0] or b""), reverse=o.desc)
            items = [e for _, e in keyed]
    else:
        keyed = []
        for e in items:
            raw = e if o.by is None else lookup(state, o.by, e, now_ms)
            weight = 0.0 if raw is None else _weight(raw)
            if weight is None:
                return _NOT_DOUBLE
            keyed.append((weight, e))
        keyed.sort(reverse=o.desc)
        items = [e for _, e in keyed]
    start = max(o.offset, 0)
    items = items[start:] if o.count < 0 else items[start:start + o.count]
    if not o.gets:
        return items
    return [lookup(state, g, e, now_ms) for e in items for g in o.gets]


def _answer(readonly: bool):
    def answer(state, args, now_ms):
        o = parse(args, readonly)
        return o if type(o) is Error else sort(state, args, o, now_ms)
    return answer


def _build(args, now_ms):
    """SORT ... STORE destination as an op (its list decided at the head)."""
    o = parse(args, readonly=False)
    if type(o) is Error:
        return o
    return (SORT_STORE, o.store, None, tuple(args))


def is_write(args: list[bytes]) -> bool:
    """Is this SORT a write (it has a STORE)? A SORT with bad arguments is a read answering why."""
    try:
        o = parse(args, readonly=False) if len(args) >= 2 else None
    except ValueError:
        return False
    return type(o) is Options and o.store is not None


def decide(state, op, now_ms: int):
    """At the head: the list a SORT ... STORE stores, or the error it answers."""
    if op[0] != SORT_STORE or len(op) != 4 or type(op[3]) is not tuple:
        return op
    args = list(op[3])
    try:
        items = sort(state, args, parse(args, readonly=False), now_ms)
    except WrongTypeError:
        items = WRONGTYPE
    if type(items) is Error:
        return (SORT_STORE, op[1], None, items.message.encode())
    return (SORT_STORE, op[1], tuple(b"" if v is None else v for v in items))


def _apply(state, op, ts):
    if op[2] is None:
        return Error(op[3].decode(errors="replace"))
    if op[2]:
        state.store(op[1], deque(op[2]))
    else:
        state.drop(op[1])
    return len(op[2])


def _shape(op) -> bool:
    if len(op) == 3:
        return type(op[1]) is bytes and type(op[2]) is tuple and all(type(v) is bytes for v in op[2])
    return len(op) == 4 and type(op[1]) is bytes and op[2] is None and type(op[3]) is bytes


kv.extend(SORT_STORE, _apply, _shape, lambda op: (op[1],))
ops.WRITES[b"SORT"] = (-2, _build)
ops.WRITE_FORMS[b"SORT"] = is_write
ops.DECIDE[SORT_STORE] = decide
ops.READS[b"SORT"] = (-2, read_keys, _answer(readonly=False))
ops.READS[b"SORT_RO"] = (-2, read_keys, _answer(readonly=True))
