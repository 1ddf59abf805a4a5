"""Client sessions, pure: the ping clock (time passed in) and the persisted session table."""

import pytest

from catena.coordinator import sessions as s
from catena.coordinator.reconfig import CoordinatorState
from catena.coordinator.sessions import SessionClock


def test_a_session_expires_ttl_after_its_last_ping():
    clock = SessionClock()
    clock.track("a", 1.0, now=10.0)
    assert clock.next_deadline() == 11.0
    assert clock.expired(10.9) == []
    assert clock.ping("a", 1.0, now=10.9)
    assert clock.next_deadline() == pytest.approx(11.9)
    assert clock.expired(11.5) == []
    assert clock.expired(11.9) == ["a"]


def test_an_expired_session_stays_expired_and_is_reported_until_forgotten():
    clock = SessionClock()
    clock.track("a", 1.0, now=0.0)
    assert clock.expired(2.0) == ["a"]
    assert not clock.ping("a", 1.0, now=2.0)  # too late: a ping does not revive it
    assert clock.expired(2.1) == ["a"]
    assert clock.next_deadline() is None
    clock.forget("a")
    assert clock.expired(100.0) == [] and "a" not in clock


def test_a_late_ping_is_refused_even_before_the_expiry_check_ran():
    clock = SessionClock()
    clock.track("a", 1.0, now=0.0)
    assert not clock.ping("a", 1.0, now=1.0)
    assert clock.expired(1.0) == ["a"]


def test_a_new_leader_gives_every_saved_session_a_full_ttl_from_its_takeover():
    clock = SessionClock()  # the new leader knows nothing of the old leader's pings
    clock.sync({"a": 1.0, "b": 5.0}, now=100.0)
    assert clock.expired(100.99) == []
    assert clock.expired(101.0) == ["a"]
    assert clock.next_deadline() == 105.0
    clock.sync({"a": 1.0, "b": 5.0}, now=104.0)  # seen already: keeps its timing
    assert clock.expired(105.0) == ["a", "b"]


def test_sync_forgets_sessions_no_longer_saved_and_pings_adopt_unseen_ones():
    clock = SessionClock()
    clock.sync({"a": 1.0, "b": 1.0}, now=0.0)
    clock.sync({"b": 1.0}, now=0.5)
    assert "a" not in clock and "b" in clock
    assert clock.ping("c", 2.0, now=0.7)  # opened under another leader, pinged before the next sync
    assert clock.expired(2.6) == ["b"]
    assert clock.expired(2.7) == ["b", "c"]


def test_the_table_binds_keys_to_live_sessions_only():
    table: dict = {}
    s.open_session(table, "a", 1000)
    assert s.attach(table, "a", [b"k1", b"k2"]) == []
    assert s.attach(table, "a", [b"k2", b"k3"]) == []  # idempotent per key, order kept
    assert table["a"] == {"ttl_ms": 1000, "keys": ["k1", "k2", "k3"]}
    assert s.attach(table, "nope", [b"k"]) == s.NO_SUCH_SESSION
    assert s.mark_ending(table, "a") == [] and not s.live(table, "a")
    assert s.attach(table, "a", [b"k4"]) == s.NO_SUCH_SESSION  # ending: no new keys
    assert s.mark_ending(table, "a") == []  # idempotent (a new leader resumes it)
    assert s.drop(table, "a") == [] and s.drop(table, "a") == []
    assert s.mark_ending(table, "a") == s.NO_SUCH_SESSION


def test_binary_keys_survive_the_json_state():
    import json

    state = CoordinatorState()
    s.open_session(state.sessions, "a", 500)
    s.attach(state.sessions, "a", [b"\xff\x00bin", "ünï".encode()])
    back = CoordinatorState.from_dict(json.loads(json.dumps(state.to_dict())))
    assert [s.key_bytes(k) for k in back.sessions["a"]["keys"]] == [b"\xff\x00bin", "ünï".encode()]


def test_state_copies_do_not_share_key_lists_and_old_state_loads():
    state = CoordinatorState()
    s.open_session(state.sessions, "a", 500)
    copy = CoordinatorState.from_dict(state.to_dict())
    s.attach(copy.sessions, "a", [b"k"])
    assert state.sessions["a"]["keys"] == []
    old = {k: v for k, v in state.to_dict().items() if k != "sessions"}
    assert CoordinatorState.from_dict(old).sessions == {}


@pytest.mark.parametrize("raw", [b"0", b"99", b"-5", b"1.5", b"x", str(s.MAX_TTL_MS + 1).encode()])
def test_ttl_bounds(raw):
    with pytest.raises(ValueError):
        s.check_ttl_ms(raw)


def test_ttl_accepted():
    assert s.check_ttl_ms(b"100") == 100 and s.check_ttl_ms(b"10000") == 10000
