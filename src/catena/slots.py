"""Hash slots, as Redis Cluster numbers them: CRC16 (XMODEM) of the key, or of its hash tag,
modulo 16,384. The hash tag is what lies between the first `{` and the first `}` after it, when
that is not empty, so `{user1000}.following` and `{user1000}.followers` share a slot.

The chain state indexes its keys by slot (SCAN's cursor, KEYS in slices); sharding will route
by the same function.
"""

from __future__ import annotations

from binascii import crc_hqx

SLOTS = 16384


def key_slot(key: bytes) -> int:
    """The hash slot of `key` (Redis Cluster's CLUSTER KEYSLOT)."""
    start = key.find(b"{")
    if start >= 0:
        end = key.find(b"}", start + 1)
        if end > start + 1:
            key = key[start + 1:end]
    return crc_hqx(key, 0) & (SLOTS - 1)


def parse_ranges(word: bytes) -> tuple[tuple[int, int], ...]:
    """`first-last[,first-last…]` (a single slot: `n`; `-`: none) as inclusive ranges; ValueError."""
    if word == b"-":
        return ()
    out = []
    for part in word.split(b","):
        first, _, last = part.partition(b"-")
        a, b = int(first), int(last or first)
        if not 0 <= a <= b < SLOTS:
            raise ValueError(f"bad slot range {part!r}")
        out.append((a, b))
    return tuple(out)
