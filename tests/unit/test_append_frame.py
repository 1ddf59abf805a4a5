"""An Append framed around its entries' encoding (messages.append_frame) is the same bytes as the
Append packed whole; the member shell packs a batch at most once (the head: for its log, then its
Append reuses the record) and the members it reaches log and forward the entries as they arrived
(messages._Frames.entries_bytes), never packing them again."""

import asyncio

import msgpack
from hypothesis import given, settings
from hypothesis import strategies as st

from catena.chain import messages
from catena.chain.links import PeerInbound
from catena.chain.messages import Ack, Append
from catena.effects import Persist, Send

_ATOMS = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.binary(max_size=300))
_ENTRIES = st.lists(st.tuples(st.integers(0, 2**32), st.integers(0, 2**63 - 1),
                              st.tuples(st.integers(0, 40), st.binary(max_size=20), _ATOMS), _ATOMS), max_size=5)


@given(st.integers(0, 2**63 - 1), st.integers(0, 2**63 - 1), _ENTRIES)
def test_an_append_framed_around_its_record_is_the_append_packed(epoch, commit_seq, entries):
    record = msgpack.packb(entries, use_bin_type=True)  # as the member shell packs a Persist's entries
    frame = messages.append_frame(epoch, commit_seq, record)
    assert frame == messages.pack(Append(epoch, commit_seq, tuple(entries)))


def test_a_large_value_is_framed_without_another_copy():
    entry = (3, 7, (0, b"big", b"x" * (9 << 20), None, 0), 1_764_000_000_000)
    record = msgpack.packb([entry], use_bin_type=True)
    parts = messages.append_frame(3, 6, record)
    assert len(parts[0]) < 32 and parts[1] is record
    assert b"".join(parts) == messages.pack(Append(3, 6, (entry,)))


def _entry(seq: int, value: bytes = b"v") -> tuple:
    return (1, seq, 1_764_000_000_000, (b"c", seq), (0, b"k%d" % seq, value))


@settings(deadline=None)
@given(st.lists(st.integers(1, 30), min_size=1, max_size=5), st.integers(1, 300))
def test_the_entries_of_each_whole_append_are_known_as_they_came(sizes, cut):
    """Frames fed in chunks of `cut` bytes, one by one, or all at once: every Append that came
    whole in one chunk has its entries' bytes (exactly `pack`'s), any other has none."""
    frames = [messages.pack(Append(2, n, tuple(_entry(s) for s in range(n)))) for n in sizes]
    frames.insert(1, messages.pack(Ack(2, 9)))
    stream = b"".join(frames)
    ends = [sum(map(len, frames[:i + 1])) for i in range(len(frames))]
    for chunks in ([stream], frames, [stream[i:i + cut] for i in range(0, len(stream), cut)]):
        unpacker, got, at = messages.unpacker(), [], 0
        for chunk in chunks:
            unpacker.feed(chunk)
            for frame in unpacker:
                msg = messages.decode(frame)
                start, end = (ends[len(got) - 1] if got else 0), ends[len(got)]
                got.append(msg)
                if type(msg) is Append:
                    whole = at <= start and end <= at + len(chunk)
                    expected = msgpack.packb(msg.entries, use_bin_type=True) if whole else None
                    assert unpacker.entries_bytes(msg) == expected
            at += len(chunk)
        assert [messages.pack(m) for m in got] == frames


def test_an_append_whose_head_is_not_packed_as_ours_is_not_reused():
    entries = (_entry(1),)
    odd = b"\x94\x02\xcf" + (2).to_bytes(8, "big") + b"\x05" + msgpack.packb(entries, use_bin_type=True)
    unpacker = messages.unpacker()
    unpacker.feed(odd)
    msg = messages.decode(next(unpacker))
    assert msg == Append(2, 5, entries) and unpacker.entries_bytes(msg) is None


class _Transport:
    def get_extra_info(self, name):
        return None

    def is_closing(self) -> bool:
        return False


def test_a_peer_link_tells_how_an_appends_entries_came_before_delivering_it():
    seen = []
    inbound = PeerInbound(_Transport(), "a", lambda sender, msg: seen.append(("msg", msg)),
                          received=lambda entries, encoded: seen.append(("bytes", entries, encoded)))
    entries = (_entry(1), _entry(2))
    inbound.feed(messages.pack(Append(2, 0, entries)) + messages.pack(Ack(2, 1)))
    assert seen == [("bytes", entries, msgpack.packb(entries, use_bin_type=True)),
                    ("msg", Append(2, 0, entries)), ("msg", Ack(2, 1))]


class _Links:
    def __init__(self):
        self.sent = []

    def send(self, to, frame):
        self.sent.append((to, frame))

    def flush(self):
        pass


def _node(tmp_path):
    from catena.chain.node import MemberNode

    node = MemberNode("127.0.0.1:1", tmp_path)  # not started: no sockets
    node.links = _Links()
    return node


def test_the_head_packs_a_batch_once_for_its_log_and_its_append(tmp_path, monkeypatch):
    node = _node(tmp_path)
    entries = [_entry(1), _entry(2)]
    packed = []
    real = msgpack.packb
    monkeypatch.setattr(msgpack, "packb", lambda obj, **kw: packed.append(obj) or real(obj, **kw))
    node._execute([Persist(entries), Send("b", Append(1, 0, tuple(entries)))])
    assert packed == [entries, (Append.TAG, 1, 0)]  # the entries once, then the frame's head
    record = real(entries, use_bin_type=True)
    assert node.links.sent == [("b", messages.pack(Append(1, 0, tuple(entries))))]
    other = tuple(tuple(e) for e in (_entry(1), _entry(2)))  # equal, but not the same entries: packed
    assert node._frame(Append(1, 0, other)) == messages.pack(Append(1, 0, other))
    node.log.close()
    blob, records = type(node.log)(tmp_path / "log").recover()
    assert records == [record]


def test_a_member_logs_and_forwards_the_entries_as_they_came(tmp_path, monkeypatch):
    node = _node(tmp_path)
    entries = (_entry(1), _entry(2))
    encoded = msgpack.packb(entries, use_bin_type=True)
    node._received(entries, encoded)
    packed = []
    real = msgpack.packb
    monkeypatch.setattr(msgpack, "packb", lambda obj, **kw: packed.append(obj) or real(obj, **kw))
    node._execute([Persist(list(entries)), Send("c", Append(1, 0, entries))])
    assert packed == [(Append.TAG, 1, 0)]  # the frame's head alone
    assert node.links.sent == [("c", messages.append_head(1, 0) + encoded)]
    node.log.close()
    blob, records = type(node.log)(tmp_path / "log").recover()
    assert records == [encoded]


def test_a_large_records_append_is_framed_around_it_and_not_held_after(tmp_path):
    """A large batch is logged and sent in steps, a loop turn each: its Append still goes out
    around the record (not packed again, not copied), which is not held once it is sent."""
    from catena.chain.node import BIG_EFFECT_BYTES

    node = _node(tmp_path)
    entries = [(1, 1, 5, None, (0, b"big", b"x" * (BIG_EFFECT_BYTES + 1)))]

    async def main():
        node._execute([Persist(entries), Send("b", Append(1, 0, tuple(entries)))])
        while node._later or node._drain_at is not None:
            await asyncio.sleep(0)

    asyncio.run(main())
    [(to, parts)] = node.links.sent
    assert type(parts) is list and len(parts) == 2
    assert b"".join(parts) == messages.pack(Append(1, 0, tuple(entries)))
    assert node._encoded is None
    node.log.close()
