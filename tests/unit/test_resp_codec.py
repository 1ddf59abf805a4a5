"""catena.resp.codec: commands in (any framing, limits, inline), replies out (RESP2 and RESP3)."""

from __future__ import annotations

import hiredis
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from catena.errors import RemoteProtocolError
from catena.resp.client import encode_command
from catena.resp.codec import DEFAULT_MAX_ARGS, DEFAULT_MAX_BULK_LEN, OK, PONG, CommandParser, Error, Status, encode


def wire(*args: bytes) -> bytes:
    """One command as a client sends it (canonical RESP array of bulk strings)."""
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


def feed_all(chunks, parser: CommandParser | None = None) -> list[list[bytes]]:
    parser = parser or CommandParser()
    out = []
    for chunk in chunks:
        out += parser.feed(chunk)
    return out


COMMANDS = [
    [b"PING"],
    [b"SET", b"key", b"value"],
    [b"SET", b"", b""],  # empty strings
    [b"SET", b"bin\r\n\x00*$", b"\r\n$5\r\nfake\r\n"],  # payloads that look like RESP
    [b"MSET"] + [b"k%d" % i for i in range(40)],
    [b"SET", b"big", b"x" * 70_000],  # larger than the header window the parser keeps
    [b"GET", b"\xff\xfe"],
]
STREAM = b"".join(wire(*c) for c in COMMANDS)


# -- parsing -------------------------------------------------------------------------------------


def test_one_command():
    assert CommandParser().feed(wire(b"GET", b"k")) == [[b"GET", b"k"]]


def test_pipelined_commands_in_one_read():
    assert CommandParser().feed(STREAM) == COMMANDS


def test_partial_frames_at_every_split_point():
    small = b"".join(wire(*c) for c in COMMANDS if len(b"".join(c)) < 1000)
    expected = [c for c in COMMANDS if len(b"".join(c)) < 1000]
    for i in range(len(small) + 1):
        assert feed_all([small[:i], small[i:]]) == expected, f"split at {i}"


def test_partial_frames_at_every_pair_of_split_points():
    data = wire(b"SET", b"k", b"v") + wire(b"GET", b"k")
    for i in range(len(data) + 1):
        for j in range(i, len(data) + 1):
            assert feed_all([data[:i], data[i:j], data[j:]]) == [[b"SET", b"k", b"v"], [b"GET", b"k"]], (i, j)


def test_one_byte_at_a_time():
    assert feed_all(bytes([b]) for b in STREAM) == COMMANDS


def test_commands_come_out_as_soon_as_complete():
    p = CommandParser()
    first, second = wire(b"SET", b"a", b"1"), wire(b"GET", b"a")
    assert p.feed(first + second[:5]) == [[b"SET", b"a", b"1"]]
    assert p.feed(second[5:]) == [[b"GET", b"a"]]
    assert p.feed(b"") == []


def test_big_bulk_split_across_many_reads():
    data = wire(b"SET", b"big", b"y" * 300_000)
    chunks = [data[i : i + 4096] for i in range(0, len(data), 4096)]
    assert feed_all(chunks) == [[b"SET", b"big", b"y" * 300_000]]


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(
    commands=st.lists(st.lists(st.binary(max_size=40), min_size=1, max_size=6), min_size=1, max_size=8),
    cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=10),
)
def test_any_framing_gives_the_same_commands(commands, cuts):
    data = b"".join(wire(*c) for c in commands)
    points = sorted({min(c, len(data)) for c in cuts})
    chunks = [data[a:b] for a, b in zip([0, *points], [*points, len(data)])]
    assert feed_all(chunks) == commands


# -- inline commands -----------------------------------------------------------------------------


def test_inline_commands():
    assert CommandParser().feed(b"PING\r\n") == [[b"PING"]]
    assert CommandParser().feed(b"SET  a   b\r\nGET a\n") == [[b"SET", b"a", b"b"], [b"GET", b"a"]]
    assert CommandParser().feed(b"\r\n\r\nPING\r\n") == [[b"PING"]]  # empty lines are skipped


