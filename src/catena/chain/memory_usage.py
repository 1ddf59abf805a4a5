"""MEMORY USAGE key: about how many bytes a key and its value take (a read, answered where
committed data allows, like any other). An estimate from the value's contents plus a fixed
overhead per key and per element; catena's Python objects cost more than that (see README's
bytes per key)."""

from __future__ import annotations

from catena.chain import ops
from catena.resp.codec import Error

KEY_OVERHEAD, ELEMENT_OVERHEAD = 56, 16


def _size(value) -> int:
    if type(value) is bytes:
        return len(value)
    if isinstance(value, dict):
        return sum(len(k) + _size(v) + ELEMENT_OVERHEAD for k, v in value.items())
    try:
        return sum((len(e) if type(e) is bytes else 8) + ELEMENT_OVERHEAD for e in value)
    except TypeError:
        return 8


def _answer(state, args, now_ms):
    sub = args[1].upper()
    if sub != b"USAGE" or len(args) not in (3, 5) or (len(args) == 5 and args[3].upper() != b"SAMPLES"):
        return Error(f"ERR unknown subcommand or wrong number of arguments for 'MEMORY|{sub.decode(errors='replace')}'")
    value = state.get(args[2], now_ms)
    return None if value is None else KEY_OVERHEAD + len(args[2]) + _size(value)


ops.READS[b"MEMORY"] = (-2, lambda a: (a[2],) if len(a) > 2 and a[1].upper() == b"USAGE" else (), _answer)
