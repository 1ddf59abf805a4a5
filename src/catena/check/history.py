"""A recorder of client operations, for the linearizability checker.

A test or the chaos tool calls `History.invoke` when a client sends a request and
`History.complete` when the reply arrives, both with the current time (virtual in the
simulator, monotonic seconds on real processes). An operation that certainly did not take
effect (refused before it reached the chain) is dropped with `History.fail`; one whose fate is
unknown (a timeout, a lost connection) is simply left open: the checker then lets it take
effect at any moment after its call, or never.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Hashable

from catena.errors import LocalProtocolError


@dataclass(frozen=True)
class Operation:
    """One client operation on one key, with the interval in which it took effect.

    `arg` is what the operation writes: the value for "set", the increment for "incr"
    (None means 1), `(expected, new)` for "cas", None for "get" and "del", and for any other
    command (`CommandModel`) its arguments after the key as a tuple. `result` is what the
    store answered: the value (or None) for "get", the new integer for "incr", True/False for
    "cas", the number of keys removed for "del". `ret` is `math.inf` (or None) when the outcome
    is unknown; `result` is then ignored.
    """

    client: Hashable
    kind: str
    key: bytes | str
    arg: Any
    result: Any
    call: float
    ret: float | None

    @property
    def known(self) -> bool:
        """Whether the operation returned, so that its result is known."""
        return self.ret is not None and self.ret != math.inf

    def __str__(self) -> str:
        kind, arg = self.kind, self.arg
        if kind == "set":
            what = f"set {self.key!r} {arg!r}"
        elif kind == "cas":
            what = f"cas {self.key!r} {arg[0]!r} -> {arg[1]!r}"
        elif kind == "incr" and arg not in (None, 1):
            what = f"incr {self.key!r} by {arg!r}"
        elif type(arg) is tuple:  # a command's arguments after the key (CommandModel)
            what = " ".join([f"{kind} {self.key!r}", *(repr(a) for a in arg)])
        else:
            what = f"{kind} {self.key!r}"
        if self.known:
            interval = f"[{self.call:g}, {self.ret:g}]"
            return f"client {self.client!r}: {what} => {self.result!r}  {interval}"
        return f"client {self.client!r}: {what} => ?  [{self.call:g}, unknown]"


@dataclass
class _Open:
    client: Hashable
    kind: str
    key: bytes | str
    arg: Any
    call: float


class History:
    """Records invocations and their outcomes, in the order they happen."""

    def __init__(self) -> None:
        self._next_id = 0
        self._open: dict[int, _Open] = {}
        self._done: dict[int, Operation] = {}

    def invoke(self, client: Hashable, kind: str, key: bytes | str, arg: Any, now: float) -> int:
        """Record that `client` sent an operation at `now`; returns its id."""
        op_id = self._next_id
        self._next_id += 1
        self._open[op_id] = _Open(client, kind, key, arg, now)
        return op_id

    def complete(self, op_id: int, result: Any, now: float) -> None:
        """Record that the operation returned `result` at `now`."""
        pending = self._take(op_id, now)
        self._done[op_id] = Operation(
            pending.client, pending.kind, pending.key, pending.arg, result, pending.call, now
        )

    def fail(self, op_id: int, now: float) -> None:
        """Record that the operation certainly did not take effect: it is forgotten."""
        self._take(op_id, now)

    def operations(self) -> list[Operation]:
        """Every operation not failed, in invocation order; open ones end at `math.inf`."""
        ops = []
        for op_id in range(self._next_id):
            if op_id in self._done:
                ops.append(self._done[op_id])
            elif op_id in self._open:
                p = self._open[op_id]
                ops.append(Operation(p.client, p.kind, p.key, p.arg, None, p.call, math.inf))
        return ops

    def _take(self, op_id: int, now: float) -> _Open:
        pending = self._open.pop(op_id, None)
        if pending is None:
            raise LocalProtocolError(f"operation {op_id} is not open")
        if now < pending.call:
            raise LocalProtocolError(
                f"operation {op_id} ends at {now} before its call at {pending.call}"
            )
        return pending