def test_inline_split_across_reads():
    data = b"SET key value\r\nGET key\r\n"
    for i in range(len(data) + 1):
        assert feed_all([data[:i], data[i:]]) == [[b"SET", b"key", b"value"], [b"GET", b"key"]], i


def test_inline_then_multibulk_in_one_read():
    assert CommandParser().feed(b"PING\r\n" + wire(b"GET", b"k")) == [[b"PING"], [b"GET", b"k"]]


def test_multibulk_then_inline_in_one_read():
    p = CommandParser()
    assert p.feed(wire(b"GET", b"k") + b"PING\r\n") == [[b"GET", b"k"], [b"PING"]]
    assert p.feed(wire(b"GET", b"z")) == [[b"GET", b"z"]]


def test_empty_line_between_multibulk_commands():
    p = CommandParser()
    assert p.feed(wire(b"SET", b"k", b"v") + b"\r\n" + wire(b"ECHO", b"x")) == [[b"SET", b"k", b"v"], [b"ECHO", b"x"]]


def test_empty_line_at_the_start_of_a_read_is_skipped():
    p = CommandParser()
    assert p.feed(wire(b"SET", b"k", b"v")) == [[b"SET", b"k", b"v"]]
    assert p.feed(b"\r\n" + wire(b"ECHO", b"x")) == [[b"ECHO", b"x"]]


def test_inline_too_long_is_refused():
    p = CommandParser()
    with pytest.raises(RemoteProtocolError, match="Protocol error"):
        for _ in range(20):
            p.feed(b"A" * 8192)  # no newline: 160 KB of one inline line


# -- limits and malformed input ------------------------------------------------------------------


def test_defaults_are_like_redis():
    assert DEFAULT_MAX_BULK_LEN == 512 * 1024 * 1024
    assert DEFAULT_MAX_ARGS >= 1024 * 1024


def test_bulk_at_the_limit_is_accepted():
    p = CommandParser(max_bulk_len=100)
    assert p.feed(wire(b"SET", b"k", b"x" * 100)) == [[b"SET", b"k", b"x" * 100]]


OVERSIZED_HEADER = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$101\r\n"


def test_bulk_above_the_limit_is_refused_from_its_header():
    with pytest.raises(RemoteProtocolError, match="Protocol error"):
        CommandParser(max_bulk_len=100).feed(OVERSIZED_HEADER)


@pytest.mark.parametrize("split", range(1, len(OVERSIZED_HEADER)))
def test_bulk_above_the_limit_is_refused_whatever_the_split(split):
    p = CommandParser(max_bulk_len=100)
    with pytest.raises(RemoteProtocolError, match="Protocol error"):
        p.feed(OVERSIZED_HEADER[:split])
        p.feed(OVERSIZED_HEADER[split:])


