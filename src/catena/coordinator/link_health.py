"""Gray failures the coordinator judges from the members' link reports (pure).

A cut link. Each member tells with its probe answers which peer it waits on and for how long
(control.LinkReport: its successor's acks, the head's replies to its forwarded writes, the
tail's to its forwarded reads). A link u→d is cut when u has waited on d for `stall_s` with
something outstanding, both u and d answer the coordinator's probes, and d corroborates it:
nothing arrived from u for `stall_s` either; of stalls that follow from another one further
down the chain, only that one is judged (`cut`). Which end goes: the one more reports implicate
(other cut links it is an end of, members whose membership lost it); between equals the one
further down the chain, which keeps the head and the longest history (head↔middle: the middle;
middle↔tail and head↔tail: the tail). Never the chain's last member.

Self-suspicion. A failure only the coordinator observes is not enough to shrink a chain when
the coordinator may be the one cut off: when most of the members it watches fail their probes
at once, or when taking the member out would leave fewer than two. Then a removal needs a
witness: another member, itself answering, whose report says its membership lost the suspect
or that its link to the suspect is stalled. (A refused connection or a wedged loop speaks for
itself: the member's host answered.)
"""

from __future__ import annotations

from catena.control import LinkReport
from catena.view import View

STALL_S = 1.0  # a link that made no progress this long, with something outstanding, is cut
FRESH_S = 1.0  # a report older than this (its member stopped answering) is no witness


def fresh(reports: dict[str, tuple[float, LinkReport]], view: View, now: float) -> dict[str, LinkReport]:
    """The reports of the view's members made under its epoch in the last `FRESH_S`."""
    return {m: r for m, (at, r) in reports.items()
            if m in view.members and r.epoch == view.epoch and now - at <= FRESH_S}


def cut(view: View, reports: dict[str, LinkReport], stall_s: float = STALL_S) -> tuple[str, str, float] | None:
    """(the member to take out, the other end, how long the link stalled), or None.

    A stall travels upstream: a member whose successor stopped acking stops acking too, and
    writes forwarded to the head wait for the chain to commit them. So a stalled chain link
    whose far end waits on its own successor is not judged, and neither are forwards and reads
    while any chain link is cut: only the furthest-down cause is."""
    bound = int(stall_s * 1000)
    claims: dict[tuple[str, str], int] = {}
    for u, r in reports.items():
        for d, ms, _pending in r.stalled:
            heard = dict(reports[d].heard).get(u, bound) if d in reports else None
            if d != u and heard is not None and ms >= bound and heard >= bound:
                claims[(u, d)] = max(ms, claims.get((u, d), 0))
    waiting = {(u, d) for u, r in reports.items() for d, _ms, _pending in r.stalled if view.successor(u) == d}
    if waiting:  # judge only chain links, and only those whose far end waits on nobody downstream
        claims = {(u, d): ms for (u, d), ms in claims.items()
                  if view.successor(u) == d and (d, view.successor(d)) not in waiting}
    if not claims or len(view.members) < 2:
        return None
    (u, d), ms = max(claims.items(), key=lambda c: (c[1], c[0]))
    order = {m: i for i, m in enumerate(view.members)}

    def score(m: str) -> int:  # the cut links it is an end of, and third members that lost it
        return sum(m in pair for pair in claims) + sum(m in r.lost for x, r in reports.items() if x not in (u, d))
    out = max((u, d), key=lambda m: (score(m), order[m]))
    return out, d if out == u else u, ms / 1000


def witnessed(member: str, reports: dict[str, LinkReport], stall_s: float = STALL_S) -> str | None:
    """Another member that saw `member` fail too (its name), or None."""
    bound = int(stall_s * 1000)
    for m, r in sorted(reports.items()):
        if m != member and (member in r.lost or any(p == member and ms >= bound for p, ms, _ in r.stalled)):
            return m
    return None
