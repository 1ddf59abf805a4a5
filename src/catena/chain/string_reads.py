"""Reads of string values: GETRANGE/SUBSTR, GETBIT, BITCOUNT, BITPOS and LCS, with Redis 7.0's
index rules, checks (in its order) and replies.

LCS is the classic dynamic program (as Redis's), in Python: catena computes it for strings whose
lengths multiply to at most LCS_CELLS and answers a clear error beyond, so one call cannot hold
a member's loop for long.
"""

from __future__ import annotations

from catena.chain.strings import BIT_OFFSET, MAX_STRING
from catena.chain.values import of_type
from catena.resp.codec import Error
from catena.resp.commands import parse_int

LCS_CELLS = 120_000  # (len(a) + 1) * (len(b) + 1) at most: about 50 ms of a 2-core machine's Python
_SYNTAX = Error("ERR syntax error")


def _string(state, key, now_ms) -> bytes | None:
    return of_type(state.get(key, now_ms), bytes)


def _clip(start: int, end: int, n: int) -> tuple[int, int]:
    """GETRANGE/BITCOUNT/BITPOS indexes: negative from the end, clipped to [0, n - 1]."""
    if start < 0:
        start += n
    if end < 0:
        end += n
    return max(start, 0), min(max(end, 0), n - 1)


def _getrange(s, a, now):
    start, end = parse_int(a[2]), parse_int(a[3])
    value = _string(s, a[1], now)
    if value is None or (start < 0 and end < 0 and start > end):
        return b""
    start, end = _clip(start, end, len(value))
    return b"" if start > end or not value else value[start:end + 1]


def _getbit(s, a, now):
    try:
        offset = parse_int(a[2])
    except ValueError:
        offset = -1
    if not 0 <= offset < 8 * MAX_STRING:
        return Error(f"ERR {BIT_OFFSET}")
    value = _string(s, a[1], now) or b""
    byte = offset >> 3
    return int(byte < len(value) and bool(value[byte] & (0x80 >> (offset & 7))))


def _unit(a, at: int):
    """BYTE or BIT at a[at] (absent: BYTE): True for BIT, None for anything else."""
    if len(a) <= at:
        return False
    word = a[at].upper()
    return True if word == b"BIT" else False if word == b"BYTE" else None


def _bit_span(value: bytes, start: int, end: int, bit: bool) -> tuple[int, int]:
    """A BYTE or BIT range as bit positions [first, last] of `value` (first > last: empty)."""
    n = len(value) * 8 if bit else len(value)
    start, end = _clip(start, end, n)
    return (start, end) if bit else (start * 8, end * 8 + 7)


def _bits(value: bytes, first: int, last: int) -> int:
    """The bits [first, last] of `value` as a number (the first bit the highest)."""
    chunk = int.from_bytes(value[first >> 3:(last >> 3) + 1], "big")
    drop = 7 - (last & 7)
    return (chunk >> drop) & ((1 << (last - first + 1)) - 1)


def _bitcount(s, a, now):
    """BITCOUNT key [start end [BYTE|BIT]] (Redis finds the key before it reads the range)."""
    value = _string(s, a[1], now)
    if value is None:
        return 0
    if len(a) == 2:
        return int.from_bytes(value, "big").bit_count()
    if len(a) not in (4, 5):
        return _SYNTAX
    start, end = parse_int(a[2]), parse_int(a[3])
    if start < 0 and end < 0 and start > end:
        return 0
    bit = _unit(a, 4)
    if bit is None:
        return _SYNTAX
    first, last = _bit_span(value, start, end, bit)
    return 0 if first > last else _bits(value, first, last).bit_count()


