"""State transfer to a successor off the event loop (shell): the `Snapshot` a member sends to a
joining learner (or a successor whose history diverged) is packed by a forked child, as its own
snapshots are (chain/snapshotter.py), and sent a chunk per loop turn. Dumping and framing a 1M-key
state in the loop held every client of the sender for 0.15–0.3 s, and its send as one frame more.

    replica.dump_state = transfers.dump   the machine's dump, at the history point it sends:
                                          fork(); the child writes u64 length ‖ state.dump()
                                          into a pipe and exits
    transfers.start(to, snapshot)         when the Send is executed: the frame's head (tag,
                                          epoch, history point, commit, bin length), then the
                                          dump as it comes out of the pipe, ≤ CHUNK a turn
    transfers.send(to, frame)             any other frame to `to` meanwhile waits behind it

The successor receives the same frame `messages.pack(Snapshot(...))` would make, so the protocol
is unchanged: the state as of (last_epoch, last_seq), then the entries after it. If the child
fails, the link is reset (the partial frame must not be followed by anything): the successor
reconnects and Syncs again. If the link goes down, the transfer is dropped with the frames held
behind it, as the link drops frames. Where fork() is missing, `dump` returns the dump itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import signal
from collections import deque
from typing import Callable

from catena.chain import messages, snapshotter
from catena.chain.messages import Snapshot

log = logging.getLogger(__name__)

CHUNK = 1024 * 1024  # bytes of the state sent per loop turn (and the pipe's size)
_LENGTH = 8


class Dump:
    """A state dump being written by the child `pid` into the pipe `fd` (u64 length first)."""

    def __init__(self, pid: int, fd: int):
        self.pid, self.fd = pid, fd


class _Transfer:
    def __init__(self, to: str, msg: Snapshot):
        self.to, self.msg, self.dump = to, msg, msg.state
        self.buffered = b""  # read from the pipe, not yet sent (the length's bytes, at first)
        self.left = -1  # state bytes still to send (-1: the length is not read yet)
        self.held: deque = deque()  # frames (or Snapshots to start) to `to` behind this one


class Transfers:
    """The state transfers of one member: at most one streaming per successor."""

    def __init__(self, durable_log, send: Callable[[str, bytes | list[bytes]], None],
                 reset: Callable[[str], None]):
        self.log, self._send, self._reset = durable_log, send, reset
        self.active: dict[str, _Transfer] = {}
        self.unsent: list[Dump] = []  # dumped for a Snapshot not started yet
        self.exiting: list[int] = []  # children done or killed, not yet reaped (exiting takes a while)

    def dump(self, state) -> bytes | Dump:
        """The machine's `dump_state`: a child writes `state.dump()` as of now; or the dump itself."""
        self.reap()
        rfd, wfd = os.pipe()

        def work() -> None:
            os.close(rfd)
            blob = state.dump()
            _write_all(wfd, len(blob).to_bytes(_LENGTH, "big"))
            _write_all(wfd, blob)

        pid = snapshotter.fork(self.log, work)
        os.close(wfd)
        if pid is None:
            os.close(rfd)
            return state.dump()
        os.set_blocking(rfd, False)
        if hasattr(fcntl, "F_SETPIPE_SZ"):
            try:
                fcntl.fcntl(rfd, fcntl.F_SETPIPE_SZ, CHUNK)
            except OSError:  # above the system's pipe-max-size: the default size will do
                pass
        dump = Dump(pid, rfd)
        self.unsent.append(dump)
        return dump

    def start(self, to: str, msg: Snapshot) -> None:
        """Send `msg`, whose state is a `Dump`, to `to`: after what is streaming there now."""
        current = self.active.get(to)
        if current is not None:
            current.held.append(msg)
            return
        self.unsent.remove(msg.state)
        transfer = self.active[to] = _Transfer(to, msg)
        asyncio.get_running_loop().add_reader(msg.state.fd, self._pump, transfer)

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
            self._stop(transfer.dump)
            for item in transfer.held:
                if type(item) is Snapshot:
                    self._stop(item.state)

    def close(self) -> None:
        for to in list(self.active):
            self.abandon(to)
        for dump in list(self.unsent):
            self._stop(dump)
        for pid in self.exiting:
            os.waitpid(pid, 0)
        self.exiting.clear()

    def _pump(self, transfer: _Transfer) -> None:
        """A turn's worth of the state from the pipe to the link."""
        try:
            data = os.read(transfer.dump.fd, CHUNK)
        except BlockingIOError:
            return
        except OSError as exc:
            return self._failed(transfer, f"reading its pipe: {exc}")
        if not data:
            return self._failed(transfer, "its pipe closed early")
        if transfer.left < 0:
            data = transfer.buffered + data
            if len(data) < _LENGTH:
                transfer.buffered = data
                return
            transfer.left = int.from_bytes(data[:_LENGTH], "big")
            data = data[_LENGTH:]
            msg = transfer.msg
            self._send(transfer.to, messages.snapshot_frame_head(msg._replace(state=b""), transfer.left))
        if len(data) > transfer.left:
            return self._failed(transfer, "it wrote more than the dump's length")
        if data:
            self._send(transfer.to, data)
            transfer.left -= len(data)
        if transfer.left == 0:
            self._finish(transfer)

    def _finish(self, transfer: _Transfer) -> None:
        self._stop(transfer.dump, kill=False)
        del self.active[transfer.to]
        held = transfer.held
        while held:  # in order; a Snapshot held starts the next transfer, the rest waits behind it
            item = held.popleft()
            if type(item) is Snapshot:
                self.start(transfer.to, item)
                self.active[transfer.to].held.extend(held)
                return
            self._send(transfer.to, item)

    def _failed(self, transfer: _Transfer, why: str) -> None:
        log.warning("state transfer to %s failed (the child %s); resetting the link", transfer.to, why)
        self.abandon(transfer.to)
        self._reset(transfer.to)

    def _stop(self, dump: Dump, kill: bool = True) -> None:
        if dump in self.unsent:
            self.unsent.remove(dump)
        with contextlib.suppress(RuntimeError):  # (no loop: it was never read)
            asyncio.get_running_loop().remove_reader(dump.fd)
        os.close(dump.fd)
        if kill:
            try:
                os.kill(dump.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.exiting.append(dump.pid)
        self.reap()

    def reap(self) -> None:
        """Reap the children that have exited, without waiting for the others."""
        self.exiting = [pid for pid in self.exiting if os.waitpid(pid, os.WNOHANG)[0] == 0]


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
