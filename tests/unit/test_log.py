"""The durable log: framing, torn tails, mid-log damage (the longest valid prefix is kept), a log
unusable after a failed write or fsync, snapshots and crashes between their steps, fsync
policies, the directory lock."""

from __future__ import annotations

import errno
import os
import shutil
import struct
import tempfile
import zlib
from pathlib import Path

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from catena.chain import log as log_module
from catena.chain.log import (
    MAX_RECORD,
    SEGMENT_MAGIC,
    DirectoryInUse,
    DurableLog,
)
from catena.chain.disk import IoClock
from catena.errors import CorruptLog, LocalProtocolError

HEADER = len(SEGMENT_MAGIC)
RECORDS = [f"entry-{i:03d}-".encode() * 4 for i in range(5)]  # 5 records of 40 bytes


Recovered = tuple[DurableLog, bytes | None, list[bytes]]


def opened(directory: Path, fsync: str = "everysec") -> Recovered:
    log = DurableLog(directory, fsync=fsync)
    blob, records = log.recover()
    return log, blob, records


def reopen(directory: Path) -> tuple[bytes | None, list[bytes]]:
    log, blob, records = opened(directory)
    log.close()
    return blob, records


def write_log(directory: Path, batches: list[list[bytes]]) -> None:
    log, _, _ = opened(directory)
    for batch in batches:
        log.append(batch)
    log.close()


def offsets(records: list[bytes]) -> list[int]:
    """Where each record's frame starts in segment 1, plus where the last one ends."""
    out = [HEADER]
    for record in records:
        out.append(out[-1] + 8 + len(record))
    return out


def segment(directory: Path, number: int = 1) -> Path:
    return directory / f"log.{number:06d}"


def frame(payload: bytes) -> bytes:
    size = struct.pack("<I", len(payload))
    return size + struct.pack("<I", zlib.crc32(payload, zlib.crc32(size))) + payload


def flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x40
    path.write_bytes(bytes(data))


# -- round trips ------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.binary(max_size=300), max_size=6), max_size=6))
def test_records_come_back_in_order_after_reopen(batches):
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "data"
        write_log(directory, batches)
        assert reopen(directory) == (None, [r for batch in batches for r in batch])


def test_appends_continue_after_recovery(tmp_path):
    write_log(tmp_path, [RECORDS[:2]])
    log, blob, records = opened(tmp_path)
    assert (blob, records) == (None, RECORDS[:2])
    log.append(RECORDS[2:])
    log.close()
    assert reopen(tmp_path) == (None, RECORDS)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["LOCK", "log.000001"]


def test_batch_is_framed_length_then_checksum(tmp_path):
    big = b"z" * 3000  # above the lengths whose checksum seed is precomputed
    write_log(tmp_path, [[b"a", b""], [b"hello", big]])
    data = segment(tmp_path).read_bytes()
    assert data == SEGMENT_MAGIC + frame(b"a") + frame(b"") + frame(b"hello") + frame(big)


def test_append_writes_a_batch_in_one_syscall(tmp_path, monkeypatch):
    log, _, _ = opened(tmp_path, fsync="no")
    calls = []
    real_write = os.write
    monkeypatch.setattr(os, "write", lambda fd, buf: calls.append(len(buf)) or real_write(fd, buf))
    log.append(RECORDS)
    monkeypatch.undo()
    log.close()
    assert calls == [offsets(RECORDS)[-1] - HEADER]


def test_size_and_count_since_snapshot(tmp_path):
    log, _, _ = opened(tmp_path)
    assert (log.size_bytes(), log.records_since_snapshot()) == (0, 0)
    log.append(RECORDS[:3])
    assert (log.size_bytes(), log.records_since_snapshot()) == (3 * 48, 3)
    log.close()
    log, _, _ = opened(tmp_path)
    assert (log.size_bytes(), log.records_since_snapshot()) == (3 * 48, 3)
    log.snapshot(b"state")
    assert (log.size_bytes(), log.records_since_snapshot()) == (0, 0)
    log.close()


def test_misuse_is_refused(tmp_path, monkeypatch):
    log = DurableLog(tmp_path)
    with pytest.raises(LocalProtocolError, match="recover"):
        log.append([b"x"])
    log.recover()
    with pytest.raises(LocalProtocolError, match="once"):
        log.recover()
    monkeypatch.setattr(log_module, "MAX_RECORD", 10)
    monkeypatch.setattr(log_module, "_SMALL", 4)
    with pytest.raises(ValueError, match="at most 10 bytes"):
        log.append([b"x" * 11])
    log.close()
    with pytest.raises(LocalProtocolError, match="closed"):
        log.append([b"x"])


