"""An Append is delivered only when every entry has the documented shape (messages.decode):
`(epoch, seq, ts_ms, rid, op)`, three ints, a request id or nil, a non-empty op with an int first.
One bad entry anywhere in the batch refuses the whole frame (the link closes on it)."""

import msgpack
import pytest

from catena.chain import messages
from catena.chain.messages import Append
from catena.errors import RemoteProtocolError

GOOD = (1, 7, 1_764_000_000_000, (b"client/a", 3, 2), (0, b"k", b"v", None, 0))
BAD = [
    [],  # not a tuple (a list, after a round trip: a map)
    (1, 7, 5, None),  # four fields
    (1, 7, 5, None, (0, b"k"), 9),  # six
    (b"1", 7, 5, None, (0, b"k")),  # epoch not an int
    (1, True, 5, None, (0, b"k")),  # seq a bool
    (1, 7, 5.0, None, (0, b"k")),  # ts_ms a float
    (1, 7, 5, b"rid", (0, b"k")),  # rid neither nil nor a request id
    (1, 7, 5, (b"c",), (0, b"k")),  # rid too short
    (1, 7, 5, (b"c", b"1"), (0, b"k")),  # rid's number not an int
    (1, 7, 5, (b"c", 1, None), (0, b"k")),  # rid's lowest-unanswered number not an int
    (1, 7, 5, (b"c", 1, 2, 3), (0, b"k")),  # rid too long
    (1, 7, 5, (1, 1), (0, b"k")),  # rid's client not bytes
    (1, 7, 5, None, ()),  # empty op
    (1, 7, 5, None, b"op"),  # op not a tuple
    (1, 7, 5, None, (b"SET", b"k")),  # op's code not an int
]


def _decode(entries):
    frame = msgpack.unpackb(msgpack.packb((Append.TAG, 2, 0, entries), use_bin_type=True), raw=True,
                            use_list=False, strict_map_key=False)
    return messages.decode(frame)


@pytest.mark.parametrize("where", [0, 1, 2])
@pytest.mark.parametrize("bad", BAD)
def test_one_bad_entry_refuses_the_batch(bad, where):
    entries = [GOOD, GOOD]
    entries.insert(where, {1: 2} if bad == [] else bad)
    with pytest.raises(RemoteProtocolError):
        _decode(tuple(entries))


def test_good_entries_are_delivered_as_they_are():
    entries = (GOOD, GOOD[:3] + (None,) + GOOD[4:], (1, 8, 5, (b"c", 1), (3, b"n", -4)),
               (1, 9, 5, (b"", 0, 0), (5, b"k")))
    assert _decode(entries) == Append(2, 0, entries)
    assert _decode(()) == Append(2, 0, ())
