"""A large value through a real member shell (in-process, real log on disk): it is logged and
snapshotted in several loop turns, with writes arriving meanwhile, and a restart recovers every
acknowledged write in order."""

from __future__ import annotations

import asyncio
import logging
import os

import redis.asyncio as aioredis

from catena.chain import node as node_mod
from catena.chain.node import MemberNode
from catena.loopback import free_ports

BIG = 3 * node_mod.BIG_EFFECT_BYTES  # above the snapshot threshold too, so a snapshot follows


def test_large_value_logged_and_snapshotted_in_turns_loses_nothing(tmp_path, monkeypatch, caplog):
    """The snapshot is taken while writes go on (snapshotter.LiveSnapshot), with no process forked."""
    addr = f"127.0.0.1:{free_ports(1)[0]}"

    def no_fork():
        raise AssertionError("a member's own snapshot forks no child")
    monkeypatch.setattr(os, "fork", no_fork)
    caplog.set_level(logging.INFO, logger="catena.chain.node")

    async def main():
        node = MemberNode(addr, tmp_path)
        started = asyncio.Event()
        task = asyncio.create_task(node.run(started))
        await started.wait()
        host, port = addr.rsplit(":", 1)
        r = aioredis.Redis(host=host, port=int(port), protocol=2)
        acked: list[bytes] = []
        stop = asyncio.Event()

        async def writer():
            w, i = aioredis.Redis(host=host, port=int(port), protocol=2), 0
            while not stop.is_set():
                key = b"small:%d" % i
                if await w.set(key, b"v") is True:
                    acked.append(key)
                i += 1
            await w.aclose()

        try:
            assert await r.execute_command("MEMBER.VIEW", 0, 1, "-", addr) in (b"OK", True)
            background = asyncio.create_task(writer())
            assert await r.set("big", b"x" * BIG) is True
            snapshot = tmp_path / "log" / "snapshot"
            for _ in range(600):  # the ticker snapshots the large log within a few ticks
                if snapshot.exists() and snapshot.stat().st_size > BIG:
                    break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("no snapshot was taken")
            await asyncio.sleep(0.3)  # more writes after the snapshot
            stop.set()
            await background
            assert len(acked) > 10
        finally:
            await r.aclose()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

        return acked

    acked = asyncio.run(asyncio.wait_for(main(), 120))
    assert "taken in" in caplog.text and "while serving" in caplog.text
    recovered = MemberNode(addr, tmp_path).replica.state
    assert recovered.data[b"big"] == b"x" * BIG
    missing = [k for k in acked if k not in recovered.data]
    assert not missing, f"{len(missing)} acknowledged writes lost, first {missing[:3]}"


class _Recorder:
    """Stands in for the log and the peer links: records what reaches them, in order."""

    fsync = "always"

    def __init__(self):
        self.calls: list[tuple[str, int]] = []
        self.owed = False

    def append(self, records, defer_sync=False):
        self.calls.append(("log", sum(len(r) for r in records)))
        self.owed = defer_sync

    def settle(self):
        if self.owed:
            self.owed = False
            self.calls.append(("sync", 0))

    def snapshot(self, blob):
        self.calls.append(("snapshot", len(blob)))

    def send(self, to, frame):
        self.calls.append((f"send {to}", len(frame)))

    def flush(self):  # (the links' end of a turn: sends are recorded as they are made)
        pass


def test_big_effects_end_the_turn_and_keep_their_order(tmp_path):
    """Persist before send, snapshot after what came before it and before what came after,
    replies after what preceded them: each big step in its own loop turn."""
    from catena.chain.messages import Append
    from catena.chain.state import SET
    from catena.effects import Persist, Reply, Send
    from catena.resp.server import Deferred

    async def main():
        node = MemberNode(f"127.0.0.1:{free_ports(1)[0]}", tmp_path)
        rec = _Recorder()
        node.log, node.links = rec, rec
        big = [(1, 1, 0, None, (SET, b"k", b"x" * BIG, None, 0))]
        small = [(1, 2, 0, None, (SET, b"s", b"v", None, 0))]
        reply = Deferred()
        node._execute([Persist(big), Send("succ", Append(1, 0, tuple(big))), Reply(reply, 1)])
        assert rec.calls == [] and not reply.done  # the big pack ended the turn
        node._execute([node_mod._Snapshot(1, 1, b"x" * BIG)])
        node._execute([Persist(small)])
        turns = 0
        while node._later:
            await asyncio.sleep(0)
            turns += 1
        # (--fsync always: no loop turn ends with a sync owed, so a big batch syncs before its send)
        assert [c[0] for c in rec.calls] == ["log", "sync", "send succ", "snapshot", "log", "sync"]
        assert reply.done and reply.value == 1
        assert turns >= 5  # pack | append, pack | send, pack | store, …: one big step per turn

    asyncio.run(asyncio.wait_for(main(), 60))
