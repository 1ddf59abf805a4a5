"""What the coordinator machine (machine.py) asks its shells to do, and the verdicts it reaches.

Calls to members (`Probe`, `CheckLiveness`, `Revoke`, `AskTail`, `Push`, `DeleteKeys`) and the fenced `Save`
each have one input that reports their outcome; `Reply` answers an operator's or a member's
request; the verdicts (`Fail`, `Cut`, `Slow`, `Restarted`, `CaughtUp`, `AbandonAdd`) and `Note`s are for the
log: the machine has already queued the change a verdict asks for.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from catena.view import View

REVOKE_TIMEOUT_S = 0.3
LIVENESS_TIMEOUT_S = 0.3
ASK_TAIL_TIMEOUT_S = 1.0
PUSH_TIMEOUT_S = 1.0
DELETE_TIMEOUT_S = 2.0
NOT_LEADER = "NOTLEADER"  # a Reply's error when the term ended first (the shell names the leader)

# why a view changed (a view Note's `cause`; metrics count by it); the first three are repairs
FAILURE, RESTART, ROLLED_BACK, JOIN, CAUGHT_UP, ADMIN_ADD, ADMIN_REMOVE, LINK_CUT, FAIL_SLOW = (
    "failure", "restart", "add_rolled_back", "join", "caught_up", "admin_add", "admin_remove", "link_cut", "fail_slow")


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
class CheckLiveness:
    """The probe `nonce` to `member` timed out: ask its liveness responder (off its event loop)
    within `timeout_s`; report the answer, or none, with `on_liveness`."""
    member: str
    nonce: int
    timeout_s: float = LIVENESS_TIMEOUT_S


@dataclass(frozen=True)
class Revoke:
    """Call MEMBER.REVOKE epoch on `member` within `timeout_s`; report `on_revoked`."""
    member: str
    epoch: int
    timeout_s: float = REVOKE_TIMEOUT_S


@dataclass(frozen=True)
class AskTail:
    """Ask `tail` (MEMBER.STATUS) how far `learner` got under `epoch`, and both how far the
    state transfer between them got; report `on_tail_status`."""
    tail: str
    epoch: int
    learner: str
    timeout_s: float = ASK_TAIL_TIMEOUT_S


@dataclass(frozen=True)
class Save:
    """Write `state` to the config store under this term's fence, as the layout's `parts` that
    changed (layout.py; None: every part); report `on_save_result`. Nothing later in the same
    change happens before it is durable."""
    state: dict
    parts: dict | None = None


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
class Resign:
    """This coordinator cannot reach most members: give leadership up to a standby (etcd; with
    the embedded store there is none, and nothing happens)."""
    reason: str


@dataclass(frozen=True)
class Reply:
    """Answer the request the shell submitted as `token`: `value`, or `error` (a Redis error
    line, or NOT_LEADER)."""
    token: Any
    value: Any = None
    error: str | None = None


@dataclass(frozen=True)
class Note:
    """Something an operator wants in the log (`level`: "info" or "warning"). A note of an
    `event` ("view_change": `view` was saved; "repair": a verdict changed the chain) names its
    `cause` and the `member` it is about, for the JSON log and the metrics."""
    level: str
    text: str
    event: str = ""
    cause: str = ""
    member: str = ""
    view: View | None = None


# -- verdicts: changes the machine decided on its own -------------------------------------------------


@dataclass(frozen=True)
class Fail:
    """`member`'s probes confirmed it dead, or its loop is `wedged`: take it out (unless it is
    its chain's last member). `witness`: another member whose report lost it too, which
    confirmed it before the misses alone would have."""
    member: str
    misses: int
    wedged: bool = False
    witness: str | None = None


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


@dataclass(frozen=True)
class Cut:
    """The link between `member` and `peer` (both answer probes) made no progress for
    `stalled_s`: take `member` out (link_health.py says which end)."""
    member: str
    peer: str
    stalled_s: float


@dataclass(frozen=True)
class Slow:
    """`member` reported slow fsyncs or loop turns persistently (`why`): take it out if its
    chain keeps two others (slowness.py)."""
    member: str
    why: str


Verdict = Fail | Cut | Slow | Restarted | CaughtUp | AbandonAdd
CAUSES = {Fail: FAILURE, Cut: LINK_CUT, Slow: FAIL_SLOW, Restarted: RESTART, CaughtUp: CAUGHT_UP,
          AbandonAdd: ROLLED_BACK}  # a verdict's cause
CALLS = (Probe, CheckLiveness, Revoke, AskTail, Save, Push, DeleteKeys)  # the effects that report an outcome
