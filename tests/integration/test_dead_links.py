"""Dead links are found within ~2 s (catena.net): a peer link cut while writes flow, with bytes
in flight, carries writes again within a few seconds of the network's return, not after the
kernel's retransmission backoff (up to minutes; on main 4-25 s after cuts of 8-30 s).

The cut is made by iptables in a private network namespace: packets are dropped, as in a real
partition, only between the head and the middle member (told apart from the coordinator by
their source addresses). The coordinator's link-health repair is off (`--link-stall-ms 0`,
test_link_cuts.py tests it), so it sees everyone alive and repairs nothing: the chain waits
for the link.
"""

from __future__ import annotations

import time

from conftest import wait_until
from netns_helpers import SOURCES, Writes, cut_rules, netns, start_chain  # noqa: F401 - a fixture

CUT_S = 8.0
RESUME_WITHIN_S = 3.0  # dead after 2 s, reconnect attempts every <= ~1.75 s, then the handshake


def test_writes_flow_again_within_seconds_of_healing_a_cut_peer_link(netns, make_cluster):  # noqa: F811
    iptables = netns
    cluster = make_cluster()
    members = start_chain(cluster, SOURCES, coordinator=("--link-stall-ms", "0"))
    sources = SOURCES
    head, middle, _ = members

    with Writes(head) as writes:
        acked = writes.acked
        wait_until(lambda: len(acked) > 200, 30, "writes to flow")
        rules = cut_rules(head, sources[0], middle, sources[1])
        for rule in rules:
            iptables("-A", "OUTPUT", *rule)
        cut_at = time.monotonic()
        time.sleep(CUT_S)  # the length of the partition (what is tested is after it)
        stalled = [t for t in acked if cut_at + 1.0 < t]
        assert not stalled, "writes were acknowledged while the head could not reach the middle member"
        for rule in rules:
            iptables("-D", "OUTPUT", *rule)
        healed = time.monotonic()
        first = wait_until(lambda: next((t for t in acked if t > healed), None), 30, "a write after the heal")
        delay = first - healed
        print(f"writes resumed {delay:.2f} s after healing a {CUT_S:.0f} s cut")
        assert delay <= RESUME_WITHIN_S, f"writes resumed {delay:.2f} s after the heal"
        assert cluster.chain() == members  # the coordinator repaired nothing: the link came back
