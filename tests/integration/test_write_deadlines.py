"""Deadlines travel with forwarded writes (real processes): a write forwarded to a head it
cannot reach is answered "outcome unknown" at its deadline (`--write-timeout-ms`) and is never applied after the
network returns (on main it was resent every second and applied after the heal).

The cut is iptables in a private network namespace between the tail (which forwards the
client's write) and the head only: the chain itself keeps flowing, nothing is repaired.
"""

from __future__ import annotations

import time

import pytest
import redis

from conftest import HOST, port_of, wait_until
from netns_helpers import SOURCES, cut_rules, netns, start_chain  # noqa: F401 - a fixture

WRITE_TIMEOUT_S = 2.0  # --write-timeout-ms
CUT_S = WRITE_TIMEOUT_S + 4.0


def test_a_forwarded_write_past_its_deadline_is_answered_unknown_and_never_applied(netns, make_cluster):  # noqa: F811
    iptables = netns
    cluster = make_cluster()
    members = start_chain(cluster, SOURCES, extra=("--write-timeout-ms", str(int(WRITE_TIMEOUT_S * 1000))))
    sources = SOURCES
    head, _, tail = members
    at_tail = redis.Redis(host=HOST, port=port_of(tail), socket_timeout=30)
    assert at_tail.set("warm", "1")  # the tail's link to the head is up

    rules = cut_rules(head, sources[0], tail, sources[2])
    for rule in rules:
        iptables("-A", "OUTPUT", *rule)
    try:
        sent = time.monotonic()
        with pytest.raises(redis.ResponseError, match="may or may not have been applied") as info:
            at_tail.set("late", "x")
        answered = time.monotonic() - sent
        assert WRITE_TIMEOUT_S - 0.5 <= answered <= WRITE_TIMEOUT_S + 1.5, (answered, info.value)
        time.sleep(max(0.0, CUT_S - (time.monotonic() - sent)))  # the rest of the partition
    finally:
        for rule in rules:
            iptables("-D", "OUTPUT", *rule)
    # The link is back once a new forwarded write goes through; a resend of the expired one would
    # have gone first on it.
    wait_until(lambda: at_tail.set("after", "1"), 30, "a forwarded write after the heal")
    at_head = redis.Redis(host=HOST, port=port_of(head), socket_timeout=30)
    assert at_head.get("late") is None and at_head.get("after") == b"1"
    at_tail.close()
    at_head.close()
