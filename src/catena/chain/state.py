"""The replicated state: keys of every type, absolute expiry deadlines, and the dedup table.

A key holds a string (bytes), a hash (dict field -> value), a set (set of members), a list
(deque of elements) or a sorted set (`zset.ZSet`); the ops on those are applied by
`catena.chain.hashes`, `.sets`, `.lists` and `.zsets`.

`apply(op, ts)` is deterministic: every member applies the same ops in seq order with the
timestamp the head stamped on each entry, so every member computes the same state and the same
reply. Expiry is decided by that timestamp during apply (never by a member's own clock); reads
hide keys whose deadline passed on the local clock but never delete them.

Ops are tuples built by `catena.chain.ops` at the head:

    (SET, key, value, pxat | None, flags)   flags: NX XX GET KEEPTTL COUNT
    (MSET, (k1, v1, k2, v2, ...))
    (DEL, (key, ...))
    (INCRBY, key, delta)
    (PEXPIREAT, key, pxat | None[, flags])  None: PERSIST; flags: NX XX GT LT (EXPIRE's options)
    (PURGE, (key, ...))                     expiry decided by the head (older logs: (PURGE, key))

and the hash, set, list, sorted set and more string ops (kinds 6 on; see their modules and docs/protocol.md).
Modules of other ops (transactions, pub/sub: kinds 40 on) add their kinds with `extend`.
"""

from __future__ import annotations

import heapq

import msgpack

from catena.chain import hashes, lists, sets, strings, zsets
from catena.chain.dump_values import pack_value, unpack_value
from catena.chain.slot_table import SlotTable
from catena.chain.versions import Versions
from catena.chain.values import WRONGTYPE, WrongTypeError
from catena.resp.codec import NULL_ARRAY, OK, Error, Status
from catena.resp.commands import INT64_MAX, INT64_MIN, parse_int
from catena.slots import SLOTS, key_slot

SET, MSET, DEL, INCRBY, PEXPIREAT, PURGE = range(6)
NX, XX, GET, KEEPTTL, COUNT = 1, 2, 4, 8, 16  # COUNT: reply 1 or 0, as SETNX does
GT, LT = 32, 64

DEDUP_PER_CLIENT = 100_000  # a bound on replies kept per client id (the watermark keeps it small)


def _key(v) -> bool:
    return type(v) is bytes


def _deadline(v) -> bool:
    return v is None or type(v) is int


_SHAPES = {
    SET: lambda op: (len(op) == 5 and type(op[1]) is bytes and type(op[2]) is bytes  # (inline: every entry)
                     and (op[3] is None or type(op[3]) is int) and type(op[4]) is int),
    MSET: lambda op: (len(op) == 2 and type(op[1]) is tuple and len(op[1]) >= 2 and len(op[1]) % 2 == 0
                      and all(_key(w) for w in op[1])),
    DEL: lambda op: len(op) == 2 and type(op[1]) is tuple and len(op[1]) >= 1 and all(_key(k) for k in op[1]),
    INCRBY: lambda op: len(op) == 3 and _key(op[1]) and type(op[2]) is int,
    PEXPIREAT: lambda op: (len(op) == 3 or len(op) == 4 and type(op[3]) is int) and _key(op[1]) and _deadline(op[2]),
    PURGE: lambda op: len(op) == 2 and (_key(op[1]) or (type(op[1]) is tuple and len(op[1]) >= 1
                                                        and all(_key(k) for k in op[1]))),
    **hashes.SHAPES,
    **sets.SHAPES,
    **lists.SHAPES,
    **zsets.SHAPES,
    **strings.SHAPES,
}
_TYPED = {**hashes.APPLY, **sets.APPLY, **lists.APPLY, **zsets.APPLY, **strings.APPLY}
_MANY_KEYS = {sets.SMOVE: lambda op: op[1:3], **lists.KEYS, **zsets.KEYS, **strings.KEYS}  # ops writing more keys than op[1]


