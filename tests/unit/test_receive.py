"""A state transfer received without holding the loop: the frames behind a message that is still
being handled wait for it, in order (links.PeerInbound); a Snapshot is loaded across loop turns
(chain/receive.py); and the received state is stored from a thread while the member serves,
with nothing appended to the log until it is stored, so a crash at any point of the store
recovers the older snapshot and records, or the new snapshot and what came after it."""

from __future__ import annotations

import asyncio
import shutil
import threading
from types import SimpleNamespace

import msgpack
import pytest
from member_runs import started_member

from catena.chain import messages, receive
from catena.chain.links import PeerInbound
from catena.chain.log import SNAPSHOT_TMP_NAME, DurableLog
from catena.chain.messages import Ack, Snapshot
from catena.chain.node import _Snapshot
from catena.chain.state import SET, KVState
from catena.chain.state_load import StateLoad
from catena.effects import Persist
from catena.errors import RemoteProtocolError
from catena.loopback import HOST
from catena.view import View


class _Transport:
    """What PeerInbound uses of a transport (no pause_reading: the link must keep reading)."""

    def __init__(self):
        self.closed = False

    def get_extra_info(self, name):
        return None

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True


def _frames(*seqs: int) -> bytes:
    return b"".join(messages.pack(Ack(1, seq)) for seq in seqs)


async def _turns(n: int) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


def test_frames_behind_a_message_being_handled_wait_for_it_in_order():
    async def main():
        got, transport = [], _Transport()
        handled = asyncio.get_running_loop().create_future()

        def deliver(sender, msg):
            got.append(msg.seq)
            return handled if msg.seq == 1 else None

        inbound = PeerInbound(transport, "a", deliver)
        inbound.feed(_frames(1, 2, 3))
        inbound.feed(_frames(4))  # the link keeps reading meanwhile
        await _turns(3)
        assert got == [1]
        handled.set_result(None)
        await _turns(3)
        assert got == [1, 2, 3, 4]
        inbound.feed(_frames(5))
        assert got == [1, 2, 3, 4, 5]
        assert not transport.closed

    asyncio.run(main())


def test_frames_go_on_a_turns_worth_at_a_time(monkeypatch):
    from catena.chain import links
    monkeypatch.setattr(links, "DELIVER_S", 0.0)  # a frame a turn

    async def main():
        got = []
        inbound = PeerInbound(_Transport(), "a", lambda sender, msg: got.append(msg.seq))
        inbound.feed(_frames(1, 2, 3))
        assert got == [1]
        await _turns(5)
        assert got == [1, 2, 3]

    asyncio.run(main())


def test_a_message_whose_handling_fails_closes_the_link():
    async def main():
        got, transport = [], _Transport()
        handled = asyncio.get_running_loop().create_future()
        inbound = PeerInbound(transport, "a", lambda sender, msg: got.append(msg.seq) or handled)
        inbound.feed(_frames(1, 2))
        handled.set_exception(RemoteProtocolError("snapshot from a is not a state dump"))
        await _turns(3)
        assert transport.closed and got == [1]

    asyncio.run(main())


def _big_state(n: int) -> KVState:
    state = KVState()
    for i in range(n):
        state.apply((SET, b"key:%08d" % i, b"v" * 16, None, 0), 0)
    return state


def test_a_snapshot_is_loaded_across_loop_turns():
    async def main():
        turns = 0

        async def count():
            nonlocal turns
            while True:
                await asyncio.sleep(0)
                turns += 1

        state = _big_state(100_000)
        counter = asyncio.create_task(count())
        msg = await receive.loaded("a", Snapshot(3, 2, 500, 480, state.dump()))
        counter.cancel()
        assert type(msg.state) is StateLoad and msg.state.done
        assert msg.state.state.data == state.data and msg[:4] == (3, 2, 500, 480)
        return turns

    assert asyncio.run(main()) > 1  # (about 100 ms of loading in 5 ms slices)


