"""Snapshots taken while the member serves (catena.chain.snapshotter) and the log steps they use
(rotate, write_snapshot, install_snapshot): every point of the sequence recovers a history
with nothing missing and nothing applied twice."""

from __future__ import annotations

import asyncio
import time

import msgpack
import pytest

from catena.chain import snapshotter
from catena.chain.log import SNAPSHOT_TMP_NAME, DurableLog
from catena.chain.state import SET, KVState
from catena.chain.state_dump import StateDump


def reopen(directory):
    with DurableLog(directory) as log:
        return log.recover()


def state_with(n: int) -> KVState:
    state = KVState()
    for i in range(n):
        state.apply((SET, b"k%d" % i, b"v%d" % i, None, 0), 0)
    return state


async def wait_done(snap, timeout: float = 30.0) -> float:
    deadline = time.monotonic() + timeout
    while (took := snap.poll()) is None:
        assert time.monotonic() < deadline, "the snapshot did not finish"
        await asyncio.sleep(0.01)
    return took


def test_rotate_then_install_covers_the_older_segments_only(tmp_path):
    log = DurableLog(tmp_path)
    log.recover()
    log.append([b"a", b"b"])
    first = log.rotate()
    log.append([b"c"])
    assert log.size_bytes() > 0
    log.write_snapshot(first, [b"state ", b"after b"])
    log.close()
    # A crash before the install: the older snapshot (none) and every segment.
    assert reopen(tmp_path) == (None, [b"a", b"b", b"c"])
    assert not (tmp_path / SNAPSHOT_TMP_NAME).exists()

    log = DurableLog(tmp_path)
    log.recover()
    first = log.rotate()
    log.append([b"d"])
    log.write_snapshot(first, b"state after c")
    before = log.size_bytes()
    log.install_snapshot(first)
    assert 0 < log.size_bytes() < before  # only what came after the rotation counts now
    assert log.snapshot_bytes() > 0
    log.append([b"e"])
    log.close()
    assert reopen(tmp_path) == (b"state after c", [b"d", b"e"])


def test_a_live_snapshot_is_the_state_as_of_its_start_while_ops_go_on(tmp_path):
    """The loop goes on applying and logging while the snapshot is dumped a slice per turn:
    the snapshot holds the state of its start, the log every record after the rotation."""
    log = DurableLog(tmp_path)
    log.recover()
    log.append([b"r1"])
    state = state_with(20_000)
    at_start = state.dump()

    async def main():
        snap = snapshotter.LiveSnapshot(log, 3, 1000, state)
        turns = 0
        while snap.poll() is None:  # a write per turn, before the dump is done and after
            state.apply((SET, b"k%d" % turns, b"changed", None, 0), 0)
            state.apply((SET, b"later%d" % turns, b"x", None, 0), 0)
            turns += 1
            await asyncio.sleep(0)
        return turns

    turns = asyncio.run(main())
    assert turns > 1  # in several turns: the loop was not held for the whole state
    log.append([b"r2"])
    log.close()
    blob, records = reopen(tmp_path)
    last_epoch, last_seq, dump = msgpack.unpackb(blob, raw=True)
    assert (last_epoch, last_seq) == (3, 1000)
    assert msgpack.unpackb(dump, raw=True, strict_map_key=False) == msgpack.unpackb(at_start, raw=True,
                                                                                     strict_map_key=False)
    assert records == [b"r2"]


def test_an_abandoned_snapshot_leaves_the_older_snapshot_and_every_record(tmp_path):
    log = DurableLog(tmp_path)
    log.recover()
    log.snapshot(b"old state")
    log.append([b"r1"])
    state = state_with(200_000)

    async def main():
        snap = snapshotter.LiveSnapshot(log, 1, 1, state)
        await asyncio.sleep(0)
        log.append([b"r2"])
        snap.abandon()
        assert state.dumping is None

    asyncio.run(main())
    assert not (tmp_path / SNAPSHOT_TMP_NAME).exists()
    log.close()
    assert reopen(tmp_path) == (b"old state", [b"r1", b"r2"])


