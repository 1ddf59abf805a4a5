"""Reconfiguration (pure): the coordinator's decisions about chain views.

State is the current view of each chain, the member registry and the queue of adds waiting
their turn. Every decision returns the new state's views; the shell persists the state before
it pushes a view anywhere, so a restarted coordinator resumes a half-done add (the learner is
still in the view; its tail keeps reporting) and never regresses an epoch.

Adding a member (van Renesse & Schneider's new tail): the member first becomes the view's
learner, streaming from the tail while the tail stays the commit point; once the tail reports
it caught up, the next view makes it the tail. One add at a time per chain; later ones queue.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from catena.view import View


@dataclass
class CoordinatorState:
    views: dict[int, View] = field(default_factory=lambda: {0: View(0, 0, ())})
    registry: dict[str, str] = field(default_factory=dict)  # member address -> incarnation
    queued: list[str] = field(default_factory=list)  # adds waiting for the current one
    retired: dict[str, str] = field(default_factory=dict)  # removed by an operator: address -> incarnation
    cluster_id: str = ""  # names this cluster; a member's data from another cluster is refused
    # client sessions: id -> {"ttl_ms": int, "keys": [str], "ending": bool (only when true)}
    sessions: dict[str, dict] = field(default_factory=dict)
    flaps: dict[str, float] = field(default_factory=dict)  # member -> flap penalty when last taken out (damping.py)

    def to_dict(self) -> dict:
        out = {"views": [v.to_wire() for v in self.views.values()], "registry": self.registry,
               "queued": self.queued, "retired": self.retired, "cluster_id": self.cluster_id,
               "sessions": self.sessions}
        if self.flaps:
            out["flaps"] = self.flaps
        return out

    @classmethod
    def from_dict(cls, raw: dict) -> "CoordinatorState":
        views = {v.chain_id: v for v in (View.from_wire(w) for w in raw["views"])}
        return cls(views, dict(raw.get("registry", {})), list(raw.get("queued", [])),
                   dict(raw.get("retired", {})), raw.get("cluster_id", ""),
                   {sid: {**s, "keys": list(s.get("keys", []))} for sid, s in raw.get("sessions", {}).items()},
                   {m: float(p) for m, p in raw.get("flaps", {}).items()})


class Reconfig:
    """Pure decisions; each method returns the views that changed (to persist, then push)."""

    def __init__(self, state: CoordinatorState, chain_id: int | None = None):
        self.state = state
        self.chain = min(state.views) if chain_id is None else chain_id  # the chain a call names by default

    def view(self, chain_id: int | None = None) -> View:
        return self.state.views[self.chain if chain_id is None else chain_id]

    def _set(self, view: View) -> list[View]:
        self.state.views[view.chain_id] = view
        return [view]

    def register(self, addr: str, incarnation: str, chain_id: int | None = None, cluster_id: str = "",
                 epoch: int = 0) -> list[View] | str:
        """A member process announces itself. A new incarnation of a chain member never resumes
        its old place: it is removed and added again as a learner (its log is truncated to what
        the chain holds by the sync handshake). A string: refused, and why."""
        chain_id = self.chain if chain_id is None else chain_id
        state = self.state
        if state.retired.get(addr) == incarnation:
            return "was removed by MASTER.REMOVE; restart it or MASTER.ADD it to rejoin"
        if cluster_id and cluster_id != state.cluster_id:
            return (f"holds data of cluster {cluster_id}, this coordinator's cluster is {state.cluster_id}; "
                    "its data dir was left untouched")
        if epoch > self.view(chain_id).epoch:
            return (f"has seen epoch {epoch}, newer than this coordinator's {self.view(chain_id).epoch}: "
                    "the coordinator's state is older than the member's; its data dir was left untouched")
        state.retired.pop(addr, None)
        known = state.registry.get(addr)
        state.registry[addr] = incarnation
        view = self.view(chain_id)
        changed = []
        if known is not None and known != incarnation and (addr in view.members or addr == view.learner):
            changed += self.remove(addr, chain_id)
        return changed + self.add(addr, chain_id)

    def retire(self, addr: str, chain_id: int | None = None) -> list[View] | str:
        """MASTER.REMOVE: take the member out and do not let this process rejoin by itself. The
        last member of a chain is refused (a string says why): it holds every committed write."""
        chain_id = self.chain if chain_id is None else chain_id
        if self.view(chain_id).members == (addr,):
            return (f"ERR {addr} is the last member of its chain and holds every committed write; "
                    "add another member first")
        incarnation = self.state.registry.pop(addr, None)
        if incarnation is not None:
            self.state.retired[addr] = incarnation
        return self.remove(addr, chain_id)

    def add(self, addr: str, chain_id: int | None = None) -> list[View]:
        """Add `addr` as the new tail (idempotent for a member already there or on its way)."""
        chain_id = self.chain if chain_id is None else chain_id
        view = self.view(chain_id)
        if addr in view.members or addr == view.learner or addr in self.state.queued:
            return []
        if not view.members:  # found the chain, then start the first add that waited for it
            return self._set(View(chain_id, view.epoch + 1, (addr,))) + self._next_queued(chain_id)
        if view.learner is not None:
            self.state.queued.append(addr)
            return []
        return self._set(replace(view, epoch=view.epoch + 1, learner=addr))

    def caught_up(self, epoch: int, learner: str, chain_id: int | None = None) -> list[View]:
        """The tail says its learner holds its history: promote the learner to tail."""
        chain_id = self.chain if chain_id is None else chain_id
        view = self.view(chain_id)
        if view.epoch != epoch or view.learner != learner:
            return []
        changed = self._set(View(chain_id, view.epoch + 1, view.members + (learner,)))
        return changed + self._next_queued(chain_id)

    def abandon_add(self, learner: str, chain_id: int | None = None) -> list[View]:
        """The add of `learner` cannot complete (it made no progress for the coordinator's
        bound): take it out of the view and start the next queued add. Nothing else changes;
        a no-op once `learner` is no longer the learner."""
        chain_id = self.chain if chain_id is None else chain_id
        if self.view(chain_id).learner != learner:
            return []
        return self.remove(learner, chain_id)

    def _next_queued(self, chain_id: int) -> list[View]:
        while self.state.queued:
            changed = self.add(self.state.queued.pop(0), chain_id)
            if changed:
                return changed
        return []

    def fail(self, addr: str, chain_id: int | None = None) -> list[View]:
        """A confirmed crash. The last member of a chain stays in its view: it holds every
        committed write, so the chain waits for it (or for its restart) rather than lose them."""
        chain_id = self.chain if chain_id is None else chain_id
        view = self.view(chain_id)
        if view.members == (addr,):
            return []
        return self.remove(addr, chain_id)

    def restarted(self, addr: str, incarnation: str, chain_id: int | None = None) -> list[View]:
        """A probe found a new process (`incarnation`) at a member's address: it never resumes
        the old one's place; it is added again behind the tail (its log cut back by the sync
        handshake). Known from then on, so its own registration changes nothing more."""
        chain_id = self.chain if chain_id is None else chain_id
        view = self.view(chain_id)
        if self.state.registry.get(addr) == incarnation or (addr not in view.members and addr != view.learner):
            return []
        if addr in self.state.registry:
            self.state.registry[addr] = incarnation
        return self.remove(addr, chain_id) + self.add(addr, chain_id)

    def remove(self, addr: str, chain_id: int | None = None) -> list[View]:
        """Take `addr` out of the chain (head, middle, tail or learner) under a new epoch."""
        chain_id = self.chain if chain_id is None else chain_id
        view = self.view(chain_id)
        if addr in self.state.queued:
            self.state.queued.remove(addr)
        if addr == view.learner:
            return self._set(replace(view, epoch=view.epoch + 1, learner=None)) + self._next_queued(chain_id)
        if addr not in view.members:
            return []
        members = tuple(m for m in view.members if m != addr)
        # A learner without a tail to stream from starts over once the chain has a member.
        learner = view.learner if members else None
        if view.learner and not members:
            self.state.queued.insert(0, view.learner)
        return self._set(View(chain_id, view.epoch + 1, members, learner))
