"""Glob patterns exactly as Redis's stringmatchlen matches them (KEYS, SCAN/HSCAN/SSCAN/ZSCAN MATCH).

`*` any run, `?` any byte, `[...]` a class (`^` first negates it, `a-z` a range, either way
round, `\\c` a literal c, an unterminated class runs to the pattern's end), `\\c` a literal c
(a lone `\\` at the end is itself). Translated once into a bytes regex that matches the same
keys (Python's fnmatch differs: `[!a]` not `[^a]`, and no escapes).
"""

from __future__ import annotations

import functools
import re


def _class(members: set[int], negate: bool) -> bytes:
    if not members:
        return b"." if negate else b"(?!)"
    body = b"".join(b"\\x%02x" % m for m in sorted(members))
    return (b"[^" if negate else b"[") + body + b"]"


def translate(pattern: bytes) -> bytes:
    """The regex (for fullmatch, DOTALL) of a Redis glob pattern, walked as stringmatchlen does."""
    out, i, n = [], 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == 0x2A:  # *
            while i + 1 < n and pattern[i + 1] == 0x2A:
                i += 1
            out.append(b".*")
        elif c == 0x3F:  # ?
            out.append(b".")
        elif c == 0x5B:  # [
            i += 1
            negate = i < n and pattern[i] == 0x5E
            if negate:
                i += 1
            members: set[int] = set()
            while True:
                if i < n and pattern[i] == 0x5C and n - i >= 2:  # \c
                    i += 1
                    members.add(pattern[i])
                elif i < n and pattern[i] == 0x5D:  # ]
                    break
                elif i >= n:  # unterminated: the class ends with the pattern
                    i -= 1
                    break
                elif n - i >= 3 and pattern[i + 1] == 0x2D:  # a-z
                    low, high = sorted((pattern[i], pattern[i + 2]))
                    members.update(range(low, high + 1))
                    i += 2
                else:
                    members.add(pattern[i])
                i += 1
            out.append(_class(members, negate))
        else:
            if c == 0x5C and n - i >= 2:  # \c
                i += 1
                c = pattern[i]
            out.append(re.escape(bytes((c,))))
        i += 1
    return b"".join(out)


@functools.lru_cache(maxsize=64)
def matcher(pattern: bytes | None):
    """A pattern's match function on bytes (None: `*` or no pattern, everything matches)."""
    if pattern is None or pattern == b"*":
        return None
    match = re.compile(translate(pattern), re.DOTALL).fullmatch
    if pattern:  # stringmatchlen matches an empty string to the empty pattern only
        return lambda s: s != b"" and match(s) is not None
    return lambda s: s == b""
