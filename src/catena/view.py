"""Views: one chain's configuration (members head first, epoch), made only by the coordinator, and
their two wire forms: RESP words (`words`) and the saved state's JSON (`to_wire`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class View:
    """`members` is the chain, head first. `learner` is a member being brought up to date
    behind the tail: it receives the tail's stream but is not part of the chain until a later
    view makes it the tail."""

    chain_id: int
    epoch: int
    members: tuple[str, ...]
    learner: str | None = None

    @property
    def head(self) -> str | None:
        return self.members[0] if self.members else None

    @property
    def tail(self) -> str | None:
        return self.members[-1] if self.members else None

    def predecessor(self, addr: str) -> str | None:
        if addr == self.learner:
            return self.tail
        if addr in self.members:
            i = self.members.index(addr)
            return self.members[i - 1] if i > 0 else None
        return None

    def successor(self, addr: str) -> str | None:
        """The member `addr` forwards writes to (the learner counts, behind the tail)."""
        if addr in self.members:
            i = self.members.index(addr)
            if i + 1 < len(self.members):
                return self.members[i + 1]
            return self.learner
        return None

    def role(self, addr: str) -> str:
        if addr == self.learner:
            return "learner"
        if addr not in self.members:
            return "none"
        if len(self.members) == 1:
            return "head+tail"
        if addr == self.head:
            return "head"
        return "tail" if addr == self.tail else "middle"

    def words(self) -> list[str]:
        """The view as RESP words (MEMBER.VIEW, MASTER.GET_VIEW): `chain_id epoch learner|- member ...`."""
        return [str(self.chain_id), str(self.epoch), self.learner or "-", *self.members]

    @classmethod
    def from_words(cls, words) -> "View":
        """The view `words` (bytes or str) spell; ValueError if they spell none."""
        words = [w.decode() if isinstance(w, bytes) else str(w) for w in words]
        if len(words) < 3 or not words[0].isdigit() or not words[1].isdigit():
            raise ValueError(f"a view is: chain_id epoch learner|- member ..., not {' '.join(words)[:100]!r}")
        learner = None if words[2] == "-" else words[2]
        return cls(int(words[0]), int(words[1]), tuple(words[3:]), learner)

    def to_wire(self) -> list:
        """The view as the coordinator's saved state holds it (JSON)."""
        return [self.chain_id, self.epoch, list(self.members), self.learner]

    @classmethod
    def from_wire(cls, raw) -> "View":
        chain_id, epoch, members, learner = raw
        if isinstance(learner, bytes):
            learner = learner.decode()
        return cls(int(chain_id), int(epoch), tuple(m.decode() if isinstance(m, bytes) else m for m in members),
                   learner)
