"""The sorted set value: members ordered by (score, member), with O(log n) rank; scores as Redis
reads and prints them; score and lex range specs.

A `ZSet` is a dict member -> score beside a `sortedcontainers.SortedList` of (score, member)
(a B-tree-like list of sorted lists: O(log n) insert, remove, rank and index, the role Redis's
skiplist plays). Members compare as bytes (memcmp, as Redis).

Scores are C doubles. `parse_score` is Redis's getDoubleFromObject (strtod over the whole
argument, no leading space, no NaN, no overflow or underflow to zero); `parse_bound` is
zslParseRange's looser strtod (leading space, an empty string is 0, overflow is infinity);
`format_score` is Redis 7.0's "%.17g". Ops carry scores packed as IEEE bytes (`packed`), so an
entry holds only integers and bytes and every member gets the same double.
"""

from __future__ import annotations

import re
import struct

from sortedcontainers import SortedList

INF = float("inf")
_DEC = re.compile(rb"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_HEX = re.compile(rb"[+-]?0[xX](?:[0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)(?:[pP][+-]?\d+)?")
_INF = re.compile(rb"[+-]?(?:inf|infinity)", re.IGNORECASE)
_NONZERO = re.compile(rb"[1-9a-fA-F]")  # a digit that is not 0 (decimal or hexadecimal)
_SPACE = b" \t\n\v\f\r"


def _strtod(text: bytes):
    """(value, in range) of a whole strtod number (no spaces), or None: in range is False when
    strtod would set ERANGE with HUGE_VAL or zero."""
    if _INF.fullmatch(text):
        return (-INF if text[:1] == b"-" else INF), True
    if _HEX.fullmatch(text):
        try:
            value = float.fromhex(text.decode())
        except OverflowError:
            return (-INF if text[:1] == b"-" else INF), False
    elif _DEC.fullmatch(text):
        value = float(text)
        if value in (INF, -INF):
            return value, False
    else:
        return None
    if value == 0:  # underflow to zero (ERANGE) when the digits were not all zeros
        hexadecimal = _HEX.fullmatch(text) is not None
        digits = re.split(rb"[pP]" if hexadecimal else rb"[eE]", text)[0].lstrip(b"+-")
        if _NONZERO.search(digits[2:] if hexadecimal else digits):
            return value, False
    return value, True


def parse_score(raw: bytes):
    """A score argument as Redis's getDoubleFromObject reads it, or None when it is not one."""
    parsed = _strtod(raw)
    return parsed[0] if parsed is not None and parsed[1] else None


def parse_bound(raw: bytes):
    """A ZRANGEBYSCORE bound (after its "(") as zslParseRange's strtod reads it, or None."""
    text = raw.split(b"\0", 1)[0]
    if not text:
        return 0.0
    parsed = _strtod(text.lstrip(_SPACE))
    return None if parsed is None else parsed[0]


def format_score(x: float) -> bytes:
    """A double as Redis 7.0 replies it: "%.17g", "inf" and "-inf"."""
    return b"%.17g" % x


def packed(scores) -> bytes:
    """Doubles as their IEEE bytes, little-endian, 8 each (how ops and dumps carry scores)."""
    return struct.pack("<%dd" % len(scores), *scores)


def unpacked(raw: bytes) -> tuple:
    return struct.unpack("<%dd" % (len(raw) // 8), raw)


class _Top:
    """Greater than any member: (score, TOP) sorts after every element of that score."""

    __slots__ = ()

    def __gt__(self, other):
        return True

    __ge__ = __gt__

    def __lt__(self, other):
        return False

    __le__ = __lt__


TOP = _Top()


class ZSet:
    """A sorted set: `scores` (member -> score) and `order` ((score, member), ascending)."""

    __slots__ = ("scores", "order")

    def __init__(self, pairs=()):
        self.scores: dict[bytes, float] = {}
        self.order = SortedList()
        for member, score in pairs:
            self.add(member, score)

    def __len__(self) -> int:
        return len(self.scores)

    def __eq__(self, other) -> bool:
        return type(other) is ZSet and self.scores == other.scores

    def __repr__(self) -> str:
        return f"ZSet({list(self.order)!r})"

    def add(self, member: bytes, score: float) -> None:
        """Insert or rescore `member` (a score of -0 is kept as 0, as Redis's listpacks keep it)."""
        if score == 0:
            score = 0.0
        old = self.scores.get(member)
        if old is not None:
            self.order.remove((old, member))
        self.scores[member] = score
        self.order.add((score, member))

    def remove(self, member: bytes) -> bool:
        score = self.scores.pop(member, None)
        if score is None:
            return False
        self.order.remove((score, member))
        return True

    def rank(self, member: bytes):
        score = self.scores.get(member)
        return None if score is None else self.order.index((score, member))

    def score_span(self, low: float, low_ex: bool, high: float, high_ex: bool) -> tuple[int, int]:
        """The indexes [lo, hi) of the elements with a score in the range."""
        order = self.order
        lo = order.bisect_left((low, TOP) if low_ex else (low,))
        hi = order.bisect_left((high,) if high_ex else (high, TOP))
        return lo, max(lo, hi)

    def lex_span(self, low, high, rev: bool = False) -> tuple[int, int]:
        """The indexes [lo, hi) of ZRANGEBYLEX's range as Redis walks a small sorted set: from
        the first element (in score order) at or above `low`, while at or below `high` (from
        the last one at or below `high`, while at or above `low`, for `rev`). With one score
        throughout (what BYLEX is for) that is a bisection either way."""
        order, n = self.order, len(self.order)
        if low is EMPTY or high is EMPTY or not n:
            return 0, 0
        if order[0][0] == order[-1][0]:
            score = order[0][0]
            lo = 0 if low is None else (order.bisect_right if low[1] else order.bisect_left)((score, low[0]))
            hi = n if high is None else (order.bisect_left if high[1] else order.bisect_right)((score, high[0]))
            return lo, max(lo, hi)
        if not (lex_above(order[-1][1], low) and lex_below(order[0][1], high)):
            return 0, 0
        if rev:
            hi = next((i + 1 for i in range(n - 1, -1, -1) if lex_below(order[i][1], high)), 0)
            lo = hi
            while lo > 0 and lex_above(order[lo - 1][1], low):
                lo -= 1
            return lo, hi
        lo = next((i for i, (_, m) in enumerate(order) if lex_above(m, low)), n)
        hi = lo
        while hi < n and lex_below(order[hi][1], high):
            hi += 1
        return lo, hi


def lex_bound(raw: bytes, low: bool):
    """A BYLEX bound: None for "-" (low) / "+" (high), (member, exclusive) for "[m" / "(m";
    False when it is not one (a "+" low or "-" high is an empty range, as in Redis: `EMPTY`)."""
    if raw == b"-":
        return None if low else EMPTY
    if raw == b"+":
        return EMPTY if low else None
    if raw[:1] == b"[":
        return raw[1:], False
    if raw[:1] == b"(":
        return raw[1:], True
    return False


EMPTY = ("", "")  # a bound nothing satisfies


def lex_above(member: bytes, low) -> bool:
    if low is None:
        return True
    if low is EMPTY:
        return False
    return member > low[0] if low[1] else member >= low[0]


def lex_below(member: bytes, high) -> bool:
    if high is None:
        return True
    if high is EMPTY:
        return False
    return member < high[0] if high[1] else member <= high[0]