def test_a_snapshot_that_cannot_be_written_leaves_every_segment(tmp_path, monkeypatch):
    """A failed write (a full disk): the log keeps its segments, the next trigger tries again."""
    log = DurableLog(tmp_path)
    log.recover()
    log.snapshot(b"old state")
    log.append([b"r1"])

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(log, "write_snapshot", full)

    async def main():
        snap = snapshotter.LiveSnapshot(log, 1, 1, state_with(100))
        return await wait_done(snap)

    assert asyncio.run(main()) >= 0
    log.append([b"r2"])
    log.close()
    assert reopen(tmp_path) == (b"old state", [b"r1", b"r2"])


def test_a_snapshot_that_cannot_be_installed_stops_its_owner(tmp_path, monkeypatch):
    """Written, but the rename or the directory's fsync failed (in the thread): poll raises the
    OSError, so the member fail-stops rather than go on with a directory in doubt."""
    log = DurableLog(tmp_path)
    log.recover()
    log.append([b"r1"])

    def broken(first, clock=None):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(log, "install_files", broken)

    async def main():
        snap = snapshotter.LiveSnapshot(log, 1, 1, state_with(100))
        with pytest.raises(OSError, match="Input/output"):
            await wait_done(snap)

    asyncio.run(main())
    log.close()


def test_a_chains_members_snapshot_at_different_log_sizes(tmp_path):
    """Members log the same entries; each draws its own trigger factor, again after every
    snapshot, so that they do not snapshot at the same moment."""
    from catena.chain.node import SNAPSHOT_SPREAD, MemberNode
    from catena.loopback import HOST, free_ports

    nodes = [MemberNode(f"{HOST}:{port}", tmp_path / f"m{i}") for i, port in enumerate(free_ports(3))]
    try:
        skews = [node._snapshot_skew for node in nodes]
        assert len(set(skews)) == 3
        assert all(1.0 <= skew < 1.0 + SNAPSHOT_SPREAD for skew in skews)
        nodes[0]._snapshot_taken(4096)
        assert nodes[0]._snapshot_bytes == 4096 and nodes[0]._snapshot_skew != skews[0]
    finally:
        for node in nodes:
            node.log.close()


def spaced(steps: snapshotter.Steps) -> list[float]:
    """The pauses `steps` leaves after its slices (the delays it asks its loop for), as it runs."""
    pauses: list[float] = []
    loop = steps._loop

    class Recording:
        call_soon = staticmethod(loop.call_soon)

        @staticmethod
        def call_later(delay, callback, *args):
            pauses.append(delay)
            return loop.call_later(delay, callback, *args)

    steps._loop = Recording()
    return pauses


def test_a_live_snapshot_dumps_in_slices_spaced_to_its_share_of_the_loop(tmp_path):
    """After each slice (at least STEP_S) the dump pauses for (1/SNAPSHOT_SHARE - 1) times as long:
    flat out, snapshots of the chain's members took the cores the chain was serving on."""
    log = DurableLog(tmp_path)
    log.recover()
    state = state_with(20_000)

    async def main():
        snap = snapshotter.LiveSnapshot(log, 1, 1, state)
        pauses = spaced(snap._steps)
        await wait_done(snap)
        return pauses

    pauses = asyncio.run(main())
    log.close()
    assert pauses and min(pauses) >= snapshotter.STEP_S * (1 / snapshotter.SNAPSHOT_SHARE - 1) * 0.999


def test_steps_with_the_whole_loop_take_a_slice_every_turn():
    state = state_with(20_000)

    async def main():
        done = asyncio.get_running_loop().create_future()
        steps = snapshotter.Steps(StateDump(state), done.set_result)
        pauses = spaced(steps)
        assert await done is None
        return pauses

    assert asyncio.run(main()) == []
