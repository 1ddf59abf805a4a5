"""A member stops on a disk fault (catena.chain.disk and the member shell's persistence paths):
a failed append, fsync, snapshot or epoch write executes no later effect of its turn and exits
with a CRITICAL message; a stalled fsync trips the watchdog; recovery keeps the longest
contiguous history. No event loop: the shell's effect executor is called directly, and the
process exit is replaced by an exception."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import threading
import time

import msgpack
import pytest

from catena.chain import disk, info, messages
from catena.chain import log as log_module
from catena.chain.links import PeerLinks, _Outbound
from catena.chain.log import DurableLog
from catena.chain.node import MemberNode, contiguous
from catena.chain.replica import Replica
from catena.effects import Persist, PersistSnapshot, Reply, Send
from catena.errors import CorruptLog
from catena.view import View

NOW = 1000.0
ME = "127.0.0.1:7001"


class Exited(BaseException):
    """What disk._exit raises in these tests instead of ending the process."""


@pytest.fixture
def exits() -> list[int]:
    """The exit codes asked for; its own MonkeyPatch, so a test's monkeypatch.undo() keeps it."""
    codes: list[int] = []

    def fake_exit(code: int):
        codes.append(code)
        raise Exited(code)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(disk, "_exit", fake_exit)
        yield codes


class Recorder:
    """Stands in for the peer links and for a client's reply token."""

    def __init__(self):
        self.sent, self.resolved = [], []

    def send(self, to, frame):
        self.sent.append(to)

    def flush(self):
        pass

    def resolve(self, value):
        self.resolved.append(value)


def entries(n: int, first_key: int = 1) -> list:
    """The entries a sole-member chain makes of n SETs k<i> v<i>."""
    r = Replica("a", b"a/1")
    r.on_view(View(0, 1, ("a",), None), NOW)
    out = []
    for i in range(first_key, first_key + n):
        r.on_client(object(), [b"SET", b"k%d" % i, b"v%d" % i], NOW)
        out += [e for fx in r.flush() if type(fx) is Persist for e in fx.entries]
    return out


def enospc(*args):
    raise OSError(errno.ENOSPC, "No space left on device")


def eio(*args):
    raise OSError(errno.EIO, "Input/output error")


def node_at(tmp_path, fsync: str = "everysec") -> tuple[MemberNode, Recorder]:
    node = MemberNode(ME, tmp_path / "member", fsync=fsync)
    node.links = Recorder()
    return node, node.links


def critical(caplog) -> str:
    return "\n".join(r.getMessage() for r in caplog.records if r.levelno == logging.CRITICAL)


# -- fail-stop ------------------------------------------------------------------------------------


@pytest.mark.parametrize("fsync, fault, name, what", [
    ("everysec", "write", "ENOSPC", "appending to the log"),  # the disk is full
    ("always", "fdatasync", "EIO", "syncing the log"),  # the disk is failing
])
def test_a_failed_persist_executes_nothing_after_it_and_exits(tmp_path, monkeypatch, exits, caplog, fsync, fault,
                                                              name, what):
    node, links = node_at(tmp_path, fsync)
    token = Recorder()
    if fault == "write":
        monkeypatch.setattr(os, "write", enospc)
    else:
        monkeypatch.setattr(log_module, "_datasync", eio)
    turn = [Persist(entries(3)), Send("127.0.0.1:7002", messages.Ack(1, 3)), Reply(token, b"OK")]
    with pytest.raises(Exited):
        node._execute(turn)
    monkeypatch.undo()
    assert exits == [disk.EXIT_DISK_FAULT]
    assert links.sent == [] and token.resolved == []  # no Append/Ack to a peer, no reply to a client
    message = critical(caplog)
    assert str(tmp_path / "member") in message and name in message and what in message
    assert "restart the member with the same --data-dir" in message
    node.log.close()


class _Wire:
    """A peer connection's writer: records each write on `order`."""

    def __init__(self, order: list, to: str):
        self.order, self.to = order, to

    def is_closing(self) -> bool:
        return False

    def writelines(self, parts) -> None:
        self.order.append(f"send to {self.to}")


def wired(order: list, *peers: str) -> PeerLinks:
    """Peer links (the real ones: a turn's frames leave at its end) up to `peers`."""
    links = PeerLinks(ME, group=None, on_link=lambda addr, up: None)
    for to in peers:
        link = links.links[to] = _Outbound(links, to)
        link.writer, link.up = _Wire(order, to), True
    return links


