"""The changes the coordinator machine makes, one at a time, and the `Reconfig` decision behind
each (pure): operators' and members' requests, the machine's own verdicts, and the steps of
ending a session.

`decide` changes the working copy of the state and returns the views that changed, or a string:
refused, and why (nothing is saved). `told` names who is pushed the new view besides the members
it names (a member it took out learns that it left).
"""

from __future__ import annotations

from dataclasses import dataclass

from catena.coordinator import sessions
from catena.coordinator.effects import ADMIN_ADD, ADMIN_REMOVE, CAUSES, JOIN, AbandonAdd, CaughtUp, Cut, Fail, Restarted, Slow
from catena.coordinator.reconfig import Reconfig
from catena.view import View


@dataclass(frozen=True)
class Add:
    """MASTER.ADD: answered once the member is in the chain with a read lease."""
    member: str


@dataclass(frozen=True)
class Remove:
    """MASTER.REMOVE: take it out and do not let this process rejoin by itself."""
    member: str


@dataclass(frozen=True)
class Register:
    """MASTER.REGISTER from a member started with --coordinator: answered with the cluster id."""
    member: str
    incarnation: str
    cluster_id: str = ""
    epoch: int = 0


@dataclass(frozen=True)
class OpenSession:
    session: str
    ttl_ms: int


@dataclass(frozen=True)
class Attach:
    """Bind keys to a live session (also counts as a ping)."""
    session: str
    keys: tuple[bytes, ...]


@dataclass(frozen=True)
class CloseSession:
    """Delete the session's keys through the chain, then drop it: answered when it is gone."""
    session: str


@dataclass(frozen=True)
class MarkEnding:
    """The first step of ending a session (saved: a new leader resumes from here)."""
    session: str


@dataclass(frozen=True)
class DropSession:
    """The last step of ending a session: its keys are deleted."""
    session: str


@dataclass(frozen=True)
class Initialize:
    """A new store: save the initial state before anything else."""


def watched(view: View) -> set[str]:
    """The members whose health the leader watches: the chain and its learner."""
    return set(view.members) | ({view.learner} - {None})


def decide(what, r: Reconfig) -> list[View] | str:
    """The `Reconfig` decision `what` asks for, on the working state `r`."""
    state = r.state
    if isinstance(what, (Fail, Cut)):
        return r.fail(what.member) if what.member in watched(r.view()) else []
    if isinstance(what, Slow):  # only while two others remain
        return r.fail(what.member) if len(set(r.view().members) - {what.member}) >= 2 else []
    if isinstance(what, Restarted):
        return r.restarted(what.member, what.incarnation)
    if isinstance(what, CaughtUp):
        return r.caught_up(what.epoch, what.member)
    if isinstance(what, AbandonAdd):
        return r.abandon_add(what.member)
    if isinstance(what, Add):
        state.retired.pop(what.member, None)
        return r.add(what.member)
    if isinstance(what, Remove):
        addr = what.member
        if addr not in watched(r.view()) and addr not in state.queued and addr not in state.registry:
            return f"ERR {addr} is not a member of the chain"
        return r.retire(addr)
    if isinstance(what, Register):
        refused = r.register(what.member, what.incarnation, cluster_id=what.cluster_id, epoch=what.epoch)
        return f"ERR refused: {what.member} {refused}" if isinstance(refused, str) else refused
    if isinstance(what, OpenSession):
        return sessions.open_session(state.sessions, what.session, what.ttl_ms)
    if isinstance(what, Attach):
        return sessions.attach(state.sessions, what.session, list(what.keys))
    if isinstance(what, MarkEnding):
        return sessions.mark_ending(state.sessions, what.session)
    if isinstance(what, DropSession):
        return sessions.drop(state.sessions, what.session)
    if isinstance(what, Initialize):
        return []
    raise TypeError(f"not a change: {what!r}")


def told(what) -> list[str]:
    """Who is pushed the view a change saves besides the members it names: a member it took out."""
    return [what.member] if isinstance(what, (Fail, Cut, Slow, Restarted, Remove)) else []


def cause(what) -> str:
    """Why the views a change saves changed (effects.py's causes; "" for session steps)."""
    return CAUSES.get(type(what)) or {Add: ADMIN_ADD, Remove: ADMIN_REMOVE, Register: JOIN}.get(type(what), "")
