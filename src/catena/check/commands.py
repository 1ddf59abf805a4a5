"""A sequential model of one key under any deterministic single-key command (`CommandModel`).

Where `RegisterModel` knows get/set/del/incr/cas by heart, this model's specification is the
store's own: a step puts the key's value into a scratch `KVState`, runs the command through the
path the chain runs it on (`ops.to_op` then `KVState.apply` for a write, `ops.read` for a read)
and compares the reply. Those semantics are checked against redis-server by the chain fuzzer,
so a history of hashes, lists, sets, sorted sets or strings is checked against Redis's meaning.

An operation's `kind` is the command name in lower case and its `arg` the arguments after the
key, as bytes. Only deterministic, time-independent, single-key commands belong here (no SPOP,
no *RANDMEMBER, no TTLs, nothing naming a second key). Replies whose order Redis leaves open
(HGETALL, HKEYS, HVALS, SMEMBERS) are compared in a canonical order.

The state is a hashable encoding of the value (None while the key is absent), so the search's
cache can hold it; steps are memoised, since the search tries the same step many times.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Hashable

from catena.chain import ops
from catena.chain.state import KVState
from catena.chain.zset import ZSet
from catena.check.history import Operation

_UNORDERED = {b"HKEYS", b"HVALS", b"SMEMBERS"}
_PAIRED = {b"HGETALL"}  # flat field/value lists, unordered by pair


def encode(value: Any) -> Hashable:
    """A key's value (bytes, dict, set, deque or ZSet) as a hashable canonical state."""
    if value is None or type(value) is bytes:
        return value
    if type(value) is dict:
        return ("hash", frozenset(value.items()))
    if type(value) is set:
        return ("set", frozenset(value))
    if type(value) is deque:
        return ("list", tuple(value))
    if type(value) is ZSet:
        return ("zset", frozenset(value.scores.items()))
    raise TypeError(f"no encoding for {type(value).__name__}")


def decode(state: Hashable) -> Any:
    """A fresh value for `state` (the inverse of `encode`)."""
    if state is None or type(state) is bytes:
        return state
    kind, body = state
    if kind == "hash":
        return dict(body)
    if kind == "set":
        return set(body)
    if kind == "list":
        return deque(body)
    return ZSet(body)


def canonical(name: bytes, reply: Any) -> Any:
    """A reply as compared: arrays as lists (a forwarded reply comes back as a tuple), unordered
    ones sorted."""
    if type(reply) in (list, tuple):
        reply = list(reply)
        if name in _UNORDERED:
            return sorted(reply)
        if name in _PAIRED:
            return sorted(zip(reply[0::2], reply[1::2]))
    return reply


class CommandModel:
    """One key, any deterministic single-key command, with the store's own semantics."""

    def __init__(self) -> None:
        self._scratch = KVState()
        self._memo: dict[tuple, tuple[Any, Hashable]] = {}

    @staticmethod
    def init() -> Hashable:
        return None

    def run(self, state: Hashable, name: bytes, key: bytes, arg: tuple) -> tuple[Any, Hashable]:
        """(reply, state after) of the command `name key *arg` on a key in `state`."""
        memo_key = (state, name, key, arg)
        done = self._memo.get(memo_key)
        if done is not None:
            return done
        kv, args = self._scratch, [name, key, *arg]
        if state is not None:
            kv.put(key, decode(state))
        if name in ops.WRITES:
            op = ops.to_op(args, 0)
            reply = op if type(op) is not tuple else kv.apply(op, 0)
        else:
            reply = ops.read(kv, args, 0)
        done = (canonical(name, reply), encode(kv.get(key, 0)))
        kv.drop(key)
        self._memo[memo_key] = done
        return done

    def step(self, state: Hashable, op: Operation) -> tuple[bool, Hashable]:
        name = op.kind.upper().encode()
        reply, after = self.run(state, name, _bytes(op.key), tuple(op.arg or ()))
        return (not op.known or canonical(name, op.result) == reply), after

    @staticmethod
    def prepare(ops_of_key: list[Operation]) -> list[Operation]:
        """Drop reads of unknown outcome: they change nothing and constrain nothing."""
        return [op for op in ops_of_key if op.known or op.kind.upper().encode() not in ops.READS]

    @staticmethod
    def describe(state: Hashable) -> str:
        return "absent" if state is None else repr(state)


def _bytes(key: bytes | str) -> bytes:
    return key.encode() if type(key) is str else key
