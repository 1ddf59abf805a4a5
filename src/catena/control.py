"""Control messages between the coordinator and the members (docs/protocol.md, "Control
messages"): typed, with one encoder and one decoder. Each travels as a RESP command on the
receiver's port, authenticated as catena's own user (the cluster secret):

    coordinator -> member   MEMBER.VIEW chain_id epoch learner|- member ...
                            MEMBER.PROBE epoch nonce grant        (answered [incarnation, liveness-port,
                                                                   and a link report: epoch stalled heard lost])
                            MEMBER.REVOKE epoch
    member -> coordinator   MASTER.REGISTER host port [incarnation [cluster-id epoch]]
                            MASTER.CAUGHT_UP chain_id epoch learner   (the tail: its learner caught up)

`encode(msg)` is the command's words; `decode(args)` the message, or ValueError saying what is
wrong (the handler answers it as `-ERR …` and changes nothing). `encode_answer`/`decode_answer`
do the same for MEMBER.PROBE's answer (ProbeAnswer, with the member's LinkReport).
"""

from __future__ import annotations

from typing import NamedTuple

from catena.view import View


class MemberView(NamedTuple):
    """The coordinator pushes a saved view."""
    view: View


class MemberProbe(NamedTuple):
    """The coordinator's health probe; `grant` names the probe whose timely answer earned a read lease."""
    epoch: int
    nonce: int
    grant: int


class LinkReport(NamedTuple):
    """A member's word on its links under view `epoch` (docs/protocol.md, "Link reports"):
    `stalled`, (peer, ms, pending) for each peer it waits on (its successor's acks, the head's
    replies to forwarded writes, the tail's to forwarded reads) that made no progress for ms
    with `pending` outstanding; `heard`, (peer, ms) since bytes last arrived from each peer that
    opened a link to it; `lost`, the chain members its membership layer no longer sees alive."""
    epoch: int
    stalled: tuple[tuple[str, int, int], ...] = ()
    heard: tuple[tuple[str, int], ...] = ()
    lost: tuple[str, ...] = ()


class Slowness(NamedTuple):
    """How slow a member has been lately: its longest event-loop turn over the last ~2 s and its
    slowest fsync since its last probe answer (one still running counts its age), in ms."""
    turn_ms: int = 0
    fsync_ms: int = 0


class ProbeAnswer(NamedTuple):
    """A member's answer to MEMBER.PROBE: this process's incarnation (a restart shows as a new
    one), the UDP port of its liveness responder (0: none), its link report and its slowness
    (None: a member from before them)."""
    incarnation: str
    liveness_port: int = 0
    links: LinkReport | None = None
    slow: Slowness | None = None


class MemberRevoke(NamedTuple):
    """The coordinator is about to replace the view of `epoch`: give the read lease back."""
    epoch: int


class MasterRegister(NamedTuple):
    """A member started with --coordinator announces this incarnation of itself."""
    member: str  # host:port
    incarnation: str = "0"
    cluster_id: str = ""
    epoch: int = 0  # the newest epoch the member has seen
    chain_id: int = 0  # the chain it registers into (`catena member --chain`)


class MasterCaughtUp(NamedTuple):
    """The tail of view `epoch`: its learner holds its history (promote it)."""
    chain_id: int
    epoch: int
    learner: str


Message = MemberView | MemberProbe | MemberRevoke | MasterRegister | MasterCaughtUp


def encode(msg: Message) -> list:
    """The RESP command (name first) that carries `msg`."""
    if isinstance(msg, MemberView):
        return [b"MEMBER.VIEW", *msg.view.words()]
    if isinstance(msg, MemberProbe):
        return [b"MEMBER.PROBE", msg.epoch, msg.nonce, msg.grant]
    if isinstance(msg, MemberRevoke):
        return [b"MEMBER.REVOKE", msg.epoch]
    if isinstance(msg, MasterRegister):
        host, port = msg.member.rsplit(":", 1)
        chain = [msg.chain_id] if msg.chain_id else []  # chain 0 in the words a coordinator without chains knows
        return [b"MASTER.REGISTER", host, port, msg.incarnation, msg.cluster_id, msg.epoch, *chain]
    if isinstance(msg, MasterCaughtUp):
        return [b"MASTER.CAUGHT_UP", msg.chain_id, msg.epoch, msg.learner]
    raise TypeError(f"not a control message: {msg!r}")


