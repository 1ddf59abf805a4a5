"""MEMORY USAGE and OBJECT: what a key's value costs, and how Redis would describe it (reads,
answered where committed data allows, like any other).

MEMORY USAGE is an estimate from the value's contents plus a fixed overhead per key and per
element (catena's Python objects cost more; see README's bytes per key). OBJECT ENCODING names
the encoding Redis 7.0 would pick with its default thresholds (catena has one representation
per type; the names only tell a client what Redis would do); REFCOUNT is 1, IDLETIME 0, FREQ
refused as Redis refuses it without an LFU policy.
"""

from __future__ import annotations

from catena.chain import ops
from catena.resp.codec import Error

KEY_OVERHEAD, ELEMENT_OVERHEAD = 56, 16
SMALL_ENTRIES, SMALL_VALUE, INTSET_ENTRIES = 128, 64, 512  # Redis 7.0's default thresholds


def _size(value) -> int:
    if type(value) is bytes:
        return len(value)
    if isinstance(value, dict):
        return sum(len(k) + _size(v) + ELEMENT_OVERHEAD for k, v in value.items())
    try:
        return sum((len(e) if type(e) is bytes else 8) + ELEMENT_OVERHEAD for e in value)
    except TypeError:
        return 8


def _unknown(command: str, sub: bytes) -> Error:
    return Error(f"ERR unknown subcommand or wrong number of arguments for '{command}|{sub.decode(errors='replace')}'")


def _memory(state, args, now_ms):
    sub = args[1].upper()
    if sub != b"USAGE" or len(args) not in (3, 5) or (len(args) == 5 and args[3].upper() != b"SAMPLES"):
        return _unknown("MEMORY", sub)
    value = state.get(args[2], now_ms)
    return None if value is None else KEY_OVERHEAD + len(args[2]) + _size(value)


def _is_int(raw: bytes) -> bool:
    return len(raw) <= 20 and raw.lstrip(b"-").isdigit()


def encoding(value) -> bytes:
    if type(value) is bytes:
        return b"int" if _is_int(value) else b"embstr" if len(value) <= 44 else b"raw"
    if type(value) is set:
        if len(value) <= INTSET_ENTRIES and all(_is_int(m) for m in value):
            return b"intset"
        return b"hashtable"
    if isinstance(value, dict):
        small = len(value) <= SMALL_ENTRIES and all(len(k) <= SMALL_VALUE and len(v) <= SMALL_VALUE
                                                    for k, v in value.items())
        return b"listpack" if small else b"hashtable"
    kind = type(value).__name__.lower()
    if "zset" in kind:
        return b"listpack" if len(value) <= SMALL_ENTRIES else b"skiplist"
    return b"quicklist"


def _object(state, args, now_ms):
    sub = args[1].upper()
    if len(args) != 3 or sub not in (b"ENCODING", b"REFCOUNT", b"IDLETIME", b"FREQ"):
        return _unknown("OBJECT", sub)
    value = state.get(args[2], now_ms)
    if value is None:
        return None
    if sub == b"FREQ":
        return Error("ERR An LFU maxmemory policy is not selected, access frequency not tracked. Please note "
                     "that when switching between policies at runtime LRU and LFU data will take some time to "
                     "adjust.")
    return encoding(value) if sub == b"ENCODING" else 1 if sub == b"REFCOUNT" else 0


def _key_of(args):
    return (args[2],) if len(args) > 2 else ()


ops.READS[b"MEMORY"] = (-2, _key_of, _memory)
ops.READS[b"OBJECT"] = (-2, _key_of, _object)
