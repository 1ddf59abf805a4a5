"""Membership wire codec: round trips, sizes, signatures, and every kind of bad datagram."""

import msgpack
import pytest
from hypothesis import given, settings, strategies as st

from catena.errors import LocalProtocolError
from catena.membership import wire
from catena.membership.messages import (
    Ack, Digest, Gossip, Heartbeat, Join, JoinRefused, MemberId, Nack, Ping, PingReq, State, Status, Update,
)
from catena.membership.wire import DropReason, ReplayGuard, decode, encode

A = MemberId("127.0.0.1", 7001, 1_700_000_000_123)
B = MemberId("10.1.2.3", 65535, 0)
SECRET = b"s3cret"

hosts = st.text(st.characters(min_codepoint=33, max_codepoint=0x2FF), min_size=1, max_size=40)
ids = st.builds(MemberId, hosts, st.integers(1, 65535), st.integers(0, (1 << 64) - 1))
updates = st.builds(Update, ids, st.integers(0, 0xFFFFFFFF), st.sampled_from(list(Status)))


def samples():
    u = (Update(A, 3, Status.SUSPECT), Update(B, 0, Status.FAILED))
    return [
        Heartbeat(A), Heartbeat(A, u), Ping(A, 7, B, u), PingReq(A, 8, B), Ack(B, 9, A, u), Join(B),
        State(A, 1, 3, True, u), JoinRefused(A, "address in use"), Gossip(A, u),
        Digest(A, (1 << 64) - 1, 1500, True), Digest(B, 0, 0, False, True), Nack(B, 3, A, u),
    ]


@pytest.mark.parametrize("msg", samples(), ids=lambda m: type(m).__name__)
@pytest.mark.parametrize("secret", [None, SECRET])
def test_round_trip(msg, secret):
    data = encode(msg, 42, secret)
    assert data[0] == wire.VERSION and data[2] == wire.TAGS[type(msg)]
    assert decode(data, secret) == (msg, 42)


def test_tags_are_the_published_ones():
    # append-only: these numbers are in docs/protocol.md and must never change
    assert {c.__name__: t for c, t in wire.TAGS.items()} == {
        "Heartbeat": 1, "Ping": 2, "PingReq": 3, "Ack": 4, "Join": 5, "State": 6,
        "JoinRefused": 7, "Gossip": 8, "Digest": 9, "Nack": 10}


@given(updates)
def test_update_size_is_exact(u):
    assert wire.update_size(u) == len(msgpack.packb(wire._upd(u)))


@settings(max_examples=60, deadline=None)
@given(st.lists(updates, max_size=200), hosts)
def test_a_budget_full_of_updates_fits_in_one_datagram(ups, host):
    me = MemberId(host, 65535, (1 << 64) - 1)
    budget = wire.payload_budget(host)
    chosen, used = [], 0
    for u in ups:
        if used + wire.update_size(u) <= budget:
            chosen.append(u)
            used += wire.update_size(u)
    target = MemberId("h" * 255, 65535, (1 << 64) - 1)
    for msg in (Ping(me, (1 << 64) - 1, target, tuple(chosen)), State(me, 1 << 19, 1 << 20, True, tuple(chosen))):
        assert len(encode(msg, (1 << 64) - 1, SECRET)) <= wire.MAX_DATAGRAM


def test_encode_refuses_oversized():
    many = tuple(Update(MemberId("x" * 200, 1, 1), 0, Status.ALIVE) for _ in range(20))
    with pytest.raises(LocalProtocolError):
        encode(Gossip(A, many), 1)


def reason(data, secret=None):
    with pytest.raises(DropReason) as exc:
        decode(data, secret)
    return exc.value.reason


