"""PUBLISH as a chain entry: one total order of messages per chain.

    (PUBLISH, channel, message)

changes no key; every member delivers the message to its own subscribers once the entry is
committed (the replica emits `Deliver`), so a message reaches every member's subscribers in the
chain's order, and a subscriber that moves to another member after a failure misses none
published after it subscribed there. A PUBLISH inside EXEC is delivered with its transaction.
"""

from __future__ import annotations

from catena.chain import ops, state as kv, transactions

PUBLISH = 42


def messages(op) -> list:
    """The (channel, message) pairs an op publishes."""
    kind = op[0]
    if kind == PUBLISH:
        return [(op[1], op[2])]
    if kind == transactions.EXEC:
        return [(sub[1], sub[2]) for sub in op[2] if sub[0] == PUBLISH]
    return []


CARRIERS = frozenset((PUBLISH, transactions.EXEC))  # op kinds that may publish

kv.extend(PUBLISH, lambda state, op, ts: 0,
          lambda op: len(op) == 3 and type(op[1]) is bytes and type(op[2]) is bytes, lambda op: ())
ops.WRITES[b"PUBLISH"] = (3, lambda a, now: (PUBLISH, a[1], a[2]))
