"""How a value other than a string is written in a state dump: one msgpack ext type per type.

    ext 1  a set: the array of its members
    ext 2  a list: the array of its elements, head first
    ext 3  a sorted set: [members array, their scores packed: 8 IEEE bytes each, little-endian]

A dump holds strings as plain bytes and hashes as plain maps; dumps written before a type
existed hold no ext of it and load unchanged.
"""

from __future__ import annotations

from collections import deque

import msgpack

from catena.chain.zset import ZSet, packed, unpacked

SET_EXT, LIST_EXT, ZSET_EXT = 1, 2, 3


def _words(blob: bytes, what: str) -> tuple:
    words = msgpack.unpackb(blob, raw=True, use_list=False)
    if type(words) is not tuple or not all(type(w) is bytes for w in words):
        raise ValueError(f"a {what} in a state dump is an array of bytes")
    return words


def _pack_zset(z: ZSet) -> msgpack.ExtType:
    return msgpack.ExtType(ZSET_EXT, msgpack.packb([list(z.scores), packed(list(z.scores.values()))],
                                                   use_bin_type=True))


def _unpack_zset(blob: bytes) -> ZSet:
    parts = msgpack.unpackb(blob, raw=True, use_list=False)
    if (type(parts) is not tuple or len(parts) != 2 or type(parts[0]) is not tuple or type(parts[1]) is not bytes
            or not all(type(m) is bytes for m in parts[0]) or len(parts[1]) != 8 * len(parts[0])):
        raise ValueError("a sorted set in a state dump is [members, their scores packed]")
    return ZSet(zip(parts[0], unpacked(parts[1])))


_PACK = {
    ZSet: _pack_zset,
    set: lambda v: msgpack.ExtType(SET_EXT, msgpack.packb(list(v), use_bin_type=True)),
    deque: lambda v: msgpack.ExtType(LIST_EXT, msgpack.packb(list(v), use_bin_type=True)),
}
_UNPACK = {
    SET_EXT: lambda blob: set(_words(blob, "set")),
    LIST_EXT: lambda blob: deque(_words(blob, "list")),
    ZSET_EXT: _unpack_zset,
}


def pack_value(value):
    """msgpack's `default`: a set, list or sorted set as its ext type."""
    pack = _PACK.get(type(value))
    if pack is None:
        raise TypeError(f"a state dump holds no {type(value).__name__}")
    return pack(value)


def unpack_value(code: int, data: bytes):
    """msgpack's `ext_hook`: the value an ext type holds (ValueError for an unknown one)."""
    unpack = _UNPACK.get(code)
    if unpack is None:
        raise ValueError(f"unknown ext type {code} in a state dump")
    return unpack(data)