# -- torn tails and damage --------------------------------------------------------------------


def last_record_copies(tmp_path: Path):
    """(offset, directory) for every byte offset of the last of RECORDS, each directory a fresh
    copy of a log holding RECORDS, for a test to damage at that offset."""
    source = tmp_path / "source"
    write_log(source, [RECORDS])
    ends = offsets(RECORDS)
    for offset in range(ends[-2], ends[-1]):
        directory = tmp_path / f"at{offset}"
        shutil.copytree(source, directory)
        yield offset, directory


def test_torn_last_record_is_dropped_at_every_cut(tmp_path):
    for cut, directory in last_record_copies(tmp_path):
        os.truncate(segment(directory), cut)
        log, blob, records = opened(directory)
        assert records == RECORDS[:-1], cut
        assert segment(directory).stat().st_size == offsets(RECORDS)[-2]
        log.append([b"after"])
        log.close()
        assert reopen(directory) == (None, RECORDS[:-1] + [b"after"]), cut


def test_torn_batch_keeps_its_complete_records(tmp_path):
    write_log(tmp_path, [RECORDS[:2], RECORDS[2:]])
    os.truncate(segment(tmp_path), offsets(RECORDS)[4] - 3)
    assert reopen(tmp_path) == (None, RECORDS[:3])


def test_flipped_byte_in_last_record_is_dropped(tmp_path):
    for offset, directory in last_record_copies(tmp_path):
        flip(segment(directory), offset)
        assert reopen(directory) == (None, RECORDS[:-1]), offset
        assert segment(directory).stat().st_size == offsets(RECORDS)[-2]


def warnings_of(caplog) -> str:
    return "\n".join(r.getMessage() for r in caplog.records if r.levelname == "WARNING")


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.integers(0, len(RECORDS) - 2), st.data())
def test_flipped_byte_in_middle_record_keeps_the_prefix_and_warns(caplog, index, data):
    ends = offsets(RECORDS)
    offset = data.draw(st.integers(ends[index], ends[index + 1] - 1))
    caplog.clear()
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        write_log(directory, [RECORDS])
        flip(segment(directory), offset)
        log, blob, records = opened(directory)
        assert (blob, records) == (None, RECORDS[:index])
        assert segment(directory).stat().st_size == ends[index]  # the hole and all after it: gone
        log.append([b"after"])
        log.close()
        assert reopen(directory) == (None, RECORDS[:index] + [b"after"])
    message = warnings_of(caplog)
    assert str(segment(directory)) in message
    assert f"byte offset {ends[index]}, " in message
    assert f"valid record at byte offset {ends[index + 1]}" in message


def test_huge_length_in_last_record_is_dropped_in_middle_keeps_the_prefix(tmp_path, caplog):
    huge = struct.pack("<I", 0xFFFFFFFF)
    assert 0xFFFFFFFF > MAX_RECORD
    ends = offsets(RECORDS)
    write_log(tmp_path / "last", [RECORDS])
    with segment(tmp_path / "last").open("r+b") as f:
        f.seek(ends[-2])
        f.write(huge)
    assert reopen(tmp_path / "last") == (None, RECORDS[:-1])
    assert not warnings_of(caplog)  # a torn last record is an append that never completed

    write_log(tmp_path / "middle", [RECORDS])
    with segment(tmp_path / "middle").open("r+b") as f:
        f.seek(ends[1])
        f.write(huge)
    assert reopen(tmp_path / "middle") == (None, RECORDS[:1])
    assert f"offset {ends[1]}, " in warnings_of(caplog) and "limit" in warnings_of(caplog)


def test_zero_filled_tail_is_dropped(tmp_path):
    write_log(tmp_path, [RECORDS])
    with segment(tmp_path).open("ab") as f:
        f.write(bytes(4096))
    assert reopen(tmp_path) == (None, RECORDS)
    assert segment(tmp_path).stat().st_size == offsets(RECORDS)[-1]


