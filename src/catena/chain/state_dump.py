"""A dump of a KVState as of one moment, made a slice at a time while the state goes on changing:
how a member snapshots without fork() and without holding its loop for the whole state.

    dump = StateDump(state)        # the moment
    while not dump.advance(): ...  # a slice of hash slots packed per call (the shell: a few per turn)
    dump.parts                     # then: msgpack of [data, expires, dedup, floors, slot table],
                                   # the maps state.dump() gave at that moment (keys in slot order)

The dump walks the state's slot index (its keys by hash slot) in slot order, slot after slot.
Meanwhile the state applies ops. Before an op changes a key, KVState.apply (and `_drop`, for the
keys an op removes besides its own: an expired key, a cleared slot's) calls `before(keys)`: a key
in a slot not dumped yet has its value and deadline of now packed and kept, once (its pre-image:
a copy-on-write, but per key and in the process; a key absent now is kept as absent). Dumping a
slot then takes each of its keys' pre-image if it has one (skipping keys absent at the moment),
else the key's value as it is, unchanged since the moment; and the pre-images of its keys deleted
since. Nothing is listed at the moment, so starting a dump costs no more than a slice. A slot
with more than BIG_SLOT keys (a hash tag most keys share) is walked over several slices, pre-images
kept until its last key is packed. The dedup table, watermarks and slot table are small and
packed at the moment.

What it holds meanwhile: one pre-image per key written in a slot not dumped yet.
"""

from __future__ import annotations

from itertools import chain

import msgpack

from catena.chain.dump_values import pack_value
from catena.slots import SLOTS, key_slot

CHUNK = 1000  # keys packed per advance() (at least; a slot's keys stay together): under a millisecond
BIG_SLOT = 4 * CHUNK  # a slot with more keys is dumped over several slices (`_big_slot`)
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
    __slots__ = ("state", "parts", "_slot", "_pre", "_deadlines", "_count", "_tail", "_pack", "_steps", "done")

    def __init__(self, state):
        self.state = state
        if state.unindexed:  # a state loaded moments ago: every key in the index first
            state.index_step(len(state.unindexed))
        self._slot = 0  # the slots below it are dumped
        self._pre: dict[int, dict[bytes, tuple[bytes | None, int | None]]] = {}  # slot -> key -> image
        self._deadlines: dict[bytes, int] = {}
        self._count = 0
        self._pack = msgpack.Packer(use_bin_type=True, default=pack_value).pack
        self._tail = b"".join(map(self._pack, state.dump_parts()[2:]))  # dedup, floors, slot table
        self.parts: list[bytes] = [b""]  # [0]: the array and map headers, known at the end
        self._steps = self._run()
        self.done = False
        state.dumping = (state.dumping or ()) + (self,)  # (a transfer's and a snapshot's may overlap)

    def before(self, keys) -> None:
        """The state is about to change `keys`: keep the pre-image of those not dumped or kept yet."""
        for key in keys:
            slot = key_slot(key)
            if slot < self._slot:
                continue
            saved = self._pre.get(slot)
            if saved is None:
                saved = self._pre[slot] = {}
            if key not in saved:
                value = self.state.data.get(key)
                saved[key] = (None if value is None else self._pack(value), self.state.expires.get(key))

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
        pre, deadlines, pack, by_slot = self._pre, self._deadlines, self._pack, self.state.by_slot
        data, expires = self.state.data, self.state.expires
        small: list[bytes] = []  # packed since the last part (parts of PART_BYTES: few to write)
        size = 0
        unchanged: list[bytes] = []  # keys of dumped slots, unchanged since the moment: packed
        # before the slice ends (a later write to them keeps no pre-image)

        def add(packed: bytes, last: bool = False) -> None:
            nonlocal size
            small.append(packed)
            size += len(packed)
            if size >= PART_BYTES or last:
                self.parts.append(b"".join(small))
                small.clear()
                size = 0

        def pack_unchanged() -> None:
            add(_items(pack(list(chain.from_iterable(zip(unchanged, map(data.__getitem__, unchanged)))))))
            self._count += len(unchanged)
            if expires:
                for key in unchanged:
                    if (deadline := expires.get(key)) is not None:
                        deadlines[key] = deadline
            unchanged.clear()

        def add_image(key: bytes, image: tuple) -> None:
            add(pack(key) + image[0])
            self._count += 1
            if image[1] is not None:
                deadlines[key] = image[1]

        for slot in range(SLOTS):
            keys = by_slot[slot]
            if keys is not None and len(keys) > BIG_SLOT:
                if unchanged:
                    pack_unchanged()
                yield from self._big_slot(slot, keys, add_image, unchanged, pack_unchanged)
                continue
            saved = pre.pop(slot, None)
            if saved is None:
                if keys:
                    unchanged.extend(keys)
            else:
                for key in keys or ():
                    image = saved.get(key)
                    if image is None:
                        unchanged.append(key)
                    elif image[0] is not None:  # changed since the moment: as it was (None: created since)
                        add_image(key, image)
                for key, image in saved.items():
                    if image[0] is not None and (keys is None or key not in keys):  # deleted since the moment
                        add_image(key, image)
            self._slot = slot + 1
            if len(unchanged) >= CHUNK:
                pack_unchanged()
                yield
        if unchanged:
            pack_unchanged()
        items = list(deadlines.items())
        add(map_header(len(items)))
        for at in range(0, len(items), 16 * CHUNK):
            add(_items(pack(dict(items[at : at + 16 * CHUNK]))))
            yield
        add(self._tail, last=True)
        self.parts[0] = b"\x95" + map_header(self._count)
        self._pre = self._deadlines = None
        self.stop()
        self.done = True

    def _big_slot(self, slot: int, keys, add_image, unchanged: list[bytes], pack_unchanged):
        """Dump one slot too large for a slice (a hash tag most keys share) CHUNK keys a slice. The
        slot stays not dumped until its last key is packed, so `before` keeps the pre-image of
        each key changed meanwhile, packed or not: the keys are walked as they were listed on
        reaching the slot, each once, taking its pre-image if it has one by then."""
        saved = self._pre.setdefault(slot, {})
        for key, image in list(saved.items()):
            if image[0] is not None and key not in keys:  # deleted before the walk got here
                add_image(key, image)
        listed = list(keys)
        for at in range(0, len(listed), CHUNK):
            for key in listed[at : at + CHUNK]:
                image = saved.get(key)
                if image is None:
                    unchanged.append(key)
                elif image[0] is not None:  # changed since the moment: as it was (None: created since)
                    add_image(key, image)
            pack_unchanged()  # (before the slice ends: a later write to them keeps a pre-image, unused)
            yield
        self._slot = slot + 1
        del self._pre[slot]
