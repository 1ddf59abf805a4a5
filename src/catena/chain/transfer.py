"""State transfer to a successor without holding the loop (shell): the `Snapshot` a member sends
to a joining learner (or a successor whose history diverged) is dumped a slice per loop turn, as
its own snapshots are (chain/state_dump.py, snapshotter.Steps), and sent a chunk per loop turn.
Dumping and framing a 1M-key state in the loop held every client of the sender for 0.15–0.3 s,
and its send as one frame more; a forked child dumping it held the loop for the fork.

    replica.dump_state = transfers.dump   the machine's dump, at the history point it sends: a
                                          StateDump of the state as of now, a slice at a time,
                                          at most SHARE of the loop's time
    transfers.start(to, snapshot)         when the Send is executed and the dump is complete: the
                                          frame's head (tag, epoch, history point, commit, bin
                                          length), then the dump, ≤ CHUNK a turn
    transfers.send(to, frame)             any other frame to `to` meanwhile waits behind it
    transfers.progress()                  bytes of states dumped and sent, ever: MEMBER.STATUS
                                          `state_transfer`, the learner's progress to the
                                          coordinator while it can ack no entry

The successor receives the same frame `messages.pack(Snapshot(...))` would make, so the protocol
is unchanged: the state as of (last_epoch, last_seq), then the entries after it. If the dump
fails (a bug: it raised), the link is reset: the successor reconnects and Syncs again. If the
link goes down, the transfer is dropped with the frames held behind it, as the link drops frames.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Callable

from catena.chain import messages
from catena.chain.messages import Snapshot
from catena.chain.snapshotter import Steps
from catena.chain.state_dump import StateDump

log = logging.getLogger(__name__)

CHUNK = 1024 * 1024  # bytes of the state sent per loop turn
SHARE = 0.25  # of the loop's time, what dumping a state to send takes (snapshotter.Steps): flat
# out, the sender's dump and the learner's load (receive.SHARE) took both cores for seconds
# while the chain served, and a join tripled its p99. The sender serves in the chain, its
# slices in the chain's path: a quarter kept a 1M-key join's p99 at 1.5-1.6x the steady one
# (half: 1.8-2.1x), the add taking 7.5-9 s


class Dump:
    """A state dump for a Snapshot, made a slice per loop turn; `done` once complete or failed."""

    def __init__(self, state, done: Callable[["Dump"], None]):
        self.error: BaseException | None = None
        self.done = False
        self._on_done = done
        self.steps = Steps(StateDump(state), self._finished, SHARE)

    @property
    def parts(self) -> list[bytes]:
        return self.steps.dump.parts

    def _finished(self, error: BaseException | None) -> None:
        self.done, self.error = True, error
        self._on_done(self)

    def stop(self) -> None:
        self.steps.cancel()


class _Transfer:
    def __init__(self, to: str, msg: Snapshot):
        self.to, self.msg, self.dump = to, msg, msg.state
        self.parts: deque[bytes] = deque()  # the dump's parts not sent yet (once it is complete)
        self.begun = False  # streaming (the dump is complete)
        self.next: asyncio.Handle | None = None  # the next turn's chunk
        self.held: deque = deque()  # frames (or Snapshots to start) to `to` behind this one


class Transfers:
    """The state transfers of one member: at most one streaming per successor."""

    def __init__(self, send: Callable[[str, bytes | list[bytes]], None], reset: Callable[[str], None]):
        self._send, self._reset = send, reset
        self.active: dict[str, _Transfer] = {}
        self.unsent: list[Dump] = []  # dumping for a Snapshot not started yet
        self.work = 0  # bytes of states dumped and sent, ever, but for the dumps under way

    def dump(self, state) -> Dump:
        """The machine's `dump_state`: the state as of now, dumped in later turns."""
        dump = Dump(state, self._dumped)
        self.unsent.append(dump)
        return dump

    def start(self, to: str, msg: Snapshot, held=()) -> None:
        """Send `msg`, whose state is a `Dump`, to `to`: after what is streaming there now
        (`held`: frames to send after it)."""
        current = self.active.get(to)
        if current is not None:
            current.held.append(msg)
            current.held.extend(held)
            return
        self.unsent.remove(msg.state)
        transfer = self.active[to] = _Transfer(to, msg)
        transfer.held.extend(held)
        if msg.state.done:  # (it may be sent whole and finish in this call)
            self._begin(transfer)

    def progress(self) -> int:
        """Bytes of states dumped and sent, ever: it grows while a transfer is under way (the
        coordinator's watch of an add counts that as the learner's progress)."""
        dumping = [*self.unsent, *(t.dump for t in self.active.values() if not t.begun)]
        return self.work + sum(len(part) for dump in dumping for part in dump.parts)

    def send(self, to: str, frame: bytes | list[bytes]) -> None:
        """Send a frame to `to`, or hold it behind the transfer streaming there."""
        current = self.active.get(to)
        if current is not None:
            current.held.append(frame)
        else:
            self._send(to, frame)

    def abandon(self, to: str) -> None:
        """The link to `to` went down: drop its transfer and what waits behind it."""
        transfer = self.active.pop(to, None)
        if transfer is not None:
            if transfer.next is not None:
                transfer.next.cancel()
            transfer.dump.stop()
            for item in transfer.held:
                if type(item) is Snapshot:
                    item.state.stop()

    def close(self) -> None:
        for to in list(self.active):
            self.abandon(to)
        for dump in self.unsent:
            dump.stop()
        self.unsent.clear()

    def _dumped(self, dump: Dump) -> None:
        for transfer in list(self.active.values()):
            if transfer.dump is dump:
                self._begin(transfer)

    def _begin(self, transfer: _Transfer) -> None:
        """The dump is complete: the frame's head, then its parts a chunk per turn."""
        dump = transfer.dump
        if dump.error is not None:
            return self._failed(transfer, f"its dump failed: {dump.error!r}")
        transfer.parts.extend(dump.parts)
        size = sum(map(len, transfer.parts))
        transfer.begun = True
        self.work += size  # dumped
        self._send(transfer.to, messages.snapshot_frame_head(transfer.msg._replace(state=b""), size))
        self._pump(transfer)

    def _pump(self, transfer: _Transfer) -> None:
        """A turn's worth of the state to the link."""
        parts, chunk, size = transfer.parts, [], 0
        while parts and size < CHUNK:
            chunk.append(part := parts.popleft())
            size += len(part)
        if chunk:
            self._send(transfer.to, chunk)
            self.work += size  # sent
        if parts:
            transfer.next = asyncio.get_running_loop().call_soon(self._pump, transfer)
        else:
            transfer.next = None
            self._finish(transfer)

    def _finish(self, transfer: _Transfer) -> None:
        del self.active[transfer.to]
        held = transfer.held
        while held:  # in order; a Snapshot held starts the next transfer, the rest waits behind it
            item = held.popleft()
            if type(item) is Snapshot:
                self.start(transfer.to, item, list(held))
                return
            self._send(transfer.to, item)

    def _failed(self, transfer: _Transfer, why: str) -> None:
        log.warning("state transfer to %s failed (%s); resetting the link", transfer.to, why)
        self.abandon(transfer.to)
        self._reset(transfer.to)