def test_bulk_above_the_limit_gets_redis_error_however_much_payload_came_with_it():
    """proto-max-bulk-len: Redis's `Protocol error: invalid bulk length`, even when the header
    arrives together with more payload than the limit allows."""
    for payload in (b"", b"x" * 50, b"x" * (100 + 70_000)):
        with pytest.raises(RemoteProtocolError, match="^Protocol error: invalid bulk length$"):
            CommandParser(max_bulk_len=100).feed(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1000000\r\n" + payload)


def test_bulk_above_the_limit_is_refused_one_byte_at_a_time():
    p = CommandParser(max_bulk_len=100)
    with pytest.raises(RemoteProtocolError, match="Protocol error"):
        for b in OVERSIZED_HEADER:
            p.feed(bytes([b]))


def test_oversized_header_after_complete_commands():
    p = CommandParser(max_bulk_len=100)
    with pytest.raises(RemoteProtocolError, match="Protocol error"):
        p.feed(wire(b"PING") + wire(b"GET", b"k") + OVERSIZED_HEADER)


def test_huge_claims_are_refused_without_allocating():
    for header in (b"*1\r\n$%d\r\n" % (1 << 40), b"*1\r\n$%d\r\n" % (DEFAULT_MAX_BULK_LEN + 1)):
        with pytest.raises(RemoteProtocolError, match="Protocol error"):
            CommandParser().feed(header)


def test_too_many_arguments_is_refused():
    with pytest.raises(RemoteProtocolError, match="Protocol error"):
        CommandParser(max_args=10).feed(b"*11\r\n$4\r\nMSET\r\n")
    assert CommandParser(max_args=3).feed(wire(b"SET", b"k", b"v")) == [[b"SET", b"k", b"v"]]


@pytest.mark.parametrize("data", [
    b"*abc\r\n",
    b"*1\r\n$x\r\nPING\r\n",
    b"*1\r\n$-5\r\n",
    b"*1\r\n$2\r\nPING\r\n",
    b"*2\r\n$3\r\nGET\r\n$01\r\nk\r\n",
    b"*1\r\n*1\r\n$4\r\nPING\r\n",
], ids=["multibulk length", "bulk length", "negative bulk", "bulk overrun", "leading zero", "nested array"])
def test_malformed_frames_raise_protocol_errors(data):
    with pytest.raises(RemoteProtocolError, match="^Protocol error"):
        feed_all([data, wire(b"PING")])


@pytest.mark.parametrize("data", [b"*1\r\n:5\r\n", b"*2\r\n$3\r\nGET\r\n+OK\r\n", b"*2\r\n$3\r\nGET\r\n$-1\r\n",
                                  b"*2\r\n$3\r\nGET\r\n*1\r\n$1\r\nk\r\n"], ids=["integer", "status", "null", "array"])
def test_non_bulk_elements_raise_protocol_errors(data):
    for split in range(len(data)):  # whole, and the frame's start in an earlier read
        parser = CommandParser()
        with pytest.raises(RemoteProtocolError, match="^Protocol error"):
            parser.feed(data[:split])
            parser.feed(data[split:])


def test_protocol_error_is_sticky_enough_to_close():
    """After an error the caller closes the connection; the parser never yields a command
    built from the garbage."""
    p = CommandParser()
    with pytest.raises(RemoteProtocolError):
        p.feed(b"*1\r\n$x\r\n")


# -- encoding ------------------------------------------------------------------------------------


@pytest.mark.parametrize("value, resp2, resp3", [
    (b"abc", b"$3\r\nabc\r\n", b"$3\r\nabc\r\n"),
    (b"", b"$0\r\n\r\n", b"$0\r\n\r\n"),
    ("héllo", b"$6\r\nh\xc3\xa9llo\r\n", b"$6\r\nh\xc3\xa9llo\r\n"),
    (42, b":42\r\n", b":42\r\n"),
    (-7, b":-7\r\n", b":-7\r\n"),
    (None, b"$-1\r\n", b"_\r\n"),
    (OK, b"+OK\r\n", b"+OK\r\n"),
    (PONG, b"+PONG\r\n", b"+PONG\r\n"),
    (Status("QUEUED"), b"+QUEUED\r\n", b"+QUEUED\r\n"),
    (Error("ERR bad\r\nthing"), b"-ERR bad  thing\r\n", b"-ERR bad  thing\r\n"),
    (True, b":1\r\n", b"#t\r\n"),
    (False, b":0\r\n", b"#f\r\n"),
    (1.5, b"$3\r\n1.5\r\n", b",1.5\r\n"),
    ([], b"*0\r\n", b"*0\r\n"),
    ([b"a", 1, None], b"*3\r\n$1\r\na\r\n:1\r\n$-1\r\n", b"*3\r\n$1\r\na\r\n:1\r\n_\r\n"),
    ((b"t",), b"*1\r\n$1\r\nt\r\n", b"*1\r\n$1\r\nt\r\n"),
    ([[b"x"], []], b"*2\r\n*1\r\n$1\r\nx\r\n*0\r\n", b"*2\r\n*1\r\n$1\r\nx\r\n*0\r\n"),
    ({"a": 1}, b"*2\r\n$1\r\na\r\n:1\r\n", b"%1\r\n$1\r\na\r\n:1\r\n"),
    ({}, b"*0\r\n", b"%0\r\n"),
])
def test_encode_every_type(value, resp2, resp3):
    assert encode(value) == resp2
    assert encode(value, resp3=False) == resp2
    assert encode(value, resp3=True) == resp3


def test_encode_refuses_unknown_types():
    with pytest.raises(TypeError):
        encode(object())
    with pytest.raises(TypeError):
        encode({1, 2})


_MORE = object()  # hiredis's "not enough data" marker (its default, False, is also a RESP3 reply)


def _decode(data: bytes, resp3: bool):
    reader = hiredis.Reader(notEnoughData=_MORE)
    reader.feed(data)
    value = reader.gets()
    assert reader.gets() is _MORE, "exactly one reply"
    return value


def _expected(value, resp3: bool):
    """What a client decodes from `encode(value)`."""
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bool):
        return value if resp3 else int(value)
    if isinstance(value, (list, tuple)):
        return [_expected(v, resp3) for v in value]
    if isinstance(value, dict):
        if resp3:
            return {_expected(k, resp3): _expected(v, resp3) for k, v in value.items()}
        return [x for k, v in value.items() for x in (_expected(k, resp3), _expected(v, resp3))]
    return value


