"""A chain link cut in the kernel between two members that both still reach the coordinator
(iptables DROP in a private network namespace, netns_helpers.py): the members' link reports
show the stalled link, the coordinator takes one end out, and writes through the head flow
again within 2 s of the cut (issue 17; on main they stalled for the whole cut). After the heal
the member taken out rejoins behind the tail.
"""

from __future__ import annotations

import time

from conftest import wait_until
from netns_helpers import SOURCES, Writes, cut_rules, netns  # noqa: F401 - a fixture
from repair_helpers import registered_chain

FLOW_WITHIN_S = 2.0  # the target: writes flow again this soon after the cut begins
WATCH_S = 6.0  # how long after the cut the writes are watched
REJOIN_WITHIN_S = 15.0  # back in the chain after the heal (a learner catching up, then the tail)


def cut_and_measure(iptables, cluster, members: list[str], a: int, b: int) -> tuple[float, str]:
    """Cut members[a]↔members[b] while a client writes through the head; (the longest write
    stall after the cut, the member taken out). Heals the cut before returning."""
    rules = cut_rules(members[a], SOURCES[a], members[b], SOURCES[b])
    with Writes(members[0]) as writes:
        try:
            wait_until(lambda: len(writes.acked) > 200, 30, "writes to flow")
            for rule in rules:
                iptables("-A", "OUTPUT", *rule)
            cut_at = time.monotonic()
            out = wait_until(lambda: next((m for m in members if m not in cluster.chain()), None), 30,
                             "one end of the cut link taken out")
            wait_until(lambda: time.monotonic() > cut_at + WATCH_S, WATCH_S + 1, "the watch to end")
            return writes.longest_gap(cut_at, cut_at + WATCH_S), out
        finally:
            for rule in rules:
                iptables("-D", "OUTPUT", *rule)


def chain_of(cluster, n: int) -> list[str]:
    """Members that register by themselves (so one taken out rejoins), each sending from its
    own source address (iptables tells their connections apart)."""
    return registered_chain(cluster, n, [("--source-addr", src) for src in SOURCES[:n]])


def rejoin_after_heal(cluster, member: str) -> float:
    healed = time.monotonic()
    wait_until(lambda: member in cluster.chain(), 60, f"{member} back in the chain after the heal")
    return time.monotonic() - healed


def check(iptables, cluster, members, a, b, expected_out, what):
    stall, out = cut_and_measure(iptables, cluster, members, a, b)
    rejoin = rejoin_after_heal(cluster, out)
    print(f"{what} cut: writes stalled at most {stall:.2f} s; {out} taken out; back {rejoin:.2f} s after the heal")
    assert out == expected_out, f"{out} was taken out; the rule says {expected_out}"
    assert stall <= FLOW_WITHIN_S, f"writes stalled {stall:.2f} s after the {what} cut"
    assert rejoin <= REJOIN_WITHIN_S, f"{out} rejoined {rejoin:.2f} s after the heal"


def test_a_middle_tail_cut_takes_the_tail_out_and_writes_flow_within_two_seconds(netns, make_cluster):  # noqa: F811
    cluster = make_cluster()
    members = chain_of(cluster, 3)
    check(netns, cluster, members, 1, 2, members[2], "middle↔tail")


def test_a_head_middle_cut_takes_the_middle_out_and_writes_flow_within_two_seconds(netns, make_cluster):  # noqa: F811
    cluster = make_cluster()
    members = chain_of(cluster, 3)
    check(netns, cluster, members, 0, 1, members[1], "head↔middle")


def test_a_head_tail_cut_of_a_chain_of_two_keeps_the_head(netns, make_cluster):  # noqa: F811
    cluster = make_cluster()
    members = chain_of(cluster, 2)
    check(netns, cluster, members, 0, 1, members[1], "head↔tail")
