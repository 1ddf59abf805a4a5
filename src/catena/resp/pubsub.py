"""Pub/Sub on a member: its subscribers, the (P)SUBSCRIBE family, PUBSUB, PUBLISH (shell side).

A PUBLISH is a write: it enters the chain at the head and is answered once committed
(`catena.chain.pubsub`); every member then delivers the committed message to its own
subscribers (`deliver`, for the replica's `Deliver` effect), in the chain's order. PUBLISH
answers how many clients of the member that answered it (the one the publisher is connected to)
received the message: subscribers at other members receive it too but are not counted. PUBSUB
CHANNELS/NUMSUB/NUMPAT likewise describe this member's subscribers.

A RESP2 client with a subscription may run only (P)SUBSCRIBE, (P)UNSUBSCRIBE, PING, QUIT and
RESET, as in Redis; after HELLO 3 messages come as push frames and any command may run.
"""

from __future__ import annotations

from typing import Callable

from catena.chain.glob import matcher as glob_matcher
from catena.resp.codec import Encoded, Error, Push, encode
from catena.resp.server import Deferred, Mapped

SUBSCRIBED_MODE = frozenset((b"SUBSCRIBE", b"PSUBSCRIBE", b"UNSUBSCRIBE", b"PUNSUBSCRIBE", b"SSUBSCRIBE",
                             b"SUNSUBSCRIBE", b"PING", b"QUIT", b"RESET"))


def restricted(client, name: bytes) -> Error | None:
    """Redis's refusal of `name` for a client with subscriptions (the table asks only for those)
    when it speaks RESP2, or None."""
    if not client.resp3 and name not in SUBSCRIBED_MODE:
        return Error(f"ERR Can't execute '{name.decode(errors='replace').lower()}': only (P|S)SUBSCRIBE / "
                     "(P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context")
    return None


class PubSub:
    """`submit(token, args)` runs PUBLISH at the replica; its reply resolves `token`."""

    def __init__(self, table, submit: Callable):
        self.submit = submit
        self.channels: dict[bytes, set] = {}  # channel -> clients
        self.patterns: dict[bytes, set] = {}  # pattern -> clients
        for name, fn, arity in ((b"SUBSCRIBE", self.subscribe, -2), (b"UNSUBSCRIBE", self.unsubscribe, -1),
                                (b"PSUBSCRIBE", self.psubscribe, -2), (b"PUNSUBSCRIBE", self.punsubscribe, -1),
                                (b"PUBLISH", self.publish, 3), (b"PUBSUB", self.pubsub, -2)):
            table.register(name, fn, arity)
        table.on_close.append(self.drop)
        table.on_reset.append(self.drop)

    # -- delivery --------------------------------------------------------------------------------

    def receivers(self, channel: bytes) -> list:
        """(client, frame) for every subscription of this member that `channel` reaches."""
        out = [(c, (b"message", channel)) for c in self.channels.get(channel, ())]
        for pattern, clients in self.patterns.items():
            if _matches(pattern, channel):
                out += [(c, (b"pmessage", pattern, channel)) for c in clients]
        return out

    def deliver(self, channel: bytes, message: bytes) -> int:
        receivers = self.receivers(channel)
        for client, head in receivers:
            client.push(Push((*head, message)))
        return len(receivers)

    def publish(self, client, args):
        """A write through the chain; answered with this member's receivers once committed."""
        reply = Deferred()
        channel = args[1]
        self.submit(Mapped(reply, lambda r: len(self.receivers(channel)) if r == 0 else r), list(args))
        return reply

    # -- subscriptions ---------------------------------------------------------------------------

    def subscribe(self, client, args):
        return self._add(client, args[1:], client.channels, self.channels, b"subscribe")

    def psubscribe(self, client, args):
        return self._add(client, args[1:], client.patterns, self.patterns, b"psubscribe")

    def unsubscribe(self, client, args):
        return self._remove(client, args[1:], client.channels, self.channels, b"unsubscribe")

    def punsubscribe(self, client, args):
        return self._remove(client, args[1:], client.patterns, self.patterns, b"punsubscribe")

    def _add(self, client, names, mine: set, index: dict, kind: bytes):
        frames = []
        for name in names:
            mine.add(name)
            index.setdefault(name, set()).add(client)
            frames.append(Push((kind, name, len(client.channels) + len(client.patterns))))
        return _frames(client, frames)

    def _remove(self, client, names, mine: set, index: dict, kind: bytes):
        names = list(names) or sorted(mine)
        frames = []
        for name in names:
            mine.discard(name)
            clients = index.get(name)
            if clients is not None:
                clients.discard(client)
                if not clients:
                    del index[name]
            frames.append(Push((kind, name, len(client.channels) + len(client.patterns))))
        if not frames:  # nothing to leave: one reply all the same
            frames.append(Push((kind, None, len(client.channels) + len(client.patterns))))
        return _frames(client, frames)

    def drop(self, client) -> None:
        """The connection ended (or RESET): forget its subscriptions."""
        for mine, index in ((client.channels, self.channels), (client.patterns, self.patterns)):
            for name in mine:
                clients = index.get(name)
                if clients is not None:
                    clients.discard(client)
                    if not clients:
                        del index[name]
            mine.clear()

    # -- PUBSUB ----------------------------------------------------------------------------------

    def pubsub(self, client, args):
        sub = args[1].upper()
        if sub == b"CHANNELS" and len(args) <= 3:
            pattern = args[2] if len(args) == 3 else None
            return [c for c in self.channels if pattern is None or _matches(pattern, c)]
        if sub == b"NUMSUB":
            return [w for c in args[2:] for w in (c, len(self.channels.get(c, ())))]
        if sub == b"NUMPAT" and len(args) == 2:
            return len(self.patterns)
        if sub in (b"SHARDCHANNELS", b"SHARDNUMSUB"):
            return []
        return Error(f"ERR unknown subcommand or wrong number of arguments for 'PUBSUB|{sub.decode(errors='replace')}'")


def _matches(pattern: bytes, channel: bytes) -> bool:
    match = glob_matcher(pattern)  # None: every channel; else a test (a match object or a bool)
    return match is None or bool(match(channel))


def _frames(client, frames: list):
    """Several replies to one command (one per channel), as Redis sends them."""
    if len(frames) == 1:
        return frames[0] if client.resp3 else list(frames[0].items)
    return Encoded(b"".join(encode(f if client.resp3 else list(f.items), client.resp3) for f in frames))
