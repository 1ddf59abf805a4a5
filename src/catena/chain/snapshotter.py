"""A member's own snapshots, taken while it serves, and the dump steps a state transfer shares.

A snapshot is the state as of one moment, taken without stopping the loop (`LiveSnapshot`):

    first = log.rotate()            # records from now on go to a new segment
    StateDump(state)                # the moment; then slices of keys packed, STEP_S each and
                                    # spaced to SNAPSHOT_SHARE of the loop's time, while ops go
                                    # on (chain/state_dump.py)
    a thread writes [last_epoch, last_seq, state] as the snapshot that starts at segment
            `first` (snapshot.tmp, fsynced), then installs it: renames it the snapshot and
            drops the older segments (log.install_files)
    poll(): once done, the log counts it (log.installed); if it could not be written, the log
            keeps every segment (recovery replays them on the older snapshot) and the next
            trigger tries again

Records appended after the rotation may hold entries the dump's moment already includes:
recovery skips those by seq. (It used to be a forked child packing the copy-on-write image, as
Redis writes its RDB. fork() of an 80 MB member held its loop 7-10 ms, and the copy-on-write
faults after it and the install more: a 30 s window's p99 doubled at each snapshot. The dump
costs the loop a STEP_S slice at a time and 0.7-1 us per key in all; the writer thread's I/O
is timed on the clock its owner's stall watchdog reads.)

A state transfer to a joining member dumps the same way (`Steps`, chain/transfer.py), at a
share of its own.

A state that arrived whole (a joining member's, from its predecessor; 30 MB for 1M keys) is
already bytes: `Store` writes it with `log.snapshot` from a thread while the loop serves on,
and the member appends nothing meanwhile, so the log's own crash safety holds (a crash leaves
the older snapshot and segments, or the new snapshot).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Callable

import msgpack

from catena.chain.disk import IoClock
from catena.chain.messages import bin_head
from catena.chain.state_dump import StateDump

log = logging.getLogger(__name__)


STEP_S = 0.001  # the loop time a dump takes per slice
SNAPSHOT_SHARE = 0.1  # of the loop's time, what a member's own snapshot dump takes: its slices
# are spaced so. Run flat out (a slice every turn) it took half a core for 0.2 s per 100k keys,
# on cores the chain and its clients kept 80% busy: the requests queued behind it made the
# second of each snapshot the soak's slowest, a fifth of them over 10 ms. A member at 80% of
# its peak has 20% to spare; a tenth keeps it under 90% while it dumps, a few seconds per
# million keys.


class Steps:
    """Advance a StateDump on the loop, at most STEP_S a slice, slices spaced so the dump takes
    at most `share` of the loop's time (1.0: a slice every turn); then `done(error or None)`."""

    def __init__(self, dump: StateDump, done: Callable[[BaseException | None], None], share: float = 1.0):
        self.dump, self._done = dump, done
        self._rest = 1.0 / share - 1.0  # the pause after a slice, per second of slice
        self._loop = asyncio.get_running_loop()
        self._next: asyncio.Handle | None = self._loop.call_soon(self._step)

    def _step(self) -> None:
        start = time.perf_counter()
        end = start + STEP_S
        try:
            while not self.dump.advance():
                if (now := time.perf_counter()) >= end:
                    rest = (now - start) * self._rest
                    self._next = self._loop.call_later(rest, self._step) if rest else self._loop.call_soon(self._step)
                    return
        except Exception as exc:  # noqa: BLE001 - a bug: this dump fails, its owner decides
            self._next = None
            self.dump.stop()
            self._done(exc)
            return
        self._next = None
        self._done(None)

    def cancel(self) -> None:
        """Stop dumping (the dump stops hearing of changes)."""
        if self._next is not None:
            self._next.cancel()
            self._next = None
        self.dump.stop()