def extend(kind: int, apply, shape, keys) -> None:
    """Add an op kind: `apply(state, op, ts)` -> reply, `shape(op)` -> bool (a peer's op is
    checked with it), `keys(op)` -> the keys it writes."""
    _TYPED[kind], _SHAPES[kind], _MANY_KEYS[kind] = apply, shape, keys


def valid_op(op) -> bool:
    """Is `op` one this module applies (checked before applying an entry from a peer)?"""
    shape = _SHAPES.get(op[0]) if type(op) is tuple and op else None
    return shape is not None and shape(op)


def op_keys(op) -> tuple:
    """The keys an op writes."""
    kind = op[0]
    if kind == MSET:
        return op[1][0::2]
    if kind == DEL or (kind == PURGE and type(op[1]) is tuple):
        return op[1]
    many = _MANY_KEYS.get(kind)
    return (op[1],) if many is None else many(op)


def _expire_allowed(flags: int, current: int | None, pxat: int) -> bool:
    """EXPIRE's NX/XX/GT/LT against the key's deadline (None: none, an infinite TTL), as Redis."""
    if flags & NX and current is not None or flags & XX and current is None:
        return False
    if flags & GT and (current is None or pxat <= current):
        return False
    return not (flags & LT and current is not None and pxat >= current)