def test_under_fsync_always_the_forward_overtakes_the_fdatasync_and_nothing_else_does(tmp_path, monkeypatch,
                                                                                    exits):
    """The members' fsyncs overlap: a batch is forwarded to the successor (written to its
    connection) before its own fdatasync; the ack and the reply wait for it, and a failed one
    stops them (the successor's copy acknowledges nothing by itself: a commit needs every
    member's ack)."""
    node, _ = node_at(tmp_path, "always")
    order = []
    monkeypatch.setattr(log_module, "_datasync", lambda fd: order.append("fdatasync"))
    succ, pred = "127.0.0.1:7002", "127.0.0.1:7001"
    node.links = wired(order, succ, pred)

    def turn(first_key: int, token) -> list:
        batch = entries(1, first_key)
        return [Persist(batch), Send(succ, messages.Append(1, 0, tuple(batch))), Send(pred, messages.Ack(1, 3)),
                Reply(token, b"OK")]

    async def execute(effects) -> None:
        node._execute(effects)
        await asyncio.sleep(0)  # the turn ends: what it sent leaves

    token = Recorder()
    asyncio.run(execute(turn(1, token)))
    assert order == [f"send to {succ}", "fdatasync", f"send to {pred}"] and token.resolved == [b"OK"]
    monkeypatch.setattr(log_module, "_datasync", eio)
    order.clear()
    token = Recorder()
    with pytest.raises(Exited):
        asyncio.run(execute(turn(2, token)))
    monkeypatch.undo()
    assert order == [f"send to {succ}"] and token.resolved == []  # forwarded; no ack, no reply
    assert exits == [disk.EXIT_DISK_FAULT]
    node.log.close()


def test_the_log_takes_no_later_record_after_a_failed_append(tmp_path, monkeypatch, exits):
    """What the full disk did: a failed append, then a small record that fitted, its ack
    covering the records lost before it. Here even a shell that went on could append nothing."""
    node, links = node_at(tmp_path)
    monkeypatch.setattr(os, "write", enospc)
    with pytest.raises(Exited):
        node._execute([Persist(entries(3))])
    monkeypatch.undo()
    with pytest.raises(Exited):
        node._execute([Persist(entries(1, first_key=4)), Send("127.0.0.1:7002", messages.Ack(1, 4))])
    assert links.sent == [] and exits == [disk.EXIT_DISK_FAULT] * 2
    node.log.close()


def test_a_failed_snapshot_transfer_stops_before_the_sends_after_it(tmp_path, monkeypatch, exits, caplog):
    node, links = node_at(tmp_path)
    monkeypatch.setattr(os, "write", enospc)
    with pytest.raises(Exited):
        node._execute([PersistSnapshot(node.replica.state.dump()), Send("127.0.0.1:7002", messages.Ack(1, 3))])
    monkeypatch.undo()
    assert links.sent == [] and "writing a snapshot" in critical(caplog)
    node.log.close()


def test_a_failed_epoch_write_stops(tmp_path, monkeypatch, exits, caplog):
    node, _ = node_at(tmp_path)
    monkeypatch.setattr(os, "fsync", eio)
    with pytest.raises(Exited):
        node._save_epoch(7)
    monkeypatch.undo()
    assert "writing epoch" in critical(caplog) and "EIO" in critical(caplog)
    node.log.close()


# -- fail-slow ------------------------------------------------------------------------------------


def ticks(dog: disk.StallWatchdog, start: float, stop: float) -> float | None:
    """Tick `dog` every tick_s from `start` to `stop`; when it fired, or None."""
    now = start
    while now <= stop:
        if dog.check(now):
            return now
        now += dog.tick_s
    return None


def test_watchdog_fires_only_past_the_bound():
    clock, stalls = disk.IoClock(), []
    dog = disk.StallWatchdog(clock, 5.0, lambda what, s: stalls.append((what, s)))
    assert ticks(dog, 100.0, 200.0) is None  # nothing in progress
    clock.busy = ("fsync of the log", 200.0)
    fired = ticks(dog, 200.0, 210.0)
    assert fired is not None and 205.0 < fired <= 205.0 + 2 * dog.tick_s
    assert stalls[0][0] == "fsync of the log" and stalls[0][1] > 5.0
    clock.busy = ("fsync of the log", 300.0)  # another one, which returns in time
    assert ticks(dog, 300.0, 304.5) is None
    clock.busy = None
    assert not disk.StallWatchdog(clock, 0, stalls.append).check(1e9)  # 0: never


