"""Linearizability checking of a recorded history, per key.

Linearizability is local (Herlihy & Wing's P-compositionality), so the history is split by key
and each key's operations are checked on their own against a sequential model of one register.

Each key is checked with the Wing & Gong search as improved by Lowe, in the shape porcupine's
`checkSingle` gives it: the calls and returns of all operations are sorted by time into one
doubly linked list; the search walks it, "lifting" a call (and its return) out of the list when
the model accepts the operation in the current state, and backtracking when it meets the return
of an operation it has not placed yet (that operation had to take effect before it returned).
A cache of (set of placed operations, model state) pairs already explored keeps the search
from doing the same work twice, which makes mostly sequential histories nearly linear.

Operations of unknown outcome (timeouts) are what makes such searches blow up, since each one
may be placed anywhere after its call. Here they are tried only when no known operation can
come next, and an operation placed right after one of them is not explored further when it
would leave the same state without it (a later blind write hides an earlier one). Both prune
only orders that another branch of the search covers, so the verdict is unchanged.

Conventions:
- Two operations are concurrent when one's call is at or before the other's return: a return
  and a call at the same instant overlap (as in porcupine).
- An operation of unknown outcome (`ret` is `math.inf` or None) may take effect at any moment
  after its call, with any result, or never.
- The search counts its steps and gives up after `max_steps`, returning `ok=None`.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Hashable, Iterable, Protocol

from catena.check.history import Operation

DEFAULT_MAX_STEPS = 5_000_000

# How many operations of the longest linearizable prefix an explanation shows.
_SHOWN_PREFIX = 6
_SHOWN_PENDING = 6


class Model(Protocol):
    """A sequential specification of the object stored under one key."""

    def init(self) -> Hashable:
        """The state before any operation."""

    def step(self, state: Hashable, op: Operation) -> tuple[bool, Hashable]:
        """Whether `op` may take effect in `state` with its result, and the state after.

        For an operation of unknown outcome (`not op.known`) the result is not to be checked.
        """

    def prepare(self, ops: list[Operation]) -> list[Operation]:
        """Simplify one key's operations without changing the verdict (optional)."""

    def describe(self, state: Hashable) -> str:
        """A short text for a state, for explanations."""


