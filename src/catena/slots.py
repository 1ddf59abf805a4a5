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
