"""A member's durable log: checksummed records in numbered segments, plus one snapshot.

The log owns one member's data directory. It stores opaque records (bytes; the chain layer
decides what they mean), fsyncs them by policy, writes snapshots atomically, drops the segments a
snapshot covers, and on restart returns the snapshot and the records after it. It locks the
directory so that two processes never write it at once.

On-disk format (integers little-endian)
---------------------------------------
    LOCK          flock()ed while a log is open; holds the owner's pid, for error messages only.
    log.000001 …  b"CTNALOG1", then records: u32 n | u32 crc32(n ‖ payload) | payload (n bytes).
                  n is at most MAX_RECORD (512 MiB); the checksum covers the length bytes too, so
                  an all-zero frame (a zero-filled tail after a crash) is never a valid record.
    snapshot      b"CTNASNP1" | u64 first_segment | u64 n | u32 crc32(first_segment ‖ n ‖ blob)
                  | blob (n bytes). The blob holds the effect of every record in the segments
                  numbered below first_segment (1 when there is no snapshot).
    snapshot.tmp  a snapshot being written; deleted by recovery.

Recovery replays segments first_segment, first_segment+1, … in order and deletes the segments
below first_segment. snapshot(blob) runs three steps (a snapshot taken while the member serves runs them in
another order, equally safe: rotate() does step 2 first, a thread step 1 up to the fsync of
snapshot.tmp, install_snapshot() the rename and step 3):
  1. write snapshot.tmp, fsync it (every 64 MiB too), rename it over snapshot, fsync the
     directory. This is the commit point: before it the old snapshot and the old segments hold
     the state, after it the new snapshot does (its first_segment is the number of the segment
     about to be created);
  2. create the new segment (header fsynced) and fsync the directory;
  3. delete the older segments and fsync the directory.
A crash inside step 1 leaves snapshot.tmp (deleted) and the old state intact; a crash after it
leaves old segments that recovery deletes, and perhaps no new segment, which recovery creates.
No record is ever replayed on top of a snapshot that already contains it.

Damage. Recovery keeps the longest valid prefix of the log and cuts the rest off on disk before
anything is appended. The last segment may end in a torn record (a header or payload cut short, a
bad checksum, a length above the limit) after which no valid record starts: an append that never
completed (under fsync=always, never acknowledged). Any other damage (a bad record followed by a
valid one, a bad record or header in an earlier segment, a missing segment) is a hole: the records
after it are dropped too, with a warning naming the file and byte offset, because a member's
history must have no gap; the chain holds them and the member catches up from it. A damaged
snapshot raises CorruptLog: the segments before it are gone, so no prefix is left to keep.

Failures. After a write or fsync fails (ENOSPC, EIO, EROFS, …) the log is unusable: every later
call raises LocalProtocolError, so nothing can be appended after a record that may be missing.
The owner must stop (see disk.py). Each write and fsync is timed on an IoClock, for a watchdog.

fsync policies, as Redis's appendfsync: "always" fdatasyncs before append() returns (or, with
`defer_sync`, in the owner's next `settle()`, which it calls before it acknowledges any of those
records: a member forwards a batch to its successor while its own fsync is still to come, so the
members' fsyncs overlap instead of running one after the other); "everysec"
leaves it to the owner's timer calling maybe_sync(now), which syncs at most once a second and
only when something was written (or detach_sync(now), the same fsync for another thread to run); "no" leaves it to the operating system. Snapshots and segment
creation are always fsynced, whatever the policy.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import re
import struct
import time
import zlib
from collections.abc import Sequence
from typing import NamedTuple
from pathlib import Path

from catena.chain.disk import WRITE_CHUNK, IoClock, fsync_dir, write_all
from catena.errors import CatenaError, CorruptLog, LocalProtocolError

log = logging.getLogger(__name__)

FSYNC_POLICIES = ("always", "everysec", "no")
SYNC_INTERVAL = 1.0  # seconds between two fsyncs under "everysec"
MAX_RECORD = 512 * 1024 * 1024

SEGMENT_MAGIC = b"CTNALOG1"
SNAPSHOT_MAGIC = b"CTNASNP1"
SNAPSHOT_NAME = "snapshot"
SNAPSHOT_TMP_NAME = "snapshot.tmp"
LOCK_NAME = "LOCK"

_FRAME = struct.Struct("<II")  # payload length, crc32(length bytes ‖ payload)
_LENGTH = struct.Struct("<I")
_SNAPSHOT_HEADER = struct.Struct("<8sQQI")  # magic, first_segment, blob length, crc32
JOIN_MAX = 1024 * 1024  # a batch of records up to this size is joined into one write()
_SEGMENT_NAME = re.compile(r"log\.(\d{6,})")
_NONZERO = re.compile(rb"[^\x00]")
_datasync = getattr(os, "fdatasync", os.fsync)
# crc32 of the length bytes of small records, computed once: saves a fifth of append()'s time.
_SMALL = 2048
_SMALL_LENGTH_CRC = [zlib.crc32(_LENGTH.pack(n)) for n in range(_SMALL)]


class DirectoryInUse(CatenaError):
    """Another live process has the data directory open."""


class DurableLog:
    """The durable log of one member, kept in `directory`.

    Open it, call recover() once, then append(); close() when done. Not thread-safe: the member's
    event loop is its only caller (a watchdog thread may read `clock`; a DetachedSync runs in a
    thread of its own, on its own descriptor).
    """

    def __init__(
        self, directory: Path, fsync: str = "everysec", clock: IoClock | None = None
    ) -> None:
        if fsync not in FSYNC_POLICIES:
            choices = ", ".join(FSYNC_POLICIES)
            raise ValueError(f"fsync policy must be one of {choices}; got {fsync!r}")
        self.directory = Path(directory)
        self.fsync = fsync
        self.clock = clock or IoClock()  # the write or fsync in progress
        self._always = fsync == "always"
        self._fd = -1  # the segment appended to; -1 until recover(), after close() or a failure
        self._unusable = "recover() must be called before the log is used"
        self._recovered = False
        self._first = 1  # lowest live segment (the snapshot's first_segment)
        self._segment = 1  # the segment appended to
        self._size = 0  # bytes in that segment's file
        self._bytes = 0  # framed record bytes since the snapshot
        self._count = 0  # records since the snapshot
        self._rotated = (0, 0)  # (bytes, records) since the snapshot when `rotate` last ran
        self._dirty = False
        self._owed = False  # fsync="always": a deferred append's fdatasync is still to come
        self._last_sync: float | None = None
        if not self.directory.is_dir():
            self.directory.mkdir(parents=True, exist_ok=True)
            fsync_dir(self.directory.parent, self.clock)
        self._lock_fd = _lock(self.directory)

    # -- the hot path -------------------------------------------------------------------------

    def append(self, records: Sequence[bytes], defer_sync: bool = False) -> None:
        """Append a batch of records with one write(); fdatasync before returning under
        fsync="always", unless `defer_sync`: then `settle()` does, and the caller calls it before
        it acknowledges any of them. An OSError leaves the log unusable."""
        fd = self._fd
        if fd < 0:
            raise LocalProtocolError(self._unusable)
        if not records:
            return
        parts: list[bytes] = []
        add = parts.append
        crc32 = zlib.crc32
        frame = _FRAME.pack
        small = _SMALL_LENGTH_CRC
        for record in records:
            n = len(record)
            if n < _SMALL:
                add(frame(n, crc32(record, small[n])))
            elif n <= MAX_RECORD:
                add(frame(n, crc32(record, crc32(_LENGTH.pack(n)))))
            else:
                raise ValueError(f"a log record holds at most {MAX_RECORD} bytes; got {n}")
            add(record)
        size = sum(map(len, parts))
        try:
            if size <= JOIN_MAX:  # one write()
                write_all(fd, b"".join(parts), self.clock, "write to the log")
            else:  # a large value: no copy of it into another buffer
                for part in parts:
                    write_all(fd, part, self.clock, "write to the log")
        except OSError as exc:
            self._undo_partial_write(fd)
            self._fail(exc)
            raise
        self._size += size
        self._bytes += size
        self._count += len(records)
        if self._always and not defer_sync:
            self._datasync(fd)
        else:
            self._dirty = True
            self._owed = self._always

    def settle(self) -> None:
        """The fdatasync a deferred append under fsync="always" still owes (nothing otherwise)."""
        if self._owed:
            self._owed = False
            self.sync()

    def maybe_sync(self, now: float) -> bool:
        """Under "everysec", fdatasync if something was written and a second passed since the
        last sync made here. Returns whether it synced. `now` is monotonic seconds."""
        if not self._dirty or self.fsync != "everysec":
            return False
        if self._last_sync is not None and now - self._last_sync < SYNC_INTERVAL:
            return False
        self.sync()
        self._last_sync = now
        return True

    def detach_sync(self, now: float, clock: IoClock) -> DetachedSync | None:
        """Under "everysec", when `maybe_sync` would sync: that fdatasync, for the owner to run
        in another thread (`DetachedSync.run`), timed on `clock`, so that its loop serves on
        meanwhile (as Redis's background fsync under appendfsync everysec: nothing waits for
        it). It covers everything written so far; the log counts as clean from here. None when
        no sync is due. An OSError (no descriptor to spare) leaves the log unusable."""
        if not self._dirty or self.fsync != "everysec":
            return None
        if self._last_sync is not None and now - self._last_sync < SYNC_INTERVAL:
            return None
        if self._fd < 0:
            raise LocalProtocolError(self._unusable)
        try:
            fd = os.dup(self._fd)
        except OSError as exc:
            self._fail(exc)
            raise
        self._dirty = False
        self._last_sync = now
        return DetachedSync(fd, clock)

    def sync_failed(self, exc: OSError) -> None:
        """A detached sync failed: as any failed fsync, nothing written since the last good one
        can be trusted, so the log is unusable from now on."""
        self._fail(exc)

    def sync(self) -> None:
        """fdatasync now if anything was written since the last sync, whatever the policy."""
        if self._fd < 0:
            raise LocalProtocolError(self._unusable)
        if self._dirty:
            self._datasync(self._fd)

    def size_bytes(self) -> int:
        """Bytes of framed records written since the last snapshot."""
        return self._bytes

    def snapshot_bytes(self) -> int:
        """The size of the snapshot file (0: none)."""
        try:
            return (self.directory / SNAPSHOT_NAME).stat().st_size
        except FileNotFoundError:
            return 0

    def records_since_snapshot(self) -> int:
        return self._count

    # -- restart ------------------------------------------------------------------------------

    def recover(self) -> tuple[bytes | None, list[bytes]]:
        """Return (snapshot blob or None, records after it): the longest valid prefix of the log,
        whatever follows it cut off on disk (see "Damage" above); then open the last segment kept
        for appending. Raises CorruptLog if the snapshot is damaged."""
        if self._lock_fd < 0:
            raise LocalProtocolError("the log is closed")
        if self._recovered:
            raise LocalProtocolError("recover() is called once, right after opening the log")
        self._recovered = True
        directory = self.directory
        with contextlib.suppress(FileNotFoundError):
            (directory / SNAPSHOT_TMP_NAME).unlink()
        blob, first = self._read_snapshot()
        numbers = sorted(
            int(m[1]) for name in os.listdir(directory) if (m := _SEGMENT_NAME.fullmatch(name))
        )
        covered = [n for n in numbers if n < first]
        live = [n for n in numbers if n >= first]
        for n in covered:
            os.unlink(self._path(n))
        if covered:
            fsync_dir(directory, self.clock)
        records: list[bytes] = []
        number, keep, size = first, -1, 0  # the segment appended to, its good bytes (-1: create it)
        for i, n in enumerate(live):
            if n != first + i:
                self._drop_hole(live[i:], f"{self._path(first + i)} is missing", len(records))
                break
            path = self._path(n)
            data = path.read_bytes()
            got, good, damage = _parse(path, data)
            records += got
            self._bytes += max(good - len(SEGMENT_MAGIC), 0)
            number, keep, size = n, good, len(data)
            if damage is not None:
                later = live[i + 1 :]
                if damage.torn and not later:
                    log.info("%s: dropped a torn last record at byte offset %d (%s): an append "
                             "that never completed", path, damage.offset, damage.reason)
                else:
                    self._drop_hole(later, f"{path}: {damage}", len(records), size - good)
                break
        if keep < 0:
            self._fd = self._create_segment(number)
            self._size = len(SEGMENT_MAGIC)
        else:
            self._fd = self._open_segment(self._path(number), keep, size)
            self._size = max(keep, len(SEGMENT_MAGIC))
        self._first = first
        self._segment = number
        self._count = len(records)
        self._unusable = ""
        return blob, records

    def _read_snapshot(self) -> tuple[bytes | None, int]:
        path = self.directory / SNAPSHOT_NAME
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None, 1
        header = _SNAPSHOT_HEADER.size
        if len(data) < header:
            raise CorruptLog(f"{path}: {len(data)} bytes, shorter than a snapshot header")
        magic, first, n, crc = _SNAPSHOT_HEADER.unpack_from(data)
        if magic != SNAPSHOT_MAGIC:
            raise CorruptLog(f"{path}: not a catena snapshot (bad header at byte offset 0)")
        if len(data) - header != n:
            raise CorruptLog(
                f"{path}: header promises {n} bytes of state, the file holds {len(data) - header}"
            )
        view = memoryview(data)
        if first < 1 or zlib.crc32(view[header:], zlib.crc32(view[8:24])) != crc:
            raise CorruptLog(f"{path}: checksum mismatch (header at byte offset 0)")
        return data[header:], first

    def _drop_hole(self, segments: list[int], where: str, kept: int, cut: int = 0) -> None:
        """Delete `segments` (they follow a hole), saying what is kept and what is dropped.
        Called before the segment holding the hole is cut back, so that a crash in between
        never leaves records after a hole."""
        dropped = f"{cut} bytes there" if cut else ""
        if segments:
            names = ", ".join(_segment_name(n) for n in segments)
            dropped += f"{' and ' if dropped else ''}the later segments {names}"
        log.warning("%s: keeping the log before it (%d records since the snapshot) and dropping "
                    "%s; the chain holds what is dropped and this member catches up from it",
                    where, kept, dropped)
        for n in segments:
            os.unlink(self._path(n))
        if segments:
            fsync_dir(self.directory, self.clock)

    def _open_segment(self, path: Path, keep: int, size: int) -> int:
        """Open the last segment for appending, cutting it to its first `keep` bytes."""
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        try:
            if keep < size or keep == 0:
                os.ftruncate(fd, keep)
                if keep == 0:  # its creation was torn, or its header is bad: write it again
                    write_all(fd, SEGMENT_MAGIC, self.clock, "write to the log")
                self._timed_sync(fd)
        except BaseException:
            os.close(fd)
            raise
        return fd

    # -- snapshots ----------------------------------------------------------------------------

    def snapshot(self, blob: bytes | Sequence[bytes]) -> None:
        """Store `blob` (or the concatenation of its parts, never built) as the state after
        every record appended so far, then start a new segment and delete the old ones.
        Crash-safe at every step (see the module docstring). An OSError leaves the log unusable."""
        if self._fd < 0:
            raise LocalProtocolError(self._unusable)
        directory = self.directory
        new = self._segment + 1
        try:
            self.write_snapshot(new, blob)
            os.replace(directory / SNAPSHOT_TMP_NAME, directory / SNAPSHOT_NAME)
            fsync_dir(directory, self.clock)
            fd = self._create_segment(new)
            old, self._fd = self._fd, fd
            os.close(old)
            self._drop_segments_below(new)
        except OSError as exc:
            self._fail_snapshot(exc)
            raise
        self._first = self._segment = new
        self._size = len(SEGMENT_MAGIC)
        self._bytes = self._count = 0
        self._dirty = False

    def write_snapshot(self, first: int, blob: bytes | Sequence[bytes], clock: IoClock | None = None) -> None:
        """Write `blob` (or its parts) to snapshot.tmp as the snapshot that starts at segment
        `first`, fsynced (every chunk: the stall bound holds). Step 1 of `snapshot`; alone, what
        a thread does after `rotate` while the loop appends (catena.chain.snapshotter), timed on
        its own `clock`."""
        clock = clock or self.clock
        parts = [blob] if isinstance(blob, bytes) else list(blob)
        size = sum(map(len, parts))
        crc = zlib.crc32(_SNAPSHOT_HEADER.pack(SNAPSHOT_MAGIC, first, size, 0)[8:24])
        for part in parts:
            crc = zlib.crc32(part, crc)
        fd = os.open(self.directory / SNAPSHOT_TMP_NAME, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            what = "write of the snapshot"
            write_all(fd, _SNAPSHOT_HEADER.pack(SNAPSHOT_MAGIC, first, size, crc), clock, what)
            unsynced = 0
            for part in parts:
                view = memoryview(part)
                for start in range(0, len(part), WRITE_CHUNK):
                    chunk = view[start : start + WRITE_CHUNK]
                    if unsynced and unsynced + len(chunk) > WRITE_CHUNK:
                        self._timed_sync(fd, clock=clock, what="fsync of the snapshot")  # each fsync has at most a chunk to write: the stall bound holds
                        unsynced = 0
                    write_all(fd, chunk, clock, what)
                    unsynced += len(chunk)
            self._timed_sync(fd, os.fsync, clock, "fsync of the snapshot")
        finally:
            os.close(fd)

    def rotate(self) -> int:
        """Start a new segment now (the current one fsynced first, whatever the policy) and
        return its number: the first segment of a snapshot of the state as of now, which
        `write_snapshot` writes and `install_snapshot` installs. Until then, recovery replays
        every segment on the older snapshot. An OSError leaves the log unusable."""
        if self._fd < 0:
            raise LocalProtocolError(self._unusable)
        new = self._segment + 1
        try:
            if self._dirty:
                self._timed_sync(self._fd)
            fd = self._create_segment(new)
            os.close(self._fd)
        except OSError as exc:
            self._fail(exc)
            raise
        self._fd, self._segment, self._size = fd, new, len(SEGMENT_MAGIC)
        self._rotated = (self._bytes, self._count)
        self._dirty = False
        return new

    def install_snapshot(self, first: int) -> None:
        """Make snapshot.tmp, written for segment `first` (the last `rotate`), the snapshot, and
        delete the segments it covers (steps 1's rename and 3 of `snapshot`)."""
        try:
            self.install_files(first)
        except OSError as exc:
            self._fail_snapshot(exc)
            raise
        self.installed(first)

    def install_files(self, first: int, clock: IoClock | None = None) -> None:
        """The files' part of `install_snapshot`, timed on `clock` (the log's): a thread may run
        it while the loop appends, as it touches no segment from `first` on; then the loop calls
        `installed`. An OSError leaves the log as it was in memory; its owner must stop."""
        if self._fd < 0:
            raise LocalProtocolError(self._unusable)
        clock = clock or self.clock
        os.replace(self.directory / SNAPSHOT_TMP_NAME, self.directory / SNAPSHOT_NAME)
        fsync_dir(self.directory, clock)
        self._drop_segments_below(first, clock)

    def installed(self, first: int) -> None:
        """The snapshot for segment `first` is installed (`install_files`): count what it covers."""
        self._first = first
        covered_bytes, covered_count = self._rotated
        self._bytes -= covered_bytes
        self._count -= covered_count

    def discard_snapshot(self) -> None:
        """Drop a snapshot.tmp that will not be installed (its writer failed or was stopped)."""
        with contextlib.suppress(OSError):
            (self.directory / SNAPSHOT_TMP_NAME).unlink(missing_ok=True)

    def _drop_segments_below(self, first: int, clock: IoClock | None = None) -> None:
        for n in range(self._first, first):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._path(n))
        fsync_dir(self.directory, clock or self.clock)

    def _fail_snapshot(self, exc: OSError) -> None:
        self.discard_snapshot()
        self._fail(exc)

    def _create_segment(self, number: int) -> int:
        fd = os.open(
            self._path(number),
            os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
            0o644,
        )
        try:
            write_all(fd, SEGMENT_MAGIC, self.clock, "write to the log")
            self._timed_sync(fd)
            fsync_dir(self.directory, self.clock)
        except BaseException:
            os.close(fd)
            raise
        return fd

    # -- closing and failures -----------------------------------------------------------------

    def close(self) -> None:
        """Sync what was written (whatever the policy), close the files, release the lock."""
        fd, self._fd = self._fd, -1
        self._unusable = "the log is closed"
        try:
            if fd >= 0:
                try:
                    if self._dirty:
                        self._timed_sync(fd)
                        self._dirty = False
                finally:
                    os.close(fd)
        finally:
            lock_fd, self._lock_fd = self._lock_fd, -1
            if lock_fd >= 0:
                os.close(lock_fd)

    def __enter__(self) -> DurableLog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _datasync(self, fd: int) -> None:
        try:
            self._timed_sync(fd)
        except OSError as exc:
            # After a failed fsync the kernel may have dropped the dirty pages: nothing
            # written since the last good sync can be trusted, so stop here.
            self._fail(exc)
            raise
        self._dirty = False

    def _timed_sync(self, fd: int, sync=None, clock: IoClock | None = None, what: str = "fsync of the log") -> None:
        """fdatasync `fd` (or `sync` it), showing it on the clock (the log's) as `what` while it
        runs (a stall's fail-stop message names it)."""
        clock = clock or self.clock
        clock.busy = (what, time.monotonic())
        try:
            (sync or _datasync)(fd)
        finally:
            clock.busy = None

    def _undo_partial_write(self, fd: int) -> None:
        """Cut a half-written batch off (best effort), so that a reader finds a clean end."""
        with contextlib.suppress(OSError):
            os.ftruncate(fd, self._size)

    def _fail(self, exc: OSError) -> None:
        fd, self._fd = self._fd, -1
        self._unusable = (f"the log is unusable after an I/O error ({exc}): stop, and reopen it "
                          "once the disk is repaired")
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)

    def _path(self, number: int) -> Path:
        return self.directory / _segment_name(number)


