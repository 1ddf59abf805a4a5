"""Membership datagram codec: messages <-> bytes, HMAC signing, replay window.

Layout of every datagram (documented in docs/protocol.md, "Membership datagrams"):

    byte 0      version (2)
    byte 1      flags: bit 0 = signed (a 32-byte HMAC-SHA256 trailer follows the body)
    byte 2      type tag (append-only: 1 heartbeat .. 10 nack)
    bytes 3..10 the sender's wall clock when it sent the datagram, ms since the Unix epoch (u64 BE)
    bytes 11..  msgpack array: [sender_host, sender_port, sender_incarnation, seq, *fields]
    trailer     HMAC-SHA256(secret, receiver ‖ 0x00 ‖ bytes 0 .. end of body) when signed

The MAC covers the sender (in the body), the receiver (the address the datagram is meant for:
its member id's host:port, or "" for a Join, which goes to an introducer by whatever name an
operator gave) and the timestamp, so a signed datagram replayed to another receiver, or later
than `max_age_ms`, is refused; the shell's `ReplayGuard` refuses one replayed to the same
receiver within that time. A datagram is at most 1,400 bytes. `decode` raises
`RemoteProtocolError` carrying a short `reason` for anything it does not accept; the shell counts
the reason and drops the datagram. Pure: no sockets, no clocks (the caller passes `now_ms`).
"""

from __future__ import annotations

import hashlib
import hmac
import struct

import msgpack

from catena.errors import LocalProtocolError, RemoteProtocolError
from catena.membership.messages import (
    Ack, Digest, Gossip, Heartbeat, Join, JoinRefused, MemberId, Message, Nack, Ping, PingReq, State,
    Status, Update,
)

VERSION = 2
FLAG_SIGNED = 0x01
MAC_LEN = 32
HEADER_LEN = 11
MAX_AGE_MS = 30_000  # a signed datagram older (or further ahead) than this is refused: the
# bound on clock skew between hosts, and how long after a receiver restarts (empty replay
# guard) a recorded datagram could still be replayed to it once
_STAMP = struct.Struct(">Q")
MAX_DATAGRAM = 1400

TAGS: dict[type, int] = {
    Heartbeat: 1, Ping: 2, PingReq: 3, Ack: 4, Join: 5, State: 6, JoinRefused: 7, Gossip: 8, Digest: 9,
    Nack: 10,
}
_BY_TAG = {tag: cls for cls, tag in TAGS.items()}
TYPE_NAMES = {cls: cls.__name__.lower() for cls in TAGS}

_MAX_U64 = (1 << 64) - 1
_MAX_HOST = 255
_MAX_REASON = 512


