"""Control messages between the coordinator and the members (docs/protocol.md, "Control
messages"): typed, with one encoder and one decoder. Each travels as a RESP command on the
receiver's port, authenticated as catena's own user (the cluster secret):

    coordinator -> member   MEMBER.VIEW chain_id epoch learner|- member ...
                            MEMBER.PROBE epoch nonce grant        (answered [incarnation, liveness-port])
                            MEMBER.REVOKE epoch
    member -> coordinator   MASTER.REGISTER host port [incarnation [cluster-id epoch]]
                            MASTER.CAUGHT_UP chain_id epoch learner   (the tail: its learner caught up)

`encode(msg)` is the command's words; `decode(args)` the message, or ValueError saying what is
wrong (the handler answers it as `-ERR …` and changes nothing). `encode_answer`/`decode_answer`
do the same for MEMBER.PROBE's answer (ProbeAnswer).
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


class ProbeAnswer(NamedTuple):
    """A member's answer to MEMBER.PROBE: this process's incarnation (a restart shows as a new
    one) and the UDP port of its liveness responder (0: none)."""
    incarnation: str
    liveness_port: int = 0


class MemberRevoke(NamedTuple):
    """The coordinator is about to replace the view of `epoch`: give the read lease back."""
    epoch: int


class MasterRegister(NamedTuple):
    """A member started with --coordinator announces this incarnation of itself."""
    member: str  # host:port
    incarnation: str = "0"
    cluster_id: str = ""
    epoch: int = 0  # the newest epoch the member has seen


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
        return [b"MASTER.REGISTER", host, port, msg.incarnation, msg.cluster_id, msg.epoch]
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
        _arity(words, 3, 6)
        member = address(words[1], words[2])
        epoch = _count(words[5], "epoch") if len(words) > 5 else 0
        return MasterRegister(member, words[3] if len(words) > 3 else "0", words[4] if len(words) > 4 else "", epoch)
    if name == b"MASTER.CAUGHT_UP":
        _arity(words, 4, 4)
        return MasterCaughtUp(_count(words[1], "chain id"), _count(words[2], "epoch"), words[3])
    raise ValueError(f"not a control message: {words[0]!r}")


def encode_answer(answer: ProbeAnswer) -> list:
    """MEMBER.PROBE's reply: [incarnation, liveness-port]."""
    return [answer.incarnation, answer.liveness_port]


def decode_answer(reply) -> ProbeAnswer:
    """A MEMBER.PROBE reply as a ProbeAnswer; a bare incarnation (a member from before the
    liveness responder) has no liveness port. ValueError for anything else."""
    if isinstance(reply, list):
        if len(reply) != 2:
            raise ValueError(f"bad MEMBER.PROBE answer {reply!r}")
        incarnation, port = reply
    else:
        incarnation, port = reply, 0
    if isinstance(incarnation, bytes):
        incarnation = incarnation.decode(errors="replace")
    if isinstance(port, bytes):
        port = port.decode(errors="replace")
    if not isinstance(port, int) and not str(port).isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"bad liveness port {port!r} in a MEMBER.PROBE answer")
    return ProbeAnswer(str(incarnation), int(port))


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
