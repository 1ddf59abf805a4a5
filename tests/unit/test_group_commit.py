"""Under --fsync always a serving member runs the log's fdatasync in a thread while its loop serves
on (a group commit: the next batch gathers meanwhile). Nothing acknowledges an entry before its
fdatasync, a read that may see an entry is answered after it, and a failed one stops the member."""

from __future__ import annotations

import asyncio
import errno
import threading

import pytest

from catena.chain import disk
from catena.chain import log as log_module
from catena.resp.codec import OK
from catena.resp.server import Client, Deferred

from member_runs import started_member


@pytest.fixture
def held_syncs(monkeypatch):
    """The log's fdatasyncs run off the loop wait for `opened`; `synced` counts those done; `fail`
    makes them EIO."""
    opened, synced, fail = threading.Event(), [], []
    real = log_module._datasync

    def held(fd: int) -> None:
        if threading.current_thread() is threading.main_thread():  # a segment's, a snapshot's
            return real(fd)
        opened.wait(20)
        if fail:
            raise OSError(errno.EIO, "Input/output error")
        real(fd)
        synced.append(fd)

    monkeypatch.setattr(log_module, "_datasync", held)
    yield opened, synced, fail
    opened.set()  # (a failed test's sync thread must not wait on)


async def sole_member(tmp_path):
    node, task = await started_member(tmp_path / "member", fsync="always")
    node._view_cmd(None, [b"MEMBER.VIEW", b"0", b"1", b"-", node.me.encode()])
    return node, task, Client(1, "127.0.0.1:1", True)


async def until(predicate, what: str) -> None:
    async with asyncio.timeout(20):
        while not predicate():
            await asyncio.sleep(0.001)
    assert predicate(), what


def test_replies_and_reads_wait_for_the_fdatasync_while_the_loop_serves(tmp_path, held_syncs):
    opened, synced, _ = held_syncs

    async def main():
        node, task, client = await sole_member(tmp_path)
        try:
            await exchange(node, client)
        finally:
            opened.set()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def exchange(node, client):
        first = node._data(client, [b"SET", b"k", b"v1"])
        await until(lambda: node._syncing is not None, "the first batch's fdatasync to start")
        # the loop is free: it takes more commands, but acknowledges nothing of the batch
        read = node._read(client, [b"GET", b"k"])
        second = node._data(client, [b"SET", b"k", b"v2"])
        for _ in range(20):
            await asyncio.sleep(0)
        assert not first.done and not second.done
        assert type(read) is Deferred and not read.done  # it would see v1, not yet stored
        opened.set()
        await until(lambda: first.done and read.done and second.done, "the replies")
        assert (first.value, read.value, second.value) == (OK, b"v1", OK)
        assert len(synced) >= 2  # the second SET's batch had an fdatasync of its own
        assert node._read(client, [b"GET", b"k"]) == b"v2"  # nothing owed: answered at once

    asyncio.run(main())


def test_a_failed_fdatasync_in_its_thread_stops_the_member_unacknowledged(tmp_path, held_syncs, monkeypatch, caplog):
    opened, _, fail = held_syncs
    codes: list[int] = []

    def fake_exit(code: int):  # (SystemExit, unlike other exceptions, ends the event loop)
        codes.append(code)
        raise SystemExit(code)

    monkeypatch.setattr(disk, "_exit", fake_exit)
    written: list[Deferred] = []

    async def main():
        node, _, client = await sole_member(tmp_path)
        written.append(node._data(client, [b"SET", b"k", b"v1"]))
        await until(lambda: node._syncing is not None, "the fdatasync to start")
        fail.append(True)
        opened.set()
        await asyncio.sleep(30)  # the failed fdatasync ends the loop long before

    with pytest.raises(SystemExit):
        asyncio.run(main())
    assert codes == [disk.EXIT_DISK_FAULT]
    assert not written[0].done  # never acknowledged
    assert "syncing the log" in caplog.text and "EIO" in caplog.text