class DropReason(RemoteProtocolError):
    """A datagram was not accepted; `reason` is the counter it increments."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


# -- sizes (exact msgpack lengths, so the machine can fill a datagram without encoding) --------


def _int_size(n: int) -> int:
    if 0 <= n < 128:
        return 1
    if n <= 0xFF:
        return 2
    if n <= 0xFFFF:
        return 3
    if n <= 0xFFFFFFFF:
        return 5
    return 9


def _str_size(s: str) -> int:
    n = len(s.encode())
    return n + (1 if n < 32 else 2 if n < 256 else 3)


def update_size(u: Update) -> int:
    m = u.member
    return 1 + _str_size(m.host) + _int_size(m.port) + _int_size(m.incarnation) + _int_size(u.refute) + 1


def payload_budget(host: str, max_datagram: int = MAX_DATAGRAM) -> int:
    """Bytes left for updates/entries once the header, fixed fields and MAC are counted.

    Worst case of everything else in a datagram: 3 header bytes, array header (3), sender
    (host, port 3, incarnation 9), seq 9, a target id (the longest host we accept, port,
    incarnation), probe seq 9, list header 3, MAC 32.
    """
    fixed = HEADER_LEN + 3 + _str_size(host) + 3 + 9 + 9 + (_MAX_HOST + 3 + 3 + 9) + 9 + 3 + 1 + MAC_LEN
    return max_datagram - fixed


# -- encoding ---------------------------------------------------------------------------------


def _upd(u: Update) -> list:
    m = u.member
    return [m.host, m.port, m.incarnation, u.refute, int(u.status)]


def _id(m: MemberId) -> list:
    return [m.host, m.port, m.incarnation]


def _fields(msg: Message) -> list:
    t = type(msg)
    if t is Heartbeat or t is Gossip:
        return [[_upd(u) for u in msg.updates]]
    if t is Ping or t is PingReq or t is Ack or t is Nack:
        return [msg.seq, _id(msg.target), [_upd(u) for u in msg.updates]]
    if t is Join:
        return []
    if t is State:
        return [msg.part, msg.parts, msg.for_join, [_upd(u) for u in msg.entries]]
    if t is JoinRefused:
        return [msg.reason[:_MAX_REASON]]
    if t is Digest:
        return [msg.digest, msg.quiet_ms, msg.reply, msg.urgent]
    raise LocalProtocolError(f"not a membership message: {msg!r}")


def receiver_of(msg_type: type, to: str) -> str:
    """The receiver a datagram's MAC names: `to`, except "" for a Join (sent to an introducer
    under a name its operator chose; admission answers only after a round trip anyway)."""
    return "" if msg_type is Join else to


def _mac(secret: bytes, receiver: str, data) -> bytes:
    h = hmac.new(secret, receiver.encode(), hashlib.sha256)
    h.update(b"\x00")
    h.update(data)
    return h.digest()


def encode(msg: Message, seq: int, secret: bytes | None = None, max_datagram: int = MAX_DATAGRAM, *,
           to: str = "", now_ms: int = 0) -> bytes:
    """Datagram bytes for `msg` to the receiver `to` at wall-clock `now_ms`;
    LocalProtocolError if it would exceed `max_datagram`."""
    s = msg.sender
    body = msgpack.packb([s.host, s.port, s.incarnation, seq, *_fields(msg)], use_bin_type=True)
    head = bytes((VERSION, FLAG_SIGNED if secret else 0, TAGS[type(msg)])) + _STAMP.pack(now_ms)
    data = head + body
    if secret:
        data += _mac(secret, receiver_of(type(msg), to), data)
    if len(data) > max_datagram:
        raise LocalProtocolError(f"{type(msg).__name__} of {len(data)} bytes exceeds {max_datagram}")
    return data


# -- decoding ---------------------------------------------------------------------------------


def _check_int(v, lo: int = 0, hi: int = _MAX_U64) -> int:
    if type(v) is not int or not lo <= v <= hi:
        raise DropReason("malformed", f"bad integer {v!r}")
    return v


def _check_host(v) -> str:
    if type(v) is not str or not 0 < len(v) <= _MAX_HOST:
        raise DropReason("malformed", "bad host")
    return v


def _dec_id(v) -> MemberId:
    if type(v) is not list or len(v) != 3:
        raise DropReason("malformed", "bad member id")
    return MemberId(_check_host(v[0]), _check_int(v[1], 1, 65535), _check_int(v[2]))


def _dec_upd(v) -> Update:
    if type(v) is not list or len(v) != 5:
        raise DropReason("malformed", "bad update")
    member = MemberId(_check_host(v[0]), _check_int(v[1], 1, 65535), _check_int(v[2]))
    return Update(member, _check_int(v[3], 0, 0xFFFFFFFF), Status(_check_int(v[4], 0, 3)))


def _dec_updates(v) -> tuple[Update, ...]:
    if type(v) is not list:
        raise DropReason("malformed", "updates not a list")
    return tuple(_dec_upd(u) for u in v)


def _check_bool(v) -> bool:
    if type(v) is not bool:
        raise DropReason("malformed", "bad flag")
    return v


def decode(data: bytes, secret: bytes | None = None, max_datagram: int = MAX_DATAGRAM, *,
           me: tuple[str, ...] = ("",), now_ms: int | None = None,
           max_age_ms: int = MAX_AGE_MS) -> tuple[Message, int]:
    """(message, seq) from a datagram; raises DropReason (a RemoteProtocolError) otherwise.

    `me`: the names this receiver answers to (its member id's host:port, its bind address); a
    signed datagram must name one of them (a Join: ""). `now_ms`: this receiver's wall clock; a
    signed datagram stamped more than `max_age_ms` away from it is refused.

    Reasons: oversized, truncated, version, unsigned, forged, stale, signed_unexpected,
    unknown_type, malformed.
    """
    if len(data) > max_datagram:
        raise DropReason("oversized", f"{len(data)} bytes")
    if len(data) < HEADER_LEN + 1:
        raise DropReason("truncated", f"{len(data)} bytes")
    if data[0] != VERSION:
        raise DropReason("version", f"version {data[0]}")
    signed = bool(data[1] & FLAG_SIGNED)
    if data[1] & ~FLAG_SIGNED:
        raise DropReason("malformed", f"unknown flags {data[1]:#x}")
    if secret:
        if not signed:
            raise DropReason("unsigned")
        if len(data) < HEADER_LEN + 1 + MAC_LEN:
            raise DropReason("truncated", "shorter than its MAC")
        signed_part, mac = data[:-MAC_LEN], data[-MAC_LEN:]
        names = ("",) if _BY_TAG.get(data[2]) is Join else me
        if not any(hmac.compare_digest(_mac(secret, name, signed_part), mac) for name in names):
            raise DropReason("forged")
        if now_ms is not None:
            (stamp,) = _STAMP.unpack_from(data, 3)
            if abs(now_ms - stamp) > max_age_ms:
                raise DropReason("stale", f"stamped {stamp - now_ms:+d} ms from now")
        body = data[HEADER_LEN:-MAC_LEN]
    else:
        if signed:
            raise DropReason("signed_unexpected", "datagram is signed but no secret is configured")
        body = data[HEADER_LEN:]
    cls = _BY_TAG.get(data[2])
    if cls is None:
        raise DropReason("unknown_type", f"tag {data[2]}")
    try:
        v = msgpack.unpackb(body, raw=False, strict_map_key=True, use_list=True)
    except msgpack.ExtraData:
        raise DropReason("malformed", "trailing bytes") from None
    except (ValueError, msgpack.UnpackException) as exc:
        raise DropReason("truncated" if "incomplete" in str(exc).lower() else "malformed", str(exc)[:80]) from None
    except Exception as exc:  # msgpack raises a few odd types on hostile input
        raise DropReason("malformed", type(exc).__name__) from None
    if type(v) is not list or len(v) < 4:
        raise DropReason("malformed", "body is not a header array")
    sender = MemberId(_check_host(v[0]), _check_int(v[1], 1, 65535), _check_int(v[2]))
    seq = _check_int(v[3])
    f = v[4:]
    try:
        if cls is Heartbeat or cls is Gossip:
            (ups,) = f
            return cls(sender, _dec_updates(ups)), seq
        if cls is Ping or cls is PingReq or cls is Ack or cls is Nack:
            pseq, target, ups = f
            return cls(sender, _check_int(pseq), _dec_id(target), _dec_updates(ups)), seq
        if cls is Join:
            if f:
                raise ValueError
            return Join(sender), seq
        if cls is State:
            part, parts, for_join, ents = f
            parts = _check_int(parts, 1, 1 << 20)
            return State(sender, _check_int(part, 0, parts - 1), parts, _check_bool(for_join), _dec_updates(ents)), seq
        if cls is JoinRefused:
            (reason,) = f
            if type(reason) is not str or len(reason) > _MAX_REASON:
                raise ValueError
            return JoinRefused(sender, reason), seq
        digest, quiet, reply, urgent = f
        return Digest(sender, _check_int(digest), _check_int(quiet), _check_bool(reply), _check_bool(urgent)), seq
    except ValueError:  # wrong field count (unpacking) or a bad value
        raise DropReason("malformed", f"bad {cls.__name__} fields") from None


class ReplayGuard:
    """Drops datagrams already seen, per sender address, with a sliding window (as IPsec does).

    Each sender numbers its datagrams (seq). For each sender address the guard keeps the newest
    incarnation seen, the highest seq, and a bitmap of the `window` seqs below it. A datagram
    from an older incarnation, below the window, or already marked, is a replay. Reordering
    within the window is accepted. At most `max_senders` addresses are remembered (oldest
    forgotten first).
    """

    __slots__ = ("window", "max_senders", "_state")

    def __init__(self, window: int = 1024, max_senders: int = 65536):
        self.window = window
        self.max_senders = max_senders
        self._state: dict[str, list[int]] = {}  # addr -> [incarnation, top seq, bitmap]

    def accept(self, addr: str, incarnation: int, seq: int) -> bool:
        st = self._state.get(addr)
        if st is None or incarnation > st[0]:
            if st is None and len(self._state) >= self.max_senders:
                self._state.pop(next(iter(self._state)))
            self._state[addr] = [incarnation, seq, 1]
            return True
        inc, top, bits = st
        if incarnation < inc:
            return False
        if seq > top:
            shift = seq - top
            st[1] = seq
            st[2] = ((bits << shift) | 1) & ((1 << self.window) - 1) if shift < self.window else 1
            return True
        off = top - seq
        if off >= self.window or bits >> off & 1:
            return False
        st[2] = bits | (1 << off)
        return True
