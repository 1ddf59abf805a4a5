"""What a member does when its disk fails it: it stops (fail-stop).

A write or fsync in the data directory that fails (ENOSPC, EIO, EROFS, …) leaves the member
unable to say what it holds durably, and one that hangs (a fail-slow disk) stalls its chain while
its probes may still succeed. Either way it must acknowledge, commit and answer nothing more.
The member logs one CRITICAL line naming the data directory, the error and the remedy, and exits
at once with status 74 (EX_IOERR) without running any cleanup that could send, ack or reply; the
coordinator's probes find it dead and repair the chain around it. Restarted on a healthy disk,
it keeps the longest valid prefix of its log and catches up from the chain.

- `IoClock`: which write or fsync is in progress and since when (monotonic seconds);
- `StallWatchdog`: a thread that fail-stops the process when one has run past a bound;
- `fail_stop`: the message and the exit;
- `write_all`, `fsync_dir`: timed I/O steps shared with the log;
- `replace_file`: a small file (the epoch, the cluster id) replaced atomically and durably.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

log = logging.getLogger(__name__)

EXIT_DISK_FAULT = 74  # EX_IOERR in sysexits.h
DEFAULT_STALL_TIMEOUT_S = 5.0
WRITE_CHUNK = 64 * 1024 * 1024  # one timed write() at most: the stall bound is per chunk
_exit = os._exit  # no cleanup: nothing of the failed turn may reach a peer or a client


class IoClock:
    """`busy` is (what, monotonic start) of the write or fsync in progress, or None. One
    attribute, assigned whole, so that the watchdog thread never reads half an update."""

    __slots__ = ("busy",)

    def __init__(self) -> None:
        self.busy: tuple[str, float] | None = None


def fail_stop(data_dir: Path, what: str, error: BaseException | str) -> NoReturn:
    """Log why the member stops, then exit the process at once with EXIT_DISK_FAULT."""
    if isinstance(error, OSError) and error.errno is not None:
        name = errno.errorcode.get(error.errno, str(error.errno))
        reason = f"{error.strerror or error} ({name})"
    else:
        reason = str(error)
    log.critical(
        "disk fault in data directory %s: %s: %s. The member stops now (exit status %d) so that "
        "it acknowledges nothing it has not stored; the coordinator removes it and the chain goes "
        "on with the other members. Free space or repair the disk, then restart the member with "
        "the same --data-dir: it keeps the valid prefix of its log and catches up from the chain.",
        data_dir, what, reason, EXIT_DISK_FAULT,
    )
    for handler in logging.getLogger().handlers:
        handler.flush()
    _exit(EXIT_DISK_FAULT)
    raise SystemExit(EXIT_DISK_FAULT)  # only reached when a test replaced _exit


class StallWatchdog:
    """Calls `on_stall(what, seconds)` once the I/O that `clock` shows has run for longer than
    `timeout_s` (0: never). A daemon thread calls `check(now)` every `tick_s`.

    Only time the process ran counts: each tick adds at most two ticks' worth, so a process that
    was stopped as a whole (SIGSTOP, a paused VM) in the middle of a write is not taken for one
    on a stalled disk."""

    def __init__(self, clock: IoClock, timeout_s: float, on_stall: Callable[[str, float], object]):
        self.clock = clock
        self.timeout_s = timeout_s
        self.on_stall = on_stall
        self.tick_s = min(timeout_s / 4, 0.25) if timeout_s > 0 else 0.25
        self._seen: tuple[str, float] | None = None  # the I/O in progress at the last tick
        self._ran = 0.0  # how long it has run, as counted
        self._last = 0.0  # the last tick
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def check(self, now: float) -> bool:
        """One tick at `now` (monotonic seconds); True once it called on_stall."""
        busy = self.clock.busy
        if busy is None or self.timeout_s <= 0:
            self._seen = None
            return False
        step = min(now - (busy[1] if busy is not self._seen else self._last), 2 * self.tick_s)
        self._ran = step if busy is not self._seen else self._ran + step
        self._seen, self._last = busy, now
        if self._ran <= self.timeout_s:
            return False
        self.on_stall(busy[0], self._ran)
        return True

    def start(self) -> None:
        if self.timeout_s > 0 and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="disk-stall-watchdog",
                                            daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.tick_s):
            if self.check(time.monotonic()):
                return


def write_all(fd: int, buf: bytes | memoryview, clock: IoClock, what: str) -> None:
    """write() all of `buf`, in chunks of at most WRITE_CHUNK bytes, each timed on `clock`."""
    view = memoryview(buf)
    done, size = 0, len(buf)
    write, monotonic = os.write, time.monotonic
    try:
        while done < size:
            clock.busy = (what, monotonic())
            done += write(fd, view[done : done + WRITE_CHUNK])
    finally:
        clock.busy = None


def fsync_dir(directory: Path, clock: IoClock) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        clock.busy = (f"fsync of directory {directory}", time.monotonic())
        os.fsync(fd)
    finally:
        clock.busy = None
        os.close(fd)


def replace_file(path: Path, data: bytes, clock: IoClock) -> None:
    """Write `data` to `path` through a temporary file: fsynced, renamed over, the directory
    fsynced. A crash leaves the old contents or the new ones. Raises OSError."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        write_all(fd, data, clock, f"write of {tmp}")
        clock.busy = (f"fsync of {tmp}", time.monotonic())
        os.fsync(fd)
    finally:
        clock.busy = None
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent, clock)
