"""The ops of the slot table (`catena.chain.slot_table`, docs/sharding.md), and the internal
commands that issue them:

    (SLOTS, first, last, state, peer[, fence])  slots first..last move to `state` (peer: a chain id, or -1)
    (IMPORT, slot, ((key, blob, pxat), …)[, fence[, requests]])  copied keys (blob: the value
                                          packed as in a state dump, None: delete the key; pxat
                                          None: no deadline) and the requests that wrote the slot
                                          (KVState.requests_of_slot: a retry after the move is
                                          answered, not applied again)
    (CLEAR, slot[, fence])                drop every key of a given or unowned slot

`fence` (the coordinator leader's, optional) must be at least the newest that changed each slot
before, or the op is refused and changes nothing: a deposed leader's call still on its way
cannot undo what its successor did. The commands take it as `FENCE n` after their name.

A SLOTS entry whose transition is not in `MOVES` for some slot changes nothing and answers an
error; one whose target already holds answers OK (every step can be repeated). IMPORT needs the
slot IMPORTING; CLEAR needs it GIVEN or NONE. `CATENA.SLOTS`,
`CATENA.IMPORT` and `CATENA.CLEARSLOT` issue them, and the read `CATENA.SLOTDUMP slot` answers a
slot's live keys as IMPORT's words (the internal plane).
"""

from __future__ import annotations

import msgpack

from catena.chain import ops, state as kv
from catena.chain.dump_values import pack_value, unpack_value
from catena.chain.slot_table import GIVEN, IMPORTING, MOVES, NAMES, NONE, OWNED, WITH_PEER
from catena.resp.codec import OK, Error
from catena.resp.commands import parse_int
from catena.slots import SLOTS as SLOT_COUNT, key_slot

SLOTS, IMPORT, CLEAR = 45, 46, 47  # op tags (48, 49 reserved for sharding)
KINDS = frozenset((SLOTS, IMPORT, CLEAR))
_BY_NAME = {name.encode(): i for i, name in enumerate(NAMES)}
# CLEAR only while nobody here serves the slot and no copy into it is under way: a CLEAR resent
# late can never wipe a copy (it lands while the slot is importing: refused)
CLEARABLE = frozenset((GIVEN, NONE))


def _fenced(apply, at: int):
    """`apply` behind the fence check; `at`: the fence's index in the op (absent: 0)."""
    def fenced(state, op, ts):
        fence, fences = (op[at] if len(op) > at else 0), state.table.fences
        first, last = op[1], (op[2] if op[0] == SLOTS else op[1])
        newest = max((fences.get(s, 0) for s in range(first, last + 1)), default=0) if fences else 0
        if fence < newest:
            return Error(f"ERR slot {first} was changed under fence {newest}: fence {fence} is older")
        reply = apply(state, op, ts)
        if fence and type(reply) is not Error:
            fences.update(dict.fromkeys(range(first, last + 1), fence))
        return reply
    return fenced


def _apply_slots(state, op, ts):
    _, first, last, to, peer = op[:5]
    table = state.table
    for slot in range(first, last + 1):
        now = table.states[slot]
        if now == to and (to not in WITH_PEER or table.peers.get(slot) == peer):
            continue
        if (now, to) not in MOVES:
            return Error(f"ERR slot {slot} is {NAMES[now]}: it cannot become {NAMES[to]}")
        if (now, to) == (OWNED, NONE) and state.slot_keys(slot):
            return Error(f"ERR slot {slot} holds keys: it cannot become none")
    for slot in range(first, last + 1):
        table.states[slot] = to
        if to in WITH_PEER:
            table.peers[slot] = peer
        else:
            table.peers.pop(slot, None)
    return OK


def _apply_import(state, op, ts):
    slot = op[1]
    if state.table.states[slot] != IMPORTING:
        return Error(f"ERR slot {slot} is {NAMES[state.table.states[slot]]}, not importing")
    for key, blob, pxat in op[2]:
        state.drop(key)
        if blob is not None and (pxat is None or pxat > ts):
            state.put(key, unpack(blob))
            state.expire_at(key, pxat)
    if len(op) > 4:  # kept as committed (seq 0): nobody reaches them before TAKE, a later entry
        state.adopt(op[4], 0)
    return len(op[2])


