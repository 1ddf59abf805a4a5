"""How a value other than a string is written in a state dump: one msgpack ext type per type.

    ext 1  a set: the array of its members
    ext 2  a list: the array of its elements, head first
    ext 3  a sorted set: the array member1, score1, member2, score2, ... (scores: 8 IEEE bytes)

A dump holds strings as plain bytes and hashes as plain maps; dumps written before a type
existed hold no ext of it and load unchanged.
"""

from __future__ import annotations

from collections import deque

import msgpack

from catena.chain.zset import ZSet, bits, from_bits

SET_EXT, LIST_EXT, ZSET_EXT = 1, 2, 3


def _words(blob: bytes, what: str) -> tuple:
    words = msgpack.unpackb(blob, raw=True, use_list=False)
    if type(words) is not tuple or not all(type(w) is bytes for w in words):
        raise ValueError(f"a {what} in a state dump is an array of bytes")
    return words


def _pack_zset(z: ZSet) -> msgpack.ExtType:
    return msgpack.ExtType(ZSET_EXT, msgpack.packb([w for m, s in z.scores.items() for w in (m, bits(s))],
                                                   use_bin_type=True))


def _unpack_zset(blob: bytes) -> ZSet:
    words = msgpack.unpackb(blob, raw=True, use_list=False)
    if (type(words) is not tuple or len(words) % 2 or not all(type(m) is bytes for m in words[0::2])
            or not all(type(s) is bytes and len(s) == 8 for s in words[1::2])):
        raise ValueError("a sorted set in a state dump is an array of member, score bits")
    return ZSet(zip(words[0::2], map(from_bits, words[1::2])))


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
