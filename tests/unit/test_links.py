"""Peer links: a frame sent on a link whose connection just closed is dropped, never raised
(the member would stop over it); the reconnect's handshake resends what the successor lacks."""

from catena.chain.links import PeerLinks, _Outbound


class _Writer:
    def __init__(self, closing: bool):
        self.closing, self.written = closing, []

    def is_closing(self) -> bool:
        return self.closing

    def write(self, data: bytes) -> None:
        if self.closing:
            raise RuntimeError("unable to perform operation on a closed transport")  # as uvloop does
        self.written.append(data)

    def writelines(self, parts: list[bytes]) -> None:  # a frame in parts (a large value not copied)
        for part in parts:
            self.write(part)


def _links_with(writer: _Writer) -> PeerLinks:
    links = PeerLinks("127.0.0.1:1", group=None, on_link=lambda addr, up: None)
    link = links.links["127.0.0.1:2"] = _Outbound(links, "127.0.0.1:2")
    link.writer, link.up = writer, True
    return links


def test_a_frame_on_a_link_closed_under_us_is_dropped():
    writer = _Writer(closing=True)
    _links_with(writer).send("127.0.0.1:2", b"frame")
    assert writer.written == []


def test_a_frame_on_an_open_link_is_written():
    writer = _Writer(closing=False)
    _links_with(writer).send("127.0.0.1:2", b"frame")
    assert writer.written == [b"frame"]


def test_a_frame_in_parts_is_written_in_order():
    writer = _Writer(closing=False)
    _links_with(writer).send("127.0.0.1:2", [b"head", b"value"])
    assert writer.written == [b"head", b"value"]


def test_frames_dropped_by_a_failed_connect_report_the_link_down():
    """Frames sent while connecting are dropped when the attempt fails: the machine hears the
    link went down (a Snapshot it sent then is lost, and the successor's next Sync is answered)."""
    import asyncio

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
