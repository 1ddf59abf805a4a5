"""Peer messages of the chain protocol and their frames (msgpack arrays, tag first).

Every message that belongs to the replication protocol carries the sender's epoch; a receiver
refuses one from an older epoch and fetches the view when it sees a newer one. Tags are
append-only (docs/protocol.md). An entry is the tuple `(epoch, seq, ts_ms, rid, op)`: the epoch
in which the head assigned `seq`, the head's clock stamp, the request id `(client, number)` or
None, and the op (catena.chain.state).
"""

from __future__ import annotations

from typing import NamedTuple

import msgpack

from catena.errors import RemoteProtocolError
from catena.resp.codec import Error, Status
from catena.chain.state import unwire_reply, wire_reply

MAX_FRAME = 512 * 1024 * 1024
MAX_ENTRY = MAX_FRAME - 1024  # bytes of an entry's request id and op: one Append frame, one log record
_MAX_LEN = 2**32 - 1  # msgpack's longest bin and array
_INT_MIN, _UINT_MAX = -(2**63), 2**64 - 1  # msgpack's integers


class Sync(NamedTuple):
    """Successor -> predecessor: my history ends at (last_epoch, last_seq); send me the rest."""

    TAG = 1
    epoch: int
    last_epoch: int
    last_seq: int


class Append(NamedTuple):
    """Predecessor -> successor: entries in seq order; `commit_seq`: highest seq known committed."""

    TAG = 2
    epoch: int
    commit_seq: int
    entries: tuple


class Ack(NamedTuple):
    """Successor -> predecessor: everything up to `seq` is committed (a learner: applied)."""

    TAG = 3
    epoch: int
    seq: int


class Snapshot(NamedTuple):
    """Predecessor -> successor: replace your state; history then ends at (last_epoch, last_seq)."""

    TAG = 4
    epoch: int
    last_epoch: int
    last_seq: int
    commit_seq: int
    state: bytes


class SyncRequest(NamedTuple):
    """Predecessor -> successor: (re)state where your history ends."""

    TAG = 5
    epoch: int


class Forward(NamedTuple):
    """Any member -> head: a client's write command, to be answered with a WriteReply. The
    head gives it no seq after `deadline_ms` (wall-clock ms; 0: none), and answers so."""

    TAG = 6
    epoch: int
    token: int
    rid: tuple
    args: tuple
    deadline_ms: int = 0


class WriteReply(NamedTuple):
    TAG = 7
    token: int
    reply: object


class Read(NamedTuple):
    """Any member -> tail: a read that the sender could not answer with committed data."""

    TAG = 8
    epoch: int
    token: int
    args: tuple


class ReadReply(NamedTuple):
    TAG = 9
    token: int
    reply: object


class Stale(NamedTuple):
    """Reply to a message from an older epoch: the receiver's epoch is `epoch`."""

    TAG = 10
    epoch: int


MESSAGES = {cls.TAG: cls for cls in (Sync, Append, Ack, Snapshot, SyncRequest, Forward, WriteReply, Read,
                                     ReadReply, Stale)}
_REPLIES = (WriteReply, ReadReply)


def pack(msg) -> bytes:
    if type(msg) in _REPLIES:
        return msgpack.packb((msg.TAG, msg.token, wire_reply(msg.reply)), use_bin_type=True)
    if type(msg) is Forward and not msg.deadline_ms:  # the frame as members before deadlines read it
        return msgpack.packb((msg.TAG, *msg[:-1]), use_bin_type=True)
    return msgpack.packb((msg.TAG, *msg), use_bin_type=True)


APPEND_JOIN = 64 * 1024  # an Append's record up to this size is copied into one buffer with its head


def append_head(epoch: int, commit_seq: int) -> bytes:
    """The bytes of `pack(Append(epoch, commit_seq, entries))` before its entries."""
    return b"\x94" + msgpack.packb((Append.TAG, epoch, commit_seq))[1:]


def append_frame(epoch: int, commit_seq: int, record: bytes) -> bytes | list[bytes]:
    """The frame of `Append(epoch, commit_seq, entries)` built around `record`, those entries as
    the log stores them (msgpack of their list): `pack` of that Append, or for a large record two
    parts whose concatenation it is, so that entries packed (or received) once are not packed
    again, and a large value is not copied."""
    head = append_head(epoch, commit_seq)
    return head + record if len(record) <= APPEND_JOIN else [head, record]


def bin_head(n: int) -> bytes:
    """msgpack's header of a bin of `n` bytes."""
    if n < 1 << 8:
        return b"\xc4" + n.to_bytes(1, "big")
    if n < 1 << 16:
        return b"\xc5" + n.to_bytes(2, "big")
    return b"\xc6" + n.to_bytes(4, "big")


def snapshot_frame_head(msg: Snapshot, n: int) -> bytes:
    """The frame of `msg` up to its state, a bin of `n` bytes: followed by those bytes, it is
    `pack` of `msg` with that state (chain/transfer.py sends the state once it is dumped)."""
    return b"\x96" + msgpack.packb((msg.TAG, *msg[:-1]))[1:] + bin_head(n)


