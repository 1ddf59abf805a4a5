"""An Append framed around the log's record of its entries (messages.append_frame) is the same
bytes as the Append packed whole: a large value is forwarded without being packed twice."""

import msgpack
from hypothesis import given
from hypothesis import strategies as st

from catena.chain import messages
from catena.chain.messages import Append

_ATOMS = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.binary(max_size=300))
_ENTRIES = st.lists(st.tuples(st.integers(0, 2**32), st.integers(0, 2**63 - 1),
                              st.tuples(st.integers(0, 40), st.binary(max_size=20), _ATOMS), _ATOMS), max_size=5)


@given(st.integers(0, 2**63 - 1), st.integers(0, 2**63 - 1), _ENTRIES)
def test_an_append_framed_around_its_record_is_the_append_packed(epoch, commit_seq, entries):
    record = msgpack.packb(entries, use_bin_type=True)  # as the member shell packs a Persist's entries
    parts = messages.append_frame(epoch, commit_seq, record)
    assert parts[-1] is record
    assert b"".join(parts) == messages.pack(Append(epoch, commit_seq, tuple(entries)))


def test_a_large_value_is_framed_without_another_copy():
    entry = (3, 7, (0, b"big", b"x" * (9 << 20), None, 0), 1_764_000_000_000)
    record = msgpack.packb([entry], use_bin_type=True)
    parts = messages.append_frame(3, 6, record)
    assert len(parts[0]) < 32 and parts[1] is record
    assert b"".join(parts) == messages.pack(Append(3, 6, (entry,)))


def test_the_member_shell_frames_the_append_of_its_big_record_around_it(tmp_path):
    from catena.chain.node import MemberNode

    node = MemberNode("127.0.0.1:1", tmp_path)  # not started: no sockets
    entry = (1, 1, (0, b"big", b"x" * 100, None, 0), 5)
    record = msgpack.packb([entry], use_bin_type=True)
    node._big_record = ([entry], record)
    other = tuple(list(entry))  # equal, but not the same entry
    assert node._frame(Append(1, 0, (other,))) == messages.pack(Append(1, 0, (other,)))
    parts = node._frame(Append(1, 0, (entry,)))
    assert parts[1] is record and b"".join(parts) == messages.pack(Append(1, 0, (entry,)))
    assert node._big_record is None  # used once
    node.log.close()