SCALARS = st.one_of(st.binary(max_size=30), st.text(max_size=10), st.integers(-(2**63), 2**63 - 1), st.none(),
                    st.booleans())
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(st.binary(max_size=8), inner, max_size=4)),
    max_leaves=20,
)


@settings(max_examples=200)
@given(value=VALUES, resp3=st.booleans())
def test_encoded_replies_round_trip_through_hiredis(value, resp3):
    assert _decode(encode(value, resp3), resp3) == _expected(value, resp3)


@settings(max_examples=100)
@given(values=st.lists(VALUES, min_size=1, max_size=10), resp3=st.booleans(), cut=st.integers(min_value=0))
def test_concatenated_replies_parse_back_in_order(values, resp3, cut):
    data = b"".join(encode(v, resp3) for v in values)
    reader = hiredis.Reader(notEnoughData=_MORE)
    cut %= len(data) + 1
    out = []
    for chunk in (data[:cut], data[cut:]):
        reader.feed(chunk)
        while (r := reader.gets()) is not _MORE:
            out.append(r)
    assert out == [_expected(v, resp3) for v in values]


@settings(max_examples=100)
@given(args=st.lists(st.binary(max_size=50), min_size=1, max_size=8))
def test_a_command_encoded_as_an_array_of_bulks_parses_back(args):
    """encode() of a list of bytes is exactly a client's command framing."""
    assert encode(args) == wire(*args)
    assert CommandParser().feed(encode(args)) == [args]


def test_a_command_longer_than_the_header_window_is_followed_by_the_next_one():
    """A frame that began long before it completed is measured from its arguments (keys of
    many lengths): the command after it in the stream parses exactly."""
    keys = [b"k" * (1 + i % 120) for i in range(20_000)]
    raw = encode_command([b"DEL", *keys]) + encode_command([b"PING"])
    parser, commands = CommandParser(), []
    for i in range(0, len(raw), 4096):
        commands += parser.feed(raw[i:i + 4096])
    assert commands == [[b"DEL", *keys], [b"PING"]]


def test_buffered_counts_the_incomplete_command_after_every_feed():
    parser = CommandParser()
    frame = wire(b"SET", b"k", b"v" * 100)
    assert parser.feed(frame[:30]) == [] and parser.buffered == 30
    assert parser.feed(frame[30:60]) == [] and parser.buffered == 60
    assert parser.feed(frame[60:] + frame[:5]) == [[b"SET", b"k", b"v" * 100]] and parser.buffered == 5
    assert parser.feed(frame[5:]) == [[b"SET", b"k", b"v" * 100]] and parser.buffered == 0
    assert parser.feed(b"PIN") == [] and parser.buffered == 3  # an inline command's start
    assert parser.feed(b"G\r\n") == [[b"PING"]] and parser.buffered == 0