class KVState:
    """Keys and values (bytes, dict, set, deque or ZSet: string, hash, set, list or zset), expiry deadlines (ms since the epoch), dedup table, and the keys
    indexed by hash slot (`by_slot[slot]`: a dict of keys to None, or None while the slot never held
    a key), so SCAN and KEYS can walk the keyspace a few slots at a time. (A dict of bytes to None,
    unlike a set, is no container the garbage collector tracks: its collections never walk the
    index.) A state loaded from a snapshot
    enters its keys in the index in steps (`index_step`, a slice per loop turn in the member
    shell; `slot_keys` completes it first if a read needs it sooner)."""

    __slots__ = ("data", "expires", "dedup", "floors", "_heap", "by_slot", "unindexed", "versions", "table",
                 "dumping")

    def __init__(self):
        self.data: dict[bytes, object] = {}  # bytes, or a collection (chain/values.py)
        self.by_slot: list[dict[bytes, None] | None] = [None] * SLOTS
        self.unindexed: list[bytes] = []  # loaded keys not yet in by_slot (see index_step)
        self.expires: dict[bytes, int] = {}
        self.dedup: dict[bytes, dict[int, tuple]] = {}  # client -> number -> (seq, reply, first key | None)
        self.floors: dict[bytes, int] = {}  # client -> requests below this were all answered
        self._heap: list[tuple[int, bytes]] = []
        self.versions = Versions()  # for WATCH; kept by the replica, which knows the seqs
        self.table = SlotTable()  # the hash slots this chain serves (chain/slot_table.py)
        self.dumping = None  # the StateDumps in progress (a tuple), told of every key before it changes (chain/state_dump.py)

    # -- reads (local clock) ----------------------------------------------------------------

    def get(self, key: bytes, now_ms: int):
        """The live value of `key`, of any type (None: no such key)."""
        value = self.data.get(key)
        if value is not None and self.expires and key in self.expires and self.expires[key] <= now_ms:
            return None
        return value

    def ttl_ms(self, key: bytes, now_ms: int) -> int:
        if self.get(key, now_ms) is None:
            return -2
        deadline = self.expires.get(key)
        return -1 if deadline is None else max(0, deadline - now_ms)

    def live_count(self, now_ms: int) -> int:
        if not self.expires:
            return len(self.data)
        return len(self.data) - sum(1 for d in self.expires.values() if d <= now_ms)

    def expired_keys(self, now_ms: int, sample: int) -> tuple[list[bytes], int]:
        """For the head to purge through the chain: the keys whose deadline passed among the
        next `sample` due deadlines (earliest first; a deadline since changed or removed is
        stale), and how many deadlines it looked at (below `sample`: no more are due)."""
        heap, out, seen = self._heap, [], 0
        expires = self.expires
        while seen < sample and heap and heap[0][0] <= now_ms:
            deadline, key = heapq.heappop(heap)
            seen += 1
            if expires.get(key) == deadline:
                out.append(key)
        return out, seen

    def _forget_stale(self, budget: int) -> None:
        """Drop up to `budget` stale deadlines from the heap's top (members other than the head
        never call `expired_keys`: this keeps their heap as small as the head's)."""
        heap, expires = self._heap, self.expires
        while budget > 0 and heap and expires.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)
            budget -= 1

    # -- writes (entry timestamp) -------------------------------------------------------------

    def live(self, key: bytes, ts: int):
        """The value of `key` at entry time `ts` (a key whose deadline passed is dropped)."""
        return self._live(key, ts)

    def put(self, key: bytes, value) -> None:
        """`key` holds `value` now (its deadline, if any, kept)."""
        if key not in self.data:
            self._index(key)
        self.data[key] = value

    def store(self, key: bytes, value) -> None:
        """`key` holds `value` now, without a deadline (a *STORE's destination)."""
        self.put(key, value)
        if self.expires:
            self.expires.pop(key, None)

    def drop(self, key: bytes) -> bool:
        return self._drop(key)

    def expire_at(self, key: bytes, pxat: int | None) -> None:
        """`key` (present) expires at `pxat` now (None: never)."""
        self._set_deadline(key, pxat)

    def _live(self, key: bytes, ts: int):
        value = self.data.get(key)
        if value is not None and self.expires:
            deadline = self.expires.get(key)
            if deadline is not None and deadline <= ts:
                self._drop(key)
                return None
        return value

    def _drop(self, key: bytes) -> bool:
        if self.dumping is not None:  # (also keys the op does not name: an expired one, a cleared slot's)
            self._before((key,))
        self.expires.pop(key, None)
        if self.data.pop(key, None) is None:
            return False
        keys = self.by_slot[key_slot(key)]
        if keys is not None:  # None: a loaded key not indexed yet
            keys.pop(key, None)
        return True

    def _before(self, keys) -> None:
        for dump in self.dumping:
            dump.before(keys)

    def _index(self, key: bytes) -> None:
        """A key new to `data`: enter it in its slot's index."""
        keys = self.by_slot[slot := key_slot(key)]
        if keys is None:
            keys = self.by_slot[slot] = {}
        keys[key] = None

    def slot_keys(self, slot: int):
        """The keys of one hash slot (expired ones included), a set-like view; empty if none."""
        if self.unindexed:
            self.index_step(len(self.unindexed))
        keys = self.by_slot[slot]
        return _EMPTY if keys is None else keys.keys()

    def index_step(self, n: int) -> bool:
        """Enter up to `n` more loaded keys in the slot index; True once it is complete."""
        keys, data, index = self.unindexed, self.data, self._index
        for key in keys[-n:]:
            if key in data:  # not deleted since the load (a write since then indexed it already)
                index(key)
        del keys[-n:]
        return not keys

    def _set_deadline(self, key: bytes, pxat: int | None) -> None:
        if pxat is None:
            self.expires.pop(key, None)
        else:
            self.expires[key] = pxat
            heapq.heappush(self._heap, (pxat, key))

    def apply(self, op: tuple, ts: int):
        """Apply one op stamped with time `ts`; return the client's reply."""
        if self.dumping is not None:
            self._before(op_keys(op))
        kind = op[0]
        if kind == SET:
            _, key, value, pxat, flags = op
            if flags:
                old = self._live(key, ts)
                if flags & GET and old is not None and type(old) is not bytes:
                    return WRONGTYPE
                if (flags & NX and old is not None) or (flags & XX and old is None):
                    return 0 if flags & COUNT else old if flags & GET else None
                keep = flags & KEEPTTL and key in self.expires
                if old is None and key not in self.data:
                    self._index(key)
                self.data[key] = value
                if not keep:
                    self._set_deadline(key, pxat)
                return 1 if flags & COUNT else old if flags & GET else OK
            if key not in self.data:
                self._index(key)
            self.data[key] = value
            if pxat is not None or (self.expires and key in self.expires):
                self._set_deadline(key, pxat)
            return OK
        if kind == INCRBY:
            _, key, delta = op
            old = self._live(key, ts)
            if old is not None and type(old) is not bytes:
                return WRONGTYPE
            try:
                n = parse_int(old) if old is not None else 0
            except ValueError:
                return Error("ERR value is not an integer or out of range")
            n += delta
            if not INT64_MIN <= n <= INT64_MAX:
                return Error("ERR increment or decrement would overflow")
            if old is None:
                self._index(key)
            self.data[key] = b"%d" % n
            return n
        if kind == MSET:
            pairs, data = op[1], self.data
            for i in range(0, len(pairs), 2):
                if pairs[i] not in data:
                    self._index(pairs[i])
                data[pairs[i]] = pairs[i + 1]
                if self.expires:
                    self.expires.pop(pairs[i], None)
            return OK
        if kind == DEL:
            return sum(1 for key in op[1] if self._live(key, ts) is not None and self._drop(key))
        if kind == PEXPIREAT:
            key, pxat = op[1], op[2]
            if self._live(key, ts) is None:
                return 0
            if pxat is None:
                return 1 if self.expires.pop(key, None) is not None else 0
            if len(op) == 4 and not _expire_allowed(op[3], self.expires.get(key), pxat):
                return 0
            if pxat <= ts:
                self._drop(key)
            else:
                self._set_deadline(key, pxat)
            return 1
        if kind == PURGE:
            keys = op[1] if type(op[1]) is tuple else (op[1],)
            purged = 0
            for key in keys:
                deadline = self.expires.get(key)
                if deadline is not None and deadline <= ts:
                    self._drop(key)
                    purged += 1
            self._forget_stale(2 * len(keys))
            return purged
        typed = _TYPED.get(kind)
        if typed is not None:
            try:
                return typed(self, op, ts)
            except WrongTypeError:
                return WRONGTYPE
        raise ValueError(f"unknown op kind {kind!r}")

    # -- dedup table (replicated with the data) ------------------------------------------------

    # A request id is (client, number, lowest number the client still awaits an answer for).
    # The third part is a watermark (RIFL's): replies below it can be forgotten, so the table
    # holds only what a client may still retry, however many requests it has in flight.

    def seen(self, rid) -> tuple | None:
        """(seq, reply, first key) of an already applied request id, or None."""
        client = self.dedup.get(rid[0])
        return None if client is None else client.get(rid[1])

    def answered(self, rid) -> bool:
        """Below the client's watermark and forgotten: answered already, never to re-apply."""
        return rid[1] < self.floors.get(rid[0], 0)

    def remember(self, rid, seq: int, reply, key: bytes | None = None) -> None:
        """Keep the reply of request `rid`, applied at `seq`; `key`: the first key it wrote, so
        that its record moves with the key's hash slot (`requests_of_slot`, `adopt`)."""
        name = rid[0]
        client = self.dedup.get(name)
        if client is None:
            client = self.dedup[name] = {}
        client[rid[1]] = (seq, reply, key)
        if len(rid) > 2:
            self._raise_floor(name, client, rid[2])
        if len(client) > DEDUP_PER_CLIENT:
            del client[next(iter(client))]

    def _raise_floor(self, name: bytes, client: dict, floor: int) -> None:
        """Client `name` awaits no reply below `floor` any more: forget them."""
        if floor > self.floors.get(name, 0):
            self.floors[name] = floor
            for n in [n for n in client if n < floor]:
                del client[n]

    def requests_of_slot(self, slot: int) -> list:
        """The kept requests that wrote `slot`, as `adopt` takes them: [client, number, reply
        (wired), key, the client's watermark]. A slot moving to another chain takes them along,
        so that a client retrying a write there after a MOVED gets its first reply instead of
        applying it twice."""
        floors = self.floors
        return [[client, n, wire_reply(reply), key, floors.get(client, 0)]
                for client, reqs in self.dedup.items() for n, (_, reply, key) in reqs.items()
                if type(key) is bytes and key_slot(key) == slot]

    def adopt(self, records, seq: int) -> int:
        """Keep requests another chain applied (`requests_of_slot`'s, checked), as applied at
        `seq` here; one this chain keeps already, or below its client's watermark, is skipped.
        Returns how many were kept."""
        kept = 0
        for name, n, reply, key, floor in records:
            client = self.dedup.setdefault(name, {})
            self._raise_floor(name, client, floor)
            if n < self.floors.get(name, 0) or n in client:
                continue
            client[n] = (seq, unwire_reply(reply), key)
            kept += 1
        return kept

    # -- snapshots -----------------------------------------------------------------------------

    def dump(self) -> bytes:
        """The whole state in one msgpack (chain/state_dump.py makes the same a slice at a time)."""
        return msgpack.packb(self.dump_parts(), use_bin_type=True, default=pack_value)

    def dump_parts(self) -> list:
        """[data, expires, dedup, floors, slot table]: what a dump packs."""
        dedup = {c: [[r, s, wire_reply(v), k] for r, (s, v, k) in reqs.items()] for c, reqs in self.dedup.items()}
        return [self.data, self.expires, dedup, self.floors, self.table.dump()]

    @classmethod
    def load(cls, blob: bytes) -> "KVState":
        return cls.from_parts(msgpack.unpackb(blob, raw=True, use_list=False, strict_map_key=False,
                                              ext_hook=unpack_value))

    @classmethod
    def from_parts(cls, parts, state: "KVState | None" = None) -> "KVState":
        """The state of a dump's decoded parts; `state`: one whose data (the first part) and slot
        index the caller already entered, key by key (chain/state_load.py)."""
        if type(parts) is not tuple or len(parts) not in (4, 5):
            raise ValueError("a state dump is [data, expires, dedup, floors, slot table]")
        data, expires, dedup, floors = parts[:4]  # dumps from before the slot table have four parts
        if not (type(data) is dict and type(expires) is dict and type(dedup) is dict and type(floors) is dict):
            raise ValueError("a state dump is [data, expires, dedup, floors] maps")
        if state is None:
            state = cls()
            state.data = data  # msgpack builds the dicts; no copy
            state.unindexed = list(data)
        if len(parts) == 5:
            state.table = SlotTable.load(parts[4])
        state.expires = expires
        state._heap = [(d, k) for k, d in state.expires.items()]
        heapq.heapify(state._heap)
        state.floors = dict(floors)
        state.dedup = {c: {r[0]: (r[1], unwire_reply(r[2]), r[3] if len(r) > 3 else None) for r in reqs}
                       for c, reqs in dedup.items()}  # (records from before keys were kept have three parts)
        return state