class DetachedSync:
    """One fdatasync of the log's segment, run in a thread other than the log owner's. It holds
    a duplicate of the segment's descriptor (closed when done), so that a rotation or a close
    meanwhile cannot take the file from under it; the fsync of the same open file covers what
    the owner wrote before it started. A failure is the owner's to act on (`sync_failed`)."""

    __slots__ = ("fd", "clock")

    def __init__(self, fd: int, clock: IoClock):
        self.fd = fd
        self.clock = clock

    def run(self) -> None:
        try:
            self.clock.busy = ("fsync of the log", time.monotonic())
            try:
                _datasync(self.fd)
            finally:
                self.clock.busy = None
        finally:
            os.close(self.fd)


class _Damage(NamedTuple):
    """Where a segment stops being valid, and why."""

    offset: int
    reason: str
    later: int | None  # where a valid record starts after it, if one does
    torn: bool  # what an interrupted append or segment creation leaves (nothing valid after it)

    def __str__(self) -> str:
        where = f"{self.reason} at byte offset {self.offset}"
        if self.later is None:
            return where
        return f"{where}, followed by a valid record at byte offset {self.later}"


def _parse(path: Path, data: bytes) -> tuple[list[bytes], int, _Damage | None]:
    """The valid records at the start of one segment's bytes, the offset where they end, and
    what stops them there (None: the whole segment is valid)."""
    pos = len(SEGMENT_MAGIC)
    if len(data) < pos:
        return [], 0, _Damage(0, f"segment header cut short after {len(data)} bytes", None, True)
    if data[:pos] != SEGMENT_MAGIC:
        return [], 0, _Damage(0, "not a catena log segment (bad header)", None, False)
    view = memoryview(data)
    end = len(data)
    records = []
    add = records.append
    while pos < end:
        n = _record_at(view, pos, end)
        if n < 0:
            break
        stop = pos + 8 + n
        add(data[pos + 8 : stop])
        pos = stop
    else:
        return records, pos, None
    later = _next_valid(view, pos + 1, end)
    reason = f"bad record ({_why_bad(view, pos, end)})"
    return records, pos, _Damage(pos, reason, later, later is None)


