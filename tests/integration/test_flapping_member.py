"""A member flapping in the kernel (iptables in a private network namespace: cut from every
process for 2 s, then reachable for 1 s, for 12 s) stops stalling the chain: taken out once, it
is admitted again only after answering every probe for its quiet period, which a flapping member
never does (issue 17: on main it was re-admitted at once each time and every relapse stalled
all writes ~1.9 s: 7.2 of 11.4 s). `--flap-quiet-ms 0` is that old behaviour, measured beside.
"""

from __future__ import annotations

import time

import pytest

from conftest import free_port, port_of, wait_until
from netns_helpers import SOURCES, Writes, netns  # noqa: F401 - a fixture
from repair_helpers import registered_chain

CUT_S, UP_S, FLAP_S = 2.0, 1.0, 12.0


def isolation_rules(member: str, source: str, liveness_port: int) -> list[list[str]]:
    """Everything to or from the member: its port (TCP, and UDP membership), its own
    connections (from `source`) and its liveness responder."""
    port = str(port_of(member))
    return ([["-s", source, "-j", "DROP"]]
            + [["-p", proto, flag, p, "-j", "DROP"] for proto, p in (("tcp", port), ("udp", port),
                                                                    ("udp", str(liveness_port)))
               for flag in ("--dport", "--sport")])


def stalled_total(acked: list[float], start: float, end: float, gap: float = 0.25) -> float:
    times = [start] + [t for t in acked if start < t < end] + [end]
    return sum(b - a for a, b in zip(times, times[1:]) if b - a > gap)


@pytest.mark.parametrize("quiet_ms", [1200, 0], ids=["damped", "undamped"])
def test_a_flapping_member_stops_stalling_writes(netns, make_cluster, quiet_ms):  # noqa: F811
    iptables = netns
    cluster = make_cluster()
    cluster.start_coordinator(extra=("--flap-quiet-ms", str(quiet_ms)))
    liveness = [free_port() for _ in SOURCES]
    members = registered_chain(cluster, 3, [("--source-addr", src, "--liveness-port", str(port))
                                            for src, port in zip(SOURCES, liveness)])
    rules = isolation_rules(members[2], SOURCES[2], liveness[2])
    with Writes(members[0]) as writes:
        wait_until(lambda: len(writes.acked) > 100, 30, "writes to flow")
        start = time.monotonic()
        removals = 0
        while time.monotonic() < start + FLAP_S:
            for rule in rules:
                iptables("-A", "OUTPUT", *rule)
            try:
                cut_at = time.monotonic()
                wait_until(lambda: time.monotonic() > cut_at + CUT_S, CUT_S + 1, "the cut to last")
            finally:
                for rule in rules:
                    iptables("-D", "OUTPUT", *rule)
            removals += members[2] not in cluster.chain()
            up_at = time.monotonic()
            wait_until(lambda: time.monotonic() > up_at + UP_S, UP_S + 1, "the member to be up a while")
        total = stalled_total(writes.acked, start, start + FLAP_S)
    rejoined = wait_until(lambda: members[2] in cluster.chain() and time.monotonic(), 60, "the member back")
    print(f"flap (quiet {quiet_ms} ms): writes stalled {total:.2f} s of {FLAP_S:.0f} s; out after "
          f"{removals} of the cuts; back in the chain {rejoined - start - FLAP_S:.2f} s after the flapping stopped")
    assert removals >= 1  # the cuts did take it out (the scenario happened)
    if quiet_ms:  # undamped, it stalled 3.7 s here (README)
        assert total <= 2.5, f"writes stalled {total:.2f} s in all while {members[2]} flapped"
