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
    """Any member -> head: a client's write command, to be answered with a WriteReply."""

    TAG = 6
    epoch: int
    token: int
    rid: tuple
    args: tuple


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
    return msgpack.packb((msg.TAG, *msg), use_bin_type=True)


def unpacker() -> msgpack.Unpacker:
    return msgpack.Unpacker(raw=True, use_list=False, max_buffer_size=MAX_FRAME + 1024,
                            strict_map_key=False)


def decode(frame) -> NamedTuple:
    """A frame from `unpacker()` as a message; RemoteProtocolError if it is not one."""
    try:
        cls = MESSAGES[frame[0]]
        if cls in _REPLIES:
            return cls(frame[1], unwire_reply(frame[2]))
        return cls(*frame[1:])
    except (KeyError, TypeError, IndexError, ValueError) as exc:
        raise RemoteProtocolError(f"bad peer frame: {exc!r}"[:200]) from None


__all__ = ["Sync", "Append", "Ack", "Snapshot", "SyncRequest", "Forward", "WriteReply", "Read", "ReadReply",
           "Stale", "pack", "unpacker", "decode", "Error", "Status"]
