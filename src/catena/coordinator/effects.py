"""What the coordinator machine (machine.py) asks its shells to do, and the verdicts it reaches.

Calls to members (`Probe`, `Revoke`, `AskTail`, `Push`, `DeleteKeys`) and the fenced `Save`
each have one input that reports their outcome; `Reply` answers an operator's or a member's
request; the verdicts (`Fail`, `Restarted`, `CaughtUp`, `AbandonAdd`) and `Note`s are for the
log: the machine has already queued the change a verdict asks for.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from catena.view import View

REVOKE_TIMEOUT_S = 0.3
ASK_TAIL_TIMEOUT_S = 1.0
PUSH_TIMEOUT_S = 1.0
DELETE_TIMEOUT_S = 2.0
NOT_LEADER = "NOTLEADER"  # a Reply's error when the term ended first (the shell names the leader)


@dataclass(frozen=True)
class Probe:
    """Call MEMBER.PROBE epoch nonce grant on `member` within `timeout_s`; report the outcome
    with `on_probe_answer` or `on_probe_failed`."""
    member: str
    epoch: int
    nonce: int
    grant: int
    timeout_s: float


@dataclass(frozen=True)
class Revoke:
    """Call MEMBER.REVOKE epoch on `member` within `timeout_s`; report `on_revoked`."""
    member: str
    epoch: int
    timeout_s: float = REVOKE_TIMEOUT_S


@dataclass(frozen=True)
class AskTail:
    """Ask `tail` (MEMBER.STATUS) how far `learner` got under `epoch`; report `on_tail_status`."""
    tail: str
    epoch: int
    learner: str
    timeout_s: float = ASK_TAIL_TIMEOUT_S


@dataclass(frozen=True)
class Save:
    """Write `state` to the config store under this term's fence; report `on_save_result`.
    Nothing later in the same change happens before it is durable."""
    state: dict


@dataclass(frozen=True)
class Push:
    """Call MEMBER.VIEW with `view` on `member`; report `on_pushed`."""
    member: str
    view: View
    timeout_s: float = PUSH_TIMEOUT_S


@dataclass(frozen=True)
class DeleteKeys:
    """Delete a batch of an ended session's keys at the chain's `head` (CATENA.REQ with the
    request id `session:<id>` `batch` `batch`, so a retry applies once); report `on_keys_deleted`."""
    session: str
    batch: int
    keys: tuple[bytes, ...]
    head: str
    timeout_s: float = DELETE_TIMEOUT_S


@dataclass(frozen=True)
class Reply:
    """Answer the request the shell submitted as `token`: `value`, or `error` (a Redis error
    line, or NOT_LEADER)."""
    token: Any
    value: Any = None
    error: str | None = None


@dataclass(frozen=True)
class Note:
    """Something an operator wants in the log (`level`: "info" or "warning")."""
    level: str
    text: str


# -- verdicts: changes the machine decided on its own -------------------------------------------------


@dataclass(frozen=True)
class Fail:
    """`member`'s probes confirmed it dead: take it out (unless it is its chain's last member)."""
    member: str
    misses: int


@dataclass(frozen=True)
class Restarted:
    """A new incarnation answers at `member`'s address: out, and in again behind the tail."""
    member: str
    incarnation: str


@dataclass(frozen=True)
class CaughtUp:
    """The tail says its learner caught up under `epoch`: promote it."""
    epoch: int
    member: str


@dataclass(frozen=True)
class AbandonAdd:
    """The learner made no progress for `quiet_s`: roll its add back."""
    member: str
    quiet_s: float


Verdict = Fail | Restarted | CaughtUp | AbandonAdd
CALLS = (Probe, Revoke, AskTail, Save, Push, DeleteKeys)  # the effects that report an outcome
