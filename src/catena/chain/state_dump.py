"""A dump of a KVState as of one moment, made a slice at a time while the state goes on changing:
how a member snapshots without fork() and without holding its loop for the whole state.

    dump = StateDump(state)        # the moment: the keys there are now, in a list
    while not dump.advance(): ...  # a slice of keys packed per call (the shell: a few per turn)
    dump.parts                     # then: msgpack of [data, expires, dedup, floors, slot table],
                                   # byte for byte what state.dump() gave at that moment

Meanwhile the state applies ops. Before an op changes a key, KVState.apply (and `_drop`, for the
keys an op removes besides its own: an expired key, a cleared slot) calls `before(keys)`: a key
not saved yet has its value and deadline of now packed and kept (its pre-image, as in a
copy-on-write snapshot, but per key and in the process). Packing a key then takes its pre-image
if it has one, else its value as it is, unchanged since the moment. Keys new since the moment
are not in the list; keys deleted since it have their pre-image. The dedup table, watermarks and
slot table are small and packed at the moment.

What it holds meanwhile: the key list, and one pre-image per key written during the dump.
"""

from __future__ import annotations

from itertools import chain

import msgpack

from catena.chain.dump_values import pack_value

CHUNK = 1000  # keys packed per advance(): well under a millisecond for small values
PART_BYTES = 1024 * 1024  # the dump's parts are this large (the last smaller): a thread writes
# them with a few hand-overs of the interpreter lock, not one per slice


def map_header(n: int) -> bytes:
    """msgpack's header of a map of `n` pairs."""
    if n < 16:
        return bytes((0x80 | n,))
    if n < 1 << 16:
        return b"\xde" + n.to_bytes(2, "big")
    return b"\xdf" + n.to_bytes(4, "big")


def _items(packed: bytes) -> bytes:
    """The items of a packed array or map, without its header (a map's pairs are the items of
    an array of k, v, k, v, …)."""
    first = packed[0]
    return packed[1:] if first <= 0x9f else packed[3:] if first in (0xdc, 0xde) else packed[5:]


class StateDump:
    __slots__ = ("state", "parts", "_keys", "_pre", "_deadlines", "_count", "_tail", "_pack", "_steps", "done")

    def __init__(self, state):
        self.state = state
        self._keys = list(state.data)
        self._pre: dict[bytes, tuple[bytes | None, int | None]] = {}
        self._deadlines: dict[bytes, int] = {}
        self._count = 0
        self._pack = msgpack.Packer(use_bin_type=True, default=pack_value).pack
        self._tail = b"".join(map(self._pack, state.dump_parts()[2:]))  # dedup, floors, slot table
        self.parts: list[bytes] = [b""]  # [0]: the array and map headers, known at the end
        self._steps = self._run()
        self.done = False
        state.dumping = (state.dumping or ()) + (self,)  # (a transfer's and a snapshot's may overlap)

    def before(self, keys) -> None:
        """The state is about to change `keys`: keep the pre-image of those not kept yet."""
        pre = self._pre
        for key in keys:
            if key not in pre:
                value = self.state.data.get(key)
                pre[key] = (None if value is None else self._pack(value), self.state.expires.get(key))

    def advance(self) -> bool:
        """Pack the next slice; True once the dump is complete (`parts`)."""
        if not self.done:
            next(self._steps, None)
        return self.done

    def stop(self) -> None:
        """Stop being told of changes (the dump is complete or abandoned)."""
        others = tuple(dump for dump in self.state.dumping or () if dump is not self)
        self.state.dumping = others or None

    def _run(self):
        keys, pre, deadlines, pack = self._keys, self._pre, self._deadlines, self._pack
        data, expires = self.state.data, self.state.expires
        small: list[bytes] = []  # packed since the last part (parts of PART_BYTES: few to write)
        size = 0

        def settle(last: bool = False) -> None:
            nonlocal size
            if size >= PART_BYTES or last:
                self.parts.append(b"".join(small))
                small.clear()
                size = 0

        for at in range(0, len(keys), CHUNK):
            chunk = keys[at : at + CHUNK]
            if not pre or pre.keys().isdisjoint(chunk):  # the common case: none changed since the moment
                small.append(packed := _items(pack(list(chain.from_iterable(zip(chunk, map(data.__getitem__, chunk)))))))
                size += len(packed)
                self._count += len(chunk)
                if expires:
                    for key in chunk:
                        if (deadline := expires.get(key)) is not None:
                            deadlines[key] = deadline
            else:
                for key in chunk:
                    saved = pre.get(key)
                    if saved is None:  # unchanged since the moment
                        packed, deadline = pack(key) + pack(data[key]), expires.get(key)
                    elif saved[0] is None:  # absent at the moment (it cannot be: keys are listed then)
                        continue
                    else:
                        packed, deadline = pack(key) + saved[0], saved[1]
                    small.append(packed)
                    size += len(packed)
                    self._count += 1
                    if deadline is not None:
                        deadlines[key] = deadline
            settle()
            yield
        small.append(map_header(len(deadlines)))
        items = list(deadlines.items())
        for at in range(0, len(items), 16 * CHUNK):
            small.append(packed := _items(pack(dict(items[at : at + 16 * CHUNK]))))
            size += len(packed)
            settle()
            yield
        small.append(self._tail)
        settle(last=True)
        self.parts[0] = b"\x95" + map_header(self._count)
        self._pre = self._deadlines = self._keys = None
        self.stop()
        self.done = True
