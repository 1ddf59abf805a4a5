"""catena membership: who is alive, fast and for sure.

Heartbeats on an extended ring (k = 3 monitors per member), suspicion confirmed by a direct and
an indirect probe, refutation, gossip + anti-entropy dissemination, join through introducers,
announced leaves. Defaults: a crash is in the first list within 0.9 s and in every list about
0.1–0.3 s later (bounds: 2 s / 6 s). Wire format: docs/protocol.md, "Membership datagrams".

Interfaces the rest of catena uses
----------------------------------
`MemberId(host, port, incarnation)`  frozen; `.addr` is "host:port"; str() is "host:port@inc".
    The incarnation is the process start time in ms since the epoch (no state on disk; a
    restart is always larger). A member declared failed that is still running (it was paused
    or cut off) rejoins with incarnation + elapsed ms, never reusing the failed id.

`Settings(...)`  frozen dataclass, durations in ms (heartbeat_interval_ms=100, k=3,
    suspect_after_ms=500, confirm_timeout_ms=300, gossip_interval_ms=50, gossip_fanout=3, ...).

`MembershipAgent(listen, introducers=(), settings=None, *, secret=None, table=None,
                 incarnation=None, seed=None)`   asyncio
    await agent.start()      bind UDP on `listen`, join through any reachable introducer
                             (JoinError with a clear message if none admits us); with no
                             `table`, also serve RESP on the same port number over TCP; with a
                             `CommandTable`, register MEMBERS / MEMBERS.STATS on it instead.
    agent.members()          live list: [MemberId] (alive + suspect, this member included)
    agent.events()           async iterator of MembershipEvent(kind, member, at) with kind in
                             "join" | "leave" | "failed", at = wall-clock seconds; subscribe
                             first, then read members() for the starting list
    agent.id                 this member's current MemberId (changes after a rejoin)
    await agent.leave()      announce a voluntary leave (no timeout elsewhere), then close
    await agent.close()      stop without announcing (others will detect the silence)
    agent.stats()            counters (also `MEMBERS.STATS`)

`catena.membership.cli.add_parsers(subparsers)`  registers `agent` and `members`.
    Standalone: `python -m catena.membership.cli agent --listen HOST:PORT [--join …]`.

Modules: messages (ids, updates, datagram types), wire (codec, HMAC, replay window), settings,
ring, table (merge rule), dissemination (broadcast queue), detector (the pure machine),
effects, udp (socket shell), agent (asyncio daemon), cli. The seeded simulator lives with the
tests (tests/sim/membership_sim.py).
"""

from catena.membership.messages import MemberId, Status
from catena.membership.settings import Settings

__all__ = ["MemberId", "Status", "Settings", "MembershipAgent", "MembershipEvent", "JoinError"]


def __getattr__(name):  # the asyncio agent is imported only when asked for
    if name in ("MembershipAgent", "MembershipEvent", "JoinError"):
        from catena.membership import agent

        return getattr(agent, name)
    raise AttributeError(name)