@functools.cache
def _writer() -> ThreadPoolExecutor:
    """The thread that writes snapshots, started once: starting one per snapshot held the loop
    5-9 ms (Thread.start waits for the new thread, which then holds the interpreter lock)."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="catena-snapshot")


class LiveSnapshot:
    """A snapshot of `state` at (last_epoch, last_seq), the state as of now, taken while the
    loop serves. An OSError from the constructor is the log's (its rotation)."""

    def __init__(self, durable_log, last_epoch: int, last_seq: int, state, clock: IoClock | None = None):
        self.log = durable_log
        self._clock = clock or IoClock()  # the writer thread's (the log's times the loop's appends):
        # its owner's watchdog fail-stops the member if a write or fsync on it hangs
        self.first = durable_log.rotate()
        self.started = time.monotonic()
        self._at = (last_epoch, last_seq)
        self._writer: Future | None = None
        self._error: BaseException | None = None  # the dump's or the write's: the log keeps its segments
        self._install_error: OSError | None = None
        self._installed = False
        self._steps = Steps(StateDump(state), self._dumped, SNAPSHOT_SHARE)

    def _dumped(self, error: BaseException | None) -> None:
        """The dump is complete (or failed): a thread writes it."""
        if error is not None:
            self._error = error
            return
        self._writer = _writer().submit(self._write, snapshot_parts(*self._at, self._steps.dump.parts))

    def _write(self, blob: list[bytes]) -> None:
        clock = self._clock
        try:  # (a hung write or fsync here trips the owner's watchdog: the member stops)
            self.log.write_snapshot(self.first, blob, clock)
        except BaseException as exc:  # noqa: BLE001 - reported by poll()
            self._error = exc
            return
        try:  # (the rename, fsyncs and deletions held the loop 6-8 ms per 16 MB segment)
            self.log.install_files(self.first, clock)
            self._installed = True
        except OSError as exc:
            self._install_error = exc

    def poll(self) -> float | None:
        """If the snapshot is written and installed, count it in the log (or, if it could not be
        written, log that) and return how long it took, in seconds; None while it is under way.
        An OSError is the install's: the log's directory is in doubt, its owner must stop."""
        if self._error is None and (self._writer is None or not self._writer.done()):
            return None
        if self._install_error is not None:
            raise self._install_error
        if self._installed:
            self.log.installed(self.first)
        else:
            log.warning("the snapshot failed (%r); the log keeps its segments", self._error)
            self.log.discard_snapshot()
        return time.monotonic() - self.started

    def abandon(self) -> None:
        """Stop and drop what was written (another snapshot is about to be stored, or the member
        stops); one already installed is counted."""
        self._steps.cancel()
        if self._writer is not None:
            wait([self._writer])
        if self._installed:
            self.log.installed(self.first)
        else:
            self.log.discard_snapshot()


def snapshot_parts(last_epoch: int, last_seq: int, state: bytes | list[bytes]) -> list[bytes]:
    """A member's snapshot blob, msgpack `[last_epoch, last_seq, state]` (state as bin), as
    parts whose concatenation is exactly that encoding: the state dump (or its parts) last, so
    a large one is never copied into another buffer."""
    parts = [state] if isinstance(state, bytes) else state
    return [b"\x93" + msgpack.packb(last_epoch) + msgpack.packb(last_seq) + bin_head(sum(map(len, parts))), *parts]


class Store:
    """`store()` (the log's `snapshot` of a blob) run by a thread; then `done(error or None)` on
    the event loop. The owner appends nothing to the log until then, and `join`s the thread
    before it closes the log."""

    def __init__(self, store: Callable[[], None], done: Callable[[BaseException | None], None]):
        self._store, self._done = store, done
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="catena-snapshot-store", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        error = None
        try:
            self._store()
        except BaseException as exc:  # noqa: BLE001 - the owner decides (a disk fault stops it)
            error = exc
        with contextlib.suppress(RuntimeError):  # the loop closed first (the owner stopped)
            self._loop.call_soon_threadsafe(self._done, error)

    def join(self) -> None:
        self._thread.join()
