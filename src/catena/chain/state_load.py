"""A state dump loaded a slice of keys at a time (pure: the caller decides how many a step).

A joining member receives its predecessor's state as one dump (`KVState.dump`). Loaded in one go
(`KVState.load`), a 1M-key dump held the member's loop 0.5-0.9 s, and entering its keys in the
slot index 1.5 s more, so the member was promoted to tail while still busy and the whole chain's
writes waited on it. `StateLoad` unpacks the keys of the dump's data map one by one and enters
each in the slot index as it goes (`KVState.put`), `n` keys a `step`; the other parts of the dump
(deadlines, dedup table, client floors, slot table) are unpacked in the last step. The state it
makes is the one `KVState.load` makes, its index already complete.

    load = StateLoad(blob)        # ValueError: not a state dump
    while not load.step(10_000):  # ValueError: not a state dump (found on the way)
        ...                       # the caller's other work: a step per loop turn
    load.state                    # the KVState, whole
"""

from __future__ import annotations

import io

import msgpack

from catena.chain.state import KVState, unpack_value

READ_BYTES = 1024 * 1024  # of the dump copied into the unpacker at a time


class StateLoad:
    def __init__(self, blob: bytes):
        self.blob = blob
        self.state = KVState()  # filled key by key; whole once `step` returned True
        self.done = False
        self._unpacker = msgpack.Unpacker(io.BytesIO(blob), raw=True, use_list=False, strict_map_key=False,
                                          ext_hook=unpack_value, read_size=min(READ_BYTES, max(len(blob), 1)),
                                          max_buffer_size=max(len(blob), 1))
        try:
            self._parts = self._unpacker.read_array_header()
            if self._parts not in (4, 5):
                raise ValueError("a state dump is [data, expires, dedup, floors, slot table]")
            self._left = self._unpacker.read_map_header()  # keys of the data map still to load
        except Exception as exc:  # anything msgpack raises on garbage (even TypeError)
            raise ValueError(f"not a state dump: {exc!r}") from None

    def step(self, n: int) -> bool:
        """Load up to `n` more keys (and, after the last, the rest of the dump); True once the
        state is whole. ValueError if the dump turns out not to be one (the state is then unusable)."""
        if self.done:
            return True
        try:
            unpack, put = self._unpacker.unpack, self.state.put
            count = min(n, self._left)
            for _ in range(count):
                key = unpack()
                put(key, unpack())
            self._left -= count
            if self._left:
                return False
            rest = tuple(unpack() for _ in range(self._parts - 1))
            if self._unpacker.tell() != len(self.blob):
                raise ValueError("bytes after the state dump")
            self.state = KVState.from_parts((self.state.data, *rest), self.state)
        except ValueError:
            raise
        except Exception as exc:  # a key msgpack or the index cannot take, a dump cut short
            raise ValueError(f"not a state dump: {exc!r}"[:200]) from None
        self.done = True
        return True
