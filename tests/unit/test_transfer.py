"""State transfer without holding the loop (catena.chain.transfer): the successor gets exactly the
frame `messages.pack(Snapshot(...))` of the state as of the dump, then what was sent meanwhile; a
dump that fails resets the link; a link that goes down drops the transfer."""

from __future__ import annotations

import asyncio

import msgpack
import pytest
from test_snapshotter import spaced

from catena.chain import messages, transfer
from catena.chain.messages import Append, Snapshot
from catena.chain.snapshotter import STEP_S
from catena.chain.state import SET, KVState
from catena.chain.transfer import Dump, Transfers


class _Boom(KVState):
    """A state whose dump fails midway (a value nothing packs)."""

    def __init__(self):
        super().__init__()
        self.put(b"bad", object())


def _decoded(sent: bytes) -> list:
    """The frames a peer was sent, decoded; a Snapshot's state as the maps it packs (a dump
    walks the keys in hash-slot order: the same map as `state.dump()`, not the same bytes)."""
    frames = messages.unpacker()
    frames.feed(bytes(sent))
    out = []
    for frame in frames:
        msg = messages.decode(frame)
        if type(msg) is Snapshot:
            msg = msg._replace(state=msgpack.unpackb(msg.state, raw=True, strict_map_key=False))
        out.append(msg)
    return out


def _state(n: int) -> KVState:
    state = KVState()
    for i in range(n):
        state.apply((SET, b"key:%08d" % i, b"v" * 16, None, 0), 0)
    return state


class _Peer:
    """What the links were asked to send to each peer, and their resets."""

    def __init__(self):
        self.sent: dict[str, bytearray] = {}
        self.resets: list[str] = []
        self.heard = asyncio.Event()

    def send(self, to: str, frame) -> None:
        self.sent.setdefault(to, bytearray()).extend(frame if type(frame) is bytes else b"".join(frame))
        self.heard.set()

    def reset(self, to: str) -> None:
        self.resets.append(to)
        self.heard.set()


def test_the_successor_gets_the_frame_of_the_state_as_of_the_dump_then_what_waited():
    state = _state(200_000)  # several chunks, dumped in several turns
    expected = messages.pack(Snapshot(7, 6, 200_000, 199_990, state.dump()))
    later = messages.pack(Append(7, 200_000, ()))

    async def run() -> _Peer:
        peer = _Peer()
        transfers = Transfers(peer.send, peer.reset)
        dump = transfers.dump(state)
        assert type(dump) is Dump
        state.apply((SET, b"key:00000000", b"changed after the dump", None, 0), 0)
        transfers.start("b", Snapshot(7, 6, 200_000, 199_990, dump))
        transfers.send("b", later)  # behind the Snapshot
        transfers.send("c", b"other peer")  # not held
        assert peer.sent == {"c": bytearray(b"other peer")}
        while not peer.sent.get("b", b"").endswith(later):
            peer.heard.clear()
            await asyncio.wait_for(peer.heard.wait(), 30)
        assert not transfers.active and state.dumping is None
        transfers.close()
        return peer

    peer = asyncio.run(run())
    assert _decoded(peer.sent["b"]) == _decoded(expected + later)
    assert peer.resets == []


def test_progress_grows_while_the_state_is_dumped_and_sent():
    """What MEMBER.STATUS reports as `state_transfer` at the sender: the coordinator takes its
    growth for the learner's progress while no entry can be acked."""
    state = _state(200_000)

    async def run() -> tuple[list[int], int]:
        peer = _Peer()
        transfers = Transfers(peer.send, peer.reset)
        seen = [transfers.progress()]
        dump = transfers.dump(state)
        transfers.start("b", Snapshot(7, 6, 200_000, 199_990, dump))
        while transfers.active:
            await asyncio.sleep(0.001)
            seen.append(transfers.progress())
        transfers.close()
        return seen, len(peer.sent["b"])

    seen, sent = asyncio.run(run())
    assert seen == sorted(seen) and len(set(seen)) > 3  # it grew, in steps, never back
    assert seen[-1] >= sent - 64  # every byte of the state (the frame's head aside)


