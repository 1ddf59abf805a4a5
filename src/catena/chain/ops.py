"""The data commands: which are reads, which are writes, and how each becomes an op.

`to_op(args, now_ms)` runs at the head only: it checks syntax and arguments as Redis 7 does
(int64 integers in string2ll's strict form, expire times whose ms deadline fits in int64, with
Redis's error texts) and turns relative TTLs into absolute deadlines, so the op it returns means
the same on every member. `request(args)` splits a `CATENA.REQ` into request id and command. `read(state, args,
now_ms)` answers a read from local state. `read_keys(args)` tells which keys a read touches
(None: the whole keyspace), so a member can tell whether it may answer it locally (CRAQ).
"""

from __future__ import annotations

import zlib

from catena.chain import hashes, lists, sets, string_reads, strings, zsets
from catena.chain.glob import matcher as _matcher
from catena.chain.state import COUNT, DEL, GET, GT, INCRBY, KEEPTTL, LT, MSET, NX, PEXPIREAT, SET, XX, KVState
from catena.chain.values import TOO_MANY_DRAWS, WRONGTYPE, Lcg, TooManyDraws, WrongTypeError, of_type, type_name
from catena.resp.codec import Error, Status
from catena.resp.commands import INT64_MAX, INT64_MIN, parse_cursor, parse_int, wrong_args
from catena.chain.zset import ZSet, format_score
from catena.slots import SLOTS

_SYNTAX = Error("ERR syntax error")
_DECR_OVERFLOW = Error("ERR decrement would overflow")


def _set(args, now_ms):
    """SET key value [NX|XX] [GET] [EX|PX|EXAT|PXAT t|KEEPTTL], parsed as Redis parses it: every
    option first (a repeated option is allowed, the last time wins), then the time."""
    key, value = args[1], args[2]
    expire, flags, i = None, 0, 3
    while i < len(args):
        opt = args[i].upper()
        if opt in (b"NX", b"XX"):
            bit = NX if opt == b"NX" else XX
            if flags & (NX | XX) & ~bit:
                return _SYNTAX
            flags |= bit
        elif opt == b"GET":
            flags |= GET
        elif opt == b"KEEPTTL":
            if expire is not None:
                return _SYNTAX
            flags |= KEEPTTL
        elif opt in (b"EX", b"PX", b"EXAT", b"PXAT") and i + 1 < len(args):
            if flags & KEEPTTL or (expire is not None and expire[0] != opt):
                return _SYNTAX
            expire = (opt, args[i + 1])
            i += 1
        else:
            return _SYNTAX
        i += 1
    pxat = None
    if expire is not None:
        opt, raw = expire
        pxat = strings.ttl_deadline(raw, 1000 if opt in (b"EX", b"EXAT") else 1, now_ms, opt.endswith(b"AT"), b"set")
        if type(pxat) is Error:
            return pxat
    return (SET, key, value, pxat, flags)


def _setex(args, now_ms, unit):
    pxat = strings.ttl_deadline(args[2], unit, now_ms, False, args[0])
    return pxat if type(pxat) is Error else (SET, args[1], args[3], pxat, 0)


def _mset(args, now_ms):
    if len(args) % 2 == 0:
        return wrong_args(b"mset")
    return (MSET, tuple(args[1:]))


_EXPIRE_OPTIONS = {b"NX": NX, b"XX": XX, b"GT": GT, b"LT": LT}
_NX_WITH_OTHERS = Error("ERR NX and XX, GT or LT options at the same time are not compatible")
_GT_WITH_LT = Error("ERR GT and LT options at the same time are not compatible")