def decode(args: list[bytes]) -> Message:
    """The message a command's words (name first) carry; ValueError for bad words."""
    name, words = args[0].upper(), [a.decode(errors="replace") if isinstance(a, bytes) else str(a) for a in args]
    if name == b"MEMBER.VIEW":
        return MemberView(View.from_words(args[1:]))
    if name == b"MEMBER.PROBE":
        _arity(words, 4, 4)
        return MemberProbe(_count(words[1], "epoch"), _count(words[2], "nonce"), _count(words[3], "grant"))
    if name == b"MEMBER.REVOKE":
        _arity(words, 2, 2)
        return MemberRevoke(_count(words[1], "epoch"))
    if name == b"MASTER.REGISTER":
        _arity(words, 3, 7)
        member = address(words[1], words[2])
        epoch = _count(words[5], "epoch") if len(words) > 5 else 0
        chain = _count(words[6], "chain id") if len(words) > 6 else 0
        return MasterRegister(member, words[3] if len(words) > 3 else "0", words[4] if len(words) > 4 else "", epoch,
                              chain)
    if name == b"MASTER.CAUGHT_UP":
        _arity(words, 4, 4)
        return MasterCaughtUp(_count(words[1], "chain id"), _count(words[2], "epoch"), words[3])
    raise ValueError(f"not a control message: {words[0]!r}")


def encode_answer(answer: ProbeAnswer) -> list:
    """MEMBER.PROBE's reply: [incarnation, liveness-port] and, with a link report, its epoch,
    [peer ms pending ...] stalled, [peer ms ...] heard and [member ...] lost; then, with them,
    the slowness: turn-ms fsync-ms."""
    out = [answer.incarnation, answer.liveness_port]
    if answer.links is not None:
        r = answer.links
        out += [r.epoch, [w for row in r.stalled for w in row], [w for row in r.heard for w in row], list(r.lost)]
        if answer.slow is not None:
            out += list(answer.slow)
    return out


def decode_answer(reply) -> ProbeAnswer:
    """A MEMBER.PROBE reply as a ProbeAnswer; a bare incarnation (a member from before the
    liveness responder) has no liveness port, a pair no link report. ValueError for anything else."""
    links = slow = None
    if isinstance(reply, list):
        if len(reply) not in (2, 6, 8):
            raise ValueError(f"bad MEMBER.PROBE answer {reply!r}")
        incarnation, port = reply[:2]
        if len(reply) >= 6:
            links = _decode_links(reply[2:6])
        if len(reply) == 8:
            slow = Slowness(_number(reply[6], "turn ms"), _number(reply[7], "fsync ms"))
    else:
        incarnation, port = reply, 0
    if isinstance(incarnation, bytes):
        incarnation = incarnation.decode(errors="replace")
    if isinstance(port, bytes):
        port = port.decode(errors="replace")
    if not isinstance(port, int) and not str(port).isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"bad liveness port {port!r} in a MEMBER.PROBE answer")
    return ProbeAnswer(str(incarnation), int(port), links, slow)


def _decode_links(words: list) -> LinkReport:
    epoch, stalled, heard, lost = words
    if not all(isinstance(w, list) for w in (stalled, heard, lost)) or len(stalled) % 3 or len(heard) % 2:
        raise ValueError(f"bad link report {words!r} in a MEMBER.PROBE answer")
    text = [_text(w) for w in stalled[0::3]], [_text(w) for w in heard[0::2]]
    return LinkReport(_number(epoch, "epoch"),
                      tuple(zip(text[0], (_number(w, "ms") for w in stalled[1::3]),
                                (_number(w, "pending") for w in stalled[2::3]))),
                      tuple(zip(text[1], (_number(w, "ms") for w in heard[1::2]))),
                      tuple(_text(w) for w in lost))


def _text(word) -> str:
    return word.decode(errors="replace") if isinstance(word, bytes) else str(word)


def _number(word, what: str) -> int:
    if isinstance(word, int) and word >= 0:
        return word
    return _count(_text(word), what)


def address(host: str, port: str) -> str:
    """`host:port` from a command's two words; ValueError for a port that is not one."""
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"bad port {port!r}")
    return f"{host}:{int(port)}"


def _count(word: str, what: str) -> int:
    if not word.isdigit() or len(word) > 19:
        raise ValueError(f"bad {what} {word!r}: expected a non-negative integer")
    return int(word)


def _arity(words: list[str], least: int, most: int) -> None:
    if not least <= len(words) <= most:
        raise ValueError(f"wrong number of arguments for '{words[0].lower()}' command")