def test_bad_datagrams_are_named():
    good = encode(Heartbeat(A), 1, SECRET)
    assert reason(b"") == "truncated"
    assert reason(good[:3]) == "truncated"
    assert reason(b"\x01" * 1401) == "oversized"
    assert reason(b"\x01" + good[1:], SECRET) == "version"
    assert reason(encode(Heartbeat(A), 1), SECRET) == "unsigned"
    assert reason(good, b"other") == "forged"
    assert reason(good[:-1] + bytes([good[-1] ^ 1]), SECRET) == "forged"
    assert reason(good) == "signed_unexpected"
    assert reason(bytes((2, 0, 99)) + bytes(8) + msgpack.packb(["h", 1, 1, 1])) == "unknown_type"
    assert reason(bytes((2, 0, 1)) + bytes(8) + msgpack.packb(["h", 0, 1, 1, []])) == "malformed"  # port 0
    assert reason(bytes((2, 0, 1)) + bytes(8) + msgpack.packb({"a": 1})) == "malformed"
    assert reason(bytes((2, 0, 1)) + bytes(8) + msgpack.packb(["h", 1, 1, 1, [[1, 2]]])) == "malformed"
    assert reason(bytes((2, 0, 1)) + bytes(8) + msgpack.packb(["h", 1, 1, 1, []])[:-2]) in ("truncated", "malformed")
    assert reason(bytes((2, 0x80, 1)) + bytes(8) + msgpack.packb(["h", 1, 1, 1, []])) == "malformed"


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=1500))
def test_garbage_only_ever_raises_drop_reason(data):
    for secret in (None, SECRET):
        try:
            decode(data, secret)
        except DropReason:
            pass


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(samples()), st.integers(0, 200), st.integers(0, 255))
def test_single_byte_corruption_of_a_signed_datagram_is_caught(msg, pos, value):
    data = bytearray(encode(msg, 5, SECRET))
    pos %= len(data)
    if data[pos] == value:
        return
    data[pos] = value
    with pytest.raises(DropReason):
        decode(bytes(data), SECRET)


def test_a_signed_datagram_is_bound_to_its_receiver():
    """Replayed to another receiver, a signed datagram is refused: the MAC names its receiver."""
    data = encode(Gossip(A, (Update(B, 0, Status.FAILED),)), 1, SECRET, to=B.addr, now_ms=1000)
    assert decode(data, SECRET, me=(B.addr,), now_ms=1000)[0].updates[0].status is Status.FAILED
    with pytest.raises(DropReason) as exc:
        decode(data, SECRET, me=("127.0.0.1:7002",), now_ms=1000)
    assert exc.value.reason == "forged"
    assert decode(data, SECRET, me=("127.0.0.1:7002", B.addr), now_ms=1000)  # any of its names


def test_a_join_is_bound_to_no_receiver():
    """A Join goes to an introducer under whatever name an operator gave: it names none."""
    data = encode(Join(B), 1, SECRET, to="localhost:7001", now_ms=5)
    assert decode(data, SECRET, me=(A.addr,), now_ms=5) == (Join(B), 1)


def test_a_signed_datagram_is_stamped_and_refused_when_stale():
    data = encode(Heartbeat(A), 1, SECRET, to=B.addr, now_ms=100_000)
    assert decode(data, SECRET, me=(B.addr,), now_ms=100_000 + wire.MAX_AGE_MS)
    for now in (100_000 + wire.MAX_AGE_MS + 1, 100_000 - wire.MAX_AGE_MS - 1):
        with pytest.raises(DropReason) as exc:
            decode(data, SECRET, me=(B.addr,), now_ms=now)
        assert exc.value.reason == "stale"
    tampered = bytearray(data)
    tampered[10] ^= 1  # the stamp is covered by the MAC
    with pytest.raises(DropReason) as exc:
        decode(bytes(tampered), SECRET, me=(B.addr,), now_ms=100_000)
    assert exc.value.reason == "forged"


def test_replay_guard_window():
    g = ReplayGuard(window=8)
    assert g.accept("a", 1, 10)
    assert not g.accept("a", 1, 10)  # duplicate
    assert g.accept("a", 1, 8)  # reordered, inside the window
    assert not g.accept("a", 1, 8)
    assert g.accept("a", 1, 20)
    assert not g.accept("a", 1, 12)  # fell out of the window
    assert g.accept("a", 1, 19)
    assert not g.accept("a", 0, 30)  # older incarnation
    assert g.accept("a", 2, 1)  # newer incarnation restarts numbering
    assert g.accept("b", 1, 10)


def test_replay_guard_bounds_its_memory():
    g = ReplayGuard(max_senders=3)
    for i in range(10):
        assert g.accept(f"n{i}", 1, 1)
    assert len(g._state) == 3
