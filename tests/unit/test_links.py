"""Peer links: the frames sent to a peer in one loop turn leave in one write at its end (or at an
explicit flush); a frame sent on a link whose connection just closed is dropped, never raised
(the member would stop over it); the reconnect's handshake resends what the successor lacks.
The member's end-of-turn flush writes its frames and its clients' replies itself."""

import asyncio

from catena.chain.links import PeerLinks, _Outbound


class _Writer:
    def __init__(self, closing: bool):
        self.closing, self.written, self.writes = closing, [], 0

    def is_closing(self) -> bool:
        return self.closing

    def write(self, data: bytes) -> None:
        if self.closing:
            raise RuntimeError("unable to perform operation on a closed transport")  # as uvloop does
        self.written.append(data)

    def writelines(self, parts: list[bytes]) -> None:  # frames, or a frame in parts (a large value not copied)
        self.writes += 1
        for part in parts:
            self.write(part)


def _links_with(*writers: _Writer) -> PeerLinks:
    links = PeerLinks("127.0.0.1:1", group=None, on_link=lambda addr, up: None)
    for port, writer in enumerate(writers, 2):
        link = links.links[f"127.0.0.1:{port}"] = _Outbound(links, f"127.0.0.1:{port}")
        link.writer, link.up = writer, True
    return links


def _in_a_turn(send) -> None:
    async def main():
        send()
        await asyncio.sleep(0)

    asyncio.run(main())


def test_a_frame_on_a_link_closed_under_us_is_dropped():
    writer = _Writer(closing=True)
    _in_a_turn(lambda: _links_with(writer).send("127.0.0.1:2", b"frame"))
    assert writer.written == []


def test_a_turns_frames_leave_in_one_write_per_link_at_its_end():
    a, b = _Writer(closing=False), _Writer(closing=False)

    async def main():
        links = _links_with(a, b)
        links.send("127.0.0.1:2", b"one")
        links.send("127.0.0.1:3", b"other")
        links.send("127.0.0.1:2", [b"head", b"value"])  # a frame in parts, in order
        assert a.written == b.written == []  # not yet: the turn goes on
        await asyncio.sleep(0)
        assert (a.written, a.writes) == ([b"one", b"head", b"value"], 1)
        assert (b.written, b.writes) == ([b"other"], 1)
        links.send("127.0.0.1:2", b"next")
        links.flush()  # (the member's, before an fdatasync: its Append is out first)
        assert (a.written[-1], a.writes) == (b"next", 2)
        await asyncio.sleep(0)
        assert a.writes == 2

    asyncio.run(main())


def test_a_link_that_breaks_drops_what_its_turn_had_pending():
    writer = _Writer(closing=False)

    async def main():
        links = _links_with(writer)
        links.send("127.0.0.1:2", b"frame")
        link = links.links["127.0.0.1:2"]
        link.pending.clear()  # as run() does when the connection ends
        link.up = False
        await asyncio.sleep(0)

    asyncio.run(main())
    assert writer.written == []


def test_frames_dropped_by_a_failed_connect_report_the_link_down():
    """Frames sent while connecting are dropped when the attempt fails: the machine hears the
    link went down (a Snapshot it sent then is lost, and the successor's next Sync is answered)."""
    from catena.loopback import free_ports

    events = []

    async def run():
        heard = asyncio.Event()

        def on_link(addr, up):
            events.append((addr, up))
            heard.set()

        async with asyncio.TaskGroup() as group:
            links = PeerLinks("127.0.0.1:1", group, on_link=on_link)
            links.send(f"127.0.0.1:{free_ports(1)[0]}", b"frame")  # nothing listens there
            await asyncio.wait_for(heard.wait(), 10)
            links.close()

    asyncio.run(run())
    assert events[0][1] is False


def test_the_members_batch_leaves_when_its_flush_executes_it(tmp_path):
    """The member's end-of-turn flush writes the batch's frames itself: left to the links' own
    callback, scheduled from inside that flush, they would wait a whole loop iteration."""
    from catena.chain.messages import Ack
    from catena.chain.node import MemberNode
    from catena.effects import Send

    writer = _Writer(closing=False)

    async def main():
        node = MemberNode("127.0.0.1:1", tmp_path / "member")
        node.links = _links_with(writer)
        node.replica.flush = lambda: [Send("127.0.0.1:2", Ack(1, 1))]
        node._flush()
        assert writer.writes == 1 and writer.written  # in this call, not the next iteration
        node.log.close()

    asyncio.run(main())


def test_the_members_flush_writes_the_replies_it_resolved(tmp_path):
    """Replies resolved by the member's end-of-turn flush are written by it too: left to the
    server's own callback, they would wait a loop iteration, behind the next poll's input."""
    from catena.chain.node import MemberNode
    from catena.effects import Reply
    from catena.resp.codec import OK
    from catena.resp.server import Deferred

    flushed = []

    class _Connection:
        def __init__(self, server):
            self.server = server

        def flush(self):
            flushed.append(self)

    async def main():
        node = MemberNode("127.0.0.1:1", tmp_path / "member")
        conn, reply = _Connection(node.server), Deferred()
        reply.conn = conn
        node.replica.flush = lambda: [Reply(reply, OK)]
        node._flush()
        assert flushed == [conn] and reply.value is OK  # in this call, not the next iteration
        await asyncio.sleep(0)
        assert flushed == [conn]  # and once
        node.log.close()

    asyncio.run(main())


def test_a_member_that_fsyncs_each_batch_never_acks_the_head_past_its_middle(tmp_path):
    """`--fsync always`: an acknowledged write is stored on every member, so the head must hear
    of a commit through the middle (which acks only after its own fsync), not from the tail."""
    from catena.chain.node import MemberNode

    async def main():
        for fsync, direct in (("always", False), ("everysec", True), ("no", True)):
            node = MemberNode("127.0.0.1:1", tmp_path / fsync, fsync=fsync)
            assert node.replica.acks_head is direct
            node.log.close()

    asyncio.run(main())


def test_a_middle_member_sends_an_append_on_before_it_applies_it(tmp_path):
    """The middle writes its predecessor's Append to its successor's link before its machine
    applies the entries (Replica.relay), framed around the bytes it received, and only once."""
    import time

    import msgpack

    from catena.chain import messages
    from catena.chain.messages import Append, Sync
    from catena.chain.node import MemberNode
    from catena.chain.state import SET
    from catena.view import View

    writer = _Writer(closing=False)
    head, me, succ = "127.0.0.1:3", "127.0.0.1:1", "127.0.0.1:2"

    async def main():
        node = MemberNode(me, tmp_path / "member")
        node.links = _links_with(writer)
        replica = node.replica
        replica.on_view(View(0, 1, (head, me, succ)), time.time())
        replica.on_message(succ, Sync(1, 0, 0), time.time())
        seen = []
        on_message = replica.on_message

        def spy(sender, msg, now, mono=None):
            seen.append((b"".join(writer.written), replica.last_seq))
            return on_message(sender, msg, now, mono)

        replica.on_message = spy
        entries = tuple((1, s, 0, None, (SET, b"k%d" % s, b"v", None, 0)) for s in (1, 2, 3))
        encoded = msgpack.packb(entries, use_bin_type=True)
        node._received(entries, encoded)
        node._on_peer_message(head, Append(1, 0, entries))
        frame = messages.append_frame(1, 0, encoded)
        assert seen == [(frame, 0)]  # on the wire, nothing applied yet
        assert replica.last_seq == 3
        node._flush()
        await asyncio.sleep(0)
        assert b"".join(writer.written) == frame  # sent once
        node.log.close()

    asyncio.run(main())
