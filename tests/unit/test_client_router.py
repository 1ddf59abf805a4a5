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
