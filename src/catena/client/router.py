"""Routing and retry policy of the client (pure: time and randomness come in).

Writes go to the head of the chain, reads to any member (each answers linearizably: from its
own data when clean, else via the tail). In cluster mode a command goes by its keys' hash slot:
a `-MOVED slot host:port` names the head of the chain serving the slot, remembered for that slot
(`on_moved`), and `-ASK slot host:port` the member to try once, after ASKING. Errors are
classified into: follow a redirect (at most MAX_REDIRECTS per call), retry after refreshing the
view (connection trouble, TRYAGAIN, a stale view), or give up (the server refused the command).
Backoff is exponential with full jitter and a cap; every call has a deadline.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from catena.resp import command_info
from catena.slots import key_slot
from catena.view import View

RETRY_PREFIXES = ("TRYAGAIN", "CLUSTERDOWN", "LOADING", "NOTLEADER", "MOVED")
MAX_REDIRECTS = 16  # redirects followed per call (redis-py's RedisClusterRequestTTL)


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


def redirect(message: str) -> tuple[str, int, str] | None:
    """("MOVED" or "ASK", slot, host:port) of a redirect error reply, else None."""
    words = message.split(" ")
    if len(words) == 3 and words[0] in ("MOVED", "ASK") and words[1].isdigit() and ":" in words[2]:
        return words[0], int(words[1]), words[2]
    return None


def command_slot(command: list) -> int | None:
    """The hash slot of a command's first key (a CATENA.REQ's inner command), None: no key."""
    if command and command[0] == b"CATENA.REQ":
        command = command[4:]
    words = [w if isinstance(w, bytes) else str(w).encode() for w in command]
    keys = command_info.keys(words[0].upper(), words) if words else None
    return key_slot(keys[0]) if keys else None


class Router:
    def __init__(self, rng: random.Random):
        self.rng = rng
        self.view: View | None = None
        self.moved: dict[int, str] = {}  # slot -> the head a MOVED named for it

    def on_view(self, view: View) -> bool:
        """Adopt a newer view; True if it replaced ours."""
        if self.view is None or view.epoch > self.view.epoch:
            self.view = view
            return True
        return False

    def on_moved(self, slot: int, addr: str) -> None:
        self.moved[slot] = addr

    def forget(self, addr: str) -> None:
        """`addr` did not answer: its slots go by the view again until a MOVED names a head."""
        self.moved = {slot: a for slot, a in self.moved.items() if a != addr}

    def write_target(self, slot: int | None = None) -> str | None:
        if slot in self.moved:
            return self.moved[slot]
        return self.view.head if self.view and self.view.members else None

    def read_target(self, slot: int | None = None) -> str | None:
        if slot in self.moved:
            return self.moved[slot]
        if not self.view or not self.view.members:
            return None
        return self.rng.choice(self.view.members)


def check_value(value) -> bytes | str | int:
    """Values are bytes, str or int; anything else is refused here, before it is sent."""
    if isinstance(value, (bytes, str)) or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    raise TypeError(f"catena stores bytes, str or int values, not {type(value).__name__}")
