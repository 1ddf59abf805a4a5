"""Liveness datagrams (catena.liveness), the member's responder thread (chain/liveness.py) and
the coordinator's asker (coordinator/liveness.py), over real UDP on 127.0.0.1."""

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from catena import liveness
from catena.chain.liveness import LivenessResponder
from catena.coordinator.liveness import ask
from catena.errors import CatenaError
from catena.loopstats import LoopMonitor

SECRET = b"s3cret"


@pytest.mark.parametrize("secret", [None, SECRET])
def test_an_answer_round_trips_to_the_request_it_answers(secret):
    assert liveness.read_request(liveness.request(42, secret), secret) == 42
    data = liveness.answer(42, liveness.Alive(1_764_000_000_000_000_000, 17, 0.25), secret)
    assert liveness.read_answer(data, 42, secret) == liveness.Alive(1_764_000_000_000_000_000, 17, 0.25)
    assert liveness.read_answer(data, 43, secret) is None  # an answer to another question proves nothing


def test_forged_unsigned_or_damaged_datagrams_are_dropped():
    alive = liveness.Alive(7, 1, 0.0)
    assert liveness.read_request(liveness.request(1, b"other"), SECRET) is None
    assert liveness.read_request(liveness.request(1, None), SECRET) is None  # unsigned, to a member with a secret
    assert liveness.read_answer(liveness.answer(1, alive, b"other"), 1, SECRET) is None
    assert liveness.read_answer(liveness.answer(1, alive, None), 1, SECRET) is None
    signed = bytearray(liveness.answer(1, alive, SECRET))
    signed[12] ^= 1  # a flipped bit in the body
    assert liveness.read_answer(bytes(signed), 1, SECRET) is None
    assert liveness.read_answer(b"CLV1", 1, None) is None
    assert liveness.read_request(b"", None) is None
    assert liveness.read_request(b"XXXX" + bytes(8), None) is None


def test_a_turn_age_past_the_field_is_capped_not_wrapped():
    data = liveness.answer(1, liveness.Alive(7, 1, 10**9), None)
    assert liveness.read_answer(data, 1, None).turn_s == ((1 << 32) - 1) / 1000


def test_the_responder_answers_off_the_loop_with_the_loop_monitors_progress():
    clock = [1000.0]
    monitor = LoopMonitor(clock=lambda: clock[0])
    monitor.beats, monitor.last_beat = 123, 997.5  # the loop's current turn began 2.5 s ago
    responder = LivenessResponder("127.0.0.1", 555, monitor, SECRET, clock=lambda: clock[0])
    responder.start()
    try:
        alive = asyncio.run(ask("127.0.0.1", responder.port, SECRET, 5.0))
        assert alive == liveness.Alive(555, 123, 2.5)
        # Without the secret (or with another) the responder says nothing.
        assert asyncio.run(ask("127.0.0.1", responder.port, b"other", 0.3)) is None
        assert asyncio.run(ask("127.0.0.1", responder.port, None, 0.3)) is None
    finally:
        responder.stop()
    assert not responder._thread.is_alive()


def test_nobody_listening_is_no_answer():
    responder = LivenessResponder("127.0.0.1", 1, LoopMonitor(), None)
    port = responder.port
    responder.stop()  # never started: the port is free again
    assert asyncio.run(ask("127.0.0.1", port, None, 2.0)) is None


_DATAGRAMS = st.one_of(st.binary(max_size=80),
                       st.builds(lambda n, tail: liveness.MAGIC + tail[:n], st.sampled_from([8, 28, 40, 60]),
                                 st.binary(min_size=60, max_size=60)))


@given(_DATAGRAMS, st.sampled_from([None, SECRET]))
def test_any_datagram_is_read_or_dropped_never_raises(data, secret):
    nonce = liveness.read_request(data, secret)
    assert nonce is None or 0 <= nonce < 1 << 64
    alive = liveness.read_answer(data, 1, secret)
    assert alive is None or (alive.turn_s >= 0 and alive.beats >= 0)


def test_a_taken_port_is_refused_with_a_clear_error():
    first = LivenessResponder("127.0.0.1", 1, LoopMonitor(), None)
    try:
        with pytest.raises(CatenaError, match="--liveness-port"):
            LivenessResponder("127.0.0.1", 1, LoopMonitor(), None, port=first.port)
    finally:
        first.stop()
