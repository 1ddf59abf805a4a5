"""Routing and retry policy of the client (pure: time and randomness come in).

Writes go to the head of the chain, reads to any member (each answers linearizably: from its
own data when clean, else via the tail). Errors are classified into: retry after refreshing
the view (connection trouble, TRYAGAIN, a stale view), or give up (the server refused the
command). Backoff is exponential with full jitter and a cap; every call has a deadline.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from catena.view import View

RETRY_PREFIXES = ("TRYAGAIN", "CLUSTERDOWN", "LOADING", "NOTLEADER", "MOVED")


@dataclass
class RetryPolicy:
    deadline_s: float = 5.0
    base_s: float = 0.01
    cap_s: float = 0.5

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2**attempt)]."""
        return rng.uniform(0, min(self.cap_s, self.base_s * (2 ** attempt)))


def retryable(message: str) -> bool:
    """Is an error reply one that a later attempt (after a view refresh) can fix?"""
    return message.split(" ", 1)[0] in RETRY_PREFIXES


class Router:
    def __init__(self, rng: random.Random):
        self.rng = rng
        self.view: View | None = None

    def on_view(self, view: View) -> bool:
        """Adopt a newer view; True if it replaced ours."""
        if self.view is None or view.epoch > self.view.epoch:
            self.view = view
            return True
        return False

    def write_target(self) -> str | None:
        return self.view.head if self.view and self.view.members else None

    def read_target(self) -> str | None:
        if not self.view or not self.view.members:
            return None
        return self.rng.choice(self.view.members)


def check_value(value) -> bytes | str | int:
    """Values are bytes, str or int; anything else is refused here, before it is sent."""
    if isinstance(value, (bytes, str)) or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    raise TypeError(f"catena stores bytes, str or int values, not {type(value).__name__}")
