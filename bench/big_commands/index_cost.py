"""What the per-slot key index costs: time per write (SET of a new key, SET of an existing
key, DEL) and memory per key, with the index as in KVState and with it switched off.

    python bench/big_commands/index_cost.py [--keys 200000]
"""

from __future__ import annotations

import argparse
import gc
import time
import tracemalloc

from catena.chain import state as state_mod
from catena.chain.state import DEL, SET, KVState


class _NoIndex(KVState):
    """KVState with the index maintenance turned into no-ops (the baseline)."""

    __slots__ = ()

    def _index(self, key):
        pass

    def _drop(self, key):
        self.expires.pop(key, None)
        return self.data.pop(key, None) is not None


def _time(cls, keys) -> dict:
    s = cls()
    out = {}
    for label, op in (("SET new", lambda k: (SET, k, b"v", None, 0)), ("SET existing", lambda k: (SET, k, b"w", None, 0)),
                      ("DEL", lambda k: (DEL, (k,)))):
        ops = [op(k) for k in keys]
        apply = s.apply
        gc.disable()
        t0 = time.perf_counter()
        for o in ops:
            apply(o, 0)
        out[label] = (time.perf_counter() - t0) / len(keys) * 1e9
        gc.enable()
    return out


def _memory(cls, keys) -> float:
    gc.collect()
    tracemalloc.start()
    s = cls()
    for k in keys:
        s.apply((SET, k, b"v", None, 0), 0)
    size, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del s
    return size / len(keys)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keys", type=int, default=200_000)
    n = ap.parse_args().keys
    keys = [b"key:%012d" % i for i in range(n)]
    base, idx = min((_time(_NoIndex, keys) for _ in range(3)), key=lambda d: d["SET new"]), \
        min((_time(KVState, keys) for _ in range(3)), key=lambda d: d["SET new"])
    for label in base:
        print(f"{label:13s} {base[label]:6.0f} ns -> {idx[label]:6.0f} ns per write (+{idx[label] - base[label]:.0f} ns)")
    mb, mi = _memory(_NoIndex, [bytes(k) for k in keys]), _memory(KVState, [bytes(k) for k in keys])
    print(f"memory per key (keys and values included): {mb:.0f} B -> {mi:.0f} B (+{mi - mb:.0f} B for the index, "
          f"{state_mod.SLOTS} slots)")


if __name__ == "__main__":
    main()
