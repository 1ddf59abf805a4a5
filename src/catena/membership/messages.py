"""Membership vocabulary: member ids, member states, updates and the datagram messages.

Pure data, no I/O. Every message names its sender (a `MemberId`); the wire codec
(`catena.membership.wire`) turns these into datagrams and back, and the simulator passes them
as objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum


@dataclass(frozen=True, slots=True, order=True)
class MemberId:
    """One process: `host:port` plus its incarnation.

    The incarnation is the process's start time in milliseconds since the Unix epoch (or any
    larger number the operator supplies). A restarted process therefore always has a larger
    incarnation than every earlier process at the same address, without any state on disk; a
    member that was declared failed and comes back picks a new, larger one the same way
    (`Detector` adds the milliseconds elapsed since it started). Ids compare by (host, port,
    incarnation).
    """

    host: str
    port: int
    incarnation: int
    addr: str = field(init=False, repr=False, compare=False)  # "host:port", computed once

    def __post_init__(self):
        object.__setattr__(self, "addr", f"{self.host}:{self.port}")

    def __str__(self) -> str:
        return f"{self.host}:{self.port}@{self.incarnation}"


def parse_addr(text: str) -> tuple[str, int]:
    """`host:port` -> (host, port); ValueError with a clear message otherwise."""
    host, sep, port = text.strip().rpartition(":")
    if not sep or not host:
        raise ValueError(f"bad address {text!r}: expected HOST:PORT")
    try:
        number = int(port)
    except ValueError:
        raise ValueError(f"bad address {text!r}: port is not a number") from None
    if not 0 < number < 65536:
        raise ValueError(f"bad address {text!r}: port out of range")
    return host.strip("[]"), number


class Status(IntEnum):
    """A member's state in a list. FAILED and LEFT are final for an incarnation."""

    ALIVE = 0
    SUSPECT = 1
    FAILED = 2
    LEFT = 3

    @property
    def live(self) -> bool:
        return self <= LAST_LIVE


LAST_LIVE = Status.SUSPECT  # statuses <= LAST_LIVE are in the live list (hot paths compare directly)


@dataclass(frozen=True, slots=True)
class Update:
    """What one member's list says about one member: the unit of gossip.

    `refute` is the member's refutation counter within its incarnation: a member that learns
    it is suspected re-announces itself ALIVE with `refute + 1`. The pair (incarnation, refute)
    is what SWIM calls the incarnation number; catena splits it so a refutation never looks like
    a restart.
    """

    member: MemberId
    refute: int
    status: Status


# -- datagram messages (wire tags in parentheses; tags are append-only) -----------------------


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """(1) Sent every interval to the sender's k ring successors, which monitor it."""

    sender: MemberId
    updates: tuple[Update, ...] = ()


@dataclass(frozen=True, slots=True)
class Ping:
    """(2) Direct probe of `target`; answered with an Ack carrying the same seq."""

    sender: MemberId
    seq: int
    target: MemberId
    updates: tuple[Update, ...] = ()


@dataclass(frozen=True, slots=True)
class PingReq:
    """(3) Ask the receiver to probe `target` and relay the Ack (indirect probe)."""

    sender: MemberId
    seq: int
    target: MemberId
    updates: tuple[Update, ...] = ()


@dataclass(frozen=True, slots=True)
class Ack:
    """(4) Answer to a Ping (or relayed answer to a PingReq): `target` was heard."""

    sender: MemberId
    seq: int
    target: MemberId
    updates: tuple[Update, ...] = ()


@dataclass(frozen=True, slots=True)
class Join:
    """(5) A new process asks an introducer to admit it."""

    sender: MemberId


@dataclass(frozen=True, slots=True)
class State:
    """(6) One part of the sender's list: to a joiner (`for_join`) or to a differing peer."""

    sender: MemberId
    part: int
    parts: int
    for_join: bool
    entries: tuple[Update, ...]


@dataclass(frozen=True, slots=True)
class JoinRefused:
    """(7) The introducer will not admit the sender of a Join; `reason` says why."""

    sender: MemberId
    reason: str


@dataclass(frozen=True, slots=True)
class Gossip:
    """(8) Updates pushed to a few random members."""

    sender: MemberId
    updates: tuple[Update, ...]


@dataclass(frozen=True, slots=True)
class Digest:
    """(9) Anti-entropy: a 64-bit digest of the sender's live list.

    `quiet_ms`: how long the sender's list has been unchanged. A receiver whose digest differs,
    and whose list has also been quiet, sends its list (State parts) and, if `reply`, its own
    Digest back so the exchange goes both ways. `urgent`: the sender has evidence that the two
    lists disagree (it suspected the receiver, which then answered), so skip the quiet check.
    """

    sender: MemberId
    digest: int
    quiet_ms: int
    reply: bool
    urgent: bool = False


@dataclass(frozen=True, slots=True)
class Nack:
    """(10) A helper asked to probe `target` (PingReq) got no answer from it in time.

    It proves the asker can still reach someone: a prober declares a suspect failed only when
    at least one helper answered, so a member that is itself cut off never removes others.
    """

    sender: MemberId
    seq: int
    target: MemberId
    updates: tuple[Update, ...] = ()


Message = Heartbeat | Ping | PingReq | Ack | Join | State | JoinRefused | Gossip | Digest | Nack