_EMPTY: frozenset = frozenset()
_UNWIRED = (Status, Error, list, tuple)  # kinds wire_reply encodes


def wire_reply(value):
    """Replies are kept in the dedup table; encode the non-msgpack kinds (an array holding any,
    as EXEC's replies do, item by item)."""
    kind = type(value)
    if kind is Status:
        return [b"+", value.text.encode()]
    if kind is Error:
        return [b"-", value.message.encode()]
    if value is NULL_ARRAY:
        return [b"_", b""]
    if (kind is list or kind is tuple) and any(type(v) in _UNWIRED or v is NULL_ARRAY for v in value):
        return [b"*", [wire_reply(v) for v in value]]
    return [b"=", value]


def unwire_reply(raw):
    if type(raw) is not tuple or len(raw) != 2 or raw[0] not in (b"+", b"-", b"=", b"*", b"_"):
        raise ValueError("a reply is [\"+\"|\"-\"|\"=\"|\"*\"|\"_\", value]")
    tag, value = raw
    if tag == b"_":
        return NULL_ARRAY
    if tag == b"*":
        if type(value) is not tuple:
            raise ValueError("an array reply carries an array")
        return [unwire_reply(v) for v in value]
    if tag != b"=" and type(value) is not bytes:
        raise ValueError("a status or error reply carries bytes")
    if tag == b"+":
        return OK if value == b"OK" else Status(value.decode())
    if tag == b"-":
        return Error(value.decode())
    return value
