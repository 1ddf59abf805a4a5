"""Effects: what pure machines ask their shells to do, in order (persist before send).

Slotted dataclasses, compared by type and fields. Not frozen: a frozen one sets each field
through object.__setattr__, and the head makes a Reply per write and more per batch (3,459 of
its ~58k machine instructions per SET); nothing changes an effect once it is made."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class Send:
    """Send a peer message to the process at address `to`."""

    to: str
    msg: Any


@dataclass(slots=True)
class Reply:
    """Answer the local client request identified by `token`."""

    token: Any
    value: Any


@dataclass(slots=True)
class Persist:
    """Append entries to the durable log before anything later in the effect list happens."""

    entries: list


@dataclass(slots=True)
class PersistSnapshot:
    """The machine's state was replaced wholesale by `state` (a state transfer's blob, as
    `KVState.dump` makes it): snapshot it durably."""

    state: bytes


@dataclass(slots=True)
class LearnerCaughtUp:
    """This tail's learner holds its history under the view of `epoch`: tell the coordinator
    (MASTER.CAUGHT_UP), which promotes it."""

    chain_id: int
    epoch: int
    learner: str


@dataclass(slots=True)
class FetchView:
    """The machine saw a newer epoch than its view: ask the coordinator for the current view."""

    epoch: int


@dataclass(slots=True)
class Deliver:
    """A PUBLISH committed: hand `message` to this member's subscribers of `channel`."""

    channel: bytes
    message: bytes
