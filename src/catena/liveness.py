"""The liveness datagrams (pure codec): how the coordinator asks a member, off the member's
event loop, whether its process is alive and its loop still turns.

A MEMBER.PROBE waits behind whatever the member's loop has queued, so a member busy with a big
legal command misses it although nothing is wrong. A thread in the member (chain/liveness.py)
answers these datagrams on a UDP port of its own; the coordinator's machine tells busy from
wedged from dead with the answer. Layout (docs/protocol.md, "Liveness datagrams"):

    request   "CLV1" ‖ nonce (u64 BE)  [‖ MAC]
    answer    "CLV1" ‖ nonce ‖ incarnation (u64) ‖ beats (u64) ‖ turn age in ms (u32)  [‖ MAC]

`beats` counts the loop monitor's heartbeats (catena/loopstats.py): it advances only while the
loop turns. The turn age is how long ago the last one ran: the age of the current turn, to
within the heartbeat's 10 ms.

With a cluster secret every datagram carries HMAC-SHA256(secret, label ‖ 0x00 ‖ body), the
label naming the direction; one without it, or with a wrong one, is dropped. The nonce is the
asker's, fresh for each question, so an answer recorded earlier proves nothing later.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from typing import NamedTuple

MAGIC = b"CLV1"
MAC_LEN = 32
_REQUEST = struct.Struct(">4sQ")
_ANSWER = struct.Struct(">4sQQQI")
_U32 = (1 << 32) - 1


class Alive(NamedTuple):
    """A liveness answer: the process's incarnation, its loop monitor's heartbeat count, and
    how long its event loop's current turn has run."""

    incarnation: int
    beats: int
    turn_s: float


def _mac(secret: bytes, label: bytes, body: bytes) -> bytes:
    return hmac.new(secret, label + b"\x00" + body, hashlib.sha256).digest()


def _signed(secret: bytes | None, label: bytes, body: bytes) -> bytes:
    return body + _mac(secret, label, body) if secret else body


def _verified(secret: bytes | None, label: bytes, data: bytes, size: int) -> bytes | None:
    """The body of `data` if it is `size` bytes of ours (plus a valid MAC when there is a secret)."""
    if len(data) != size + (MAC_LEN if secret else 0) or data[:4] != MAGIC:
        return None
    body = data[:size]
    if secret and not hmac.compare_digest(_mac(secret, label, body), data[size:]):
        return None
    return body


def request(nonce: int, secret: bytes | None) -> bytes:
    return _signed(secret, b"liveness-request", _REQUEST.pack(MAGIC, nonce))


def read_request(data: bytes, secret: bytes | None) -> int | None:
    """The nonce of a valid request, or None (drop it)."""
    body = _verified(secret, b"liveness-request", data, _REQUEST.size)
    return None if body is None else _REQUEST.unpack(body)[1]


def answer(nonce: int, alive: Alive, secret: bytes | None) -> bytes:
    turn_ms = min(_U32, max(0, int(alive.turn_s * 1000)))
    return _signed(secret, b"liveness-answer", _ANSWER.pack(MAGIC, nonce, alive.incarnation, alive.beats, turn_ms))


def read_answer(data: bytes, nonce: int, secret: bytes | None) -> Alive | None:
    """The answer to the request with `nonce`, or None (not ours, not to that request, forged)."""
    body = _verified(secret, b"liveness-answer", data, _ANSWER.size)
    if body is None:
        return None
    _, got, incarnation, beats, turn_ms = _ANSWER.unpack(body)
    return Alive(incarnation, beats, turn_ms / 1000) if got == nonce else None