def _apply_clear(state, op, ts):
    slot = op[1]
    if state.table.states[slot] not in CLEARABLE:
        return Error(f"ERR slot {slot} is {NAMES[state.table.states[slot]]}: only a given or unowned slot is cleared")
    keys = list(state.slot_keys(slot))
    for key in keys:
        state.drop(key)
    return len(keys)


def pack(value) -> bytes:
    """A value (of any type) as IMPORT carries it."""
    return msgpack.packb(value, use_bin_type=True, default=pack_value)


def unpack(blob: bytes):
    return msgpack.unpackb(blob, raw=True, use_list=False, strict_map_key=False, ext_hook=unpack_value)


def _slot(v) -> bool:
    return type(v) is int and 0 <= v < SLOT_COUNT


def _copied(item) -> bool:
    return (type(item) is tuple and len(item) == 3 and type(item[0]) is bytes
            and (item[1] is None or type(item[1]) is bytes) and (item[2] is None or type(item[2]) is int))


def _fence_ok(op, at: int) -> bool:
    return len(op) == at or (len(op) == at + 1 and type(op[at]) is int and op[at] >= 0)


def _request(r) -> bool:
    """One of KVState.requests_of_slot's records: [client, number, reply (wired), key, watermark]."""
    if not (type(r) is tuple and len(r) == 5 and type(r[0]) is bytes and type(r[1]) is int and type(r[3]) is bytes
            and type(r[4]) is int):
        return False
    try:
        kv.unwire_reply(r[2])
    except ValueError:
        return False
    return True


def _import_ok(op) -> bool:
    if len(op) == 5:  # with the requests (and a fence, 0 for none)
        return type(op[3]) is int and op[3] >= 0 and type(op[4]) is tuple and all(map(_request, op[4]))
    return _fence_ok(op, 3)


_SHAPES = {
    SLOTS: lambda op: (_fence_ok(op, 5) and _slot(op[1]) and _slot(op[2]) and op[1] <= op[2]
                       and type(op[3]) is int and 0 <= op[3] <= NONE and type(op[4]) is int),
    IMPORT: lambda op: (_import_ok(op) and _slot(op[1]) and type(op[2]) is tuple
                        and all(_copied(i) for i in op[2])),
    CLEAR: lambda op: _fence_ok(op, 2) and _slot(op[1]),
}


# -- the internal commands that issue them --------------------------------------------------------


def _slot_arg(word: bytes) -> int:
    slot = parse_int(word)
    if not 0 <= slot < SLOT_COUNT:
        raise ValueError("Invalid or out of range slot")
    return slot


def _build_slots(args, now_ms):
    """CATENA.SLOTS first last owned|frozen|given|importing|none [chain]"""
    first, last = _slot_arg(args[1]), _slot_arg(args[2])
    to = _BY_NAME.get(args[3].lower())
    if to is None or first > last or (len(args) == 5) != (to in WITH_PEER):
        return Error("ERR syntax: CATENA.SLOTS first last owned|frozen|none, or given|importing chain")
    peer = parse_int(args[4]) if to in WITH_PEER else -1
    return (SLOTS, first, last, to, peer)