def test_watchdog_does_not_count_time_the_whole_process_was_stopped():
    clock, stalls = disk.IoClock(), []
    dog = disk.StallWatchdog(clock, 5.0, lambda what, s: stalls.append((what, s)))
    clock.busy = ("write to the log", 100.0)
    assert ticks(dog, 100.0, 101.0) is None
    assert not dog.check(160.0)  # SIGSTOPped for a minute in the middle of the write
    assert ticks(dog, 160.0 + dog.tick_s, 163.0) is None  # it returns 3 s later: no stall
    assert ticks(dog, 163.0, 170.0) is not None  # but it still counts the time it runs


def test_a_hung_fsync_trips_the_watchdog_thread(tmp_path, monkeypatch):
    log = DurableLog(tmp_path, fsync="always")
    log.recover()
    fired = threading.Event()
    stalls = []

    def on_stall(what, seconds):
        stalls.append((what, seconds))
        fired.set()

    def hung_fsync(fd):  # returns only once the watchdog has fired (or the test gives up)
        assert fired.wait(30), "the watchdog did not fire"

    monkeypatch.setattr(log_module, "_datasync", hung_fsync)
    dog = disk.StallWatchdog(log.clock, 0.05, on_stall)
    dog.start()
    try:
        log.append([b"x"])
    finally:
        dog.stop()
        monkeypatch.undo()
        log.close()
    assert stalls[0][0] == "fsync of the log" and stalls[0][1] > 0.05


def watched(node, dog, monkeypatch, main):
    """`main()` run with `dog` watching; then the patches undone and the node's log closed."""
    dog.start()
    try:
        return asyncio.run(main())
    finally:
        dog.stop()
        monkeypatch.undo()
        node.log.close()


def test_under_everysec_the_members_fsync_runs_beside_its_loop_and_its_hang_is_caught(tmp_path, monkeypatch):
    """The once-a-second fdatasync runs in a thread: the loop keeps turning while it is in the
    kernel, and a hung one still trips the member's watchdog (the stall bound)."""
    node = MemberNode(ME, tmp_path / "member", fsync="everysec", disk_stall_timeout_s=0.2)
    fired = threading.Event()
    stalls = []
    node.sync_watchdog.on_stall = lambda what, seconds: (stalls.append((what, seconds)), fired.set())

    def hung_fsync(fd):
        assert fired.wait(30), "the watchdog did not fire"

    async def main() -> int:
        sync = asyncio.create_task(node._sync_log())
        turns = 0
        while not sync.done():
            await asyncio.sleep(0.005)
            turns += 1
        await sync
        return turns

    node.log.append([b"x"])
    monkeypatch.setattr(log_module, "_datasync", hung_fsync)
    turns = watched(node, node.sync_watchdog, monkeypatch, main)
    assert stalls and stalls[0][0] == "fsync of the log" and stalls[0][1] > 0.2
    assert turns >= 10  # the loop ran on while the fsync hung (0.2 s at least)


def test_a_failed_background_fsync_stops_the_member(tmp_path, monkeypatch, exits, caplog):
    node, _ = node_at(tmp_path)
    node.log.append([b"x"])
    monkeypatch.setattr(log_module, "_datasync", eio)
    with pytest.raises(Exited):
        asyncio.run(node._sync_log())
    assert "syncing the log" in critical(caplog) and exits == [disk.EXIT_DISK_FAULT]
    monkeypatch.undo()
    with pytest.raises(Exception, match="I/O error"):
        node.log.append([b"y"])  # nothing is written after a failed fsync
    node.log.close()


def test_the_member_stops_on_a_stall_naming_the_bound(tmp_path, exits, caplog):
    node = MemberNode(ME, tmp_path / "member", disk_stall_timeout_s=2.5)
    with pytest.raises(Exited):
        node._disk_stalled("fsync of the log", 2.6)
    message = critical(caplog)
    assert "fsync of the log" in message and "2.5 s bound (--disk-stall-timeout-ms)" in message
    assert exits == [disk.EXIT_DISK_FAULT]
    node.log.close()


# -- recovery -------------------------------------------------------------------------------------


def test_contiguous_stops_at_the_first_gap():
    e = [(1, s) for s in (1, 2, 3, 5, 6)]
    assert contiguous(e, 0) == 3
    assert contiguous(e[3:], 3) == 0
    assert contiguous([(1, s) for s in (2, 3, 4, 5)], 3) == 4  # repeats of what the snapshot holds
    assert contiguous([], 9) == 0