def size_bound(obj) -> int:
    """An upper bound of `obj`'s size as `pack` and the log encode it (msgpack, use_bin_type),
    or -1 when msgpack cannot encode it: the head's proof, before it gives an op a seq, that the
    entry can be persisted and sent. Only what ops and request ids are made of counts as
    encodable: None, bool, int of 64 bits, bytes, tuples of these."""
    kind = type(obj)
    if kind is not tuple:
        if kind is bytes or kind is int or kind is bool or obj is None:
            n = size_bound((obj,))
            return n - 5 if n >= 0 else -1
        return -1
    if len(obj) > _MAX_LEN:
        return -1
    total = 5
    for item in obj:  # leaves inline: one call per tuple (this runs for every write)
        kind = type(item)
        if kind is bytes:
            n = len(item)
            if n > _MAX_LEN:
                return -1
            total += n + 5
        elif kind is int:
            if not _INT_MIN <= item <= _UINT_MAX:
                return -1
            total += 9
        elif item is None or kind is bool:
            total += 1
        elif kind is tuple:
            n = size_bound(item)
            if n < 0:
                return -1
            total += n
        else:
            return -1
    return total


class _Frames:
    """msgpack frames from a byte stream; anything msgpack cannot read is RemoteProtocolError.
    `entries_bytes` gives an Append's entries as they came on the wire."""

    def __init__(self):
        self._unpacker = msgpack.Unpacker(raw=True, use_list=False, max_buffer_size=MAX_FRAME + 1024,
                                          strict_map_key=False)
        self._chunk, self._chunk_at, self._fed = b"", 0, 0  # the bytes last fed, where they start in the stream
        self._start = self._end = 0  # where the frame last yielded starts and ends in the stream

    def feed(self, data: bytes) -> None:
        try:
            self._unpacker.feed(data)
        except msgpack.BufferFull:
            raise RemoteProtocolError(f"peer frame larger than {MAX_FRAME} bytes") from None
        self._chunk, self._chunk_at = (data if type(data) is bytes else b""), self._fed
        self._fed += len(data)

    def __iter__(self):
        return self

    def __next__(self):
        try:
            frame = next(self._unpacker)
        except StopIteration:
            raise
        except Exception as exc:  # msgpack raises several kinds on garbage (even TypeError)
            raise RemoteProtocolError(f"bad peer frame: {exc!r}"[:200]) from None
        self._start, self._end = self._end, self._unpacker.tell()
        return frame

    def entries_bytes(self, msg: Append) -> bytes | None:
        """`msg.entries` encoded as they arrived, `msg` being the Append decoded from the frame
        last yielded: the log's record of them, and the tail of the frame that forwards them. None
        unless that frame came whole in the last bytes fed, its head encoded as `pack` does (then
        what follows the head is the entries' encoding, whatever the sender's packer)."""
        start = self._start - self._chunk_at
        head = append_head(msg.epoch, msg.commit_seq)
        if start < 0 or not self._chunk.startswith(head, start):
            return None
        return self._chunk[start + len(head):self._end - self._chunk_at]


def unpacker() -> _Frames:
    return _Frames()


# Field types per message (after the tag): "i" int, "b" bytes, "e" entries, "r" request id or
# nil, "a" command words, "*" anything (a reply, checked by unwire_reply). Fields after "?" were
# appended later and may be absent (the NamedTuple's default then).
_FIELDS = {Sync: "iii", Append: "iie", Ack: "ii", Snapshot: "iiiib", SyncRequest: "i", Forward: "iira?i",
           WriteReply: "i*", Read: "iia", ReadReply: "i*", Stale: "i"}


def _is_int(v) -> bool:
    return type(v) is int


def _is_words(v) -> bool:
    return type(v) is tuple and len(v) > 0 and all(type(w) is bytes for w in v)


def _is_rid(v) -> bool:
    # (no generator over the numbers: this runs for every forwarded write a member receives)
    return v is None or (type(v) is tuple and 2 <= len(v) <= 3 and type(v[0]) is bytes and type(v[1]) is int
                         and (len(v) == 2 or type(v[2]) is int))


def _are_entries(v) -> bool:
    """Is `v` a tuple of entries, each `(epoch, seq, ts_ms, rid, op)`: three ints, a request id
    or nil, an op (a non-empty tuple, an int first)? One loop, no call per entry: this runs for
    every entry a member receives."""
    if type(v) is not tuple:
        return False
    for entry in v:
        if type(entry) is not tuple or len(entry) != 5:
            return False
        epoch, seq, ts_ms, rid, op = entry
        if not (type(epoch) is int and type(seq) is int and type(ts_ms) is int and (rid is None or _is_rid(rid))
                and type(op) is tuple and op and type(op[0]) is int):
            return False
    return True


_CHECKS = {"i": _is_int, "b": lambda v: type(v) is bytes, "r": _is_rid, "a": _is_words, "*": lambda v: True,
           "e": _are_entries}
_SHAPES = {}  # per message: (how many fields at least, at most, their checks)
for _cls, _kinds in _FIELDS.items():
    _required, _, _optional = _kinds.partition("?")
    _SHAPES[_cls] = (len(_required), len(_required + _optional), tuple(_CHECKS[k] for k in _required + _optional))


def decode(frame) -> NamedTuple:
    """A frame from `unpacker()` as a message whose fields have the documented types;
    RemoteProtocolError if it is not one (the receiver then closes the link)."""
    try:
        cls = MESSAGES[frame[0]]
        fields = frame[1:]
        least, most, checks = _SHAPES[cls]
        if not least <= len(fields) <= most or not all(check(v) for check, v in zip(checks, fields)):
            raise ValueError(f"fields of {cls.__name__} have the wrong shape or types")
        if cls in _REPLIES:
            return cls(fields[0], unwire_reply(fields[1]))
        return cls(*fields)
    except (KeyError, TypeError, IndexError, ValueError, AttributeError) as exc:
        raise RemoteProtocolError(f"bad peer frame: {exc!r}"[:200]) from None


__all__ = ["Sync", "Append", "Ack", "Snapshot", "SyncRequest", "Forward", "WriteReply", "Read", "ReadReply",
           "Stale", "pack", "unpacker", "decode", "Error", "Status"]