def _build_import(args, now_ms):
    """CATENA.IMPORT slot [REQUESTS blob] [key blob pxat|-]…: an empty blob deletes the key;
    REQUESTS (as CATENA.SLOTDUMP answers it): the requests that wrote the slot, packed."""
    slot = _slot_arg(args[1])
    words = args[2:]
    requests = None
    if len(words) % 3 == 2 and words[0].upper() == b"REQUESTS":
        try:
            requests = tuple(unpack(words[1]))
        except Exception:
            requests = None
        if requests is None or not all(map(_request, requests)):
            return Error("ERR a CATENA.IMPORT REQUESTS blob is not a packed list of requests")
        if any(key_slot(r[3]) != slot for r in requests):
            return Error(f"ERR a CATENA.IMPORT request did not write slot {slot}")
        words = words[2:]
    if len(words) % 3:
        return Error("ERR syntax: CATENA.IMPORT slot [REQUESTS blob] [key value-blob pxat|-]...")
    items = []
    for i in range(0, len(words), 3):
        key, blob, pxat = words[i:i + 3]
        if key_slot(key) != slot:
            return Error(f"ERR key {key[:64]!r} is not in slot {slot}")
        if blob:
            try:
                unpack(blob)
            except Exception:
                return Error("ERR a CATENA.IMPORT value is not a packed value")
        items.append((key, blob or None, None if pxat == b"-" else parse_int(pxat)))
    return (IMPORT, slot, tuple(items)) if requests is None else (IMPORT, slot, tuple(items), 0, requests)


def _with_fence(build, words: int, most: int | None = None, at: int | None = None):
    """The command's builder, after an optional `FENCE n` (appended to the op, or in its place
    `at` when the op is longer); `words` (and `most`): how many words the command has without it."""
    def built(args, now_ms):
        fence = 0
        if len(args) > 1 and args[1].upper() == b"FENCE":
            fence = parse_int(args[2]) if len(args) > 2 else -1
            if fence < 0:
                return Error("ERR FENCE takes a fence of 0 or more")
            args = [args[0], *args[3:]]
        if len(args) < words or (most is not None and len(args) > most):
            return Error(f"ERR wrong number of arguments for '{args[0].decode(errors='replace').lower()}' command")
        op = build(args, now_ms)
        if type(op) is Error or not fence:
            return op
        return (*op[:at], fence, *op[at + 1:]) if at is not None and len(op) > at else (*op, fence)
    return built


kv.extend(SLOTS, _fenced(_apply_slots, 5), _SHAPES[SLOTS], lambda op: ())
kv.extend(IMPORT, _fenced(_apply_import, 3), _SHAPES[IMPORT], lambda op: tuple(item[0] for item in op[2]))
kv.extend(CLEAR, _fenced(_apply_clear, 2), _SHAPES[CLEAR], lambda op: ())  # its slot is served by nobody here: no reader to keep clean
ops.WRITES[b"CATENA.SLOTS"] = (-4, _with_fence(_build_slots, 4))
ops.WRITES[b"CATENA.IMPORT"] = (-2, _with_fence(_build_import, 2, at=3))
ops.WRITES[b"CATENA.CLEARSLOT"] = (-2, _with_fence(lambda a, now: (CLEAR, _slot_arg(a[1])), 2, 2))


def _dump_slot(state, args, now_ms):
    """CATENA.SLOTDUMP slot [since]: [as-of seq, [live keys], [REQUESTS blob,] key, blob, pxat|-,
    …]: the slot's live keys, and IMPORT's words for each (with `since`: only for those written
    after that seq, when this member's key versions reach back that far), after the requests
    that wrote the slot (all of them, every time). The state holds every write up to the as-of
    seq, so a later dump `since` it holds whatever changed in between."""
    slot = _slot_arg(args[1])
    since = parse_int(args[2]) if len(args) > 2 else None
    versions = state.versions
    if since is not None and versions.floor > since:
        since = None  # the versions forgot writes since then: every key
    live: list[bytes] = []
    out = [versions.last, live]
    requests = state.requests_of_slot(slot)
    if requests:
        out += [b"REQUESTS", pack(requests)]
    for key in sorted(state.slot_keys(slot)):
        value = state.get(key, now_ms)
        if value is None:
            continue
        live.append(key)
        if since is None or versions.of(key) > since:
            pxat = state.expires.get(key)
            out += [key, pack(value), b"-" if pxat is None else b"%d" % pxat]
    return out


ops.READS[b"CATENA.SLOTDUMP"] = (-2, lambda a: None, _dump_slot)
COMMANDS = frozenset((b"CATENA.SLOTS", b"CATENA.IMPORT", b"CATENA.CLEARSLOT", b"CATENA.SLOTDUMP"))  # internal plane only