def _record_at(view: memoryview, pos: int, end: int) -> int:
    """The payload length of the valid record at `pos`, or -1 if none starts there."""
    if end - pos < 8:
        return -1
    n, crc = _FRAME.unpack_from(view, pos)
    if n > MAX_RECORD or pos + 8 + n > end:
        return -1
    if zlib.crc32(view[pos + 8 : pos + 8 + n], zlib.crc32(view[pos : pos + 4])) != crc:
        return -1
    return n


def _why_bad(view: memoryview, pos: int, end: int) -> str:
    if end - pos < 8:
        return f"header cut short after {end - pos} bytes"
    n = _LENGTH.unpack_from(view, pos)[0]
    if n > MAX_RECORD:
        return f"length {n} above the {MAX_RECORD}-byte limit"
    if pos + 8 + n > end:
        return f"{n}-byte payload cut short after {end - pos - 8} bytes"
    return "checksum mismatch"


def _next_valid(view: memoryview, pos: int, end: int) -> int | None:
    """The first offset at or after `pos` where a valid record starts, trying every byte.

    Runs only on the damaged part of a segment. A valid frame's first 8 bytes are never all zero,
    so zero-filled stretches (what some file systems show after a crash) are skipped at once.
    """
    unpack = _FRAME.unpack_from
    crc32 = zlib.crc32
    while pos <= end - 8:
        n, crc = unpack(view, pos)
        if n == 0 and crc == 0:
            found = _NONZERO.search(view, pos)
            if found is None:
                return None
            pos = max(pos + 1, found.start() - 7)
            continue
        stop = pos + 8 + n
        if stop <= end and n <= MAX_RECORD:
            if crc32(view[pos + 8 : stop], crc32(view[pos : pos + 4])) == crc:
                return pos
        pos += 1
    return None


def _segment_name(number: int) -> str:
    return f"log.{number:06d}"


def _lock(directory: Path) -> int:
    """flock the directory's LOCK file, or raise DirectoryInUse. Released when the fd closes
    (also when the process dies), so a LOCK file left by a crash never blocks a restart."""
    fd = os.open(directory / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        holder = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise DirectoryInUse(
                f"{directory} is in use by another catena process (pid {holder}); "
                "two members on one data directory would corrupt it"
            ) from None
        raise
    with contextlib.suppress(OSError):  # the pid is for messages only: no reason to stop on ENOSPC
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd

