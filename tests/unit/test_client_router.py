"""The client's pure routing and retry policy."""

import random

import pytest

from catena.client.router import RetryPolicy, Router, check_value, retryable
from catena.coordinator.address import parse
from catena.view import View


def test_writes_go_to_the_head_reads_to_any_member():
    router = Router(random.Random(1))
    assert router.write_target() is None and router.read_target() is None
    router.on_view(View(0, 3, ("a:1", "b:2", "c:3")))
    assert router.write_target() == "a:1"
    assert {router.read_target() for _ in range(200)} == {"a:1", "b:2", "c:3"}


def test_router_never_goes_back_to_an_older_view():
    router = Router(random.Random(1))
    assert router.on_view(View(0, 5, ("a:1", "b:2")))
    assert not router.on_view(View(0, 4, ("x:9",)))
    assert router.write_target() == "a:1"
    assert router.on_view(View(0, 6, ("b:2",)))
    assert router.write_target() == "b:2"


def test_backoff_is_capped_full_jitter_and_grows():
    policy = RetryPolicy(deadline_s=5, base_s=0.01, cap_s=0.5)
    rng = random.Random(7)
    early = [policy.backoff(0, rng) for _ in range(500)]
    late = [policy.backoff(12, rng) for _ in range(500)]
    assert all(0 <= b <= 0.01 for b in early)
    assert all(0 <= b <= 0.5 for b in late) and max(late) > 0.4  # capped, not stuck at the base
    assert sum(late) / len(late) > 10 * sum(early) / len(early)


@pytest.mark.parametrize("message, expected", [
    ("TRYAGAIN the chain is being reconfigured, retry", True),
    ("NOTLEADER 127.0.0.1:7000", True),
    ("ERR value is not an integer or out of range", False),
    ("WRONGPASS invalid username-password pair", False),
])
def test_which_errors_are_retried(message, expected):
    assert retryable(message) is expected


def test_values_must_be_bytes_str_or_int():
    assert check_value(b"x") == b"x" and check_value("x") == "x" and check_value(3) == 3
    for bad in (1.5, None, True, ["a"], {"a": 1}):
        with pytest.raises(TypeError):
            check_value(bad)


def test_coordinator_addresses_are_checked():
    assert parse("127.0.0.1:1,localhost:2").addrs == ("127.0.0.1:1", "localhost:2")
    for bad in ("", "127.0.0.1", "host:notaport", "h:0", "h:70000", "redis://h:1"):
        with pytest.raises(ValueError):
            parse(bad)


def test_redirects_are_read_from_redis_cluster_s_error_replies():
    from catena.client.router import redirect
    assert redirect("MOVED 3999 127.0.0.1:6381") == ("MOVED", 3999, "127.0.0.1:6381")
    assert redirect("ASK 12 [::1]:7000") == ("ASK", 12, "[::1]:7000")
    assert redirect("MOVED the chain moved") is None and redirect("TRYAGAIN Slot is being migrated, retry") is None


def test_a_command_goes_by_its_first_key_s_slot():
    from catena.client.router import command_slot
    from catena.slots import key_slot
    assert command_slot([b"GET", b"{u1}a"]) == key_slot(b"u1")
    assert command_slot([b"CATENA.REQ", b"c", 3, 1, b"SET", "k", b"v"]) == key_slot(b"k")
    assert command_slot([b"MSET", b"{t}a", b"1", b"{t}b", b"2"]) == key_slot(b"t")
    assert command_slot([b"DBSIZE"]) is None


def test_a_moved_slot_goes_to_the_head_it_named_until_that_head_stops_answering():
    router = Router(random.Random(1))
    router.on_view(View(0, 3, ("a:1", "b:2")))
    router.on_moved(7, "x:9")
    assert router.write_target(7) == router.read_target(7) == "x:9"
    assert router.write_target(8) == "a:1" and router.write_target() == "a:1"
    router.forget("x:9")
    assert router.write_target(7) == "a:1"