def test_valid_record_after_zeros_is_a_hole(tmp_path, caplog):
    write_log(tmp_path, [RECORDS])
    with segment(tmp_path).open("ab") as f:
        f.write(bytes(5000) + frame(b"late"))
    late = offsets(RECORDS)[-1] + 5000
    assert reopen(tmp_path) == (None, RECORDS)
    assert segment(tmp_path).stat().st_size == offsets(RECORDS)[-1]
    assert f"valid record at byte offset {late}" in warnings_of(caplog)


def test_bad_segment_header_keeps_nothing_of_it(tmp_path, caplog):
    write_log(tmp_path, [RECORDS])
    flip(segment(tmp_path), 0)
    log, blob, records = opened(tmp_path)
    assert (blob, records) == (None, [])
    assert "not a catena log segment" in warnings_of(caplog)
    log.append([b"x"])
    log.close()
    assert reopen(tmp_path) == (None, [b"x"])


def two_segments(directory: Path, second: int = 2) -> None:
    """A log of RECORDS in log.000001 and RECORDS again in log.<second> (what a crash between a
    snapshot's steps can leave, here without the snapshot)."""
    write_log(directory, [RECORDS])
    shutil.copy(segment(directory), segment(directory, second))


def test_segments_that_follow_on_are_replayed_in_order(tmp_path):
    two_segments(tmp_path)
    log, blob, records = opened(tmp_path)
    assert (blob, records) == (None, RECORDS + RECORDS)
    log.append([b"x"])  # appends go to the last segment
    log.close()
    assert segment(tmp_path, 2).read_bytes().endswith(frame(b"x"))


def test_damage_in_an_earlier_segment_drops_every_later_one(tmp_path, caplog):
    two_segments(tmp_path)
    flip(segment(tmp_path), offsets(RECORDS)[3] + 9)
    log, blob, records = opened(tmp_path)
    assert (blob, records) == (None, RECORDS[:3])
    assert not segment(tmp_path, 2).exists()
    assert segment(tmp_path).stat().st_size == offsets(RECORDS)[3]
    message = warnings_of(caplog)
    bad = offsets(RECORDS)[3]
    where = f"{segment(tmp_path)}: bad record (checksum mismatch) at byte offset {bad}"
    assert where in message
    assert "log.000002" in message
    log.append([b"x"])
    log.close()
    assert reopen(tmp_path) == (None, RECORDS[:3] + [b"x"])


def test_a_torn_end_of_an_earlier_segment_is_a_hole(tmp_path, caplog):
    two_segments(tmp_path)
    os.truncate(segment(tmp_path), offsets(RECORDS)[-1] - 2)
    assert reopen(tmp_path) == (None, RECORDS[:-1])
    assert not segment(tmp_path, 2).exists()
    assert "log.000002" in warnings_of(caplog)


def test_torn_segment_creation_is_repaired(tmp_path):
    write_log(tmp_path, [])
    os.truncate(segment(tmp_path), 3)
    log, blob, records = opened(tmp_path)
    assert (blob, records) == (None, [])
    log.append([b"x"])
    log.close()
    assert reopen(tmp_path) == (None, [b"x"])


def full_disk_after(real_write, fraction: float):
    """An os.write that writes `fraction` of what it is given, then fails with ENOSPC."""

    def write(fd, buf):
        if fraction:
            real_write(fd, bytes(buf)[: int(len(buf) * fraction)])
        raise OSError(errno.ENOSPC, "No space left on device")

    return write


@pytest.mark.parametrize("fraction", [0, 0.5])
def test_failed_write_makes_the_log_unusable_with_a_clean_end(tmp_path, monkeypatch, fraction):
    """A later, smaller append must not land after a batch that is not there: that would ack
    records on the far side of a hole."""
    log, _, _ = opened(tmp_path, fsync="no")
    log.append(RECORDS[:1])
    monkeypatch.setattr(os, "write", full_disk_after(os.write, fraction))
    with pytest.raises(OSError) as raised:
        log.append(RECORDS[1:3])
    assert raised.value.errno == errno.ENOSPC
    monkeypatch.undo()
    for call in (lambda: log.append([b"small"]), log.sync, lambda: log.snapshot(b"s")):
        with pytest.raises(LocalProtocolError, match="unusable after an I/O error .*No space left"):
            call()
    log.close()
    assert segment(tmp_path).stat().st_size == offsets(RECORDS)[1]  # the half batch was cut off
    assert reopen(tmp_path) == (None, RECORDS[:1])


