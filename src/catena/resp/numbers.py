"""Integers as Redis 7.0 reads them from command arguments: signed 64-bit values (string2ll)
and SCAN cursors (strtoul), with Redis's error texts."""

from __future__ import annotations

INT64_MIN, INT64_MAX, UINT64_MAX = -(2**63), 2**63 - 1, 2**64 - 1
NOT_AN_INTEGER = "value is not an integer or out of range"


def parse_int(raw: bytes) -> int:
    """A signed 64-bit integer as Redis's string2ll reads it: an optional '-', then "0" or digits
    without a leading zero; no sign '+', no spaces, no '_'. ValueError with Redis's message
    otherwise (Python's int() takes " 7", "+7", "0_7" and any size)."""
    digits = raw[1:] if raw[:1] == b"-" else raw
    if digits.isdigit() and len(digits) <= 19 and (digits[0] != 48 or raw == b"0"):
        n = int(raw)
        if INT64_MIN <= n <= INT64_MAX:
            return n
    raise ValueError(NOT_AN_INTEGER)


def parse_cursor(raw: bytes) -> int:
    """A SCAN cursor as Redis 7.0 reads it (strtoul, base 10): an optional sign then digits, in
    the unsigned 64-bit range ('-n' wraps around, as in C; "" is 0). ValueError("invalid cursor")."""
    digits = raw[1:] if raw[:1] in (b"+", b"-") else raw
    if not (digits.isdigit() or raw == b""):
        raise ValueError("invalid cursor")
    n = int(digits or b"0")
    if n > UINT64_MAX:
        raise ValueError("invalid cursor")
    return (-n) & UINT64_MAX if raw[:1] == b"-" else n
