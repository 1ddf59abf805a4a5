"""Blocking pops (BLPOP, BRPOP, BLMOVE, BRPOPLPUSH, BLMPOP, BZPOPMIN, BZPOPMAX, BZMPOP): the
clients blocked at one member, and what wakes them (pure: the replica drives it).

A blocking pop is its non-blocking form (`attempt`: LMPOP, LMOVE, ZMPOP ...) sent as an ordinary
write, through the head, under the member's own request ids. When that pop finds nothing, the
client blocks here on its keys until its deadline. Whenever an entry applied at this member
writes one of those keys and leaves a value of the awaited type there, the longest-blocked
clients on it (as many as it holds elements) send their pop again; one whose pop another client
beat blocks again. A write applied while a client's pop is in flight may have come after that
pop at the head, so it marks the client to try once more rather than block. A pop in flight at
the deadline is let finish: it may have popped (then that is the reply), else the reply is nil.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from dataclasses import dataclass

from catena.chain.values import INF, parse_long_double
from catena.chain.zset import ZSet
from catena.resp.codec import NULL_ARRAY, Error
from catena.resp.commands import INT64_MAX

_NOT_A_TIMEOUT = Error("ERR timeout is not a float or out of range")


def parse_timeout(raw: bytes, now_ms: int):
    """Redis's getTimeoutFromObjectOrReply in seconds: the deadline in ms (None: 0, forever), or
    Redis's error."""
    value = parse_long_double(raw)
    if value is None or value in (INF, -INF):
        return _NOT_A_TIMEOUT
    ms = math.ceil(value * 1000)  # as Redis's ceill: 0.0001 is 1 ms, not 0 (for ever)
    if ms < 0:
        return Error("ERR timeout is negative")
    if ms == 0:
        return None
    if ms > INT64_MAX - now_ms:
        return Error("ERR timeout is out of range")
    return now_ms + ms


def _first_pair(reply):
    """[key, [element]] (LMPOP of one) as [key, element]; [key, [[m, s]]] as [key, m, s]."""
    key, popped = reply
    first = popped[0]
    return [key, first] if type(first) is bytes else [key, *first]


def _keys_then_timeout(pop: bytes, end: bytes):
    """BLPOP key [key ...] timeout as `pop numkeys key ... end COUNT 1`."""
    def parse(args):
        keys = args[1:-1]
        return args[-1], keys, [pop, b"%d" % len(keys), *keys, end, b"COUNT", b"1"], _first_pair
    return parse


def _timeout_first(pop: bytes):
    """BLMPOP timeout numkeys key ... as LMPOP numkeys key ...; its keys for waking."""
    def parse(args):
        try:
            n = max(0, int(args[2]))
        except ValueError:
            n = 0
        return args[1], tuple(args[3:3 + n]), [pop, *args[2:]], None
    return parse


def _moves(args):
    """BLMOVE source destination from to timeout / BRPOPLPUSH source destination timeout."""
    ends = args[3:5] if len(args) == 6 else [b"RIGHT", b"LEFT"]
    return args[-1], (args[1],), [b"LMOVE", args[1], args[2], *ends], None


# name -> (arity, parse(args) -> (timeout word, keys, the pop's command, reply shape | None), kind)
COMMANDS = {
    b"BLPOP": (-3, _keys_then_timeout(b"LMPOP", b"LEFT"), deque),
    b"BRPOP": (-3, _keys_then_timeout(b"LMPOP", b"RIGHT"), deque),
    b"BLMOVE": (6, _moves, deque),
    b"BRPOPLPUSH": (4, _moves, deque),
    b"BLMPOP": (-5, _timeout_first(b"LMPOP"), deque),
    b"BZPOPMIN": (-3, _keys_then_timeout(b"ZMPOP", b"MIN"), ZSet),
    b"BZPOPMAX": (-3, _keys_then_timeout(b"ZMPOP", b"MAX"), ZSet),
    b"BZMPOP": (-5, _timeout_first(b"ZMPOP"), ZSet),
}


class Attempt:
    """The token of a blocked client's pop in flight (its reply comes back to `Blocked`)."""

    __slots__ = ("waiter",)

    def __init__(self, waiter: "Waiter"):
        self.waiter = waiter


@dataclass(eq=False)
class Waiter:
    token: object  # the client's
    keys: tuple
    pop: list  # the non-blocking command
    shape: object  # reply -> the blocking command's reply (None: as it is)
    kind: type  # the value type that wakes it
    deadline_ms: int | None  # None: forever
    order: int
    in_flight: bool = False
    touched: bool = False  # a write to its keys was applied while its pop was in flight


