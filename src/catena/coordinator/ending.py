"""Client sessions, the coordinator machine's part (pure; `CoordinatorMachine` mixes it in):
pings timed on the leader's monotonic clock (sessions.SessionClock), expiry, and ending a session
in three steps a new leader resumes: mark it ending (saved), delete its keys at the head in
batches (`DeleteKeys`, retried with a pause growing from 0.1 to 1 s), drop it (saved).

From the machine it uses `saved`, `view`, `leading`, its `_clock` and `_enders`, and `_change`
(queue a change of its own).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from catena.coordinator import requests as rq
from catena.coordinator.effects import DeleteKeys, Note, Reply
from catena.coordinator.sessions import key_bytes

SESSION_DEL_BATCH = 1000  # keys per DEL when a session ends
SESSION_RETRY_S = 0.1  # the first pause before a failed deletion is tried again (doubling to 1 s)


@dataclass
class _Ender:
    """A session being ended: who waits for it, its keys, the batch deleted next."""
    waiting: list = field(default_factory=list)
    keys: tuple[bytes, ...] = ()
    batch: int = 0  # the batch in flight or due (1-based; 0: not deleting yet)
    due: float | None = None  # when a failed batch is tried again
    pause: float = SESSION_RETRY_S


class SessionEnding:
    def session_ping(self, sid: str, now: float) -> bool:
        """MASTER.SESSION.PING: the session is saved, not being ended, and its TTL has not run out."""
        entry = self.saved.sessions.get(sid)
        return (self.leading and entry is not None and not entry.get("ending")
                and self._clock.ping(sid, entry["ttl_ms"] / 1000, now))

    def on_keys_deleted(self, sid: str, batch: int, ok: bool, now: float) -> list:
        """The head answered the deletion of `batch` (`ok`: committed), or it failed."""
        e = self._enders.get(sid)
        if e is None or e.batch != batch or e.due is not None:
            return []
        if ok:
            e.batch, e.pause = e.batch + 1, SESSION_RETRY_S
            return self._delete_batch(sid, now)
        e.due, e.pause = now + e.pause, min(e.pause * 2, 1.0)
        return []

    def _sessions_on_timer(self, now: float) -> list:
        """Retry the deletions that are due; end the sessions whose pings stopped for their TTL."""
        fx = []
        for sid, e in sorted(self._enders.items()):
            if e.due is not None and e.due <= now:
                fx += self._delete_batch(sid, now)
        if not self.leading:
            return fx
        for sid in self._clock.expired(now):
            entry = self.saved.sessions.get(sid)
            if entry is not None and not entry.get("ending") and sid not in self._enders:
                fx.append(Note("info", f"session {sid} expired (no ping for {entry['ttl_ms']} ms): "
                                       f"deleting its {len(entry['keys'])} keys"))
                fx += self._end_session(sid, now)
        return fx

    def _session_deadlines(self) -> list[float | None]:
        return [e.due for e in self._enders.values()] + ([self._clock.next_deadline()] if self.leading else [])

    def _sync_sessions(self, now: float) -> list[str]:
        """Time the saved sessions (ones not timed yet get a full TTL from now); their ids."""
        sessions = self.saved.sessions
        self._clock.sync({sid: e["ttl_ms"] / 1000 for sid, e in sessions.items()}, now)
        return list(sessions)

    def _end_session(self, sid: str, now: float, token=None) -> list:
        """End `sid` (once; `token`: a MASTER.SESSION.CLOSE answered when it is gone)."""
        e = self._enders.get(sid)
        if e is not None:
            e.waiting += [token] if token is not None else []
            return []
        self._enders[sid] = _Ender([token] if token is not None else [])
        if self.saved.sessions.get(sid, {}).get("ending"):
            return self._delete_batch(sid, now, first=True)
        return self._change(rq.MarkEnding(sid), now)

    def _delete_batch(self, sid: str, now: float, first: bool = False) -> list:
        e = self._enders[sid]
        if first:
            e.keys = tuple(map(key_bytes, self.saved.sessions.get(sid, {}).get("keys", [])))
            e.batch = 1
        e.due = None
        start = (e.batch - 1) * SESSION_DEL_BATCH
        if start >= len(e.keys):
            return self._change(rq.DropSession(sid), now)
        if self.view.head is None:  # the chain has no members (yet): try again later
            return self.on_keys_deleted(sid, e.batch, False, now)
        return [DeleteKeys(sid, e.batch, e.keys[start:start + SESSION_DEL_BATCH], self.view.head)]

    def _ended(self, sid: str, now: float) -> list:
        e = self._enders.pop(sid, None)
        self._clock.forget(sid)
        if e is None:
            return []
        return ([Note("info", f"session {sid} ended: its {len(e.keys)} keys deleted")]
                + [Reply(token, "OK") for token in e.waiting])