def _norm(value: Any) -> Any:
    """The bytes a value is stored as: ints and str are encoded as the store would."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return str(value).encode()
    if isinstance(value, str):
        return value.encode()
    return value


def _as_int(value: Any) -> int | None:
    if value is None:
        return 0
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


class RegisterModel:
    """One key of the store: absent (None) or a value, with get/set/del/incr/cas.

    Values are compared as the bytes the store keeps, so 5, "5" and b"5" are the same value.
    """

    @staticmethod
    def init() -> Hashable:
        return None

    @staticmethod
    def step(state: Hashable, op: Operation) -> tuple[bool, Hashable]:
        kind, known = op.kind, op.known
        if kind == "get":
            return (not known or _norm(op.result) == state), state
        if kind == "set":
            return True, _norm(op.arg)
        if kind == "del":
            removed = 0 if state is None else 1
            return (not known or _as_int(op.result) == removed), None
        if kind == "incr":
            current = _as_int(state)
            if current is None:
                return False, state
            new = current + (1 if op.arg is None else op.arg)
            return (not known or _as_int(op.result) == new), _norm(new)
        if kind == "cas":
            expected, new = op.arg
            swapped = state == _norm(expected)
            after = _norm(new) if swapped else state
            return (not known or bool(op.result) == swapped), after
        raise ValueError(f"unknown operation kind {kind!r}")

    @staticmethod
    def prepare(ops: list[Operation]) -> list[Operation]:
        """Drop operations of unknown outcome that cannot change the verdict.

        Every pending operation widens the search, so this matters for histories with
        timeouts: an unknown get has no effect, and an unknown set whose value nothing on the
        key could observe (no get returned it, no cas expected it, and no del, cas or incr
        could tell that the key held something) may as well never have happened.
        """
        kinds = {op.kind for op in ops}
        blind = not kinds & {"del", "cas", "incr"}
        observed = {_norm(op.result) for op in ops if op.kind == "get" and op.known}
        kept = []
        for op in ops:
            if not op.known:
                if op.kind == "get":
                    continue
                if op.kind == "set" and blind and _norm(op.arg) not in observed:
                    continue
            kept.append(op)
        return kept

    @staticmethod
    def describe(state: Hashable) -> str:
        return "absent" if state is None else repr(state)


@dataclass(frozen=True)
class CheckResult:
    """The verdict: `ok` is True, False, or None when the search gave up.

    When `ok` is not True, `key` names the key that failed (or the first one left undecided)
    and `explanation` says why in a few lines; `linearization` holds the longest linearizable
    prefix found for that key and `blocked` the operation that could not be placed after it.
    """

    ok: bool | None
    key: bytes | str | None = None
    explanation: str = ""
    linearization: tuple[Operation, ...] = ()
    blocked: Operation | None = None
    steps: int = 0

    def __str__(self) -> str:
        if self.ok:
            return f"linearizable ({self.steps} steps)"
        return self.explanation


def check(
    history_ops: Iterable[Operation],
    model: Model | type = RegisterModel,
    max_steps: int = DEFAULT_MAX_STEPS,
) -> CheckResult:
    """Check that the operations are linearizable, key by key, within `max_steps` in all."""
    by_key: dict[Any, list[Operation]] = defaultdict(list)
    for op in history_ops:
        if op.known and op.ret < op.call:
            raise ValueError(f"operation returns before its call: {op}")
        by_key[_norm(op.key)].append(op)
    # Small keys first: a cheap violation is found even when a large key would use the budget.
    order = sorted(by_key, key=lambda k: (len(by_key[k]), repr(k)))
    steps = 0
    undecided: list[CheckResult] = []
    for key in order:
        prepare = getattr(model, "prepare", None)
        ops = prepare(by_key[key]) if prepare else by_key[key]
        result = _check_key(by_key[key][0].key, ops, model, max_steps - steps)
        steps += result.steps
        if result.ok is False:
            return dataclasses.replace(result, steps=steps)
        if result.ok is None:
            undecided.append(result)
    if undecided:
        first = undecided[0]
        others = f" ({len(undecided) - 1} other keys undecided too)" if len(undecided) > 1 else ""
        return dataclasses.replace(first, explanation=first.explanation + others, steps=steps)
    return CheckResult(ok=True, steps=steps)


def _check_key(key: Any, ops: list[Operation], model: Model | type, budget: int) -> CheckResult:
    """The Wing & Gong / Lowe search over one key's operations.

    Operations of known outcome sit in the main list as a call and a return node. Those of
    unknown outcome have no return (they never force anything) and sit in a list of their own,
    by call time; they are tried only after every known call that could come next, and only
    those called before the first return still in the main list.
    """
    n = len(ops)
    events = []
    for i, op in enumerate(ops):
        events.append((op.call, 0, i))
        if op.known:
            events.append((op.ret, 1, i))
    events.sort()
    # Nodes 1.. are the events in time order; node 0 is the head of both lists; -1 ends a list.
    size = len(events) + 1
    nxt, prv = [-1] * size, [-1] * size  # the main list
    unxt, uprv = [-1] * size, [-1] * size  # the list of calls of unknown outcome
    op_of = [0] * size
    match = [-1] * size  # a known call's return node; -1 elsewhere
    call_node = [0] * n
    last, ulast = 0, 0
    for node, (_, is_return, i) in enumerate(events, start=1):
        op_of[node] = i
        if is_return:
            match[call_node[i]] = node
        else:
            call_node[i] = node
        if ops[i].known:
            nxt[last], prv[node], last = node, last, node
        else:
            unxt[ulast], uprv[node], ulast = node, ulast, node

    step = model.step
    state = model.init()
    placed = 0  # bit i set when operation i is in the linearization
    remaining = sum(op.known for op in ops)
    cache: set[tuple[int, Hashable]] = set()
    # The placements so far, newest first, as a linked list of (call node, state before it,
    # limit, rest); limit is 0 for a known operation, else the return node that bounded the
    # choice of unknown ones. A snapshot of it for the explanation costs nothing.
    calls: tuple | None = None
    depth = 0
    best: tuple[int, tuple | None, int, Hashable, tuple[int, ...]] | None = None
    steps = 0
    entry, limit, in_unknown = nxt[0], 0, False
    while remaining:
        if steps >= budget:
            return CheckResult(
                ok=None,
                key=key,
                explanation=f"key {key!r}: gave up after {steps} steps "
                f"({depth} of {n} operations placed)",
                steps=steps,
            )
        steps += 1
        if in_unknown:
            candidate = entry != -1 and entry < limit
        elif match[entry] == -1:
            # The first return still in the list: now the unknown calls made before it.
            entry, limit, in_unknown = unxt[0], entry, True
            continue
        else:
            candidate = True
        if candidate:
            i = op_of[entry]
            accepted, new_state = step(state, ops[i])
            if accepted and calls is not None and calls[2]:
                accepted = not _absorbs(step, calls[1], ops[i], new_state)
            if accepted:
                new_placed = placed | (1 << i)
                seen = (new_placed, new_state)
                if seen not in cache:
                    cache.add(seen)
                    calls = (entry, state, limit if in_unknown else 0, calls)
                    depth += 1
                    state, placed = new_state, new_placed
                    if in_unknown:
                        uprv[unxt[entry]] = uprv[entry]
                        unxt[uprv[entry]] = unxt[entry]
                    else:
                        remaining -= 1
                        # lift the call and its return out of the list
                        ret_node = match[entry]
                        nxt[prv[entry]] = nxt[entry]
                        prv[nxt[entry]] = prv[entry]
                        nxt[prv[ret_node]] = nxt[ret_node]
                        if nxt[ret_node] != -1:
                            prv[nxt[ret_node]] = prv[ret_node]
                    entry, in_unknown = nxt[0], False
                    continue
            entry = unxt[entry] if in_unknown else nxt[entry]
            continue
        # Nothing more can come before the return at `limit`: undo the last placement. (The
        # explanation shows the deepest such point reached by placing a known operation.)
        if best is None or depth > best[0] and (calls is None or not calls[2]):
            pending = _pending(nxt, unxt, op_of, limit)
            best = (depth, calls, op_of[limit], state, pending)
        if calls is None:
            break
        entry, state, frame_limit, calls = calls
        depth -= 1
        placed ^= 1 << op_of[entry]
        if frame_limit:
            if unxt[entry] != -1:
                uprv[unxt[entry]] = entry
            unxt[uprv[entry]] = entry
            entry, limit = unxt[entry], frame_limit
        else:
            remaining += 1
            ret_node = match[entry]
            if nxt[ret_node] != -1:
                prv[nxt[ret_node]] = ret_node
            nxt[prv[ret_node]] = ret_node
            prv[nxt[entry]] = entry
            nxt[prv[entry]] = entry
            entry, in_unknown = nxt[entry], False
    else:
        return CheckResult(ok=True, steps=steps)
    return _failure(key, ops, model, op_of, best, steps)


def _absorbs(step: Any, before: Hashable, op: Operation, after: Hashable) -> bool:
    """Whether `op`, placed right after an operation of unknown outcome, would be placed as
    well, with the same state after, without it (from `before`, the state that one started
    from). If so the search need not go on from here: what follows can follow that shorter
    placement too, and an operation of unknown outcome need never be placed.
    """
    accepted, alone = step(before, op)
    return accepted and alone == after


def _pending(nxt: list[int], unxt: list[int], op_of: list[int], limit: int) -> tuple[int, ...]:
    """The operations not placed yet that were called before the return node `limit`."""
    found = []
    for links in (nxt, unxt):
        node = links[0]
        while node != -1 and node < limit and len(found) < _SHOWN_PENDING:
            found.append(op_of[node])
            node = links[node]
    return tuple(found)


def _failure(
    key: Any, ops: list[Operation], model: Model | type, op_of: list[int], best: Any, steps: int
) -> CheckResult:
    """Replay the longest linearizable prefix found and explain where it got stuck."""
    depth, calls, blocked_i, state, pending = best
    prefix: list[Operation] = []
    while calls is not None:
        node, _, _, calls = calls
        prefix.append(ops[op_of[node]])
    prefix.reverse()
    blocked = ops[blocked_i]
    lines = [
        f"key {key!r} is not linearizable: after a linearizable prefix of {depth} of "
        f"{len(ops)} operations (value then {model.describe(state)}), this operation "
        f"cannot take effect before it returned:",
        f"  {blocked}",
    ]
    if prefix:
        shown = prefix[-_SHOWN_PREFIX:]
        lines.append(f"last {len(shown)} operations of the prefix:")
        lines += [f"  {op}" for op in shown]
    others = [ops[i] for i in pending if i != blocked_i]
    if others:
        lines.append("other operations that could take effect there:")
        lines += [f"  {op}" for op in others]
    return CheckResult(
        ok=False,
        key=key,
        explanation="\n".join(lines),
        linearization=tuple(prefix),
        blocked=blocked,
        steps=steps,
    )