class Blocked:
    """The clients blocked at this member, by key (oldest first), and their pops in flight."""

    def __init__(self):
        self.by_key: dict[bytes, deque] = {}  # key -> blocked Waiters, oldest first
        self.waiters: dict[int, Waiter] = {}  # every Waiter, blocked or with its pop in flight
        self.written: list[bytes] = []  # keys of blocked clients written since `woken` last ran
        self.watched: dict[bytes, int] = {}  # key -> Waiters (blocked or in flight) on it
        self._orders = itertools.count()

    def start(self, token, args: list[bytes], now_ms: int):
        """A blocking command: the Waiter whose pop to send, or an Error reply."""
        _, parse, kind = COMMANDS[args[0].upper()]
        timeout_word, keys, pop, shape = parse(args)
        deadline = parse_timeout(timeout_word, now_ms)
        if type(deadline) is Error:
            return deadline
        waiter = Waiter(token, tuple(dict.fromkeys(keys)), pop, shape, kind, deadline, next(self._orders),
                        in_flight=True)
        self.waiters[waiter.order] = waiter
        for key in waiter.keys:
            self.watched[key] = self.watched.get(key, 0) + 1
        return waiter

    def answered(self, waiter: Waiter, reply, now_ms: int, gone):
        """The pop of `waiter` was answered: ANSWER (reply the client `reply`), AGAIN (send the
        pop again) or WAIT (blocked); `reply` is the client's reply for ANSWER."""
        waiter.in_flight = False
        if reply is not None and reply is not NULL_ARRAY:  # popped, or an error (BRPOPLPUSH's destination of another type)
            self._forget(waiter)
            if type(reply) is not Error and waiter.shape is not None:
                reply = waiter.shape(reply)
            return ANSWER, reply
        if gone(waiter.token):
            self._forget(waiter)
            return WAIT, None
        if waiter.deadline_ms is not None and now_ms >= waiter.deadline_ms:
            self._forget(waiter)
            return ANSWER, NULL_ARRAY  # timed out: Redis's null array
        if waiter.touched:
            waiter.touched = False
            waiter.in_flight = True
            return AGAIN, None
        for key in waiter.keys:
            self.by_key.setdefault(key, deque()).append(waiter)
        return WAIT, None

    def touch(self, keys, value_of) -> None:
        """An entry applied here wrote `keys` (`value_of(key)`: what each holds now): a pop in
        flight on a key now holding its type will be sent again if it finds nothing; blocked
        clients on it are woken by `woken`."""
        watched = self.watched
        for key in keys:
            if key not in watched:
                continue
            value = value_of(key)
            if value is None:
                continue
            for waiter in self.waiters.values():
                if waiter.in_flight and type(value) is waiter.kind and key in waiter.keys:
                    waiter.touched = True
            if key in self.by_key:
                self.written.append(key)

    def woken(self, value_of, gone) -> list[Waiter]:
        """The blocked clients to send their pop again: on each key written since the last call
        that now holds a value of their type, the oldest ones, as many as it holds elements."""
        out = []
        keys, self.written = self.written, []
        for key in dict.fromkeys(keys):
            queue = self.by_key.get(key)
            value = value_of(key)
            room = len(value) if queue and value is not None else 0
            for waiter in list(queue or ()):
                if room <= 0:
                    break
                if type(value) is not waiter.kind:
                    continue
                if gone(waiter.token):
                    self._forget(waiter)
                    continue
                self._unqueue(waiter)
                waiter.in_flight = True
                out.append(waiter)
                room -= 1
        return out

    def expired(self, now_ms: int, gone) -> list:
        """The tokens of blocked clients past their deadline (to answer a null array); they and the
        clients gone are forgotten."""
        out = []
        for waiter in list(self.waiters.values()):
            if waiter.in_flight:
                continue
            if gone(waiter.token):
                self._forget(waiter)
            elif waiter.deadline_ms is not None and now_ms >= waiter.deadline_ms:
                self._forget(waiter)
                out.append(waiter.token)
        return out

    def _unqueue(self, waiter: Waiter) -> None:
        for key in waiter.keys:
            queue = self.by_key.get(key)
            if queue is not None and waiter in queue:
                queue.remove(waiter)
                if not queue:
                    del self.by_key[key]

    def _forget(self, waiter: Waiter) -> None:
        self._unqueue(waiter)
        if self.waiters.pop(waiter.order, None) is not None:
            for key in waiter.keys:
                n = self.watched[key] - 1
                if n:
                    self.watched[key] = n
                else:
                    del self.watched[key]


ANSWER, AGAIN, WAIT = range(3)
