"""What a key's value is: its Redis type, the WRONGTYPE reply, and Redis's long double numbers.

HINCRBYFLOAT computes in C's 80-bit long double (64-bit significand) and prints with "%.17Lf";
`parse_long_double` and `format_long_double` reproduce that exactly with rationals, so every
member computes the same bytes Redis would, whatever the platform's floats.
"""

from __future__ import annotations

import re
from collections import deque
from fractions import Fraction

from catena.chain.zset import ZSet
from catena.resp.codec import Error
from catena.resp.commands import INT64_MAX, INT64_MIN, parse_int

WRONGTYPE = Error("WRONGTYPE Operation against a key holding the wrong kind of value")
_TYPE_NAMES = {bytes: "string", dict: "hash", set: "set", deque: "list", ZSet: "zset"}


class TooManyDraws(Exception):
    """A negative count asked for more random picks than a reply may hold (MAX_DRAWS)."""


class WrongTypeError(Exception):
    """A command met a key of another type; answered with WRONGTYPE, having changed nothing."""


def type_name(value) -> str:
    """TYPE's answer for a live value (None: no key)."""
    return "none" if value is None else _TYPE_NAMES[type(value)]


def of_type(value, kind: type):
    """`value` if it is None (no key) or of `kind`, else WrongTypeError."""
    if value is not None and type(value) is not kind:
        raise WrongTypeError
    return value


class Lcg:
    """A seeded pseudo-random source for machines given none by their shell (random.Random's
    `randrange` interface): machines import no `random`."""

    def __init__(self, seed: int = 0):
        self.x = seed & (2**64 - 1)

    def randrange(self, n: int) -> int:
        self.x = (self.x * 6364136223846793005 + 1442695040888963407) & (2**64 - 1)
        return (self.x >> 11) % n


def sample(rng, items, k: int) -> list:
    """`k` distinct items of the collection `items` (k < len(items)) chosen by `rng`."""
    pool = list(items)
    for i in range(k):
        j = i + rng.randrange(len(pool) - i)
        pool[i], pool[j] = pool[j], pool[i]
    return pool[:k]


MAX_DRAWS = 10_000_000  # picks with repeats one reply may hold (Redis streams any number)
COUNT_RANGE = Error("ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807")
# (a random-pick count of INT64_MIN has no positive counterpart; Redis refuses it so)
TOO_MANY_DRAWS = Error(f"ERR catena answers at most {MAX_DRAWS} random picks with repeats (a negative count)")


def draws(rng, items, k: int) -> list:
    """`k` items of `items` chosen independently (repeats allowed) by `rng`."""
    if k > MAX_DRAWS:
        raise TooManyDraws
    pool = list(items)
    return [pool[rng.randrange(len(pool))] for _ in range(k)]


def pop_count(args, too_many: Error):
    """SPOP/LPOP/ZPOPMIN key [count]: -1 without a count, else a count >= 0 or Redis's error
    (`too_many` for more arguments)."""
    if len(args) > 3:
        return too_many
    if len(args) == 2:
        return -1
    try:
        count = parse_int(args[2])
    except ValueError:
        count = -1
    return count if count >= 0 else Error("ERR value is out of range, must be positive")


def numkeys_keys(a) -> tuple:
    """The keys of `cmd numkeys key ...` (SINTERCARD, ZUNION...): () when numkeys is not one."""
    try:
        n = parse_int(a[1])
    except ValueError:
        return ()
    return tuple(a[2:2 + n]) if n > 0 else ()


