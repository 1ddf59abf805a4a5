"""Effects the membership machine returns; its shells (UDP agent, simulator) carry them out."""

from __future__ import annotations

from dataclasses import dataclass

from catena.effects import Send  # Send(to "host:port", msg): one datagram here
from catena.membership.messages import MemberId

__all__ = ["Send", "Event", "Joined", "JoinFailed", "Stopped", "PUBLIC_KINDS"]


@dataclass(frozen=True, slots=True)
class Event:
    """A change in this member's list.

    kind: "join", "leave", "failed" (public events), or "suspect", "alive" (a suspicion was
    refuted), "refute" (we refuted a suspicion of ourselves) -- logged, not published.
    """

    kind: str
    member: MemberId


@dataclass(frozen=True, slots=True)
class Joined:
    """We were admitted (first time or after a rejoin) as `me`."""

    me: MemberId


@dataclass(frozen=True, slots=True)
class JoinFailed:
    """No introducer admitted us; `reason` is meant for the operator."""

    reason: str


@dataclass(frozen=True, slots=True)
class Stopped:
    """A voluntary leave has been announced; the shell may close."""


PUBLIC_KINDS = frozenset(("join", "leave", "failed"))
