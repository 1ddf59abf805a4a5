"""Rejoin after a heal (issue 17): the tail, cut one way (nothing it sends gets out: iptables in
a private network namespace) until the coordinator takes it out, is back in the chain within
2 s of the heal, however long the cut (on main: 6.6 / 12.5 / 24.6 s after cuts of 8 / 15 / 30 s).
"""

from __future__ import annotations

import time

import pytest

from conftest import free_port, port_of, wait_until
from netns_helpers import SOURCES, netns  # noqa: F401 - a fixture
from repair_helpers import registered_chain

REJOIN_WITHIN_S = 2.0


def outbound_rules(member: str, source: str, liveness_port: int) -> list[list[str]]:
    """What the member sends: from its port (TCP answers, membership UDP), from its own
    connections' source address, from its liveness responder."""
    return ([["-s", source, "-j", "DROP"]]
            + [["-p", proto, "--sport", str(p), "-j", "DROP"]
               for proto, p in (("tcp", port_of(member)), ("udp", port_of(member)), ("udp", liveness_port))])


@pytest.mark.parametrize("cut_s", [8.0, 15.0])
def test_the_tail_cut_one_way_is_back_within_two_seconds_of_the_heal(netns, make_cluster, cut_s):  # noqa: F811
    iptables = netns
    cluster = make_cluster()
    liveness = [free_port() for _ in SOURCES]
    members = registered_chain(cluster, 3, [("--source-addr", src, "--liveness-port", str(port))
                                            for src, port in zip(SOURCES, liveness)])
    tail = members[2]
    rules = outbound_rules(tail, SOURCES[2], liveness[2])
    for rule in rules:
        iptables("-A", "OUTPUT", *rule)
    cut_at = time.monotonic()
    try:
        wait_until(lambda: tail not in cluster.chain(), 30, f"the coordinator to take {tail} out")
        wait_until(lambda: time.monotonic() > cut_at + cut_s, cut_s + 1, "the cut to last")
    finally:
        for rule in rules:
            iptables("-D", "OUTPUT", *rule)
    healed = time.monotonic()
    back = wait_until(lambda: tail in cluster.chain() and time.monotonic(), 60, f"{tail} back in the chain")
    print(f"one-way cut of the tail for {cut_s:.0f} s: back in the chain {back - healed:.2f} s after the heal")
    assert back - healed <= REJOIN_WITHIN_S, f"{tail} rejoined {back - healed:.2f} s after the heal"
