"""Client sessions (pure): which sessions exist, which keys they own, and when they expire.

A session is a client's registration with a TTL; keys written with `session=True` are bound to
it and deleted, through the chain, when it ends (closed by its client, or expired because its
pings stopped). Two halves:

- The persistent half is `CoordinatorState.sessions` (id -> {"ttl_ms", "keys", ["ending"]}),
  saved fenced with the rest of the coordinator's state, so it survives a leader failover. The
  functions below change that dict; the service calls them inside its `_change`.
- The ping half is `SessionClock`: when each session last pinged, in the leader's own monotonic
  time. It is never persisted (clocks differ between coordinators): a new leader starts every
  session with a full TTL from when it took over, so a failover never expires a session early.

Ending a session is three steps, each safe to repeat after a failover: mark it "ending" (saved:
no key is attached any more, pings are refused, a new leader resumes the deletion), delete its
keys through the chain, drop it.
"""

from __future__ import annotations

MIN_TTL_MS = 100
MAX_TTL_MS = 24 * 3600 * 1000
NO_SUCH_SESSION = "ERR no such session"


def key_text(key: bytes) -> str:
    """A key as the JSON state holds it (undecodable bytes survive the round trip)."""
    return key.decode("utf-8", "surrogateescape")


def key_bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


# -- the persisted half: CoordinatorState.sessions ---------------------------------------------------


def check_ttl_ms(raw: bytes) -> int:
    """A session TTL from a command argument; ValueError naming the bounds otherwise."""
    if not raw.isdigit() or not MIN_TTL_MS <= int(raw) <= MAX_TTL_MS:
        raise ValueError(f"session ttl must be an integer number of ms in [{MIN_TTL_MS}, {MAX_TTL_MS}]")
    return int(raw)


def live(sessions: dict, sid: str) -> bool:
    """The session exists and is not being ended."""
    entry = sessions.get(sid)
    return entry is not None and not entry.get("ending")


def open_session(sessions: dict, sid: str, ttl_ms: int) -> list:
    sessions[sid] = {"ttl_ms": ttl_ms, "keys": []}
    return []


def attach(sessions: dict, sid: str, keys: list[bytes]) -> list | str:
    """Bind `keys` to a live session (idempotent); a string: refused."""
    if not live(sessions, sid):
        return NO_SUCH_SESSION
    bound = sessions[sid]["keys"]
    known = set(bound)
    for key in map(key_text, keys):
        if key not in known:
            known.add(key)
            bound.append(key)
    return []


def mark_ending(sessions: dict, sid: str) -> list | str:
    """First step of ending a session (idempotent); a string: no such session."""
    if sid not in sessions:
        return NO_SUCH_SESSION
    sessions[sid]["ending"] = True
    return []


def drop(sessions: dict, sid: str) -> list:
    """Last step: its keys are deleted; forget it (idempotent)."""
    sessions.pop(sid, None)
    return []


# -- the in-memory half: pings ------------------------------------------------------------------------


class SessionClock:
    """When each session last pinged (the leader's monotonic seconds, passed in as `now`).

    A session is expired once `ttl` seconds passed since its last ping; it stays expired (a late
    ping does not bring it back). Sessions the clock has not seen yet (opened under another
    leader) start with a full TTL from the moment it first hears of them."""

    def __init__(self):
        self._ttl: dict[str, float] = {}
        self._last: dict[str, float] = {}
        self._expired: set[str] = set()

    def __contains__(self, sid: str) -> bool:
        return sid in self._ttl

    def track(self, sid: str, ttl_s: float, now: float) -> None:
        """Start timing a session (no-op for one already timed)."""
        if sid not in self._ttl:
            self._ttl[sid], self._last[sid] = ttl_s, now

    def sync(self, ttls: dict[str, float], now: float) -> None:
        """Adopt the saved sessions: new ones get a full TTL from `now`, gone ones are forgotten."""
        for sid, ttl_s in ttls.items():
            self.track(sid, ttl_s, now)
        for sid in [s for s in self._ttl if s not in ttls]:
            self.forget(sid)

    def ping(self, sid: str, ttl_s: float, now: float) -> bool:
        """A ping from the session's client: False if it already expired (too late)."""
        self.track(sid, ttl_s, now)
        if self._is_expired(sid, now):
            return False
        self._last[sid] = now
        return True

    def expired(self, now: float) -> list[str]:
        """Sessions whose TTL ran out at `now` (each reported until it is forgotten)."""
        for sid in self._ttl:
            self._is_expired(sid, now)
        return sorted(self._expired)

    def forget(self, sid: str) -> None:
        self._ttl.pop(sid, None)
        self._last.pop(sid, None)
        self._expired.discard(sid)

    def next_deadline(self) -> float | None:
        """When the next live session expires if no ping comes (None: nothing to expire)."""
        deadlines = [self._last[s] + self._ttl[s] for s in self._ttl if s not in self._expired]
        return min(deadlines, default=None)

    def _is_expired(self, sid: str, now: float) -> bool:
        if sid in self._expired:
            return True
        if now >= self._last[sid] + self._ttl[sid]:
            self._expired.add(sid)
            return True
        return False
