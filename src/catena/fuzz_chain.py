"""Whole-chain fuzzer: seeded well-formed commands with extreme arguments through a 3-member chain.

    python -m catena.fuzz --target chain --inputs 1000000 [--seed N] [--batch 100] [--max-value 65536]
    python -m catena.fuzz --target chain --real --inputs 3000      # a slice through real processes
    python -m catena.fuzz --target chain --redis 127.0.0.1:6379    # every reply as redis-server's

Commands (`Commands`) are every data command catena has, with int64 edges and beyond, malformed
integers (" 5", "+5", "05", "1_0"), zero, negative, past, near and huge TTLs, empty, binary and
long keys, values up to `--max-value` bytes, wrapped in `CATENA.REQ` with extreme request numbers.

The pure chain (`PureChain`) is three `Replica` machines on a virtual wall clock; every frame
goes through the real wire codec (`messages.pack`, an unpacker per link) and every Persist is
encoded as the member shell's log encodes it, so an entry the head accepted but cannot encode
is an exception here. Commands of a batch go to random members (writes are forwarded to the
head, reads may be sent on to the tail); the head's expiry timer runs between batches. After
every batch: each command was answered, a fresh write commits, every member has applied and
committed the same seq and holds the same data, expiry deadlines and dedup table. A failure
prints its batch seed: `--seed S --replay-batch B` runs that batch alone from a fresh chain
after the same earlier batches.

`--redis HOST:PORT` sends every command to the head (one at a time, so there is one order) and to
a real redis-server, and compares the replies, error texts included (`run_against_redis`).

`--real` starts a coordinator and three members (`catena` processes on free loopback ports),
sends the same kind of commands with redis-py (pipelines to random members; TTLs are past,
invalid or at least an hour away, so expiry does not race the comparison), and after every batch
checks that a fresh write commits; every 10 batches and at the end every member must answer the
same DBSIZE and the same keys (SCAN) with the same values (GET). The run replays from its seed.
"""

from __future__ import annotations

import random
import re
import tempfile
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import msgpack

from catena.chain import messages as pm, slot_ops, transactions
from catena.chain.ops import READS, WRITES
from catena.chain.replica import Replica
from catena.fuzz_types import BUILD as _MORE_TYPES
from catena.effects import FetchView, Persist, PersistSnapshot, Reply, Send
from catena.resp.codec import NULL_ARRAY, Error
from catena.slots import key_slot
from catena.view import View

T0 = 1_700_000_000.0  # the virtual wall clock's start (s)
MEMBERS = ("m1:1", "m2:2", "m3:3")
REAL_COMPARE_EVERY = 10  # batches between comparisons of the members' data (--real)
RESET_EVERY = 5000  # commands between fresh chains (the state grows with what the fuzzer writes)

