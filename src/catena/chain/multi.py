"""MULTI, EXEC, DISCARD, WATCH and UNWATCH on a member's connections (shell side).

The connection's state (queued commands, a failed queuing, watched keys with their versions)
lives on its `Client`; the command table queues commands while a client is in MULTI. EXEC hands
the queued data commands to the replica as one `CATENA.EXEC` (or `CATENA.EXEC.RO` when all are
reads; see `catena.chain.transactions`) and answers their replies in order; commands that are
not data commands (PING, ECHO, CLIENT …) run here, at EXEC, and their replies take their places.
"""

from __future__ import annotations

import asyncio
from typing import Callable

from catena.chain import ops, resp3, transactions
from catena.resp.codec import NULL_ARRAY, OK, Error
from catena.resp.server import Deferred, Mapped

EXECABORT = Error("EXECABORT Transaction discarded because of previous errors.")


def _first_popped(reply):
    """LMPOP's [key, [value]] as BLPOP's [key, value] (nil stays nil)."""
    return [reply[0], reply[1][0]] if type(reply) in (list, tuple) else reply


def _first_zpopped(reply):
    """ZMPOP's [key, [[member, score]]] as BZPOPMIN's [key, member, score]."""
    return [reply[0], *reply[1][0]] if type(reply) in (list, tuple) else reply


def _mpop(name: bytes, side: bytes, reshape):
    """BLPOP k… timeout (and kin) as [L|Z]MPOP n k… side, one element."""
    return lambda c: ([name, b"%d" % (len(c) - 2), *c[1:-1], side], reshape)


# Inside MULTI a blocking command does not block: it runs as its non-blocking form, as in Redis
# (nil when there is nothing to pop). name -> command -> (non-blocking command, reshape reply | None)
NON_BLOCKING = {
    b"BLPOP": _mpop(b"LMPOP", b"LEFT", _first_popped),
    b"BRPOP": _mpop(b"LMPOP", b"RIGHT", _first_popped),
    b"BZPOPMIN": _mpop(b"ZMPOP", b"MIN", _first_zpopped),
    b"BZPOPMAX": _mpop(b"ZMPOP", b"MAX", _first_zpopped),
    b"BRPOPLPUSH": lambda c: ([b"RPOPLPUSH", *c[1:-1]], None),
    b"BLMOVE": lambda c: ([b"LMOVE", *c[1:-1]], None),
    b"BLMPOP": lambda c: ([b"LMPOP", *c[2:]], None),
    b"BZMPOP": lambda c: ([b"ZMPOP", *c[2:]], None),
}


def reset(client) -> None:
    """Leave MULTI and forget the watched keys (EXEC, DISCARD, RESET)."""
    client.multi, client.multi_failed = None, False
    client.watched.clear()


class Transactions:
    """`submit(token, args)` runs a data command at the replica; its reply resolves `token`."""

    def __init__(self, table, submit: Callable):
        self.table = table
        self.submit = submit
        for name, fn, arity, ordered in ((b"MULTI", self.multi, 1, False), (b"EXEC", self.exec, 1, True),
                                         (b"DISCARD", self.discard, 1, False), (b"WATCH", self.watch, -2, True),
                                         (b"UNWATCH", self.unwatch, 1, False)):
            table.register(name, fn, arity, ordered=ordered)
        table.on_reset.append(reset)

    @staticmethod
    def is_data(command) -> bool:
        name = command[0].upper()
        return (name in ops.WRITES or name in ops.READS) and name not in transactions.COMMANDS

    def multi(self, client, args):
        if client.multi is not None:
            return Error("ERR MULTI calls can not be nested")
        client.multi, client.multi_failed = [], False
        return OK

    def discard(self, client, args):
        if client.multi is None:
            return Error("ERR DISCARD without MULTI")
        reset(client)
        return OK

    def unwatch(self, client, args):
        client.watched.clear()
        return OK

    def watch(self, client, args):
        """Ask for the keys' versions as a read (committed ones: CRAQ), and remember them."""
        if client.multi is not None:
            return Error("ERR WATCH inside MULTI is not allowed")
        keys = list(dict.fromkeys(k for k in args[1:] if k not in client.watched))
        if not keys:
            return OK

        def watched(versions):
            if type(versions) not in (list, tuple):  # (a reply from another member is a tuple)
                return versions  # an error (say TRYAGAIN): nothing is watched
            for key, version in zip(keys, versions):
                client.watched.setdefault(key, version)
            return OK

        reply = Deferred()
        self.submit(Mapped(reply, watched), [transactions.VERSIONS, *keys])
        return reply

    def exec(self, client, args, rid: tuple = ()):
        """EXEC (`rid`: the words of a `CATENA.REQ id n [low]` it came with)."""
        if client.multi is None:
            return Error("ERR EXEC without MULTI")
        queued, failed, watched = client.multi, client.multi_failed, dict(client.watched)
        reset(client)
        if failed:
            return EXECABORT
        reshape, asked = {}, list(queued)  # `asked`: the commands as queued, for RESP3's shapes
        for i, command in enumerate(queued):
            translate = NON_BLOCKING.get(command[0].upper())
            if translate is not None:
                queued[i], fn = translate(command)
                if fn is not None:
                    reshape[i] = fn
        data = [command for command in queued if self.is_data(command)]
        local = {i: _settled(self.table.dispatch(client, command))
                 for i, command in enumerate(queued) if not self.is_data(command)}
        if not data and not watched:
            return [local[i] for i in range(len(queued))]

        def merged(replies):
            if replies is None:
                return NULL_ARRAY  # a watched key changed
            if type(replies) not in (list, tuple):
                return replies  # the transaction did not run (TRYAGAIN, a deadline …)
            it = iter(replies)
            merged = [local[i] if i in local else next(it) for i in range(len(queued))]
            for i, fn in reshape.items():
                merged[i] = fn(merged[i])
            if client.resp3:
                merged = [merged[i] if i in local else resp3.shaped(asked[i], merged[i]) for i in range(len(queued))]
            return merged

        reads_only = not any(ops.is_write(command) for command in data)
        name = transactions.EXEC_READS if reads_only else transactions.EXEC_CMD
        reply = Deferred()
        self.submit(Mapped(reply, merged), [*rid, name, *transactions.encode(watched, data)])
        return reply


def _settled(reply):
    """A local command's reply now (one that would come later has no place in EXEC's)."""
    if type(reply) is Deferred and reply.done:
        return reply.value
    if type(reply) is Deferred or isinstance(reply, asyncio.Future):
        if isinstance(reply, asyncio.Future):
            reply.cancel()
        return Error("ERR this command cannot run inside MULTI on catena")
    return reply