def rand_pick(a, rng, members, option: bytes, shown):
    """HRANDFIELD/ZRANDMEMBER key [count [WITHVALUES|WITHSCORES]]: distinct picks for a count >= 0,
    drawn with repeats for a negative one (Redis's checks in its order). `members()` is the
    collection (a dict: its keys are picked, `shown(value)` is replied beside them)."""
    if len(a) == 2:
        c = members()
        return draws(rng, c, 1)[0] if c else None
    count = parse_int(a[2])
    if count == INT64_MIN:
        return COUNT_RANGE
    if len(a) > 4 or (len(a) == 4 and a[3].upper() != option):
        return Error("ERR syntax error")
    values = len(a) == 4
    if values and not -(INT64_MAX // 2) <= count <= INT64_MAX // 2:
        return Error("ERR value is out of range")
    c = members()
    if not c or count == 0:
        return []
    picked = list(c) if count >= len(c) else sample(rng, c, count) if count > 0 else draws(rng, c, -count)
    return [w for f in picked for w in (f, shown(c[f]))] if values else picked


INF = float("inf")
_MANT = 64  # bits of an x87 long double's significand
_EMIN = -16382 - _MANT + 1  # exponent of the smallest subnormal's unit
_EMAX = 16384  # 2**_EMAX overflows
_DEC = re.compile(rb"([+-]?)(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?")
_HEX = re.compile(rb"([+-]?)0[xX]([0-9a-fA-F]*)(?:\.([0-9a-fA-F]*))?(?:[pP]([+-]?\d+))?")
_INF = re.compile(rb"([+-]?)(?:inf|infinity)", re.IGNORECASE)


def round_long_double(x: Fraction):
    """`x` rounded to the nearest long double (ties to even); +-INF when it overflows."""
    if x == 0:
        return Fraction(0)
    sign, x = (-1, -x) if x < 0 else (1, x)
    e = x.numerator.bit_length() - x.denominator.bit_length() - _MANT
    while x >= Fraction(2) ** (e + _MANT):
        e += 1
    while x < Fraction(2) ** (e + _MANT - 1):
        e -= 1
    e = max(e, _EMIN)
    m = round(x / Fraction(2) ** e)  # Fraction's round: half to even
    if m.bit_length() + e > _EMAX:
        return sign * INF
    return sign * m * Fraction(2) ** e


def parse_long_double(raw: bytes):
    """A number as Redis's string2ld reads it (strtold on all of it, no leading space, no NaN,
    no overflow or underflow to zero); None when it is not one."""
    text = raw
    if not text or len(text) >= 5 * 1024 or text[:1].isspace():
        return None
    m = _INF.fullmatch(text)
    if m:
        return -INF if m.group(1) == b"-" else INF
    m = _HEX.fullmatch(text)
    if m:
        whole, frac, exp, base = m.group(2), m.group(3) or b"", m.group(4), 16
    else:
        m = _DEC.fullmatch(text)
        if m is None:
            return None
        whole, frac, exp, base = m.group(2), m.group(3) or b"", m.group(4), 10
    if not whole and not frac:
        return None
    digits = (whole + frac).lstrip(b"0")
    if not digits:
        return Fraction(0)
    scale = int(exp or b"0")
    sign = -1 if m.group(1) == b"-" else 1
    if base == 10:
        if not -4960 < len(digits) + scale - len(frac) <= 4940:  # past long double's range: ERANGE
            return None
        value = _natural(digits) * Fraction(10) ** (scale - len(frac))
    else:
        if abs(scale) > 20000:
            return None
        value = int(digits, 16) * Fraction(2) ** (scale - 4 * len(frac))
    rounded = round_long_double(sign * value)
    if rounded in (INF, -INF) or rounded == 0:
        return None
    return rounded


def format_long_double(x: Fraction) -> bytes:
    """Redis's ld2string(LD_STR_HUMAN): "%.17Lf" without trailing zeros ("-0" is "0")."""
    n = round(abs(x) * 10**17)
    if n == 0:
        return b"0"
    whole, frac = divmod(n, 10**17)
    text = _digits(whole)
    frac_text = (b"%017d" % frac).rstrip(b"0")
    if frac_text:
        text += b"." + frac_text
    return b"-" + text if x < 0 else text


def _digits(n: int) -> bytes:
    """A natural number's decimal digits, however many (Python limits int-to-str to 4300)."""
    parts = []
    while n >= 10**4000:
        n, low = divmod(n, 10**4000)
        parts.append(b"%04000d" % low)
    return b"".join([b"%d" % n, *reversed(parts)])


def _natural(digits: bytes) -> int:
    """The number `digits` (decimal) spell, however many (Python limits str-to-int to 4300)."""
    n = 0
    for i in range(0, len(digits), 4000):
        chunk = digits[i:i + 4000]
        n = n * 10 ** len(chunk) + int(chunk)
    return n