def test_failed_fsync_under_everysec_makes_the_log_unusable(tmp_path, monkeypatch):
    log, _, _ = opened(tmp_path, fsync="everysec")
    log.append([b"x"])

    def broken(fd):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(log_module, "_datasync", broken)
    with pytest.raises(OSError):
        log.maybe_sync(100.0)
    monkeypatch.undo()
    with pytest.raises(LocalProtocolError, match="I/O error"):
        log.append([b"y"])
    log.close()


@pytest.mark.parametrize("fraction", [0, 0.5])
def test_failed_snapshot_makes_the_log_unusable_keeping_the_old_state(tmp_path, monkeypatch,
                                                                       fraction):
    log, _, _ = opened(tmp_path)
    log.append(RECORDS[:2])
    log.snapshot(b"old")
    log.append(RECORDS[2:])
    monkeypatch.setattr(os, "write", full_disk_after(os.write, fraction))
    with pytest.raises(OSError):
        log.snapshot(b"new" * 1000)
    monkeypatch.undo()
    with pytest.raises(LocalProtocolError, match="unusable"):
        log.append([b"z"])
    log.close()
    assert not (tmp_path / "snapshot.tmp").exists()
    assert reopen(tmp_path) == (b"old", RECORDS[2:])


def test_each_write_and_fsync_shows_on_the_clock_while_it_runs(tmp_path, monkeypatch):
    """What the stall watchdog reads: set while a write or fsync runs, cleared after."""
    log, _, _ = opened(tmp_path, fsync="always")
    seen = []
    real_write = os.write

    def write(fd, buf):
        seen.append(log.clock.busy[0])
        return real_write(fd, buf)

    monkeypatch.setattr(os, "write", write)
    monkeypatch.setattr(log_module, "_datasync", lambda fd: seen.append(log.clock.busy[0]))
    log.append([b"x"])
    assert seen == ["write to the log", "fsync of the log"]
    assert log.clock.busy is None
    first = log.rotate()
    monkeypatch.setattr(os, "fsync", lambda fd: seen.append(log.clock.busy[0]))
    seen.clear()
    log.write_snapshot(first, b"state")  # a stall there is named as the snapshot's
    assert seen == ["write of the snapshot"] * 2 + ["fsync of the snapshot"]  # (its header, then the state)
    log.close()


def test_failed_fsync_makes_the_log_unusable(tmp_path, monkeypatch):
    log, _, _ = opened(tmp_path, fsync="always")

    def broken(fd):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(log_module, "_datasync", broken)
    with pytest.raises(OSError):
        log.append([b"x"])
    monkeypatch.undo()
    with pytest.raises(LocalProtocolError, match="I/O error"):
        log.append([b"y"])
    log.close()


# -- snapshots and crashes between their steps ------------------------------------------------


def test_snapshot_then_records(tmp_path):
    log, _, _ = opened(tmp_path)
    log.append(RECORDS[:3])
    log.snapshot(b"state after 3")
    log.append(RECORDS[3:])
    log.close()
    assert reopen(tmp_path) == (b"state after 3", RECORDS[3:])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["LOCK", "log.000002", "snapshot"]


def test_repeated_snapshots_keep_only_the_newest(tmp_path):
    log, _, _ = opened(tmp_path)
    for i in range(3):
        log.append([RECORDS[i]])
        log.snapshot(b"state %d" % i)
    log.close()
    log, blob, records = opened(tmp_path)
    assert (blob, records) == (b"state 2", [])
    log.append([b"next"])
    log.snapshot(b"state 3")
    log.close()
    assert reopen(tmp_path) == (b"state 3", [])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["LOCK", "log.000005", "snapshot"]


def crashed_snapshot(tmp_path: Path) -> tuple[Path, bytes, bytes]:
    """A log with snapshot "old" + RECORDS[:2] in log.000002, then a snapshot "new" of RECORDS[:2]
    that finished; returns the directory and the bytes of the old snapshot and old segment, so a
    test can put the files back as a crash between two steps would have left them."""
    log, _, _ = opened(tmp_path)
    log.snapshot(b"old")
    log.append(RECORDS[:2])
    old_snapshot = (tmp_path / "snapshot").read_bytes()
    old_segment = segment(tmp_path, 2).read_bytes()
    log.snapshot(b"new")
    log.close()
    return tmp_path, old_snapshot, old_segment