def test_a_snapshot_sent_while_another_streams_waits_behind_it():
    first, second = _state(1000), _state(10)
    between, after = messages.pack(Append(1, 5, ())), messages.pack(Append(2, 6, ()))
    want = [messages.pack(Snapshot(1, 1, 1000, 1000, first.dump())), between,
            messages.pack(Snapshot(2, 1, 10, 10, second.dump())), after]

    async def run() -> _Peer:
        peer = _Peer()
        transfers = Transfers(peer.send, peer.reset)
        transfers.start("b", Snapshot(1, 1, 1000, 1000, transfers.dump(first)))
        transfers.send("b", between)
        transfers.start("b", Snapshot(2, 1, 10, 10, transfers.dump(second)))
        transfers.send("b", after)
        while not peer.sent.get("b", b"").endswith(after):
            peer.heard.clear()
            await asyncio.wait_for(peer.heard.wait(), 30)
        return peer

    assert _decoded(asyncio.run(run()).sent["b"]) == _decoded(b"".join(want))


def test_a_dump_that_fails_resets_the_link_and_drops_what_waited():
    async def run() -> _Peer:
        peer = _Peer()
        transfers = Transfers(peer.send, peer.reset)
        state = _Boom()
        dump = transfers.dump(state)
        transfers.start("b", Snapshot(1, 1, 5, 5, dump))
        transfers.send("b", b"held")
        await asyncio.wait_for(peer.heard.wait(), 30)
        assert not transfers.active and state.dumping is None
        transfers.send("b", b"after the reset")  # the link's own business now
        transfers.close()
        return peer

    peer = asyncio.run(run())
    assert peer.resets == ["b"]
    assert bytes(peer.sent["b"]) == b"after the reset"


def test_a_link_that_goes_down_drops_the_transfer_and_stops_its_dump():
    state = _state(100_000)

    async def run() -> _Peer:
        peer = _Peer()
        transfers = Transfers(peer.send, peer.reset)
        dump = transfers.dump(state)
        held = transfers.dump(state)
        transfers.start("b", Snapshot(1, 1, 5, 5, dump))
        transfers.send("b", b"held")
        transfers.start("b", Snapshot(1, 1, 6, 6, held))
        await asyncio.sleep(0)  # a slice of each
        assert not dump.done and len(state.dumping) == 2
        transfers.abandon("b")
        assert state.dumping is None  # neither hears of changes any more
        transfers.send("b", b"on the new link")
        transfers.close()
        return peer

    peer = asyncio.run(run())
    assert bytes(peer.sent["b"]) == b"on the new link" and peer.resets == []


def test_the_dump_runs_in_slices_while_the_loop_serves():
    """No turn holds the loop for the whole state: other callbacks run between the slices."""
    state = _state(200_000)

    async def run() -> int:
        transfers = Transfers(lambda to, frame: None, lambda to: None)
        dump = transfers.dump(state)
        turns = 0
        while not dump.done:
            turns += 1
            await asyncio.sleep(0)
        transfers.close()
        return turns

    assert asyncio.run(run()) > 5


def test_a_dump_to_send_takes_at_most_its_share_of_the_loop():
    """Its slices are spaced: flat out, a sender's dump and the learner's load took both cores
    from the chain serving beside them."""
    state = _state(50_000)

    async def run() -> list[float]:
        transfers = Transfers(lambda to, frame: None, lambda to: None)
        dump = transfers.dump(state)
        pauses = spaced(dump.steps)
        while not dump.done:
            await asyncio.sleep(0.001)
        transfers.close()
        return pauses

    pauses = asyncio.run(run())
    assert pauses and min(pauses) >= STEP_S * (1 / transfer.SHARE - 1) * 0.999


@pytest.mark.parametrize("n", [0, 255, 256, 65_535, 65_536])
def test_the_frame_head_and_the_state_make_the_packed_snapshot(n):
    msg = Snapshot(3, 2, 2**40, 9, b"s" * n)
    assert messages.snapshot_frame_head(msg, n) + msg.state == messages.pack(msg)
    assert transfer.CHUNK >= 64 * 1024