def test_recovery_keeps_the_history_before_a_hole_and_cuts_the_log_there(tmp_path, caplog):
    """The log a full disk left before this fix: seqs 1-3, a batch lost, then 5-6."""
    made = entries(6)
    with DurableLog(tmp_path / "member" / "log") as log:
        log.recover()
        log.append([msgpack.packb(made[:3], use_bin_type=True)])
        log.append([msgpack.packb(made[4:], use_bin_type=True)])
    node, _ = node_at(tmp_path)
    assert node.replica.last_seq == 3
    assert sorted(node.replica.state.data) == [b"k1", b"k2", b"k3"]
    assert "skips from seq 3 to seq 5" in "\n".join(r.getMessage() for r in caplog.records)
    node.log.close()
    again, _ = node_at(tmp_path)  # the cut is on disk: the records after the hole are gone
    assert again.replica.last_seq == 3
    again._execute([Persist(made[3:4])])  # seq 4, as the chain sends it
    again.log.close()
    third, _ = node_at(tmp_path)
    assert third.replica.last_seq == 4 and b"k4" in third.replica.state.data
    third.log.close()


def test_a_damaged_snapshot_stops_the_member_saying_what_to_do(tmp_path):
    with DurableLog(tmp_path / "member" / "log") as log:
        log.recover()
        log.snapshot(msgpack.packb([1, 0, Replica("a", b"a/1").state.dump()], use_bin_type=True))
    snapshot = tmp_path / "member" / "log" / "snapshot"
    data = bytearray(snapshot.read_bytes())
    data[-1] ^= 0x40
    snapshot.write_bytes(bytes(data))
    with pytest.raises(CorruptLog) as raised:
        MemberNode(ME, tmp_path / "member")
    assert f"{snapshot}: checksum mismatch" in str(raised.value)
    assert f"move {tmp_path / 'member'} aside" in str(raised.value)


def test_a_snapshot_write_that_hangs_trips_the_members_watchdog(tmp_path, monkeypatch):
    """The snapshot is written by a thread of its own while the loop serves; a write there that
    hangs (a fail-slow disk) is bounded too: the member stops rather than wait on it forever."""
    node = MemberNode(ME, tmp_path / "member", fsync="everysec", disk_stall_timeout_s=0.2)
    fired = threading.Event()
    stalls = []
    node.snapshot_watchdog.on_stall = lambda what, seconds: (stalls.append((what, seconds)), fired.set())
    real_write_all = log_module.write_all

    def hung_write(fd, buf, clock, what):
        if what == "write of the snapshot":  # (the loop's log writes go on as usual)
            clock.busy = (what, time.monotonic())
            assert fired.wait(30), "the watchdog did not fire"
        real_write_all(fd, buf, clock, what)

    async def main() -> float:
        node._start_snapshot()
        while (took := node._snapshotting.poll()) is None:
            await asyncio.sleep(0.01)
        return took

    node.replica.state.put(b"k", b"v")
    monkeypatch.setattr(log_module, "write_all", hung_write)
    took = watched(node, node.snapshot_watchdog, monkeypatch, main)
    assert stalls and stalls[0][0] == "write of the snapshot" and stalls[0][1] > 0.2
    assert took > 0.2


def test_info_says_when_a_snapshot_is_under_way(tmp_path):
    """INFO persistence's rdb_bgsave_in_progress, as Redis's tools read it: 1 from the snapshot's
    start until it is installed."""
    node = MemberNode(ME, tmp_path / "member", fsync="everysec")
    for i in range(5_000):
        node.replica.state.put(b"k%d" % i, b"v")

    def saving() -> bytes:
        return [line for line in info.render(node, [b"persistence"]).splitlines()
                if line.startswith(b"rdb_bgsave_in_progress:")][0]

    async def main() -> list[bytes]:
        seen = [saving()]
        node._start_snapshot()
        seen.append(saving())
        while node._snapshotting is not None:  # (the member's ticker polls it so)
            await asyncio.sleep(0.01)
            node._poll_snapshotting()
        seen.append(saving())
        return seen

    try:
        assert asyncio.run(main()) == [b"rdb_bgsave_in_progress:0", b"rdb_bgsave_in_progress:1",
                                       b"rdb_bgsave_in_progress:0"]
    finally:
        node.log.close()