def test_crash_while_writing_snapshot_tmp_keeps_old_state(tmp_path):
    directory, old_snapshot, old_segment = crashed_snapshot(tmp_path)
    segment(directory, 3).unlink()
    (directory / "snapshot.tmp").write_bytes((directory / "snapshot").read_bytes()[:20])
    (directory / "snapshot").write_bytes(old_snapshot)
    segment(directory, 2).write_bytes(old_segment)
    assert reopen(directory) == (b"old", RECORDS[:2])
    assert not (directory / "snapshot.tmp").exists()


def test_crash_after_rename_before_new_segment(tmp_path):
    directory, _, old_segment = crashed_snapshot(tmp_path)
    segment(directory, 3).unlink()
    segment(directory, 2).write_bytes(old_segment)
    log, blob, records = opened(directory)
    assert (blob, records) == (b"new", [])
    assert not segment(directory, 2).exists()
    log.append([b"after"])
    log.close()
    assert reopen(directory) == (b"new", [b"after"])


def test_crash_before_old_segment_deleted_does_not_replay_it(tmp_path):
    directory, _, old_segment = crashed_snapshot(tmp_path)
    segment(directory, 2).write_bytes(old_segment)
    assert reopen(directory) == (b"new", [])
    assert not segment(directory, 2).exists()


def test_damaged_snapshot_raises(tmp_path):
    directory, _, _ = crashed_snapshot(tmp_path)
    flip(directory / "snapshot", 30)
    with pytest.raises(CorruptLog, match="snapshot: checksum mismatch"):
        reopen(directory)


def test_missing_segment_is_a_hole(tmp_path, caplog):
    two_segments(tmp_path, second=3)
    log, blob, records = opened(tmp_path)
    assert (blob, records) == (None, RECORDS)
    assert not segment(tmp_path, 3).exists()
    assert f"{segment(tmp_path, 2)} is missing" in warnings_of(caplog)
    log.append([b"x"])
    log.close()
    assert reopen(tmp_path) == (None, RECORDS + [b"x"])


def test_missing_first_segment_keeps_nothing_after_the_snapshot(tmp_path, caplog):
    write_log(tmp_path, [RECORDS])
    segment(tmp_path).rename(segment(tmp_path, 2))
    assert reopen(tmp_path) == (None, [])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["LOCK", "log.000001"]
    assert f"{segment(tmp_path)} is missing" in warnings_of(caplog)


# -- fsync policies ---------------------------------------------------------------------------


def count_syncs(monkeypatch) -> list[int]:
    calls: list[int] = []
    monkeypatch.setattr(log_module, "_datasync", calls.append)
    return calls


def test_fsync_always_syncs_every_append(tmp_path, monkeypatch):
    log, _, _ = opened(tmp_path, fsync="always")
    calls = count_syncs(monkeypatch)
    log.append([b"a"])
    log.append([b"b", b"c"])
    assert len(calls) == 2
    assert log.maybe_sync(100.0) is False


def test_fsync_everysec_syncs_at_most_once_a_second_when_dirty(tmp_path, monkeypatch):
    log, _, _ = opened(tmp_path, fsync="everysec")
    calls = count_syncs(monkeypatch)
    assert log.maybe_sync(10.0) is False  # nothing written
    log.append([b"a"])
    assert calls == []
    assert log.maybe_sync(10.0) is True
    log.append([b"b"])
    assert log.maybe_sync(10.9) is False
    assert log.maybe_sync(11.0) is True
    assert log.maybe_sync(15.0) is False  # clean
    log.append([b"c"])
    log.sync()
    assert log.maybe_sync(20.0) is False
    assert len(calls) == 3


def test_a_detached_everysec_sync_is_due_when_maybe_sync_would_sync(tmp_path, monkeypatch):
    """The background fsync (the member runs it in a thread) follows everysec's rule: once a
    second, only when something was written, never under the other policies."""
    clock = IoClock()
    log, _, _ = opened(tmp_path, fsync="everysec")
    calls = count_syncs(monkeypatch)
    assert log.detach_sync(10.0, clock) is None  # nothing written
    log.append([b"a"])
    sync = log.detach_sync(10.0, clock)
    assert sync is not None and calls == []  # nothing synced until it runs
    log.append([b"b"])
    assert log.detach_sync(10.9, clock) is None  # within the second
    sync.run()
    assert calls == [sync.fd]
    assert log.detach_sync(11.0, clock) is not None  # "b" came after the first one started
    assert log.detach_sync(12.5, clock) is None  # clean
    log.close()
    for policy in ("always", "no"):
        other, _, _ = opened(tmp_path / policy, fsync=policy)
        other.append([b"a"])
        assert other.detach_sync(100.0, clock) is None
        other.close()


