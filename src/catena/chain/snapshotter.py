"""A member's own snapshots, written by a forked child (shell), as Redis writes its RDB: packing
a large state in the member's loop held every client for its whole length (400,000 keys: 100+
ms; 1M keys: about half a second), while a child packs the copy-on-write image fork() gives it.

    first = log.rotate()            # records from now on go to a new segment
    fork(): the child packs [last_epoch, last_seq, state] and writes it as the snapshot that
            starts at segment `first` (snapshot.tmp, fsynced), then exits
    poll(): once the child exited 0, log.install_snapshot(first) makes it the snapshot and
            drops the older segments; if it failed, the log keeps every segment (recovery
            replays them on the older snapshot) and the next trigger tries again

The state the child packs may hold entries whose records were appended after the rotation:
recovery skips those by seq. Where fork() is missing, `start` returns None and the member
snapshots in its loop as before.

A state that arrived whole (a joining member's, from its predecessor; 30 MB for 1M keys) is
already bytes: `Store` writes it with `log.snapshot` from a thread while the loop serves on,
and the member appends nothing meanwhile, so the log's own crash safety holds (a crash leaves
the older snapshot and segments, or the new snapshot).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import threading
import time
import warnings
from typing import Callable, NamedTuple

import msgpack

from catena.chain.messages import bin_head

log = logging.getLogger(__name__)


class Child(NamedTuple):
    pid: int
    first: int  # the snapshot's first segment
    started: float  # monotonic seconds


CHILD_NICE = 10  # added to the child's niceness where Linux's SCHED_IDLE is missing


def start(durable_log, last_epoch: int, last_seq: int, state) -> Child | None:
    """Rotate the log and fork a child that writes the snapshot of `state` at (last_epoch,
    last_seq); None where fork() is not available or fails (the caller snapshots itself). An
    OSError is the log's (its rotation)."""
    if not hasattr(os, "fork"):
        return None
    first = durable_log.rotate()
    pid = fork(durable_log, lambda: durable_log.write_snapshot(first, snapshot_parts(last_epoch, last_seq,
                                                                                      state.dump())))
    return None if pid is None else Child(pid, first, time.monotonic())


def fork(durable_log, work) -> int | None:
    """Fork a child that runs `work()` on the copy-on-write image of this process and exits (0
    if it returned); its pid, or None where fork() is missing or fails (the caller does the work
    in its loop). The child first lets go of what is the parent's: the log's segment and lock,
    signals meant for the parent's loop; and it runs as background work (`background`)."""
    if not hasattr(os, "fork"):
        return None
    try:
        with warnings.catch_warnings():  # (3.12+ warns of forking with threads: the child touches none of theirs)
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
    except OSError as exc:  # no memory or processes to spare: the work runs in the loop this time
        log.warning("cannot fork a child (%s); working in the event loop", exc)
        return None
    if pid == 0:  # the child: work, exit without running anything of the parent's
        code = 1
        try:
            durable_log.leave_to_parent()  # its segment and lock stay the parent's alone
            background()
            signal.set_wakeup_fd(-1)  # a signal to the child must not reach the parent's loop
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, signal.SIG_DFL)
            work()
            code = 0
        finally:
            os._exit(code)
    return pid


def background() -> None:
    """Run this process only on CPU nobody else wants: Linux's SCHED_IDLE, which yields at once
    to any process that wakes (a member with a request), else a lower niceness. Three members
    snapshotting at once on 2 cores took a 30 s window's p99 from 5 to 70 ms at nice 0; a
    niced child still held a member's wake-up for whole milliseconds."""
    os.nice(CHILD_NICE)
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        pass


def poll(child: Child, durable_log) -> float | None:
    """If the child is done, install its snapshot (or log its failure) and return how long it
    took, in seconds; None while it runs."""
    pid, status = os.waitpid(child.pid, os.WNOHANG)
    if pid == 0:
        return None
    code = os.waitstatus_to_exitcode(status)
    if code == 0:
        durable_log.install_snapshot(child.first)
    else:
        log.warning("the snapshot child (pid %d) failed with status %d; the log keeps its segments", child.pid, code)
        durable_log.discard_snapshot()
    return time.monotonic() - child.started


def abandon(child: Child, durable_log) -> None:
    """Stop the child and drop what it wrote (another snapshot is about to be stored, or the
    member stops)."""
    try:
        os.kill(child.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    os.waitpid(child.pid, 0)
    durable_log.discard_snapshot()


def snapshot_parts(last_epoch: int, last_seq: int, state: bytes) -> list[bytes]:
    """A member's snapshot blob, msgpack `[last_epoch, last_seq, state]` (state as bin), as
    parts whose concatenation is exactly that encoding: the state dump is the last part, so a
    large one is never copied into another buffer."""
    return [b"\x93" + msgpack.packb(last_epoch) + msgpack.packb(last_seq) + bin_head(len(state)), state]


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