def test_a_snapshot_is_loaded_in_slices_spaced_to_its_share_of_the_loop(monkeypatch):
    """After each slice the load pauses for (1/SHARE - 1) times as long: flat out, it took a core
    from the members serving beside it."""
    pauses: list[float] = []
    real_sleep = asyncio.sleep

    async def sleep(delay):
        pauses.append(delay)
        await real_sleep(delay)

    monkeypatch.setattr(receive, "asyncio", SimpleNamespace(sleep=sleep))
    state = _big_state(20_000)
    slices = []
    msg = asyncio.run(receive.loaded("a", Snapshot(3, 2, 500, 480, state.dump()), lambda: slices.append(1)))
    assert msg.state.done
    assert pauses and min(pauses) >= receive.SLICE_S * (1 / receive.SHARE - 1) * 0.999
    assert len(slices) == len(pauses)  # each slice told (MEMBER.STATUS `state_transfer` at the learner)


def test_a_snapshot_that_is_no_state_dump_is_a_protocol_error():
    with pytest.raises(RemoteProtocolError, match="not a state dump"):
        asyncio.run(receive.loaded("a", Snapshot(3, 2, 500, 480, msgpack.packb([1, 2]))))


def _recovered(directory, copy_to):
    """The log as a crash at this instant leaves it: a copy of the directory, recovered."""
    shutil.copytree(directory, copy_to)
    with DurableLog(copy_to) as log:
        return log.recover()


def test_a_received_state_is_stored_from_a_thread_and_nothing_is_logged_before_it(tmp_path):
    async def main():
        node, task = await started_member(tmp_path / "member")
        loop = asyncio.get_running_loop()
        node._execute([Persist([(1, 1, 0, None, (SET, b"old", b"1", None, 0))])])
        old_record = msgpack.packb([(1, 1, 0, None, (SET, b"old", b"1", None, 0))], use_bin_type=True)

        written, release, stored = threading.Event(), threading.Event(), asyncio.Event()
        write_snapshot = node.log.write_snapshot

        def blocked_write(first, blob):  # the thread stops once snapshot.tmp is written and fsynced
            write_snapshot(first, blob)
            written.set()
            release.wait(20)

        node.log.write_snapshot = blocked_write
        store_done = node._stored
        node._stored = lambda size, error: (store_done(size, error), stored.set())
        state = _big_state(1000).dump()
        node._execute([_Snapshot(2, 500, state)])
        after = (2, 501, 0, None, (SET, b"new", b"2", None, 0))
        node._execute([Persist([after])])  # waits behind the store
        assert await loop.run_in_executor(None, written.wait, 20)

        reader, writer = await asyncio.open_connection(*node.listen.rsplit(":", 1))
        writer.write(b"PING\r\n")
        async with asyncio.timeout(20):
            assert await reader.readline() == b"+PONG\r\n"  # the loop serves meanwhile
        writer.close()

        assert (tmp_path / "member" / "log" / SNAPSHOT_TMP_NAME).exists()
        assert _recovered(tmp_path / "member" / "log", tmp_path / "crash1") == (None, [old_record])

        release.set()
        async with asyncio.timeout(20):
            await stored.wait()
        blob, records = _recovered(tmp_path / "member" / "log", tmp_path / "crash2")
        assert msgpack.unpackb(blob) == [2, 500, state]
        assert records == [msgpack.packb([after], use_bin_type=True)]  # after the snapshot, not before
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())


def test_a_member_installs_a_snapshot_from_its_predecessor_once_loaded_then_stores_it(tmp_path):
    async def main():
        node, task = await started_member(tmp_path / "member")
        node._on_view(View(0, 3, (f"{HOST}:1",), learner=node.me))  # a learner behind 127.0.0.1:1
        stored = asyncio.Event()
        store_done = node._stored
        node._stored = lambda size, error: (store_done(size, error), stored.set())
        state = _big_state(50_000)
        installed = node._on_peer_message(f"{HOST}:1", Snapshot(3, 2, 500, 480, state.dump()))
        assert isinstance(installed, asyncio.Future)  # the link's later frames wait for it
        assert node.replica.last_seq == 0 and not installed.done()  # loading, a slice per turn
        async with asyncio.timeout(20):
            await installed
            await stored.wait()
        assert (node.replica.last_epoch, node.replica.last_seq) == (2, 500)
        assert node.replica.state.data == state.data and node.replica.state.unindexed == []
        assert node.log.snapshot_bytes() > len(state.dump())
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