def test_a_detached_sync_survives_a_rotation_and_closes_its_descriptor(tmp_path, monkeypatch):
    """It syncs its own duplicate of the segment's descriptor: a rotation meanwhile (a snapshot
    starting) cannot take the file from under it, and the duplicate is closed once it ran."""
    clock = IoClock()
    log, _, _ = opened(tmp_path, fsync="everysec")
    log.append([b"a" * 100])
    sync = log.detach_sync(10.0, clock)
    log.rotate()  # closes the segment's own descriptor
    seen = []
    monkeypatch.setattr(log_module, "_datasync", lambda fd: seen.append((os.fstat(fd).st_size, clock.busy)))
    sync.run()
    (size, busy), = seen
    assert size > 100  # the old segment, with the record
    assert busy is not None and busy[0].startswith("fsync")  # timed on its clock (for the watchdog)
    assert clock.busy is None
    with pytest.raises(OSError):
        os.fstat(sync.fd)
    log.close()


def test_a_failed_detached_sync_makes_the_log_unusable(tmp_path, monkeypatch):
    log, _, _ = opened(tmp_path, fsync="everysec")
    log.append([b"x"])
    sync = log.detach_sync(10.0, IoClock())

    def broken(fd):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(log_module, "_datasync", broken)
    with pytest.raises(OSError) as failed:
        sync.run()
    log.sync_failed(failed.value)
    with pytest.raises(LocalProtocolError, match="I/O error"):
        log.append([b"y"])
    log.close()


def test_fsync_no_leaves_it_to_the_os(tmp_path, monkeypatch):
    log, _, _ = opened(tmp_path, fsync="no")
    calls = count_syncs(monkeypatch)
    log.append([b"a"])
    assert log.maybe_sync(10.0) is False
    assert calls == []
    log.close()  # a clean shutdown still syncs
    assert len(calls) == 1


def test_unknown_fsync_policy_is_refused(tmp_path):
    with pytest.raises(ValueError, match="always, everysec, no; got 'sometimes'"):
        DurableLog(tmp_path / "data", fsync="sometimes")
    assert not (tmp_path / "data").exists()


# -- the directory lock -----------------------------------------------------------------------


def test_second_opener_is_refused_until_first_closes(tmp_path):
    first = DurableLog(tmp_path)
    with pytest.raises(DirectoryInUse, match=f"pid {os.getpid()}"):
        DurableLog(tmp_path)
    first.close()
    DurableLog(tmp_path).close()


def test_lock_file_left_by_a_dead_process_does_not_block(tmp_path):
    (tmp_path / "LOCK").write_text("99999999\n")
    with DurableLog(tmp_path) as log:
        assert log.recover() == (None, [])


def test_a_snapshot_given_in_parts_is_their_concatenation(tmp_path):
    """A large state is stored without being copied into one buffer: the parts are written in
    turn and recovery reads back exactly their concatenation (the encoding packb would give)."""
    from catena.chain.snapshotter import snapshot_parts

    for n in (0, 255, 256, 65_535, 65_536, 3 << 20):
        state = bytes(range(256)) * (n // 256) + b"x" * (n % 256)
        parts = snapshot_parts(7, 1 << 40, state)
        assert b"".join(parts) == msgpack.packb([7, 1 << 40, state], use_bin_type=True)
        assert parts[-1] is state
    log, _, _ = opened(tmp_path)
    log.append([b"before"])
    log.snapshot(parts)
    log.append([b"after"])
    log.close()
    blob, records = reopen(tmp_path)
    assert msgpack.unpackb(blob) == [7, 1 << 40, state] and records == [b"after"]


def test_a_large_batch_is_written_without_joining_and_reads_back(tmp_path):
    from catena.chain.log import JOIN_MAX

    big = b"v" * (JOIN_MAX + 1)
    log, _, _ = opened(tmp_path)
    log.append([b"a", big, b"b"])
    log.close()
    assert reopen(tmp_path) == (None, [b"a", big, b"b"])
