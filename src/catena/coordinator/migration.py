"""The move of one hash slot from a source chain to a target chain, as a pure machine
(docs/sharding.md §3). Not wired into the coordinator machine yet: it takes replies and `now`,
returns effects, and can be resumed from its saved intent by whoever drives it next.

Each phase is saved (`Save`, fenced by the shell) before its step is sent; a step is one or two
internal commands to a chain's head (`Call`), all idempotent, re-sent after RETRY_S without an
answer; a call keeps its token across re-sends, so the shell can send it under one request id
(CATENA.REQ) and a late first attempt is answered from the chain's dedup table. The phases:

    reset    target: CATENA.SLOTS s s none (only when a driver resumes a pre-copy: the keys an
             unfinished one wrote are unknown, so the copy starts again from an empty slot)
    clear    target: CATENA.CLEARSLOT s (the slot is none or given there)
    import   target: CATENA.SLOTS s s importing <source>
    precopy  source: CATENA.SLOTDUMP s, then target: CATENA.IMPORT s <its words>
    freeze   source: CATENA.SLOTS s s frozen
    copy     source: CATENA.SLOTDUMP s <the pre-copy's as-of seq>: the keys written since, then
             target: CATENA.IMPORT s <their words, and a deletion for each pre-copied key the
             source no longer holds>
    give     source: CATENA.SLOTS s s given <target>
    take     target: CATENA.SLOTS s s owned
    map      the slot map names the target (`SaveMap`)
    clean    source: CATENA.CLEARSLOT s
    done

A step the slot table refuses (`-ERR slot …`) before `give` undoes the move: `unfreeze`
(source: owned), `abort` (target: none), `drop` (target: CLEARSLOT), `undone`; a refused `clear`
changed nothing (undone at once), and an undo step refused had nothing to undo on its side. Any
other error (a chain reconfiguring, no answer) is retried; from `give` on the move only goes
forward, retrying.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

FORWARD = ("reset", "clear", "import", "precopy", "freeze", "copy", "give", "take", "map", "clean", "done")
UNDO = ("unfreeze", "abort", "drop", "undone")
FINAL = frozenset(("done", "undone"))
RETRY_S = 0.5
REFUSED = "ERR slot "  # the slot table refused a step (its other errors, a chain's TRYAGAIN, are retried)
NO_ANSWER = object()  # the shell's reply when a call failed on the way (connection, timeout)


@dataclass(frozen=True)
class Move:
    """The saved intent of a move: where it stands, and the keys the pre-copy wrote."""

    slot: int
    source: int
    target: int
    phase: str = "clear"
    copied: tuple[bytes, ...] = ()
    since: int | None = None  # the seq the pre-copy's dump held every write up to
    fence: int = 0  # the driving coordinator leader's: its slot ops carry it (0: none)


@dataclass(frozen=True)
class Save:
    move: Move  # save it (fenced); then call `on_saved`


@dataclass(frozen=True)
class Call:
    token: int
    chain: int
    words: tuple  # to the chain's head; its reply goes to `on_reply(token, …)`


@dataclass(frozen=True)
class SaveMap:
    slot: int
    chain: int  # the slot map gives `slot` to `chain` (fenced, versioned); then `on_saved`


@dataclass(frozen=True)
class Finished:
    move: Move  # done or undone: the intent may be deleted


def _error(reply) -> str | None:
    """The text of an error reply (the shell hands errors over as Exceptions), else None."""
    if reply is NO_ANSWER:
        return "TRYAGAIN no answer"
    return str(reply) if isinstance(reply, Exception) else None


def refused(error: str) -> bool:
    return error.startswith(REFUSED)


class Migration:
    def __init__(self, move: Move, now: float):
        self.move = move
        self.saving = False
        self.mapping = False  # the SaveMap of the `map` phase is under way (its intent was saved)
        self.calls: dict[int, tuple[float, int, tuple]] = {}  # token -> (sent at, chain, words)
        self._token = 0
        self.now = now
        self.dumped: tuple = (0, ())  # the last dump's (as-of seq, live keys)

    @classmethod
    def start(cls, slot: int, source: int, target: int, now: float, fence: int = 0) -> tuple["Migration", list]:
        m = cls(Move(slot, source, target, fence=fence), now)
        return m, m._enter(m.move)

    @classmethod
    def resume(cls, saved: Move, now: float, fence: int | None = None) -> tuple["Migration", list]:
        """A new driver (a new coordinator leader, with its own `fence`) goes on from the saved
        phase; its calls then refuse its predecessor's still on their way. A pre-copy starts
        again from `reset`: its predecessor's may have written keys no intent names."""
        m = cls(saved if fence is None else replace(saved, fence=fence), now)
        if saved.phase == "precopy":
            return m, m._enter(replace(m.move, phase="reset"))
        return m, m._step()

    @property
    def finished(self) -> bool:
        return self.move.phase in FINAL

    # -- inputs ------------------------------------------------------------------------------

    def on_saved(self, move: Move, now: float) -> list:
        if not self.saving or move != self.move:
            return []
        self.saving, self.now = False, now
        if move.phase == "map" and self.mapping:  # the map was saved: on to clean
            return self._enter(replace(move, phase="clean"))
        return self._step()

    def on_reply(self, token: int, reply, now: float) -> list:
        call = self.calls.pop(token, None)
        if call is None or self.saving:
            return []  # a second answer (to a re-sent call), or one from before a phase change
        self.now = now
        error = _error(reply)
        if error is None:
            return self._after(call[2], reply)
        phase = self.move.phase
        if not refused(error) or (phase in FORWARD and self._forward_only()):
            self.calls[token] = (now, call[1], call[2])  # re-sent by on_timer after RETRY_S
            return []
        if phase in UNDO:  # that side was not in the state this undo step leaves: nothing to undo there
            return self._next()
        return self._enter(replace(self.move, phase="undone" if phase == "clear" else "unfreeze"))

    def on_timer(self, now: float) -> list:
        """Re-send every call unanswered for RETRY_S (each step is idempotent)."""
        self.now = now
        fx = []
        for token, (sent, chain, words) in list(self.calls.items()):
            if now - sent >= RETRY_S:
                self.calls[token] = (now, chain, words)
                fx.append(Call(token, chain, words))
        return fx

    def next_deadline(self) -> float | None:
        return min((sent + RETRY_S for sent, _, _ in self.calls.values()), default=None)

    # -- phases ------------------------------------------------------------------------------

    def _forward_only(self) -> bool:
        return FORWARD.index(self.move.phase) >= FORWARD.index("give")

    def _enter(self, move: Move) -> list:
        self.move, self.calls, self.saving, self.mapping = move, {}, True, False
        if move.phase in FINAL:
            self.saving = False
            return [Save(move), Finished(move)]
        return [Save(move)]

    def _next(self, **changes) -> list:
        order = FORWARD if self.move.phase in FORWARD else UNDO
        return self._enter(replace(self.move, phase=order[order.index(self.move.phase) + 1], **changes))

    def _call(self, chain: int, *words) -> Call:
        self._token += 1
        self.calls[self._token] = (self.now, chain, tuple(words))
        return Call(self._token, chain, tuple(words))

    def _step(self) -> list:
        m = self.move
        s = b"%d" % m.slot
        src, dst = m.source, m.target
        steps = {
            "import": (dst, b"CATENA.SLOTS", s, s, b"importing", b"%d" % src),
            "reset": (dst, b"CATENA.SLOTS", s, s, b"none"),
            "clear": (dst, b"CATENA.CLEARSLOT", s),
            "precopy": (src, b"CATENA.SLOTDUMP", s),
            "freeze": (src, b"CATENA.SLOTS", s, s, b"frozen"),
            "copy": (src, b"CATENA.SLOTDUMP", s, *(() if m.since is None else (b"%d" % m.since,))),
            "give": (src, b"CATENA.SLOTS", s, s, b"given", b"%d" % dst),
            "take": (dst, b"CATENA.SLOTS", s, s, b"owned"),
            "clean": (src, b"CATENA.CLEARSLOT", s),
            "unfreeze": (src, b"CATENA.SLOTS", s, s, b"owned"),
            "abort": (dst, b"CATENA.SLOTS", s, s, b"none"),
            "drop": (dst, b"CATENA.CLEARSLOT", s),
        }
        if m.phase == "map":
            self.saving = self.mapping = True
            return [SaveMap(m.slot, dst)]
        if m.phase in FINAL:
            return [Finished(m)]
        return [self._call(*self._fence(steps[m.phase]))]

    def _fence(self, step: tuple) -> tuple:
        """A slot op's words with the driver's fence (`FENCE n` after the command name)."""
        chain, name, *words = step
        if not self.move.fence or name == b"CATENA.SLOTDUMP":
            return step
        return (chain, name, b"FENCE", b"%d" % self.move.fence, *words)

    def _after(self, words: tuple, reply) -> list:
        """A step's call answered without an error."""
        phase = self.move.phase
        if words[0] == b"CATENA.SLOTDUMP":
            as_of, live, *dump = reply
            self.dumped = (as_of, tuple(live))
            found = set(live)
            gone = [w for key in self.move.copied if key not in found for w in (key, b"", b"-")]
            step = (self.move.target, b"CATENA.IMPORT", b"%d" % self.move.slot, *dump, *gone)
            return [self._call(*self._fence(step))]
        if words[0] == b"CATENA.IMPORT" and phase == "precopy":
            as_of, live = self.dumped
            return self._next(copied=live, since=as_of)
        return self._next()
