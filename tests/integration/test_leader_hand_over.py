"""A coordinator leader on etcd cut off from every member by iptables (in a private network
namespace; it still reaches etcd) hands leadership to the standby, which reaches them (issue 17:
on main it kept leading, removed 2 of 3 members within 2.2 s and the standby never took over).
Nobody is removed.
"""

from __future__ import annotations

import time

from conftest import free_port, port_of, wait_until
from etcd_helpers import etcd, join_chain, make_ha, requires_etcd  # noqa: F401 - fixtures
from netns_helpers import SOURCES, netns  # noqa: F401 - a fixture

pytestmark = requires_etcd
COORDINATOR_SOURCES = ("127.0.0.5", "127.0.0.6")
HAND_OVER_WITHIN_S = 2.0  # the target: a standby leads this soon after the leader loses the members
CUT_S = 6.0


def cut_from_members(leader: str, source: str, members: list[str], liveness: list[int]) -> list[list[str]]:
    """The leader's calls to the members, theirs to it, its membership datagrams and the
    members' liveness responders; etcd and the standby stay reachable."""
    port = str(port_of(leader))
    return ([["-s", source, "-p", "tcp", "--dport", str(port_of(m)), "-j", "DROP"] for m in members]
            + [["-s", src, "-p", "tcp", "--dport", port, "-j", "DROP"] for src in SOURCES]
            + [["-p", "udp", flag, port, "-j", "DROP"] for flag in ("--dport", "--sport")]
            + [["-p", "udp", "--dport", str(p), "-j", "DROP"] for p in liveness])


def test_a_leader_cut_off_from_the_members_hands_over_to_the_standby(netns, etcd, make_ha):  # noqa: F811
    iptables = netns
    ha = make_ha(etcd, coordinators=2, extras=[("--source-addr", s) for s in COORDINATOR_SOURCES])
    liveness = [free_port() for _ in SOURCES]
    members = []
    for src, lp in zip(SOURCES, liveness):
        addr = ha.start_member(extra=("--coordinator", etcd.url(ha.prefix), "--source-addr", src,
                                      "--liveness-port", str(lp)))
        members.append(addr)
        wait_until(lambda: ha.chain() == members, 60, f"{addr} to join")
    leader = ha.wait_leader()
    epoch = int(ha.coordinator_status()["epoch"])
    source = COORDINATOR_SOURCES[ha.coordinators.index(leader)]
    rules = cut_from_members(leader, source, members, liveness)
    for rule in rules:
        iptables("-A", "OUTPUT", *rule)
    cut_at = time.monotonic()
    try:
        standby = ha.wait_leader(20, other_than=leader)  # admin commands go to it from here on
        took = time.monotonic() - cut_at
        wait_until(lambda: time.monotonic() > cut_at + CUT_S, CUT_S + 1, "the cut to last")
    finally:
        for rule in rules:
            iptables("-D", "OUTPUT", *rule)
    print(f"leader {leader} cut off from the members: {standby} leads {took:.2f} s after the cut")
    assert ha.chain() == members, "members were removed"
    assert int(ha.coordinator_status()["epoch"]) == epoch
    assert took <= HAND_OVER_WITHIN_S, f"the standby led {took:.2f} s after the cut"