def _expire(args, now_ms, unit, absolute):
    """EXPIRE and kin (Redis's expireGenericCommand): options NX|XX|GT|LT first, then any int64
    whose deadline in ms fits in int64; a deadline in the past deletes the key (when applied)."""
    flags = 0
    for word in args[3:]:
        bit = _EXPIRE_OPTIONS.get(word.upper())
        if bit is None:
            return Error(f"ERR Unsupported option {word.decode(errors='replace')}")
        flags |= bit
    if flags & NX and flags & (XX | GT | LT):
        return _NX_WITH_OTHERS
    if flags & GT and flags & LT:
        return _GT_WITH_LT
    when = parse_int(args[2])
    if unit == 1000:
        if not -(INT64_MAX // 1000) <= when <= INT64_MAX // 1000:
            return strings.bad_expire(args[0])
        when *= 1000
    base = 0 if absolute else now_ms
    if when > INT64_MAX - base:
        return strings.bad_expire(args[0])
    return (PEXPIREAT, args[1], when + base, flags) if flags else (PEXPIREAT, args[1], when + base)


def _decrby(args, now_ms):
    n = parse_int(args[2])
    return _DECR_OVERFLOW if n == INT64_MIN else (INCRBY, args[1], -n)


# name -> (arity as in Redis's command table, builder(args, now_ms) -> op | Error)
WRITES = {
    b"SET": (-3, _set),
    b"MEMBER.PUT": (3, lambda a, now: (SET, a[1], a[2], None, 0)),
    b"SETNX": (3, lambda a, now: (SET, a[1], a[2], None, NX | COUNT)),
    b"SETEX": (4, lambda a, now: _setex(a, now, 1000)),
    b"PSETEX": (4, lambda a, now: _setex(a, now, 1)),
    b"GETSET": (3, lambda a, now: (SET, a[1], a[2], None, GET)),
    b"MSET": (-3, _mset),
    b"DEL": (-2, lambda a, now: (DEL, tuple(a[1:]))),
    b"UNLINK": (-2, lambda a, now: (DEL, tuple(a[1:]))),
    b"INCR": (2, lambda a, now: (INCRBY, a[1], 1)),
    b"DECR": (2, lambda a, now: (INCRBY, a[1], -1)),
    b"INCRBY": (3, lambda a, now: (INCRBY, a[1], parse_int(a[2]))),
    b"DECRBY": (3, _decrby),
    b"EXPIRE": (-3, lambda a, now: _expire(a, now, 1000, False)),
    b"PEXPIRE": (-3, lambda a, now: _expire(a, now, 1, False)),
    b"EXPIREAT": (-3, lambda a, now: _expire(a, now, 1000, True)),
    b"PEXPIREAT": (-3, lambda a, now: _expire(a, now, 1, True)),
    b"PERSIST": (2, lambda a, now: (PEXPIREAT, a[1], None)),
    **hashes.WRITES,
    **sets.WRITES,
    **lists.WRITES,
    **zsets.WRITES,
    **strings.WRITES,
}


WRITE_FORMS = {}  # name -> is_write(args): a command in READS too, a write in some forms (SORT ... STORE)
DECIDE = {}  # op kind -> decide(state, op, now_ms): more ops the head completes (SORT ... STORE's list)


def is_write(args: list[bytes], name: bytes | None = None) -> bool:
    """Does this command go through the head as a write? (`name`: args[0] upper-cased, when
    the caller has it.)"""
    if name is None:
        name = args[0].upper()
    form = WRITE_FORMS.get(name)
    return name in WRITES if form is None else form(args)


def decide(state, op, now_ms: int, rng):
    """The head, just before an op gets its seq: SPOP's random members, FLUSH's keys."""
    kind = op[0]
    more = DECIDE.get(kind)
    if more is not None:
        return more(state, op, now_ms)
    if kind == sets.SPOP:
        return sets.decide(state, op, now_ms, rng)
    return strings.decide(state, op) if kind == strings.FLUSH else op


def to_op(args: list[bytes], now_ms: int, name: bytes | None = None):
    """A write command as an op, or an Error reply for bad syntax (`name` as for `is_write`)."""
    if name is None:
        name = args[0].upper()
    if name not in WRITES:  # a forward from a peer can name anything
        return Error(f"ERR unknown command '{args[0].decode(errors='replace')}'")
    arity, build = WRITES[name]
    if (arity > 0 and len(args) != arity) or (arity < 0 and len(args) < -arity):
        return wrong_args(name)
    try:
        return build(args, now_ms)
    except ValueError as exc:
        return Error(f"ERR {exc}")


REQ = b"CATENA.REQ"
_REQ_ARGS = wrong_args(REQ)
_BAD_REQUEST_NO = Error("ERR request number is not an integer in [0, 9223372036854775807]")


def request(args: list[bytes]):
    """`CATENA.REQ <client-id> <request-no> [<lowest-unanswered-no>] <command…>` as
    (request id, command), or an Error reply. A word of digits after the request number is the
    watermark (no command name is one)."""
    if len(args) < 4:
        return _REQ_ARGS
    has_low = args[3].isdigit()
    try:
        n, low = parse_int(args[2]), parse_int(args[3]) if has_low else 0
    except ValueError:
        return _BAD_REQUEST_NO
    if n < 0:
        return _BAD_REQUEST_NO
    command = args[4 if has_low else 3:]
    return ((args[1], n, low), command) if command else _REQ_ARGS


# -- reads ---------------------------------------------------------------------------------------


def _scan_options(args, start: int, keyspace: bool):
    """SCAN's options from `args[start]` on: (count, match, type) or Redis's syntax error. TYPE
    is the keyspace SCAN's only."""
    count, match, kind = 10, None, None
    i = start
    while i < len(args):
        opt = args[i].upper()
        if i + 1 == len(args):
            return _SYNTAX
        if opt == b"COUNT":
            count = parse_int(args[i + 1])
            if count < 1:
                return _SYNTAX
        elif opt == b"MATCH":
            match = args[i + 1]
        elif opt == b"TYPE" and keyspace:
            kind = args[i + 1].lower()
        else:
            return _SYNTAX
        i += 2
    return count, match, kind


def _scan(state: KVState, args, now_ms):
    """SCAN cursor [MATCH pattern] [COUNT n] [TYPE type]. The cursor is the next hash slot to
    visit (0: start, and done), so it survives any insert or delete: a key present for the whole
    scan lies in a slot visited once, while it was there. A page visits whole slots until it
    holds COUNT candidates, so its cost follows COUNT, not the keyspace."""
    cursor = parse_cursor(args[1])
    options = _scan_options(args, 2, keyspace=True)
    if type(options) is Error:
        return options
    count, match, kind = options
    if not 0 <= cursor < SLOTS:
        return [b"0", []]
    slot, candidates = cursor, []
    while slot < SLOTS and len(candidates) < count:
        candidates += state.slot_keys(slot)
        slot += 1
    page = _live_matches(state, candidates, match, now_ms)
    if kind is not None:
        page = [k for k in page if type_name(state.get(k, now_ms)).encode() == kind]
    return [b"%d" % (slot if slot < SLOTS else 0), page]


SMALL_SCAN = 128  # a hash or set this small is scanned in one page (as Redis's listpacks are)
_HASH_SPACE = 2**32


def _scan_collection(kind: type):
    """HSCAN/SSCAN/ZSCAN key cursor [MATCH pattern] [COUNT n], checked in Redis's order (cursor, key,
    options). The cursor is a point in the crc32 space of the elements: a page returns the
    elements hashing into [cursor, next cursor), so an element present for the whole scan is
    returned once, however the collection changes. A page covers at least a 16th of the
    collection (a page costs a pass over it)."""
    def answer(state, args, now_ms):
        cursor = parse_cursor(args[2])
        value = of_type(state.get(args[1], now_ms), kind)
        if value is None:
            return [b"0", []]
        if kind is ZSet:
            value = value.scores
        options = _scan_options(args, 3, keyspace=False)
        if type(options) is Error:
            return options
        count, match, _ = options
        n = len(value)
        if n <= SMALL_SCAN or count >= n:
            page, after = list(value), 0
        elif cursor >= _HASH_SPACE:
            return [b"0", []]
        else:
            end = cursor + _HASH_SPACE * max(count, n // 16) // n + 1
            page = [e for e in value if cursor <= zlib.crc32(e) < end]
            after = end if end < _HASH_SPACE else 0
        matches = _matcher(match)
        if matches is not None:
            page = [e for e in page if matches(e)]
        if kind is dict:
            page = [w for e in page for w in (e, value[e])]
        elif kind is ZSet:
            page = [w for e in page for w in (e, format_score(value[e]))]
        return [b"%d" % after, page]
    return answer


def keys_in_slots(state: KVState, pattern: bytes, first: int, last: int, now_ms: int) -> list[bytes]:
    """The live keys matching `pattern` in slots [first, last): KEYS is these over every slot,
    which the member shell runs a few slots per event-loop turn."""
    out: list[bytes] = []
    for slot in range(first, last):
        keys = state.slot_keys(slot)
        if keys:
            out += _live_matches(state, keys, pattern, now_ms)
    return out


def _live_matches(state: KVState, keys, pattern: bytes | None, now_ms: int) -> list[bytes]:
    matches = _matcher(pattern)
    return [k for k in keys if (matches is None or matches(k)) and state.get(k, now_ms) is not None]


def _keys(state: KVState, args, now_ms):
    return keys_in_slots(state, args[1], 0, SLOTS, now_ms)


def _string(state, key, now_ms):
    return of_type(state.get(key, now_ms), bytes)


def _strlen(state, args, now_ms):
    value = _string(state, args[1], now_ms)
    return 0 if value is None else len(value)


def _mget(state, args, now_ms):
    values = [state.get(k, now_ms) for k in args[1:]]
    return [v if type(v) is bytes else None for v in values]


def _randomkey(state: KVState, args, now_ms, rng):
    """A live key chosen by `rng`: from a random slot on, the first slot holding live keys."""
    if not state.data:
        return None
    first = rng.randrange(SLOTS)
    for i in range(SLOTS):
        keys = [k for k in state.slot_keys((first + i) % SLOTS) if state.get(k, now_ms) is not None]
        if keys:
            return keys[rng.randrange(len(keys))]
    return None


def _expiretime(state: KVState, key: bytes, now_ms: int, unit: int) -> int:
    """EXPIRETIME (unit 1000) and PEXPIRETIME: the absolute deadline, -1 for none, -2 no key."""
    if state.get(key, now_ms) is None:
        return -2
    deadline = state.expires.get(key)
    return -1 if deadline is None else (deadline + unit // 2) // unit


# name -> (arity, keys(args) -> tuple | None for the whole keyspace, answer(state, args, now_ms))
READS = {
    b"GET": (2, lambda a: (a[1],), lambda s, a, now: _string(s, a[1], now)),
    b"MGET": (-2, lambda a: tuple(a[1:]), _mget),
    b"EXISTS": (-2, lambda a: tuple(a[1:]), lambda s, a, now: sum(s.get(k, now) is not None for k in a[1:])),
    b"STRLEN": (2, lambda a: (a[1],), _strlen),
    b"TYPE": (2, lambda a: (a[1],),
              lambda s, a, now: Status(type_name(s.get(a[1], now)))),
    b"TTL": (2, lambda a: (a[1],), lambda s, a, now: _ttl(s.ttl_ms(a[1], now), 1000)),
    b"PTTL": (2, lambda a: (a[1],), lambda s, a, now: _ttl(s.ttl_ms(a[1], now), 1)),
    b"DBSIZE": (1, lambda a: None, lambda s, a, now: s.live_count(now)),
    b"SCAN": (-2, lambda a: None, _scan),
    b"KEYS": (2, lambda a: None, _keys),
    **hashes.READS,
    b"HSCAN": (-3, lambda a: (a[1],), _scan_collection(dict)),
    b"HRANDFIELD": (-2, lambda a: (a[1],), hashes.hrandfield),
    **sets.READS,
    b"SSCAN": (-3, lambda a: (a[1],), _scan_collection(set)),
    b"SRANDMEMBER": (-2, lambda a: (a[1],), sets.srandmember),
    **lists.READS,
    **zsets.READS,
    b"ZSCAN": (-3, lambda a: (a[1],), _scan_collection(ZSet)),
    b"ZRANDMEMBER": (-2, lambda a: (a[1],), zsets.zrandmember),
    **string_reads.READS,
    b"RANDOMKEY": (1, lambda a: None, _randomkey),
    b"EXPIRETIME": (2, lambda a: (a[1],), lambda s, a, now: _expiretime(s, a[1], now, 1000)),
    b"PEXPIRETIME": (2, lambda a: (a[1],), lambda s, a, now: _expiretime(s, a[1], now, 1)),
    b"TIME": (1, lambda a: (), lambda s, a, now: [b"%d" % (now // 1000), b"%d" % (now % 1000 * 1000)]),
}
_RANDOM = frozenset((b"HRANDFIELD", b"SRANDMEMBER", b"ZRANDMEMBER", b"RANDOMKEY"))  # answered with the caller's randomness
_FIXED = Lcg()


def _ttl(ms: int, unit: int) -> int:
    return ms if ms < 0 else (ms + unit // 2) // unit


def read_keys(args: list[bytes]):
    """The keys a read touches (None: all of them); () when the arity is wrong."""
    return keys_of(READS.get(args[0].upper()), args)


def keys_of(entry, args: list[bytes]):
    """`read_keys`, given the command's READS entry (None: not a read)."""
    if entry is None:
        return ()
    try:
        return entry[1](args)
    except IndexError:
        return ()


def read(state: KVState, args: list[bytes], now_ms: int, rng=None):
    """Answer a read command from `state`, or an Error reply for bad syntax. `rng` (random.Random's
    `randrange`; default a fixed seed) draws HRANDFIELD's and SRANDMEMBER's picks."""
    name = args[0].upper()
    entry = READS.get(name)
    if entry is None:
        return Error(f"ERR unknown command '{args[0].decode(errors='replace')}'")
    return answer(state, name, entry, args, now_ms, rng)


def answer(state: KVState, name: bytes, entry, args: list[bytes], now_ms: int, rng=None):
    """`read`, given the command's upper-case `name` and its READS `entry` (looked up once by
    a caller that needs them too)."""
    arity, _, respond = entry
    if (arity > 0 and len(args) != arity) or (arity < 0 and len(args) < -arity):
        return wrong_args(name)
    try:
        if name in _RANDOM:
            return respond(state, args, now_ms, rng or _FIXED)
        return respond(state, args, now_ms)
    except WrongTypeError:
        return WRONGTYPE
    except TooManyDraws:
        return TOO_MANY_DRAWS
    except ValueError as exc:
        return Error(f"ERR {exc}")