def _bitpos(s, a, now):
    """BITPOS key bit [start [end [BYTE|BIT]]]: the first bit `bit` in the range; for 0 without
    an end given, the first bit past the range when it holds none (a string is 0s after it)."""
    target = parse_int(a[2])
    if target not in (0, 1):
        return Error("ERR The bit argument must be 1 or 0.")
    value = _string(s, a[1], now)
    if value is None:
        return -1 if target else 0
    if len(a) > 6:
        return _SYNTAX
    start = parse_int(a[3]) if len(a) > 3 else 0
    bit = _unit(a, 5)
    if bit is None:
        return _SYNTAX
    end_given = len(a) > 4
    end = parse_int(a[4]) if end_given else -1
    first, last = _bit_span(value, start, end, bit)
    if first > last or not value:
        return -1
    bits = _bits(value, first, last)
    width = last - first + 1
    if target:
        return -1 if not bits else first + width - bits.bit_length()
    zeros = bits ^ ((1 << width) - 1)
    if zeros:
        return first + width - zeros.bit_length()
    return -1 if end_given else last + 1


def _lcs(s, a, now):
    """LCS key1 key2 [LEN] [IDX] [MINMATCHLEN len] [WITHMATCHLEN] (the keys' types first)."""
    values = [s.get(a[1], now), s.get(a[2], now)]
    if any(v is not None and type(v) is not bytes for v in values):
        return Error("ERR The specified keys must contain string values")
    x, y = (v or b"" for v in values)
    idx = length = withlen = False
    minlen, i = 0, 3
    while i < len(a):
        opt = a[i].upper()
        if opt == b"IDX":
            idx = True
        elif opt == b"LEN":
            length = True
        elif opt == b"WITHMATCHLEN":
            withlen = True
        elif opt == b"MINMATCHLEN" and i + 1 < len(a):
            minlen = max(0, parse_int(a[i + 1]))
            i += 1
        else:
            return _SYNTAX
        i += 1
    if idx and length:
        return Error("ERR If you want both the length and indexes, please just use IDX.")
    if (len(x) + 1) * (len(y) + 1) > LCS_CELLS:
        return Error(f"ERR catena computes LCS of strings whose lengths plus one multiply to at most {LCS_CELLS}")
    table = _lcs_table(x, y)
    if length:
        return table[len(x)][len(y)]
    common, ranges = _walk_back(x, y, table, minlen, withlen)
    if not idx:
        return common
    return [b"matches", ranges, b"len", table[len(x)][len(y)]]


def _lcs_table(x: bytes, y: bytes) -> list:
    table = [[0] * (len(y) + 1)]
    for i in range(1, len(x) + 1):
        above, row, xi = table[-1], [0], x[i - 1]
        for j in range(1, len(y) + 1):
            row.append(above[j - 1] + 1 if xi == y[j - 1] else max(above[j], row[j - 1]))
        table.append(row)
    return table


def _walk_back(x: bytes, y: bytes, table, minlen: int, withlen: bool):
    """The common subsequence Redis's walk back from the end picks, and its matching ranges
    ([[a_start, a_end], [b_start, b_end](, length)], last first) of at least `minlen` bytes."""
    i, j, out, ranges = len(x), len(y), [], []
    span = None  # [a_start, a_end, b_start, b_end] of the run being walked
    while i > 0 and j > 0:
        emit = False
        if x[i - 1] == y[j - 1]:
            out.append(x[i - 1])
            if span is None:
                span = [i - 1, i - 1, j - 1, j - 1]
            else:
                span[0], span[2] = span[0] - 1, span[2] - 1
            emit = span[0] == 0 or span[2] == 0
            i, j = i - 1, j - 1
        else:
            if table[i - 1][j] > table[i][j - 1]:
                i -= 1
            else:
                j -= 1
            emit = span is not None
        if emit:
            size = span[1] - span[0] + 1
            if size >= minlen:
                ranges.append([[span[0], span[1]], [span[2], span[3]]] + ([size] if withlen else []))
            span = None
    return bytes(reversed(out)), ranges


def _one(a):
    return (a[1],)


READS = {
    b"GETRANGE": (4, _one, _getrange),
    b"SUBSTR": (4, _one, _getrange),
    b"GETBIT": (3, _one, _getbit),
    b"BITCOUNT": (-2, _one, _bitcount),
    b"BITPOS": (-3, _one, _bitpos),
    b"LCS": (-3, lambda a: (a[1], a[2]), _lcs),
}