_I64 = 2**63
INT_EDGES = (0, 1, -1, 2, _I64 - 1, -_I64, _I64, -_I64 - 1, 2**64 - 1, 2**64, 10**20 - 1, -(10**20),
             _I64 // 1000, _I64 // 1000 + 1, -(_I64 // 1000), -(_I64 // 1000) - 1, 2**31, -(2**31) - 1, 2**53 + 1)
MALFORMED = (b"", b"-", b"+5", b" 5", b"5 ", b"05", b"-0", b"00", b"1_0", b"5.0", b"0x1f", b"\x00", b"1e3",
             b"\xef\xbc\x95", b"9" * 40)


@dataclass
class Commands:
    """Seeded generator of data commands with extreme arguments."""

    rng: random.Random
    max_value: int = 64 * 1024
    now_ms: int = int(T0 * 1000)
    near_ttls: bool = True  # TTLs under an hour (off for real processes: expiry would race the checks)
    wrap: bool = True  # some writes in CATENA.REQ
    internal: bool = True  # catena's own CATENA.EXEC/VERSIONS too (Redis has no counterpart)
    keys: list = field(default_factory=lambda: [b"k%d" % i for i in range(12)] + [b"n0", b"n1", b""])
    requests: dict = field(default_factory=dict)  # client id -> last request number

    def key(self) -> bytes:
        r = self.rng.random()
        if r < 0.85:
            return self.rng.choice(self.keys)
        if r < 0.95:
            return self.rng.randbytes(self.rng.randrange(1, 16))  # binary: NUL, CR LF, 0xff
        return self.rng.randbytes(self.rng.randrange(256, 2048))

    def value(self) -> bytes:
        r = self.rng.random()
        if r < 0.3:
            return self.integer()
        if r < 0.5:
            return b""
        if r < 0.97:
            return self.rng.randbytes(self.rng.randrange(0, 64))
        return self.rng.randbytes(self.rng.randrange(0, self.max_value + 1))

    def integer(self) -> bytes:
        rng = self.rng
        r = rng.random()
        if r < 0.35:
            return b"%d" % rng.randrange(-100, 100)
        if r < 0.7:
            return b"%d" % (rng.choice(INT_EDGES) + rng.randrange(-2, 3))
        if r < 0.85:
            return rng.choice(MALFORMED)
        return b"%d" % rng.randrange(-(2**70), 2**70)

    def ttl(self, unit_ms: int, absolute: bool) -> bytes:
        """A time for EX/PX/EXAT/PXAT/EXPIRE…: past, zero, negative, near, far, int64 edges, garbage."""
        rng = self.rng
        r = rng.random()
        if r < 0.4:
            raw = self.integer()
            if self.near_ttls or absolute or not (raw.isdigit() and int(raw) * unit_ms < 3_600_000):
                return raw
        if r < 0.6 or not self.near_ttls:  # far: an hour to years away (relative ones also past)
            ms = rng.randrange(3_600_000, 10**11) * (1 if absolute or rng.random() < 0.8 else -1)
        else:  # near: expires within the next batches
            ms = rng.randrange(-2000, 5000)
        if absolute:
            ms += self.now_ms
        return b"%d" % (ms // unit_ms)

    def command(self) -> list[bytes]:
        rng = self.rng
        name = rng.choice(_NAMES if self.internal else _REDIS_NAMES)
        cmd = _BUILD[name](self)
        r = rng.random()
        if r < 0.02:  # a word short or over: the arity check
            cmd = cmd[:-1] if len(cmd) > 1 and r < 0.01 else cmd + [self.key()]
        elif r < 0.05:
            cmd[0] = cmd[0].lower()
        if self.wrap and name in WRITES and rng.random() < 0.15:
            cmd = self.request() + cmd
        return cmd

    def request(self) -> list[bytes]:
        """CATENA.REQ client number [watermark]: mostly increasing numbers, sometimes extreme."""
        rng = self.rng
        client = rng.choice((b"c1", b"c2", b"", b"\x00\xff"))
        n = self.requests.get(client, 0) + 1
        self.requests[client] = n
        number = b"%d" % n if rng.random() < 0.8 else self.integer()
        words = [b"CATENA.REQ", client, number]
        if rng.random() < 0.5:
            words.append(b"%d" % max(0, n - rng.randrange(0, 4)) if rng.random() < 0.8 else
                         rng.choice((b"99999999999999999999", b"9223372036854775807", b"007")))
        return words


def _set(c: Commands) -> list[bytes]:
    rng = c.rng
    cmd = [b"SET", c.key(), c.value()]
    for _ in range(rng.choice((0, 0, 1, 1, 2, 3))):
        opt = rng.choice((b"NX", b"XX", b"GET", b"KEEPTTL", b"EX", b"PX", b"EXAT", b"PXAT", b"ex", b"BAD"))
        cmd.append(opt)
        if opt.upper() in (b"EX", b"PX", b"EXAT", b"PXAT") and rng.random() < 0.97:
            unit = 1000 if opt.upper() in (b"EX", b"EXAT") else 1
            cmd.append(c.ttl(unit, opt.upper().endswith(b"AT")))
    return cmd


def _expire(name: bytes, unit: int, absolute: bool):
    def build(c: Commands) -> list[bytes]:
        options = [c.rng.choice((b"NX", b"XX", b"GT", b"LT", b"gt", b"BAD")) for _ in range(c.rng.choice((0, 0, 1, 2)))]
        return [name, c.key(), c.ttl(unit, absolute), *options]
    return build


def _keys(c: Commands, low: int = 1, high: int = 4) -> list[bytes]:
    return [c.key() for _ in range(c.rng.randrange(low, high))]


def _scan(c: Commands) -> list[bytes]:
    rng = c.rng
    cmd = [b"SCAN", rng.choice((b"0", b"0", b"3", b"-1", b"18446744073709551616", b" 1", b""))]
    if rng.random() < 0.5:
        cmd += [b"COUNT", rng.choice((b"1", b"5", b"100", b"0", b"-3", b"abc"))]
    if rng.random() < 0.3:
        cmd += [b"MATCH", rng.choice((b"k*", b"*", b"[a-", b"\\"))]
    if rng.random() < 0.2:
        cmd += [b"TYPE", rng.choice((b"string", b"hash", b"SET", b"list", b"none"))]
    return cmd


FIELDS = (b"f0", b"f1", b"f2", b"f3", b"1", b"")
NUMBERS = (b"0.1", b"-2.5", b"10.5", b"1e3", b"3.0e-2", b"1e308", b"-1e308", b"5e4931", b"1e-4950", b"inf",
           b"-inf", b"nan", b"abc", b" 1", b"1 ", b"", b".5", b"5.", b"0x10", b"1e", b"+7", b"1\x00x")


def _field(c: Commands) -> bytes:
    return c.rng.choice(FIELDS) if c.rng.random() < 0.8 else c.rng.randbytes(c.rng.randrange(0, 8))


def _number(c: Commands) -> bytes:
    return c.rng.choice(NUMBERS) if c.rng.random() < 0.6 else c.integer()


def _hvalue(c: Commands) -> bytes:
    return _number(c) if c.rng.random() < 0.4 else c.value()


def _fields(c: Commands, values: bool) -> list[bytes]:
    words = []
    for _ in range(c.rng.randrange(1, 4)):
        words += [_field(c), _hvalue(c)] if values else [_field(c)]
    return words


def _members(c: Commands) -> list[bytes]:
    return [_field(c) if c.rng.random() < 0.7 else b"%d" % c.rng.randrange(-3, 20)
            for _ in range(c.rng.randrange(1, 5))]


RANDOM_COUNTS = (b"0", b"1", b"2", b"5", b"-1", b"-3", b"100", b"-100", b"x", b"1.5", b"9223372036854775807",
                 b"-9223372036854775808", b"4611686018427387904", b"99999999999999999999")


def _count(c: Commands) -> bytes:
    return c.rng.choice((b"0", b"1", b"2", b"5", b"-1", b"-3", b"100")) if c.rng.random() < 0.8 else c.integer()


def _random_read(name: bytes):
    def build(c: Commands) -> list[bytes]:
        cmd = [name, (_hkey if name == b"HRANDFIELD" else _skey)(c)]
        if c.rng.random() < 0.7:  # no huge negative count: Redis would send that many picks
            cmd.append(c.rng.choice(RANDOM_COUNTS))
            if name == b"HRANDFIELD" and c.rng.random() < 0.5:
                cmd.append(c.rng.choice((b"WITHVALUES", b"withvalues", b"BAD")))
        return cmd
    return build


def _collection_scan(name: bytes):
    def build(c: Commands) -> list[bytes]:
        cmd = [name, (_hkey if name == b"HSCAN" else _skey)(c), c.rng.choice((b"0", b"0", b"7", b"-1", b"x"))]
        if c.rng.random() < 0.4:
            cmd += [c.rng.choice((b"COUNT", b"MATCH", b"TYPE")), c.rng.choice((b"1", b"100", b"0", b"f*", b"x"))]
        return cmd
    return build


def _sintercard(c: Commands) -> list[bytes]:
    keys = _skeys(c)
    cmd = [b"SINTERCARD", c.rng.choice((b"%d" % len(keys), b"%d" % len(keys), b"0", b"9", b"x")), *keys]
    if c.rng.random() < 0.4:
        cmd += [c.rng.choice((b"LIMIT", b"limit", b"BAD")), c.rng.choice((b"0", b"1", b"2", b"-1", b"x"))]
    return cmd


def _hkey(c: Commands) -> bytes:
    """Mostly keys of hashes, sometimes any key (so types collide now and then)."""
    return b"h%d" % c.rng.randrange(4) if c.rng.random() < 0.7 else c.key()


def _skey(c: Commands) -> bytes:
    return b"s%d" % c.rng.randrange(4) if c.rng.random() < 0.7 else c.key()


def _skeys(c: Commands) -> list[bytes]:
    return [_skey(c) for _ in range(c.rng.randrange(1, 4))]


_TYPES = {
    b"HSET": lambda c: [b"HSET", _hkey(c), *_fields(c, True)],
    b"HMSET": lambda c: [b"HMSET", _hkey(c), *_fields(c, True)],
    b"HSETNX": lambda c: [b"HSETNX", _hkey(c), _field(c), _hvalue(c)],
    b"HDEL": lambda c: [b"HDEL", _hkey(c), *_fields(c, False)],
    b"HINCRBY": lambda c: [b"HINCRBY", _hkey(c), _field(c), c.integer()],
    b"HINCRBYFLOAT": lambda c: [b"HINCRBYFLOAT", _hkey(c), _field(c), _number(c)],
    b"HGET": lambda c: [b"HGET", _hkey(c), _field(c)],
    b"HMGET": lambda c: [b"HMGET", _hkey(c), *_fields(c, False)],
    b"HGETALL": lambda c: [b"HGETALL", _hkey(c)],
    b"HEXISTS": lambda c: [b"HEXISTS", _hkey(c), _field(c)],
    b"HLEN": lambda c: [b"HLEN", _hkey(c)],
    b"HKEYS": lambda c: [b"HKEYS", _hkey(c)],
    b"HVALS": lambda c: [b"HVALS", _hkey(c)],
    b"HSTRLEN": lambda c: [b"HSTRLEN", _hkey(c), _field(c)],
    b"HRANDFIELD": _random_read(b"HRANDFIELD"),
    b"HSCAN": _collection_scan(b"HSCAN"),
    b"SADD": lambda c: [b"SADD", _skey(c), *_members(c)],
    b"SREM": lambda c: [b"SREM", _skey(c), *_members(c)],
    b"SPOP": lambda c: [b"SPOP", _skey(c)] + ([_count(c)] if c.rng.random() < 0.5 else []),
    b"SMOVE": lambda c: [b"SMOVE", _skey(c), _skey(c), _members(c)[0]],
    b"SINTERSTORE": lambda c: [b"SINTERSTORE", _skey(c), *_skeys(c)],
    b"SUNIONSTORE": lambda c: [b"SUNIONSTORE", _skey(c), *_skeys(c)],
    b"SDIFFSTORE": lambda c: [b"SDIFFSTORE", _skey(c), *_skeys(c)],
    b"SMEMBERS": lambda c: [b"SMEMBERS", _skey(c)],
    b"SISMEMBER": lambda c: [b"SISMEMBER", _skey(c), _members(c)[0]],
    b"SMISMEMBER": lambda c: [b"SMISMEMBER", _skey(c), *_members(c)],
    b"SCARD": lambda c: [b"SCARD", _skey(c)],
    b"SINTER": lambda c: [b"SINTER", *_skeys(c)],
    b"SUNION": lambda c: [b"SUNION", *_skeys(c)],
    b"SDIFF": lambda c: [b"SDIFF", *_skeys(c)],
    b"SINTERCARD": _sintercard,
    b"SRANDMEMBER": _random_read(b"SRANDMEMBER"),
    b"SSCAN": _collection_scan(b"SSCAN"),
}

def _transaction(reads_only: bool):
    """CATENA.EXEC[.RO]: a few watches with versions near the chain's seqs, then a few commands."""
    def build(c):
        rng = c.rng
        watched = {c.key(): rng.choice((0, 1, rng.randrange(0, 10_000))) for _ in range(rng.randrange(0, 3))}
        names = [n for n in _BUILD if n not in _TRANSACTIONS and (n in READS) >= reads_only]
        commands = [_BUILD[rng.choice(names)](c) for _ in range(rng.randrange(1, 4))]
        return [transactions.EXEC_READS if reads_only else transactions.EXEC_CMD,
                *transactions.encode(watched, commands)]
    return build


_TRANSACTIONS = {
    transactions.EXEC_CMD: _transaction(False),
    transactions.EXEC_READS: _transaction(True),
    transactions.VERSIONS: lambda c: [transactions.VERSIONS, *_keys(c)],
}

def _slots(c):
    """CATENA.SLOTS over the slots of a key or two, to any state (most moves are refused)."""
    rng, first = c.rng, key_slot(c.key())
    last = rng.choice((first, min(first + rng.randrange(0, 50), 16383), 16384))
    state = rng.choice((b"owned", b"frozen", b"given", b"importing", b"none", b"lost"))
    fence = [b"FENCE", rng.choice((b"0", b"1", b"2", c.integer()))] if rng.random() < 0.3 else []
    return ([b"CATENA.SLOTS", *fence, b"%d" % first, b"%d" % last, state]
            + ([c.integer()] if state in (b"given", b"importing") else []))


def _import(c):
    key = c.key()
    words = [b"CATENA.IMPORT", b"%d" % key_slot(key)]
    for _ in range(c.rng.randrange(0, 3)):
        blob = c.rng.choice((slot_ops.pack(c.value()), b"", b"\xc1"))
        words += [key, blob, c.rng.choice((b"-", c.ttl(1, True)))]
    return words


_SLOT_COMMANDS = {
    b"CATENA.SLOTS": _slots,
    b"CATENA.IMPORT": _import,
    b"CATENA.CLEARSLOT": lambda c: [b"CATENA.CLEARSLOT", b"%d" % key_slot(c.key())],
    b"CATENA.SLOTDUMP": lambda c: [b"CATENA.SLOTDUMP", b"%d" % key_slot(c.key())],
}
INTERNAL = transactions.COMMANDS | slot_ops.COMMANDS  # catena's own: not Redis's to judge

_BUILD = {
    b"SET": _set,
    b"MEMBER.PUT": lambda c: [b"MEMBER.PUT", c.key(), c.value()],
    b"SETNX": lambda c: [b"SETNX", c.key(), c.value()],
    b"SETEX": lambda c: [b"SETEX", c.key(), c.ttl(1000, False), c.value()],
    b"PSETEX": lambda c: [b"PSETEX", c.key(), c.ttl(1, False), c.value()],
    b"GETSET": lambda c: [b"GETSET", c.key(), c.value()],
    b"MSET": lambda c: [b"MSET"] + [w for _ in range(c.rng.randrange(1, 4)) for w in (c.key(), c.value())],
    b"DEL": lambda c: [b"DEL", *_keys(c)],
    b"UNLINK": lambda c: [b"UNLINK", *_keys(c)],
    b"INCR": lambda c: [b"INCR", c.key()],
    b"DECR": lambda c: [b"DECR", c.key()],
    b"INCRBY": lambda c: [b"INCRBY", c.key(), c.integer()],
    b"DECRBY": lambda c: [b"DECRBY", c.key(), c.integer()],
    b"EXPIRE": _expire(b"EXPIRE", 1000, False),
    b"PEXPIRE": _expire(b"PEXPIRE", 1, False),
    b"EXPIREAT": _expire(b"EXPIREAT", 1000, True),
    b"PEXPIREAT": _expire(b"PEXPIREAT", 1, True),
    b"PERSIST": lambda c: [b"PERSIST", c.key()],
    b"GET": lambda c: [b"GET", c.key()],
    b"MGET": lambda c: [b"MGET", *_keys(c)],
    b"EXISTS": lambda c: [b"EXISTS", *_keys(c)],
    b"STRLEN": lambda c: [b"STRLEN", c.key()],
    b"TYPE": lambda c: [b"TYPE", c.key()],
    b"TTL": lambda c: [b"TTL", c.key()],
    b"PTTL": lambda c: [b"PTTL", c.key()],
    b"DBSIZE": lambda c: [b"DBSIZE"],
    b"SCAN": _scan,
    b"KEYS": lambda c: [b"KEYS", c.rng.choice((b"k1*", b"n?", b"[", b"zz*"))],
    **_TYPES,
    **_MORE_TYPES,
    **_TRANSACTIONS,
    **_SLOT_COMMANDS,
    b"PUBLISH": lambda c: [b"PUBLISH", c.key(), c.value()],
    b"MEMORY": lambda c: [b"MEMORY", c.rng.choice((b"USAGE", b"DOCTOR")), c.key()],
    b"OBJECT": lambda c: [b"OBJECT", c.rng.choice((b"ENCODING", b"REFCOUNT", b"IDLETIME", b"FREQ", b"NOPE")), c.key()],
}
assert set(_BUILD) == set(WRITES) | set(READS), "every data command is fuzzed"
# Writes twice as often as reads.
_NAMES = [n for n in _BUILD if n in WRITES] * 2 + [n for n in _BUILD if n in READS]
_REDIS_NAMES = [n for n in _NAMES if n not in INTERNAL]


# -- the pure chain -----------------------------------------------------------------------------


class ChainFailure(AssertionError):
    pass


class PureChain:
    """Three replicas of one view, frames through the wire codec, persists encoded as the log does."""

    def __init__(self, now: float = T0):
        self.now = now
        view = View(0, 1, MEMBERS)
        self.replicas = {m: Replica(m, m.encode()) for m in MEMBERS}
        self.frames: deque = deque()  # (sender, receiver, bytes)
        self.unpackers = {(a, b): pm.unpacker() for a in MEMBERS for b in MEMBERS if a != b}
        self.replies: dict = {}
        self.tokens = 0
        for name, replica in self.replicas.items():
            self._execute(name, replica.on_view(view, now))
        self.settle()

    @property
    def head(self) -> Replica:
        return self.replicas[MEMBERS[0]]

    def _execute(self, name: str, effects: list) -> None:
        for fx in effects:
            kind = type(fx)
            if kind is Send:
                self.frames.append((name, fx.to, pm.pack(fx.msg)))
            elif kind is Reply:
                if fx.token in self.replies:
                    raise ChainFailure(f"token {fx.token} answered twice")
                self.replies[fx.token] = fx.value
            elif kind is Persist:
                msgpack.packb(fx.entries, use_bin_type=True)  # what the member shell's log writes
            elif kind is FetchView or kind is PersistSnapshot:
                raise ChainFailure(f"{name}: {kind.__name__} in a chain with one view and no reconnect")

    def send(self, member: str, args: list[bytes]) -> int:
        """A client command at `member`; its reply lands in `replies[token]`."""
        self.tokens += 1
        self._execute(member, self.replicas[member].on_client(self.tokens, args, self.now))
        return self.tokens

    def settle(self, limit: int = 100_000) -> None:
        """Flush every member and deliver every frame until the chain is quiet."""
        for _ in range(limit):
            for name, replica in self.replicas.items():
                self._execute(name, replica.flush())
            if not self.frames:
                return
            while self.frames:
                src, dst, data = self.frames.popleft()
                unpacker = self.unpackers[(src, dst)]
                unpacker.feed(data)
                for frame in unpacker:
                    self._execute(dst, self.replicas[dst].on_message(src, pm.decode(frame), self.now))
        raise ChainFailure("the chain did not go quiet")

    def tick(self, seconds: float) -> None:
        self.now += seconds
        for name, replica in self.replicas.items():
            self._execute(name, replica.on_timer(self.now))

    def check(self, fresh: bytes) -> None:
        """A fresh write commits, and every member applied, committed and holds the same."""
        token = self.send(MEMBERS[-1], [b"SET", b"fuzz:fresh", fresh])
        self.settle()
        if self.replies.get(token) != pm.Status("OK"):
            raise ChainFailure(f"the fresh write got {self.replies.get(token)!r}")
        head = self.head
        for name, r in self.replicas.items():
            if (r.last_seq, r.commit_seq) != (head.last_seq, head.last_seq):
                raise ChainFailure(f"{name} at seq {r.last_seq} committed {r.commit_seq}; head at {head.last_seq}")
            if r.sent_list_len() or r.dirty or r.waiting or r.forwarded or r.reads:
                raise ChainFailure(f"{name} holds work after the chain went quiet")
            s, h = r.state, head.state
            if (s.data, s.expires, s.dedup, s.floors) != (h.data, h.expires, h.dedup, h.floors):
                raise ChainFailure(f"{name}'s state differs from the head's")


@dataclass
class ChainReport:
    commands: int = 0
    seconds: float = 0.0
    accepted: int = 0  # writes the head applied (not an error reply)
    refused: int = 0  # error replies
    failures: list = field(default_factory=list)  # (batch, message)
    keys_compared: int = 0  # --real: keys each member held in the last comparison


def _batch_rng(seed: int, batch: int) -> random.Random:
    return random.Random(f"{seed}:chain:{batch}")


def run_batch(chain: PureChain, seed: int, batch: int, size: int, max_value: int) -> tuple[int, int]:
    """One batch of commands at random members, then the checks. Returns (accepted, refused) writes."""
    rng = _batch_rng(seed, batch)
    gen = Commands(rng, max_value, int(chain.now * 1000))
    sent = []
    for _ in range(size):
        cmd = gen.command()
        sent.append((chain.send(rng.choice(MEMBERS), cmd), cmd))
        if rng.random() < 0.05:  # now and then a turn ends mid-batch
            chain.settle()
    chain.settle()
    accepted = refused = 0
    for token, cmd in sent:
        if token not in chain.replies:
            raise ChainFailure(f"no reply to {cmd!r}"[:300])
        reply = chain.replies.pop(token)
        refused += type(reply) is Error
        accepted += type(reply) is not Error and cmd[0] in WRITES
    chain.tick(rng.choice((0.001, 0.5, 3.0)))  # near TTLs pass; the head purges through the chain
    chain.settle()
    chain.check(b"%d:%d" % (seed, batch))
    return accepted, refused


def run_pure(commands: int, seed: int = 1, batch: int = 100, max_value: int = 64 * 1024,
             progress=None, stop_on_failure: bool = True) -> ChainReport:
    report = ChainReport()
    start = time.perf_counter()
    chain = None
    batches = (commands + batch - 1) // batch
    for b in range(batches):
        if _fresh_chain_at(b, batch):
            chain = PureChain()
        size = min(batch, commands - b * batch)
        try:
            accepted, refused = run_batch(chain, seed, b, size, max_value)
            report.accepted += accepted
            report.refused += refused
        except Exception as exc:  # a crash or a failed check: the batch's seed replays it
            report.failures.append((b, f"{type(exc).__name__}: {exc}"[:300]))
            if stop_on_failure:
                report.commands += size
                break
            chain = PureChain()
        report.commands += size
        if progress is not None:
            progress(report.commands, time.perf_counter() - start)
    report.seconds = time.perf_counter() - start
    return report


def _fresh_chain_at(b: int, batch: int) -> bool:
    """Does batch `b` start on a fresh chain (every RESET_EVERY commands; each starts at T0)?"""
    return b == 0 or b * batch % RESET_EVERY < batch


def replay_batch(seed: int, batch: int, size: int = 100, max_value: int = 64 * 1024) -> None:
    """Run the batches from the last fresh chain up to `batch` (the failing one raises)."""
    first = next(b for b in range(batch, -1, -1) if _fresh_chain_at(b, size))
    chain = PureChain()
    for b in range(first, batch + 1):
        run_batch(chain, seed, b, size, max_value)


# -- a slice through real processes ---------------------------------------------------------------


def run_real(commands: int, seed: int = 1, batch: int = 100, max_value: int = 4096, root: Path | None = None,
             progress=None) -> ChainReport:
    """The same commands through a coordinator and three `catena` member processes, with redis-py."""
    import redis

    from catena.chaos.runner import LocalCluster, wait_for

    report = ChainReport()
    b = None  # the batch under way or last done (None: starting)
    own = root is None
    root = Path(tempfile.mkdtemp(prefix="catena-fuzz-")) if own else root
    cluster = LocalCluster(root, members=3, proxy=False)
    try:
        cluster.start()
        members = cluster.chain()
        clients = {m: redis.Redis(host=m.rsplit(":", 1)[0], port=int(m.rsplit(":", 1)[1]), socket_timeout=10.0,
                                  protocol=2) for m in members}
        wait_for(lambda: all(c.exists(b"fuzz:up") == 0 for c in clients.values()), 30.0, "every member to serve")
        rng = random.Random(f"{seed}:chain-real")
        start = time.perf_counter()
        for b in range((commands + batch - 1) // batch):
            gen = Commands(_batch_rng(seed, b), max_value, int(time.time() * 1000), near_ttls=False)
            size = min(batch, commands - b * batch)
            pipe = clients[rng.choice(members)].pipeline(transaction=False)
            cmds = [gen.command() for _ in range(size)]
            for cmd in cmds:
                pipe.execute_command(*cmd)
            for cmd, reply in zip(cmds, pipe.execute(raise_on_error=False)):
                is_error = isinstance(reply, redis.ResponseError)
                if isinstance(reply, Exception) and not is_error:
                    raise ChainFailure(f"{cmd!r} failed: {reply!r}"[:300])
                report.refused += is_error
                report.accepted += not is_error and cmd[0] in WRITES
            fresh = b"%d:%d" % (seed, b)
            if clients[rng.choice(members)].set(b"fuzz:fresh", fresh) is not True:
                raise ChainFailure("the fresh write was not acknowledged")
            report.commands += size
            if b % REAL_COMPARE_EVERY == REAL_COMPARE_EVERY - 1:
                _compare_members(clients)
            if progress is not None:
                progress(report.commands, time.perf_counter() - start)
        report.seconds = time.perf_counter() - start
        report.keys_compared = _compare_members(clients)
    except Exception as exc:
        report.failures.append((b, f"{type(exc).__name__}: {exc}"[:300]))
        print(f"  cluster logs in {root}")
        own = False  # keep them
    finally:
        cluster.stop()
        if own:
            import shutil

            shutil.rmtree(root, ignore_errors=True)
    return report


# -- against a real redis-server ------------------------------------------------------------------

# Sent, not compared: answers in an order Redis does not define, and DBSIZE (Redis's counts keys
# whose deadline passed until it evicts them; catena's does not).
UNCOMPARED = (b"SCAN", b"KEYS", b"DBSIZE", b"TIME", b"MEMORY", b"OBJECT")
ROUGH = (b"TTL", b"PTTL", b"EXPIRETIME", b"PEXPIRETIME")  # compared by kind (-2, -1 or a time left): the two clocks differ
# Replies whose order Redis does not define: compared sorted (HGETALL: as sorted pairs).
UNORDERED = (b"SMEMBERS", b"SINTER", b"SUNION", b"SDIFF", b"HKEYS", b"HVALS")
RANDOM = (b"SPOP", b"SRANDMEMBER", b"HRANDFIELD", b"ZRANDMEMBER", b"RANDOMKEY")  # compared by shape: nil or how many
PAGED = (b"HSCAN", b"SSCAN", b"ZSCAN")  # compared when both return everything in one page (cursor 0)


def _same(cmd: list[bytes], mine, theirs) -> bool:
    """Do catena's and Redis's replies to `cmd` agree (as far as Redis defines them)?"""
    name = cmd[0].upper()
    if type(mine) is Error and mine.message.startswith("ERR catena "):
        return True  # a limit of catena's own (named in its error), not Redis's to judge
    a, b = _redis_shaped(name, mine), _redis_shaped(name, theirs)
    if type(a) is not list or type(b) is not list:
        if name in RANDOM and type(a) is bytes and type(b) is bytes:
            return True  # one member each, chosen at random
        return a == b
    if name in UNORDERED:
        return sorted(a) == sorted(b)
    if name == b"HGETALL":
        return sorted(zip(a[0::2], a[1::2])) == sorted(zip(b[0::2], b[1::2]))
    if name in RANDOM:
        return len(a) == len(b)
    if name in (b"SORT", b"SORT_RO") and any(arg.upper() == b"ALPHA" for arg in cmd[2:]):
        # Redis collates C strings (strcoll stops at a NUL): elements equal up to their first
        # NUL come in any order there, so each side is compared as the strings Redis collated.
        return [_c_string(x) for x in a] == [_c_string(x) for x in b]
    if name in PAGED:  # cursors differ by design: compared when both scanned all from 0
        return cmd[2] != b"0" or a[0] != b"0" or b[0] != b"0" or sorted(a[1]) == sorted(b[1])
    return a == b


def _c_string(value):
    return value.split(b"\0", 1)[0] if type(value) is bytes else value


def _pop_as_catena(server, key: bytes, mine, theirs) -> None:
    """After an SPOP: Redis's set loses the members catena's lost instead of its own choice."""
    mine = [] if mine is None else [mine] if type(mine) is bytes else list(mine)
    theirs = [] if theirs is None else [theirs] if type(theirs) is bytes else list(theirs)
    if sorted(mine) != sorted(theirs):
        server.execute_command(b"SADD", key, *theirs)
        server.execute_command(b"SREM", key, *mine)


def run_against_redis(commands: int, redis_addr: str, seed: int = 1, batch: int = 100, max_value: int = 4096,
                      progress=None) -> ChainReport:
    """Every command at the head of a pure chain (settled after each, so there is one order) and
    at a real redis-server (FLUSHALL first): the replies must be the same, error texts included
    (`_same`). No TTL under an hour and no CATENA.REQ (Redis has none); MEMBER.PUT is SET."""
    import redis

    host, port = redis_addr.rsplit(":", 1)
    server = redis.Redis(host=host, port=int(port), socket_timeout=10, protocol=2)
    server.response_callbacks.clear()  # raw replies
    server.flushall()
    report = ChainReport()
    chain = PureChain(time.time())
    start = time.perf_counter()
    for b in range((commands + batch - 1) // batch):
        chain.now = time.time()
        gen = Commands(_batch_rng(seed, b), max_value, int(chain.now * 1000), near_ttls=False, wrap=False,
                       internal=False)
        cmds = [gen.command() for _ in range(min(batch, commands - b * batch))]
        ours = []
        for cmd in cmds:
            token = chain.send(MEMBERS[0], cmd)
            chain.settle()
            ours.append(chain.replies.pop(token))
        for cmd, mine in zip(cmds, ours):
            to_redis = _for_redis(cmd)
            try:
                theirs = server.execute_command(*(to_redis or [b"PING"]))
            except redis.ResponseError as exc:
                theirs = exc
            name = cmd[0].upper()
            if to_redis and name not in UNCOMPARED and not _same(cmd, mine, theirs):
                report.failures.append((b, f"{cmd!r}: catena {mine!r}, redis {theirs!r}"[:600]))
            if name == b"SPOP" and not isinstance(theirs, Exception):
                _pop_as_catena(server, cmd[1], mine, theirs)
            report.refused += type(mine) is Error
            report.accepted += type(mine) is not Error and cmd[0] in WRITES
        report.commands += len(cmds)
        if report.failures:
            break
        if progress is not None:
            progress(report.commands, time.perf_counter() - start)
    report.seconds = time.perf_counter() - start
    return report


_PRINTABLE = re.compile(r"[ -~]*")


def _for_redis(cmd: list[bytes]) -> list[bytes] | None:
    """The command as Redis gets it (MEMBER.PUT k v is SET k v), or None: not Redis's to judge."""
    if cmd[0].upper() in INTERNAL:
        return None
    if cmd[0].upper() != b"MEMBER.PUT":
        return cmd
    return [b"SET", *cmd[1:]] if len(cmd) == 3 else None


def _redis_shaped(name: bytes, reply):
    """A reply of either side as redis-py's raw replies show it."""
    if isinstance(reply, (Error, Exception)):
        text = reply.message if type(reply) is Error else str(reply)
        text = (text[4:] if text.startswith("ERR ") else text).replace("\r", " ").replace("\n", " ")
        # An argument echoed in an error (CR and LF are spaces on the wire, both sides): Redis's C
        # string ends at a NUL and keeps other bytes raw, so the texts are compared up to the first
        # byte that is not printable ASCII.
        return ("error", _PRINTABLE.match(text).group())
    if isinstance(reply, pm.Status):
        return reply.text.encode()
    if reply is NULL_ARRAY:
        return None  # *-1: redis-py reads a nil array as None
    if name in ROUGH and type(reply) is int:
        return min(reply, 0)
    # Arrays as lists at every depth (a reply a peer sent comes as tuples); catena keeps a score
    # of -0 as 0, as Redis's small sorted sets do (large ones keep -0).
    return _lists(reply, name[:1] == b"Z")


def _lists(reply, zero: bool):
    if type(reply) in (list, tuple):
        return [_lists(w, zero) for w in reply]
    return b"0" if zero and reply == b"-0" else reply


def _compare_members(clients: dict) -> int:
    """Every member answers the same DBSIZE, the same keys and the same values; returns the count."""
    contents = {}
    for addr, c in clients.items():
        keys = sorted(c.scan_iter(count=1000))
        values = c.mget(keys) if keys else []
        contents[addr] = (c.dbsize(), dict(zip(keys, values)))
    (first, want), *rest = contents.items()
    if want[0] != len(want[1]):
        raise ChainFailure(f"{first}: DBSIZE {want[0]} but SCAN found {len(want[1])} keys")
    for addr, got in rest:
        if got != want:
            diff = sorted(set(got[1].items()) ^ set(want[1].items()))[:3]
            raise ChainFailure(f"{addr} differs from {first}: DBSIZE {got[0]} vs {want[0]}, e.g. {diff!r}"[:300])
    return want[0]


def main(args) -> int:
    """`python -m catena.fuzz --target chain` (arguments parsed by catena.fuzz)."""
    max_value = args.max_value if args.max_value is not None else (4096 if args.real else 64 * 1024)
    if args.replay_batch is not None:
        replay_batch(args.seed, args.replay_batch, args.batch, max_value)
        print("the batch passed")
        return 0
    where = ("real processes" if args.real else
             f"pure replicas, replies compared with redis-server {args.redis}" if args.redis else "pure replicas")
    print(f"fuzz target=chain ({where}) seed={args.seed} commands={args.inputs} batch={args.batch} "
          f"max_value={max_value}", flush=True)

    every = 1000 if args.real else 100_000

    def progress(n, secs):  # called after every batch
        if not args.quiet and n % every < args.batch:
            print(f"  chain: {n} commands, {n / secs:,.0f}/s", flush=True)

    if args.redis:
        rep = run_against_redis(args.inputs, args.redis, args.seed, args.batch, max_value, progress=progress)
    else:
        run = run_real if args.real else run_pure
        rep = run(args.inputs, args.seed, args.batch, max_value, progress=progress)
    secs = max(rep.seconds, 1e-9)
    print(f"target=chain commands={rep.commands} seconds={rep.seconds:.1f} commands_per_s={rep.commands / secs:,.0f} "
          f"writes_applied={rep.accepted} error_replies={rep.refused} "
          + (f"keys_compared={rep.keys_compared} " if args.real else "") + f"failures={len(rep.failures)} "
          f"verdict={'FAIL' if rep.failures else 'ok'}")
    for batch, text in rep.failures:
        print(f"  FAIL batch {batch}: {text}")
        if args.real or args.redis:
            print(f"    python -m catena.fuzz --target chain {'--real' if args.real else '--redis ' + args.redis} "
                  f"--seed {args.seed} --inputs {args.inputs} --batch {args.batch} --max-value {max_value}")
        elif batch is not None:
            print(f"    python -m catena.fuzz --target chain --seed {args.seed} --batch {args.batch} "
                  f"--max-value {max_value} --replay-batch {batch}")
    return 1 if rep.failures else 0
